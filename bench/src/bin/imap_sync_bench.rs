//! IMAP sync benchmark: herald against Python's imaplib in the same run, on
//! a private Dovecot (as the tests start it), through herald_bench's delay
//! proxy (20 ms round trip).
//!
//! 1. Opening a folder and fetching it: 1000 x 10 KB messages, `1:*` with
//!    BODY, on a logged-in connection that has another mailbox selected
//!    (as a mail app switching folders). imaplib: EXAMINE, then
//!    `UID FETCH 1:* (BODY.PEEK[])`; herald: one fetch op. Best of 7 each.
//!    The round-trip limit is what the same work takes a minimal client
//!    on the same link when it sends EXAMINE and UID FETCH in one write and
//!    reads the replies into one buffer (one round trip, no parsing): no
//!    client can do it faster. Efficiency = limit / time.
//! 2. CHANGEDSINCE on a 10 000-message folder after another client flagged
//!    10 messages: herald's fetch of what changed (items, bytes the server
//!    sent, time) against a full flag resync (`UID FETCH 1:* (FLAGS)`) by
//!    herald and by imaplib.
//!
//! Run: `cargo run --release -p herald-bench --bin imap_sync_bench` (as
//! root: Dovecot needs it).

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald::ffi::client::*;
use herald::ffi::imap::*;
use herald::ffi::imap_sync::*;
use herald_bench::delay_proxy::DelayProxy;
use herald_bench::imap::{client, run, Outcome};
use herald_testservers::Dovecot;

const MESSAGES: usize = 1000;
const SIZE: usize = 10 * 1024;
const BIG: usize = 10_000;
const CHANGES: usize = 10;
const ONE_WAY: Duration = Duration::from_millis(10);
/// One connection, as imaplib's.
const ONE_CONNECTION: Option<i64> = Some(1);
/// Runs of each timed case; the best counts (the machine is shared).
const RUNS: usize = 7;

fn message(i: usize, size: usize) -> Vec<u8> {
    let head = format!("From: bench@example.org\r\nTo: alice@example.org\r\nSubject: herald {i}\r\n\r\n");
    let line = b"herald benchmark message body line, padded to a fixed width.........\r\n";
    let mut m = head.into_bytes();
    while m.len() < size - 2 {
        m.extend_from_slice(line);
    }
    m.truncate(size - 2);
    m.extend_from_slice(b"\r\n");
    m
}

fn fill(c: *mut herald_client, mailbox: &str, n: usize, size: usize) {
    let mb = CString::new(mailbox).unwrap();
    run(|cb, t, op| herald_imap_create_async(c, mb.as_ptr(), cb, t, op));
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| message(i, size)).collect();
    let ptrs: Vec<*const u8> = msgs.iter().map(|m| m.as_ptr()).collect();
    let lens: Vec<usize> = msgs.iter().map(|m| m.len()).collect();
    let (o, _) = run(|cb, t, op| {
        herald_imap_append_async(
            c,
            mb.as_ptr(),
            ptrs.as_ptr(),
            lens.as_ptr(),
            n,
            std::ptr::null(),
            cb,
            t,
            op,
        )
    });
    assert_eq!(o.items, n);
}

fn fetch(c: *mut herald_client, mailbox: &str, parts: u32) -> (Outcome, Duration) {
    let mb = CString::new(mailbox).unwrap();
    let all = CString::new("1:*").unwrap();
    run(|cb, t, op| herald_imap_fetch_async(c, mb.as_ptr(), all.as_ptr(), parts, cb, t, op))
}

fn fetch_changed(c: *mut herald_client, mailbox: &str, since: u64) -> (Outcome, Duration) {
    let mb = CString::new(mailbox).unwrap();
    let all = CString::new("1:*").unwrap();
    run(|cb, t, op| {
        herald_imap_fetch_changed_async(c, mb.as_ptr(), all.as_ptr(), HERALD_FETCH_FLAGS, since, cb, t, op)
    })
}

/// Selects INBOX on the client's connection (a search there).
fn select_inbox(c: *mut herald_client) {
    let mb = CString::new("INBOX").unwrap();
    let all = CString::new("ALL").unwrap();
    run(|cb, t, op| herald_imap_search_async(c, mb.as_ptr(), all.as_ptr(), cb, t, op));
}

/// Runs the Python peer; what it printed.
fn imaplib(args: &[String]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/imaplib_sync_bench.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "imaplib peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn numbers(s: &str) -> Vec<f64> {
    s.split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect()
}

/// Reads from `s` into `buf` until it ends with a line starting `tag OK`.
fn read_until_tagged(s: &mut TcpStream, buf: &mut Vec<u8>, tag: &str) {
    let want = format!("\n{tag} OK");
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if buf.starts_with(&want.as_bytes()[1..])
            && buf.ends_with(b"\r\n")
            && !buf[..buf.len() - 2].contains(&b'\n')
        {
            return;
        }
        let tail = &buf[buf.len().saturating_sub(4096)..];
        if let Some(i) = tail.windows(want.len()).rposition(|w| w == want.as_bytes()) {
            if tail[i..].ends_with(b"\r\n") {
                return;
            }
        }
    }
}

/// The round-trip limit: a minimal client through `port` sends EXAMINE and
/// UID FETCH in one write and reads until the fetch's tagged OK (best of 7,
/// INBOX selected before each run); and the fetch alone, selected.
fn raw_limit(port: u16) -> (Duration, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    s.write_all(b"a LOGIN alice alicepass\r\n").unwrap();
    read_until_tagged(&mut s, &mut buf, "a");
    let (mut open, mut fetch) = (Duration::MAX, Duration::MAX);
    for i in 0..RUNS {
        buf.clear();
        s.write_all(format!("s{i} EXAMINE INBOX\r\n").as_bytes()).unwrap();
        read_until_tagged(&mut s, &mut buf, &format!("s{i}"));
        buf.clear();
        let t = Instant::now();
        let both = format!("e{i} EXAMINE Fetch\r\nf{i} UID FETCH 1:* (BODY.PEEK[])\r\n");
        s.write_all(both.as_bytes()).unwrap();
        read_until_tagged(&mut s, &mut buf, &format!("f{i}"));
        open = open.min(t.elapsed());
        assert!(buf.len() > MESSAGES * SIZE);
        buf.clear();
        let t = Instant::now();
        s.write_all(format!("g{i} UID FETCH 1:* (BODY.PEEK[])\r\n").as_bytes())
            .unwrap();
        read_until_tagged(&mut s, &mut buf, &format!("g{i}"));
        fetch = fetch.min(t.elapsed());
    }
    (open, fetch)
}

/// Row 1: opening a folder and fetching it at 20 ms RTT.
fn open_and_fetch(d: &Dovecot, proxy: &DelayProxy) {
    let direct = client(d.imap_port, ONE_CONNECTION);
    fill(direct, "Fetch", MESSAGES, SIZE);
    fetch(direct, "Fetch", HERALD_FETCH_BODY);
    let loopback = (0..RUNS)
        .map(|_| fetch(direct, "Fetch", HERALD_FETCH_BODY).1)
        .min()
        .unwrap();
    herald_client_free(direct);
    let rtt = ONE_WAY * 2;
    let (limit_open, limit_fetch) = raw_limit(proxy.port);

    let c = client(proxy.port, ONE_CONNECTION);
    select_inbox(c); // logged in, another mailbox selected
    let mut open = Duration::MAX;
    for _ in 0..RUNS {
        select_inbox(c);
        let (o, t) = fetch(c, "Fetch", HERALD_FETCH_BODY);
        assert_eq!((o.items, o.bytes), (MESSAGES, MESSAGES * SIZE));
        open = open.min(t);
    }
    let mut selected = Duration::MAX;
    for _ in 0..RUNS {
        selected = selected.min(fetch(c, "Fetch", HERALD_FETCH_BODY).1);
    }
    herald_client_free(c);
    let py = numbers(&imaplib(&[
        "open".into(),
        proxy.port.to_string(),
        "Fetch".into(),
        RUNS.to_string(),
    ]));
    let (py_open, py_fetch) = (Duration::from_secs_f64(py[0]), Duration::from_secs_f64(py[1]));
    let pct = |limit: Duration, t: Duration| 100.0 * limit.as_secs_f64() / t.as_secs_f64();
    let trips = |t: Duration| t.saturating_sub(loopback).as_secs_f64() / rtt.as_secs_f64();
    println!("## fetch {MESSAGES} x 10 KB at 20 ms RTT (best of {RUNS})");
    println!();
    println!(
        "Round-trip limit: a minimal client, everything in one write (one round trip). Loopback fetch (herald): {:.1} ms.",
        ms(loopback)
    );
    println!();
    println!("| case | limit | imaplib | herald | imaplib, % of the limit | herald, % of the limit | round trips (imaplib, herald) |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (case, limit, py, herald) in [
        ("open the folder and fetch all", limit_open, py_open, open),
        ("fetch all, folder selected", limit_fetch, py_fetch, selected),
    ] {
        println!(
            "| {case} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} % | {:.1} % | {:.1}, {:.1} |",
            ms(limit),
            ms(py),
            ms(herald),
            pct(limit, py),
            pct(limit, herald),
            trips(py),
            trips(herald)
        );
    }
    println!();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Row 2: CHANGEDSINCE after 10 flag changes in a 10 000-message folder.
fn changed_since(d: &Dovecot, proxy: &DelayProxy) {
    let direct = client(d.imap_port, ONE_CONNECTION);
    fill(direct, "Big", BIG, 200);
    herald_client_free(direct);
    let c = client(proxy.port, ONE_CONNECTION);
    let (o, _) = fetch(c, "Big", HERALD_FETCH_FLAGS);
    assert_eq!(o.items, BIG);
    let since = o.modseq;
    assert!(since > 0, "Dovecot has CONDSTORE");
    imaplib(&[
        "store".into(),
        d.imap_port.to_string(),
        "Big".into(),
        CHANGES.to_string(),
    ]);
    let down = || proxy.down_bytes.load(Ordering::Relaxed);
    let b0 = down();
    let (changed, t_changed) = fetch_changed(c, "Big", since);
    let b1 = down();
    let (full, t_full) = fetch(c, "Big", HERALD_FETCH_FLAGS);
    let b2 = down();
    herald_client_free(c);
    let b3 = down();
    let py = numbers(&imaplib(&["flags".into(), proxy.port.to_string(), "Big".into()]));
    let py_bytes = down() - b3;
    println!("## CHANGEDSINCE on {BIG} messages after {CHANGES} flag changes by another client (20 ms RTT)");
    println!();
    println!("Bytes: what the server sent during the op (the delay proxy's count; imaplib's includes its login and SELECT).");
    println!();
    println!("| op | items | bytes from the server | time |");
    println!("|---|---:|---:|---:|");
    println!(
        "| herald fetch_changed (CHANGEDSINCE {since}, VANISHED) | {} | {} | {:.1} ms |",
        changed.items,
        b1 - b0,
        ms(t_changed)
    );
    println!(
        "| herald full flag resync (UID FETCH 1:* FLAGS) | {} | {} | {:.1} ms |",
        full.items,
        b2 - b1,
        ms(t_full)
    );
    println!(
        "| imaplib full flag resync (UID FETCH 1:* (UID FLAGS)) | {} | {} | {:.1} ms |",
        py[0],
        py_bytes,
        py[2] * 1000.0
    );
    println!();
    assert_eq!(changed.items, CHANGES, "only the changed messages");
}

fn main() {
    let d = Dovecot::start();
    let proxy = DelayProxy::start(format!("127.0.0.1:{}", d.imap_port).parse().unwrap(), ONE_WAY);
    open_and_fetch(&d, &proxy);
    changed_since(&d, &proxy);
}
