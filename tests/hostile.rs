//! Hostile and broken servers: at every protocol step of SMTP and POP3 a
//! scripted server answers with garbage, NUL bytes, invalid UTF-8, overlong
//! or endless lines, floods, trickles, silence or a reset. Every case checks
//! that its op completes exactly once, with a clear status, within its
//! deadline (OP_TIMEOUT_MS), and that a cancel or herald_client_free in the
//! middle of it returns promptly. Also the deadline itself against trickling
//! SMTP, POP3 and IMAP servers.

mod api;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use api::*;
use herald_testservers::scripted::{Peer, Scripted};

/// The deadline every case runs with.
const OP_TIMEOUT: Duration = Duration::from_millis(1000);
/// The read timeout: longer than the trickle's gap, so only the deadline
/// stops a trickle.
const IO_TIMEOUT_MS: i64 = 300;
/// The line limit the cases run with (small, so overlong lines are cheap).
const MAX_LINE: usize = 4096;
/// Slack on every time bound: the machine is shared and loaded.
const SLACK: Duration = Duration::from_millis(1500);
/// How long a hostile behaviour lasts at most (the server is dropped sooner).
const HOSTILE_FOR: Duration = Duration::from_secs(8);
const TRICKLE_GAP: Duration = Duration::from_millis(200);

/// What a hostile server does instead of its proper answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    /// Text that is no reply at all, then silence.
    Garbage,
    /// The reply code followed by NUL bytes.
    Nul,
    /// The right reply code with text that is not UTF-8 (then the server leaves).
    InvalidUtf8,
    /// One line longer than MAX_LINE_BYTES.
    Overlong,
    /// A line that never ends.
    Endless,
    /// A multi-line reply that never ends (SMTP "250-..."; POP3 data lines).
    ManyLines,
    /// The proper reply, then a flood of unsolicited ones.
    Flood,
    /// The proper reply twice: everything after is out of step.
    Unsolicited,
    /// A line one byte every 0.2 s, forever: each read succeeds in time.
    Trickle,
    /// Not a word.
    Silence,
    /// A TCP reset.
    Reset,
}

const ALL_BAD: [Bad; 11] = [
    Bad::Garbage,
    Bad::Nul,
    Bad::InvalidUtf8,
    Bad::Overlong,
    Bad::Endless,
    Bad::ManyLines,
    Bad::Flood,
    Bad::Unsolicited,
    Bad::Trickle,
    Bad::Silence,
    Bad::Reset,
];

/// The behaviours that hold an op up: the ones to cancel or free in the middle of.
const HOLDING: [Bad; 4] = [Bad::Endless, Bad::ManyLines, Bad::Trickle, Bad::Silence];

/// Set by a script when it reaches its hostile step.
#[derive(Default)]
struct Reached {
    flag: Mutex<bool>,
    cond: Condvar,
}

impl Reached {
    fn set(&self) {
        *self.flag.lock().unwrap() = true;
        self.cond.notify_all();
    }

    fn wait(&self, timeout: Duration) -> bool {
        let g = self.flag.lock().unwrap();
        let (g, _) = self.cond.wait_timeout_while(g, timeout, |r| !*r).unwrap();
        *g
    }
}

/// Misbehaves in place of a reply starting with `ok` ("250", "+OK"), where
/// `more` continues a multi-line answer.
fn misbehave(p: &mut Peer, bad: Bad, ok: &str, more: &str) -> io::Result<()> {
    match bad {
        Bad::Garbage => {
            p.send("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?;
            p.silence(HOSTILE_FOR);
        }
        Bad::Nul => {
            p.send([ok.as_bytes(), b"\0\0\0\0\r\n"].concat())?;
            p.silence(HOSTILE_FOR);
        }
        Bad::InvalidUtf8 => p.send([ok.as_bytes(), b" \xff\xfe\xc0\x80 caf\xe9\r\n"].concat())?,
        Bad::Overlong => {
            p.send(format!("{ok} {}\r\n", "x".repeat(2 * MAX_LINE)))?;
            p.silence(HOSTILE_FOR);
        }
        Bad::Endless => {
            p.send(format!("{ok} "))?;
            let chunk = vec![b'x'; 64 * 1024];
            p.flood(HOSTILE_FOR, |_| chunk.clone())?;
        }
        Bad::ManyLines => {
            p.send(format!("{more}\r\n"))?;
            p.flood(HOSTILE_FOR, |i| format!("{more}{i} and more\r\n").into_bytes())?;
        }
        Bad::Flood => {
            p.send(format!("{ok} fine\r\n"))?;
            p.flood(HOSTILE_FOR, |i| format!("{ok} unsolicited {i}\r\n").into_bytes())?;
        }
        Bad::Unsolicited => p.send(format!("{ok} fine\r\n{ok} fine again\r\n"))?,
        Bad::Trickle => {
            p.send(format!("{ok} "))?;
            let long = "still talking ".repeat(1000);
            p.trickle(long.as_bytes(), TRICKLE_GAP)?;
        }
        Bad::Silence => p.silence(HOSTILE_FOR),
        Bad::Reset => unreachable!("handled by the caller: it consumes the peer"),
    }
    Ok(())
}

/// Runs the hostile step: sets `reached`, then misbehaves (a reset ends the connection).
fn hostile(mut p: Peer, bad: Bad, ok: &str, more: &str, reached: &Reached) -> io::Result<()> {
    reached.set();
    if bad == Bad::Reset {
        p.reset();
        return Ok(());
    }
    misbehave(&mut p, bad, ok, more)
}

// ---------------------------------------------------------------- SMTP

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SmtpStep {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Dot,
    Quit,
}

const SMTP_STEPS: [SmtpStep; 10] = [
    SmtpStep::Greeting,
    SmtpStep::Ehlo,
    SmtpStep::StartTls,
    SmtpStep::Auth,
    SmtpStep::Mail,
    SmtpStep::Rcpt,
    SmtpStep::Data,
    SmtpStep::Bdat,
    SmtpStep::Dot,
    SmtpStep::Quit,
];

/// An SMTP server that follows the protocol up to `step`, then misbehaves.
fn smtp_server(step: SmtpStep, bad: Bad, reached: Arc<Reached>) -> Scripted {
    Scripted::start(move |mut p| {
        use SmtpStep::*;
        if step == Greeting {
            return hostile(p, bad, "220", "220-", &reached);
        }
        p.send("220 hostile.test ESMTP\r\n")?;
        loop {
            let line = p.line()?;
            if line.is_empty() {
                return Ok(());
            }
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let at = |s: SmtpStep| step == s;
            match verb.as_str() {
                "EHLO" if at(Ehlo) => return hostile(p, bad, "250", "250-", &reached),
                "EHLO" => {
                    let mut r = String::from("250-hostile.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n");
                    if at(StartTls) {
                        r.push_str("250-STARTTLS\r\n");
                    }
                    if at(Bdat) {
                        r.push_str("250-CHUNKING\r\n250-BINARYMIME\r\n");
                    }
                    r.push_str("250 AUTH PLAIN\r\n");
                    p.send(r)?;
                }
                "STARTTLS" => return hostile(p, bad, "220", "220-", &reached),
                "AUTH" if at(Auth) => return hostile(p, bad, "235", "235-", &reached),
                "AUTH" => p.send("235 2.7.0 ok\r\n")?,
                "MAIL" if at(Mail) => return hostile(p, bad, "250", "250-", &reached),
                "RCPT" if at(Rcpt) => return hostile(p, bad, "250", "250-", &reached),
                "MAIL" | "RCPT" | "RSET" | "NOOP" => p.send("250 2.0.0 ok\r\n")?,
                "DATA" if at(Data) => return hostile(p, bad, "354", "354-", &reached),
                "DATA" => {
                    p.send("354 go ahead\r\n")?;
                    loop {
                        let l = p.line()?;
                        if l == "." {
                            break;
                        }
                        if l.is_empty() && p.stopping() {
                            return Ok(());
                        }
                    }
                    if at(Dot) {
                        return hostile(p, bad, "250", "250-", &reached);
                    }
                    p.send("250 2.0.0 queued\r\n")?;
                }
                "BDAT" => {
                    let n: usize = line.split(' ').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                    p.bytes(n)?;
                    if at(Bdat) {
                        return hostile(p, bad, "250", "250-", &reached);
                    }
                    p.send("250 2.0.0 ok\r\n")?;
                }
                "QUIT" if at(Quit) => return hostile(p, bad, "221", "221-", &reached),
                "QUIT" => {
                    p.send("221 bye\r\n")?;
                    return Ok(());
                }
                _ => p.send("500 5.5.1 what?\r\n")?,
            }
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Let the op complete by itself.
    Complete,
    /// Cancel it once the server misbehaves.
    Cancel,
    /// Free the client once the server misbehaves.
    Free,
}

/// What one case measured.
#[derive(Debug)]
struct Outcome {
    case: String,
    status: u32,
    detail: String,
    /// Submit to completion (Complete), cancel or free to completion.
    took: Duration,
}

fn common_opts(port: u16) -> Vec<(u32, Val<'static>)> {
    vec![
        (HERALD_OPT_HOST, Val::S("127.0.0.1")),
        (HERALD_OPT_PORT, Val::I(port as i64)),
        (HERALD_OPT_IO_TIMEOUT_MS, Val::I(IO_TIMEOUT_MS)),
        (HERALD_OPT_CONNECT_TIMEOUT_MS, Val::I(2000)),
        (HERALD_OPT_OP_TIMEOUT_MS, Val::I(OP_TIMEOUT.as_millis() as i64)),
        (HERALD_OPT_MAX_LINE_BYTES, Val::I(MAX_LINE as i64)),
    ]
}

/// Submits with `submit`, then lets the op complete, or cancels it or frees
/// the client once `reached`, and checks exactly one completion in time.
fn drive(
    case: String,
    c: TestClient,
    mode: Mode,
    reached: &Reached,
    ops: usize,
    submit: impl Fn(&TestClient) -> Result<u64, u32>,
) -> Outcome {
    let started = Instant::now();
    let ids: Vec<u64> = (0..ops)
        .map(|_| submit(&c).unwrap_or_else(|s| panic!("{case}: submit refused: {s}")))
        .collect();
    let took;
    let records = match mode {
        Mode::Complete => {
            let recs = c.rec.wait_for(ops, OP_TIMEOUT * 2 + SLACK * 2);
            took = started.elapsed();
            assert_eq!(recs.len(), ops, "{case}: every op completes in time: {recs:?}");
            c.free()
        }
        Mode::Cancel | Mode::Free => {
            let reached_it = reached.wait(OP_TIMEOUT + SLACK);
            assert!(
                reached_it || !c.records().is_empty(),
                "{case}: the server's hostile step was never reached"
            );
            // Let herald settle into its read.
            std::thread::sleep(Duration::from_millis(30));
            let t0 = Instant::now();
            if mode == Mode::Cancel {
                for op in &ids {
                    let s = c.cancel(*op);
                    assert_eq!(s, HERALD_STATUS_OK, "{case}: cancel");
                }
                let recs = c.rec.wait_for(ops, SLACK * 2);
                took = t0.elapsed();
                assert_eq!(recs.len(), ops, "{case}: a cancelled op completes at once");
                c.free()
            } else {
                let recs = c.free();
                took = t0.elapsed();
                recs
            }
        }
    };
    assert_exactly_once(&records, &ids);
    let r = &records[0];
    assert!(!r.detail.is_empty(), "{case}: a clear detail");
    assert_ne!(r.status, HERALD_STATUS_PANIC, "{case}: {r:?}");
    let bound = match mode {
        Mode::Complete => OP_TIMEOUT + SLACK,
        _ => SLACK,
    };
    assert!(took < bound, "{case}: took {took:?} (bound {bound:?}): {r:?}");
    Outcome {
        case,
        status: r.status,
        detail: r.detail.clone(),
        took,
    }
}

fn smtp_case(step: SmtpStep, bad: Bad, mode: Mode) -> Outcome {
    let reached = Arc::new(Reached::default());
    let srv = smtp_server(step, bad, reached.clone());
    let mut opts = common_opts(srv.port());
    let security = if step == SmtpStep::StartTls {
        HERALD_SECURITY_STARTTLS_IF_AVAILABLE
    } else {
        HERALD_SECURITY_NONE
    };
    opts.push((HERALD_OPT_SECURITY, Val::I(security)));
    if step == SmtpStep::Auth {
        opts.push((HERALD_OPT_USERNAME, Val::S("user")));
        opts.push((HERALD_OPT_PASSWORD, Val::S("secret")));
    }
    let ops = if step == SmtpStep::Quit {
        // QUIT goes out when an extra connection closes after IDLE_TIMEOUT:
        // two messages at once on two connections.
        opts.push((HERALD_OPT_MAX_CONNECTIONS, Val::I(2)));
        opts.push((HERALD_OPT_IDLE_TIMEOUT_MS, Val::I(50)));
        2
    } else {
        1
    };
    let c = TestClient::new(HERALD_PROTOCOL_SMTP, &opts).expect("client");
    // BDAT is used for binary content when CHUNKING is offered.
    let data: &[u8] = if step == SmtpStep::Bdat {
        b"Subject: bin\r\n\r\n\x00\x01binary\r\n"
    } else {
        b"Subject: hostile\r\n\r\nbody\r\n"
    };
    let case = format!("SMTP {step:?}/{bad:?}/{mode:?}");
    if step == SmtpStep::Quit && mode != Mode::Complete {
        return quit_case(case, c, &reached, data);
    }
    let out = drive(case.clone(), c, mode, &reached, ops, |c| {
        c.send_raw("a@hostile.test", &["b@hostile.test"], data)
    });
    // Only a server that answered the content can have accepted it.
    let may_be_ok = matches!(step, SmtpStep::Dot | SmtpStep::Bdat | SmtpStep::Quit);
    if out.status == HERALD_STATUS_OK {
        assert!(may_be_ok, "{case}: OK without the server's 250 for the content");
    }
    if step == SmtpStep::Quit {
        assert_eq!(out.status, HERALD_STATUS_OK, "{case}: sent before QUIT");
    }
    if matches!(step, SmtpStep::Dot | SmtpStep::Bdat) && out.status == HERALD_STATUS_TIMEOUT {
        assert!(out.detail.contains("may or may not"), "{case}: {}", out.detail);
    }
    drop(srv);
    out
}

/// QUIT goes out when an idle extra connection closes, after its ops
/// completed: free the client while that QUIT meets the hostile server.
fn quit_case(case: String, c: TestClient, reached: &Reached, data: &[u8]) -> Outcome {
    let ids: Vec<u64> = (0..2)
        .map(|_| c.send_raw("a@hostile.test", &["b@hostile.test"], data).unwrap())
        .collect();
    let recs = c.rec.wait_for(2, OP_TIMEOUT + SLACK);
    assert!(recs.len() == 2 && recs.iter().all(Record::ok), "{case}: {recs:?}");
    // Only when the pool opened a second connection is there a QUIT.
    let quit_sent = reached.wait(OP_TIMEOUT);
    if std::env::var_os("HERALD_HOSTILE_VERBOSE").is_some() {
        eprintln!("{case}: QUIT reached: {quit_sent}");
    }
    std::thread::sleep(Duration::from_millis(30));
    let t0 = Instant::now();
    let recs = c.free();
    let took = t0.elapsed();
    assert_exactly_once(&recs, &ids);
    assert!(took < SLACK, "{case}: free took {took:?}");
    Outcome {
        case,
        status: recs[0].status,
        detail: recs[0].detail.clone(),
        took,
    }
}

// ---------------------------------------------------------------- POP3

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PopStep {
    Greeting,
    Capa,
    Stls,
    User,
    Pass,
    Apop,
    Auth,
    Stat,
    Uidl,
    List,
    Retr,
    Top,
    Dele,
    Quit,
}

const POP_STEPS: [PopStep; 14] = [
    PopStep::Greeting,
    PopStep::Capa,
    PopStep::Stls,
    PopStep::User,
    PopStep::Pass,
    PopStep::Apop,
    PopStep::Auth,
    PopStep::Stat,
    PopStep::Uidl,
    PopStep::List,
    PopStep::Retr,
    PopStep::Top,
    PopStep::Dele,
    PopStep::Quit,
];

const POP_MESSAGE: &str = "Subject: one\r\n\r\nline one\r\nline two\r\n";

/// A POP3 server with two messages that follows the protocol up to `step`,
/// then misbehaves.
fn pop3_server(step: PopStep, bad: Bad, reached: Arc<Reached>) -> Scripted {
    Scripted::start(move |mut p| {
        use PopStep::*;
        let at = |s: PopStep| step == s;
        if at(Greeting) {
            return hostile(p, bad, "+OK", "+OK", &reached);
        }
        if at(Apop) {
            p.send("+OK ready <1.2@hostile.test>\r\n")?;
        } else {
            p.send("+OK ready\r\n")?;
        }
        loop {
            let line = p.line()?;
            if line.is_empty() {
                return Ok(());
            }
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let ok_more = "1 data line";
            match verb.as_str() {
                "CAPA" if at(Capa) => return hostile(p, bad, "+OK", ok_more, &reached),
                "CAPA" => {
                    let mut r = String::from("+OK\r\nUSER\r\nUIDL\r\nTOP\r\nPIPELINING\r\n");
                    if at(Stls) {
                        r.push_str("STLS\r\n");
                    }
                    if at(Auth) {
                        r.push_str("SASL PLAIN\r\n");
                    }
                    r.push_str(".\r\n");
                    p.send(r)?;
                }
                "STLS" => return hostile(p, bad, "+OK", ok_more, &reached),
                "USER" if at(User) => return hostile(p, bad, "+OK", ok_more, &reached),
                "PASS" if at(Pass) => return hostile(p, bad, "+OK", ok_more, &reached),
                "APOP" if at(Apop) => return hostile(p, bad, "+OK", ok_more, &reached),
                "AUTH" if at(Auth) => return hostile(p, bad, "+OK", ok_more, &reached),
                "USER" | "PASS" | "APOP" | "AUTH" | "NOOP" | "RSET" => p.send("+OK\r\n")?,
                "STAT" if at(Stat) => return hostile(p, bad, "+OK", ok_more, &reached),
                "STAT" => p.send(format!("+OK 2 {}\r\n", 2 * POP_MESSAGE.len()))?,
                "UIDL" if at(Uidl) => return hostile(p, bad, "+OK", ok_more, &reached),
                "UIDL" => p.send("+OK\r\n1 uid-1\r\n2 uid-2\r\n.\r\n")?,
                "LIST" if at(List) => return hostile(p, bad, "+OK", ok_more, &reached),
                "LIST" => p.send(format!("+OK\r\n1 {n}\r\n2 {n}\r\n.\r\n", n = POP_MESSAGE.len()))?,
                "RETR" if at(Retr) => return hostile(p, bad, "+OK", ok_more, &reached),
                "TOP" if at(Top) => return hostile(p, bad, "+OK", ok_more, &reached),
                "RETR" | "TOP" => p.send(format!("+OK\r\n{POP_MESSAGE}.\r\n"))?,
                "DELE" if at(Dele) => return hostile(p, bad, "+OK", ok_more, &reached),
                "DELE" => p.send("+OK marked\r\n")?,
                "QUIT" if at(Quit) => return hostile(p, bad, "+OK", ok_more, &reached),
                "QUIT" => {
                    p.send("+OK bye\r\n")?;
                    return Ok(());
                }
                _ => p.send("-ERR what?\r\n")?,
            }
        }
    })
}

fn pop3_case(step: PopStep, bad: Bad, mode: Mode) -> Outcome {
    let reached = Arc::new(Reached::default());
    let srv = pop3_server(step, bad, reached.clone());
    let mut opts = common_opts(srv.port());
    let security = if step == PopStep::Stls {
        HERALD_SECURITY_STARTTLS_IF_AVAILABLE
    } else {
        HERALD_SECURITY_NONE
    };
    opts.push((HERALD_OPT_SECURITY, Val::I(security)));
    opts.push((HERALD_OPT_USERNAME, Val::S("user")));
    opts.push((HERALD_OPT_PASSWORD, Val::S("secret")));
    let c = TestClient::new(HERALD_PROTOCOL_POP3, &opts).expect("client");
    let case = format!("POP3 {step:?}/{bad:?}/{mode:?}");
    let out = drive(case.clone(), c, mode, &reached, 1, |c| match step {
        PopStep::Retr => c.pop3_retrieve("uid-1"),
        PopStep::Top => c.pop3_top("uid-1", 1),
        PopStep::Dele | PopStep::Quit => c.pop3_delete(&["uid-1"]),
        _ => c.pop3_list(),
    });
    if step == PopStep::Quit && mode == Mode::Cancel && out.status == HERALD_STATUS_CANCELLED {
        // QUIT went out: the cancel cannot know what the server did.
        assert!(out.detail.contains("may or may not"), "{case}: {}", out.detail);
    }
    if out.status == HERALD_STATUS_OK {
        // Only QUIT's +OK commits a delete (a flood of +OK after DELE answers
        // QUIT too), and a listing needs all of its steps.
        let quit_ok =
            step == PopStep::Quit || (step == PopStep::Dele && matches!(bad, Bad::Flood | Bad::Unsolicited));
        assert!(quit_ok, "{case}: OK from a server that misbehaved before the end");
    }
    drop(srv);
    out
}

// ---------------------------------------------------------------- running the tables

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `cases` on `parallel` threads and returns what they measured.
fn run_table(cases: Vec<Box<dyn FnOnce() -> Outcome + Send>>, parallel: usize) -> Vec<Outcome> {
    let queue = Mutex::new(cases.into_iter().collect::<VecDeque<_>>());
    let out = Mutex::new(Vec::new());
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(case)) {
                    Ok(o) => out.lock().unwrap().push(o),
                    Err(_) => failed.store(true, Ordering::SeqCst),
                }
            });
        }
    });
    assert!(!failed.load(Ordering::SeqCst), "some cases failed (see above)");
    out.into_inner().unwrap()
}

fn summary(name: &str, outs: &[Outcome]) {
    let mut took: Vec<(Duration, &str)> = outs.iter().map(|o| (o.took, o.case.as_str())).collect();
    took.sort();
    let cancels: Vec<Duration> = outs
        .iter()
        .filter(|o| !o.case.ends_with("/Complete"))
        .map(|o| o.took)
        .collect();
    let slowest_cancel = outs
        .iter()
        .filter(|o| !o.case.ends_with("/Complete"))
        .max_by_key(|o| o.took)
        .map(|o| o.case.as_str())
        .unwrap_or("");
    let max_cancel = cancels.iter().max().copied().unwrap_or_default();
    let mut cs = cancels.clone();
    cs.sort();
    let median_cancel = cs.get(cs.len() / 2).copied().unwrap_or_default();
    if std::env::var_os("HERALD_HOSTILE_VERBOSE").is_some() {
        let mut all: Vec<_> = outs.iter().map(|o| (o.case.as_str(), o.status, o.took)).collect();
        all.sort();
        for (c, st, t) in all {
            eprintln!("  {c}: status {st} in {t:?}");
        }
    }
    eprintln!(
        "{name}: {} cases; slowest {:?} ({}); cancel/free: median {:?}, max {:?} ({slowest_cancel})",
        outs.len(),
        took.last().map(|t| t.0).unwrap_or_default(),
        took.last().map(|t| t.1).unwrap_or(""),
        median_cancel,
        max_cancel
    );
}

fn table<S: Copy + Send + 'static>(
    steps: &[S],
    case: fn(S, Bad, Mode) -> Outcome,
) -> Vec<Box<dyn FnOnce() -> Outcome + Send>> {
    let mut cases: Vec<Box<dyn FnOnce() -> Outcome + Send>> = Vec::new();
    for &step in steps {
        for bad in ALL_BAD {
            cases.push(Box::new(move || case(step, bad, Mode::Complete)));
        }
        for bad in HOLDING {
            cases.push(Box::new(move || case(step, bad, Mode::Cancel)));
            cases.push(Box::new(move || case(step, bad, Mode::Free)));
        }
    }
    cases
}

/// How many cases run at once.
const PARALLEL: usize = 12;
/// Peak memory growth allowed for a whole table (each case's connection is
/// bounded by MAX_LINE_BYTES; unbounded reading grows by hundreds of MB/s).
const TABLE_RSS_GROWTH_KIB: u64 = 200 * 1024;

#[test]
fn smtp_hostile_server_at_every_step() {
    let before = peak_rss_kib();
    let outs = run_table(table(&SMTP_STEPS, smtp_case), PARALLEL);
    summary("SMTP", &outs);
    let grew = peak_rss_kib().saturating_sub(before);
    assert!(grew < TABLE_RSS_GROWTH_KIB, "peak RSS grew by {grew} KiB");
}

#[test]
fn pop3_hostile_server_at_every_step() {
    let before = peak_rss_kib();
    let outs = run_table(table(&POP_STEPS, pop3_case), PARALLEL);
    summary("POP3", &outs);
    let grew = peak_rss_kib().saturating_sub(before);
    assert!(grew < TABLE_RSS_GROWTH_KIB, "peak RSS grew by {grew} KiB");
}

// ---------------------------------------------------------------- the deadline

/// Waits for `op`'s completion and returns it with the time since `since`.
fn completion(c: &TestClient, op: u64, since: Instant) -> (Record, Duration) {
    assert_eq!(
        c.wait(op, OP_TIMEOUT * 3 + SLACK),
        HERALD_STATUS_OK,
        "op {op} completes"
    );
    let took = since.elapsed();
    let r = c.records().into_iter().find(|r| r.op == op).expect("recorded");
    (r, took)
}

fn assert_timed_out(what: &str, r: &Record, took: Duration) {
    assert_eq!(r.status, HERALD_STATUS_TIMEOUT, "{what}: {r:?}");
    assert!(!r.cancelled, "{what}: a deadline is no cancel");
    assert!(r.detail.contains("OP_TIMEOUT_MS"), "{what}: {}", r.detail);
    assert!(
        took >= OP_TIMEOUT && took < OP_TIMEOUT + SLACK,
        "{what}: completed after {took:?}, deadline {OP_TIMEOUT:?}"
    );
    eprintln!("{what}: TIMEOUT after {took:?}");
}

/// A server trickling its greeting one byte every 0.2 s: each read succeeds
/// within IO_TIMEOUT_MS, only the op's deadline ends it.
fn trickling_greeting(first: &'static str) -> Scripted {
    Scripted::start(move |mut p| {
        p.send(first)?;
        p.trickle("hello ".repeat(500).as_bytes(), TRICKLE_GAP)
    })
}

#[test]
fn deadline_ends_a_trickling_smtp_server() {
    let srv = trickling_greeting("220 ");
    let mut opts = common_opts(srv.port());
    opts.push((HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)));
    let c = TestClient::new(HERALD_PROTOCOL_SMTP, &opts).unwrap();
    let t0 = Instant::now();
    let op = c
        .send_raw("a@x.test", &["b@x.test"], b"Subject: t\r\n\r\nx\r\n")
        .unwrap();
    let (r, took) = completion(&c, op, t0);
    assert_timed_out("SMTP trickled greeting", &r, took);
    assert_exactly_once(&c.free(), &[op]);
}

#[test]
fn deadline_ends_a_trickling_pop3_server() {
    let srv = trickling_greeting("+OK ");
    let mut opts = common_opts(srv.port());
    opts.push((HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)));
    opts.push((HERALD_OPT_USERNAME, Val::S("u")));
    opts.push((HERALD_OPT_PASSWORD, Val::S("p")));
    let c = TestClient::new(HERALD_PROTOCOL_POP3, &opts).unwrap();
    let t0 = Instant::now();
    let op = c.pop3_list().unwrap();
    let (r, took) = completion(&c, op, t0);
    assert_timed_out("POP3 trickled greeting", &r, took);
    assert_exactly_once(&c.free(), &[op]);
}

fn imap_client(port: u16) -> TestClient {
    let mut opts = common_opts(port);
    opts.push((HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)));
    opts.push((HERALD_OPT_USERNAME, Val::S("u")));
    opts.push((HERALD_OPT_PASSWORD, Val::S("p")));
    TestClient::new(HERALD_PROTOCOL_IMAP, &opts).unwrap()
}

#[test]
fn deadline_ends_an_endless_imap_greeting() {
    let srv = trickling_greeting("* OK ");
    let c = imap_client(srv.port());
    let t0 = Instant::now();
    let op = c.imap_list("*").unwrap();
    let (r, took) = completion(&c, op, t0);
    assert_timed_out("IMAP trickled greeting", &r, took);
    assert_exactly_once(&c.free(), &[op]);
}

#[test]
fn deadline_ends_an_endless_stream_of_untagged_imap_responses() {
    let srv = Scripted::start(|mut p| {
        p.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")?;
        p.line()?;
        // Untagged EXISTS, forever, paced so that every read succeeds at once.
        p.flood(HOSTILE_FOR, |i| {
            std::thread::sleep(Duration::from_millis(1));
            format!("* {i} EXISTS\r\n").into_bytes()
        })
    });
    let c = imap_client(srv.port());
    let t0 = Instant::now();
    let op = c.imap_list("*").unwrap();
    let (r, took) = completion(&c, op, t0);
    assert_timed_out("IMAP endless EXISTS", &r, took);
    assert_exactly_once(&c.free(), &[op]);
}

#[test]
fn queue_time_does_not_count_toward_the_deadline() {
    // One connection; each message takes 0.4 s at the server, five of them
    // 2 s in all: the last waits in the queue twice its deadline, yet all are sent.
    let srv = Scripted::start(|mut p| {
        p.send("220 slow.test\r\n")?;
        loop {
            let line = p.line()?;
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "" => return Ok(()),
                "EHLO" => p.send("250-slow.test\r\n250 8BITMIME\r\n")?,
                "DATA" => {
                    p.send("354 go\r\n")?;
                    while p.line()? != "." {}
                    std::thread::sleep(Duration::from_millis(400));
                    p.send("250 ok\r\n")?;
                }
                "QUIT" => return p.send("221 bye\r\n"),
                _ => p.send("250 ok\r\n")?,
            }
        }
    });
    let mut opts = common_opts(srv.port());
    opts.push((HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)));
    opts.push((HERALD_OPT_IO_TIMEOUT_MS, Val::I(5000)));
    let c = TestClient::new(HERALD_PROTOCOL_SMTP, &opts).unwrap();
    let ops = c.send_numbered("a@x.test", "b@x.test", 5);
    assert_eq!(c.flush(Duration::from_secs(20)), HERALD_STATUS_OK);
    let recs = c.free();
    assert_exactly_once(&recs, &ops);
    assert!(recs.iter().all(Record::ok), "{recs:?}");
}

/// An SMTP server that never finishes the reply to the final dot of the
/// message with subject `0` (on whichever connection it comes); the other
/// messages, and the connections after it, behave.
fn smtp_stalls_first_dot() -> Scripted {
    Scripted::start(|mut p| {
        p.send("220 stall.test\r\n")?;
        loop {
            let line = p.line()?;
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "" => return Ok(()),
                "EHLO" => p.send("250-stall.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")?,
                "DATA" => {
                    p.send("354 go\r\n")?;
                    let mut first = false;
                    loop {
                        let l = p.line()?;
                        if l == "." {
                            break;
                        }
                        first |= l == "Subject: 0";
                    }
                    if first {
                        p.send("250 ")?;
                        return p.trickle("almost there ".repeat(500).as_bytes(), TRICKLE_GAP);
                    }
                    p.send("250 ok\r\n")?;
                }
                "QUIT" => return p.send("221 bye\r\n"),
                _ => p.send("250 ok\r\n")?,
            }
        }
    })
}

#[test]
fn ops_pipelined_behind_a_timed_out_smtp_op_are_retried() {
    let srv = smtp_stalls_first_dot();
    let mut opts = common_opts(srv.port());
    opts.push((HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)));
    let c = TestClient::new(HERALD_PROTOCOL_SMTP, &opts).unwrap();
    let t0 = Instant::now();
    let ops = c.send_numbered("a@x.test", "b@x.test", 3);
    let (r, took) = completion(&c, ops[0], t0);
    assert_timed_out("SMTP stalled final reply", &r, took);
    assert_eq!(c.flush(OP_TIMEOUT * 3), HERALD_STATUS_OK);
    let recs = c.free();
    assert_exactly_once(&recs, &ops);
    for op in &ops[1..] {
        let r = recs.iter().find(|r| r.op == *op).unwrap();
        assert!(r.ok(), "op {op} behind the stalled one: {r:?}");
    }
    assert!(srv.accepted() >= 2, "the others went on a new connection");
}

/// A POP3 server whose first connection trickles the first RETR response.
fn pop3_stalls_first_retr(body: &'static str) -> Scripted {
    Scripted::start(move |mut p| {
        p.send("+OK ready\r\n")?;
        let mut retrs = 0;
        loop {
            let line = p.line()?;
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "" => return Ok(()),
                "CAPA" => p.send("+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n")?,
                "STAT" => p.send("+OK 3 300\r\n")?,
                "UIDL" => p.send("+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n.\r\n")?,
                "LIST" => p.send("+OK\r\n1 100\r\n2 100\r\n3 100\r\n.\r\n")?,
                "RETR" => {
                    retrs += 1;
                    if p.index == 0 && retrs == 1 {
                        p.send("+OK\r\n")?;
                        return p.trickle(body.repeat(200).as_bytes(), TRICKLE_GAP);
                    }
                    p.send(format!("+OK\r\n{body}.\r\n"))?;
                }
                "QUIT" => return p.send("+OK bye\r\n"),
                _ => p.send("+OK\r\n")?,
            }
        }
    })
}

#[test]
fn ops_pipelined_behind_a_timed_out_pop3_op_are_retried() {
    let srv = pop3_stalls_first_retr("Subject: x\r\n\r\nbody\r\n");
    let mut opts = common_opts(srv.port());
    opts.push((HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)));
    opts.push((HERALD_OPT_USERNAME, Val::S("u")));
    opts.push((HERALD_OPT_PASSWORD, Val::S("p")));
    let c = TestClient::new(HERALD_PROTOCOL_POP3, &opts).unwrap();
    let t0 = Instant::now();
    // u2 is pipelined right behind u1: it started with it, and has waited
    // as long when u1's deadline strikes, so it is retried or times out
    // with it. u3, queued later, has time left: retried on a new connection.
    let mut ops: Vec<u64> = ["u1", "u2"].iter().map(|u| c.pop3_retrieve(u).unwrap()).collect();
    std::thread::sleep(OP_TIMEOUT / 3);
    ops.push(c.pop3_retrieve("u3").unwrap());
    let (r, took) = completion(&c, ops[0], t0);
    assert_timed_out("POP3 stalled RETR", &r, took);
    assert_eq!(c.flush(OP_TIMEOUT * 3), HERALD_STATUS_OK);
    let recs = c.free();
    assert_exactly_once(&recs, &ops);
    for (i, op) in ops.iter().enumerate().skip(1) {
        let r = recs.iter().find(|r| r.op == *op).unwrap();
        if i == 1 && r.status == HERALD_STATUS_TIMEOUT {
            continue;
        }
        assert!(r.ok(), "op {op} behind the stalled one: {r:?}");
        assert_eq!(
            r.items[0].bytes.as_deref(),
            Some(&b"Subject: x\r\n\r\nbody\r\n"[..])
        );
    }
}

#[test]
fn op_timeout_zero_means_no_deadline() {
    let srv = trickling_greeting("220 ");
    let mut opts = common_opts(srv.port());
    opts.push((HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)));
    opts.push((HERALD_OPT_OP_TIMEOUT_MS, Val::I(0)));
    let c = TestClient::new(HERALD_PROTOCOL_SMTP, &opts).unwrap();
    let op = c
        .send_raw("a@x.test", &["b@x.test"], b"Subject: t\r\n\r\nx\r\n")
        .unwrap();
    // Well past where a deadline would have struck, it still runs.
    assert_eq!(c.wait(op, OP_TIMEOUT * 2), HERALD_STATUS_TIMEOUT, "still pending");
    assert!(c.records().is_empty());
    let t0 = Instant::now();
    let recs = c.free();
    assert!(t0.elapsed() < SLACK, "free is prompt");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, HERALD_STATUS_CANCELLED);
}

// ---------------------------------------------------------------- POP3 size limits

/// A POP3 server announcing one message of `announced` bytes and sending
/// `body` for it (then, for message 2, a small one).
fn pop3_sized(announced: usize, body: Vec<u8>) -> Scripted {
    let body = Arc::new(body);
    Scripted::start(move |mut p| {
        p.send("+OK ready\r\n")?;
        loop {
            let line = p.line()?;
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "" => return Ok(()),
                "CAPA" => p.send("+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n")?,
                "STAT" => p.send(format!("+OK 2 {}\r\n", announced + 10))?,
                "UIDL" => p.send("+OK\r\n1 big\r\n2 small\r\n.\r\n")?,
                "LIST" => p.send(format!("+OK\r\n1 {announced}\r\n2 10\r\n.\r\n"))?,
                "RETR" if line.ends_with(" 1") => {
                    p.send("+OK\r\n")?;
                    p.send(body.as_slice())?;
                    p.send(".\r\n")?;
                }
                "RETR" => p.send("+OK\r\nSubject: s\r\n\r\n.\r\n")?,
                "QUIT" => return p.send("+OK bye\r\n"),
                _ => p.send("+OK\r\n")?,
            }
        }
    })
}

fn pop3_limited(port: u16, max_message: i64) -> TestClient {
    let mut opts = common_opts(port);
    opts.push((HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)));
    opts.push((HERALD_OPT_USERNAME, Val::S("u")));
    opts.push((HERALD_OPT_PASSWORD, Val::S("p")));
    opts.push((HERALD_OPT_MAX_MESSAGE_BYTES, Val::I(max_message)));
    TestClient::new(HERALD_PROTOCOL_POP3, &opts).unwrap()
}

#[test]
fn pop3_message_over_max_message_bytes_is_limit() {
    // Announced as too large: refused without retrieving it.
    let srv = pop3_sized(1 << 20, b"x\r\n".to_vec());
    let c = pop3_limited(srv.port(), 64 * 1024);
    let big = c.pop3_retrieve("big").unwrap();
    let small = c.pop3_retrieve("small").unwrap();
    assert_eq!(c.flush(SLACK * 2), HERALD_STATUS_OK);
    let recs = c.free();
    assert_exactly_once(&recs, &[big, small]);
    let r = recs.iter().find(|r| r.op == big).unwrap();
    assert_eq!(r.status, HERALD_STATUS_LIMIT, "{r:?}");
    assert!(r.detail.contains("MAX_MESSAGE_BYTES"), "{}", r.detail);
    assert!(recs.iter().find(|r| r.op == small).unwrap().ok());

    // Announced small, but the response goes on past the limit: LIMIT, and
    // the op behind it is retried on a new connection.
    let line = format!("{}\r\n", "y".repeat(998));
    let srv = pop3_sized(1000, line.repeat(200).into_bytes());
    let c = pop3_limited(srv.port(), 64 * 1024);
    let big = c.pop3_retrieve("big").unwrap();
    let small = c.pop3_retrieve("small").unwrap();
    assert_eq!(c.flush(SLACK * 2), HERALD_STATUS_OK);
    let recs = c.free();
    assert_exactly_once(&recs, &[big, small]);
    let r = recs.iter().find(|r| r.op == big).unwrap();
    assert_eq!(r.status, HERALD_STATUS_LIMIT, "{r:?}");
    assert!(recs.iter().find(|r| r.op == small).unwrap().ok());

    // Under MAX_MESSAGE_BYTES but far beyond what LIST announced: PROTOCOL.
    let srv = pop3_sized(1000, line.repeat(2000).into_bytes());
    let c = pop3_limited(srv.port(), 64 << 20);
    let big = c.pop3_retrieve("big").unwrap();
    assert_eq!(c.flush(SLACK * 2), HERALD_STATUS_OK);
    let recs = c.free();
    assert_eq!(recs[0].status, HERALD_STATUS_PROTOCOL, "{:?}", recs[0]);
    assert_exactly_once(&recs, &[big]);
}

// ---------------------------------------------------------------- IDLE is exempt

#[test]
fn idle_outlives_op_timeout_and_other_ops_keep_theirs() {
    herald_testservers::require_servers();
    let d = herald_testservers::Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[(HERALD_OPT_OP_TIMEOUT_MS, Val::I(1000))]);
    let idle = c.imap_idle("INBOX").unwrap();
    // Well past the deadline the IDLE still runs and still reports.
    std::thread::sleep(Duration::from_millis(2500));
    d.append("alice", "INBOX", b"Subject: late\r\n\r\nafter the deadline\r\n");
    let seen = c.wait_change(idle, 1, Duration::from_secs(20));
    assert!(seen.contains(&1), "IDLE reported {seen:?}");
    assert!(
        c.records().iter().all(|r| r.op != idle),
        "the IDLE did not complete: {:?}",
        c.records()
    );
    // An ordinary op on the same client completes normally.
    let r = c.done(c.imap_search("INBOX", "ALL"));
    assert!(r.ok(), "{r:?}");
    assert_eq!(c.cancel(idle), HERALD_STATUS_OK);
    let r = c.result(idle);
    assert_eq!(r.status, HERALD_STATUS_CANCELLED, "{r:?}");
}
