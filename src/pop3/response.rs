//! POP3 status lines (RFC 1939 §3): "+OK text" or "-ERR text", where the
//! text may start with a response code in brackets (RFC 2449 §8, RESP-CODES:
//! "[IN-USE]", "[SYS/TEMP]" ...); "+ data" is a SASL continuation (RFC 5034).
//! Also the reading of single- and multi-line responses off a [`LineConn`].

use std::fmt;
use std::io::{Read, Write};

use super::codec::DotDecoder;
use crate::net::LineConn;
use crate::status::{Error, Result, Status};

/// What kind of status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ok,
    Err,
    /// "+ base64": the server wants a SASL response.
    Continue,
}

/// One status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub kind: Kind,
    /// The text after the indicator (lossy UTF-8), response code included.
    pub text: String,
}

impl Response {
    /// Parses a status line (without its line ending).
    pub fn parse(line: &[u8]) -> Result<Response> {
        let (kind, rest) = if let Some(r) = strip_indicator(line, b"+OK") {
            (Kind::Ok, r)
        } else if let Some(r) = strip_indicator(line, b"-ERR") {
            (Kind::Err, r)
        } else if line == b"+" {
            (Kind::Continue, &line[1..])
        } else if line.starts_with(b"+ ") {
            (Kind::Continue, &line[2..])
        } else {
            return Err(Error::protocol(format!(
                "malformed POP3 response: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(120)])
            )));
        };
        Ok(Response {
            kind,
            text: String::from_utf8_lossy(rest).into_owned(),
        })
    }

    pub fn is_ok(&self) -> bool {
        self.kind == Kind::Ok
    }

    /// The maildrop's size in a reply to STAT: (messages, octets). The
    /// octets are 0 when the server leaves them out or garbles them.
    pub fn stat(&self) -> Result<(usize, u64)> {
        let mut words = self.text.split_whitespace();
        let count = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| Error::protocol(format!("malformed reply to STAT: {self}")))?;
        Ok((count, words.next().and_then(|w| w.parse().ok()).unwrap_or(0)))
    }

    /// The RFC 2449 response code, upper case ("IN-USE", "SYS/TEMP"), if any.
    pub fn code(&self) -> Option<String> {
        let rest = self.text.strip_prefix('[')?;
        let end = rest.find(']')?;
        let code = &rest[..end];
        (!code.is_empty() && !code.contains(' ')).then(|| code.to_ascii_uppercase())
    }

    /// Is this a refusal that may go away (maildrop locked, login too soon,
    /// a temporary system problem)?
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code().as_deref(),
            Some("IN-USE" | "LOGIN-DELAY" | "SYS/TEMP")
        )
    }

    /// The error for a refused command: TRANSIENT for the transient codes,
    /// else REJECTED, with the server's text.
    pub fn error(&self, context: &str) -> Error {
        let status = match self.kind {
            Kind::Err if self.is_transient() => Status::Transient,
            Kind::Err => Status::Rejected,
            _ => Status::Protocol,
        };
        let detail = if context.is_empty() {
            self.to_string()
        } else {
            format!("{context}: {self}")
        };
        Error::new(status, detail)
    }

    /// The error for a refused login: AUTH, unless the code says the
    /// credentials were not the problem (TRANSIENT codes, SYS/PERM).
    pub fn auth_error(&self) -> Error {
        let status = match self.kind {
            Kind::Err if self.is_transient() => Status::Transient,
            Kind::Err if self.code().as_deref() == Some("SYS/PERM") => Status::Rejected,
            Kind::Err => Status::Auth,
            _ => Status::Protocol,
        };
        Error::new(status, format!("authentication failed: {self}"))
    }
}

fn strip_indicator<'a>(line: &'a [u8], ind: &[u8]) -> Option<&'a [u8]> {
    if line.len() < ind.len() || !line[..ind.len()].eq_ignore_ascii_case(ind) {
        return None;
    }
    match line.get(ind.len()) {
        None => Some(&line[ind.len()..]),
        Some(b' ') => Some(&line[ind.len() + 1..]),
        Some(_) => None,
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ind = match self.kind {
            Kind::Ok => "+OK",
            Kind::Err => "-ERR",
            Kind::Continue => "+",
        };
        if self.text.is_empty() {
            f.write_str(ind)
        } else {
            write!(f, "{ind} {}", self.text)
        }
    }
}

/// Maps a read error: an overlong line is a protocol error, the rest IO or TIMEOUT.
pub fn read_error(e: &std::io::Error, max_line: usize) -> Error {
    match e.kind() {
        std::io::ErrorKind::InvalidData => Error::protocol(format!(
            "POP3 response line longer than {max_line} bytes (MAX_LINE_BYTES)"
        )),
        _ => Error::from_io(e, "reading from the POP3 server"),
    }
}

/// Reads one status line (at most the connection's line limit).
pub fn read_response<S: Read + Write>(conn: &mut LineConn<S>) -> Result<Response> {
    let max = conn.max_line();
    let line = conn.read_line(max).map_err(|e| read_error(&e, max))?;
    Response::parse(line)
}

/// What each listing line costs beyond its bytes (a `String` of its own).
pub const LISTING_LINE_OVERHEAD: usize = 32;

/// Reads the lines of a multi-line listing (CAPA, UIDL, LIST) up to the
/// terminating ".", dots unstuffed: at most `max_lines` lines, and at most
/// `max_bytes` bytes, counting [`LISTING_LINE_OVERHEAD`] more per line.
pub fn read_listing<S: Read + Write>(
    conn: &mut LineConn<S>,
    max_lines: usize,
    max_bytes: usize,
) -> Result<Vec<String>> {
    let max = conn.max_line();
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let line = conn.read_line(max).map_err(|e| read_error(&e, max))?;
        if line == b"." {
            return Ok(lines);
        }
        if lines.len() >= max_lines {
            return Err(Error::protocol(format!(
                "the server's listing has more than the {max_lines} lines it announced"
            )));
        }
        total += line.len() + LISTING_LINE_OVERHEAD;
        if total > max_bytes {
            return Err(Error::new(
                Status::Limit,
                format!("the server's listing is larger than {max_bytes} bytes"),
            ));
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        lines.push(String::from_utf8_lossy(line).into_owned());
    }
}

/// Body bytes read between progress reports.
const PROGRESS_EVERY: usize = 256 * 1024;

/// Reads a multi-line body (RETR, TOP) into `out`, byte-exact, at most
/// `limit` bytes; `progress` hears the byte count now and then.
pub fn read_body<S: Read + Write>(
    conn: &mut LineConn<S>,
    limit: usize,
    out: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut d = DotDecoder::new(limit);
    let mut reported = 0;
    loop {
        let max_line = conn.max_line();
        let n = {
            let buf = conn.fill_buf().map_err(|e| read_error(&e, max_line))?;
            d.feed(buf, out)?
        };
        conn.consume(n);
        if d.is_done() {
            return Ok(());
        }
        if d.produced() - reported >= PROGRESS_EVERY {
            reported = d.produced();
            progress(reported as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mem::MemStream;

    #[test]
    fn stat_replies() {
        let r = |l: &[u8]| Response::parse(l).unwrap().stat();
        assert_eq!(r(b"+OK 2 320").unwrap(), (2, 320));
        assert_eq!(r(b"+OK 7").unwrap(), (7, 0));
        assert_eq!(r(b"+OK many").unwrap_err().status, Status::Protocol);
    }

    #[test]
    fn status_lines() {
        let r = Response::parse(b"+OK 2 320").unwrap();
        assert!(r.is_ok());
        assert_eq!(r.text, "2 320");
        let r = Response::parse(b"+OK").unwrap();
        assert!(r.is_ok() && r.text.is_empty());
        let r = Response::parse(b"-ERR [IN-USE] Mailbox locked").unwrap();
        assert_eq!(r.kind, Kind::Err);
        assert_eq!(r.code().as_deref(), Some("IN-USE"));
        assert_eq!(r.error("").status, Status::Transient);
        assert_eq!(r.to_string(), "-ERR [IN-USE] Mailbox locked");
        assert_eq!(Response::parse(b"+ ").unwrap().kind, Kind::Continue);
        assert_eq!(Response::parse(b"+").unwrap().kind, Kind::Continue);
        assert_eq!(
            Response::parse(b"+ eyJzdGF0dXMiOiI0MDEifQ==").unwrap().text,
            "eyJzdGF0dXMiOiI0MDEifQ=="
        );
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for g in [
            &b"HELLO"[..],
            b"",
            b"+OKAY",
            b"-ERROR x",
            b"* OK imap",
            b"220 smtp",
        ] {
            assert_eq!(Response::parse(g).unwrap_err().status, Status::Protocol, "{g:?}");
        }
    }

    #[test]
    fn error_mapping() {
        let e = |s: &[u8]| Response::parse(s).unwrap();
        assert_eq!(e(b"-ERR no such message").error("RETR").status, Status::Rejected);
        assert_eq!(
            e(b"-ERR [SYS/TEMP] try later").error("").status,
            Status::Transient
        );
        assert_eq!(
            e(b"-ERR [AUTH] Authentication failed.").auth_error().status,
            Status::Auth
        );
        assert_eq!(e(b"-ERR bad password").auth_error().status, Status::Auth);
        assert_eq!(e(b"-ERR [IN-USE] locked").auth_error().status, Status::Transient);
        assert_eq!(
            e(b"-ERR [LOGIN-DELAY] wait").auth_error().status,
            Status::Transient
        );
        assert_eq!(e(b"-ERR [SYS/PERM] broken").auth_error().status, Status::Rejected);
        assert!(e(b"-ERR [AUTH] x").auth_error().detail.contains("-ERR [AUTH] x"));
        assert_eq!(e(b"-ERR [not a code] x").code(), None);
    }

    /// Input trickled a few bytes at a time.
    fn conn(s: &[u8]) -> LineConn<MemStream> {
        LineConn::new(MemStream::chunked(s, 3))
    }

    #[test]
    fn responses_in_sequence_with_partial_input() {
        let mut c = conn(
            b"+OK 2 messages\r\n1 abc\r\n2 .dotted\r\n..stuffed\r\n.\r\n+OK 120 octets\r\nbody\r\n..x\r\n.\r\n-ERR no\r\n",
        );
        assert!(read_response(&mut c).unwrap().is_ok());
        assert_eq!(
            read_listing(&mut c, 10, 1000).unwrap(),
            ["1 abc", "2 .dotted", ".stuffed"]
        );
        assert!(read_response(&mut c).unwrap().is_ok());
        let mut body = Vec::new();
        read_body(&mut c, 1000, &mut body, &mut |_| {}).unwrap();
        assert_eq!(body, b"body\r\n.x\r\n");
        assert_eq!(read_response(&mut c).unwrap().kind, Kind::Err);
    }

    #[test]
    fn listing_longer_than_announced_is_an_error() {
        let mut c = conn(b"1 a\r\n2 b\r\n3 c\r\n.\r\n");
        assert_eq!(
            read_listing(&mut c, 2, 1000).unwrap_err().status,
            Status::Protocol
        );
    }

    #[test]
    fn listing_larger_than_its_byte_bound_is_limit() {
        let mut input = Vec::new();
        for i in 0..100 {
            input.extend_from_slice(format!("{i} {}\r\n", "u".repeat(60)).as_bytes());
        }
        input.extend_from_slice(b".\r\n");
        let e = read_listing(&mut conn(&input), 1000, 4096).unwrap_err();
        assert_eq!(e.status, Status::Limit, "{e:?}");
        assert_eq!(read_listing(&mut conn(&input), 1000, 100_000).unwrap().len(), 100);
    }

    #[test]
    fn line_limit_is_the_connections() {
        let mut c = conn(&[b"+OK ".as_slice(), &[b'x'; 2000], b"\r\n"].concat());
        c.set_max_line(1024);
        assert_eq!(read_response(&mut c).unwrap_err().status, Status::Protocol);
        let mut c = conn(&[b"+OK ".as_slice(), &[b'x'; 2000], b"\r\n"].concat());
        c.set_max_line(4096);
        assert!(read_response(&mut c).unwrap().is_ok());
    }

    #[test]
    fn endless_status_line_is_a_protocol_error() {
        let mut input = b"+OK ".to_vec();
        input.extend(std::iter::repeat_n(
            b'x',
            crate::options::DEFAULT_MAX_LINE_BYTES + 10,
        ));
        let e = read_response(&mut conn(&input)).unwrap_err();
        assert_eq!(e.status, Status::Protocol);
    }

    #[test]
    fn eof_mid_body_is_io() {
        let mut c = conn(b"partial\r\n");
        let e = read_body(&mut c, 1000, &mut Vec::new(), &mut |_| {}).unwrap_err();
        assert_eq!(e.status, Status::Io);
    }
}
