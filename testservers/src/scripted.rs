//! Scripted servers: a loopback listener whose every accepted connection is
//! handed to a closure, for what no real server will do (garbage, floods,
//! trickling, silence, resets). Protocol behaviour is tested against the real
//! servers; these cover hostile and broken ones.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A scripted server on 127.0.0.1. Each connection runs `script` on its own
/// thread; the listener stops when the `Scripted` is dropped.
pub struct Scripted {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    /// Listens on a free loopback port and runs `script` for every connection.
    /// A script's error or panic ends only its connection.
    pub fn start<F>(script: F) -> Scripted
    where
        F: Fn(Peer) -> io::Result<()> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind((crate::HOST, 0)).expect("bind a scripted server");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::Builder::new()
            .name(format!("scripted-{port}"))
            .spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let n = accepted2.fetch_add(1, Ordering::SeqCst);
                            s.set_nonblocking(false).unwrap();
                            let script = script.clone();
                            let stop = stop2.clone();
                            std::thread::spawn(move || {
                                let peer = Peer::new(s, n, stop);
                                let _ =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| script(peer)));
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => break,
                    }
                }
            })
            .unwrap();
        Scripted {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// The port it listens on, on [`HOST`](crate::HOST).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One accepted connection, as a script sees it.
pub struct Peer {
    /// Which connection this is (0 for the first accepted).
    pub index: usize,
    reader: BufReader<TcpStream>,
    stop: Arc<AtomicBool>,
}

impl Peer {
    fn new(s: TcpStream, index: usize, stop: Arc<AtomicBool>) -> Peer {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        Peer {
            index,
            reader: BufReader::new(s),
            stop,
        }
    }

    /// Has the server been dropped (scripts that loop forever check this)?
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The connection itself (reads through it bypass [`line`](Self::line)'s buffer).
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream().write_all(bytes.as_ref())
    }

    /// Reads one line from the client, without its CRLF ("" at EOF).
    pub fn line(&mut self) -> io::Result<String> {
        let mut v = Vec::new();
        self.reader.read_until(b'\n', &mut v)?;
        while v.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            v.pop();
        }
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    /// Reads exactly `n` bytes from the client.
    pub fn bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0; n];
        self.reader.read_exact(&mut v)?;
        Ok(v)
    }

    /// Writes `bytes` one at a time, `gap` apart, until done or the client left.
    pub fn trickle(&mut self, bytes: &[u8], gap: Duration) -> io::Result<()> {
        for b in bytes {
            if self.stopping() {
                break;
            }
            self.stream().write_all(std::slice::from_ref(b))?;
            std::thread::sleep(gap);
        }
        Ok(())
    }

    /// Writes `make(i)` for i = 0, 1, ... until the client stops reading,
    /// `limit` passes, or the server is dropped.
    pub fn flood(&mut self, limit: Duration, mut make: impl FnMut(u64) -> Vec<u8>) -> io::Result<()> {
        let end = Instant::now() + limit;
        let mut i = 0;
        while Instant::now() < end && !self.stopping() {
            self.stream().write_all(&make(i))?;
            i += 1;
        }
        Ok(())
    }

    /// Holds the connection open without a word until the client closes it,
    /// `limit` passes, or the server is dropped.
    pub fn silence(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        let _ = self.stream().set_read_timeout(Some(Duration::from_millis(20)));
        let mut buf = [0u8; 4096];
        while Instant::now() < end && !self.stopping() {
            match self.reader.get_mut().read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }

    /// Closes with a TCP reset (SO_LINGER 0) instead of a FIN.
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct Linger {
            on: i32,
            secs: i32,
        }
        extern "C" {
            fn setsockopt(fd: i32, level: i32, name: i32, val: *const Linger, len: u32) -> i32;
        }
        const SOL_SOCKET: i32 = 1;
        const SO_LINGER: i32 = 13;
        let s = self.reader.into_inner();
        let l = Linger { on: 1, secs: 0 };
        // SAFETY: a valid socket and a correctly sized option value.
        unsafe { setsockopt(s.as_raw_fd(), SOL_SOCKET, SO_LINGER, &l, 8) };
        drop(s);
    }

    /// Closes both directions politely.
    pub fn close(self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Both);
    }
}
