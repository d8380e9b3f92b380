//! The tunnel through HERALD_OPT_PROXY: SOCKS5 (RFC 1928, user/password
//! auth RFC 1929) or HTTP CONNECT (RFC 9110 9.3.6, Basic
//! Proxy-Authorization). The mail server's name goes to the proxy, which
//! resolves it (SOCKS5 address type DOMAINNAME), so no local DNS is needed.
//! Every wait is bounded by the connect deadline and IO_TIMEOUT_MS, and a
//! cancel shuts the socket down; the credentials never appear in a detail
//! or the log. After the handshake the socket carries the mail protocol,
//! TLS included, as if connected to the server itself.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::ConnCtl;
use crate::options::{Proxy, ProxyKind};
use crate::status::{Error, Result, Status};

/// The most an HTTP proxy's CONNECT reply head may take.
const MAX_HTTP_HEAD: usize = 16 * 1024;

/// One handshake's socket, its waits bounded.
struct Handshake<'a> {
    s: &'a mut TcpStream,
    proxy: &'a Proxy,
    deadline: Instant,
    io_timeout: Duration,
    ctl: &'a ConnCtl,
}

impl Handshake<'_> {
    fn fail(&self, what: impl std::fmt::Display) -> Error {
        Error::new(Status::Connect, format!("{}: {what}", self.proxy))
    }

    /// The wait for the next read or write: IO_TIMEOUT_MS, but never past
    /// the connect deadline.
    fn bound(&mut self) -> Result<()> {
        self.ctl.check()?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        let wait = Some(left.min(self.io_timeout));
        let _ = self.s.set_read_timeout(wait);
        let _ = self.s.set_write_timeout(wait);
        Ok(())
    }

    fn timed_out(&self) -> Error {
        Error::new(Status::Timeout, format!("{}: no reply in time", self.proxy))
    }

    fn io_error(&self, e: io::Error) -> Error {
        if self.ctl.is_aborted() {
            return Error::cancelled();
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timed_out(),
            io::ErrorKind::UnexpectedEof => self.fail("the proxy closed the connection"),
            _ => self.fail(&e).with_source(e),
        }
    }

    fn send(&mut self, data: &[u8]) -> Result<()> {
        self.bound()?;
        self.s.write_all(data).map_err(|e| self.io_error(e))
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            self.bound()?;
            match self.s.read(&mut buf[got..]) {
                Ok(0) => return Err(self.io_error(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        Ok(())
    }
}

/// Asks `proxy`, connected on `s`, for a tunnel to `host:port`; on success
/// `s` is the tunnel, its timeouts back to `io_timeout`.
pub fn tunnel(
    s: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
    deadline: Instant,
    io_timeout: Duration,
    ctl: &ConnCtl,
) -> Result<()> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut h = Handshake {
        s,
        proxy,
        deadline,
        io_timeout,
        ctl,
    };
    match proxy.kind {
        ProxyKind::Socks5 => socks5(&mut h, host, port)?,
        ProxyKind::HttpConnect => http_connect(&mut h, host, port)?,
    }
    let restore = |s: &TcpStream| -> io::Result<()> {
        s.set_read_timeout(Some(io_timeout))?;
        s.set_write_timeout(Some(io_timeout))
    };
    restore(h.s).map_err(|e| h.fail(&e).with_source(e))
}

/// RFC 1928 reply codes.
fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

/// The SOCKS5 request's address: an IP as such, a name for the proxy to resolve.
fn socks5_address(host: &str) -> Result<Vec<u8>> {
    Ok(match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => [&[1u8][..], &a.octets()].concat(),
        Ok(IpAddr::V6(a)) => [&[4u8][..], &a.octets()].concat(),
        Err(_) => {
            let len = u8::try_from(host.len())
                .map_err(|_| Error::invalid("HOST is too long for a SOCKS5 proxy (255 bytes)"))?;
            [&[3u8, len][..], host.as_bytes()].concat()
        }
    })
}

fn socks5(h: &mut Handshake<'_>, host: &str, port: u16) -> Result<()> {
    let creds = h.proxy.credentials.clone();
    // Offer only what we can do: with credentials, user/password alone, so
    // a proxy that wants them cannot be talked into none.
    let method = if creds.is_some() { 2u8 } else { 0u8 };
    h.send(&[5, 1, method])?;
    let mut r = [0u8; 2];
    h.recv(&mut r)?;
    if r[0] != 5 {
        return Err(h.fail(format!("not a SOCKS5 proxy (version byte {})", r[0])));
    }
    match (r[1], &creds) {
        (0, None) => {}
        (2, Some((user, pass))) => {
            let mut m = vec![1u8, user.len() as u8];
            m.extend_from_slice(user.as_bytes());
            m.push(pass.len() as u8);
            m.extend_from_slice(pass.as_bytes());
            h.send(&m)?;
            h.recv(&mut r)?;
            if r[1] != 0 {
                return Err(h.fail(format!(
                    "the proxy rejected the user name or password (status {})",
                    r[1]
                )));
            }
        }
        (0xff, None) => return Err(h.fail("the proxy requires authentication (set user:pass in PROXY)")),
        (0xff, Some(_)) => return Err(h.fail("the proxy does not accept user/password authentication")),
        (m, _) => {
            return Err(h.fail(format!(
                "the proxy chose an authentication method not offered ({m})"
            )))
        }
    }
    let mut req = vec![5u8, 1, 0];
    req.extend(socks5_address(host)?);
    req.extend_from_slice(&port.to_be_bytes());
    h.send(&req)?;
    let mut head = [0u8; 4];
    h.recv(&mut head)?;
    if head[0] != 5 {
        return Err(h.fail(format!("not a SOCKS5 reply (version byte {})", head[0])));
    }
    if head[1] != 0 {
        return Err(h.fail(format!(
            "cannot reach {host}:{port}: {} (SOCKS5 reply {})",
            socks5_reply_text(head[1]),
            head[1]
        )));
    }
    // The bound address, which we do not need: read past it.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            h.recv(&mut len)?;
            len[0] as usize + 2
        }
        t => return Err(h.fail(format!("bad address type {t} in the SOCKS5 reply"))),
    };
    h.recv(&mut vec![0u8; rest])
}

/// The CONNECT request; the credentials only inside it, never in a detail.
fn connect_request(proxy: &Proxy, host: &str, port: u16) -> String {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, pass)) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    req
}

fn http_connect(h: &mut Handshake<'_>, host: &str, port: u16) -> Result<()> {
    h.send(connect_request(h.proxy, host, port).as_bytes())?;
    // Byte by byte: what follows the head is the mail server's, and stays
    // in the socket for the protocol to read.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HTTP_HEAD {
            return Err(h.fail("the proxy's reply head is too long"));
        }
        let mut b = [0u8; 1];
        h.recv(&mut b)?;
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").trim();
    let code = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok());
    let shown: String = status_line.chars().take(200).collect();
    match code {
        Some(200..=299) => Ok(()),
        // 401: what tinyproxy answers (407 is the standard's).
        Some(401 | 407) => Err(h.fail(if h.proxy.credentials.is_some() {
            format!("the proxy rejected the user name or password ({shown})")
        } else {
            format!("the proxy requires authentication, set user:pass in PROXY ({shown})")
        })),
        Some(_) => Err(h.fail(format!("CONNECT to {host}:{port} refused: {shown}"))),
        None => Err(h.fail(format!("not an HTTP reply: {shown:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn proxy(url: &str) -> Proxy {
        crate::options::proxy::parse(url).unwrap().unwrap()
    }

    /// Runs `tunnel` against a one-connection server that, for each step,
    /// reads that many bytes and answers with those; what the server read.
    fn against(url: &str, steps: &[(usize, &'static [u8])]) -> (Result<()>, Vec<u8>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let steps = steps.to_vec();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut all = Vec::new();
            for (n, reply) in steps {
                let mut got = vec![0u8; n];
                s.read_exact(&mut got).unwrap();
                all.extend(got);
                s.write_all(reply).unwrap();
            }
            all
        });
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let ctl = ConnCtl::new();
        let r = tunnel(
            &mut s,
            &proxy(url),
            "mail.example",
            993,
            deadline,
            Duration::from_secs(30),
            &ctl,
        );
        (r, server.join().unwrap())
    }

    #[test]
    fn socks5_sends_the_name_for_the_proxy_to_resolve() {
        // greeting (3) + request 5 1 0 3 len "mail.example" port (7 + 12)
        let (r, got) = against(
            "socks5://127.0.0.1:1",
            &[
                (3, b"\x05\x00"),
                (7 + 12, b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x19"),
            ],
        );
        r.unwrap();
        assert_eq!(&got[..3], b"\x05\x01\x00");
        assert_eq!(&got[3..8], b"\x05\x01\x00\x03\x0c");
        assert_eq!(&got[8..20], b"mail.example");
        assert_eq!(&got[20..], &993u16.to_be_bytes());
    }

    #[test]
    fn socks5_refusals_say_what_the_proxy_said() {
        let (r, _) = against(
            "socks5://u:wrong@127.0.0.1:1",
            &[(3, b"\x05\x02"), (9, b"\x01\x01")],
        );
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::Connect);
        assert!(e.detail.contains("rejected the user name or password"), "{e}");
        assert!(!e.detail.contains("wrong"), "{e}");
        let (r, _) = against("socks5://127.0.0.1:1", &[(3, b"\x05\xff")]);
        assert!(r.unwrap_err().detail.contains("requires authentication"));
        let (r, _) = against(
            "socks5://127.0.0.1:1",
            &[(3, b"\x05\x00"), (19, b"\x05\x05\x00\x01")],
        );
        let e = r.unwrap_err();
        assert!(e.detail.contains("connection refused (SOCKS5 reply 5)"), "{e}");
        assert!(e.detail.starts_with("SOCKS5 proxy 127.0.0.1:1: "), "{e}");
    }

    #[test]
    fn http_connect_with_basic_auth_and_the_reply_line_on_failure() {
        let req = connect_request(&proxy("http://me:pw@127.0.0.1:1"), "mail.example", 993);
        assert_eq!(
            req,
            "CONNECT mail.example:993 HTTP/1.1\r\nHost: mail.example:993\r\n\
             Proxy-Authorization: Basic bWU6cHc=\r\n\r\n"
        );
        let n = req.len();
        let (r, _) = against(
            "http://me:pw@127.0.0.1:1",
            &[(n, b"HTTP/1.1 200 Connection established\r\n\r\n")],
        );
        r.unwrap();
        let (r, _) = against(
            "http://me:pw@127.0.0.1:1",
            &[(n, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")],
        );
        let e = r.unwrap_err();
        assert!(
            e.detail
                .contains("rejected the user name or password (HTTP/1.1 407"),
            "{e}"
        );
        let plain = connect_request(&proxy("http://127.0.0.1:1"), "mail.example", 993).len();
        let (r, _) = against(
            "http://127.0.0.1:1",
            &[(plain, b"HTTP/1.0 403 Access violation\r\n\r\n")],
        );
        let e = r.unwrap_err();
        assert!(e.detail.contains("refused: HTTP/1.0 403 Access violation"), "{e}");
        assert_eq!(
            connect_request(&proxy("http://127.0.0.1:1"), "::1", 25),
            "CONNECT [::1]:25 HTTP/1.1\r\nHost: [::1]:25\r\n\r\n"
        );
    }

    #[test]
    fn a_silent_proxy_times_out_at_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let ctl = ConnCtl::new();
        let p = proxy("socks5://127.0.0.1:1");
        let e = tunnel(&mut s, &p, "h", 1, deadline, Duration::from_secs(60), &ctl).unwrap_err();
        assert_eq!(e.status, Status::Timeout, "{e}");
    }
}
