//! Sockets herald owns: connect with a timeout that a cancel can cut short
//! (happy eyeballs, keepalive and proxies in `connect` and `proxy`),
//! TLS through native-tls, a line reader with a length cap (MAX_LINE_BYTES),
//! and the control that lets another thread shut a connection down.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::options::{Options, Security};
use crate::status::{Error, Result, Status};

pub mod account;
pub mod connect;
#[cfg(any(test, feature = "fuzzing"))]
// The fuzz targets use only part of it.
#[cfg_attr(not(test), allow(dead_code))]
pub mod mem;
pub mod proxy;
pub mod tls;
pub mod transport;

pub use connect::connect;

pub use transport::{quit_wait, Transport, QUIT_WAIT};

/// Lets any thread stop a connection's blocking I/O: `abort` shuts the
/// socket down, so a blocked read or write returns at once.
pub struct ConnCtl {
    aborted: AtomicBool,
    /// A clone of the connection's socket (its own fd), kept to shut it down.
    socket: Mutex<Option<TcpStream>>,
}

impl ConnCtl {
    pub fn new() -> Arc<ConnCtl> {
        Arc::new(ConnCtl {
            aborted: AtomicBool::new(false),
            socket: Mutex::new(None),
        })
    }

    pub fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        if let Some(s) = self.socket.lock().as_ref() {
            let _ = s.shutdown(Shutdown::Both);
            #[cfg(windows)]
            cancel_pending_io(s);
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    fn register(&self, s: &TcpStream) -> io::Result<()> {
        let clone = s.try_clone()?;
        let mut slot = self.socket.lock();
        if self.is_aborted() {
            let _ = clone.shutdown(Shutdown::Both);
            #[cfg(windows)]
            cancel_pending_io(&clone);
        }
        *slot = Some(clone);
        Ok(())
    }

    /// The connection was closed: forget the socket.
    pub fn release(&self) {
        self.socket.lock().take();
    }

    pub fn is_open(&self) -> bool {
        self.socket.lock().is_some()
    }

    fn check(&self) -> Result<()> {
        if self.is_aborted() {
            Err(Error::cancelled())
        } else {
            Ok(())
        }
    }
}

#[cfg(not(windows))]
fn tls_failure_text(e: &native_tls::Error) -> String {
    e.to_string()
}

/// Windows: SChannel's failures arrive as bare HRESULTs, whose text
/// FormatMessage may not have (Wine has none): name the common ones.
#[cfg(windows)]
fn tls_failure_text(e: &native_tls::Error) -> String {
    let text = e.to_string();
    let code = text
        .rsplit("(os error ")
        .next()
        .and_then(|t| t.strip_suffix(')'))
        .and_then(|n| n.parse::<i32>().ok())
        .map(|c| c as u32);
    let what = match code {
        Some(0x800B_0109 | 0x8009_0325) => {
            "certificate not trusted: its chain ends in an untrusted root (CERT_E_UNTRUSTEDROOT; \
             HERALD_OPT_CA_FILE adds a private CA)"
        }
        Some(0x800B_010F | 0x8009_0322) => "certificate does not match the host name (CERT_E_CN_NO_MATCH)",
        Some(0x800B_0101 | 0x8009_0328) => "certificate expired or not yet valid (CERT_E_EXPIRED)",
        Some(0x800B_010A) => "certificate chain could not be built (CERT_E_CHAINING)",
        Some(0x800B_010C) => "certificate revoked (CERT_E_REVOKED)",
        Some(0x8009_2012 | 0x8009_2013) => "certificate revocation could not be checked",
        Some(0x8009_0326) => "the server sent an invalid TLS message (SEC_E_ILLEGAL_MESSAGE)",
        Some(0x8009_0331) => "no TLS version or cipher in common (SEC_E_ALGORITHM_MISMATCH)",
        _ => return text,
    };
    format!("{what}; os error {:#010x}", code.unwrap_or(0))
}

/// Windows: shutdown() does not wake a recv blocked on another thread (seen
/// under Wine; Winsock documents no such guarantee), so the abort also
/// cancels every I/O pending on the socket, which ends that recv at once.
#[cfg(windows)]
fn cancel_pending_io(s: &TcpStream) {
    use std::ffi::c_void;
    use std::os::windows::io::AsRawSocket;
    extern "system" {
        fn CancelIoEx(handle: *mut c_void, overlapped: *mut c_void) -> i32;
    }
    let handle = s.as_raw_socket() as usize as *mut c_void;
    // SAFETY: a live socket handle we hold; a NULL OVERLAPPED cancels all its I/O.
    unsafe { CancelIoEx(handle, std::ptr::null_mut()) };
}

/// A plain or TLS connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }

    /// Asks the kernel to acknowledge what arrives at once (TCP_QUICKACK,
    /// Linux) while waiting for a reply: a server whose reply is held back by
    /// Nagle until our ACK (two small segments in a row) is not then stalled
    /// by our delayed ACK (~40 ms). The kernel drops the flag on its own, so
    /// it is set before each wait. Elsewhere a no-op.
    pub fn quickack(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            let one: libc::c_int = 1;
            // SAFETY: a valid socket fd and a c_int option value of the right size.
            unsafe {
                libc::setsockopt(
                    self.tcp().as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }

    /// Are bytes from the server waiting in the socket (a read would not block)?
    pub fn readable_now(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            let mut p = libc::pollfd {
                fd: self.tcp().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            n > 0 && p.revents & libc::POLLIN != 0
        }
        #[cfg(not(unix))]
        {
            false
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => plain_write_vectored(s, bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A vectored write to a plain socket that, like `TcpStream::write`
/// (`send` with MSG_NOSIGNAL), never raises SIGPIPE when the peer has gone:
/// std's `write_vectored` is a plain `writev`, and the process is the
/// caller's, whose SIGPIPE may well be the default (terminate).
#[cfg(target_os = "linux")]
fn plain_write_vectored(s: &mut TcpStream, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it);
    // sendmsg only reads the buffers.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(1024) as _;
    // SAFETY: `msg` points at `msg_iovlen` live iovecs for the call's duration.
    let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn plain_write_vectored(s: &mut TcpStream, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    s.write_vectored(bufs)
}

/// A TLS connector for the options (see [`tls::connector`]).
pub fn tls_connector(o: &Options) -> Result<native_tls::TlsConnector> {
    tls::connector(o)
}

/// Runs the TLS handshake over `tcp`, verifying the certificate for `host`.
pub fn tls_handshake(connector: &native_tls::TlsConnector, host: &str, tcp: TcpStream) -> Result<Stream> {
    let name = host.trim_start_matches('[').trim_end_matches(']');
    match connector.connect(name, tcp) {
        Ok(s) => Ok(Stream::Tls(Box::new(s))),
        Err(native_tls::HandshakeError::Failure(e)) => Err(Error::new(
            Status::Tls,
            format!("TLS handshake with {host} failed: {}", tls_failure_text(&e)),
        )
        .with_source(e)),
        Err(native_tls::HandshakeError::WouldBlock(_)) => Err(Error::new(
            Status::Timeout,
            format!("TLS handshake with {host} timed out"),
        )),
    }
}

/// The driver's TLS connector, built on first use (loading the roots once).
pub fn connector<'a>(
    o: &Options,
    tls: &'a mut Option<native_tls::TlsConnector>,
) -> Result<&'a native_tls::TlsConnector> {
    if tls.is_none() {
        *tls = Some(tls_connector(o)?);
    }
    Ok(tls.as_ref().expect("set above"))
}

/// Opens the connection the options ask for: TCP to HOST:PORT and, with
/// implicit TLS, the handshake at once.
pub fn open_stream(
    o: &Options,
    tls: &mut Option<native_tls::TlsConnector>,
    ctl: &ConnCtl,
    trace: &crate::log::Tracer,
) -> Result<Stream> {
    let (host, port) = (o.host(), o.port());
    trace.log(crate::log::DEBUG, || match &o.proxy {
        // The proxy's Display has no credentials.
        Some(p) => format!("connecting to {host}:{port} through the {p}"),
        None => format!("connecting to {host}:{port}"),
    });
    let tcp = connect(host, port, o, ctl)?;
    if o.security == Security::ImplicitTls {
        tls::handshake(o, tls, host, tcp)
    } else {
        Ok(Stream::Plain(tcp))
    }
}

/// On a plain connection, should the session upgrade with `command`
/// (STARTTLS, STLS)? An error when SECURITY requires it and the server
/// does not offer it: never a silent plain-text session.
pub fn wants_starttls(o: &Options, is_tls: bool, offered: bool, command: &str) -> Result<bool> {
    if is_tls || !matches!(o.security, Security::StartTls | Security::StartTlsIfAvailable) {
        return Ok(false);
    }
    if offered {
        return Ok(true);
    }
    if o.security == Security::StartTls {
        return Err(Error::new(
            Status::Unsupported,
            format!(
                "the server does not offer {command}, which SECURITY requires \
                 (set HERALD_SECURITY_STARTTLS_IF_AVAILABLE or _NONE to allow a plain connection)"
            ),
        ));
    }
    Ok(false)
}

/// Credentials go over an unencrypted connection only when SECURITY is NONE.
pub fn check_credentials_channel(o: &Options, is_tls: bool, command: &str) -> Result<()> {
    if !is_tls && o.security != Security::None {
        return Err(Error::new(
            Status::Tls,
            format!(
                "refusing to send credentials over an unencrypted connection \
                 (the server did not offer {command}; set SECURITY to NONE to allow it)"
            ),
        ));
    }
    Ok(())
}

/// A buffered connection that reads CRLF-terminated lines of bounded length
/// and raw byte counts, and writes straight through.
pub struct LineConn<S> {
    inner: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The protocol readers' line limit (`max_line`), MAX_LINE_BYTES.
    max_line: usize,
}

/// Initial read buffer; it grows (doubling) only as far as a line needs,
/// so it never exceeds twice the line limit.
const INITIAL_BUF: usize = 64 * 1024;

impl<S: Read + Write> LineConn<S> {
    pub fn new(inner: S) -> Self {
        LineConn {
            inner,
            buf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            max_line: crate::options::DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// The longest line the protocol readers accept on this connection
    /// (MAX_LINE_BYTES; the default until set).
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    pub fn set_max_line(&mut self, max: usize) {
        self.max_line = max;
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let n = self.buf.len();
            self.buf.resize(n * 2, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")),
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one line, without its line ending (CRLF or a bare LF).
    /// A line longer than `max` is an `InvalidData` error.
    pub fn read_line(&mut self, max: usize) -> io::Result<&[u8]> {
        let mut scanned = 0;
        loop {
            if let Some(pos) = find_lf(&self.buf[self.start + scanned..self.end]) {
                let line_end = self.start + scanned + pos;
                let line_start = self.start;
                self.start = line_end + 1;
                let mut e = line_end;
                if e > line_start && self.buf[e - 1] == b'\r' {
                    e -= 1;
                }
                if e - line_start > max {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
                }
                return Ok(&self.buf[line_start..e]);
            }
            scanned = self.end - self.start;
            if scanned > max + 2 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            self.fill()?;
        }
    }

    /// The bytes received but not yet consumed, reading more first when
    /// none are buffered: for framing that scans raw bytes (POP3's
    /// dot-terminated bodies). Pair with [`consume`](Self::consume).
    pub fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.fill()?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    /// The bytes received but not yet consumed, without reading.
    pub fn buffered_bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes of what [`fill_buf`](Self::fill_buf) returned as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Writes `data` and flushes it.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)?;
        self.inner.flush()
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)?;
        Ok(())
    }

    /// Writes every slice of `parts` in order (vectored writes, so one
    /// `writev` on a plain socket when it takes them all) and flushes.
    pub fn send_vectored(&mut self, parts: &mut [io::IoSlice<'_>]) -> io::Result<()> {
        let mut left = parts;
        io::IoSlice::advance_slices(&mut left, 0);
        while !left.is_empty() {
            match self.inner.write_vectored(left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => io::IoSlice::advance_slices(&mut left, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.inner.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where the first LF in `b` is: the C library's vectorized `memchr`, a few
/// instructions for a reply line where a byte-by-byte search takes several
/// per byte.
#[cfg(unix)]
fn find_lf(b: &[u8]) -> Option<usize> {
    // SAFETY: memchr reads at most b.len() bytes from b's start.
    let p = unsafe { libc::memchr(b.as_ptr().cast(), b'\n' as i32, b.len()) };
    (!p.is_null()).then(|| p as usize - b.as_ptr() as usize)
}

#[cfg(not(unix))]
fn find_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&x| x == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn conn(input: &[u8]) -> LineConn<mem::MemStream> {
        // Trickle one byte at a time to exercise partial input.
        LineConn::new(mem::MemStream::chunked(input, 1))
    }

    #[test]
    fn lines_split_on_crlf_and_bare_lf() {
        let mut c = conn(b"one\r\ntwo\nthree\r\n");
        assert_eq!(c.read_line(100).unwrap(), b"one");
        assert_eq!(c.read_line(100).unwrap(), b"two");
        assert_eq!(c.read_line(100).unwrap(), b"three");
        assert_eq!(c.read_line(100).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn endless_line_is_an_error_not_unbounded_growth() {
        let mut c = conn(&vec![b'x'; 10_000]);
        assert_eq!(c.read_line(100).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn refused_connect_is_connect_status() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let o = Options::new(crate::options::Protocol::Smtp);
        let e = connect("127.0.0.1", port, &o, &ConnCtl::new()).unwrap_err();
        assert_eq!(e.status, Status::Connect, "{e}");
        let source = std::error::Error::source(&e).expect("the io error is kept");
        assert!(source.downcast_ref::<io::Error>().is_some(), "{source}");
    }

    #[test]
    fn abort_ends_a_blocked_read_at_once() {
        // A server that accepts and never speaks.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let o = Options::new(crate::options::Protocol::Smtp);
        let ctl = ConnCtl::new();
        let s = connect("127.0.0.1", port, &o, &ctl).unwrap();
        let _server_side = l.accept().unwrap();
        assert!(ctl.is_open());
        let c2 = ctl.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            c2.abort();
        });
        let started = Instant::now();
        let mut c = LineConn::new(s);
        assert!(c.read_line(100).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "IO_TIMEOUT is 60 s: only the abort ends this"
        );
        t.join().unwrap();
    }
}
