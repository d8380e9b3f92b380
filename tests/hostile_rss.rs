//! Memory bound per connection: with MAX_CONNECTIONS 8 against an SMTP
//! server whose every line never ends, herald's peak resident memory grows
//! by a few MB per connection at most (each connection reads at most
//! MAX_LINE_BYTES of a line; its buffer never exceeds twice that). A test
//! binary of its own, so that /proc/self/status measures this test alone.

mod api;

use std::time::{Duration, Instant};

use api::*;
use herald_testservers::scripted::Scripted;

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}

const CONNECTIONS: usize = 8;
/// What one connection may add to the peak, at most.
const PER_CONNECTION_KIB: u64 = 4 * 1024;

#[test]
fn endless_lines_on_eight_connections_stay_within_a_few_mb_each() {
    // Every connection: a greeting line (then every reply) that never ends,
    // written as fast as herald reads, for as long as herald keeps it open.
    let srv = Scripted::start(|mut p| {
        p.send("220 ")?;
        let chunk = vec![b'x'; 256 * 1024];
        p.flood(Duration::from_secs(30), |_| chunk.clone())
    });
    let before = peak_rss_kib();
    let c = TestClient::smtp_plain(
        srv.port(),
        &[
            (HERALD_OPT_MAX_CONNECTIONS, Val::I(CONNECTIONS as i64)),
            (HERALD_OPT_OP_TIMEOUT_MS, Val::I(5000)),
        ],
    );
    let started = Instant::now();
    let ops = c.send_numbered("a@x.test", "b@x.test", 64);
    assert_eq!(c.flush(Duration::from_secs(60)), HERALD_STATUS_OK);
    let took = started.elapsed();
    let recs = c.free();
    assert_exactly_once(&recs, &ops);
    assert!(
        recs.iter().all(|r| r.status == HERALD_STATUS_PROTOCOL),
        "an endless line is PROTOCOL: {:?}",
        recs.iter().find(|r| r.status != HERALD_STATUS_PROTOCOL)
    );
    let grew = peak_rss_kib().saturating_sub(before);
    eprintln!(
        "{} connections accepted, 64 ops in {took:?}; peak RSS grew by {grew} KiB ({} KiB per connection)",
        srv.accepted(),
        grew / CONNECTIONS as u64
    );
    assert!(srv.accepted() >= CONNECTIONS, "the pool opened its connections");
    assert!(
        grew < CONNECTIONS as u64 * PER_CONNECTION_KIB,
        "peak RSS grew by {grew} KiB with {CONNECTIONS} connections"
    );
}
