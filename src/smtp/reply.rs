//! SMTP replies (RFC 5321 §4.2): a three-digit code and one or more lines.

use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Write};

use crate::net::LineConn;
use crate::status::{Error, Result, Status};

/// Most lines accepted in one reply. With the connection's line limit
/// (MAX_LINE_BYTES) also bounding the whole reply's text, a server that
/// never ends a multi-line reply costs at most that much memory.
pub const MAX_REPLY_LINES: usize = 1000;

/// The reply code of a server closing the connection.
pub const CLOSING: u16 = 421;

/// Did this error come from the server closing the connection (421)?
pub fn is_closing_error(e: &Error) -> bool {
    e.reply_code == i32::from(CLOSING)
}

/// A complete reply, in one buffer: the lines' texts joined by single
/// spaces (which is the reply's [`text`](Reply::text)), with where each line
/// after the first starts. A one-line text of up to [`INLINE`] bytes (nearly
/// every reply but EHLO's) is kept inline, so reading it allocates nothing
/// and the reply stays small to move.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    text: Text,
}

/// Longest one-line text kept inline.
pub const INLINE: usize = 37;

#[derive(Clone)]
enum Text {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<Lines>),
}

/// A longer text, or one of several lines.
#[derive(Clone)]
struct Lines {
    text: String,
    /// Offsets in `text` where lines 2, 3, ... start (each after its space).
    breaks: Vec<u32>,
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            // SAFETY: only whole `&str`s are copied in (see `push_line`).
            Text::Inline { len, buf } => unsafe { std::str::from_utf8_unchecked(&buf[..*len as usize]) },
            Text::Heap(h) => &h.text,
        }
    }

    fn breaks(&self) -> &[u32] {
        match self {
            Text::Inline { .. } => &[],
            Text::Heap(h) => &h.breaks,
        }
    }

    /// Appends a line's text; `new_line`: after a separating space, as a
    /// line of its own.
    fn push_line(&mut self, line: &str, new_line: bool) {
        if let Text::Inline { len, buf } = self {
            if !new_line && *len as usize + line.len() <= INLINE {
                let at = *len as usize;
                buf[at..at + line.len()].copy_from_slice(line.as_bytes());
                *len += line.len() as u8;
                return;
            }
            let mut text = String::with_capacity(*len as usize + 1 + line.len());
            text.push_str(self.as_str());
            *self = Text::Heap(Box::new(Lines {
                text,
                breaks: Vec::new(),
            }));
        }
        let Text::Heap(h) = self else {
            unreachable!("made heap just above")
        };
        if new_line {
            h.text.push(' ');
            h.breaks.push(h.text.len() as u32);
        }
        h.text.push_str(line);
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::Inline {
            len: 0,
            buf: [0; INLINE],
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() && self.breaks() == other.breaks()
    }
}

impl Eq for Text {}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("code", &self.code)
            .field("lines", &self.lines().collect::<Vec<_>>())
            .finish()
    }
}

impl Reply {
    /// A reply of one line.
    pub fn new(code: u16, text: &str) -> Reply {
        let mut r = Reply::empty(code);
        r.push_line(0, text);
        r
    }

    /// A reply of these lines (at least one).
    #[cfg(test)]
    pub fn from_lines<'a>(code: u16, lines: impl IntoIterator<Item = &'a str>) -> Reply {
        let mut r = Reply::empty(code);
        for (i, l) in lines.into_iter().enumerate() {
            r.push_line(i, l);
        }
        r
    }

    fn empty(code: u16) -> Reply {
        Reply {
            code,
            text: Text::default(),
        }
    }

    /// Appends line number `i` (0 for the first).
    fn push_line(&mut self, i: usize, line: &str) {
        self.text.push_line(line, i > 0);
    }

    /// The text of each line, without the code and separator.
    pub fn lines(&self) -> impl Iterator<Item = &str> + '_ {
        let text = self.text.as_str();
        let breaks = self.text.breaks();
        let starts = std::iter::once(0).chain(breaks.iter().map(|&b| b as usize));
        let ends = breaks
            .iter()
            .map(|&b| b as usize - 1)
            .chain(std::iter::once(text.len()));
        starts.zip(ends).map(move |(a, b)| &text[a..b])
    }

    /// How many lines the reply had.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn line_count(&self) -> usize {
        self.text.breaks().len() + 1
    }

    /// The first line's text.
    pub fn first_line(&self) -> &str {
        let text = self.text.as_str();
        match self.text.breaks().first() {
            Some(&b) => &text[..b as usize - 1],
            None => text,
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The server is closing the connection (421, RFC 5321 §3.8): nothing
    /// more will be accepted on it.
    pub fn is_closing(&self) -> bool {
        self.code == CLOSING
    }

    /// The enhanced status code (RFC 3463) the text starts with: "4.5.3 ..." is `(4, 5, 3)`.
    pub fn enhanced(&self) -> Option<(u8, u16, u16)> {
        let word = self.first_line().split_whitespace().next()?;
        let mut parts = word.split('.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !(2..=5).contains(&class) || u16::from(class) != self.code / 100 {
            return None;
        }
        Some((class, subject, detail))
    }

    /// A recipient deferred because the transaction has too many (RFC 5321
    /// §4.5.3.1.10: 452; Dovecot says 451 4.5.3): it belongs in a later
    /// transaction.
    pub fn is_too_many_recipients(&self) -> bool {
        self.code == 452 || ((400..500).contains(&self.code) && self.enhanced() == Some((4, 5, 3)))
    }

    /// The whole text, lines joined by a space.
    pub fn text(&self) -> &str {
        self.text.as_str()
    }

    /// The status a non-positive reply maps to: 4xx TRANSIENT, 5xx REJECTED,
    /// anything else PROTOCOL.
    pub fn error(&self, context: &str) -> Error {
        let status = match self.code {
            400..=499 => Status::Transient,
            500..=599 => Status::Rejected,
            _ => Status::Protocol,
        };
        let detail = if context.is_empty() {
            self.to_string()
        } else {
            format!("{context}: {self}")
        };
        Error::with_code(status, self.code as i32, detail)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// Parses one reply line: (code, is_last, text). The text is decoded as
/// UTF-8, invalid bytes replaced: a server's 250 is its 250 whatever the
/// bytes of its comment.
pub fn parse_line(line: &[u8]) -> Result<(u16, bool, Cow<'_, str>)> {
    let bad = || {
        Error::protocol(format!(
            "malformed SMTP reply line: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(120)])
        ))
    };
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    if !(b'2'..=b'5').contains(&line[0]) {
        return Err(bad());
    }
    let code = (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    let (last, text) = match line.get(3) {
        None => (true, &line[3..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(bad()),
    };
    // ASCII (nearly every reply) is checked a word at a time; other valid
    // UTF-8 by the validator alone.
    let text = if text.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(text) })
    } else {
        match std::str::from_utf8(text) {
            Ok(t) => Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(text),
        }
    };
    Ok((code, last, text))
}

/// Reads one complete reply from `conn`: each line, and all of them
/// together, at most the connection's line limit, and at most
/// [`MAX_REPLY_LINES`] lines.
pub fn read_reply<S: Read + Write>(conn: &mut LineConn<S>) -> Result<Reply> {
    let max = conn.max_line();
    let mut reply: Option<Reply> = None;
    let mut total = 0usize;
    let mut n = 0usize;
    loop {
        let line = conn.read_line(max).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Error::protocol(format!(
                "SMTP reply line longer than {max} bytes (MAX_LINE_BYTES)"
            )),
            _ => Error::from_io(&e, "reading the SMTP reply"),
        })?;
        total += line.len() + 2;
        if total > max {
            return Err(Error::protocol(format!(
                "SMTP reply longer than {max} bytes (MAX_LINE_BYTES)"
            )));
        }
        let (code, last, text) = parse_line(line)?;
        let r = reply.get_or_insert_with(|| Reply::empty(code));
        if r.code != code {
            return Err(Error::protocol(format!(
                "SMTP reply changes code mid-reply ({} then {code})",
                r.code
            )));
        }
        r.push_line(n, &text);
        n += 1;
        if last {
            return Ok(reply.expect("a line was read"));
        }
        if n >= MAX_REPLY_LINES {
            return Err(Error::protocol("SMTP reply has too many lines"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mem::MemStream;

    fn conn(s: &str) -> LineConn<MemStream> {
        LineConn::new(MemStream::chunked(s, 3))
    }

    #[test]
    fn multiline_reply_with_partial_input() {
        let mut c = conn("250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n354 go\r\n");
        let r = read_reply(&mut c).unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(
            r.lines().collect::<Vec<_>>(),
            ["mx.example", "PIPELINING", "8BITMIME"]
        );
        assert_eq!((r.line_count(), r.first_line()), (3, "mx.example"));
        assert_eq!(r.text(), "mx.example PIPELINING 8BITMIME");
        assert_eq!(read_reply(&mut c).unwrap().code, 354);
    }

    #[test]
    fn bare_code_and_empty_text_lines() {
        // smtp-sink ends its EHLO reply with "250 " (an empty keyword).
        let mut c = conn("250-x\r\n250 \r\n250\r\n");
        assert_eq!(read_reply(&mut c).unwrap().lines().collect::<Vec<_>>(), ["x", ""]);
        assert_eq!(read_reply(&mut c).unwrap().lines().collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn a_reply_is_small_to_move() {
        assert!(std::mem::size_of::<Reply>() <= 48);
    }

    #[test]
    fn long_texts_and_many_lines_keep_every_line() {
        let long = "x".repeat(INLINE + 7);
        for lines in [
            vec!["short"],
            vec![long.as_str()],
            vec!["a", long.as_str(), "", "b c"],
        ] {
            let wire: String = lines
                .iter()
                .enumerate()
                .map(|(i, l)| format!("250{}{l}\r\n", if i + 1 == lines.len() { ' ' } else { '-' }))
                .collect();
            let r = read_reply(&mut conn(&wire)).unwrap();
            assert_eq!(r.lines().collect::<Vec<_>>(), lines);
            assert_eq!(r.text(), lines.join(" "));
            assert_eq!(r, Reply::from_lines(250, lines.iter().copied()));
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for g in ["hello\r\n", "2500 x\r\n", "999 x\r\n", "25\r\n", "250x\r\n"] {
            let e = read_reply(&mut conn(g)).unwrap_err();
            assert_eq!(e.status, Status::Protocol, "{g:?}");
        }
    }

    #[test]
    fn eof_mid_reply_is_io() {
        let e = read_reply(&mut conn("250-partial\r\n")).unwrap_err();
        assert_eq!(e.status, Status::Io);
    }

    #[test]
    fn enhanced_codes_and_too_many_recipients() {
        let r = Reply::new;
        assert_eq!(r(451, "4.5.3 Too many recipients").enhanced(), Some((4, 5, 3)));
        assert!(r(451, "4.5.3 Too many recipients").is_too_many_recipients());
        assert!(r(452, "4.5.3 Error: too many recipients").is_too_many_recipients());
        assert!(r(452, "too many").is_too_many_recipients());
        assert!(!r(451, "4.7.1 greylisted").is_too_many_recipients());
        assert!(!r(550, "5.5.3 too many").is_too_many_recipients());
        assert_eq!(r(250, "5.1.1 mismatch").enhanced(), None);
        assert_eq!(r(250, "2.1.5").enhanced(), Some((2, 1, 5)));
        assert_eq!(r(250, "ok").enhanced(), None);
    }

    #[test]
    fn error_mapping() {
        let r = |code| Reply::new(code, "x");
        assert_eq!(r(451).error("").status, Status::Transient);
        assert_eq!(r(550).error("").status, Status::Rejected);
        assert_eq!(r(550).error("").reply_code, 550);
        assert_eq!(r(354).error("").status, Status::Protocol);
        assert!(r(421).is_closing() && !r(451).is_closing());
    }
}
