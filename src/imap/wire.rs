//! One IMAP connection's bytes: the bounded response reader, the writes,
//! and the protocol trace. This is the only place that reads from an IMAP
//! socket.
//!
//! Limits, per connection (see the module doc of [`super`]):
//! - the text of one response (its lines, without the literals they
//!   announce) is at most `MAX_LINE_BYTES`; longer is PROTOCOL and the
//!   connection is dropped;
//! - the literals of one response together are at most
//!   `MAX_MESSAGE_BYTES`; a larger one is LIMIT, announced or not, and the
//!   connection is dropped (its stream is mid-literal);
//! - lists nest at most `parse::MAX_DEPTH` levels (PROTOCOL).
//!
//! Literals are read straight into their own `Vec` ([`Conn::read_literal`]):
//! a fetched message is copied once, from the socket into the buffer the
//! result hands to C.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::parse::{self, Piece, Response};
use crate::log::{Tracer, TRACE};
use crate::net::{ConnCtl, LineConn, Stream};
use crate::status::{Error, Result, Status};

/// The first allocation for a literal; it grows as bytes arrive, so a
/// server announcing a huge literal costs only what it really sends.
const LITERAL_PREALLOC: usize = 1024 * 1024;
/// Literal rests at least this large are read straight into their buffer.
const DIRECT_READ: usize = 128 * 1024;
/// Most of a server line shown in the trace.
const TRACE_MAX: usize = 2000;

/// What one response may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of response text (lines without CRLF, literals excluded).
    pub text: usize,
    /// Bytes of literals.
    pub literals: usize,
}

/// A stream whose read timeout can be set (a socket; in-memory streams
/// for tests ignore it).
pub trait ReadTimeout {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()>;
}

impl ReadTimeout for Stream {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.tcp().set_read_timeout(Some(t))
    }
}

/// The stream under the read buffer: with a deadline set, no read waits
/// past it, however slowly the server trickles bytes.
pub struct Timed<S> {
    inner: S,
    deadline: Option<Instant>,
    /// The read timeout last set (None: as the socket was opened).
    per_read: Option<Duration>,
    /// A read under the deadline changed the socket's timeout.
    changed: bool,
}

impl<S: Read + ReadTimeout> Read for Timed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(at) = self.deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            self.inner
                .set_read_timeout(self.per_read.map_or(left, |p| p.min(left)))?;
            self.changed = true;
        }
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Timed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A connection: the stream with its read buffer, and the trace.
pub struct Conn<S = Stream> {
    lc: LineConn<Timed<S>>,
    pub trace: Tracer,
    limits: Limits,
    /// Hide client lines from the trace (while logging in).
    pub hide_client: bool,
    /// Client bytes not yet traced (an unfinished line).
    out_line: Vec<u8>,
    /// A read failed or was refused part way: the stream is out of step.
    broken: bool,
    /// herald's command tags: `h1`, `h2`...
    tag: u32,
    /// Set when a cancel or deadline shuts the connection down: reading
    /// stops at once, not after what was already buffered.
    ctl: Option<std::sync::Arc<ConnCtl>>,
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

/// An I/O error as herald reports it: framing errors are PROTOCOL.
pub fn io_error(e: io::Error, what: &str) -> Error {
    if e.kind() == io::ErrorKind::InvalidData {
        return Error::protocol(format!("{what}: {e}"));
    }
    Error::from_io(&e, what)
}

impl Conn<Stream> {
    pub fn stream(&self) -> &Stream {
        &self.lc.get_ref().inner
    }

    /// Takes the stream out (for STARTTLS), with what was buffered.
    pub fn into_parts(self) -> (Stream, Tracer, usize) {
        let buffered = self.lc.buffered();
        (self.lc.into_inner().inner, self.trace, buffered)
    }

    /// Each read waits at most `t` (and never past a deadline).
    pub fn set_read_timeout(&mut self, t: Duration) -> io::Result<()> {
        let timed = self.lc.get_mut();
        timed.per_read = Some(t);
        timed.inner.set_read_timeout(t)
    }
}

impl<S: Read + Write + ReadTimeout> Conn<S> {
    pub fn new(stream: S, trace: Tracer, limits: Limits) -> Conn<S> {
        let stream = Timed {
            inner: stream,
            deadline: None,
            per_read: None,
            changed: false,
        };
        Conn {
            lc: LineConn::new(stream),
            trace,
            limits,
            hide_client: false,
            out_line: Vec::new(),
            broken: false,
            tag: 0,
            ctl: None,
        }
    }

    /// Stops reading when `ctl` is aborted.
    pub fn with_ctl(mut self, ctl: std::sync::Arc<ConnCtl>) -> Self {
        self.ctl = Some(ctl);
        self
    }

    pub fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("h{}", self.tag)
    }

    pub fn buffered(&self) -> usize {
        self.lc.buffered()
    }

    #[cfg(test)]
    pub fn inner(&self) -> &S {
        &self.lc.get_ref().inner
    }

    /// From now on no read waits past `at` (a read then fails TIMEOUT and
    /// the connection is broken); `None` ends that.
    pub fn set_deadline(&mut self, at: Option<Instant>) -> io::Result<()> {
        let t = self.lc.get_mut();
        t.deadline = at;
        match (at, t.per_read) {
            (None, Some(p)) if std::mem::take(&mut t.changed) => t.inner.set_read_timeout(p),
            _ => Ok(()),
        }
    }

    /// Is a whole one-line response (no literal) already buffered, so that
    /// reading it cannot block?
    pub fn line_buffered(&self) -> bool {
        let b = self.lc.buffered_bytes();
        match b.iter().position(|&c| c == b'\n') {
            Some(p) => !trimmed(&b[..=p]).ends_with(b"}"),
            None => false,
        }
    }

    /// Did a read fail part way, leaving the stream out of step?
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Waits for bytes from the server (up to the read timeout), buffering them.
    pub fn fill(&mut self) -> io::Result<()> {
        self.lc.fill_buf().map(|_| ())
    }

    /// Reads one whole response: its first line, and while a line ends
    /// with a literal marker, the literal and the next line; then parses
    /// it. Any error leaves the connection broken.
    pub fn read_response(&mut self, progress: &mut dyn FnMut(usize)) -> Result<Response> {
        if self.ctl.as_ref().is_some_and(|c| c.is_aborted()) {
            self.broken = true;
            return Err(Error::cancelled());
        }
        let r = self.read_pieces(progress).and_then(parse::parse_response);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    fn read_pieces(&mut self, progress: &mut dyn FnMut(usize)) -> Result<Vec<Piece>> {
        let what = "reading from the IMAP server";
        let mut pieces = Vec::new();
        let mut text_left = self.limits.text;
        let mut literals_left = self.limits.literals;
        loop {
            let line = self.read_line(text_left).map_err(|e| io_error(e, what))?;
            text_left -= line.len();
            let untagged = match pieces.first() {
                Some(Piece::Line(l)) => l.starts_with(b"* "),
                _ => line.starts_with(b"* "),
            };
            let lit = if untagged { literal_len(&line) } else { None };
            pieces.push(Piece::Line(line));
            let Some(n) = lit else { break };
            if n > literals_left {
                return Err(Error::new(
                    Status::Limit,
                    format!(
                        "the server sent a literal of {n} bytes; MAX_MESSAGE_BYTES allows {} per response",
                        self.limits.literals
                    ),
                ));
            }
            literals_left -= n;
            pieces.push(Piece::Literal(
                self.read_literal(n, progress).map_err(|e| io_error(e, what))?,
            ));
        }
        Ok(pieces)
    }

    /// Reads one line of at most `max` bytes, without its CRLF (or bare LF).
    fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let line = self.lc.read_line(max).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a response longer than {} bytes (MAX_LINE_BYTES)",
                        self.limits.text
                    ),
                )
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
    fn read_literal(&mut self, n: usize, progress: &mut dyn FnMut(usize)) -> io::Result<Vec<u8>> {
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
}

/// Reads every response in `input` as herald's reader would, until the
/// input ends or a response is refused: the entry point of the fuzz target
/// and of the regression corpus. Never panics; memory stays within the
/// limits whatever the input.
#[doc(hidden)]
pub fn read_all(input: &[u8], limits: Limits) -> Vec<Result<Response>> {
    struct Input<'a>(&'a [u8]);
    impl Read for Input<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for Input<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl ReadTimeout for Input<'_> {
        fn set_read_timeout(&self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Conn::new(Input(input), Tracer::default(), limits);
    let mut out = Vec::new();
    loop {
        let r = c.read_response(&mut |_| {});
        let stop = r.is_err();
        out.push(r);
        if stop {
            return out;
        }
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
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {-5}"), None);
    }

    const SMALL: Limits = Limits {
        text: 1000,
        literals: 100,
    };

    fn statuses(input: &[u8]) -> Vec<std::result::Result<(), Status>> {
        read_all(input, SMALL)
            .into_iter()
            .map(|r| r.map(|_| ()).map_err(|e| e.status))
            .collect()
    }

    /// A server sending a byte every 20 ms, forever.
    struct Trickle;

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(20));
            buf[0] = b'x';
            Ok(1)
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl ReadTimeout for Trickle {
        fn set_read_timeout(&self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_deadline_ends_a_trickled_response() {
        let mut c = Conn::new(Trickle, Tracer::default(), SMALL);
        let started = Instant::now();
        c.set_deadline(Some(started + Duration::from_millis(200)))
            .unwrap();
        let e = c.read_response(&mut |_| {}).unwrap_err();
        assert_eq!(e.status, Status::Timeout, "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(c.is_broken());
    }

    #[test]
    fn responses_over_the_limits_are_refused() {
        // A line over the text limit: PROTOCOL, without reading it all.
        let mut long = b"* SEARCH".to_vec();
        long.extend(b" 1".repeat(100_000));
        assert_eq!(statuses(&long), [Err(Status::Protocol)]);
        // Many short lines chained by literals count together.
        let mut chained = b"* 1 FETCH (".to_vec();
        for _ in 0..200 {
            chained.extend_from_slice(b"X {1}\r\nx ");
        }
        assert_eq!(statuses(&chained), [Err(Status::Limit)]);
        // A literal over the literal limit: LIMIT, before reading it.
        assert_eq!(statuses(b"* 1 FETCH (BODY[] {101}\r\n"), [Err(Status::Limit)]);
        assert_eq!(
            statuses(b"* 1 FETCH (BODY[] {999999999999}\r\n"),
            [Err(Status::Limit)]
        );
        // A negative or absurd size is no literal: a malformed response.
        assert_eq!(statuses(b"* 1 FETCH (BODY[] {-1}\r\n"), [Err(Status::Protocol)]);
        // Within the limits: read, then the end of the input.
        assert_eq!(statuses(b"* 1 FETCH (UID 1 BODY[] {100}\r\n")[0], Err(Status::Io));
        let mut ok = b"* 1 FETCH (UID 1 BODY[] {100}\r\n".to_vec();
        ok.extend_from_slice(&[b'x'; 100]);
        ok.extend_from_slice(b")\r\nh1 OK done\r\n");
        assert_eq!(statuses(&ok), [Ok(()), Ok(()), Err(Status::Io)]);
    }
}
