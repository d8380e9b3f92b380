//! Memory per connection against servers that never end a line: with
//! MAX_CONNECTIONS 8, every connection reading an endless line at once,
//! the process's peak RSS grows by a few MB in all. Alone in its binary,
//! so no other test moves the numbers.

mod api;

use std::time::{Duration, Instant};

use api::*;
use herald_testservers::imap_script::{self, serve, Evil, Step};
use herald_testservers::scripted::Scripted;

const CONNECTIONS: usize = 8;

#[test]
fn eight_connections_reading_endless_lines_stay_within_a_few_mb() {
    for step in [Step::Login, Step::List, Step::Search] {
        let server = Scripted::start(move |peer| serve(peer, Some((step, Evil::Endless)), None));
        let c = TestClient::imap_as(
            server.port(),
            "carol",
            "carolpass",
            &[(HERALD_OPT_MAX_CONNECTIONS, Val::I(CONNECTIONS as i64))],
        );
        let round = || {
            let ops: Vec<u64> = (0..CONNECTIONS)
                .map(|_| match step {
                    Step::Search => c.imap_search("INBOX", "ALL").unwrap(),
                    _ => c.imap_list("*").unwrap(),
                })
                .collect();
            for op in &ops {
                assert_eq!(c.wait(*op, Duration::from_secs(30)), HERALD_STATUS_OK);
            }
            ops
        };
        // Warm up: threads and the allocator's pools, in a first round.
        let warm = round();
        let (before, hwm_before) = imap_script::rss_kib();
        let started = Instant::now();
        let mut ops = warm.clone();
        for _ in 0..3 {
            ops.extend(round());
        }
        let took = started.elapsed();
        let (after, hwm_after) = imap_script::rss_kib();
        let records = c.free();
        assert_exactly_once(&records, &ops);
        assert!(
            records.iter().all(|r| r.status == HERALD_STATUS_PROTOCOL),
            "{:?}",
            records.iter().find(|r| r.status != HERALD_STATUS_PROTOCOL)
        );
        let peak_growth = hwm_after.saturating_sub(before);
        eprintln!(
            "{step:?}: {} ops on {CONNECTIONS} connections against endless lines in {took:?}; \
             RSS {before} -> {after} KiB, peak {hwm_before} -> {hwm_after} KiB (peak over the start: {peak_growth} KiB)",
            ops.len() - warm.len()
        );
        // The reader stops at MAX_LINE_BYTES (256 KiB), its buffer at about
        // twice that: a few MB for all eight, where an unbounded reader
        // grew by hundreds of MB a second.
        assert!(
            peak_growth < (CONNECTIONS as u64) * 2 * 1024,
            "peak RSS grew by {peak_growth} KiB"
        );
    }
}
