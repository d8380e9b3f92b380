//! Free loopback ports for the servers to listen on.

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::HOST;
/// A TCP port on 127.0.0.1 that is free right now and that this process has
/// not handed out before.
///
/// Ports come from below (or above) the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), not from `bind(:0)`: a port
/// from the ephemeral range can be taken as the *source* port of some
/// outgoing connection (tests open thousands) between this check and the
/// server's `bind`. Another process may still grab the port in that window;
/// the `start` functions then retry with fresh ports.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    static SEED: AtomicU64 = AtomicU64::new(0);
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let mut given = given.lock().unwrap_or_else(|e| e.into_inner());

    let (lo, hi) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let range = if lo >= 12000 {
        Some((10000u32, lo))
    } else if hi <= 55000 {
        Some((hi + 1, 65536))
    } else {
        None
    };
    if let Some((start, end)) = range {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut x = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            | 1;
        for _ in 0..10_000 {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = (start + (x % u64::from(end - start)) as u32) as u16;
            if !given.contains(&port) && TcpListener::bind((HOST, port)).is_ok() {
                given.insert(port);
                return port;
            }
        }
    }
    loop {
        let port = TcpListener::bind((HOST, 0))
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}
