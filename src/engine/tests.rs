//! The engine and its pool with a fake driver: no network, no files. The
//! driver's jobs say what to do (finish, block until aborted, stop only at a
//! cooperative cancel, ...), and the tests count what reaches the caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;
use crate::data::{ResultData, ResultItem};
use crate::options::Protocol;
use crate::result::Success;

/// What a fake op does on its worker.
#[derive(Clone, Debug)]
enum Act {
    /// Completes OK at once.
    Finish,
    /// Completes OK after sleeping this long.
    Sleep(Duration),
    /// Blocks until its connection is shut down (cancel, deadline, shutdown).
    Block,
    /// Completes only when a cooperative cancel is asked, with one item done.
    Cooperative,
    /// Held behind another op: completes when it is no longer live.
    Defer,
    /// Waits for the commit's answer: a cancel shuts the socket down.
    Interrupt,
    /// Waits for the gate, then completes OK.
    Gate(Arc<Mutex<Option<mpsc::Receiver<()>>>>),
    /// Sends `n` changes, then runs until cancelled.
    Changes(u32),
    /// The driver panics.
    Panic,
}

#[derive(Clone, Debug)]
struct FakeJob {
    act: Act,
    key: Option<String>,
}

impl FakeJob {
    fn new(act: Act) -> FakeJob {
        FakeJob { act, key: None }
    }

    fn keyed(act: Act, key: &str) -> FakeJob {
        FakeJob {
            act,
            key: Some(key.to_string()),
        }
    }
}

impl Job for FakeJob {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn flushable(&self) -> bool {
        !matches!(self.act, Act::Changes(_))
    }

    fn timeout_note(&self) -> &'static str {
        "; fake note"
    }

    fn affinity_key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// What the drivers of one engine saw.
#[derive(Default)]
struct Seen {
    /// Drivers alive now, and the most alive at once.
    alive: AtomicUsize,
    peak: AtomicUsize,
    /// Ops whose cancel mode is set up (their worker now waits in it).
    ready: AtomicUsize,
    /// Connections closed for being idle.
    idle_closed: AtomicUsize,
    /// Ops run, in order: their affinity key and start time.
    started: Mutex<Vec<(Option<String>, Instant)>>,
}

struct FakeDriver {
    seen: Arc<Seen>,
    /// The "selected mailbox": the key of the last op run.
    selected: Option<String>,
}

impl FakeDriver {
    fn new(seen: Arc<Seen>) -> FakeDriver {
        let n = seen.alive.fetch_add(1, Ordering::SeqCst) + 1;
        seen.peak.fetch_max(n, Ordering::SeqCst);
        FakeDriver { seen, selected: None }
    }
}

impl Drop for FakeDriver {
    fn drop(&mut self) {
        self.seen.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (polling, bounded) until `f` holds.
fn until(f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(30);
    while !f() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn io_error() -> Error {
    Error::new(Status::Io, "connection shut down")
}

impl Driver for FakeDriver {
    type Job = FakeJob;

    fn run(&mut self, t: Ticket<FakeJob>, w: &mut WorkerCtx<FakeJob>) {
        self.seen.started.lock().push((t.job.key.clone(), Instant::now()));
        self.selected = t.job.key.clone();
        let ok = || Ok(Success::new(250, "done"));
        match t.job.act.clone() {
            Act::Finish => t.complete(ok()),
            Act::Sleep(d) => {
                std::thread::sleep(d);
                t.complete(ok())
            }
            Act::Block => {
                let ctl = w.new_ctl();
                self.seen.ready.fetch_add(1, Ordering::SeqCst);
                until(|| ctl.is_aborted() || !t.is_live());
                t.complete(Err(io_error()))
            }
            Act::Cooperative => {
                t.set_cancel_mode(CancelMode::Cooperative);
                self.seen.ready.fetch_add(1, Ordering::SeqCst);
                until(|| t.cancel_requested());
                let part = ResultData::new(vec![ResultItem::new(7)]);
                t.complete(Err(Error::cancelled().with_partial(part)))
            }
            Act::Defer => {
                t.set_cancel_mode(CancelMode::Defer);
                self.seen.ready.fetch_add(1, Ordering::SeqCst);
                until(|| !t.is_live());
                t.complete(ok())
            }
            Act::Interrupt => {
                let ctl = w.new_ctl();
                t.set_cancel_mode(CancelMode::Interrupt);
                self.seen.ready.fetch_add(1, Ordering::SeqCst);
                until(|| ctl.is_aborted() || !t.is_live());
                t.complete(Err(Error::new(Status::Io, "QUIT's answer never came")))
            }
            Act::Gate(rx) => {
                let rx = rx.lock().take().expect("one gated op");
                let _ = rx.recv_timeout(Duration::from_secs(30));
                t.complete(ok())
            }
            Act::Changes(n) => {
                for i in 1..=n {
                    t.notify_change(Success::new(i as i32, format!("change {i}")));
                }
                let ctl = w.new_ctl();
                until(|| ctl.is_aborted() || !t.is_live());
                t.complete(Err(io_error()))
            }
            Act::Panic => panic!("a fake driver bug"),
        }
    }

    fn close_idle(&mut self, _w: &mut WorkerCtx<FakeJob>) {
        self.seen.idle_closed.fetch_add(1, Ordering::SeqCst);
        self.selected = None;
    }

    fn affinity(&self) -> Option<&str> {
        self.selected.as_deref()
    }
}

fn options(max_connections: usize) -> Options {
    let mut o = Options::new(Protocol::Smtp);
    o.host = Some("fake.invalid".into());
    o.max_connections = max_connections;
    o
}

fn engine(o: Options) -> (Engine<FakeJob>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let e = Engine::new(
        o,
        Box::new(move |_: &Arc<Options>| Box::new(FakeDriver::new(s.clone())) as _),
    )
    .unwrap();
    (e, seen)
}

/// What a callback was given.
#[derive(Clone, Debug)]
struct Got {
    status: Status,
    cancelled: bool,
    detail: String,
    result: Option<ResultData>,
}

/// Counts every completion each op gets, final or not.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<HashMap<OpId, Vec<Got>>>>);

impl Tally {
    fn notify(&self) -> Notify {
        let t = self.clone();
        Notify::Callback(Arc::new(move |c: &Completion| {
            t.0.lock().entry(c.op).or_default().push(Got {
                status: c.status,
                cancelled: c.cancelled,
                detail: c.detail.clone(),
                result: c.result.clone(),
            });
        }))
    }

    fn of(&self, op: OpId) -> Vec<Got> {
        self.0.lock().get(&op).map(|v| v.to_vec()).unwrap_or_default()
    }
}

fn submit(e: &Engine<FakeJob>, job: FakeJob, notify: Notify) -> OpId {
    e.submit(
        job,
        Submit {
            notify,
            on_change: None,
            token: 0,
        },
    )
    .unwrap()
}

fn status_of(e: &Engine<FakeJob>, op: OpId, tally: &Tally) -> Got {
    e.wait(op, Some(Duration::from_secs(30))).unwrap();
    let v = tally.of(op);
    assert_eq!(v.len(), 1, "op {op} completes exactly once: {v:?}");
    v.into_iter().next().unwrap()
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seen(peak {})", self.peak.load(Ordering::SeqCst))
    }
}

#[test]
fn every_op_completes_exactly_once_under_cancel_deadline_and_shutdown() {
    let acts = [
        Act::Finish,
        Act::Block,
        Act::Cooperative,
        Act::Defer,
        Act::Interrupt,
    ];
    for round in 0..6 {
        let mut o = options(3);
        // Half the rounds race deadlines too: they fire while cancels come.
        o.op_timeout = (round % 2 == 1).then(|| Duration::from_millis(2 + round as u64));
        let (mut e, _) = engine(o);
        let tally = Tally::default();
        let ops: Vec<OpId> = (0..60)
            .map(|i| submit(&e, FakeJob::new(acts[i % acts.len()].clone()), tally.notify()))
            .collect();
        std::thread::scope(|s| {
            // Cancels racing the workers, twice for some ops, and for done ones.
            for k in 0..3 {
                let (e, ops) = (&e, &ops);
                s.spawn(move || {
                    for op in ops.iter().skip(k).step_by(2 + round) {
                        e.cancel(*op).unwrap();
                    }
                });
            }
        });
        e.shutdown();
        for op in &ops {
            let v = tally.of(*op);
            assert_eq!(v.len(), 1, "round {round}: op {op} completes exactly once: {v:?}");
        }
        assert_eq!(e.cancel(9999).unwrap_err().status, Status::NotFound);
    }
}

#[test]
fn cancel_modes_say_what_happened() {
    let (e, seen) = engine(options(4));
    let tally = Tally::default();
    let block = submit(&e, FakeJob::new(Act::Block), tally.notify());
    let coop = submit(&e, FakeJob::new(Act::Cooperative), tally.notify());
    let defer = submit(&e, FakeJob::new(Act::Defer), tally.notify());
    let interrupt = submit(&e, FakeJob::new(Act::Interrupt), tally.notify());
    assert!(until(|| seen.ready.load(Ordering::SeqCst) == 4));
    for op in [block, coop, defer, interrupt] {
        e.cancel(op).unwrap();
    }
    let c = status_of(&e, block, &tally);
    assert!(c.cancelled && c.status == Status::Cancelled, "{c:?}");
    let c = status_of(&e, coop, &tally);
    assert!(c.cancelled, "{c:?}");
    assert_eq!(
        c.result.unwrap().items[0].uid,
        7,
        "a cooperative cancel keeps what was done"
    );
    let c = status_of(&e, defer, &tally);
    assert!(c.cancelled, "{c:?}");
    let c = status_of(&e, interrupt, &tally);
    assert!(
        c.cancelled && c.detail.contains("QUIT's answer never came"),
        "{c:?}"
    );
}

#[test]
fn the_deadline_completes_ops_timeout_exactly_once() {
    let mut o = options(3);
    o.op_timeout = Some(Duration::from_millis(50));
    let (mut e, _) = engine(o);
    let tally = Tally::default();
    let block = submit(&e, FakeJob::new(Act::Block), tally.notify());
    let coop = submit(&e, FakeJob::new(Act::Cooperative), tally.notify());
    let defer = submit(&e, FakeJob::new(Act::Defer), tally.notify());
    let idle = submit(&e, FakeJob::new(Act::Changes(0)), tally.notify());
    let c = status_of(&e, block, &tally);
    assert_eq!(c.status, Status::Timeout, "{c:?}");
    assert!(
        c.detail.contains("OP_TIMEOUT_MS") && c.detail.ends_with("; fake note"),
        "{}",
        c.detail
    );
    let c = status_of(&e, coop, &tally);
    assert_eq!(c.status, Status::Timeout, "{c:?}");
    assert_eq!(
        c.result.unwrap().items[0].uid,
        7,
        "the deadline keeps what was done"
    );
    let c = status_of(&e, defer, &tally);
    assert_eq!(c.status, Status::Timeout, "{c:?}");
    // Deadline-exempt: still running well past its deadline.
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        tally.of(idle).is_empty(),
        "an op that runs until cancelled has no deadline"
    );
    e.shutdown();
    assert_eq!(tally.of(idle).len(), 1);
}

#[test]
fn max_connections_is_never_exceeded() {
    for max in [1, 3] {
        let (mut e, seen) = engine(options(max));
        let tally = Tally::default();
        let ops: Vec<OpId> = (0..40)
            .map(|_| {
                submit(
                    &e,
                    FakeJob::new(Act::Sleep(Duration::from_millis(2))),
                    tally.notify(),
                )
            })
            .collect();
        e.flush(Some(Duration::from_secs(30))).unwrap();
        for op in &ops {
            assert_eq!(tally.of(*op).len(), 1);
        }
        let peak = seen.peak.load(Ordering::SeqCst);
        assert!(
            (1..=max).contains(&peak),
            "{peak} drivers at once with MAX_CONNECTIONS {max}"
        );
        assert!(e.open_connections() <= max);
        e.shutdown();
        assert_eq!(
            seen.alive.load(Ordering::SeqCst),
            0,
            "every driver is dropped at shutdown"
        );
    }
}

#[test]
fn a_worker_prefers_ops_for_the_state_it_has() {
    let (e, seen) = engine(options(1));
    let tally = Tally::default();
    let (tx, rx) = mpsc::channel();
    let gate = Act::Gate(Arc::new(Mutex::new(Some(rx))));
    let first = submit(&e, FakeJob::keyed(gate, "A"), tally.notify());
    assert!(until(|| !seen.started.lock().is_empty()));
    for key in ["B", "A", "B", "A"] {
        submit(&e, FakeJob::keyed(Act::Finish, key), tally.notify());
    }
    tx.send(()).unwrap();
    e.flush(Some(Duration::from_secs(30))).unwrap();
    let order: Vec<String> = seen
        .started
        .lock()
        .iter()
        .map(|(k, _)| k.clone().unwrap())
        .collect();
    assert_eq!(
        order,
        ["A", "A", "A", "B", "B"],
        "op {first} left mailbox A selected"
    );
}

#[test]
fn the_throttle_spaces_op_starts() {
    let mut o = options(2);
    o.throttle_messages = 2;
    o.throttle_interval = Duration::from_millis(200);
    let (e, seen) = engine(o);
    let tally = Tally::default();
    let t0 = Instant::now();
    for _ in 0..5 {
        submit(&e, FakeJob::new(Act::Finish), tally.notify());
    }
    e.flush(Some(Duration::from_secs(30))).unwrap();
    let starts: Vec<Duration> = seen.started.lock().iter().map(|(_, t)| *t - t0).collect();
    assert_eq!(starts.len(), 5);
    // At most 2 starts in any 200 ms: the 3rd no sooner than 200 ms after
    // the first could start, the 5th no sooner than 400 ms.
    assert!(starts[2] >= Duration::from_millis(200), "{starts:?}");
    assert!(starts[4] >= Duration::from_millis(400), "{starts:?}");
}

#[test]
fn flush_waits_for_flushable_ops_only_and_wait_for_one() {
    let (e, _) = engine(options(2));
    let tally = Tally::default();
    let idle = submit(&e, FakeJob::new(Act::Changes(0)), tally.notify());
    let ops: Vec<OpId> = (0..20)
        .map(|_| {
            submit(
                &e,
                FakeJob::new(Act::Sleep(Duration::from_millis(1))),
                tally.notify(),
            )
        })
        .collect();
    e.wait(ops[3], Some(Duration::from_secs(30))).unwrap();
    assert_eq!(tally.of(ops[3]).len(), 1, "wait returns after the delivery");
    e.flush(Some(Duration::from_secs(30))).unwrap();
    assert!(ops.iter().all(|op| tally.of(*op).len() == 1));
    assert!(
        tally.of(idle).is_empty(),
        "flush does not wait for an op that runs until cancelled"
    );
    assert_eq!(
        e.wait(idle, Some(Duration::ZERO)).unwrap_err().status,
        Status::Timeout
    );
    e.cancel(idle).unwrap();
    e.wait(idle, Some(Duration::from_secs(30))).unwrap();
    assert!(tally.of(idle)[0].cancelled);
}

#[test]
fn pending_changes_are_coalesced_to_the_latest() {
    let (e, _) = engine(options(1));
    let op = submit(&e, FakeJob::new(Act::Changes(100)), Notify::Queue);
    // Nobody reads while the changes come: one notification stays, the last.
    assert!(until(|| e
        .shared
        .completions
        .items
        .lock()
        .front()
        .is_some_and(|c| c.reply_code == 100)));
    e.cancel(op).unwrap();
    let first = e.next_completion(Some(Duration::from_secs(30))).unwrap();
    let last = e.next_completion(Some(Duration::from_secs(30))).unwrap();
    assert_eq!((first.op, first.reply_code, first.cancelled), (op, 100, false));
    assert_eq!((last.op, last.cancelled), (op, true));
    assert!(e.next_completion(Some(Duration::ZERO)).is_none());
}

#[test]
fn a_driver_panic_completes_its_op_and_the_worker_goes_on() {
    let (e, _) = engine(options(1));
    let tally = Tally::default();
    let bad = submit(&e, FakeJob::new(Act::Panic), tally.notify());
    let good = submit(&e, FakeJob::new(Act::Finish), tally.notify());
    assert_eq!(status_of(&e, bad, &tally).status, Status::Panic);
    assert_eq!(status_of(&e, good, &tally).status, Status::Ok);
}

#[test]
fn the_queue_limit_and_shutdown_refuse_submits() {
    let mut o = options(1);
    o.queue_limit = 2;
    let (mut e, seen) = engine(o);
    let tally = Tally::default();
    let (tx, rx) = mpsc::channel();
    let gate = Act::Gate(Arc::new(Mutex::new(Some(rx))));
    submit(&e, FakeJob::new(gate), tally.notify());
    assert!(until(|| !seen.started.lock().is_empty()));
    submit(&e, FakeJob::new(Act::Finish), tally.notify());
    submit(&e, FakeJob::new(Act::Finish), tally.notify());
    let s = Submit {
        notify: tally.notify(),
        on_change: None,
        token: 0,
    };
    assert_eq!(
        e.submit(FakeJob::new(Act::Finish), s).unwrap_err().status,
        Status::Limit
    );
    tx.send(()).unwrap();
    e.shutdown();
    assert_eq!(tally.0.lock().values().map(Vec::len).sum::<usize>(), 3);
}

#[test]
fn every_waiter_and_flusher_wakes() {
    let (e, _) = engine(options(2));
    let quick = || FakeJob::new(Act::Sleep(Duration::from_micros(50)));
    let ops: Vec<OpId> = (0..400).map(|_| submit(&e, quick(), Notify::Queue)).collect();
    std::thread::scope(|s| {
        for k in 0..4 {
            let (e, ops) = (&e, &ops);
            // Flushers with different targets, and waiters on single ops.
            s.spawn(move || {
                for _ in 0..(k * 20) {
                    submit(e, quick(), Notify::Queue);
                }
                assert!(e.flush(Some(Duration::from_secs(60))).is_ok());
            });
            s.spawn(move || {
                for op in ops.iter().skip(k).step_by(37) {
                    assert!(e.wait(*op, Some(Duration::from_secs(60))).is_ok(), "op {op}");
                }
            });
        }
    });
    assert!(e.flush(Some(Duration::ZERO)).is_ok());
    let st = e.shared.state.lock();
    assert!(
        st.waited.is_empty() && st.flush_targets.is_empty(),
        "waiters unregister"
    );
}

#[test]
fn idle_workers_close_and_leave_but_the_main_one_stays() {
    let mut o = options(3);
    o.idle_timeout = Duration::from_millis(20);
    let (e, seen) = engine(o);
    let tally = Tally::default();
    for _ in 0..12 {
        submit(
            &e,
            FakeJob::new(Act::Sleep(Duration::from_millis(5))),
            tally.notify(),
        );
    }
    e.flush(Some(Duration::from_secs(30))).unwrap();
    let extra = seen.peak.load(Ordering::SeqCst) - 1;
    // Every extra worker closes its connection and leaves; the main one stays.
    assert!(until(|| seen.alive.load(Ordering::SeqCst) == 1), "{seen:?}");
    assert!(seen.idle_closed.load(Ordering::SeqCst) >= extra);
    assert_eq!(e.shared.state.lock().pool.workers_for_tests(), 1);
    // And the pool grows again when work comes.
    let op = submit(&e, FakeJob::new(Act::Finish), tally.notify());
    e.wait(op, Some(Duration::from_secs(30))).unwrap();
    assert_eq!(tally.of(op).len(), 1);
}
