//! The data an op hands back: result items and their fields. Foundation:
//! imports nothing of the crate but `parsed` (a leaf), so errors (`status`) can carry a partial
//! result without `status` and `result` importing each other.

use std::ffi::CString;
use std::sync::Arc;

use crate::parsed::{BodyPart, Parsed};

/// An op's id, unique per client.
pub type OpId = u64;

/// Result fields (`HERALD_FIELD_*`; `ffi::result` checks the two agree).
#[allow(dead_code)] // the IMAP and POP3 engines fill most of them
pub mod field {
    pub(crate) const NAME: u32 = 1;
    pub(crate) const SUBJECT: u32 = 2;
    pub(crate) const FROM: u32 = 3;
    pub(crate) const TO: u32 = 4;
    pub(crate) const DATE: u32 = 5;
    pub(crate) const MESSAGE_ID: u32 = 6;
    pub(crate) const FLAGS: u32 = 7;
    pub(crate) const SIZE: u32 = 8;
    pub(crate) const EXISTS: u32 = 9;
    /// The server's reply code for this item (an SMTP recipient's RCPT reply).
    pub(crate) const REPLY_CODE: u32 = 10;
    /// The server's reply text for this item.
    pub(crate) const REPLY_TEXT: u32 = 11;
    /// More envelope (IMAP fetch ENVELOPE items).
    pub(crate) const CC: u32 = 21;
    pub(crate) const REPLY_TO: u32 = 22;
    pub(crate) const IN_REPLY_TO: u32 = 23;
    pub(crate) const REFERENCES: u32 = 24;
    pub(crate) const INTERNALDATE: u32 = 25;
    pub(crate) const BCC: u32 = 26;
    pub(crate) const SENDER: u32 = 27;
    pub(crate) const DATE_UNIX: u32 = 28;
    /// A 1-based position: a streamed item's order of arrival, an appended
    /// message's place in the call.
    pub(crate) const INDEX: u32 = 50;
    /// How many items a streaming op delivered.
    pub(crate) const COUNT: u32 = 51;
    /// TLS failures: the server certificate's SHA-256 (hex), subject,
    /// issuer (str) and validity (int, Unix seconds).
    pub(crate) const CERT_SHA256: u32 = 40;
    pub(crate) const CERT_SUBJECT: u32 = 41;
    pub(crate) const CERT_ISSUER: u32 = 42;
    pub(crate) const CERT_NOT_BEFORE: u32 = 43;
    pub(crate) const CERT_NOT_AFTER: u32 = 44;
    /// The test-account op: the server's capabilities, space separated.
    pub(crate) const CAPABILITIES: u32 = 45;
    /// The test-account op: the connection's security.
    pub(crate) const SECURITY: u32 = 46;
    /// The test-account op: the mechanism it logged in with.
    pub(crate) const AUTH_MECHANISM: u32 = 47;
    /// IMAP sync state (`imap::sync`).
    pub(crate) const UIDVALIDITY: u32 = 12;
    pub(crate) const UIDNEXT: u32 = 13;
    pub(crate) const HIGHESTMODSEQ: u32 = 14;
    pub(crate) const MESSAGES: u32 = 15;
    pub(crate) const UNSEEN: u32 = 16;
    pub(crate) const VANISHED: u32 = 17;
    pub(crate) const MODSEQ: u32 = 18;
    pub(crate) const SPECIAL_USE: u32 = 19;
    pub(crate) const EXPUNGED: u32 = 20;
    /// The UID a copied or moved message had in its source mailbox.
    pub(crate) const SOURCE_UID: u32 = 60;
    /// More changes happened than a notification lists.
    pub(crate) const TRUNCATED: u32 = 61;
}

/// One item of a result: a message, a mailbox, a UID, a recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultItem {
    pub uid: u64,
    strs: Vec<(u32, CString)>,
    ints: Vec<(u32, u64)>,
    pub bytes: Option<Vec<u8>>,
    /// The parsed message (HERALD_FETCH_PARSED, POP3 parsed retrieve).
    pub parsed: Option<Arc<Parsed>>,
    /// The MIME structure, pre-order (HERALD_FETCH_BODYSTRUCTURE).
    pub parts: Vec<BodyPart>,
}

/// Text for a C string: interior NULs (which C can't carry) become U+FFFD.
pub fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\u{FFFD}")).expect("no NUL left"))
}

impl ResultItem {
    pub fn new(uid: u64) -> Self {
        ResultItem {
            uid,
            ..Default::default()
        }
    }

    pub fn set_str(&mut self, field: u32, value: &str) {
        let v = c_string(value);
        match self.strs.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = v,
            None => self.strs.push((field, v)),
        }
    }

    pub fn with_str(mut self, field: u32, value: &str) -> Self {
        self.set_str(field, value);
        self
    }

    pub fn set_int(&mut self, field: u32, value: u64) {
        match self.ints.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = value,
            None => self.ints.push((field, value)),
        }
    }

    pub fn with_int(mut self, field: u32, value: u64) -> Self {
        self.set_int(field, value);
        self
    }

    pub fn with_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.bytes = Some(bytes);
        self
    }

    pub fn str_field(&self, field: u32) -> Option<&CString> {
        self.strs.iter().find(|(f, _)| *f == field).map(|(_, v)| v)
    }

    pub fn int_field(&self, field: u32) -> Option<u64> {
        self.ints.iter().find(|(f, _)| *f == field).map(|(_, v)| *v)
    }
}

/// An op's result: a list of items (UIDs, messages, mailboxes, recipients).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultData {
    pub items: Vec<ResultItem>,
    /// Fields of the result as a whole (an IMAP op's mailbox state).
    pub mailbox: Vec<(u32, u64)>,
}

impl ResultData {
    pub fn new(items: Vec<ResultItem>) -> Self {
        ResultData {
            items,
            mailbox: Vec::new(),
        }
    }

    /// A field of the result as a whole.
    pub fn mailbox_int(&self, field: u32) -> Option<u64> {
        self.mailbox.iter().find(|(f, _)| *f == field).map(|(_, v)| *v)
    }
}
