//! Connections as seen from outside the process: ESTABLISHED TCP
//! connections to a port, counted with `ss` (iproute2).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::HOST;

/// Number of ESTABLISHED TCP connections to 127.0.0.1:`port` (counted by
/// their client side: destination port `port`), from any process, as `ss`
/// reports them: `ss -Htn state established '( dport = :PORT and dst 127.0.0.1 )'`.
pub fn established_connections(port: u16) -> usize {
    let filter = format!("( dport = :{port} and dst {HOST} )");
    let out = Command::new("ss")
        .args(["-Htn", "state", "established", &filter])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run ss: {e} (install iproute2: scripts/install-test-deps.sh)"));
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Polls [`established_connections`] until it equals `expected` or `timeout`
/// passes; returns the last count.
pub fn wait_for_connections(port: u16, expected: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let n = established_connections(port);
        if n == expected || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
