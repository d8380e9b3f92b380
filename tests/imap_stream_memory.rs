//! Memory of a streaming fetch: fetching N messages of 100 KB with items
//! to a callback, items through the completion queue, or into a directory
//! raises the process's peak RSS by a few MB at most, however large N;
//! a plain fetch (one result holding every message) grows by about the
//! mailbox's size, which shows the measurement sees what it should. Alone
//! in its binary, so no other test moves the numbers. N is
//! HERALD_STREAM_MESSAGES (default 1000: about 100 MB through Dovecot);
//! the 10 000-message case is `bench/src/bin/stream_memory.rs`.

mod api;

use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use api::imap::*;
use api::*;
use herald::ffi::stream::*;
use herald_testservers::imap_script::rss_kib;
use herald_testservers::Dovecot;

const SIZE: usize = 100 * 1024;

/// Bytes and items the item callback saw; it keeps nothing.
static BYTES: AtomicU64 = AtomicU64::new(0);
static ITEMS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn count_item(c: *const herald_completion) {
    let mut len = 0;
    let p = herald_result_bytes((*c).result, 0, &mut len);
    assert!(!p.is_null() && len >= SIZE, "an item holds its message");
    BYTES.fetch_add(len as u64, Ordering::Relaxed);
    ITEMS.fetch_add(1, Ordering::Relaxed);
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5); the RSS then.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    rss_kib().0
}

/// Runs `f`, and gives how far it raised the peak RSS (KiB) and how long it took.
fn peak_growth(what: &str, f: impl FnOnce()) -> u64 {
    let before = reset_peak();
    let t = Instant::now();
    f();
    let took = t.elapsed();
    let (after, peak) = rss_kib();
    let growth = peak.saturating_sub(before);
    eprintln!("{what}: {took:?}; RSS {before} -> {after} KiB, peak {peak} KiB: +{growth} KiB over the start");
    growth
}

fn messages() -> usize {
    std::env::var("HERALD_STREAM_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Appends `n` messages of SIZE bytes, 100 per append, so the test's own
/// copies stay small.
fn fill(c: &TestClient, n: usize) {
    let t = Instant::now();
    for start in (0..n).step_by(100) {
        let msgs: Vec<Vec<u8>> = (start..(start + 100).min(n))
            .map(|i| raw_message(&format!("message {i}"), SIZE))
            .collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let r = c.done(c.imap_append("INBOX", &refs, None));
        assert!(r.ok(), "{r:?}");
    }
    eprintln!("appended {n} messages of {SIZE} bytes in {:?}", t.elapsed());
}

#[test]
fn streaming_a_large_mailbox_keeps_memory_within_a_few_mb() {
    let n = messages();
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    fill(&c, n);
    let (m, all) = (CString::new("INBOX").unwrap(), CString::new("1:*").unwrap());
    let total_kib = (n * SIZE / 1024) as u64;
    // Warm up: threads, the connection and the allocator's pools.
    let r = c.done(c.imap_fetch("INBOX", "1:20", HERALD_FETCH_BODY));
    assert_eq!(r.items.len(), 20.min(n));

    // Items to a callback.
    let growth_cb = peak_growth("stream to a callback", || {
        let mut op = 0;
        let s = herald_imap_fetch_stream_async(
            c.c,
            m.as_ptr(),
            all.as_ptr(),
            HERALD_FETCH_BODY,
            Some(count_item),
            Some(record_completion),
            c.token(),
            &mut op,
        );
        assert_eq!(s, HERALD_STATUS_OK);
        let r = c.result(op);
        assert!(r.ok(), "{r:?}");
    });
    assert_eq!(ITEMS.load(Ordering::Relaxed), n as u64);
    assert!(BYTES.load(Ordering::Relaxed) >= (n * SIZE) as u64);

    // Items through the completion queue, taken and freed one by one.
    let growth_queue = peak_growth("stream through the queue", || {
        let mut op = 0;
        let s = herald_imap_fetch_stream_async(
            c.c,
            m.as_ptr(),
            all.as_ptr(),
            HERALD_FETCH_BODY,
            None,
            None,
            std::ptr::null_mut(),
            &mut op,
        );
        assert_eq!(s, HERALD_STATUS_OK);
        let mut items = 0;
        loop {
            let p = herald_client_next(c.c, 60_000);
            assert!(!p.is_null());
            let item = herald_completion_is_item(p) == 1;
            // SAFETY: a completion from herald_client_next.
            let status = unsafe { (*p).status };
            herald_completion_free(p);
            if !item {
                assert_eq!(status, HERALD_STATUS_OK);
                break;
            }
            items += 1;
        }
        assert_eq!(items, n);
    });

    // Into a directory.
    let dir = std::env::temp_dir().join(format!("herald-stream-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = CString::new(dir.to_str().unwrap()).unwrap();
    let growth_dir = peak_growth("fetch to a directory", || {
        let r = c.done(c.submit(|cb, t, op| {
            herald_imap_fetch_to_dir_async(c.c, m.as_ptr(), all.as_ptr(), p.as_ptr(), cb, t, op)
        }));
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.items.len(), n);
    });
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), n);
    std::fs::remove_dir_all(&dir).unwrap();

    // The plain fetch holds the whole mailbox: the measurement sees it.
    let growth_plain = peak_growth("plain fetch (one result)", || {
        let op = c.imap_fetch("INBOX", "1:*", HERALD_FETCH_BODY).unwrap();
        assert_eq!(c.wait(op, Duration::from_secs(300)), HERALD_STATUS_OK);
    });
    eprintln!(
        "{n} x {SIZE} B = {total_kib} KiB fetched; peak RSS growth: callback {growth_cb} KiB, \
         queue {growth_queue} KiB, directory {growth_dir} KiB, plain fetch {growth_plain} KiB"
    );
    assert!(
        growth_plain > total_kib / 2,
        "the plain fetch grew by {growth_plain} KiB only"
    );
    // What herald may hold for a stream: HERALD_STREAM_MAX_HELD_BYTES
    // (2 MiB) of items, the message being read, the read buffer; and the
    // allocator's slack. Far below the mailbox's 100 MB.
    let bound = 8 * 1024;
    for (what, g) in [
        ("callback", growth_cb),
        ("queue", growth_queue),
        ("directory", growth_dir),
    ] {
        assert!(g < bound, "{what}: peak RSS grew by {g} KiB (bound {bound} KiB)");
    }
    let _: *mut c_void = c.token();
}
