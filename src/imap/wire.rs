//! One IMAP connection's bytes: a read buffer shared by herald's own
//! response reader and by the `imap` crate, and the protocol trace.
//!
//! The crate reads through [`Wire`], which hands it at most one line (or
//! the rest of a literal) per `read`: so the crate's internal buffer never
//! holds bytes past the response it asked for, and herald's reader and the
//! crate can take turns on the same connection. Literals are read straight
//! into their own `Vec` ([`Conn::read_literal`]): a fetched message is
//! copied once, from the socket into the buffer the result hands to C.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::log::{Tracer, TRACE};
use crate::net::{LineConn, Stream};

/// Longest response line (without literals) herald reads.
pub const MAX_LINE: usize = 64 * 1024 * 1024;
/// Largest literal herald accepts from a server.
pub const MAX_LITERAL: usize = 2 * 1024 * 1024 * 1024 - 1;
/// The first allocation for a literal; it grows as bytes arrive, so a
/// server announcing a huge literal costs only what it really sends.
const LITERAL_PREALLOC: usize = 16 * 1024 * 1024;
/// Literal rests at least this large are read straight into their buffer.
const DIRECT_READ: usize = 128 * 1024;
/// Most of a server line shown in the trace.
const TRACE_MAX: usize = 2000;

/// A connection: the stream with its read buffer, and the trace.
pub struct Conn {
    lc: LineConn<Stream>,
    pub trace: Tracer,
    /// Hide client lines from the trace (while logging in).
    pub hide_client: bool,
    /// Client bytes not yet traced (an unfinished line).
    out_line: Vec<u8>,
    /// The crate's view: bytes of a literal still to hand over.
    wire_literal: usize,
    /// The crate's view: the server line being handed over, for the trace.
    wire_line: Vec<u8>,
    /// herald's own command tags: `h1`, `h2`... (the crate uses `a1`...).
    tag: u32,
}

/// If `line` (without CRLF) ends with a literal marker `{n}` or `{n+}`, n.
pub fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn trimmed(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Conn {
    pub fn new(stream: Stream, trace: Tracer) -> Conn {
        Conn {
            lc: LineConn::new(stream),
            trace,
            hide_client: false,
            out_line: Vec::new(),
            wire_literal: 0,
            wire_line: Vec::new(),
            tag: 0,
        }
    }

    pub fn stream(&self) -> &Stream {
        self.lc.get_ref()
    }

    /// Takes the stream out (for STARTTLS), with what was buffered.
    pub fn into_parts(self) -> (Stream, Tracer, usize) {
        let buffered = self.lc.buffered();
        (self.lc.into_inner(), self.trace, buffered)
    }

    pub fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("h{}", self.tag)
    }

    pub fn buffered(&self) -> usize {
        self.lc.buffered()
    }

    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.lc.get_ref().tcp().set_read_timeout(Some(t))
    }

    /// Waits for bytes from the server (up to the read timeout), buffering them.
    pub fn fill(&mut self) -> io::Result<()> {
        self.lc.fill_buf().map(|_| ())
    }

    /// Reads one line, without its CRLF (or bare LF).
    pub fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let line = self.lc.read_line(MAX_LINE).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                io::Error::new(io::ErrorKind::InvalidData, "response line too long")
            } else {
                e
            }
        })?;
        let line = line.to_vec();
        self.trace_in(&line);
        Ok(line)
    }

    /// Reads an `n`-byte literal into a buffer of its own. `progress` is
    /// told the bytes read so far, now and then.
    pub fn read_literal(&mut self, n: usize, progress: &mut dyn FnMut(usize)) -> io::Result<Vec<u8>> {
        if n > MAX_LITERAL {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the server announced a literal of {n} bytes"),
            ));
        }
        let mut out = Vec::with_capacity(n.min(LITERAL_PREALLOC));
        let take = n.min(self.lc.buffered());
        out.extend_from_slice(&self.lc.buffered_bytes()[..take]);
        self.lc.consume(take);
        // A small rest through the buffer: one read brings it and what follows.
        while out.len() < n && n - out.len() < DIRECT_READ {
            let avail = self.lc.fill_buf()?;
            let take = (n - out.len()).min(avail.len());
            out.extend_from_slice(&avail[..take]);
            self.lc.consume(take);
        }
        // A large one straight from the socket into `out`, in steps that report progress.
        const STEP: usize = 1024 * 1024;
        while out.len() < n {
            let want = (n - out.len()).min(STEP);
            let before = out.len();
            let got = self.lc.get_mut().take(want as u64).read_to_end(&mut out)?;
            if got == 0 || out.len() == before {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            progress(out.len());
        }
        if self.trace.enabled(TRACE) {
            self.trace.log(TRACE, || format!("S: <literal, {n} bytes>"));
        }
        Ok(out)
    }

    fn trace_in(&self, line: &[u8]) {
        if self.trace.enabled(TRACE) {
            let shown = &line[..line.len().min(TRACE_MAX)];
            let more = if line.len() > TRACE_MAX { "..." } else { "" };
            self.trace
                .log(TRACE, || format!("S: {}{more}", String::from_utf8_lossy(shown)));
        }
    }

    /// Writes `data` (whole command lines) and flushes.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.trace_out(data);
        self.lc.send(data)
    }

    /// Writes bytes that are not traced (a literal's content).
    pub fn send_quiet(&mut self, data: &[u8]) -> io::Result<()> {
        self.lc.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.lc.flush()
    }

    /// Traces client lines; with `hide_client`, only the command's name.
    pub fn trace_out(&mut self, data: &[u8]) {
        if !self.trace.enabled(TRACE) {
            return;
        }
        self.out_line.extend_from_slice(data);
        while let Some(pos) = self.out_line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.out_line.drain(..=pos).collect();
            let text = String::from_utf8_lossy(trimmed(&line)).into_owned();
            let shown = if self.hide_client {
                let words: Vec<&str> = text.splitn(4, ' ').collect();
                match words.as_slice() {
                    [tag, cmd, mech, ..] if cmd.eq_ignore_ascii_case("AUTHENTICATE") => {
                        format!("{tag} {cmd} {mech} <credentials hidden>")
                    }
                    [tag, cmd, ..] if cmd.eq_ignore_ascii_case("LOGIN") => {
                        format!("{tag} {cmd} <credentials hidden>")
                    }
                    _ => "<credentials hidden>".to_string(),
                }
            } else {
                let n = text.len().min(TRACE_MAX);
                let cut = (0..=n).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                text[..cut].to_string()
            };
            self.trace.log(TRACE, || format!("C: {shown}"));
        }
        if self.out_line.len() > TRACE_MAX {
            self.out_line.clear();
        }
    }

    /// The crate's read: at most one line, or the rest of a literal.
    fn wire_read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let avail = self.lc.fill_buf()?;
        let n = if self.wire_literal > 0 {
            let n = avail.len().min(self.wire_literal).min(out.len());
            self.wire_literal -= n;
            out[..n].copy_from_slice(&avail[..n]);
            n
        } else {
            let upto = avail
                .iter()
                .position(|&b| b == b'\n')
                .map_or(avail.len(), |p| p + 1);
            let n = upto.min(out.len());
            out[..n].copy_from_slice(&avail[..n]);
            if self.wire_line.len() < TRACE_MAX * 2 {
                self.wire_line.extend_from_slice(&avail[..n]);
            }
            if avail[..n].last() == Some(&b'\n') {
                let line = std::mem::take(&mut self.wire_line);
                let line = trimmed(&line);
                self.trace_in(line);
                if let Some(len) = literal_len(line) {
                    self.wire_literal = len;
                    if self.trace.enabled(TRACE) {
                        self.trace.log(TRACE, || format!("S: <literal, {len} bytes>"));
                    }
                }
            }
            n
        };
        self.lc.consume(n);
        Ok(n)
    }
}

/// The stream the `imap` crate drives: herald's connection, shared.
pub struct Wire(pub Arc<Mutex<Conn>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.lock().wire_read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = self.0.lock();
        let n = c.lc.get_mut().write(buf)?;
        c.trace_out(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().lc.flush()
    }
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_markers() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {123}"), Some(123));
        assert_eq!(literal_len(b"A1 APPEND x {5+}"), Some(5));
        assert_eq!(literal_len(b"* OK {x}"), None);
        assert_eq!(literal_len(b"* OK {}"), None);
        assert_eq!(literal_len(b"* OK done"), None);
        assert_eq!(literal_len(b"{99999999999999}"), None);
    }
}
