//! cpu_bench: what herald's SMTP send path costs in CPU and memory, each
//! row against a peer measured in the same run.
//!
//! ```text
//! cpu_bench [--runs 3] [--rows 1,2,3] [--msgs 500,2500] [--builds 200,1000]
//!           [--big-mb 25] [--big-runs 7]
//! ```
//!
//! Instruction counts come from callgrind (valgrind), which counts every
//! instruction each thread of a process runs in user space: repeatable on
//! a shared, loaded machine, unlike wall or CPU time. Each measured side
//! runs in a process of its own (this program re-runs itself under
//! `valgrind --tool=callgrind`), twice, with a small and a large count N;
//! the cost of one message is the difference of the two totals divided by
//! the difference of the counts, so what a process does once (start-up,
//! threads, connecting, EHLO, freeing) drops out.
//!
//! 1. **Instructions per 10 KB message**, loopback, 8 connections into
//!    `smtp-sink -c`: herald through its C ABI (`herald_send_raw_async` of
//!    the same message N times, a completion callback, `herald_client_flush`)
//!    against the minimal pipelining client (raw sockets, herald's exchange,
//!    one thread per connection). All threads of each process count. The
//!    sink's own counter must grow by exactly N for every process. The same
//!    processes also run natively to count context switches per message
//!    (getrusage: all threads, voluntary + involuntary).
//! 2. **`herald_send_async` of a 10 KB text message** (build + queue) against
//!    lettre's own builder on the same message (`Message::builder()` ...
//!    `.singlepart(SinglePart::plain(text))` then `formatted()`, the same
//!    text/plain part herald makes): N calls, the results kept (queued
//!    by herald to a server that never answers; kept in a Vec for lettre).
//!    The native run gives the RSS each queued op holds.
//! 3. **A 25 MB attachment**: `herald_message_attach_bytes` of a 25 MB
//!    buffer, `herald_send_async`, wait for the 250, from a fresh process,
//!    into `smtp-sink -c` on loopback: wall time and peak RSS beyond the
//!    caller's own buffer (VmHWM after the send minus VmRSS before it, the
//!    peak reset through /proc/self/clear_refs). Against curl uploading the
//!    same message (rendered by `herald_message_to_bytes`, to a file) with
//!    `curl smtp://127.0.0.1:PORT --mail-from --mail-rcpt -T FILE`, timed
//!    from spawn to exit, and the CPU time of each (herald: all threads of
//!    its process from before `herald_client_new`; curl: its rusage). Runs
//!    alternate; medians and ranges over `--big-runs` (wall time is noisy
//!    on a shared machine; the other rows' instruction counts are not).
//!
//! Rows 1 and 2 report medians and ranges over `--runs`. Setting
//! CPU_BENCH_THREADS=1 makes the `send herald` child print each thread's
//! context switches.

use std::ffi::{c_void, CString};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::ffi::client::{herald_client_flush, herald_client_free};
use herald::ffi::completion::herald_op;
use herald::ffi::message::{
    herald_bytes_free, herald_message, herald_message_add_to, herald_message_attach_bytes,
    herald_message_free, herald_message_new, herald_message_set_from, herald_message_set_subject,
    herald_message_set_text, herald_message_to_bytes,
};
use herald::ffi::options::{HERALD_OPT_CONNECT_TIMEOUT_MS, HERALD_OPT_IO_TIMEOUT_MS, HERALD_OPT_QUEUE_LIMIT};
use herald::ffi::smtp::herald_send_async;
use herald::ffi::HERALD_STATUS_OK;
use herald_bench::load::{self, bench_message, tally_callback, Envelope, Tally, FROM, HELO, TO};
use herald_bench::sink::CountingSink;

const CONNS: usize = 8;
const VALGRIND: &str = "/usr/bin/valgrind";
const CURL: &str = "/usr/bin/curl";

const SENDER: &str = "Alice Example <alice@example.com>";
const RECIPIENT: &str = "Bob Example <bob@example.org>";
const SUBJECT: &str = "The quarterly report, as promised";

// ---------------------------------------------------------------- helpers

fn status_kb(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/self/status"))
}

/// Context switches of this process so far, all threads (voluntary + involuntary).
fn context_switches() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_nvcsw + ru.ru_nivcsw) as u64
}

fn rusage_secs(who: i32) -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds (user + system) this process used so far, all threads.
fn cpu_self() -> f64 {
    rusage_secs(libc::RUSAGE_SELF)
}

/// (median, min, max).
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

fn cell(v: &[f64], prec: usize) -> String {
    let (med, lo, hi) = stats(v);
    if v.len() == 1 || (lo - hi).abs() < f64::EPSILON {
        format!("{med:.prec$}")
    } else {
        format!("{med:.prec$} ({lo:.prec$}–{hi:.prec$})")
    }
}

/// A line "key value" from a child's stdout.
fn field(out: &str, key: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the child's output:\n{out}"))
}

/// Runs this program with `args`, natively or under callgrind; returns its
/// stdout and, under callgrind, the instructions it ran (all threads).
fn child(args: &[String], callgrind: bool) -> (String, Option<u64>) {
    let me = std::env::current_exe().expect("current_exe");
    let out_file = std::env::temp_dir().join(format!(
        "herald-cpu-bench-{}-{}.callgrind",
        std::process::id(),
        args.join("-").replace('/', "_")
    ));
    let mut cmd = if callgrind {
        let mut c = Command::new(VALGRIND);
        c.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg("--quiet")
            .arg(&me);
        c
    } else {
        Command::new(&me)
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run a cpu_bench child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {args:?} failed ({}):\n{stdout}",
        out.status
    );
    let instr = callgrind.then(|| {
        let text = std::fs::read_to_string(&out_file).expect("callgrind output");
        let _ = std::fs::remove_file(&out_file);
        text.lines()
            .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("a summary line in callgrind's output")
    });
    (stdout, instr)
}

// ------------------------------------------------------------ the message

/// A 10 KB plain text as a C program would pass it: words in lines of at
/// most 72 characters, LF line ends, ASCII.
fn text_10k() -> String {
    const WORDS: &[&str] = &[
        "the",
        "figures",
        "for",
        "this",
        "quarter",
        "are",
        "attached",
        "and",
        "summarised",
        "below;",
        "revenue",
        "grew",
        "while",
        "costs",
        "stayed",
        "flat,",
        "so",
        "margins",
        "improved",
        "again.",
        "Please",
        "review",
        "before",
        "Thursday's",
        "meeting",
        "with",
        "finance",
        "team",
        "members",
        "who",
        "asked",
        "questions",
        "last",
        "time.",
    ];
    let mut text = String::new();
    let mut line = String::new();
    let mut i = 0usize;
    while text.len() + line.len() < 10_240 {
        let w = WORDS[(i * 7 + i / 5) % WORDS.len()];
        i += 1;
        if line.len() + 1 + w.len() > 72 {
            text.push_str(&line);
            text.push('\n');
            line.clear();
            if i.is_multiple_of(9) {
                text.push('\n'); // a paragraph
            }
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    text.push_str(&line);
    text.push('\n');
    text
}

fn check(st: herald::ffi::herald_status, what: &str) {
    assert_eq!(st, HERALD_STATUS_OK, "{what}: {}", load::last_error());
}

/// A herald message: sender, recipient, subject, `text`, and optionally an attachment.
fn herald_draft(text: &str, attachment: Option<&[u8]>) -> *mut herald_message {
    let m = herald_message_new();
    let s = |v: &str| CString::new(v).unwrap();
    check(herald_message_set_from(m, s(SENDER).as_ptr()), "set_from");
    check(herald_message_add_to(m, s(RECIPIENT).as_ptr()), "add_to");
    check(herald_message_set_subject(m, s(SUBJECT).as_ptr()), "set_subject");
    check(herald_message_set_text(m, s(text).as_ptr()), "set_text");
    if let Some(a) = attachment {
        check(
            herald_message_attach_bytes(
                m,
                s("data.bin").as_ptr(),
                s("application/octet-stream").as_ptr(),
                a.as_ptr(),
                a.len(),
            ),
            "attach_bytes",
        );
    }
    m
}

fn herald_render(m: *const herald_message) -> Vec<u8> {
    let (mut out, mut len) = (std::ptr::null_mut(), 0usize);
    check(herald_message_to_bytes(m, &mut out, &mut len), "to_bytes");
    // SAFETY: herald_message_to_bytes returned `len` bytes at `out`.
    let v = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
    herald_bytes_free(out, len);
    v
}

fn lettre_message(text: &str) -> lettre::Message {
    lettre::Message::builder()
        .from(SENDER.parse().unwrap())
        .to(RECIPIENT.parse().unwrap())
        .subject(SUBJECT)
        .singlepart(lettre::message::SinglePart::plain(text.to_string()))
        .expect("lettre builds the message")
}

fn body_of(m: &[u8]) -> &[u8] {
    let at = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header/body break");
    &m[at + 4..]
}

// ---------------------------------------------------------- the children

/// `send herald|minimal PORT N`: N copies of the 10 KB bench message over
/// 8 connections. Prints "ok N" and "ctx SWITCHES".
fn child_send(who: &str, port: u16, n: usize) {
    let msg = bench_message(1);
    match who {
        "herald" => {
            let tally = Tally::default();
            let env = Envelope::default();
            let c = load::new_client(port, CONNS, &[(HERALD_OPT_QUEUE_LIMIT, 1_000_000)]);
            for _ in 0..n {
                env.send(c, &msg, &tally);
            }
            check(herald_client_flush(c, 600_000), "flush");
            if std::env::var_os("CPU_BENCH_THREADS").is_some() {
                for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                    let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                    let st = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                    let get = |k: &str| {
                        st.lines()
                            .find_map(|l| l.strip_prefix(k))
                            .unwrap_or("")
                            .trim()
                            .to_string()
                    };
                    eprintln!(
                        "{} vol {} invol {}",
                        comm.trim(),
                        get("voluntary_ctxt_switches:"),
                        get("nonvoluntary_ctxt_switches:")
                    );
                }
            }
            herald_client_free(c);
            let ok = tally.ok.load(Ordering::Relaxed);
            assert_eq!(ok, n, "{:?}", tally.first_error.lock().unwrap());
        }
        "minimal" => minimal_client(port, n, Arc::new(msg)),
        _ => panic!("send: herald or minimal"),
    }
    println!("ok {n}");
    println!("ctx {}", context_switches());
}

/// The minimal pipelining client of `load::reference_pipelined`, sending
/// one shared message `n` times in all, so that nothing but the exchange
/// is counted.
fn minimal_client(port: u16, n: usize, msg: Arc<Vec<u8>>) {
    use std::io::{BufRead, BufReader, Write};
    fn expect(r: &mut impl BufRead, line: &mut String, want: &str) {
        line.clear();
        r.read_line(line).expect("a reply");
        assert!(line.starts_with(want), "got {line:?}, wanted {want}");
    }
    let threads: Vec<_> = (0..CONNS)
        .map(|k| {
            let count = n / CONNS + usize::from(k < n % CONNS);
            let msg = msg.clone();
            std::thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_nodelay(true).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                let mut line = String::new();
                expect(&mut r, &mut line, "220 ");
                w.write_all(format!("EHLO {HELO}\r\n").as_bytes()).unwrap();
                loop {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    if line.starts_with("250 ") {
                        break;
                    }
                    assert!(line.starts_with("250-"), "EHLO: {line:?}");
                }
                let env = format!("MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\n");
                if count > 0 {
                    w.write_all(env.as_bytes()).unwrap();
                }
                let mut out = Vec::new();
                for i in 0..count {
                    expect(&mut r, &mut line, "250 ");
                    expect(&mut r, &mut line, "250 ");
                    expect(&mut r, &mut line, "354 ");
                    out.clear();
                    out.extend_from_slice(&msg);
                    out.extend_from_slice(b".\r\n");
                    if i + 1 < count {
                        out.extend_from_slice(env.as_bytes());
                    }
                    w.write_all(&out).unwrap();
                    expect(&mut r, &mut line, "250 ");
                }
                w.write_all(b"QUIT\r\n").unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a minimal client thread");
    }
}

/// A server that accepts and never speaks: a client of it keeps its ops queued.
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

/// `build herald|lettre N`: N builds of the 10 KB text message, each kept.
/// Prints "rss_per_op BYTES" and "len BYTES" (the message's length).
fn child_build(who: &str, n: usize) {
    let text = text_10k();
    let len;
    let (rss0, rss1);
    match who {
        "herald" => {
            let (port, accepted) = silent_server();
            let c = load::new_client(
                port,
                1,
                &[
                    (HERALD_OPT_QUEUE_LIMIT, 10_000_000),
                    (HERALD_OPT_IO_TIMEOUT_MS, 3_600_000),
                    (HERALD_OPT_CONNECT_TIMEOUT_MS, 3_600_000),
                ],
            );
            let m = herald_draft(&text, None);
            len = herald_render(m).len();
            let tally = Tally::default();
            let send = || {
                let mut op: herald_op = 0;
                let st = herald_send_async(
                    c,
                    m,
                    Some(tally_callback),
                    &tally as *const Tally as *mut c_void,
                    &mut op,
                );
                check(st, "herald_send_async");
            };
            // The worker takes the first op and waits for a greeting; every later one stays queued.
            send();
            let deadline = Instant::now() + Duration::from_secs(30);
            while accepted.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(50));
            rss0 = status_kb("VmRSS:") * 1024;
            for _ in 0..n {
                send();
            }
            rss1 = status_kb("VmRSS:") * 1024;
            assert_eq!(
                tally.ok.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed),
                0
            );
            // Exit with the ops queued: freeing the client would cancel N ops, which is not the call's cost.
        }
        "lettre" => {
            len = lettre_message(&text).formatted().len();
            let from: lettre::message::Mailbox = SENDER.parse().unwrap();
            let to: lettre::message::Mailbox = RECIPIENT.parse().unwrap();
            let mut kept = Vec::with_capacity(n);
            rss0 = status_kb("VmRSS:") * 1024;
            for _ in 0..n {
                let m = lettre::Message::builder()
                    .from(from.clone())
                    .to(to.clone())
                    .subject(SUBJECT)
                    .singlepart(lettre::message::SinglePart::plain(text.clone()))
                    .expect("lettre builds the message");
                kept.push(m.formatted());
            }
            rss1 = status_kb("VmRSS:") * 1024;
            std::hint::black_box(&kept);
        }
        _ => panic!("build: herald or lettre"),
    }
    println!("len {len}");
    println!("rss_per_op {}", (rss1.saturating_sub(rss0)) as f64 / n as f64);
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::exit(0);
}

/// `big PORT MB FILE`: attach MB MiB of pseudo-random bytes, send, wait.
/// Prints "secs", "peak_beyond" (bytes), "len" (the message's length), and
/// writes the rendered message (as `herald_message_to_bytes` makes it) to FILE.
fn child_big(port: u16, mb: usize, file: &str) {
    let mut buf = vec![0u8; mb << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let text = "The data is attached.\n";
    // Reset the peak RSS to the current RSS (Linux: "5" to clear_refs).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let rss0 = status_kb("VmRSS:") * 1024;
    let cpu0 = cpu_self();
    let t = Instant::now();
    let tally = Tally::default();
    let c = load::new_client(port, 1, &[]);
    let m = herald_draft(text, Some(&buf));
    println!("attached {}", t.elapsed().as_secs_f64());
    let mut op: herald_op = 0;
    let st = herald_send_async(
        c,
        m,
        Some(tally_callback),
        &tally as *const Tally as *mut c_void,
        &mut op,
    );
    check(st, "herald_send_async");
    let queued = t.elapsed().as_secs_f64();
    herald_message_free(m);
    check(herald_client_flush(c, 600_000), "flush");
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_self() - cpu0;
    println!("queued {queued}");
    println!("cpu {cpu}");
    let peak = status_kb("VmHWM:") * 1024;
    assert_eq!(
        tally.ok.load(Ordering::Relaxed),
        1,
        "{:?}",
        tally.first_error.lock().unwrap()
    );
    herald_client_free(c);
    let m = herald_draft(text, Some(&buf));
    let bytes = herald_render(m);
    herald_message_free(m);
    std::fs::write(file, &bytes).expect("write the message for curl");
    println!("secs {secs}");
    println!("peak_beyond {}", peak.saturating_sub(rss0));
    println!("len {}", bytes.len());
}

// ------------------------------------------------------------ the driver

struct Args {
    runs: usize,
    rows: Vec<usize>,
    msgs: (usize, usize),
    builds: (usize, usize),
    big_mb: usize,
    big_runs: usize,
}

fn pair(s: &str) -> (usize, usize) {
    let v: Vec<usize> = s.split(',').map(|x| x.parse().expect("a number")).collect();
    assert!(v.len() == 2 && v[0] < v[1], "two counts, small,large: {s}");
    (v[0], v[1])
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Args {
    let mut a = Args {
        runs: 3,
        rows: vec![1, 2, 3],
        msgs: (500, 2500),
        builds: (200, 1000),
        big_mb: 25,
        big_runs: 7,
    };
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--runs" => a.runs = v().parse().expect("--runs N"),
            "--rows" => a.rows = v().split(',').map(|x| x.parse().expect("a row")).collect(),
            "--msgs" => a.msgs = pair(&v()),
            "--builds" => a.builds = pair(&v()),
            "--big-mb" => a.big_mb = v().parse().expect("--big-mb N"),
            "--big-runs" => a.big_runs = v().parse().expect("--big-runs N"),
            other => {
                eprintln!(
                    "cpu_bench: unknown argument {other}\nusage: cpu_bench [--runs 3] [--rows 1,2,3] \
                     [--msgs 500,2500] [--builds 200,1000] [--big-mb 25] [--big-runs 7]"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

/// Instructions (and native context switches) per message of `who`.
fn per_message(sink: &CountingSink, who: &str, (n1, n2): (usize, usize)) -> (f64, f64) {
    let mut instr = [0u64; 2];
    let mut ctx = [0f64; 2];
    for (k, n) in [n1, n2].into_iter().enumerate() {
        for callgrind in [true, false] {
            let before = sink.messages();
            let args = vec!["send".into(), who.into(), sink.port.to_string(), n.to_string()];
            let (out, i) = child(&args, callgrind);
            assert_eq!(field(&out, "ok") as usize, n);
            let after = sink.wait_messages(before + n as u64, Duration::from_secs(30));
            assert_eq!(
                after,
                before + n as u64,
                "the sink counted every message of {who}"
            );
            match i {
                Some(i) => instr[k] = i,
                None => ctx[k] = field(&out, "ctx"),
            }
        }
    }
    let dn = (n2 - n1) as f64;
    ((instr[1] as f64 - instr[0] as f64) / dn, (ctx[1] - ctx[0]) / dn)
}

fn row_messages(a: &Args) {
    let sink = CountingSink::start();
    let (mut h, mut m, mut r, mut hc, mut mc) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..a.runs {
        let order: &[&str] = if run.is_multiple_of(2) {
            &["minimal", "herald"]
        } else {
            &["herald", "minimal"]
        };
        for who in order {
            let (i, c) = per_message(&sink, who, a.msgs);
            eprintln!(
                "  run {}: {who}: {i:.0} instructions, {c:.2} context switches per message",
                run + 1
            );
            if *who == "herald" {
                h.push(i / 1000.0);
                hc.push(c);
            } else {
                m.push(i / 1000.0);
                mc.push(c);
            }
        }
        r.push(h[run] / m[run]);
    }
    println!(
        "| loopback, 8 connections, 10 KB messages (N = {} and {}) | {}k | {}k | {}× | {}, {} |",
        a.msgs.0,
        a.msgs.1,
        cell(&m, 1),
        cell(&h, 1),
        cell(&r, 2),
        cell(&mc, 2),
        cell(&hc, 2)
    );
}

fn row_build(a: &Args) {
    let text = text_10k();
    // The two render the same body, as 7bit.
    let m = herald_draft(&text, None);
    let ours = herald_render(m);
    herald_message_free(m);
    let theirs = lettre_message(&text).formatted();
    let (x, y) = (body_of(&ours), body_of(&theirs));
    if x != y {
        let at = x
            .iter()
            .zip(y)
            .position(|(p, q)| p != q)
            .unwrap_or(x.len().min(y.len()));
        panic!(
            "herald and lettre make different bodies ({} and {} bytes), from byte {at}: {:?} / {:?}",
            x.len(),
            y.len(),
            String::from_utf8_lossy(&x[at.saturating_sub(20)..(at + 20).min(x.len())]),
            String::from_utf8_lossy(&y[at.saturating_sub(20)..(at + 20).min(y.len())])
        );
    }
    let (mut h, mut l, mut r, mut hm, mut lm) = (vec![], vec![], vec![], vec![], vec![]);
    let (n1, n2) = a.builds;
    let mut len = 0.0;
    for run in 0..a.runs {
        let order: &[&str] = if run.is_multiple_of(2) {
            &["lettre", "herald"]
        } else {
            &["herald", "lettre"]
        };
        for who in order {
            let mut instr = [0u64; 2];
            for (k, n) in [n1, n2].into_iter().enumerate() {
                let (_, i) = child(&["build".into(), who.to_string(), n.to_string()], true);
                instr[k] = i.expect("callgrind's count");
            }
            let per = (instr[1] as f64 - instr[0] as f64) / (n2 - n1) as f64 / 1000.0;
            let (out, _) = child(&["build".into(), who.to_string(), n2.to_string()], false);
            len = field(&out, "len");
            let mem = field(&out, "rss_per_op");
            eprintln!(
                "  run {}: {who}: {per:.1}k instructions, {mem:.0} bytes RSS per message",
                run + 1
            );
            if *who == "herald" {
                h.push(per);
                hm.push(mem);
            } else {
                l.push(per);
                lm.push(mem);
            }
        }
        r.push(h[run] / l[run]);
    }
    println!(
        "| 10 KB text message ({len} bytes), N = {n1} and {n2} | {}k | {}k | {}× | {}, {} |",
        cell(&l, 1),
        cell(&h, 1),
        cell(&r, 2),
        cell(&lm, 0),
        cell(&hm, 0)
    );
}

fn row_big(a: &Args) {
    if !std::path::Path::new(CURL).exists() {
        panic!("{CURL} is missing (bench/run.sh installs it)");
    }
    let sink = CountingSink::start();
    let file = std::env::temp_dir().join(format!("herald-cpu-bench-{}.eml", std::process::id()));
    let file_s = file.to_string_lossy().into_owned();
    #[derive(Default)]
    struct Cols {
        herald: Vec<f64>,
        curl: Vec<f64>,
        ratio: Vec<f64>,
        herald_cpu: Vec<f64>,
        curl_cpu: Vec<f64>,
        queued: Vec<f64>,
        peak: Vec<f64>,
        peak_x: Vec<f64>,
    }
    let mut c = Cols::default();
    let mut len = 0.0;
    for run in 0..a.big_runs {
        let mut herald_run = || {
            let before = sink.messages();
            let args = vec![
                "big".into(),
                sink.port.to_string(),
                a.big_mb.to_string(),
                file_s.clone(),
            ];
            let (out, _) = child(&args, false);
            assert_eq!(
                sink.wait_messages(before + 1, Duration::from_secs(30)),
                before + 1
            );
            len = field(&out, "len");
            let f = |k| field(&out, k);
            (f("secs"), f("cpu"), f("queued"), f("peak_beyond"))
        };
        let curl_run = || {
            let before = sink.messages();
            let cpu0 = rusage_secs(libc::RUSAGE_CHILDREN);
            let t = Instant::now();
            let st = Command::new(CURL)
                .args(["-sS", &format!("smtp://127.0.0.1:{}", sink.port)])
                .args([
                    "--mail-from",
                    "alice@example.com",
                    "--mail-rcpt",
                    "bob@example.org",
                    "-T",
                ])
                .arg(&file)
                .stdout(Stdio::null())
                .status()
                .expect("run curl");
            let secs = t.elapsed().as_secs_f64();
            let cpu = rusage_secs(libc::RUSAGE_CHILDREN) - cpu0;
            assert!(st.success(), "curl: {st}");
            assert_eq!(
                sink.wait_messages(before + 1, Duration::from_secs(30)),
                before + 1
            );
            (secs, cpu)
        };
        // The message file comes from herald's run: herald goes first in the first run.
        let (h, cu) = if run.is_multiple_of(2) || !file.exists() {
            let h = herald_run();
            (h, curl_run())
        } else {
            let cu = curl_run();
            (herald_run(), cu)
        };
        eprintln!(
            "  run {}: herald {:.3} s ({:.3} s CPU, queued after {:.3} s), peak {:.1} MB beyond the caller's buffer; \
             curl {:.3} s ({:.3} s CPU)",
            run + 1,
            h.0,
            h.1,
            h.2,
            h.3 / 1e6,
            cu.0,
            cu.1
        );
        c.herald.push(h.0);
        c.herald_cpu.push(h.1);
        c.queued.push(h.2);
        c.peak.push(h.3 / 1e6);
        c.peak_x.push(h.3 / len);
        c.curl.push(cu.0);
        c.curl_cpu.push(cu.1);
        c.ratio.push(h.0 / cu.0);
    }
    let _ = std::fs::remove_file(&file);
    println!(
        "| {} MiB attachment ({:.1} MB message) | {} s ({} s CPU) | {} s ({} s CPU; queued after {} s) | {}× | {} MB = {}× the message |",
        a.big_mb,
        len / 1e6,
        cell(&c.curl, 3),
        cell(&c.curl_cpu, 3),
        cell(&c.herald, 3),
        cell(&c.herald_cpu, 3),
        cell(&c.queued, 3),
        cell(&c.ratio, 2),
        cell(&c.peak, 1),
        cell(&c.peak_x, 2)
    );
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("send") => {
            let v: Vec<String> = args.skip(1).collect();
            return child_send(&v[0], v[1].parse().unwrap(), v[2].parse().unwrap());
        }
        Some("build") => {
            let v: Vec<String> = args.skip(1).collect();
            return child_build(&v[0], v[1].parse().unwrap());
        }
        Some("big") => {
            let v: Vec<String> = args.skip(1).collect();
            return child_big(v[0].parse().unwrap(), v[1].parse().unwrap(), &v[2]);
        }
        _ => {}
    }
    let a = parse_args(args);
    if !std::path::Path::new(VALGRIND).exists() {
        panic!("{VALGRIND} is missing (scripts/install-test-deps.sh installs it)");
    }
    if a.rows.contains(&1) {
        println!("| setup | minimal pipelining client | herald | herald / minimal | context switches per message: minimal, herald |");
        println!("|---|---|---|---|---|");
        row_messages(&a);
        println!();
    }
    if a.rows.contains(&2) {
        println!("| message | lettre's builder | herald_send_async | herald / lettre | RSS per kept message, bytes: lettre, herald |");
        println!("|---|---|---|---|---|");
        row_build(&a);
        println!();
    }
    if a.rows.contains(&3) {
        println!(
            "| attachment | curl | herald | herald / curl | herald's peak RSS beyond the caller's buffer |"
        );
        println!("|---|---|---|---|---|");
        row_big(&a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_10k_of_short_lines() {
        let t = text_10k();
        assert!((10_240..10_400).contains(&t.len()), "{}", t.len());
        assert!(t.is_ascii() && t.lines().all(|l| l.len() <= 72));
    }
}
