//! The data an op hands back: result items and their fields. Foundation:
//! imports nothing of the crate but `parsed` (a leaf), so errors (`status`) can carry a partial
//! result without `status` and `result` importing each other.

use std::ffi::{CStr, CString};
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
    /// A spooled message's stable id (`HERALD_OPT_SPOOL_DIR`).
    pub(crate) const SPOOL_ID: u32 = 55;
    /// A message recovered from the spool: 1 untouched, 2 outcome unknown.
    pub(crate) const SPOOL_STATE: u32 = 56;
}

/// One item of a result: a message, a mailbox, a UID, a recipient.
///
/// Its fields live in two buffers, however many there are: `fields` says
/// where each is, and every text field is in `text`, each followed by its
/// NUL, so that the C string `herald_result_str` returns points into
/// `text` itself (no `CString` per field). A replaced text field leaves its
/// old bytes in `text` (items are built once, then only read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultItem {
    pub uid: u64,
    fields: Vec<(u32, Slot)>,
    text: String,
    pub bytes: Option<Vec<u8>>,
    /// The parsed message (HERALD_FETCH_PARSED, POP3 parsed retrieve).
    pub parsed: Option<Arc<Parsed>>,
    /// The MIME structure, pre-order (HERALD_FETCH_BODYSTRUCTURE).
    pub parts: Vec<BodyPart>,
}

/// Where a field's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Int(u64),
    /// `text[start..start + len]`, followed by a NUL.
    Str {
        start: u32,
        len: u32,
    },
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

    /// An item with room for `fields` fields and `text` bytes of text
    /// fields (their NULs included), so that filling it allocates twice.
    pub fn with_capacity(uid: u64, fields: usize, text: usize) -> Self {
        ResultItem {
            uid,
            fields: Vec::with_capacity(fields),
            text: String::with_capacity(text),
            ..Default::default()
        }
    }

    /// Sets `field`'s text or number (a field may have one of each).
    fn set(&mut self, field: u32, slot: Slot) {
        let same = |s: &Slot| {
            matches!(
                (s, slot),
                (Slot::Int(_), Slot::Int(_)) | (Slot::Str { .. }, Slot::Str { .. })
            )
        };
        match self.fields.iter_mut().find(|(f, s)| *f == field && same(s)) {
            Some(s) => s.1 = slot,
            None => self.fields.push((field, slot)),
        }
    }

    pub fn set_str(&mut self, field: u32, value: &str) {
        let start = self.text.len() as u32;
        if value.as_bytes().contains(&0) {
            self.text.push_str(&value.replace('\0', "\u{FFFD}"));
        } else {
            self.text.push_str(value);
        }
        let len = self.text.len() as u32 - start;
        self.text.push('\0');
        self.set(field, Slot::Str { start, len });
    }

    pub fn with_str(mut self, field: u32, value: &str) -> Self {
        self.set_str(field, value);
        self
    }

    pub fn set_int(&mut self, field: u32, value: u64) {
        self.set(field, Slot::Int(value));
    }

    pub fn with_int(mut self, field: u32, value: u64) -> Self {
        self.set_int(field, value);
        self
    }

    pub fn with_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// A text field as the C string it is stored as.
    pub fn str_field(&self, field: u32) -> Option<&CStr> {
        self.fields.iter().find_map(|&(f, slot)| match slot {
            Slot::Str { start, len } if f == field => {
                let bytes = &self.text.as_bytes()[start as usize..=(start + len) as usize];
                Some(CStr::from_bytes_with_nul(bytes).expect("a stored text field ends at its NUL"))
            }
            _ => None,
        })
    }

    pub fn int_field(&self, field: u32) -> Option<u64> {
        self.fields.iter().find_map(|&(f, slot)| match slot {
            Slot::Int(v) if f == field => Some(v),
            _ => None,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_replaced_and_kept_apart_by_kind() {
        let mut it = ResultItem::with_capacity(7, 3, 16)
            .with_str(1, "alice@example.org")
            .with_int(10, 250)
            .with_str(11, "Accepted");
        assert_eq!(it.uid, 7);
        assert_eq!(it.str_field(1).unwrap().to_str().unwrap(), "alice@example.org");
        assert_eq!(it.str_field(11).unwrap().to_bytes(), b"Accepted");
        assert_eq!(it.int_field(10), Some(250));
        assert_eq!(
            (it.str_field(10), it.int_field(1), it.str_field(2)),
            (None, None, None)
        );
        // A replaced text, a NUL inside, an empty text, and both kinds on one id.
        it.set_str(11, "a\0b");
        it.set_str(12, "");
        it.set_int(1, 5);
        it.set_int(10, 550);
        assert_eq!(it.str_field(11).unwrap().to_str().unwrap(), "a\u{FFFD}b");
        assert_eq!(it.str_field(12).unwrap().to_bytes(), b"");
        assert_eq!(it.str_field(1).unwrap().to_str().unwrap(), "alice@example.org");
        assert_eq!((it.int_field(1), it.int_field(10)), (Some(5), Some(550)));
        assert_eq!(c_string("x\0y").to_str().unwrap(), "x\u{FFFD}y");
    }
}
