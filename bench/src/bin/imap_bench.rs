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

use std::ffi::{c_void, CString};
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use herald::ffi::client::*;
use herald::ffi::completion::*;
use herald::ffi::imap::*;
use herald::ffi::options::*;
use herald::ffi::result::*;
use herald::ffi::HERALD_STATUS_OK;
use herald_bench::delay_proxy::DelayProxy;
use herald_testservers::Dovecot;

const MESSAGES: usize = 1000;
const SIZE: usize = 10 * 1024;
const APPENDS: usize = 200;
const ONE_WAY: Duration = Duration::from_millis(10);

/// What a completion said: status, items, bytes in all items.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    status: u32,
    items: usize,
    bytes: usize,
}

struct Waiter {
    done: Mutex<Option<Outcome>>,
    cond: Condvar,
}

static WAITER: Waiter = Waiter {
    done: Mutex::new(None),
    cond: Condvar::new(),
};

unsafe extern "C" fn on_done(c: *const herald_completion) {
    let c = &*c;
    let n = herald_result_count(c.result);
    let bytes = (0..n)
        .map(|i| {
            let mut len = 0;
            herald_result_bytes(c.result, i, &mut len);
            len
        })
        .sum();
    *WAITER.done.lock().unwrap() = Some(Outcome {
        status: c.status,
        items: n,
        bytes,
    });
    WAITER.cond.notify_all();
}

/// Runs one op and waits for it: its outcome and how long it took.
fn run(submit: impl FnOnce(herald_callback, *mut c_void, *mut herald_op) -> u32) -> (Outcome, Duration) {
    *WAITER.done.lock().unwrap() = None;
    let mut op = 0;
    let t = Instant::now();
    let s = submit(Some(on_done), std::ptr::null_mut(), &mut op);
    assert_eq!(s, HERALD_STATUS_OK, "submit refused");
    let mut g = WAITER.done.lock().unwrap();
    while g.is_none() {
        g = WAITER.cond.wait(g).unwrap();
    }
    let elapsed = t.elapsed();
    let o = g.take().unwrap();
    assert_eq!(o.status, HERALD_STATUS_OK, "op failed: {o:?}");
    (o, elapsed)
}

fn client(port: u16) -> *mut herald_client {
    let o = herald_options_new(HERALD_PROTOCOL_IMAP);
    let host = CString::new("127.0.0.1").unwrap();
    let user = CString::new("alice").unwrap();
    let pass = CString::new("alicepass").unwrap();
    assert_eq!(herald_options_set_str(o, HERALD_OPT_HOST, host.as_ptr()), 0);
    assert_eq!(herald_options_set_int(o, HERALD_OPT_PORT, port as i64), 0);
    assert_eq!(
        herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE),
        0
    );
    assert_eq!(herald_options_set_str(o, HERALD_OPT_USERNAME, user.as_ptr()), 0);
    assert_eq!(herald_options_set_str(o, HERALD_OPT_PASSWORD, pass.as_ptr()), 0);
    let mut c = std::ptr::null_mut();
    assert_eq!(herald_client_new(o, &mut c), 0);
    herald_options_free(o);
    c
}

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
    let c = client(d.imap_port);
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
    let c = client(proxy.port);
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
