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
/// Its fields live in one buffer, however many there are (an item is made
/// on a worker and freed on the delivery thread, where every allocation
/// goes through the allocator's shared bins): a record per field, a text
/// field followed by its NUL, so that the C string `herald_result_str`
/// returns points into the buffer itself (no `CString` per field). A
/// replaced field's old record stays, marked dead (items are built once,
/// then only read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultItem {
    pub uid: u64,
    /// Records: field (u32 LE), kind (`INT`, `STR`, or either `| DEAD`),
    /// then an int's u64 LE, or a text's length (u32 LE), bytes and NUL.
    fields: Vec<u8>,
    pub bytes: Option<Vec<u8>>,
    /// The parsed message (HERALD_FETCH_PARSED, POP3 parsed retrieve).
    pub parsed: Option<Arc<Parsed>>,
    /// The MIME structure, pre-order (HERALD_FETCH_BODYSTRUCTURE).
    pub parts: Vec<BodyPart>,
}

/// A record's kinds.
const INT: u8 = 0;
const STR: u8 = 1;
const DEAD: u8 = 2;
/// A record's field and kind.
const HEAD: usize = 5;
/// An int record's size.
const INT_RECORD: usize = HEAD + 8;
/// A text record's size without its bytes.
const STR_RECORD: usize = HEAD + 4 + 1;

/// Text for a C string: interior NULs (which C can't carry) become U+FFFD.
pub fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\u{FFFD}")).expect("no NUL left"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

impl ResultItem {
    pub fn new(uid: u64) -> Self {
        ResultItem {
            uid,
            ..Default::default()
        }
    }

    /// An item with room for `fields` fields and `text` bytes of text
    /// fields (their NULs included), so that filling it allocates once.
    pub fn with_capacity(uid: u64, fields: usize, text: usize) -> Self {
        ResultItem {
            uid,
            fields: Vec::with_capacity(fields * INT_RECORD.max(STR_RECORD - 1) + text),
            ..Default::default()
        }
    }

    /// The live records: (field, kind, where the record starts).
    fn records(&self) -> impl Iterator<Item = (u32, u8, usize)> + '_ {
        let b = &self.fields;
        let mut at = 0;
        std::iter::from_fn(move || {
            while at < b.len() {
                let (field, kind, start) = (u32_at(b, at), b[at + 4], at);
                at += if kind & !DEAD == INT {
                    INT_RECORD
                } else {
                    STR_RECORD + u32_at(b, at + HEAD) as usize
                };
                if kind & DEAD == 0 {
                    return Some((field, kind, start));
                }
            }
            None
        })
    }

    /// The live record of `field` of this kind, if any.
    fn find(&self, field: u32, kind: u8) -> Option<usize> {
        self.records()
            .find(|&(f, k, _)| f == field && k == kind)
            .map(|(_, _, at)| at)
    }

    pub fn set_str(&mut self, field: u32, value: &str) {
        if let Some(at) = self.find(field, STR) {
            self.fields[at + 4] |= DEAD;
        }
        let b = &mut self.fields;
        b.reserve(STR_RECORD + value.len());
        b.extend_from_slice(&field.to_le_bytes());
        b.push(STR);
        let len_at = b.len();
        b.extend_from_slice(&[0; 4]);
        if value.as_bytes().contains(&0) {
            b.extend_from_slice(value.replace('\0', "\u{FFFD}").as_bytes());
        } else {
            b.extend_from_slice(value.as_bytes());
        }
        let len = (b.len() - len_at - 4) as u32;
        b[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        b.push(0);
    }

    pub fn with_str(mut self, field: u32, value: &str) -> Self {
        self.set_str(field, value);
        self
    }

    pub fn set_int(&mut self, field: u32, value: u64) {
        match self.find(field, INT) {
            Some(at) => self.fields[at + HEAD..at + INT_RECORD].copy_from_slice(&value.to_le_bytes()),
            None => {
                self.fields.extend_from_slice(&field.to_le_bytes());
                self.fields.push(INT);
                self.fields.extend_from_slice(&value.to_le_bytes());
            }
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

    /// A text field as the C string it is stored as.
    pub fn str_field(&self, field: u32) -> Option<&CStr> {
        let at = self.find(field, STR)?;
        let len = u32_at(&self.fields, at + HEAD) as usize;
        let bytes = &self.fields[at + HEAD + 4..=at + HEAD + 4 + len];
        Some(CStr::from_bytes_with_nul(bytes).expect("a stored text field ends at its NUL"))
    }

    pub fn int_field(&self, field: u32) -> Option<u64> {
        let at = self.find(field, INT)?;
        Some(u64::from_le_bytes(
            self.fields[at + HEAD..at + INT_RECORD]
                .try_into()
                .expect("eight bytes"),
        ))
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
        // Many fields, each replaced a few times, both kinds: the last wins.
        let mut it = ResultItem::new(0);
        for round in 0..3u64 {
            for f in 0..40u32 {
                it.set_str(f, &format!("{f}/{round}"));
                it.set_int(f, u64::from(f) * 100 + round);
            }
        }
        for f in 0..40u32 {
            assert_eq!(it.str_field(f).unwrap().to_str().unwrap(), format!("{f}/2"));
            assert_eq!(it.int_field(f), Some(u64::from(f) * 100 + 2));
        }
        assert_eq!((it.str_field(40), it.int_field(40)), (None, None));
    }
}
