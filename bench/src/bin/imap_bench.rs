//! IMAP benchmark: herald against Python's imaplib in the same run, on a
//! private Dovecot (as the tests start it).
//!
//! 1. Fetch of 1000 x 10 KB messages on loopback: imaplib's single
//!    `UID FETCH 1:* (BODY.PEEK[])` against one herald fetch op (best of 3
//!    each, logged in and selected before the clock starts).
//! 2. Bulk append of 200 x 10 KB messages through a 20 ms round trip
//!    (herald_bench's delay proxy): imaplib's APPEND loop against one
//!    herald append op.
//!
//! Run: `cargo run --release -p herald-bench --bin imap_bench` (as root:
//! Dovecot needs it).

use std::ffi::CString;
use std::process::Command;
use std::time::Duration;

use herald::ffi::client::*;
use herald::ffi::imap::*;
use herald_bench::delay_proxy::DelayProxy;
use herald_bench::imap::{client, run, Outcome};
use herald_testservers::Dovecot;

const MESSAGES: usize = 1000;
const SIZE: usize = 10 * 1024;
const APPENDS: usize = 200;
const ONE_WAY: Duration = Duration::from_millis(10);

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

fn append(c: *mut herald_client, mailbox: &str, msgs: &[Vec<u8>]) -> (Outcome, Duration) {
    let mb = CString::new(mailbox).unwrap();
    let ptrs: Vec<*const u8> = msgs.iter().map(|m| m.as_ptr()).collect();
    let lens: Vec<usize> = msgs.iter().map(|m| m.len()).collect();
    run(|cb, t, op| {
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
    })
}

fn create(c: *mut herald_client, mailbox: &str) {
    let mb = CString::new(mailbox).unwrap();
    run(|cb, t, op| herald_imap_create_async(c, mb.as_ptr(), cb, t, op));
}

fn fetch_all(c: *mut herald_client, mailbox: &str) -> (Outcome, Duration) {
    let mb = CString::new(mailbox).unwrap();
    let all = CString::new("1:*").unwrap();
    run(|cb, t, op| herald_imap_fetch_async(c, mb.as_ptr(), all.as_ptr(), HERALD_FETCH_BODY, cb, t, op))
}

/// Runs the Python peer; the seconds it printed.
fn imaplib(args: &[String]) -> f64 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/imaplib_bench.py");
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
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds")
}

fn main() {
    let d = Dovecot::start();
    let mut rows = Vec::new();

    // 1. Fetch 1000 x 10 KB on loopback.
    let c = client(d.imap_port, None);
    create(c, "Fetch");
    let msgs: Vec<Vec<u8>> = (0..MESSAGES).map(|i| message(i, SIZE)).collect();
    let (o, _) = append(c, "Fetch", &msgs);
    assert_eq!(o.items, MESSAGES);
    let py = imaplib(&[
        "fetch".into(),
        d.imap_port.to_string(),
        "Fetch".into(),
        "3".into(),
    ]);
    fetch_all(c, "Fetch"); // connection open and mailbox selected, as imaplib's
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let (o, t) = fetch_all(c, "Fetch");
        assert_eq!(o.items, MESSAGES);
        assert_eq!(o.bytes, MESSAGES * SIZE);
        best = best.min(t);
    }
    let herald = best.as_secs_f64();
    rows.push((
        format!("fetch {MESSAGES} x 10 KB, loopback (s)"),
        py,
        herald,
        py / herald,
        ">= 1.0x".to_string(),
    ));
    herald_client_free(c);

    // 2. Bulk append of 200 x 10 KB through a 20 ms round trip.
    let proxy = DelayProxy::start(format!("127.0.0.1:{}", d.imap_port).parse().unwrap(), ONE_WAY);
    let c = client(proxy.port, None);
    create(c, "AppendHerald");
    create(c, "AppendPy");
    let msgs: Vec<Vec<u8>> = (0..APPENDS).map(|i| message(i, SIZE)).collect();
    let py_secs = imaplib(&[
        "append".into(),
        proxy.port.to_string(),
        "AppendPy".into(),
        APPENDS.to_string(),
        SIZE.to_string(),
    ]);
    let (o, t) = append(c, "AppendHerald", &msgs);
    assert_eq!(o.items, APPENDS);
    let py_rate = APPENDS as f64 / py_secs;
    let herald_rate = APPENDS as f64 / t.as_secs_f64();
    rows.push((
        format!("append {APPENDS} x 10 KB, 20 ms RTT (msg/s)"),
        py_rate,
        herald_rate,
        herald_rate / py_rate,
        ">= 30x".to_string(),
    ));
    herald_client_free(c);

    println!("| setup | imaplib | herald | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    for (setup, py, herald, ratio, target) in rows {
        println!("| {setup} | {py:.3} | {herald:.3} | {ratio:.1}x | {target} |");
    }
}
