//! spool_bench: what the durable outbox (HERALD_OPT_SPOOL_DIR) costs a
//! bulk sender, against the same client without it, in the same run.
//!
//! ```text
//! spool_bench [--runs 3] [--loopback 5000] [--wan 1000] [--conns 4] [--only TEXT]
//! ```
//!
//! Into `smtp-sink -c`, on loopback and through the delay proxy at 20 ms
//! RTT, 10 KB messages sent with `herald_send_raw_async` from 1 and from 8
//! submitting threads, with no spool, a spool with SPOOL_SYNC 0 (records
//! handed to the OS: survives kill -9) and SPOOL_SYNC 1 (fdatasync'ed:
//! survives power loss; the default). For each: throughput (messages per
//! second, first submit to the flush's return), the time one submit call
//! takes (median and p99: with SPOOL_SYNC 1 it waits for the disk), and
//! each message's latency from its submit to its completion (median,
//! p99). Medians over the runs; the spool directory is on the disk
//! holding the system temp directory.

use std::ffi::{c_void, CString};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use herald::ffi::client::*;
use herald::ffi::completion::*;
use herald::ffi::message::*;
use herald::ffi::options::*;
use herald::ffi::smtp::{herald_send_async, herald_send_raw_async};
use herald::ffi::spool::herald_send_batch_async;
use herald::ffi::*;
use herald_bench::delay_proxy::DelayProxy;
use herald_bench::load::{bench_message, last_error};
use herald_bench::sink::CountingSink;

/// Per-run timing shared with the completion callback.
struct Run {
    base: Instant,
    submitted: Vec<std::sync::atomic::AtomicU64>,
    latencies: Mutex<Vec<u64>>,
    failed: AtomicUsize,
}

static RUN: OnceLock<Mutex<Option<Arc<Run>>>> = OnceLock::new();

fn current() -> Arc<Run> {
    RUN.get().unwrap().lock().unwrap().clone().unwrap()
}

extern "C" fn on_done(c: *const herald_completion) {
    // SAFETY: herald passes a completion valid for this call.
    let c = unsafe { &*c };
    let r = current();
    let now = r.base.elapsed().as_nanos() as u64;
    let i = c.user_token as usize - 1;
    let t = r.submitted[i].load(Ordering::Acquire);
    r.latencies.lock().unwrap().push(now.saturating_sub(t));
    if c.status != HERALD_STATUS_OK {
        r.failed.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    NoSpool,
    Spool { sync: bool },
}

fn client(port: u16, conns: usize, mode: Mode, dir: &std::path::Path) -> *mut herald_client {
    let o = herald_options_new(HERALD_PROTOCOL_SMTP);
    let host = CString::new("127.0.0.1").unwrap();
    let mut st = herald_options_set_str(o, HERALD_OPT_HOST, host.as_ptr());
    st |= herald_options_set_int(o, HERALD_OPT_PORT, port as i64);
    st |= herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE);
    st |= herald_options_set_int(o, HERALD_OPT_MAX_CONNECTIONS, conns as i64);
    if let Mode::Spool { sync } = mode {
        let d = CString::new(dir.to_string_lossy().as_bytes()).unwrap();
        st |= herald_options_set_str(o, HERALD_OPT_SPOOL_DIR, d.as_ptr());
        st |= herald_options_set_int(o, HERALD_OPT_SPOOL_SYNC, sync as i64);
    }
    assert_eq!(st, HERALD_STATUS_OK, "options: {}", last_error());
    let mut c = std::ptr::null_mut();
    let st = herald_client_new(o, &mut c);
    herald_options_free(o);
    assert_eq!(st, HERALD_STATUS_OK, "client: {}", last_error());
    c
}

struct Client(*mut herald_client);
// SAFETY: herald clients may be used from any thread.
unsafe impl Send for Client {}
unsafe impl Sync for Client {}

/// One measurement: (messages/s, submit call median and p99, latency median and p99).
type Row = (f64, Duration, Duration, Duration, Duration);

fn pct(v: &mut [u64], p: f64) -> Duration {
    v.sort_unstable();
    Duration::from_nanos(v[((v.len() - 1) as f64 * p) as usize])
}

fn measure(port: u16, conns: usize, mode: Mode, n: usize, threads: usize) -> Row {
    let tmp = herald_testservers::TempDir::new("spool-bench");
    let dir = tmp.path().join("spool");
    let msgs: Vec<Vec<u8>> = (0..n).map(bench_message).collect();
    let run = Arc::new(Run {
        base: Instant::now(),
        submitted: (0..n).map(|_| std::sync::atomic::AtomicU64::new(0)).collect(),
        latencies: Mutex::new(Vec::with_capacity(n)),
        failed: AtomicUsize::new(0),
    });
    *RUN.get_or_init(|| Mutex::new(None)).lock().unwrap() = Some(run.clone());
    let c = Arc::new(Client(client(port, conns, mode, &dir)));
    let (from, rcpt) = (
        CString::new("bench@example.org").unwrap(),
        CString::new("sink@example.org").unwrap(),
    );
    let next = AtomicUsize::new(0);
    let calls = Mutex::new(Vec::with_capacity(n));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut mine = Vec::new();
                let rcpts = [rcpt.as_ptr()];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let m = &msgs[i];
                    let t = run.base.elapsed().as_nanos() as u64;
                    run.submitted[i].store(t, Ordering::Release);
                    let mut op: herald_op = 0;
                    let st = herald_send_raw_async(
                        c.0,
                        from.as_ptr(),
                        rcpts.as_ptr(),
                        1,
                        m.as_ptr(),
                        m.len(),
                        Some(on_done),
                        (i + 1) as *mut c_void,
                        &mut op,
                    );
                    assert_eq!(st, HERALD_STATUS_OK, "send: {}", last_error());
                    mine.push(run.base.elapsed().as_nanos() as u64 - t);
                }
                calls.lock().unwrap().extend(mine);
            });
        }
    });
    assert_eq!(herald_client_flush(c.0, 600_000), HERALD_STATUS_OK);
    let wall = t0.elapsed();
    herald_client_free(c.0);
    assert_eq!(run.failed.load(Ordering::Relaxed), 0, "every message accepted");
    let mut calls = calls.into_inner().unwrap();
    let mut lat = std::mem::take(&mut *run.latencies.lock().unwrap());
    assert_eq!(lat.len(), n);
    (
        n as f64 / wall.as_secs_f64(),
        pct(&mut calls, 0.5),
        pct(&mut calls, 0.99),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
    )
}

/// A composed message (`herald_message`) with a 10 KB text body.
fn composed(i: usize) -> *mut herald_message {
    let m = herald_message_new();
    let body: String = (0..128).map(|l| format!("{l:<78}\n").replace(' ', "x")).collect();
    let c = |s: &str| CString::new(s).unwrap();
    let mut st = herald_message_set_from(m, c("bench@example.org").as_ptr());
    st |= herald_message_add_to(m, c("sink@example.org").as_ptr());
    st |= herald_message_set_subject(m, c(&format!("bench {i}")).as_ptr());
    st |= herald_message_set_text(m, c(&body).as_ptr());
    let mid = c(&format!("<{i:08x}.{}@bench.test>", std::process::id()));
    st |= herald_message_add_header(m, c("Message-ID").as_ptr(), mid.as_ptr());
    assert_eq!(st, HERALD_STATUS_OK, "message: {}", last_error());
    m
}

/// One submitting thread sending composed messages: one `herald_send_async`
/// each (`batch` 1) or `herald_send_batch_async` with `batch` at a time.
/// "submit" is a call's time divided by the messages it took.
fn measure_composed(port: u16, conns: usize, mode: Mode, n: usize, batch: usize) -> Row {
    let tmp = herald_testservers::TempDir::new("spool-bench");
    let dir = tmp.path().join("spool");
    let msgs: Vec<*mut herald_message> = (0..n).map(composed).collect();
    let run = Arc::new(Run {
        base: Instant::now(),
        submitted: (0..n).map(|_| std::sync::atomic::AtomicU64::new(0)).collect(),
        latencies: Mutex::new(Vec::with_capacity(n)),
        failed: AtomicUsize::new(0),
    });
    *RUN.get_or_init(|| Mutex::new(None)).lock().unwrap() = Some(run.clone());
    let c = client(port, conns, mode, &dir);
    let mut calls = Vec::with_capacity(n);
    let t0 = Instant::now();
    for (k, chunk) in msgs.chunks(batch).enumerate() {
        let first = k * batch;
        let t = run.base.elapsed().as_nanos() as u64;
        for i in first..first + chunk.len() {
            run.submitted[i].store(t, Ordering::Release);
        }
        let st = if batch == 1 {
            let mut op: herald_op = 0;
            herald_send_async(c, chunk[0], Some(on_done), (first + 1) as *mut c_void, &mut op)
        } else {
            let tokens: Vec<*mut c_void> = (first..first + chunk.len())
                .map(|i| (i + 1) as *mut c_void)
                .collect();
            let ptrs: Vec<*const herald_message> = chunk.iter().map(|&m| m as *const _).collect();
            let mut ops = vec![0; chunk.len()];
            let mut accepted = 0;
            herald_send_batch_async(
                c,
                ptrs.as_ptr(),
                ptrs.len(),
                Some(on_done),
                tokens.as_ptr(),
                ops.as_mut_ptr(),
                &mut accepted,
            )
        };
        assert_eq!(st, HERALD_STATUS_OK, "send: {}", last_error());
        let each = (run.base.elapsed().as_nanos() as u64 - t) / chunk.len() as u64;
        calls.extend(std::iter::repeat_n(each, chunk.len()));
    }
    assert_eq!(herald_client_flush(c, 600_000), HERALD_STATUS_OK);
    let wall = t0.elapsed();
    herald_client_free(c);
    for m in msgs {
        herald_message_free(m);
    }
    assert_eq!(run.failed.load(Ordering::Relaxed), 0, "every message accepted");
    let mut lat = std::mem::take(&mut *run.latencies.lock().unwrap());
    assert_eq!(lat.len(), n);
    (
        n as f64 / wall.as_secs_f64(),
        pct(&mut calls, 0.5),
        pct(&mut calls, 0.99),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
    )
}

fn median_row(mut rows: Vec<Row>) -> Row {
    let mid = rows.len() / 2;
    let mut pick = |f: &dyn Fn(&Row) -> f64| {
        rows.sort_by(|a, b| f(a).partial_cmp(&f(b)).unwrap());
        rows[mid]
    };
    let t = pick(&|r| r.0);
    let c50 = pick(&|r| r.1.as_secs_f64());
    let c99 = pick(&|r| r.2.as_secs_f64());
    let l50 = pick(&|r| r.3.as_secs_f64());
    let l99 = pick(&|r| r.4.as_secs_f64());
    (t.0, c50.1, c99.2, l50.3, l99.4)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = arg(&args, "--runs", 3);
    // `--only TEXT`: only the rows whose mode names contain TEXT.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    let conns = arg(&args, "--conns", 4);
    let sink = CountingSink::start();
    let up: SocketAddr = format!("127.0.0.1:{}", sink.port).parse().unwrap();
    let proxy = DelayProxy::start(up, Duration::from_millis(10));
    let nets = [
        ("loopback", sink.port, arg(&args, "--loopback", 5000)),
        ("20 ms RTT", proxy.port, arg(&args, "--wan", 1000)),
    ];
    let modes = [
        ("no spool", Mode::NoSpool),
        ("spool, SYNC 0", Mode::Spool { sync: false }),
        ("spool, SYNC 1", Mode::Spool { sync: true }),
    ];
    println!("10 KB messages, {conns} connections, smtp-sink -c, medians of {runs} runs");
    println!("| network | submitters | mode | msg/s | vs no spool | submit p50 | submit p99 | latency p50 | latency p99 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let batched = [
        ("send_async, no spool", Mode::NoSpool, 1),
        ("send_async, SYNC 0", Mode::Spool { sync: false }, 1),
        ("send_async, SYNC 1", Mode::Spool { sync: true }, 1),
        ("batches of 32, SYNC 0", Mode::Spool { sync: false }, 32),
        ("batches of 32, SYNC 1", Mode::Spool { sync: true }, 32),
    ];
    for (net, port, n) in nets {
        for threads in [1, 8] {
            let mut base = None;
            for (name, mode) in modes {
                if !name.contains(&only) {
                    continue;
                }
                let rows = (0..runs)
                    .map(|_| measure(port, conns, mode, n, threads))
                    .collect();
                let r = median_row(rows);
                let b = *base.get_or_insert(r.0);
                print_row(net, n, threads, name, r, b);
            }
        }
        let mut base = None;
        for (name, mode, batch) in batched {
            if !name.contains(&only) {
                continue;
            }
            let rows = (0..runs)
                .map(|_| measure_composed(port, conns, mode, n, batch))
                .collect();
            let r = median_row(rows);
            let b = *base.get_or_insert(r.0);
            print_row(net, n, 1, name, r, b);
        }
    }
}

fn print_row(net: &str, n: usize, threads: usize, name: &str, r: Row, base: f64) {
    println!(
        "| {net} ({n} msgs) | {threads} | {name} | {:.0} | {:.2} | {:.1?} | {:.1?} | {:.1?} | {:.1?} |",
        r.0,
        r.0 / base,
        r.1,
        r.2,
        r.3,
        r.4
    );
}
