//! One protocol connection's plumbing, the same for SMTP, POP3 and IMAP:
//! the bounded line reader, the one write path (traced, or with its
//! credentials hidden), the STARTTLS upgrade with its injection check,
//! the polite quit with a bounded wait, and the guard that tells the
//! connection control when the socket is gone.

use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use super::{ConnCtl, LineConn, Stream};
use crate::log::{Tracer, TRACE};
use crate::options::Options;
use crate::status::{Error, Result};

/// Most of one client line shown in the trace.
const TRACE_MAX: usize = 2000;

/// The longest wait for the reply to QUIT or LOGOUT.
pub const QUIT_WAIT: Duration = Duration::from_secs(2);

/// How long QUIT waits for its reply: IO_TIMEOUT_MS, but at most [`QUIT_WAIT`].
pub fn quit_wait(io_timeout: Duration) -> Duration {
    io_timeout.min(QUIT_WAIT)
}

/// Tells the connection control that the socket is gone when dropped.
pub struct CtlGuard(Arc<ConnCtl>);

impl CtlGuard {
    pub fn new(ctl: &Arc<ConnCtl>) -> CtlGuard {
        CtlGuard(ctl.clone())
    }

    pub fn ctl(&self) -> &Arc<ConnCtl> {
        &self.0
    }
}

impl Drop for CtlGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// What the trace shows of a client line written while credentials are
/// hidden (a protocol's rule: the command's name, not its arguments).
pub type Redact = fn(&str) -> String;

/// A protocol connection: the line reader over `S` (reads and raw writes
/// through `Deref`), the trace, and the connection control's guard.
pub struct Transport<S> {
    conn: LineConn<S>,
    trace: Tracer,
    /// Who is at the other end, for error texts: "the SMTP server".
    peer: &'static str,
    ctl: Option<CtlGuard>,
    /// While set, client lines are traced through it (logging in).
    redact: Option<Redact>,
    /// Client bytes not yet traced (an unfinished line).
    out_line: Vec<u8>,
}

impl<S> Deref for Transport<S> {
    type Target = LineConn<S>;
    fn deref(&self) -> &LineConn<S> {
        &self.conn
    }
}

impl<S> DerefMut for Transport<S> {
    fn deref_mut(&mut self) -> &mut LineConn<S> {
        &mut self.conn
    }
}

impl<S: Read + Write> Transport<S> {
    pub fn new(stream: S, trace: Tracer, peer: &'static str) -> Self {
        Transport {
            conn: LineConn::new(stream),
            trace,
            peer,
            ctl: None,
            redact: None,
            out_line: Vec::new(),
        }
    }

    /// Releases `ctl`'s socket when this connection drops.
    pub fn with_ctl(mut self, ctl: &Arc<ConnCtl>) -> Self {
        self.ctl = Some(CtlGuard::new(ctl));
        self
    }

    pub fn ctl(&self) -> Option<&Arc<ConnCtl>> {
        self.ctl.as_ref().map(CtlGuard::ctl)
    }

    pub fn tracer(&self) -> &Tracer {
        &self.trace
    }

    /// Traces client lines through `redact` (credentials hidden) until set back to `None`.
    pub fn set_redact(&mut self, redact: Option<Redact>) {
        self.redact = redact;
    }

    /// Logs the client lines of `data` at TRACE (a line split across
    /// calls is logged once whole).
    pub fn trace_out(&mut self, data: &[u8]) {
        if !self.trace.enabled(TRACE) {
            return;
        }
        self.out_line.extend_from_slice(data);
        while let Some(pos) = self.out_line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.out_line.drain(..=pos).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = String::from_utf8_lossy(line);
            let shown = match self.redact {
                Some(redact) => redact(&text),
                None if text.is_empty() => continue,
                None => {
                    let n = text.len().min(TRACE_MAX);
                    let cut = (0..=n).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                    text[..cut].to_string()
                }
            };
            self.trace.log(TRACE, || format!("C: {shown}"));
        }
        if self.out_line.len() > TRACE_MAX {
            self.out_line.clear();
        }
    }

    /// The error for a failed write.
    pub fn send_error(&self, e: io::Error) -> Error {
        Error::io(e, &format!("sending to {}", self.peer))
    }

    /// The one write path: traces `data` (whole command lines), writes and
    /// flushes it.
    pub fn transmit(&mut self, data: &[u8]) -> Result<()> {
        self.trace_out(data);
        self.conn.send(data).map_err(|e| self.send_error(e))
    }

    /// Writes the line `shown` + `secret` + CRLF; the trace shows only `shown`.
    pub fn transmit_secret(&mut self, shown: &str, secret: &str) -> Result<()> {
        self.trace
            .log(TRACE, || format!("C: {shown}<credentials hidden>"));
        let line = format!("{shown}{secret}\r\n");
        self.conn.send(line.as_bytes()).map_err(|e| self.send_error(e))
    }
}

/// A stream the STARTTLS upgrade can take apart and rebuild over TLS.
pub trait Upgrade: Sized {
    fn stream(&self) -> &Stream;
    fn into_stream(self) -> Stream;
    fn from_stream(stream: Stream) -> Self;
}

impl Upgrade for Stream {
    fn stream(&self) -> &Stream {
        self
    }
    fn into_stream(self) -> Stream {
        self
    }
    fn from_stream(stream: Stream) -> Self {
        stream
    }
}

impl<S: Read + Write + Upgrade> Transport<S> {
    pub fn is_tls(&self) -> bool {
        self.conn.get_ref().stream().is_tls()
    }

    /// After the server's go-ahead to `command` (STARTTLS, STLS): the TLS
    /// handshake, keeping the trace, the line limit and the guard. Refused
    /// when the server sent anything past its go-ahead: bytes that arrived
    /// before the handshake would be trusted as if they came over TLS (a
    /// known injection attack).
    pub fn upgrade(
        self,
        o: &Options,
        tls: &mut Option<native_tls::TlsConnector>,
        command: &str,
    ) -> Result<Self> {
        if self.conn.buffered() > 0 {
            return Err(Error::protocol(format!(
                "the server sent data after its {command} reply"
            )));
        }
        let Transport {
            conn,
            trace,
            peer,
            ctl,
            ..
        } = self;
        let max_line = conn.max_line();
        let Stream::Plain(tcp) = conn.into_inner().into_stream() else {
            return Err(Error::protocol(format!("{command} on a TLS connection")));
        };
        let stream = super::tls::handshake(o, tls, o.host(), tcp)?;
        let mut t = Transport::new(S::from_stream(stream), trace, peer);
        t.conn.set_max_line(max_line);
        t.ctl = ctl;
        Ok(t)
    }

    /// Before the polite end of a session (QUIT): from now on each read
    /// waits at most `wait` ([`quit_wait`]), so a silent server cannot
    /// hold the goodbye for IO_TIMEOUT.
    pub fn bound_quit_wait(&mut self, wait: Duration) {
        let _ = self.conn.get_ref().stream().tcp().set_read_timeout(Some(wait));
    }
}

#[cfg(test)]
mod tests {
    use super::super::mem::MemStream;
    use super::*;
    use std::sync::Mutex;

    fn traced() -> (Transport<MemStream>, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let trace = Tracer::new(
            Arc::new(move |_, line: &str| l.lock().unwrap().push(line.to_string())),
            Arc::new(|_| true),
        );
        (Transport::new(MemStream::new(""), trace, "the test server"), log)
    }

    #[test]
    fn lines_traced_secrets_hidden() {
        let (mut t, log) = traced();
        t.transmit(b"EHLO x\r\nMAIL FROM:<a@b>\r\n").unwrap();
        t.transmit_secret("AUTH PLAIN ", "c2VjcmV0").unwrap();
        t.trace_out(b"A1 LOG");
        t.trace_out(b"IN u p\r\n");
        t.set_redact(Some(|l| format!("{} <credentials hidden>", &l[..2])));
        t.transmit(b"A2 LOGIN u p\r\n").unwrap();
        assert_eq!(
            t.get_ref().written(),
            "EHLO x\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN c2VjcmV0\r\nA2 LOGIN u p\r\n"
        );
        assert_eq!(
            *log.lock().unwrap(),
            [
                "C: EHLO x",
                "C: MAIL FROM:<a@b>",
                "C: AUTH PLAIN <credentials hidden>",
                "C: A1 LOGIN u p",
                "C: A2 <credentials hidden>"
            ]
        );
    }

    #[test]
    fn failed_write_keeps_its_source() {
        use std::error::Error as _;
        let (mut t, _) = traced();
        t.get_mut().write_limit = Some(0);
        let e = t.transmit(b"QUIT\r\n").unwrap_err();
        assert_eq!(e.status, crate::status::Status::Io);
        assert!(e.detail.starts_with("sending to the test server"), "{e}");
        assert_eq!(e.source().unwrap().to_string(), "broken pipe");
    }

    #[test]
    fn no_handshake_after_bytes_past_the_go_ahead() {
        // A server whose STARTTLS go-ahead comes with bytes after it: they
        // would be read as if they came over TLS.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"220 go ahead\r\n250 injected\r\n").unwrap();
            let _ = s.read(&mut [0u8; 16]);
        });
        let o = Options::new(crate::options::Protocol::Smtp);
        let ctl = ConnCtl::new();
        let tcp = super::super::connect("127.0.0.1", port, &o, &ctl).unwrap();
        let mut t = Transport::new(Stream::Plain(tcp), Tracer::default(), "the test server").with_ctl(&ctl);
        while t.buffered() < b"220 go ahead\r\n250 injected\r\n".len() {
            t.fill_buf().unwrap();
            if t.buffered_bytes().ends_with(b"injected\r\n") {
                break;
            }
        }
        assert_eq!(t.read_line(100).unwrap(), b"220 go ahead");
        let e = match t.upgrade(&o, &mut None, "STARTTLS") {
            Err(e) => e,
            Ok(_) => panic!("upgraded with injected bytes buffered"),
        };
        assert_eq!(e.status, crate::status::Status::Protocol);
        assert!(e.detail.contains("after its STARTTLS reply"), "{e}");
        assert!(!ctl.is_open(), "the guard released the socket");
        server.join().unwrap();
    }

    #[test]
    fn quit_waits_at_most_io_timeout() {
        assert_eq!(quit_wait(Duration::from_millis(300)), Duration::from_millis(300));
        assert_eq!(quit_wait(Duration::from_secs(60)), QUIT_WAIT);
    }
}
