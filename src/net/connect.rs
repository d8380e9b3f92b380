//! Opening a TCP connection: the name resolved on a thread of its own,
//! every address tried with happy eyeballs (RFC 8305: the families
//! interleaved, a new attempt every [`STAGGER`] while the earlier ones
//! still run, the first to connect wins, the others are closed), each
//! attempt a non-blocking connect watched by poll (select on Windows) that
//! looks at the abort flag every [`ABORT_POLL`], so a cancel ends a connect
//! at once on every platform. Then TCP keepalive, and the proxy's
//! handshake when there is one.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use super::ConnCtl;
use crate::options::Options;
use crate::status::{Error, Result, Status};

/// How often a connect in progress looks at its abort flag.
const ABORT_POLL: Duration = Duration::from_millis(20);

/// RFC 8305's "Connection Attempt Delay": the next address is tried this
/// long after the previous attempt started, if none has connected yet.
pub const STAGGER: Duration = Duration::from_millis(250);

/// Resolves `host`, without blocking past `deadline` or an abort.
pub fn resolve(host: &str, port: u16, deadline: Instant, ctl: &ConnCtl) -> Result<Vec<SocketAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    // getaddrinfo has no timeout: run it on a thread of its own and stop
    // waiting for it when the deadline passes or the op is cancelled.
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("herald-resolve".into())
        .spawn(move || {
            let _ = tx.send(
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>()),
            );
        })
        .map_err(|e| Error::new(Status::Connect, format!("cannot resolve {host}: {e}")))?;
    loop {
        ctl.check()?;
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(Status::Timeout, format!("resolving {host} timed out")));
        }
        match rx.recv_timeout(ABORT_POLL.min(deadline - now)) {
            Ok(Ok(addrs)) if !addrs.is_empty() => return Ok(addrs),
            Ok(Ok(_)) => return Err(Error::new(Status::Connect, format!("{host}: no address"))),
            Ok(Err(e)) => return Err(Error::new(Status::Connect, format!("cannot resolve {host}: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::new(Status::Connect, format!("cannot resolve {host}")))
            }
        }
    }
}

/// The order RFC 8305 tries addresses in: the resolver's first family
/// first, then alternating families, each family in the resolver's order.
pub fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut a, mut b): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
        .iter()
        .copied()
        .partition(|x| x.is_ipv4() == first.is_ipv4());
    a.reverse();
    b.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    while !a.is_empty() || !b.is_empty() {
        out.extend(a.pop());
        out.extend(b.pop());
    }
    out
}

pub fn connect_error(addr: &SocketAddr, e: io::Error) -> Error {
    let err = match e.kind() {
        io::ErrorKind::TimedOut => Error::new(Status::Timeout, format!("connecting to {addr} timed out")),
        io::ErrorKind::ConnectionRefused => {
            Error::new(Status::Connect, format!("{addr}: connection refused"))
        }
        _ => Error::new(Status::Connect, format!("{addr}: {e}")),
    };
    err.with_source(e)
}

/// Starts a non-blocking connect to `addr`: the socket, and whether it is
/// already connected.
fn start(addr: &SocketAddr) -> io::Result<(Socket, bool)> {
    // socket2 makes it close-on-exec (and SO_NOSIGPIPE on Apple systems).
    let s = Socket::new(Domain::for_address(*addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    match s.connect(&(*addr).into()) {
        Ok(()) => Ok((s, true)),
        Err(e) if in_progress(&e) => Ok((s, false)),
        Err(e) => Err(e),
    }
}

fn in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    e.kind() == io::ErrorKind::WouldBlock
}

/// Connection attempts in flight, in the order they started.
struct Attempts {
    pending: Vec<(SocketAddr, Socket)>,
    /// The last attempt's failure, reported when every attempt failed.
    last_error: Option<Error>,
}

/// Connects to the first of `addrs` (in [`interleave`]d order) that
/// answers, starting a new attempt every `stagger` (or as soon as one
/// fails) while the earlier ones still run. Gives up at `deadline`
/// (TIMEOUT) or on an abort (CANCELLED), closing every attempt.
pub fn connect_any(
    addrs: &[SocketAddr],
    deadline: Instant,
    stagger: Duration,
    ctl: &ConnCtl,
) -> Result<(TcpStream, SocketAddr)> {
    let order = interleave(addrs);
    let mut next = 0;
    let mut next_start = Instant::now();
    let mut a = Attempts {
        pending: Vec::new(),
        last_error: None,
    };
    loop {
        ctl.check()?;
        let now = Instant::now();
        if now >= deadline {
            let tried: Vec<String> = order[..next].iter().map(|a| a.to_string()).collect();
            return Err(Error::new(
                Status::Timeout,
                format!("connecting to {} timed out", tried.join(", ")),
            ));
        }
        if next < order.len() && (now >= next_start || a.pending.is_empty()) {
            let addr = order[next];
            next += 1;
            next_start = now + stagger;
            match start(&addr) {
                Ok((s, true)) => return finish(s, addr),
                Ok((s, false)) => a.pending.push((addr, s)),
                Err(e) => {
                    a.last_error = Some(connect_error(&addr, e));
                    next_start = now;
                }
            }
            continue;
        }
        if a.pending.is_empty() {
            return Err(a
                .last_error
                .take()
                .unwrap_or_else(|| Error::new(Status::Connect, "no address to connect to".to_string())));
        }
        let mut wait = ABORT_POLL.min(deadline - now);
        if next < order.len() {
            wait = wait.min(next_start.saturating_duration_since(now));
        }
        let ready = wait_ready(&a.pending, wait)?;
        if let Some(i) = a.settle(&ready) {
            let (addr, s) = a.pending.swap_remove(i);
            return finish(s, addr);
        }
        if ready.iter().any(|&r| r) && a.pending.len() < ready.len() {
            // One failed: RFC 8305 starts the next attempt at once.
            next_start = Instant::now();
        }
    }
}

impl Attempts {
    /// Looks at the attempts `ready` marks (and, on Windows, at all of
    /// them: select may not report a refused connect): drops those that
    /// failed, remembering the error; the index of one that connected.
    fn settle(&mut self, ready: &[bool]) -> Option<usize> {
        let mut i = self.pending.len();
        let mut winner = None;
        while i > 0 {
            i -= 1;
            if !ready[i] && !cfg!(windows) {
                continue;
            }
            let (addr, s) = &self.pending[i];
            match s.take_error() {
                Ok(None) if ready[i] => winner = Some(i),
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.last_error = Some(connect_error(addr, e));
                    self.pending.remove(i);
                    winner = winner.map(|w| if w > i { w - 1 } else { w });
                }
            }
        }
        winner
    }
}

/// A connected socket back in blocking mode.
fn finish(s: Socket, addr: SocketAddr) -> Result<(TcpStream, SocketAddr)> {
    s.set_nonblocking(false)
        .map_err(|e| Error::new(Status::Connect, format!("{addr}: {e}")).with_source(e))?;
    Ok((s.into(), addr))
}

/// Waits up to `wait` for any of the connects to finish; which did
/// (connected or failed: the caller looks at SO_ERROR).
#[cfg(unix)]
fn wait_ready(pending: &[(SocketAddr, Socket)], wait: Duration) -> Result<Vec<bool>> {
    use std::os::unix::io::AsRawFd;
    let mut fds: Vec<libc::pollfd> = pending
        .iter()
        .map(|(_, s)| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
        .collect();
    let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: `fds` is a live array of `fds.len()` pollfds.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Error::new(Status::Connect, format!("poll: {e}")).with_source(e));
        }
    }
    Ok(fds.iter().map(|p| n > 0 && p.revents != 0).collect())
}

/// Windows: select, as std's own connect_timeout does (writable: connected;
/// in the except set: failed).
#[cfg(windows)]
fn wait_ready(pending: &[(SocketAddr, Socket)], wait: Duration) -> Result<Vec<bool>> {
    use std::os::windows::io::AsRawSocket;
    const FD_SETSIZE: usize = 64;
    #[repr(C)]
    struct FdSet {
        fd_count: u32,
        fd_array: [usize; FD_SETSIZE],
    }
    #[repr(C)]
    struct Timeval {
        tv_sec: i32,
        tv_usec: i32,
    }
    #[link(name = "ws2_32")]
    extern "system" {
        fn select(n: i32, r: *mut FdSet, w: *mut FdSet, e: *mut FdSet, t: *const Timeval) -> i32;
    }
    let set = || {
        let mut s = FdSet {
            fd_count: 0,
            fd_array: [0; FD_SETSIZE],
        };
        for (_, sock) in pending.iter().take(FD_SETSIZE) {
            s.fd_array[s.fd_count as usize] = sock.as_raw_socket() as usize;
            s.fd_count += 1;
        }
        s
    };
    let (mut w, mut e) = (set(), set());
    let t = Timeval {
        tv_sec: 0,
        tv_usec: wait.as_micros().clamp(1000, 999_999) as i32,
    };
    // SAFETY: two live fd sets of our own sockets and a live timeval.
    let n = unsafe { select(0, std::ptr::null_mut(), &mut w, &mut e, &t) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return Err(Error::new(Status::Connect, format!("select: {err}")).with_source(err));
    }
    let is_in = |s: &FdSet, raw: usize| s.fd_array[..s.fd_count as usize].contains(&raw);
    Ok(pending
        .iter()
        .map(|(_, s)| {
            let raw = s.as_raw_socket() as usize;
            is_in(&w, raw) || is_in(&e, raw)
        })
        .collect())
}

/// TCP keepalive as KEEPALIVE_S asks: probes after `idle`, then every
/// idle/4 (1..75 s), 4 of them where the system lets us set the count.
pub fn set_keepalive(s: &TcpStream, idle: Option<Duration>) -> io::Result<()> {
    let sock = SockRef::from(s);
    let Some(idle) = idle else {
        return sock.set_keepalive(false);
    };
    let interval = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(75));
    let ka = TcpKeepalive::new().with_time(idle).with_interval(interval);
    #[cfg(not(any(windows, target_os = "openbsd", target_os = "haiku")))]
    let ka = ka.with_retries(4);
    sock.set_tcp_keepalive(&ka)
}

/// Opens a TCP connection to `host:port`, or to the proxy and through it,
/// within CONNECT_TIMEOUT_MS; TCP_NODELAY, keepalive, IO_TIMEOUT_MS on
/// reads and writes, and registered with `ctl` so a cancel can shut it down.
pub fn connect(host: &str, port: u16, o: &Options, ctl: &ConnCtl) -> Result<TcpStream> {
    let deadline = Instant::now() + o.connect_timeout;
    let (target_host, target_port) = match &o.proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (host, port),
    };
    let addrs = resolve(target_host, target_port, deadline, ctl).map_err(|e| in_proxy(o, e))?;
    let (mut s, addr) = connect_any(&addrs, deadline, STAGGER, ctl).map_err(|e| in_proxy(o, e))?;
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_nodelay(true)?;
        set_keepalive(s, o.keepalive)?;
        s.set_read_timeout(Some(o.io_timeout))?;
        s.set_write_timeout(Some(o.io_timeout))?;
        ctl.register(s)
    };
    setup(&s).map_err(|e| Error::new(Status::Connect, format!("{addr}: {e}")).with_source(e))?;
    ctl.check()?;
    if let Some(p) = &o.proxy {
        super::proxy::tunnel(&mut s, p, host, port, deadline, o.io_timeout, ctl)?;
    }
    Ok(s)
}

/// A failure to reach the proxy says so.
fn in_proxy(o: &Options, e: Error) -> Error {
    match &o.proxy {
        Some(p) if e.status != Status::Cancelled => {
            let mut e = e;
            e.detail = format!("{p}: {}", e.detail);
            e
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;

    fn v4(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn v6(p: u16) -> SocketAddr {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, p))
    }

    #[test]
    fn families_alternate_starting_with_the_first() {
        let got = interleave(&[v6(1), v6(2), v4(3), v4(4), v4(5)]);
        assert_eq!(got, [v6(1), v4(3), v6(2), v4(4), v4(5)]);
        assert_eq!(interleave(&[v4(1), v6(2)]), [v4(1), v6(2)]);
        assert!(interleave(&[]).is_empty());
    }

    /// A listener that takes no more connections: its accept queue is full
    /// (backlog 0 holds one, which we fill), so Linux drops further SYNs
    /// and a connect to it hangs as to a blackholed address.
    pub(crate) fn blackhole() -> (Socket, Vec<TcpStream>, SocketAddr) {
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&v4(0).into()).unwrap();
        l.listen(0).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let mut fill = Vec::new();
        // Fill the queue: connects that complete (the kernel's queue takes
        // backlog + 1), until one no longer does within 200 ms.
        for _ in 0..8 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fill.push(s),
                Err(_) => break,
            }
        }
        (l, fill, addr)
    }

    #[test]
    fn blackholed_first_address_does_not_eat_the_timeout() {
        let (_hole, _fill, dead) = blackhole();
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let good_addr = good.local_addr().unwrap();
        let ctl = ConnCtl::new();
        // A 60 s deadline: only trying the second address while the first
        // still hangs connects before it.
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        let (s, addr) = connect_any(&[dead, good_addr], deadline, STAGGER, &ctl).unwrap();
        eprintln!("connected past a blackholed address in {:?}", started.elapsed());
        assert_eq!(addr, good_addr);
        assert_eq!(s.peer_addr().unwrap(), good_addr);
        // And the blackholed one alone times out (a short deadline here).
        let deadline = Instant::now() + Duration::from_millis(300);
        let e = connect_any(&[dead], deadline, STAGGER, &ctl).unwrap_err();
        assert_eq!(e.status, Status::Timeout, "{e}");
        assert!(e.detail.contains(&dead.to_string()), "{e}");
    }

    #[test]
    fn refused_address_moves_on_to_the_next_at_once() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let ctl = ConnCtl::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        // A stagger of an hour: only the refusal starts the second attempt.
        let (_, addr) = connect_any(
            &[refused, good.local_addr().unwrap()],
            deadline,
            Duration::from_secs(3600),
            &ctl,
        )
        .unwrap();
        assert_eq!(addr, good.local_addr().unwrap());
        let e = connect_any(&[refused], deadline, STAGGER, &ctl).unwrap_err();
        assert_eq!(e.status, Status::Connect, "{e}");
        assert!(e.detail.contains("refused"), "{e}");
    }

    #[test]
    fn abort_ends_a_hanging_connect() {
        let (_hole, _fill, dead) = blackhole();
        let ctl = ConnCtl::new();
        let c2: Arc<ConnCtl> = ctl.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            c2.abort();
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let e = connect_any(&[dead], deadline, STAGGER, &ctl).unwrap_err();
        // Cancelled, not timed out: the abort ended it, not the deadline.
        assert_eq!(e.status, Status::Cancelled, "{e}");
        t.join().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn keepalive_reaches_the_socket() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut o = Options::new(crate::options::Protocol::Imap);
        o.set_int(crate::options::id::KEEPALIVE_S, 40).unwrap();
        let s = connect("127.0.0.1", port, &o, &ConnCtl::new()).unwrap();
        let sock = SockRef::from(&s);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(40));
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), Duration::from_secs(10));
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 4);
        // The default is on, 60 s; 0 turns it off.
        let o = Options::new(crate::options::Protocol::Imap);
        let s = connect("127.0.0.1", port, &o, &ConnCtl::new()).unwrap();
        assert_eq!(
            SockRef::from(&s).tcp_keepalive_time().unwrap(),
            Duration::from_secs(60)
        );
        let mut o = Options::new(crate::options::Protocol::Imap);
        o.set_int(crate::options::id::KEEPALIVE_S, 0).unwrap();
        let s = connect("127.0.0.1", port, &o, &ConnCtl::new()).unwrap();
        assert!(!SockRef::from(&s).keepalive().unwrap());
    }
}
