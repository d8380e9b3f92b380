//! The data an op hands back: result items and their fields. Foundation:
//! imports nothing of the crate, so errors (`status`) can carry a partial
//! result without `status` and `result` importing each other.

use std::ffi::CString;

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
    /// A spooled message's stable id (`HERALD_OPT_SPOOL_DIR`).
    pub(crate) const SPOOL_ID: u32 = 55;
    /// A message recovered from the spool: 1 untouched, 2 outcome unknown.
    pub(crate) const SPOOL_STATE: u32 = 56;
}

/// One item of a result: a message, a mailbox, a UID, a recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultItem {
    pub uid: u64,
    strs: Vec<(u32, CString)>,
    ints: Vec<(u32, u64)>,
    pub bytes: Option<Vec<u8>>,
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
}

impl ResultData {
    pub fn new(items: Vec<ResultItem>) -> Self {
        ResultData { items }
    }
}
