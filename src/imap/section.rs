//! One body section of a message, decoded (`herald_imap_fetch_section_async`):
//! a part by number ("2", "1.2"), or "TEXT", "HEADER", "1.TEXT",
//! "2.HEADER", "1.MIME".
//!
//! A part number is decoded from its Content-Transfer-Encoding (base64,
//! quoted-printable) and a byte range applies to the decoded bytes:
//! - with BINARY (RFC 3516) the server decodes, and the range goes to it
//!   (`BINARY.PEEK[2]<0.65536>`): only the bytes asked for travel;
//! - without BINARY, or when the server cannot decode the part (NO
//!   [UNKNOWN-CTE]), herald fetches the part and its MIME header
//!   (`BODY.PEEK[2] BODY.PEEK[2.MIME]`), decodes it and cuts the range
//!   out itself, so the result is the same, at the cost of the whole part.
//!
//! TEXT, HEADER and MIME sections are returned as stored, never decoded,
//! and a range applies to those bytes (`BODY.PEEK[TEXT]<0.100>`).

use super::parse::{Cond, Response, Value};
use super::session::Session;
use super::{Command, Ticket};
use crate::parsed::decode_transfer;
use crate::result::{field, Outcome, ResultData, ResultItem, Success};
use crate::status::{Error, Result, Status};

/// Largest IMAP partial origin or length (a 32-bit number).
const MAX_PARTIAL: u64 = u32::MAX as u64;

/// Checks a section name as herald sends it: part numbers (1 or more,
/// dot separated), optionally followed by `.TEXT`, `.HEADER` or `.MIME`,
/// or a lone `TEXT` or `HEADER`. Upper-cases the keyword.
pub fn check_section(s: &str) -> Result<String> {
    let bad = || {
        Error::invalid(format!(
            "section {s:?} is not a part number (\"2\", \"1.2\"), TEXT, HEADER, or a part number with .TEXT, .HEADER or .MIME"
        ))
    };
    let up = s.to_ascii_uppercase();
    let mut nums = 0;
    let mut words = up.split('.').peekable();
    while let Some(w) = words.next() {
        let last = words.peek().is_none();
        if !w.is_empty() && w.len() <= 9 && w.bytes().all(|b| b.is_ascii_digit()) && !w.starts_with('0') {
            nums += 1;
            continue;
        }
        let keyword = matches!(w, "TEXT" | "HEADER") || (w == "MIME" && nums > 0);
        if !(last && keyword) {
            return Err(bad());
        }
    }
    if up.is_empty() {
        return Err(bad());
    }
    Ok(up)
}

/// Checks a byte range: both fit IMAP's 32-bit partial numbers.
pub fn check_range(offset: u64, max_len: u64) -> Result<()> {
    if offset > MAX_PARTIAL || max_len > MAX_PARTIAL {
        return Err(Error::invalid(format!(
            "offset {offset} or max_len {max_len} is over IMAP's limit of {MAX_PARTIAL}"
        )));
    }
    Ok(())
}

fn partial(offset: u64, max_len: u64) -> String {
    if offset == 0 && max_len == 0 {
        String::new()
    } else {
        let len = if max_len == 0 { MAX_PARTIAL } else { max_len };
        format!("<{offset}.{len}>")
    }
}

fn is_part_number(section: &str) -> bool {
    section.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A section's name as the server labels it (upper case, no partial origin) and its bytes.
type Section = (String, Vec<u8>);

/// A section fetch, as one op.
pub struct SectionFetch<'a> {
    pub mailbox: &'a str,
    pub uid: u64,
    pub section: &'a str,
    pub offset: u64,
    pub max_len: u64,
}

impl SectionFetch<'_> {
    pub fn run(&self, s: &mut Session, t: &Ticket) -> Outcome {
        s.select(self.mailbox, false)?;
        let part = is_part_number(self.section);
        let range = partial(self.offset, self.max_len);
        let data = if part && s.caps.has("BINARY") {
            let items = format!("UID BINARY.PEEK[{}]{range}", self.section);
            match self.fetch(s, t, &items)? {
                Some(mut got) => got.pop().map(|(_, v)| v),
                // The server can't decode it: herald does.
                None => self.decoded(s, t)?,
            }
        } else if part {
            self.decoded(s, t)?
        } else {
            let items = format!("UID BODY.PEEK[{}]{range}", self.section);
            self.fetch(s, t, &items)?
                .and_then(|mut got| got.pop().map(|(_, v)| v))
        };
        let Some(data) = data else {
            return Err(Error::new(
                Status::NotFound,
                format!(
                    "UID {} in {} has no section {}",
                    self.uid, self.mailbox, self.section
                ),
            ));
        };
        let n = data.len();
        let item = ResultItem::new(self.uid)
            .with_str(field::NAME, self.section)
            .with_int(field::SIZE, n as u64)
            .with_bytes(data);
        Ok(
            Success::new(0, format!("{n} bytes of section {} fetched", self.section))
                .with_result(ResultData::new(vec![item])),
        )
    }

    /// Without BINARY: the part and its MIME header, decoded here, the range cut here.
    fn decoded(&self, s: &mut Session, t: &Ticket) -> Result<Option<Vec<u8>>> {
        let sec = self.section;
        let items = format!("UID BODY.PEEK[{sec}.MIME] BODY.PEEK[{sec}]");
        let got = self.fetch(s, t, &items)?.unwrap_or_default();
        let mut body = None;
        let mut encoding = String::new();
        for (name, v) in got {
            if name.ends_with(".MIME]") {
                encoding = transfer_encoding(&v);
            } else {
                body = Some(v);
            }
        }
        let Some(body) = body else { return Ok(None) };
        let decoded = decode_transfer(&encoding, body);
        let start = (self.offset as usize).min(decoded.len());
        let end = match self.max_len {
            0 => decoded.len(),
            n => start.saturating_add(n as usize).min(decoded.len()),
        };
        Ok(Some(decoded[start..end].to_vec()))
    }

    /// Sends `UID FETCH uid (items)` and collects the string items of the
    /// message's FETCH responses (name upper case without the partial's
    /// origin, bytes); `None` for a NO [UNKNOWN-CTE] (RFC 3516).
    fn fetch(&self, s: &mut Session, t: &Ticket, items: &str) -> Result<Option<Vec<Section>>> {
        let tag = s.conn().next_tag();
        let uid = self.uid.to_string();
        s.send(Command::UidFetch { uids: &uid, items }.line(&tag).as_bytes())?;
        let mut got = Vec::new();
        loop {
            match s.read_response(&mut |n| t.progress(n as u64, 0))? {
                Response::Tagged { tag: tg, status } if tg == tag => {
                    if status.cond == Cond::No && status.code_name().as_deref() == Some("UNKNOWN-CTE") {
                        return Ok(None);
                    }
                    if status.cond != Cond::Ok {
                        return Err(status.error(&format!("UID FETCH {uid} ({items}) in {}", self.mailbox)));
                    }
                    return Ok(Some(got));
                }
                Response::Tagged { tag: tg, .. } => {
                    return Err(Error::protocol(format!("a reply with tag {tg} to UID FETCH")))
                }
                Response::Fetch { atts, .. } => {
                    if !answers(&atts, self.uid) {
                        continue;
                    }
                    let mut it = atts.into_iter();
                    while let (Some(name), Some(v)) = (it.next(), it.next()) {
                        let Some(name) = name.atom().map(str::to_ascii_uppercase) else {
                            continue;
                        };
                        if !(name.starts_with("BODY[") || name.starts_with("BINARY[")) {
                            continue;
                        }
                        if let Value::Str(b) = v {
                            // A partial's name carries its origin: BODY[2]<0>.
                            let name = name.split('<').next().unwrap_or("").to_string();
                            got.push((name, b));
                        }
                    }
                }
                r => super::session::track(&mut s.selected, &r),
            }
        }
    }
}

/// Is this FETCH response about message `uid` (not just flag news)?
fn answers(atts: &[Value], uid: u64) -> bool {
    atts.chunks(2).any(|kv| {
        kv[0].atom().is_some_and(|a| a.eq_ignore_ascii_case("UID"))
            && kv.get(1).and_then(Value::number) == Some(uid)
    })
}

/// The Content-Transfer-Encoding in a MIME header block ("" when none).
fn transfer_encoding(header: &[u8]) -> String {
    let text = String::from_utf8_lossy(header);
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-transfer-encoding"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_checked_before_they_are_sent() {
        for ok in [
            "1", "1.2", "12.3.4", "TEXT", "header", "1.TEXT", "2.HEADER", "1.mime",
        ] {
            assert!(check_section(ok).is_ok(), "{ok}");
        }
        assert_eq!(check_section("1.mime").unwrap(), "1.MIME");
        for bad in [
            "",
            "0",
            "01",
            "1.",
            ".1",
            "1..2",
            "MIME",
            "TEXT.1",
            "1.TEXT.2",
            "HEADER.FIELDS (X)",
            "1]",
            "1 2",
            "1\r\nA LOGOUT",
            "1234567890",
        ] {
            assert!(check_section(bad).is_err(), "{bad:?}");
        }
        assert!(check_range(MAX_PARTIAL, 1).is_ok());
        assert!(check_range(MAX_PARTIAL + 1, 1).is_err());
        assert_eq!(partial(0, 0), "");
        assert_eq!(partial(0, 65536), "<0.65536>");
        assert_eq!(partial(10, 0), "<10.4294967295>");
    }

    #[test]
    fn transfer_encodings_from_a_mime_header() {
        assert_eq!(
            transfer_encoding(b"Content-Type: image/png\r\nContent-Transfer-Encoding: BASE64 \r\n\r\n"),
            "base64"
        );
        assert_eq!(transfer_encoding(b"Content-Type: text/plain\r\n\r\n"), "");
    }
}
