//! smtp_bench: herald against Postfix's `smtp-source -d`, sending the same
//! 10 KB messages over the same number of connections to the same
//! smtp-sink, measured in the same run, at an emulated round trip (through
//! the bench's delay proxy, both senders alike) and on loopback.
//!
//! ```text
//! smtp_bench [--runs R] [--rtt-ms 20] [--rtt-msgs 500] [--loop-msgs 5000]
//!            [--stream-msgs 300] [--rows 1,2,3,4,5] [--no-verify]
//! ```
//!
//! Rows 4 and 5 stream to a private full Postfix smtpd (PIPELINING,
//! CHUNKING) through the delay proxy on one connection, 10 KB and 100 KB
//! messages (`--stream-msgs` of the first, a third as many of the second),
//! herald against the minimal BDAT streamer (`herald_bench::streamer`),
//! measured in the same runs.
//!
//! Each run measures every row, smtp-source and herald in turn (which goes
//! first alternates between runs); the table shows each cell's median over
//! the runs and its range. Nothing is taken on trust: smtp-source must exit
//! 0, every herald op must complete OK with a 250, and the sink's own
//! counter must grow by exactly N for each side. A final pass through a
//! dumping sink checks that both senders' messages arrive whole and are the
//! same size.
//!
//! Besides the table: the proxy's own round trip (SMTP NOOPs, with and
//! without it), herald's rate between its first and last completion, a
//! minimal pipelining client on the same connections as a yardstick, and
//! the CPU time per message of each sender and of the sink serving it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use herald_bench::delay_proxy::DelayProxy;
use herald_bench::load::{self, bench_message};
use herald_bench::sink::CountingSink;
use herald_bench::streamer;
use herald_testservers::{postfix::Postfix, sink_form, SmtpSink};

struct Row {
    rtt: Option<Duration>,
    conns: usize,
    n: usize,
}

impl Row {
    fn label(&self) -> String {
        match self.rtt {
            Some(r) => format!(
                "{} ms RTT, {} connection{}, {} × 10 KB",
                r.as_millis(),
                self.conns,
                if self.conns == 1 { "" } else { "s" },
                self.n
            ),
            None => format!("loopback, {} connections, {} × 10 KB", self.conns, self.n),
        }
    }

    /// One round trip per message per connection: herald's pipelining sends
    /// a message's content, its final dot and the next message's MAIL, RCPT
    /// and DATA together, then waits for the replies (DATA's 354 must come
    /// before the next content).
    fn ceiling(&self) -> Option<f64> {
        self.rtt.map(|r| self.conns as f64 / r.as_secs_f64())
    }
}

struct Args {
    runs: usize,
    rtt_ms: u64,
    rtt_msgs: usize,
    loop_msgs: usize,
    rows: Vec<usize>,
    stream_msgs: usize,
    verify: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        runs: 5,
        rtt_ms: 20,
        rtt_msgs: 500,
        loop_msgs: 5000,
        rows: vec![1, 2, 3, 4, 5],
        stream_msgs: 300,
        verify: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = |name: &str| -> String {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match k.as_str() {
            "--runs" => a.runs = num(&val("--runs")),
            "--rtt-ms" => a.rtt_ms = num(&val("--rtt-ms")) as u64,
            "--rtt-msgs" => a.rtt_msgs = num(&val("--rtt-msgs")),
            "--loop-msgs" => a.loop_msgs = num(&val("--loop-msgs")),
            "--rows" => a.rows = val("--rows").split(',').map(num).collect(),
            "--stream-msgs" => a.stream_msgs = num(&val("--stream-msgs")),
            "--no-verify" => a.verify = false,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.runs == 0 || a.rtt_ms < 2 || a.rows.iter().any(|r| !(1..=5).contains(r)) {
        usage("--runs >= 1, --rtt-ms >= 2, --rows from 1,2,3,4,5");
    }
    a
}

fn num(s: &str) -> usize {
    s.parse().unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("smtp_bench: {msg}");
    }
    eprintln!(
        "usage: smtp_bench [--runs R] [--rtt-ms 20] [--rtt-msgs 500] [--loop-msgs 5000] \
         [--stream-msgs 300] [--rows 1,2,3,4,5] [--no-verify]"
    );
    std::process::exit(2);
}

/// Round trips of SMTP NOOPs through the proxy on `conns` connections at
/// once: what the proxy adds, measured the way the senders will see it.
fn proxy_rtts(port: u16, conns: usize, rounds: usize) -> Vec<Duration> {
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
                s.set_nodelay(true).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                let mut line = String::new();
                r.read_line(&mut line).unwrap(); // greeting
                let mut rtts = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    line.clear();
                    let t = Instant::now();
                    w.write_all(b"NOOP\r\n").unwrap();
                    r.read_line(&mut line).unwrap();
                    rtts.push(t.elapsed());
                    assert!(line.starts_with("250"), "NOOP: {line}");
                }
                let _ = w.write_all(b"QUIT\r\n");
                rtts
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    all
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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

fn rate_cell(v: &[f64]) -> String {
    let (med, lo, hi) = stats(v);
    let p = if med < 100.0 { 1 } else { 0 };
    if v.len() == 1 {
        format!("{med:.p$}/s")
    } else {
        format!("{med:.p$}/s ({lo:.p$}–{hi:.p$})")
    }
}

fn ratio_cell(v: &[f64]) -> String {
    let (med, lo, hi) = stats(v);
    if v.len() == 1 {
        format!("{med:.2}×")
    } else {
        format!("{med:.2}× ({lo:.2}–{hi:.2})")
    }
}

#[derive(Default)]
struct Samples {
    source: Vec<f64>,
    herald: Vec<f64>,
    ratio: Vec<f64>,
    /// herald's rate between its first and last completion.
    steady: Vec<f64>,
    /// CPU µs per message: smtp-source's, the sink's while serving it,
    /// herald's, the sink's while serving herald.
    source_cpu: Vec<f64>,
    source_sink_cpu: Vec<f64>,
    herald_cpu: Vec<f64>,
    herald_sink_cpu: Vec<f64>,
    /// The minimal pipelining client's rate and CPU µs per message.
    reference: Vec<f64>,
    reference_cpu: Vec<f64>,
}

/// One sender's run of a row.
struct Side {
    rate: f64,
    /// CPU µs per message of the sender and of the sink.
    cpu: f64,
    sink_cpu: f64,
    /// herald: its rate between its first and last completion.
    steady: f64,
}

fn us_per_msg(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn run_source(sink: &CountingSink, port: u16, row: &Row) -> Side {
    let before = sink.messages();
    let sink0 = sink.cpu();
    let t = load::smtp_source(port, row.conns, row.n).unwrap_or_else(|e| panic!("{e}"));
    let got = sink.wait_messages(before + row.n as u64, Duration::from_secs(10)) - before;
    let sink_cpu = sink.cpu() - sink0;
    assert_eq!(
        got, row.n as u64,
        "smtp-source: the sink counted {got} of {}",
        row.n
    );
    Side {
        rate: row.n as f64 / t.wall.as_secs_f64(),
        cpu: us_per_msg(t.cpu, row.n),
        sink_cpu: us_per_msg(sink_cpu, row.n),
        steady: f64::NAN,
    }
}

/// The minimal pipelining client's rate and CPU µs per message.
fn run_reference(sink: &CountingSink, port: u16, row: &Row, msgs: &[Vec<u8>]) -> (f64, f64) {
    let before = sink.messages();
    let t = load::reference_pipelined(port, row.conns, &msgs[..row.n])
        .unwrap_or_else(|e| panic!("reference client: {e}"));
    let got = sink.wait_messages(before + row.n as u64, Duration::from_secs(10)) - before;
    assert_eq!(
        got, row.n as u64,
        "reference: the sink counted {got} of {}",
        row.n
    );
    (row.n as f64 / t.wall.as_secs_f64(), us_per_msg(t.cpu, row.n))
}

fn run_herald(sink: &CountingSink, port: u16, row: &Row, msgs: &[Vec<u8>]) -> Side {
    let before = sink.messages();
    let sink0 = sink.cpu();
    let r = load::herald_send(port, row.conns, &msgs[..row.n]);
    assert!(
        r.ok == row.n && r.failed == 0,
        "herald: {} ok, {} failed of {}; first error: {:?}",
        r.ok,
        r.failed,
        row.n,
        r.first_error
    );
    let got = sink.wait_messages(before + row.n as u64, Duration::from_secs(10)) - before;
    let sink_cpu = sink.cpu() - sink0;
    assert_eq!(got, row.n as u64, "herald: the sink counted {got} of {}", row.n);
    let steady = (row.n - row.conns.min(row.n)) as f64 / (r.last_done - r.first_done).as_secs_f64();
    Side {
        rate: row.n as f64 / r.elapsed.as_secs_f64(),
        cpu: us_per_msg(r.cpu, row.n),
        sink_cpu: us_per_msg(sink_cpu, row.n),
        steady,
    }
}

/// Both senders through a dumping smtp-sink: every message stored, whole.
fn verify(conns: usize, n: usize) {
    let sink = SmtpSink::start(&[]);
    load::smtp_source(sink.port, conns, n).unwrap_or_else(|e| panic!("{e}"));
    let dumps = sink.wait_for_dumps(n, Duration::from_secs(20));
    assert_eq!(
        dumps.len(),
        n,
        "smtp-source: {} of {n} messages stored",
        dumps.len()
    );
    // smtp-sink stores LF line ends; every line was CRLF on the wire.
    let wire = |body: &[u8]| body.len() + body.iter().filter(|&&b| b == b'\n').count();
    let mut src_sizes: Vec<usize> = dumps.iter().map(|d| wire(&d.body)).collect();
    src_sizes.sort();
    sink.clear_dumps();

    let msgs: Vec<Vec<u8>> = (0..n).map(|i| bench_message(1_000_000 + i)).collect();
    let r = load::herald_send(sink.port, conns, &msgs);
    assert!(r.ok == n && r.failed == 0, "herald verify: {:?}", r.first_error);
    let dumps = sink.wait_for_dumps(n, Duration::from_secs(20));
    assert_eq!(dumps.len(), n, "herald: {} of {n} messages stored", dumps.len());
    let by_id: HashMap<String, &Vec<u8>> = msgs
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m);
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-Id: "))
                .unwrap()
                .to_string();
            (id, m)
        })
        .collect();
    for d in &dumps {
        let id = d.header("Message-Id").expect("a Message-Id");
        let sent = by_id.get(id.trim()).expect("a message herald was given");
        assert_eq!(d.body, sink_form(sent), "herald's message {id} arrived changed");
        assert_eq!(d.mail_from, load::FROM);
        assert_eq!(d.rcpts, [load::TO]);
    }
    let ids: std::collections::HashSet<_> = dumps.iter().filter_map(|d| d.header("Message-Id")).collect();
    assert_eq!(ids.len(), n, "each message stored once");
    println!(
        "verified through a dumping smtp-sink ({conns} connections): smtp-source stored {n}/{n} \
         messages of {}–{} bytes, herald {n}/{n} of {} bytes, each byte-identical to what it was given \
         (sizes as on the wire, CRLF, before dot-stuffing)",
        src_sizes[0],
        src_sizes[n - 1],
        msgs[0].len()
    );
}

fn main() {
    let args = parse_args();
    let rtt = Duration::from_millis(args.rtt_ms);
    let all = [
        Row {
            rtt: Some(rtt),
            conns: 1,
            n: args.rtt_msgs,
        },
        Row {
            rtt: Some(rtt),
            conns: 8,
            n: args.rtt_msgs,
        },
        Row {
            rtt: None,
            conns: 8,
            n: args.loop_msgs,
        },
    ];
    let rows: Vec<&Row> = args
        .rows
        .iter()
        .filter(|&&i| i <= 3)
        .map(|i| &all[i - 1])
        .collect();
    let streaming: Vec<usize> = args.rows.iter().copied().filter(|&i| i > 3).collect();
    if !streaming.is_empty() {
        streaming_rows(&args, rtt, &streaming);
    }
    if rows.is_empty() {
        return;
    }
    let max_n = rows.iter().map(|r| r.n).max().unwrap_or(0);
    let msgs: Vec<Vec<u8>> = (0..max_n).map(bench_message).collect();

    let sink = CountingSink::start();
    let upstream: SocketAddr = format!("127.0.0.1:{}", sink.port).parse().unwrap();
    let proxy = DelayProxy::start(upstream, rtt / 2);
    println!(
        "smtp-sink -c on port {}; delay proxy on port {} ({} ms each way); message: {} bytes \
         (herald) — smtp-source -l {}",
        sink.port,
        proxy.port,
        rtt.as_millis() / 2,
        msgs.first().map_or(0, Vec::len),
        load::BODY_BYTES
    );
    if rows.iter().any(|r| r.rtt.is_some()) {
        for conns in [1, 8] {
            let direct = proxy_rtts(sink.port, conns, 50);
            let r = proxy_rtts(proxy.port, conns, 50);
            println!(
                "proxy check: NOOP round trip through the proxy, {conns} connection(s) at once: \
                 median {:.2} ms, p99 {:.2} ms, max {:.2} ms (target {} ms; straight to the sink: \
                 median {:.2} ms)",
                ms(r[r.len() / 2]),
                ms(r[r.len() * 99 / 100]),
                ms(r[r.len() - 1]),
                rtt.as_millis(),
                ms(direct[direct.len() / 2])
            );
        }
    }

    let mut samples: Vec<Samples> = rows.iter().map(|_| Samples::default()).collect();
    for run in 0..args.runs {
        for (row, s) in rows.iter().zip(samples.iter_mut()) {
            let port = if row.rtt.is_some() { proxy.port } else { sink.port };
            let (src, her) = if run % 2 == 0 {
                let a = run_source(&sink, port, row);
                (a, run_herald(&sink, port, row, &msgs))
            } else {
                let b = run_herald(&sink, port, row, &msgs);
                (run_source(&sink, port, row), b)
            };
            let (reference, reference_cpu) = run_reference(&sink, port, row, &msgs);
            println!(
                "run {}/{}: {:<40} smtp-source {:>8.1}/s  herald {:>8.1}/s  ratio {:.2}×{}  \
                 herald between its first and last completion: {:.1}/s; CPU µs per message: \
                 smtp-source {:.0} + sink {:.0}, herald {:.0} + sink {:.0}; minimal pipelining \
                 client {reference:.1}/s",
                run + 1,
                args.runs,
                row.label(),
                src.rate,
                her.rate,
                her.rate / src.rate,
                row.ceiling().map_or(String::new(), |c| format!(
                    "  herald at {:.1} % of {c:.0}/s",
                    100.0 * her.rate / c
                )),
                her.steady,
                src.cpu,
                src.sink_cpu,
                her.cpu,
                her.sink_cpu
            );
            s.source.push(src.rate);
            s.herald.push(her.rate);
            s.ratio.push(her.rate / src.rate);
            s.steady.push(her.steady);
            s.source_cpu.push(src.cpu);
            s.source_sink_cpu.push(src.sink_cpu);
            s.herald_cpu.push(her.cpu);
            s.herald_sink_cpu.push(her.sink_cpu);
            s.reference.push(reference);
            s.reference_cpu.push(reference_cpu);
        }
    }
    drop(proxy);

    if args.verify {
        verify(8, 200);
    }

    println!();
    println!(
        "Median of {} run{} (range in parentheses); messages/s:",
        args.runs,
        if args.runs == 1 { "" } else { "s" }
    );
    println!();
    println!("| setup | smtp-source -d | herald | ratio | ceiling | herald / ceiling |");
    println!("|---|---|---|---|---|---|");
    for (row, s) in rows.iter().zip(&samples) {
        let (ceil, pct) = match row.ceiling() {
            Some(c) => {
                let pcts: Vec<f64> = s.herald.iter().map(|h| 100.0 * h / c).collect();
                let (m, lo, hi) = stats(&pcts);
                let range = if pcts.len() > 1 {
                    format!(" ({lo:.1}–{hi:.1})")
                } else {
                    String::new()
                };
                (format!("{c:.0}/s"), format!("{m:.1} %{range}"))
            }
            None => ("—".into(), "—".into()),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.label(),
            rate_cell(&s.source),
            rate_cell(&s.herald),
            ratio_cell(&s.ratio),
            ceil,
            pct
        );
    }
    println!();
    for (row, s) in rows.iter().zip(&samples) {
        let (m, lo, hi) = stats(&s.steady);
        let of_ceiling = row.ceiling().map_or(String::new(), |c| {
            format!(" = {:.1} % of the ceiling", 100.0 * m / c)
        });
        println!(
            "{}: herald between its first and last completion (connection setup left out): \
             {m:.1}/s ({lo:.1}–{hi:.1}){of_ceiling}",
            row.label()
        );
    }
    println!();
    println!(
        "For scale, a minimal pipelining client (raw sockets, the same exchange as herald, nothing \
         else; load::reference_pipelined) on the same connections, in the same runs:"
    );
    println!();
    println!(
        "| setup | minimal pipelining client | herald | herald / minimal client | CPU µs per message: \
         minimal client, herald |"
    );
    println!("|---|---|---|---|---|");
    for (row, s) in rows.iter().zip(&samples) {
        let r: Vec<f64> = s.herald.iter().zip(&s.reference).map(|(h, m)| h / m).collect();
        let (m, lo, hi) = stats(&r);
        println!(
            "| {} | {} | {} | {:.2} ({lo:.2}–{hi:.2}) | {:.0}, {:.0} |",
            row.label(),
            rate_cell(&s.reference),
            rate_cell(&s.herald),
            m,
            stats(&s.reference_cpu).0,
            stats(&s.herald_cpu).0
        );
    }
    println!();
    println!(
        "CPU time per message, µs (median): the sender's own (herald: its threads and the calling \
         thread's), and smtp-sink's while serving it, with how busy that kept the sink (one process, \
         one thread: 100 % is all it can do):"
    );
    println!();
    println!("| setup | smtp-source | sink for smtp-source | herald | sink for herald |");
    println!("|---|---|---|---|---|");
    for (row, s) in rows.iter().zip(&samples) {
        let m = |v: &[f64]| stats(v).0;
        let busy = |cpu: &[f64], rate: &[f64]| {
            let b: Vec<f64> = cpu.iter().zip(rate).map(|(c, r)| c * r / 1e4).collect();
            m(&b)
        };
        println!(
            "| {} | {:.0} | {:.0} (busy {:.0} %) | {:.0} | {:.0} (busy {:.0} %) |",
            row.label(),
            m(&s.source_cpu),
            m(&s.source_sink_cpu),
            busy(&s.source_sink_cpu, &s.source),
            m(&s.herald_cpu),
            m(&s.herald_sink_cpu),
            busy(&s.herald_sink_cpu, &s.herald)
        );
    }
}

/// A message shaped like [`bench_message`], grown by 80-byte lines to at
/// least `size` bytes.
fn sized_message(seq: usize, size: usize) -> Vec<u8> {
    let mut m = bench_message(seq);
    let mut i = 0;
    while m.len() < size {
        let line = format!("{i:06}{}\r\n", "Y".repeat(72));
        m.extend_from_slice(line.as_bytes());
        i += 1;
    }
    m
}

/// Rows 4 and 5: herald and the minimal BDAT streamer, one connection to a
/// private Postfix smtpd through the delay proxy.
fn streaming_rows(args: &Args, rtt: Duration, which: &[usize]) {
    let pf = Postfix::start();
    let upstream: SocketAddr = format!("127.0.0.1:{}", pf.port).parse().unwrap();
    let proxy = DelayProxy::start(upstream, rtt / 2);
    let r = proxy_rtts(proxy.port, 1, 20);
    println!(
        "private Postfix smtpd (PIPELINING CHUNKING; accepted mail is discarded) on port {}, delay proxy \
         on port {}: NOOP round trip median {:.2} ms",
        pf.port,
        proxy.port,
        ms(r[r.len() / 2])
    );
    let specs: Vec<(usize, &str, usize, usize)> = which
        .iter()
        .map(|&row| match row {
            4 => (row, "10 KB", 10_356, args.stream_msgs),
            _ => (row, "100 KB", 100 * 1024, (args.stream_msgs / 3).max(1)),
        })
        .collect();
    let mut table = Vec::new();
    for &(row, label, size, n) in &specs {
        let msgs: Vec<Vec<u8>> = (0..n)
            .map(|i| sized_message(2_000_000 + row * 100_000 + i, size))
            .collect();
        let mut herald = Vec::new();
        let mut reference = Vec::new();
        let mut cpu = (Vec::new(), Vec::new());
        for run in 0..args.runs {
            let measure_ref = || {
                let t = streamer::reference_bdat_stream(proxy.port, 1, &msgs, streamer::WINDOW)
                    .unwrap_or_else(|e| panic!("streamer: {e}"));
                (n as f64 / t.wall.as_secs_f64(), us_per_msg(t.cpu, n))
            };
            let measure_herald = || {
                let h = load::herald_send(proxy.port, 1, &msgs);
                assert!(
                    h.ok == n && h.failed == 0,
                    "herald: {} ok, {} failed of {n}: {:?}",
                    h.ok,
                    h.failed,
                    h.first_error
                );
                (n as f64 / h.elapsed.as_secs_f64(), us_per_msg(h.cpu, n))
            };
            let (rf, he) = if run % 2 == 0 {
                let a = measure_ref();
                (a, measure_herald())
            } else {
                let b = measure_herald();
                (measure_ref(), b)
            };
            println!(
                "run {}/{}: Postfix, {} ms RTT, 1 connection, {n} × {label}: minimal BDAT streamer \
                 {:.1}/s, herald {:.1}/s, ratio {:.2}",
                run + 1,
                args.runs,
                rtt.as_millis(),
                rf.0,
                he.0,
                he.0 / rf.0
            );
            reference.push(rf.0);
            herald.push(he.0);
            cpu.0.push(rf.1);
            cpu.1.push(he.1);
        }
        table.push((label, n, msgs[0].len(), reference, herald, cpu));
    }
    drop(proxy);
    println!();
    println!(
        "Streaming to a private Postfix smtpd (PIPELINING, CHUNKING), {} ms RTT through the delay \
         proxy, one connection; median of {} runs (range); messages/s and messages per round trip:",
        rtt.as_millis(),
        args.runs
    );
    println!();
    println!(
        "| setup | minimal BDAT streamer | herald | herald / streamer | per round trip: streamer, herald \
         | CPU µs per message: streamer, herald |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, n, size, reference, herald, cpu) in &table {
        let ratios: Vec<f64> = herald.iter().zip(reference).map(|(h, r)| h / r).collect();
        let per_rt = |v: &[f64]| stats(v).0 * rtt.as_secs_f64();
        println!(
            "| Postfix, {} ms RTT, 1 connection, {n} × {label} ({size} B) | {} | {} | {} | {:.1}, {:.1} | {:.0}, {:.0} |",
            rtt.as_millis(),
            rate_cell(reference),
            rate_cell(herald),
            ratio_cell(&ratios),
            per_rt(reference),
            per_rt(herald),
            stats(&cpu.0).0,
            stats(&cpu.1).0
        );
    }
    println!();
}
