//! A TCP proxy that forwards every chunk after a fixed one-way delay, in
//! both directions, to emulate a WAN round trip on loopback (this kernel has
//! no netem). Each direction has a reader and a writer thread, so a chunk
//! is delayed by exactly `one_way` from when it arrived, however many are in
//! flight; the upstream connect is delayed by one round trip, as a TCP
//! handshake would be.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub struct DelayProxy {
    pub port: u16,
    /// Bytes forwarded from the server to clients so far, all connections.
    pub down_bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

/// Sleeps until `t`, precisely: a coarse sleep, then a short spin.
fn sleep_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > Duration::from_micros(300) {
            thread::sleep(left - Duration::from_micros(200));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// One direction: read chunks as they come, write each `delay` after it arrived.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration, count: Option<Arc<AtomicU64>>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        for (due, chunk) in rx {
            sleep_until(due);
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(c) = &count {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
                if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards to `upstream` with
    /// `one_way` delay each way (a round trip of twice that).
    pub fn start(upstream: SocketAddr, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let down_bytes = Arc::new(AtomicU64::new(0));
        let down = down_bytes.clone();
        // A blocking accept: a connection is taken at once (polling would add
        // up to the poll interval to every connect). Drop wakes it with a
        // connection of its own after setting `stop`.
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let down = down.clone();
                thread::spawn(move || {
                    // The handshake a real link would cost.
                    thread::sleep(one_way * 2);
                    let Ok(server) = TcpStream::connect(upstream) else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let up = thread::spawn(move || pump(client, server, one_way, None));
                    pump(s2, c2, one_way, Some(down));
                    let _ = up.join();
                });
            }
        });
        DelayProxy {
            port,
            down_bytes,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_takes_twice_the_one_way_delay() {
        // An echo server behind a 10 ms (each way) proxy.
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = echo.local_addr().unwrap();
        thread::spawn(move || {
            for s in echo.incoming().flatten() {
                thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = DelayProxy::start(addr, Duration::from_millis(10));
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        c.set_nodelay(true).unwrap();
        let mut buf = [0u8; 1];
        let mut rtts = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            c.write_all(b"x").unwrap();
            c.read_exact(&mut buf).unwrap();
            rtts.push(t.elapsed());
        }
        let best = rtts.iter().min().unwrap();
        assert!(*best >= Duration::from_millis(20), "{rtts:?}");
    }
}
