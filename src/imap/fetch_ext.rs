//! What a UID FETCH reports beyond flags, size, the five envelope fields
//! and bytes: the rest of the ENVELOPE (Cc, Bcc, Reply-To, Sender,
//! In-Reply-To), References (not in ENVELOPE: fetched as
//! `BODY.PEEK[HEADER.FIELDS (REFERENCES)]` with it), INTERNALDATE, the
//! Date as Unix seconds, BODYSTRUCTURE (`HERALD_FETCH_BODYSTRUCTURE`) and
//! the parsed message (`HERALD_FETCH_PARSED`, parsed on the worker thread
//! once the fetch is read).

use std::sync::Arc;

use super::bodystructure;
use super::parse::{addresses, decode_words, Value};
use crate::parsed::{date_unix, unstructured, BodyPart, Parsed};
use crate::result::{field, ResultItem};
use crate::status::Result;

/// `parts` bit: each item also holds the parsed message.
pub const FETCH_PARSED: u32 = 32;
/// `parts` bit: each item also holds its MIME structure.
pub const FETCH_BODYSTRUCTURE: u32 = 64;

/// The fetch parts actually asked of the server: PARSED parses the bytes
/// fetched, so without BODY it fetches (and parses) the header block.
pub fn implied(parts: u32, body: u32, headers: u32) -> u32 {
    if parts & FETCH_PARSED != 0 && parts & body == 0 {
        parts | headers
    } else {
        parts
    }
}

/// The FETCH items to add for `parts` (each with a leading space).
pub fn items(parts: u32, envelope: u32) -> String {
    let mut s = String::new();
    if parts & envelope != 0 {
        s.push_str(" INTERNALDATE BODY.PEEK[HEADER.FIELDS (REFERENCES)]");
    }
    if parts & FETCH_BODYSTRUCTURE != 0 {
        s.push_str(" BODYSTRUCTURE");
    }
    s
}

/// What this module reads from one FETCH response.
#[derive(Default)]
pub struct Extra {
    strs: Vec<(u32, String)>,
    ints: Vec<(u32, u64)>,
    parts: Option<Vec<BodyPart>>,
}

impl Extra {
    /// Reads the items it knows from a FETCH response's attributes (name,
    /// value pairs), leaving them for `parse::fetch_data`.
    pub fn scan(atts: &[Value]) -> Result<Extra> {
        let mut x = Extra::default();
        for kv in atts.chunks(2) {
            let (Some(name), Some(v)) = (kv[0].atom(), kv.get(1)) else {
                continue;
            };
            let name = name.to_ascii_uppercase();
            match name.as_str() {
                "ENVELOPE" => x.envelope(v),
                "INTERNALDATE" => {
                    if let Some(t) = v.text().as_deref().and_then(internaldate) {
                        x.ints.push((field::INTERNALDATE, t as u64));
                    }
                }
                "BODYSTRUCTURE" => x.parts = Some(bodystructure::parse(v)?),
                _ if name.starts_with("BODY[HEADER.FIELDS") => {
                    if let Value::Str(b) = v {
                        if let Some(r) = references(b) {
                            x.strs.push((field::REFERENCES, r));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(x)
    }

    /// ENVELOPE: date, subject, from, sender, reply-to, to, cc, bcc,
    /// in-reply-to, message-id (RFC 3501 section 7.4.2).
    fn envelope(&mut self, v: &Value) {
        let Some(l) = v.list() else { return };
        for (f, i) in [
            (field::SENDER, 3),
            (field::REPLY_TO, 4),
            (field::CC, 6),
            (field::BCC, 7),
        ] {
            if let Some(a) = l.get(i).and_then(addresses) {
                self.strs.push((f, a));
            }
        }
        if let Some(t) = l.get(8).and_then(Value::text).filter(|s| !s.is_empty()) {
            self.strs.push((field::IN_REPLY_TO, decode_words(&t)));
        }
        if let Some(d) = l.first().and_then(Value::text).as_deref().and_then(date_unix) {
            // Dates before 1970 have no unsigned Unix time: left out.
            if let Ok(d) = u64::try_from(d) {
                self.ints.push((field::DATE_UNIX, d));
            }
        }
    }

    pub fn apply(self, item: &mut ResultItem) {
        for (f, v) in self.strs {
            item.set_str(f, &v);
        }
        for (f, v) in self.ints {
            item.set_int(f, v);
        }
        if let Some(p) = self.parts {
            item.parts = p;
        }
    }
}

/// The References field's value from a `HEADER.FIELDS (REFERENCES)` block,
/// unfolded: message ids separated by single spaces.
fn references(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let mut value = String::new();
    let mut inside = false;
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.starts_with([' ', '\t']) {
            if inside {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, v)) = line.split_once(':') {
            inside = name.trim().eq_ignore_ascii_case("references");
            if inside {
                value.push_str(v.trim());
            }
        } else {
            inside = false;
        }
    }
    let v = unstructured(value.as_bytes());
    let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
    (!v.is_empty()).then_some(v)
}

/// IMAP INTERNALDATE (`17-Jul-1996 02:44:25 -0700`) as Unix seconds.
pub fn internaldate(s: &str) -> Option<i64> {
    let mut w = s.split_ascii_whitespace();
    let (date, time, zone) = (w.next()?, w.next()?, w.next()?);
    let mut d = date.split('-');
    let day: i64 = d.next()?.trim().parse().ok()?;
    let month = d.next()?.to_ascii_lowercase();
    let year: i64 = d.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let zh: i64 = digits[..2].parse().ok()?;
    let zm: i64 = digits[2..].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec - sign * (zh * 3600 + zm * 60))
}

/// With `HERALD_FETCH_PARSED`, parses each item's bytes: on the worker
/// thread, so the completion already holds the parsed messages.
/// Without the body, the header block is parsed as such.
pub fn finish(items: &mut [ResultItem], parts: u32, body: u32) {
    if parts & FETCH_PARSED == 0 {
        return;
    }
    for it in items {
        if let Some(b) = &it.bytes {
            let p = if parts & body != 0 {
                Parsed::parse(b)
            } else {
                Parsed::parse_headers(b)
            };
            it.parsed = p.map(Arc::new);
        }
    }
}

/// The fuzz target's entry point: `data` as a FETCH response's
/// BODYSTRUCTURE (and the other items this module reads), through the
/// wire reader and parser; every node's fields are read. Never panics.
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_fetch_items(data: &[u8]) {
    let mut input = b"* 1 FETCH (UID 1 BODYSTRUCTURE ".to_vec();
    input.extend_from_slice(data);
    input.extend_from_slice(b")\r\n");
    let limits = super::wire::Limits {
        text: 64 * 1024,
        literals: 1024 * 1024,
    };
    for r in super::wire::read_all(&input, limits) {
        if let Ok(super::parse::Response::Fetch { atts, .. }) = r {
            if let Ok(x) = Extra::scan(&atts) {
                let mut item = ResultItem::new(1);
                x.apply(&mut item);
                for p in &item.parts {
                    assert!(
                        p.parent.is_none_or(|i| i < item.parts.len()),
                        "a parent comes before its children"
                    );
                    let _ = (p.section.as_bytes(), p.filename.as_bytes(), p.params.len());
                }
                assert!(item.parts.len() <= bodystructure::MAX_NODES);
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = internaldate(s);
        let _ = date_unix(s);
        let _ = references(data);
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{parse_response, Piece, Response};
    use super::*;

    #[test]
    fn internaldates() {
        assert_eq!(internaldate("17-Jul-1996 02:44:25 -0700"), Some(837_596_665));
        assert_eq!(internaldate(" 1-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(internaldate("01-Jan-1970 01:00:00 +0100"), Some(0));
        for bad in [
            "",
            "x",
            "17-Jux-1996 02:44:25 -0700",
            "17-Jul-1996 02:44 -0700",
            "17-Jul-1996 02:44:25 0700",
        ] {
            assert_eq!(internaldate(bad), None, "{bad}");
        }
    }

    #[test]
    fn envelope_extras_references_and_internaldate() {
        let pieces = vec![
            Piece::Line(
                concat!(
                    "* 3 FETCH (UID 9 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" ENVELOPE (",
                    "\"Mon, 7 Feb 1994 21:52:25 -0800\" \"s\" ((\"A\" NIL \"a\" \"x\")) ((NIL NIL \"snd\" \"x\")) ",
                    "((NIL NIL \"r\" \"x\")) ((NIL NIL \"t\" \"x\")) ((\"=?UTF-8?Q?C=C3=A9?=\" NIL \"c\" \"x\")(NIL NIL \"d\" \"x\")) ",
                    "NIL \"<p@x>\" \"<m@x>\") BODY[HEADER.FIELDS (REFERENCES)] {29}"
                )
                .as_bytes()
                .to_vec(),
            ),
            Piece::Literal(b"References: <a@x>\r\n\t<p@x>\r\n\r\n".to_vec()),
            Piece::Line(b")".to_vec()),
        ];
        let Response::Fetch { atts, .. } = parse_response(pieces).unwrap() else {
            panic!()
        };
        let mut item = ResultItem::new(9);
        Extra::scan(&atts).unwrap().apply(&mut item);
        let s = |f| item.str_field(f).map(|c| c.to_str().unwrap().to_string());
        assert_eq!(s(field::CC).as_deref(), Some("C\u{e9} <c@x>, d@x"));
        assert_eq!(s(field::SENDER).as_deref(), Some("snd@x"));
        assert_eq!(s(field::REPLY_TO).as_deref(), Some("r@x"));
        assert_eq!(s(field::BCC), None);
        assert_eq!(s(field::IN_REPLY_TO).as_deref(), Some("<p@x>"));
        assert_eq!(s(field::REFERENCES).as_deref(), Some("<a@x> <p@x>"));
        assert_eq!(item.int_field(field::INTERNALDATE), Some(837_596_665));
        assert_eq!(item.int_field(field::DATE_UNIX), Some(760_686_745));
    }
}
