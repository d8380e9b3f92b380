//! One FETCH response as a result item: what every kind of fetch (plain,
//! changed-since, streamed, to a directory) asks for and how it fills the
//! item, in one place, so every fetch gives the same fields.

use super::fetch_ext::{self, Extra};
use super::parse::{self, FetchData, Value};
use super::{FETCH_BODY, FETCH_ENVELOPE, FETCH_FLAGS, FETCH_HEADERS, FETCH_SIZE};
use crate::result::{field, ResultItem};
use crate::status::Result;

/// The data items a fetch of `parts` asks for ("UID FLAGS BODY.PEEK[]");
/// `modseq`: CONDSTORE's MODSEQ too.
pub fn items(parts: u32, modseq: bool) -> String {
    let mut items = String::from("UID");
    if modseq {
        items.push_str(" MODSEQ");
    }
    for (bit, name) in [
        (FETCH_FLAGS, " FLAGS"),
        (FETCH_ENVELOPE, " ENVELOPE"),
        (FETCH_SIZE, " RFC822.SIZE"),
    ] {
        if parts & bit != 0 {
            items.push_str(name);
        }
    }
    if parts & FETCH_BODY != 0 {
        items.push_str(" BODY.PEEK[]");
    } else if parts & FETCH_HEADERS != 0 {
        items.push_str(" BODY.PEEK[HEADER]");
    }
    items.push_str(&fetch_ext::items(parts, FETCH_ENVELOPE));
    items
}

/// One FETCH response, decoded.
pub struct Fetched {
    /// None: a FETCH without UID is news about flags, not an answer.
    pub uid: Option<u32>,
    extra: Extra,
    data: FetchData,
}

impl Fetched {
    pub fn decode(atts: Vec<Value>) -> Result<Fetched> {
        let extra = Extra::scan(&atts)?;
        let data = parse::fetch_data(atts)?;
        Ok(Fetched {
            uid: data.uid,
            extra,
            data,
        })
    }

    /// A decoded response from its data alone (unit tests).
    #[cfg(test)]
    pub fn from_data(data: FetchData) -> Fetched {
        Fetched {
            uid: data.uid,
            extra: Extra::default(),
            data,
        }
    }

    /// Whether it holds the message bytes `parts` asked for (or none were).
    pub fn has_bytes(&self, parts: u32) -> bool {
        if parts & FETCH_BODY != 0 {
            self.data.body.is_some()
        } else if parts & FETCH_HEADERS != 0 {
            self.data.header.is_some()
        } else {
            true
        }
    }

    /// Merges its fields into `item`; the message bytes it brought.
    pub fn apply(self, item: &mut ResultItem, parts: u32) -> u64 {
        let d = self.data;
        self.extra.apply(item);
        if let Some(f) = &d.flags {
            item.set_str(field::FLAGS, f);
        }
        if let Some(n) = d.size {
            item.set_int(field::SIZE, n);
        }
        if let Some(m) = d.modseq {
            item.set_int(field::MODSEQ, m);
        }
        if let Some(e) = &d.envelope {
            for (f, v) in [
                (field::SUBJECT, &e.subject),
                (field::FROM, &e.from),
                (field::TO, &e.to),
                (field::DATE, &e.date),
                (field::MESSAGE_ID, &e.message_id),
            ] {
                if let Some(v) = v {
                    item.set_str(f, v);
                }
            }
        }
        let bytes = if parts & FETCH_BODY != 0 { d.body } else { d.header };
        let n = bytes.as_ref().map_or(0, |b| b.len() as u64);
        if let Some(b) = bytes {
            item.bytes = Some(b);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::FETCH_MODSEQ;

    #[test]
    fn items_follow_parts() {
        assert_eq!(items(FETCH_BODY | FETCH_HEADERS, false), "UID BODY.PEEK[]");
        assert_eq!(
            items(FETCH_FLAGS | FETCH_SIZE | FETCH_HEADERS, false),
            "UID FLAGS RFC822.SIZE BODY.PEEK[HEADER]"
        );
        assert_eq!(items(FETCH_FLAGS | FETCH_MODSEQ, true), "UID MODSEQ FLAGS");
    }
}
