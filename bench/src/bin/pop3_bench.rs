//! pop3_bench: retrieving 500 messages of 10 KB over POP3, herald (through
//! its C ABI, RETR pipelined) next to Python's poplib (one RETR at a time),
//! from a private Dovecot, through a 20 ms round-trip delay proxy and on
//! loopback. Run: `cargo run --release -p herald-bench --bin pop3_bench`
//! (as root: Dovecot switches users). Prints a table.
//!
//! Both clients log in without TLS (USER/PASS for poplib, SASL PLAIN for
//! herald) and take the UIDL list first; the rate compares the retrieval
//! phase on the open session. The end-to-end times, login included, follow.

use std::ffi::{c_void, CStr, CString};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald::ffi::client::*;
use herald::ffi::completion::*;
use herald::ffi::options::*;
use herald::ffi::pop3::*;
use herald::ffi::result::*;
use herald::ffi::*;
use herald_bench::delay_proxy::DelayProxy;
use herald_testservers::{imap_append, Dovecot};

const MESSAGES: usize = 500;
const SIZE: usize = 10 * 1024;
const USER: &str = "bob";
const PASS: &str = "bobpass";
/// The target: at least 50 times poplib through a 20 ms round trip.
const TARGET_RATIO: f64 = 50.0;

/// A message of about `SIZE` bytes, CRLF line endings.
fn message(i: usize) -> Vec<u8> {
    let mut m = format!(
        "From: bench@example.org\r\nTo: bob@example.org\r\nSubject: bench {i}\r\nMessage-ID: <{i}@bench.herald>\r\n\r\n"
    )
    .into_bytes();
    let mut l = 0;
    while m.len() < SIZE {
        m.extend_from_slice(
            format!("{i:05}/{l:04} lorem ipsum dolor sit amet, consectetur adipiscing elit\r\n").as_bytes(),
        );
        l += 1;
    }
    m
}

/// What the completions of one run add up to.
#[derive(Default)]
struct Tally {
    uidls: Mutex<Vec<String>>,
    ok: AtomicUsize,
    failed: AtomicUsize,
    bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
}

unsafe extern "C" fn on_list(c: *const herald_completion) {
    let c = &*c;
    let t = &*(c.user_token as *const Tally);
    if c.status == HERALD_STATUS_OK {
        let mut u = t.uidls.lock().unwrap();
        for i in 0..herald_result_count(c.result) {
            let s = herald_result_str(c.result, i, HERALD_FIELD_NAME);
            u.push(CStr::from_ptr(s).to_string_lossy().into_owned());
        }
    } else {
        note_error(t, c);
    }
}

unsafe extern "C" fn on_retrieve(c: *const herald_completion) {
    let c = &*c;
    let t = &*(c.user_token as *const Tally);
    if c.status == HERALD_STATUS_OK {
        let mut len = 0;
        herald_result_bytes(c.result, 0, &mut len);
        t.bytes.fetch_add(len as u64, Ordering::Relaxed);
        t.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        note_error(t, c);
    }
}

unsafe fn note_error(t: &Tally, c: &herald_completion) {
    t.failed.fetch_add(1, Ordering::Relaxed);
    let mut e = t.first_error.lock().unwrap();
    if e.is_none() {
        *e = Some(CStr::from_ptr(c.detail).to_string_lossy().into_owned());
    }
}

/// One measured run: messages, bytes, setup (session + list) and retrieval times.
struct Run {
    messages: usize,
    bytes: u64,
    setup: Duration,
    retrieve: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.retrieve.as_secs_f64()
    }
}

fn check(s: herald_status, what: &str) {
    if s != HERALD_STATUS_OK {
        // SAFETY: herald_last_error returns a valid C string.
        let detail = unsafe { CStr::from_ptr(herald_last_error()) };
        panic!("{what}: status {s}: {}", detail.to_string_lossy());
    }
}

fn herald_run(port: u16) -> Run {
    let o = herald_options_new(HERALD_PROTOCOL_POP3);
    let host = CString::new("127.0.0.1").unwrap();
    let (user, pass) = (CString::new(USER).unwrap(), CString::new(PASS).unwrap());
    check(herald_options_set_str(o, HERALD_OPT_HOST, host.as_ptr()), "HOST");
    check(herald_options_set_int(o, HERALD_OPT_PORT, port as i64), "PORT");
    check(
        herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE),
        "SECURITY",
    );
    check(
        herald_options_set_str(o, HERALD_OPT_USERNAME, user.as_ptr()),
        "USERNAME",
    );
    check(
        herald_options_set_str(o, HERALD_OPT_PASSWORD, pass.as_ptr()),
        "PASSWORD",
    );
    let mut c = std::ptr::null_mut();
    check(herald_client_new(o, &mut c), "client");
    herald_options_free(o);
    let tally = Tally::default();
    let token = &tally as *const Tally as *mut c_void;

    let t0 = Instant::now();
    let mut op = 0;
    check(herald_pop3_list_async(c, Some(on_list), token, &mut op), "list");
    check(herald_wait(c, op, 120_000), "list wait");
    let t1 = Instant::now();
    let uidls: Vec<CString> = tally
        .uidls
        .lock()
        .unwrap()
        .iter()
        .map(|u| CString::new(u.as_str()).unwrap())
        .collect();
    assert_eq!(
        uidls.len(),
        MESSAGES,
        "list: {:?}",
        tally.first_error.lock().unwrap()
    );
    for u in &uidls {
        check(
            herald_pop3_retrieve_async(c, u.as_ptr(), Some(on_retrieve), token, &mut op),
            "retrieve",
        );
    }
    check(herald_client_flush(c, 300_000), "flush");
    let t2 = Instant::now();
    herald_client_free(c);
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "herald: {:?}",
        tally.first_error.lock().unwrap()
    );
    Run {
        messages: tally.ok.load(Ordering::Relaxed),
        bytes: tally.bytes.load(Ordering::Relaxed),
        setup: t1 - t0,
        retrieve: t2 - t1,
    }
}

fn poplib_run(port: u16) -> Run {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/poplib_bench.py");
    let out = Command::new("python3")
        .args([script, "127.0.0.1", &port.to_string(), USER, PASS])
        .output()
        .expect("run python3 (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "poplib_bench.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // A flat JSON object of numbers: no parser needed.
    let field = |name: &str| -> f64 {
        let key = format!("\"{name}\": ");
        let start = text.find(&key).unwrap_or_else(|| panic!("{name} in {text}")) + key.len();
        let rest = &text[start..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end]
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} in {text}"))
    };
    Run {
        messages: field("messages") as usize,
        bytes: field("bytes") as u64,
        setup: Duration::from_secs_f64(field("setup_s")),
        retrieve: Duration::from_secs_f64(field("retrieve_s")),
    }
}

/// The median run by retrieval rate.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}

fn main() {
    let herald_runs: usize = std::env::var("HERALD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    eprintln!("starting Dovecot and storing {MESSAGES} messages of {SIZE} bytes over IMAP...");
    let d = Dovecot::start();
    let msgs: Vec<Vec<u8>> = (0..MESSAGES).map(message).collect();
    imap_append(d.imap_port, USER, PASS, "INBOX", &msgs);
    let stored: u64 = msgs.iter().map(|m| m.len() as u64).sum();
    let upstream: SocketAddr = format!("127.0.0.1:{}", d.pop3_port).parse().unwrap();

    let mut rows = Vec::new();
    for (name, one_way) in [("20 ms RTT", Some(Duration::from_millis(10))), ("loopback", None)] {
        let proxy = one_way.map(|ow| DelayProxy::start(upstream, ow));
        let port = proxy.as_ref().map_or(d.pop3_port, |p| p.port);
        eprintln!("{name}: poplib...");
        let p = poplib_run(port);
        eprintln!("{name}: herald ({herald_runs} runs)...");
        let h = median((0..herald_runs).map(|_| herald_run(port)).collect());
        for r in [&p, &h] {
            assert_eq!(r.messages, MESSAGES, "{name}: every message retrieved");
            assert_eq!(r.bytes, stored, "{name}: every byte retrieved");
        }
        rows.push((name, p, h, one_way.is_some()));
    }

    println!();
    println!(
        "POP3 retrieve, {MESSAGES} x {} KB from Dovecot, session open (messages/s)",
        SIZE / 1024
    );
    println!();
    println!("| setup     | poplib   | herald   | ratio   | target  |");
    println!("|-----------|----------|----------|---------|---------|");
    for (name, p, h, delayed) in &rows {
        let ratio = h.rate() / p.rate();
        let target = if *delayed {
            format!(
                "{} {:>3}x",
                if ratio >= TARGET_RATIO { "ok" } else { "MISS" },
                TARGET_RATIO
            )
        } else {
            "-".to_string()
        };
        println!(
            "| {name:<9} | {:>8.0} | {:>8.0} | {:>6.1}x | {target:<7} |",
            p.rate(),
            h.rate(),
            ratio
        );
    }
    println!();
    println!("End to end (connect, login, UIDL list, retrieve all), seconds:");
    for (name, p, h, _) in &rows {
        println!(
            "  {name:<9}  poplib {:>7.3} (setup {:.3})   herald {:>7.3} (setup {:.3})",
            (p.setup + p.retrieve).as_secs_f64(),
            p.setup.as_secs_f64(),
            (h.setup + h.retrieve).as_secs_f64(),
            h.setup.as_secs_f64()
        );
    }
}
