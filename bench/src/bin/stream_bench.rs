//! Streaming 10 000 messages with bounded memory: herald's streaming fetch
//! (items to a callback, a slow callback, fetch to a directory) against
//! Python's imaplib fetching 100 UIDs per command, in the same run, on a
//! private Dovecot on loopback. For each: the seconds, and how far the
//! process's peak RSS rose over its RSS at the start (VmHWM reset with
//! Linux `clear_refs` before each run, so each is measured on its own).
//!
//! The mailbox: 10 000 messages of 100 KB (about 1 GB in Dovecot's
//! maildir, in a temp dir removed at the end), appended by herald 100 per
//! op before the clock starts. `--messages N` for another count.
//!
//! Run: `cargo run --release -p herald-bench --bin stream_bench` (as root:
//! Dovecot needs it).

use std::ffi::{c_void, CString};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use herald::ffi::client::*;
use herald::ffi::completion::*;
use herald::ffi::imap::*;
use herald::ffi::result::*;
use herald::ffi::stream::*;
use herald::ffi::HERALD_STATUS_OK;
use herald_bench::imap::client;
use herald_testservers::Dovecot;

const SIZE: usize = 100 * 1024;

static DONE: Mutex<Option<(u32, usize)>> = Mutex::new(None);
static DONE_CV: Condvar = Condvar::new();
static ITEMS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Microseconds the item callback sleeps per item.
static SLOW_US: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn on_done(c: *const herald_completion) {
    let c = &*c;
    *DONE.lock().unwrap() = Some((c.status, herald_result_count(c.result)));
    DONE_CV.notify_all();
}

unsafe extern "C" fn on_item(c: *const herald_completion) {
    let mut len = 0;
    herald_result_bytes((*c).result, 0, &mut len);
    BYTES.fetch_add(len as u64, Ordering::Relaxed);
    ITEMS.fetch_add(1, Ordering::Relaxed);
    let us = SLOW_US.load(Ordering::Relaxed);
    if us > 0 {
        std::thread::sleep(Duration::from_micros(us));
    }
}

/// Submits one op and waits for its completion: (status, result items).
fn run(submit: impl FnOnce(herald_callback, *mut c_void, *mut herald_op) -> u32) -> (u32, usize) {
    *DONE.lock().unwrap() = None;
    let mut op = 0;
    assert_eq!(
        submit(Some(on_done), std::ptr::null_mut(), &mut op),
        HERALD_STATUS_OK
    );
    let mut g = DONE.lock().unwrap();
    while g.is_none() {
        g = DONE_CV.wait(g).unwrap();
    }
    g.take().unwrap()
}

fn message(i: usize) -> Vec<u8> {
    let mut m = format!("From: bench@example.org\r\nTo: alice@example.org\r\nSubject: stream {i}\r\n\r\n")
        .into_bytes();
    let line = b"herald streaming benchmark body line, padded to a fixed width......\r\n";
    while m.len() + line.len() <= SIZE {
        m.extend_from_slice(line);
    }
    m
}

fn fill(c: *mut herald_client, n: usize) {
    let mb = CString::new("INBOX").unwrap();
    for start in (0..n).step_by(100) {
        let msgs: Vec<Vec<u8>> = (start..(start + 100).min(n)).map(message).collect();
        let ptrs: Vec<*const u8> = msgs.iter().map(|m| m.as_ptr()).collect();
        let lens: Vec<usize> = msgs.iter().map(Vec::len).collect();
        let (s, k) = run(|cb, t, op| {
            herald_imap_append_async(
                c,
                mb.as_ptr(),
                ptrs.as_ptr(),
                lens.as_ptr(),
                ptrs.len(),
                std::ptr::null(),
                cb,
                t,
                op,
            )
        });
        assert_eq!((s, k), (HERALD_STATUS_OK, msgs.len()));
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `f`: (seconds, peak RSS growth in KiB).
fn measured(f: impl FnOnce()) -> (f64, u64) {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let before = rss_kib("VmRSS:");
    let t = Instant::now();
    f();
    let secs = t.elapsed().as_secs_f64();
    (secs, rss_kib("VmHWM:").saturating_sub(before))
}

fn stream_all(c: *mut herald_client, n: usize) {
    let (mb, all) = (CString::new("INBOX").unwrap(), CString::new("1:*").unwrap());
    ITEMS.store(0, Ordering::Relaxed);
    BYTES.store(0, Ordering::Relaxed);
    let (s, k) = run(|cb, t, op| {
        herald_imap_fetch_stream_async(
            c,
            mb.as_ptr(),
            all.as_ptr(),
            HERALD_FETCH_BODY,
            Some(on_item),
            cb,
            t,
            op,
        )
    });
    assert_eq!((s, k), (HERALD_STATUS_OK, 1));
    assert_eq!(ITEMS.load(Ordering::Relaxed), n as u64);
    assert!(BYTES.load(Ordering::Relaxed) >= (n * (SIZE - 100)) as u64);
}

fn imaplib(port: u16, chunk: usize) -> (f64, u64, usize) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/imaplib_stream.py");
    let out = Command::new("python3")
        .args([script, &port.to_string(), "INBOX", &chunk.to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "imaplib peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<&str> = text.split_whitespace().collect();
    (
        v[0].parse().unwrap(),
        v[1].parse().unwrap(),
        v[2].parse().unwrap(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args
        .iter()
        .position(|a| a == "--messages")
        .and_then(|i| args.get(i + 1))
        .map_or(10_000, |v| v.parse().expect("--messages N"));
    let d = Dovecot::start();
    let c = client(d.imap_port, None);
    let t = Instant::now();
    fill(c, n);
    eprintln!("appended {n} x {SIZE} B in {:.1} s", t.elapsed().as_secs_f64());
    // Warm up: the connection, the selected mailbox, threads, the allocator.
    stream_all(c, n);

    let (py_s, py_kib, py_n) = imaplib(d.imap_port, 100);
    assert_eq!(py_n, n);
    let (cb_s, cb_kib) = measured(|| stream_all(c, n));
    SLOW_US.store(500, Ordering::Relaxed);
    let (slow_s, slow_kib) = measured(|| stream_all(c, n));
    SLOW_US.store(0, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("herald-stream-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = CString::new(dir.to_str().unwrap()).unwrap();
    let (mb, all) = (CString::new("INBOX").unwrap(), CString::new("1:*").unwrap());
    let (dir_s, dir_kib) = measured(|| {
        let (s, k) = run(|cb, t, op| {
            herald_imap_fetch_to_dir_async(c, mb.as_ptr(), all.as_ptr(), p.as_ptr(), cb, t, op)
        });
        assert_eq!((s, k), (HERALD_STATUS_OK, n));
    });
    std::fs::remove_dir_all(&dir).unwrap();
    herald_client_free(c);

    let mb_total = (n * SIZE) as f64 / 1e6;
    println!(
        "streaming {n} x 100 KB ({mb_total:.0} MB) from Dovecot on loopback; peak RSS growth over the start"
    );
    println!("| setup | seconds | MB/s | peak RSS growth (KiB) |");
    println!("|---|---:|---:|---:|");
    for (setup, s, kib) in [
        (
            "imaplib, UID FETCH of 100 UIDs per command".to_string(),
            py_s,
            py_kib,
        ),
        ("herald stream, items to a callback".to_string(), cb_s, cb_kib),
        (
            "herald stream, callback sleeping 0.5 ms per item".to_string(),
            slow_s,
            slow_kib,
        ),
        ("herald fetch to a directory".to_string(), dir_s, dir_kib),
    ] {
        println!("| {setup} | {s:.2} | {:.0} | {kib} |", mb_total / s);
    }
    println!(
        "herald's bound: {} items / {} KiB held for the caller, plus the message being read",
        HERALD_STREAM_MAX_HELD_ITEMS,
        HERALD_STREAM_MAX_HELD_BYTES / 1024
    );
}
