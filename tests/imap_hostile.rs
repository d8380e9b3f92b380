//! IMAP against hostile scripted servers: at every protocol step, garbage,
//! NUL bytes, invalid UTF-8, overlong and endless lines, huge and negative
//! literal sizes, deep nesting, floods, trickling, silence and resets. Each
//! case checks exactly one completion with a clear status, and that cancel
//! and free return promptly; IDLE against a flood checks that cancel and a
//! waiting op are served at once and that changes are coalesced.

mod api;

use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use api::imap::*;
use api::*;
use herald_testservers::imap_script::{self, serve, Evil, IdleFlood, Step};
use herald_testservers::scripted::Scripted;

/// Generous bounds for a loaded machine; the typical numbers are printed.
const PROMPT: Duration = Duration::from_secs(1);
const IO_TIMEOUT_MS: i64 = 300;

fn client(port: u16, extra: &[(u32, Val)]) -> TestClient {
    let mut opts = vec![(HERALD_OPT_IO_TIMEOUT_MS, Val::I(IO_TIMEOUT_MS))];
    for (id, v) in extra {
        opts.push((
            *id,
            match v {
                Val::S(s) => Val::S(s),
                Val::I(i) => Val::I(*i),
            },
        ));
    }
    TestClient::imap_as(port, "carol", "carolpass", &opts)
}

/// What a case must end with.
#[derive(Debug)]
enum Expect {
    Status(u32),
    /// The op goes on until cancelled (floods, trickles; IDLE reconnects).
    UntilCancelled,
}

fn expect(step: Step, evil: Evil) -> Expect {
    use Evil::*;
    if matches!(step, Step::Idle | Step::Idling) {
        // IDLE outlives a broken connection: it reconnects until cancelled.
        return Expect::UntilCancelled;
    }
    Expect::Status(match evil {
        Garbage | Nul | BadUtf8 | Overlong | Endless | NegativeLiteral | Deep(_) | WrongTag => {
            HERALD_STATUS_PROTOCOL
        }
        HugeLiteral => HERALD_STATUS_LIMIT,
        Silence => HERALD_STATUS_TIMEOUT,
        Reset => HERALD_STATUS_IO,
        // A greeting must be a status line.
        Flood if step == Step::Greeting => HERALD_STATUS_PROTOCOL,
        // An append (whose cancel is cooperative, for exact UIDs) wants each
        // response whole within IO_TIMEOUT_MS.
        Trickle if step == Step::AppendContinue => HERALD_STATUS_TIMEOUT,
        Flood | Trickle => return Expect::UntilCancelled,
    })
}

fn submit(c: &TestClient, step: Step) -> u64 {
    let r = match step {
        Step::Greeting | Step::Capability | Step::Login | Step::List => c.imap_list("*"),
        Step::Select | Step::Search => c.imap_search("INBOX", "ALL"),
        Step::Fetch => c.imap_fetch(
            "INBOX",
            "1",
            HERALD_FETCH_BODY | HERALD_FETCH_FLAGS | HERALD_FETCH_ENVELOPE,
        ),
        Step::AppendContinue => c.imap_append("INBOX", &[b"Subject: x\r\n\r\nhi\r\n"], None),
        Step::Idle | Step::Idling => c.imap_idle("INBOX"),
        Step::Logout => unreachable!("no op sends LOGOUT"),
    };
    r.unwrap_or_else(|s| panic!("refused at the call: {s} {}", last_error()))
}

/// Timings of one case, in ms: to the completion (or from cancel to it), and of free.
static TIMES: Mutex<Vec<(String, u128, u128)>> = Mutex::new(Vec::new());

fn run_case(step: Step, evil: Evil) {
    let server = Scripted::start(move |peer| serve(peer, Some((step, evil)), None));
    let c = client(server.port(), &[]);
    let started = Instant::now();
    let op = submit(&c, step);
    let what = format!("{step:?} {evil:?}");
    let took = match expect(step, evil) {
        Expect::Status(want) => {
            assert_eq!(
                c.wait(op, Duration::from_secs(10)),
                HERALD_STATUS_OK,
                "{what}: no completion"
            );
            let took = started.elapsed();
            let r = c.records().into_iter().find(|r| r.op == op).unwrap();
            assert_eq!(r.status, want, "{what}: {r:?}");
            assert!(!r.detail.is_empty(), "{what}: a detail says why");
            // Silence ends after IO_TIMEOUT; everything else at once.
            assert!(took < Duration::from_secs(5), "{what}: {took:?}");
            took
        }
        Expect::UntilCancelled => {
            // Let the misbehaviour run, then cancel.
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                c.records().iter().all(|r| r.op != op),
                "{what}: completed before the cancel"
            );
            let cancelled = Instant::now();
            assert_eq!(c.cancel(op), HERALD_STATUS_OK, "{what}");
            assert_eq!(
                c.wait(op, Duration::from_secs(10)),
                HERALD_STATUS_OK,
                "{what}: no completion"
            );
            let took = cancelled.elapsed();
            let r = c.records().into_iter().find(|r| r.op == op).unwrap();
            assert!(r.cancelled, "{what}: {r:?}");
            assert!(took < PROMPT, "{what}: the cancel took {took:?}");
            took
        }
    };
    let freeing = Instant::now();
    let records = c.free();
    let freed = freeing.elapsed();
    assert!(freed < PROMPT, "{what}: free took {freed:?}");
    assert_exactly_once(&records, &[op]);
    TIMES
        .lock()
        .unwrap()
        .push((what, took.as_millis(), freed.as_millis()));
}

fn run_step(step: Step) {
    let (rss0, _) = imap_script::rss_kib();
    for evil in Evil::ALL {
        run_case(step, evil);
    }
    let (rss1, _) = imap_script::rss_kib();
    let times = TIMES.lock().unwrap();
    let mine: Vec<_> = times
        .iter()
        .filter(|t| t.0.starts_with(&format!("{step:?} ")))
        .collect();
    let worst_free = mine
        .iter()
        .max_by_key(|t| t.2)
        .map(|t| format!("{} ms ({})", t.2, t.0))
        .unwrap_or_default();
    eprintln!(
        "{step:?}: {} cases; ms to completion or from cancel: {:?}; worst free {worst_free}; RSS {rss0} -> {rss1} KiB",
        mine.len(),
        mine.iter().map(|t| (t.0.split(' ').nth(1).unwrap_or(""), t.1)).collect::<Vec<_>>()
    );
}

#[test]
fn hostile_greeting() {
    run_step(Step::Greeting);
}

#[test]
fn hostile_capability() {
    run_step(Step::Capability);
}

#[test]
fn hostile_login() {
    run_step(Step::Login);
}

#[test]
fn hostile_list() {
    run_step(Step::List);
}

#[test]
fn hostile_select() {
    run_step(Step::Select);
}

#[test]
fn hostile_search() {
    run_step(Step::Search);
}

#[test]
fn hostile_fetch() {
    run_step(Step::Fetch);
}

#[test]
fn hostile_append_continuation() {
    run_step(Step::AppendContinue);
}

#[test]
fn hostile_idle_start() {
    run_step(Step::Idle);
}

#[test]
fn hostile_while_idling() {
    run_step(Step::Idling);
}

#[test]
fn logout_against_a_flood_or_silence_gives_up_in_time() {
    // A connection beyond the first closes after IDLE_TIMEOUT_MS with
    // LOGOUT; a server that floods or says nothing gets 2 s, not forever.
    for evil in [Evil::Flood, Evil::Silence, Evil::Endless] {
        let ended: std::sync::Arc<Mutex<Vec<Instant>>> = Default::default();
        let e = ended.clone();
        let server = Scripted::start(move |peer| {
            let r = serve(peer, Some((Step::Logout, evil)), None);
            e.lock().unwrap().push(Instant::now());
            r
        });
        let c = client(
            server.port(),
            &[
                (HERALD_OPT_MAX_CONNECTIONS, Val::I(2)),
                (HERALD_OPT_IDLE_TIMEOUT_MS, Val::I(100)),
            ],
        );
        let ops: Vec<u64> = (0..4).map(|_| c.imap_list("*").unwrap()).collect();
        for op in &ops {
            assert_eq!(c.wait(*op, Duration::from_secs(10)), HERALD_STATUS_OK);
        }
        let done = Instant::now();
        assert!(c.records().iter().all(|r| r.ok()), "{:?}", c.records());
        assert_eq!(server.accepted(), 2, "{evil:?}: both connections were used");
        // The second connection's LOGOUT ends by 100 ms + 2 s.
        while ended.lock().unwrap().is_empty() && done.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = ended.lock().unwrap().first().map(|t| t.duration_since(done));
        eprintln!("LOGOUT against {evil:?}: the connection closed {took:?} after the last op");
        let took = took.unwrap_or_else(|| panic!("{evil:?}: the LOGOUT never ended"));
        assert!(took < Duration::from_secs(5), "{evil:?}: {took:?}");
        let freeing = Instant::now();
        let records = c.free();
        assert!(
            freeing.elapsed() < PROMPT,
            "{evil:?}: free took {:?}",
            freeing.elapsed()
        );
        assert_exactly_once(&records, &ops);
    }
}

#[test]
fn a_well_behaved_script_passes_every_op() {
    // The baseline the hostile cases depart from.
    let server = Scripted::start(|peer| serve(peer, None, None));
    let c = client(server.port(), &[]);
    for step in Step::ALL
        .iter()
        .filter(|s| !matches!(s, Step::Idle | Step::Idling))
    {
        let op = submit(&c, *step);
        let r = c.result(op);
        assert!(r.ok(), "{step:?}: {r:?}");
    }
    let r = c.done(c.imap_fetch(
        "INBOX",
        "1",
        HERALD_FETCH_BODY | HERALD_FETCH_FLAGS | HERALD_FETCH_ENVELOPE,
    ));
    assert_eq!(r.items[0].bytes.as_deref(), Some(&b"hello"[..]));
}

/// IDLE notifications of the flood test: how many, the last EXISTS, and
/// whether they only grew.
static CALLS: AtomicU64 = AtomicU64::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);
static SHRANK: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn slow_change(c: *const herald_completion) {
    let r = record_of(c);
    assert_eq!(r.status, HERALD_STATUS_OK);
    let n = r.items[0].ints[&HERALD_FIELD_EXISTS];
    if n < LAST.swap(n, Ordering::SeqCst) {
        SHRANK.fetch_add(1, Ordering::SeqCst);
    }
    CALLS.fetch_add(1, Ordering::SeqCst);
    // A slow application: the flood outpaces it.
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn idle_under_a_flood_lends_its_connection_cancels_at_once_and_coalesces() {
    let (rss0, _) = imap_script::rss_kib();
    let flood = IdleFlood::default();
    let f = flood.clone();
    let server = Scripted::start(move |peer| serve(peer, None, Some(&f)));
    let c = client(server.port(), &[(HERALD_OPT_MAX_CONNECTIONS, Val::I(1))]);
    let mailbox = CString::new("INBOX").unwrap();
    let idle = c
        .submit(|cb, t, op| herald_imap_idle_async(c.c, mailbox.as_ptr(), Some(slow_change), cb, t, op))
        .unwrap();
    let begun = Instant::now();
    while flood.sent.load(Ordering::SeqCst) < 10_000 {
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "the flood did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    // An op that needs the only connection: IDLE lends it at once.
    let asked = Instant::now();
    let list = c.imap_list("*").unwrap();
    assert_eq!(c.wait(list, Duration::from_secs(10)), HERALD_STATUS_OK);
    let lent_after = asked.elapsed();
    assert!(
        c.records().iter().any(|r| r.op == list && r.ok()),
        "{:?}",
        c.records()
    );
    assert!(
        lent_after < PROMPT,
        "the waiting op was served after {lent_after:?}"
    );
    let first_done = flood.last_before_done.load(Ordering::SeqCst);
    // IDLE resumes; the flood goes on; the cancel is seen at once.
    std::thread::sleep(Duration::from_millis(500));
    let cancelled = Instant::now();
    assert_eq!(c.cancel(idle), HERALD_STATUS_OK);
    assert_eq!(c.wait(idle, Duration::from_secs(10)), HERALD_STATUS_OK);
    let cancel_took = cancelled.elapsed();
    assert!(cancel_took < PROMPT, "the cancel took {cancel_took:?}");
    let flooded_for = begun.elapsed();
    let freeing = Instant::now();
    let records = c.free();
    let freed = freeing.elapsed();
    assert_exactly_once(&records, &[idle, list]);
    assert!(records.iter().any(|r| r.op == idle && r.cancelled));
    let sent = flood.sent.load(Ordering::SeqCst);
    let calls = CALLS.load(Ordering::SeqCst);
    let (rss1, hwm) = imap_script::rss_kib();
    eprintln!("IDLE flood: RSS {rss0} -> {rss1} KiB, peak {hwm} KiB");
    eprintln!(
        "IDLE flood: {sent} EXISTS sent in {flooded_for:?}, {calls} on_change calls, last {}, \
         list served after {lent_after:?}, cancel took {cancel_took:?}, free {freed:?}, {} connections",
        LAST.load(Ordering::SeqCst),
        server.accepted()
    );
    // Coalesced: a 10 ms callback sees at most about one call per 10 ms
    // (plus one per IDLE tick), not one per response.
    let bound = flooded_for.as_millis() as u64 / 10 + 50;
    assert!(
        calls <= bound,
        "{calls} calls for {sent} responses (bound {bound})"
    );
    assert!(calls < sent / 20, "{calls} calls for {sent} responses");
    // The script counts per connection: when DONE's reply, behind the
    // flood, took longer than IO_TIMEOUT_MS, IDLE reconnected and the
    // count started again (3), as it should be reported.
    if server.accepted() == 1 {
        assert_eq!(
            SHRANK.load(Ordering::SeqCst),
            0,
            "notifications carry the latest count"
        );
        assert!(
            LAST.load(Ordering::SeqCst) >= first_done,
            "the latest count was delivered"
        );
    }
}

/// A server offering ESEARCH that answers UID SEARCH with `set`.
fn esearch_server(set: &'static str) -> Scripted {
    Scripted::start(move |mut peer| {
        peer.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ESEARCH] hi\r\n")?;
        loop {
            let line = peer.line()?;
            let mut w = line.splitn(3, ' ');
            let (tag, cmd) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            let reply = match cmd {
                "" => return Ok(()),
                "AUTHENTICATE" => format!("{tag} OK [CAPABILITY IMAP4rev1 ESEARCH] in\r\n"),
                "EXAMINE" => format!("* 10 EXISTS\r\n{tag} OK [READ-ONLY] ok\r\n"),
                "UID" if line.contains("SEARCH RETURN (ALL)") => {
                    format!("* ESEARCH (TAG \"{tag}\") UID ALL {set}\r\n{tag} OK done\r\n")
                }
                _ => format!("{tag} BAD what\r\n"),
            };
            peer.send(reply)?;
        }
    })
}

#[test]
fn esearch_sets_are_expanded_within_a_bound() {
    let server = esearch_server("3:5,9");
    let c = client(server.port(), &[]);
    let r = c.done(c.imap_search("INBOX", "ALL"));
    assert_eq!(uids(&r), [3, 4, 5, 9], "{r:?}");
    // A few bytes naming four billion UIDs: LIMIT, not four billion items.
    let server = esearch_server("1:4294967295");
    let c = client(server.port(), &[]);
    let (rss0, _) = imap_script::rss_kib();
    let r = c.done(c.imap_search("INBOX", "ALL"));
    let (rss1, _) = imap_script::rss_kib();
    assert_eq!(r.status, HERALD_STATUS_LIMIT, "{r:?}");
    eprintln!("ESEARCH 1:4294967295: {} ({rss0} -> {rss1} KiB)", r.detail);
    let server = esearch_server("1:x");
    let c = client(server.port(), &[]);
    let r = c.done(c.imap_search("INBOX", "ALL"));
    assert_eq!(r.status, HERALD_STATUS_PROTOCOL, "{r:?}");
}
