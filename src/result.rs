//! What an operation hands back: the completion and its op-specific result.

use std::ffi::CString;

use crate::status::{Error, Status};

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

/// A successful outcome: the server's last reply and an optional result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Success {
    pub reply_code: i32,
    pub detail: String,
    pub result: Option<ResultData>,
}

impl Success {
    pub fn new(reply_code: i32, detail: impl Into<String>) -> Self {
        Success {
            reply_code,
            detail: detail.into(),
            result: None,
        }
    }

    pub fn with_result(mut self, result: ResultData) -> Self {
        self.result = Some(result);
        self
    }
}

/// How an op ended.
pub type Outcome = Result<Success, Error>;

/// An op's completion as herald keeps it; the C layer turns it into a
/// `herald_completion`.
#[derive(Debug)]
pub struct Completion {
    pub op: OpId,
    pub status: Status,
    pub cancelled: bool,
    /// The caller's user token, carried opaquely.
    pub token: usize,
    pub reply_code: i32,
    pub detail: String,
    pub result: Option<ResultData>,
}

impl Completion {
    pub fn from_outcome(op: OpId, token: usize, outcome: Outcome) -> Completion {
        match outcome {
            Ok(s) => Completion {
                op,
                status: Status::Ok,
                cancelled: false,
                token,
                reply_code: s.reply_code,
                detail: s.detail,
                result: s.result,
            },
            Err(e) => Completion {
                op,
                status: e.status,
                cancelled: e.status == Status::Cancelled,
                token,
                reply_code: e.reply_code,
                detail: e.detail,
                result: e.partial.map(|p| *p),
            },
        }
    }

    /// A cancelled completion; `partial` carries what was done before the cancel
    /// took effect (for example the UIDs of messages already appended).
    pub fn cancelled(op: OpId, token: usize, detail: &str, partial: Option<ResultData>) -> Completion {
        Completion {
            op,
            status: Status::Cancelled,
            cancelled: true,
            token,
            reply_code: 0,
            detail: detail.to_string(),
            result: partial,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_what_was_done_before_it() {
        let done = ResultData::new(vec![ResultItem::new(7), ResultItem::new(8)]);
        let e = Error::new(Status::Io, "lost").with_partial(done.clone());
        let c = Completion::from_outcome(1, 0, Err(e));
        assert_eq!((c.status, c.cancelled), (Status::Io, false));
        assert_eq!(c.result, Some(done));
        let c = Completion::from_outcome(2, 0, Err(Error::new(Status::Io, "lost")));
        assert_eq!(c.result, None);
    }
}
