//! The data an op hands back: result items and their fields. Foundation:
//! imports nothing of the crate, so errors (`status`) can carry a partial
//! result without `status` and `result` importing each other.

use std::ffi::{CStr, CString};

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
            bytes: None,
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
}

impl ResultData {
    pub fn new(items: Vec<ResultItem>) -> Self {
        ResultData { items }
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
