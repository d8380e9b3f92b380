//! submit_bench: what one `herald_send_raw_async` call costs the caller,
//! and what a queued op holds in memory, with 100,000 ops queued.
//!
//! ```text
//! submit_bench [--runs 5] [--ops 100000] [--extra 10000]
//! ```
//!
//! The client's server accepts connections and never says a word (IO
//! timeout 1 h), so the workers sit waiting for a greeting and nothing
//! drains the queue: every call lands on a queue that only grows, and a call
//! that waited on the network would not return for an hour. Each part runs
//! in a process of its own (this program re-runs itself), so memory one
//! part freed can't hide another part's growth; the parts of a run are
//! repeated `--runs` times and reported as medians with their range:
//!
//! * `cost`: N calls with the 10 KB benchmark message, each timed alone
//!   (mean, percentiles, max), then `--extra` more calls with N already
//!   queued; RSS growth per op minus the message's bytes; then the time
//!   `herald_client_free` takes to complete them all cancelled.
//! * `copy`: the same timing for a plain `to_vec()` of the message, kept:
//!   the floor under any API that copies its input into fresh memory.
//! * `cost-warm`: `cost`'s calls in a process whose heap already holds the
//!   memory (an earlier client queued and freed as many ops): herald's own
//!   cost without the kernel's first-touch page faults.
//! * `mem-callback`, `mem-queue`: N calls with a 256-byte message, with a
//!   completion callback and with the completion queue (callback NULL):
//!   RSS growth per op minus the 256 bytes.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::ffi::client::{herald_client, herald_client_free};
use herald::ffi::completion::herald_op;
use herald::ffi::options::{HERALD_OPT_CONNECT_TIMEOUT_MS, HERALD_OPT_IO_TIMEOUT_MS, HERALD_OPT_QUEUE_LIMIT};
use herald::ffi::smtp::herald_send_raw_async;
use herald::ffi::HERALD_STATUS_OK;
use herald_bench::load::{self, bench_message, tally_callback, Envelope, Tally};

const CONNS: usize = 8;

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// A server that accepts and never speaks; returns its port and how many
/// connections it accepted so far.
fn silent_server() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
            a.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

/// A client of the silent server whose workers have each taken one op and
/// sit waiting for a greeting, so every later op stays queued. Returns the
/// client and how many ops that took.
fn stalled_client(tally: &Tally, msg: &[u8]) -> (*mut herald_client, usize) {
    let (port, accepted) = silent_server();
    let c = load::new_client(
        port,
        CONNS,
        &[
            (HERALD_OPT_QUEUE_LIMIT, 10_000_000),
            (HERALD_OPT_IO_TIMEOUT_MS, 3_600_000),
            (HERALD_OPT_CONNECT_TIMEOUT_MS, 3_600_000),
        ],
    );
    let env = Envelope::default();
    for _ in 0..CONNS {
        env.send(c, msg, tally);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) < CONNS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), CONNS, "every worker connected");
    std::thread::sleep(Duration::from_millis(50)); // each is in its read now
    (c, CONNS)
}

struct Dist {
    mean: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn dist(ns: &[u32]) -> Dist {
    let mut v = ns.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    Dist {
        mean: v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 / 1000.0,
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: *v.last().unwrap() as f64 / 1000.0,
    }
}

fn timed_calls(c: *mut herald_client, msg: &[u8], tally: &Tally, out: &mut [u32]) {
    let env = Envelope::default();
    for slot in out.iter_mut() {
        let t = Instant::now();
        env.send(c, msg, tally);
        *slot = t.elapsed().as_nanos().min(u32::MAX as u128) as u32;
    }
}

/// A part's result, one `key value` line each, for the parent to gather.
fn emit(key: &str, value: f64) {
    println!("{key} {value}");
}

fn emit_dist(prefix: &str, d: &Dist) {
    for (k, v) in [
        ("mean", d.mean),
        ("p50", d.p50),
        ("p99", d.p99),
        ("p999", d.p999),
        ("max", d.max),
    ] {
        emit(&format!("{prefix}.{k}"), v);
    }
}

/// `warm`: first queue and free as many ops on another client, so the
/// calls measured reuse heap memory the process already has (the parent
/// runs this part with glibc's trim threshold raised, so that memory stays
/// mapped): what the call costs without the kernel's first-touch page
/// faults, i.e. herald's own work plus the copy into warm memory.
fn part_cost(ops: usize, extra: usize, warm: bool) {
    let msg = bench_message(0);
    if warm {
        let tally = Tally::default();
        let (c, _) = stalled_client(&tally, &msg);
        let env = Envelope::default();
        for _ in 0..ops + extra {
            env.send(c, &msg, &tally);
        }
        herald_client_free(c);
    }
    let tally = Tally::default();
    // Touched up front, so their pages are in the RSS baseline.
    let mut first = vec![1u32; ops];
    let mut more = vec![1u32; extra];
    let (c, held) = stalled_client(&tally, &msg);
    let rss0 = rss_bytes();
    timed_calls(c, &msg, &tally, &mut first);
    let rss1 = rss_bytes();
    timed_calls(c, &msg, &tally, &mut more);
    let done = tally.ok.load(Ordering::SeqCst) + tally.failed.load(Ordering::SeqCst);
    assert_eq!(done, 0, "nothing may complete while the server is silent");

    let t = Instant::now();
    herald_client_free(c);
    let free = t.elapsed();
    let total = held + ops + extra;
    let cancelled = tally.cancelled.load(Ordering::SeqCst);
    assert_eq!(
        cancelled, total,
        "every op completed cancelled by herald_client_free"
    );
    assert_eq!(tally.failed.load(Ordering::SeqCst), total);

    if warm {
        emit_dist("warm.growing", &dist(&first));
        emit_dist("warm.deep", &dist(&more));
        return;
    }
    emit_dist("cost.growing", &dist(&first));
    emit_dist("cost.deep", &dist(&more));
    emit(
        "cost.beyond_message",
        (rss1 - rss0) as f64 / ops as f64 - msg.len() as f64,
    );
    emit("cost.free_ms", free.as_secs_f64() * 1000.0);
}

/// The floor under any API that copies its input: a plain `to_vec()` of
/// the message per call, each copy kept (as a queued op keeps its copy).
fn part_copy(ops: usize, extra: usize) {
    let msg = bench_message(0);
    let mut first = vec![1u32; ops];
    let mut more = vec![1u32; extra];
    let mut keep: Vec<Vec<u8>> = Vec::with_capacity(ops + extra);
    for v in [&mut first, &mut more] {
        for slot in v.iter_mut() {
            let t = Instant::now();
            keep.push(std::hint::black_box(msg.to_vec()));
            *slot = t.elapsed().as_nanos().min(u32::MAX as u128) as u32;
        }
    }
    emit_dist("copy.growing", &dist(&first));
    emit_dist("copy.deep", &dist(&more));
}

const SMALL: usize = 256;

fn part_mem(ops: usize, callback: bool) {
    let mut msg = b"From: <a@x>\r\nTo: <b@y>\r\nSubject: small\r\n\r\n".to_vec();
    msg.resize(SMALL - 2, b'x');
    msg.extend_from_slice(b"\r\n");
    let tally = Tally::default();
    let (c, held) = stalled_client(&tally, &msg);
    let env = Envelope::default();
    let rcpts = [env.rcpt.as_ptr()];
    let rss0 = rss_bytes();
    for _ in 0..ops {
        let mut op: herald_op = 0;
        let st = herald_send_raw_async(
            c,
            env.from.as_ptr(),
            rcpts.as_ptr(),
            1,
            msg.as_ptr(),
            msg.len(),
            if callback { Some(tally_callback) } else { None },
            &tally as *const Tally as *mut c_void,
            &mut op,
        );
        assert_eq!(st, HERALD_STATUS_OK, "{}", load::last_error());
    }
    let rss1 = rss_bytes();
    herald_client_free(c);
    if callback {
        assert_eq!(tally.cancelled.load(Ordering::SeqCst), held + ops);
    }
    let key = if callback { "mem.callback" } else { "mem.queue" };
    emit(key, (rss1 - rss0) as f64 / ops as f64 - msg.len() as f64);
}

/// (median, min, max) of a metric over the runs.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[0], s[n - 1])
}

fn main() {
    let mut ops = 100_000usize;
    let mut extra = 10_000usize;
    let mut runs = 5usize;
    let mut part: Option<String> = None;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--ops" => ops = v.parse().expect("--ops N"),
            "--extra" => extra = v.parse().expect("--extra N"),
            "--runs" => runs = v.parse().expect("--runs N"),
            "--part" => part = Some(v),
            _ => {
                eprintln!("usage: submit_bench [--runs 5] [--ops 100000] [--extra 10000]");
                std::process::exit(2);
            }
        }
    }
    match part.as_deref() {
        Some("cost") => return part_cost(ops, extra, false),
        Some("cost-warm") => return part_cost(ops, extra, true),
        Some("copy") => return part_copy(ops, extra),
        Some("mem-callback") => return part_mem(ops, true),
        Some("mem-queue") => return part_mem(ops, false),
        Some(p) => panic!("unknown part {p}"),
        None => {}
    }
    let me = std::env::current_exe().expect("own path");
    let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in 0..runs {
        for p in ["cost", "copy", "cost-warm", "mem-callback", "mem-queue"] {
            let mut cmd = Command::new(&me);
            cmd.args([
                "--ops",
                &ops.to_string(),
                "--extra",
                &extra.to_string(),
                "--part",
                p,
            ]);
            if p == "cost-warm" {
                // Freed memory stays in the heap instead of going back to the kernel.
                cmd.env("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=68719476736");
            }
            let out = cmd.output().expect("run a part");
            assert!(
                out.status.success(),
                "part {p} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((k, v)) = line.split_once(' ') {
                    m.entry(k.to_string()).or_default().push(v.parse().unwrap());
                }
            }
        }
        let g = |k: &str| m[k].last().copied().unwrap_or(f64::NAN);
        println!(
            "run {}/{runs}: call mean {:.2} µs (0 → {ops} queued), {:.2} µs ({ops} queued), max {:.0} µs; \
             plain copy {:.2} / {:.2} µs; warm heap {:.2} / {:.2} µs; beyond the message per op: {:.0} B (10 KB, callback), \
             {:.0} B ({SMALL} B, callback), {:.0} B ({SMALL} B, queue); free {:.0} ms",
            run + 1,
            g("cost.growing.mean"),
            g("cost.deep.mean"),
            g("cost.growing.max").max(g("cost.deep.max")),
            g("copy.growing.mean"),
            g("copy.deep.mean"),
            g("warm.growing.mean"),
            g("warm.deep.mean"),
            g("cost.beyond_message"),
            g("mem.callback"),
            g("mem.queue"),
            g("cost.free_ms")
        );
    }

    let cell = |k: &str, p: usize| {
        let (med, lo, hi) = stats(&m[k]);
        if runs == 1 {
            format!("{med:.p$}")
        } else {
            format!("{med:.p$} ({lo:.p$}–{hi:.p$})")
        }
    };
    println!();
    println!(
        "Median of {runs} run{} (range in parentheses). One `herald_send_raw_async` call of the \
         10,356-byte message, completion callback set, {CONNS} connections to a server that accepts \
         and never answers ({CONNS} ops held by the workers, the rest queued), µs:",
        if runs == 1 { "" } else { "s" }
    );
    println!();
    println!("| calls | mean | median | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|---|");
    for (label, k) in [
        (
            format!("herald: {ops} calls, queue growing 0 → {ops}"),
            "cost.growing",
        ),
        (
            format!("herald: {extra} more calls, {ops} already queued"),
            "cost.deep",
        ),
        (
            format!("plain `to_vec()` of the message, {ops} copies kept"),
            "copy.growing",
        ),
        (
            format!("plain `to_vec()`, {extra} more with {ops} kept"),
            "copy.deep",
        ),
        (
            format!("herald, warm heap: {ops} calls, queue growing 0 → {ops}"),
            "warm.growing",
        ),
        (
            format!("herald, warm heap: {extra} more calls, {ops} already queued"),
            "warm.deep",
        ),
    ] {
        println!(
            "| {label} | {} | {} | {} | {} | {} |",
            cell(&format!("{k}.mean"), 2),
            cell(&format!("{k}.p50"), 2),
            cell(&format!("{k}.p99"), 1),
            cell(&format!("{k}.p999"), 0),
            cell(&format!("{k}.max"), 0)
        );
    }
    println!();
    println!("Memory held per queued op beyond the message's own bytes (RSS growth over {ops} queued ops ÷ {ops}, minus the message length):");
    println!();
    println!("| message | completion to | bytes per op |");
    println!("|---|---|---|");
    println!("| 10,356 B | callback | {} |", cell("cost.beyond_message", 0));
    println!("| {SMALL} B | callback | {} |", cell("mem.callback", 0));
    println!(
        "| {SMALL} B | completion queue (callback NULL) | {} |",
        cell("mem.queue", 0)
    );
    println!();
    println!(
        "herald_client_free with {} ops pending (all complete cancelled, each callback run): {} ms",
        ops + extra + CONNS,
        cell("cost.free_ms", 0)
    );
}
