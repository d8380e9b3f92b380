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
#[cfg(any(test, feature = "fuzzing"))]
use crate::net::mem::MemStream;
use crate::net::transport::Upgrade;
use crate::net::{ConnCtl, Stream, Transport};
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

#[cfg(any(test, feature = "fuzzing"))]
impl ReadTimeout for MemStream {
    fn set_read_timeout(&self, _: Duration) -> io::Result<()> {
        Ok(())
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

impl<S> Timed<S> {
    fn new(inner: S) -> Timed<S> {
        Timed {
            inner,
            deadline: None,
            per_read: None,
            changed: false,
        }
    }
}

/// STARTTLS takes the socket out from under the deadline and puts the TLS
/// stream back (no deadline is set while a session opens).
impl Upgrade for Timed<Stream> {
    fn stream(&self) -> &Stream {
        &self.inner
    }
    fn into_stream(self) -> Stream {
        self.inner
    }
    fn from_stream(stream: Stream) -> Self {
        Timed::new(stream)
    }
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

/// A connection: the transport (read buffer, writes, trace, the
/// connection control) over a stream whose reads keep a deadline.
pub struct Conn<S = Stream> {
    lc: Transport<Timed<S>>,
    limits: Limits,
    /// A read failed or was refused part way: the stream is out of step.
    broken: bool,
    /// herald's command tags: `h1`, `h2`...
    tag: u32,
    /// The SASL mechanism (or LOGIN) of the last login attempt.
    pub mechanism: Option<String>,
}

/// What the trace shows of a client line while logging in: the command's
/// name, never the credentials.
fn redact(text: &str) -> String {
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

    /// After the server's go-ahead to STARTTLS: the same connection over
    /// TLS (see [`Transport::upgrade`]).
    pub fn upgrade(
        self,
        o: &crate::options::Options,
        tls: &mut Option<native_tls::TlsConnector>,
    ) -> Result<Self> {
        Ok(Conn {
            lc: self.lc.upgrade(o, tls, "STARTTLS")?,
            limits: self.limits,
            broken: false,
            tag: self.tag,
            mechanism: self.mechanism,
        })
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
        Conn {
            lc: Transport::new(Timed::new(stream), trace, "the IMAP server"),
            limits,
            broken: false,
            tag: 0,
            mechanism: None,
        }
    }

    /// Stops reading when `ctl` is aborted (a cancel or deadline shut the
    /// connection down: not even what was buffered is read), and releases
    /// its socket when the connection drops.
    pub fn with_ctl(mut self, ctl: &std::sync::Arc<ConnCtl>) -> Self {
        self.lc = self.lc.with_ctl(ctl);
        self
    }

    pub fn ctl(&self) -> Option<&std::sync::Arc<ConnCtl>> {
        self.lc.ctl()
    }

    pub fn tracer(&self) -> &Tracer {
        self.lc.tracer()
    }

    /// Hides the credentials of client lines from the trace (while logging in).
    pub fn hide_credentials(&mut self, hide: bool) {
        self.lc.set_redact(hide.then_some(redact as fn(&str) -> String));
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
        if self.ctl().is_some_and(|c| c.is_aborted()) {
            self.broken = true;
            return Err(Error::cancelled());
        }
        let r = self.read_pieces(progress).and_then(parse::parse_response);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// Reads one response as [`read_response`](Self::read_response) does,
    /// with a continuation's text ("+ text"): a SASL challenge.
    pub fn read_response_text(&mut self) -> Result<(Response, Vec<u8>)> {
        if self.ctl().is_some_and(|c| c.is_aborted()) {
            self.broken = true;
            return Err(Error::cancelled());
        }
        let r = self.read_pieces(&mut |_| {}).and_then(|pieces| {
            let text = match pieces.first() {
                Some(Piece::Line(l)) if l.starts_with(b"+") => l[1..].trim_ascii().to_vec(),
                _ => Vec::new(),
            };
            parse::parse_response(pieces).map(|r| (r, text))
        });
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
        if self.tracer().enabled(TRACE) {
            self.tracer().log(TRACE, || format!("S: <literal, {n} bytes>"));
        }
        Ok(out)
    }

    fn trace_in(&self, line: &[u8]) {
        if self.tracer().enabled(TRACE) {
            let shown = &line[..line.len().min(TRACE_MAX)];
            let more = if line.len() > TRACE_MAX { "..." } else { "" };
            self.tracer()
                .log(TRACE, || format!("S: {}{more}", String::from_utf8_lossy(shown)));
        }
    }

    /// Writes `data` (whole command lines) and flushes: the transport's
    /// one traced write path.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.lc.transmit(data)
    }

    /// Writes bytes that are not traced (a literal's content).
    pub fn send_quiet(&mut self, data: &[u8]) -> io::Result<()> {
        self.lc.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.lc.flush()
    }

    /// Traces client lines; while logging in, only the command's name.
    pub fn trace_out(&mut self, data: &[u8]) {
        self.lc.trace_out(data);
    }
}

/// Reads every response in `input` as herald's reader would, until the
/// input ends or a response is refused: the entry point of the fuzz target
/// and of the regression corpus. Never panics; memory stays within the
/// limits whatever the input.
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub fn read_all(input: &[u8], limits: Limits) -> Vec<Result<Response>> {
    let mut c = Conn::new(MemStream::new(input), Tracer::default(), limits);
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

    #[test]
    fn a_deadline_ends_a_trickled_response() {
        // A server sending a byte every 20 ms, forever.
        let trickle = MemStream::endless(b'x', Duration::from_millis(20));
        let mut c = Conn::new(trickle, Tracer::default(), SMALL);
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
