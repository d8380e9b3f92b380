//! The per-client engine: the op table and queue, the connection pool and
//! its throttle, cancellation, waiting, completion delivery, the wakeup
//! handle and thread naming. It never names a protocol: a protocol plugs in
//! as a [`Driver`] with its own [`Job`] type, and the engine is generic over
//! it ([`Engine<J>`]); [`ClientApi`] is what is the same for every protocol.
//! Its state is private to this module and its submodules.
//!
//! Invariants:
//! - An op is in `State::ops` from submit until its final completion was
//!   *delivered* (its callback returned, or it was put on the completion queue).
//! - Exactly one party moves an op to `OpState::Delivering`: the worker
//!   that finished it, `cancel`, or `shutdown`. Whoever does delivers it; later
//!   attempts are no-ops. This is what makes every op complete exactly once.
//! - No user callback ever runs while an engine lock is held.
//! - An op a worker took has a deadline (OP_TIMEOUT_MS, IDLE exempt): the
//!   client's watchdog thread completes it TIMEOUT when it passes, and shuts
//!   its connection down as a cancel would, so no op outlives its deadline
//!   whatever the server does.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::log::{self, LogFn};
use crate::options::Options;
use crate::result::{Completion, OpId, Outcome, Success};
use crate::status::{Error, Result, Status};

mod pool;
#[cfg(test)]
mod tests;
mod wakeup;

pub use pool::{Driver, DriverFactory, Ticket, WorkerCtx};
use pool::{PoolState, WorkerSlot};
use wakeup::Wakeup;

/// What the engine needs to know of a protocol's op, whatever the protocol.
pub trait Job: Send + 'static {
    /// What the op is called in messages ("send", "IMAP FETCH").
    fn name(&self) -> &'static str;

    /// Does `herald_client_flush` wait for this op? (Not for ops that run
    /// until cancelled.)
    fn flushable(&self) -> bool {
        true
    }

    /// Is this op free of OP_TIMEOUT_MS? (Ops that run until cancelled: IDLE.)
    fn deadline_exempt(&self) -> bool {
        !self.flushable()
    }

    /// What a TIMEOUT completion adds about an op stopped at its deadline
    /// at a point the engine cannot see (whether its content went out).
    fn timeout_note(&self) -> &'static str {
        ""
    }

    /// The connection state this op wants (an IMAP mailbox), for affinity.
    fn affinity_key(&self) -> Option<&str> {
        None
    }
}

/// A completion callback. Called on herald's delivery thread.
pub type Callback = Arc<dyn Fn(&Completion) + Send + Sync>;
/// Progress: (op, user token, bytes done, bytes total). Called on worker threads.
pub type ProgressFn = Arc<dyn Fn(OpId, usize, u64, u64) + Send + Sync>;

/// Where an op's completions go.
#[derive(Clone)]
pub enum Notify {
    /// To this callback, on the client's delivery thread.
    Callback(Callback),
    /// To the client's completion queue (`herald_client_next`).
    Queue,
}

/// How `herald_cancel` stops an op a worker is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelMode {
    /// The op owns the connection's current network wait: shut the socket down.
    Abort,
    /// The op is held but not being waited on (a pipelined op behind another):
    /// complete it now; the worker sees it is gone before it sends more of it.
    Defer,
    /// The worker stops at its next check and completes the op itself,
    /// cancelled, with what it did so far (bulk append's UIDs).
    Cooperative,
    /// The op waits for the server's answer to a command that commits
    /// (POP3's QUIT): shut the socket down, and the worker completes the op
    /// itself, cancelled, saying what may have happened, or with the
    /// server's answer had it already come.
    Interrupt,
}

impl CancelMode {
    /// Does the worker complete the op itself after a cancel?
    fn worker_completes(self) -> bool {
        matches!(self, CancelMode::Cooperative | CancelMode::Interrupt)
    }
}

enum OpState {
    Queued,
    Running {
        slot: Arc<WorkerSlot>,
        mode: CancelMode,
        cancel_requested: bool,
    },
    Delivering,
}

struct OpEntry<J> {
    token: usize,
    notify: Notify,
    on_change: Option<Notify>,
    /// The op's input while it waits in the queue; a worker takes it out.
    work: Option<J>,
    state: OpState,
    /// Long-lived ops (IDLE) don't hold `flush` up.
    flushable: bool,
    /// When the op times out (set when a worker takes it), as in `State::deadlines`.
    deadline: Option<Instant>,
    /// Its deadline passed while it ran in `CancelMode::Cooperative`: the
    /// worker's own completion becomes TIMEOUT.
    timed_out: bool,
    /// Appended to the detail of a TIMEOUT the watchdog completes.
    timeout_note: &'static str,
}

/// Everything guarded by the client's main lock.
struct State<J> {
    next_id: OpId,
    ops: BTreeMap<OpId, OpEntry<J>>,
    /// Ids of queued ops in order; entries no longer `Queued` are skipped.
    queue: VecDeque<OpId>,
    /// Number of ops in `Queued` state.
    queued: usize,
    shutdown: bool,
    pool: PoolState,
    /// Ops someone waits for in `wait`, with how many waiters.
    waited: BTreeMap<OpId, usize>,
    /// The targets of `flush` calls under way (the last op each waits for).
    flush_targets: BTreeMap<OpId, usize>,
    /// The deadlines of running ops, earliest first.
    deadlines: BTreeSet<(Instant, OpId)>,
    /// The watchdog thread that enforces them, started with the first one.
    watchdog: Option<pool::TaggedThread>,
}

impl<J> State<J> {
    /// Is a flushable op up to `last` still undelivered?
    fn flush_pending(&self, last: OpId) -> bool {
        self.ops
            .iter()
            .take_while(|(id, _)| **id <= last)
            .any(|(_, e)| e.flushable)
    }
}

/// Counts one more waiter for `key`.
fn add_waiter(map: &mut BTreeMap<OpId, usize>, key: OpId) {
    *map.entry(key).or_default() += 1;
}

/// Counts one waiter for `key` less.
fn remove_waiter(map: &mut BTreeMap<OpId, usize>, key: OpId) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

struct DispatchState {
    items: VecDeque<Delivery>,
    thread: Option<JoinHandle<()>>,
    thread_tag: Option<u64>,
    stop: bool,
    /// The delivery thread waits without a deadline: a new item must wake it.
    /// While it is busy or gathering a batch, items are queued silently.
    idle: bool,
}

/// When completions come faster than this apart, the delivery thread is
/// busy: after a batch it gathers the next one for `DELIVERY_GATHER` instead
/// of being woken for each completion. At a bulk sender's thousands of
/// completions per second that is one wake-up per batch instead of one per
/// op; a callback waits at most `DELIVERY_GATHER` longer than it would.
const DELIVERY_BUSY_GAP: Duration = Duration::from_millis(2);
const DELIVERY_GATHER: Duration = Duration::from_millis(1);

struct CompletionQueue {
    items: Mutex<VecDeque<Completion>>,
    cond: Condvar,
    wakeup: Wakeup,
}

struct Shared<J: Job> {
    options: Arc<Options>,
    state: Mutex<State<J>>,
    /// Workers wait here for ops.
    work_cond: Condvar,
    /// `wait` and `flush` wait here for deliveries.
    done_cond: Condvar,
    /// The watchdog waits here for the next deadline.
    watch_cond: Condvar,
    dispatch: Mutex<DispatchState>,
    dispatch_cond: Condvar,
    completions: CompletionQueue,
    progress: RwLock<Option<ProgressFn>>,
    log_fn: RwLock<Option<LogFn>>,
    log_level: AtomicU32,
    /// Set at the very end of shutdown: no user callback may run after it.
    freed: AtomicBool,
    factory: DriverFactory<J>,
}

/// A completion waiting for its callback on the delivery thread.
type Delivery = (Completion, Callback, bool);

thread_local! {
    /// The client whose completion callback this thread is running, if any.
    static IN_CALLBACK: Cell<usize> = const { Cell::new(0) };
    /// On a delivery thread: the rest of the batch it is running. A callback
    /// that frees its own client delivers these (in `shutdown`) before the
    /// client is gone.
    static BATCH: RefCell<VecDeque<Delivery>> = const { RefCell::new(VecDeque::new()) };
}

impl<J: Job> Shared<J> {
    fn addr(&self) -> usize {
        self as *const Shared<J> as usize
    }

    fn in_own_callback(&self) -> bool {
        IN_CALLBACK.with(|c| c.get() == self.addr())
    }

    /// Logs a line if a log callback is set and `level` is enabled.
    fn log(&self, level: u32, line: impl FnOnce() -> String) {
        if level > self.log_level.load(Ordering::Relaxed) || self.freed.load(Ordering::Acquire) {
            return;
        }
        let f = self.log_fn.read().clone();
        if let Some(f) = f {
            let text = line();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(level, &text)));
        }
    }

    fn log_enabled(&self, level: u32) -> bool {
        level <= self.log_level.load(Ordering::Relaxed)
    }

    fn progress(&self, op: OpId, done: u64, total: u64) {
        if self.freed.load(Ordering::Acquire) {
            return;
        }
        let f = self.progress.read().clone();
        if let Some(f) = f {
            let token = match self.state.lock().ops.get(&op) {
                Some(e) if !matches!(e.state, OpState::Delivering) => e.token,
                _ => return,
            };
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(op, token, done, total)));
        }
    }

    /// Hands a completion to its route. `fin`: the op's final completion.
    fn deliver(self: &Arc<Self>, c: Completion, route: Notify, fin: bool) {
        match route {
            Notify::Queue => {
                let op = c.op;
                {
                    let mut q = self.completions.items.lock();
                    if q.is_empty() {
                        self.completions.wakeup.set();
                    }
                    q.push_back(c);
                    self.completions.cond.notify_one();
                }
                if fin {
                    self.mark_delivered(op);
                }
            }
            Notify::Callback(cb) => {
                let mut d = self.dispatch.lock();
                d.items.push_back((c, cb, fin));
                if d.thread.is_none() && !d.stop {
                    let shared = self.clone();
                    let tag = pool::new_thread_tag();
                    match std::thread::Builder::new()
                        .name("herald-deliver".into())
                        .spawn(move || {
                            pool::set_thread_tag(tag);
                            shared.dispatch_main()
                        }) {
                        Ok(h) => {
                            d.thread_tag = Some(tag);
                            d.thread = Some(h);
                        }
                        Err(_) => {
                            // No thread to deliver on: deliver here rather than lose it.
                            let items: Vec<_> = d.items.drain(..).collect();
                            drop(d);
                            for item in items {
                                self.run_callback(item);
                            }
                            return;
                        }
                    }
                }
                if d.idle {
                    d.idle = false;
                    self.dispatch_cond.notify_one();
                }
            }
        }
    }

    /// The delivery thread: runs the queued callbacks in order, a batch at a
    /// time (one lock round trip each way per batch, not per op).
    fn dispatch_main(self: Arc<Self>) {
        let mut batch = VecDeque::new();
        let mut delivered = Vec::new();
        let mut last_batch_end: Option<Instant> = None;
        let mut gather = false;
        loop {
            {
                let mut d = self.dispatch.lock();
                while d.items.is_empty() {
                    if d.stop {
                        return;
                    }
                    if gather {
                        // Busy: let the next batch gather, unwoken.
                        self.dispatch_cond.wait_for(&mut d, DELIVERY_GATHER);
                        gather = !d.items.is_empty();
                    } else {
                        d.idle = true;
                        self.dispatch_cond.wait(&mut d);
                        d.idle = false;
                        gather = last_batch_end.is_some_and(|t| t.elapsed() < DELIVERY_BUSY_GAP);
                    }
                }
                std::mem::swap(&mut batch, &mut d.items);
            }
            BATCH.with(|b| std::mem::swap(&mut *b.borrow_mut(), &mut batch));
            while let Some((c, cb, fin)) = BATCH.with(|b| b.borrow_mut().pop_front()) {
                self.call(&c, &cb);
                if fin {
                    delivered.push(c.op);
                }
            }
            BATCH.with(|b| std::mem::swap(&mut *b.borrow_mut(), &mut batch));
            self.mark_all_delivered(&delivered);
            delivered.clear();
            last_batch_end = Some(Instant::now());
        }
    }

    /// Runs a user callback (unless the client is already freed), never
    /// letting a panic out.
    fn call(&self, c: &Completion, cb: &Callback) {
        if !self.freed.load(Ordering::Acquire) {
            let prev = IN_CALLBACK.with(|x| x.replace(self.addr()));
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(c)));
            IN_CALLBACK.with(|x| x.set(prev));
        }
    }

    fn run_callback(&self, (c, cb, fin): (Completion, Callback, bool)) {
        self.call(&c, &cb);
        if fin {
            self.mark_delivered(c.op);
        }
    }

    /// The op's completion was delivered: it leaves the table, and whoever
    /// waits for it (`wait`, or a `flush` it was holding up) is woken. Only
    /// those: waking every waiter on every completion cost a bulk sender
    /// thousands of useless wake-ups.
    fn mark_delivered(&self, op: OpId) {
        self.mark_all_delivered(&[op]);
    }

    /// `mark_delivered` for a batch: one lock, at most one wake-up.
    fn mark_all_delivered(&self, ops: &[OpId]) {
        if ops.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        let mut wake = false;
        for &op in ops {
            if let Some(at) = st.ops.remove(&op).and_then(|e| e.deadline) {
                st.deadlines.remove(&(at, op));
            }
            wake |= st.waited.contains_key(&op);
        }
        wake |= st
            .flush_targets
            .first_key_value()
            .is_some_and(|(&target, _)| !st.flush_pending(target));
        drop(st);
        if wake {
            self.done_cond.notify_all();
        }
    }

    /// Completes `op` with `outcome` if nobody else has. Called by workers.
    /// If a cooperative cancel was requested, the outcome becomes a cancel
    /// that keeps the op's partial result.
    fn complete(self: &Arc<Self>, op: OpId, outcome: Outcome) {
        let mut st = self.state.lock();
        let Some(e) = st.ops.get_mut(&op) else { return };
        let (cancel_requested, interrupted) = match e.state {
            OpState::Delivering => return,
            OpState::Running {
                cancel_requested,
                mode,
                ..
            } => (cancel_requested, mode == CancelMode::Interrupt),
            OpState::Queued => (false, false),
        };
        e.state = OpState::Delivering;
        let (token, route, timed_out) = (e.token, e.notify.clone(), e.timed_out);
        drop(st);
        let c = if timed_out {
            // What the worker did is kept: a success stays one (it was done),
            // a failure says it came from the deadline.
            Completion::from_outcome(
                op,
                token,
                outcome.map_err(|mut e| {
                    let t = self.timeout_error(true);
                    let detail = format!("{}: {}", t.detail, e.detail);
                    let t = Error::new(t.status, detail);
                    match e.take_partial() {
                        Some(p) => t.with_partial(p),
                        None => t,
                    }
                }),
            )
        } else if cancel_requested && interrupted {
            // The server's answer came first: it stands. Else say what the
            // interrupted wait leaves open.
            match outcome {
                Ok(s) => Completion::from_outcome(op, token, Ok(s)),
                Err(mut e) if e.status == Status::Cancelled => {
                    Completion::cancelled(op, token, "cancelled", e.take_partial())
                }
                Err(mut e) => {
                    Completion::cancelled(op, token, &format!("cancelled; {}", e.detail), e.take_partial())
                }
            }
        } else if cancel_requested {
            let partial = match outcome {
                Ok(s) => s.result,
                Err(mut e) => e.take_partial(),
            };
            Completion::cancelled(op, token, "cancelled", partial)
        } else {
            Completion::from_outcome(op, token, outcome)
        };
        self.deliver(c, route, true);
    }

    /// A non-final notification (IDLE's on_change). Coalesced: while an
    /// earlier notification of the op waits to be delivered, it is replaced
    /// by this one, so at most one is pending per op and it is the latest.
    /// The state lock is held throughout, so no final completion of the op
    /// can slip in between (state, then queue or dispatch: the order
    /// everywhere).
    fn notify_change(self: &Arc<Self>, op: OpId, s: Success) {
        let st = self.state.lock();
        let Some(e) = st.ops.get(&op) else { return };
        if matches!(e.state, OpState::Delivering) {
            return;
        }
        let c = Completion::from_outcome(op, e.token, Ok(s));
        let route = e.on_change.clone().unwrap_or_else(|| e.notify.clone());
        match &route {
            // Not final, so every queued completion of this op is a notification.
            Notify::Queue => {
                if let Some(pending) = self
                    .completions
                    .items
                    .lock()
                    .iter_mut()
                    .rev()
                    .find(|x| x.op == op)
                {
                    *pending = c;
                    return;
                }
                self.deliver(c, route, false);
            }
            Notify::Callback(cb) => {
                let mut d = self.dispatch.lock();
                if let Some(pending) = d.items.iter_mut().rev().find(|x| !x.2 && x.0.op == op) {
                    pending.0 = c;
                    return;
                }
                if d.thread.is_some() && !d.stop {
                    d.items.push_back((c, cb.clone(), false));
                    self.dispatch_cond.notify_one();
                    return;
                }
                // No delivery thread yet: `deliver` starts one (or runs the
                // callback here), never under the lock.
                drop(d);
                drop(st);
                self.deliver(c, route, false);
            }
        }
    }

    /// Is the op still the worker's to complete (not cancelled, not completed)?
    fn is_live(&self, op: OpId) -> bool {
        matches!(
            self.state.lock().ops.get(&op).map(|e| &e.state),
            Some(OpState::Running {
                cancel_requested: false,
                ..
            })
        )
    }

    /// The error of an op past its deadline.
    fn timeout_error(&self, aborted: bool) -> Error {
        let ms = self.options.op_timeout.map_or(0, |d| d.as_millis());
        let how = if aborted {
            "; its connection was closed"
        } else {
            ""
        };
        Error::new(
            Status::Timeout,
            format!("the op did not complete within OP_TIMEOUT_MS ({ms} ms){how}"),
        )
    }

    /// Starts the deadline of `op`, which a worker just took (lock held, so
    /// nothing is logged here). Starts the watchdog with the first deadline;
    /// should no thread be available, the next deadline tries again.
    fn arm_deadline(self: &Arc<Self>, st: &mut State<J>, op: OpId, at: Instant, note: &'static str) {
        let Some(e) = st.ops.get_mut(&op) else { return };
        e.timeout_note = note;
        if let Some(old) = e.deadline.replace(at) {
            st.deadlines.remove(&(old, op));
        }
        let first = st.deadlines.first().is_none_or(|&(t, _)| at < t);
        st.deadlines.insert((at, op));
        if st.watchdog.is_none() {
            let shared = self.clone();
            let tag = pool::new_thread_tag();
            let spawned = std::thread::Builder::new()
                .name("herald-watchdog".into())
                .spawn(move || {
                    pool::set_thread_tag(tag);
                    shared.watchdog_main()
                });
            if let Ok(h) = spawned {
                st.watchdog = Some((tag, h));
            }
        } else if first {
            self.watch_cond.notify_one();
        }
    }

    /// The watchdog: completes each op whose deadline passed with TIMEOUT and
    /// shuts its connection down (never blocking on it), like `cancel`. An op
    /// in `Cooperative` mode (it completes itself, keeping what it did) is
    /// told to stop and its connection shut; if its worker has not completed
    /// it after `COOPERATIVE_GRACE`, the watchdog does.
    fn watchdog_main(self: Arc<Self>) {
        let mut guard = self.state.lock();
        loop {
            if guard.shutdown {
                return;
            }
            let now = Instant::now();
            let mut aborts = Vec::new();
            let mut fired = Vec::new();
            let st = &mut *guard;
            while let Some(&(at, op)) = st.deadlines.first() {
                if at > now {
                    break;
                }
                st.deadlines.pop_first();
                let Some(e) = st.ops.get_mut(&op) else { continue };
                if e.deadline != Some(at) {
                    continue;
                }
                match &mut e.state {
                    OpState::Running {
                        mode,
                        cancel_requested,
                        slot,
                    } if mode.worker_completes() && !e.timed_out => {
                        e.timed_out = true;
                        *cancel_requested = true;
                        aborts.push(slot.clone());
                        let later = now + COOPERATIVE_GRACE;
                        e.deadline = Some(later);
                        st.deadlines.insert((later, op));
                    }
                    OpState::Running { slot, mode, .. } => {
                        let abort = *mode != CancelMode::Defer;
                        if abort {
                            aborts.push(slot.clone());
                        }
                        e.state = OpState::Delivering;
                        let mut err = self.timeout_error(abort);
                        err.detail.push_str(e.timeout_note);
                        let c = Completion::from_outcome(op, e.token, Err(err));
                        fired.push((c, e.notify.clone()));
                    }
                    OpState::Queued | OpState::Delivering => {}
                }
            }
            if aborts.is_empty() && fired.is_empty() {
                match st.deadlines.first() {
                    Some(&(at, _)) => {
                        self.watch_cond.wait_until(&mut guard, at);
                    }
                    None => self.watch_cond.wait(&mut guard),
                }
                continue;
            }
            parking_lot::MutexGuard::unlocked(&mut guard, || {
                for s in &aborts {
                    s.abort();
                }
                for (c, route) in fired {
                    self.log(log::DEBUG, || format!("op {}: {}", c.op, c.detail));
                    self.deliver(c, route, true);
                }
            });
        }
    }

    fn set_cancel_mode(&self, op: OpId, new_mode: CancelMode) {
        if let Some(OpState::Running { mode, .. }) = self.state.lock().ops.get_mut(&op).map(|e| &mut e.state)
        {
            *mode = new_mode;
        }
    }

    fn cancel_requested(&self, op: OpId) -> bool {
        !self.is_live(op)
    }

    fn is_shutting_down(&self) -> bool {
        self.state.lock().shutdown
    }
}

/// The engine of one client, running the jobs of one protocol's driver.
pub struct Engine<J: Job> {
    shared: Arc<Shared<J>>,
    closed: bool,
}

/// How one submitted op reports: everything of a submit but the job.
pub struct Submit {
    /// Where its final completion goes.
    pub notify: Notify,
    /// Where its non-final notifications go (`notify` when `None`).
    pub on_change: Option<Notify>,
    /// The caller's token, handed back with every completion.
    pub token: usize,
}

/// What every client can do, whatever its protocol: object-safe, so the
/// composition root can hold any engine behind one type.
pub trait ClientApi: Send + Sync {
    /// The options the client was made with.
    fn options(&self) -> &Options;
    /// Cancels an op (see [`Engine::cancel`]).
    fn cancel(&self, op: OpId) -> Result<()>;
    /// Waits until `op`'s completion was delivered.
    fn wait(&self, op: OpId, timeout: Option<Duration>) -> Result<()>;
    /// Waits until every flushable op submitted so far has completed.
    fn flush(&self, timeout: Option<Duration>) -> Result<()>;
    /// The next queued completion, waiting up to `timeout` (None: forever).
    fn next_completion(&self, timeout: Option<Duration>) -> Option<Completion>;
    /// The handle that is readable while completions are queued.
    fn wakeup_handle(&self) -> i64;
    /// Sets (or clears) the progress callback.
    fn set_progress(&self, f: Option<ProgressFn>);
    /// Sets (or clears) the log callback and its level.
    fn set_log(&self, max_level: u32, f: Option<LogFn>);
    /// How many connections the client has open right now.
    fn open_connections(&self) -> usize;
    /// Stops everything; every completion is delivered before it returns.
    fn shutdown(&mut self);
}

impl<J: Job> Engine<J> {
    /// Makes a client's engine whose connections run the drivers `factory`
    /// makes. Validates the options; does no network I/O.
    pub fn new(options: Options, factory: DriverFactory<J>) -> Result<Engine<J>> {
        options.validate()?;
        let wakeup = Wakeup::new().map_err(|e| Error::new(Status::Io, format!("wakeup handle: {e}")))?;
        let throttle = options.throttle();
        let shared = Arc::new(Shared {
            options: Arc::new(options),
            state: Mutex::new(State {
                next_id: 1,
                ops: BTreeMap::new(),
                queue: VecDeque::new(),
                queued: 0,
                shutdown: false,
                pool: PoolState::new(throttle),
                waited: BTreeMap::new(),
                flush_targets: BTreeMap::new(),
                deadlines: BTreeSet::new(),
                watchdog: None,
            }),
            work_cond: Condvar::new(),
            done_cond: Condvar::new(),
            watch_cond: Condvar::new(),
            dispatch: Mutex::new(DispatchState {
                items: VecDeque::new(),
                thread: None,
                thread_tag: None,
                stop: false,
                idle: false,
            }),
            dispatch_cond: Condvar::new(),
            completions: CompletionQueue {
                items: Mutex::new(VecDeque::new()),
                cond: Condvar::new(),
                wakeup,
            },
            progress: RwLock::new(None),
            log_fn: RwLock::new(None),
            log_level: AtomicU32::new(0),
            freed: AtomicBool::new(false),
            factory,
        });
        Ok(Engine {
            shared,
            closed: false,
        })
    }

    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// Queues an op. Never blocks on the network. On `Ok`, exactly one final
    /// completion will come; on `Err`, none.
    pub fn submit(&self, job: J, s: Submit) -> Result<OpId> {
        let sh = &self.shared;
        let mut st = sh.state.lock();
        if st.shutdown {
            return Err(Error::new(Status::Shutdown, "the client is being freed"));
        }
        if st.queued >= sh.options.queue_limit {
            return Err(Error::new(
                Status::Limit,
                format!("queue full: {} ops queued (QUEUE_LIMIT)", st.queued),
            ));
        }
        let id = st.next_id;
        st.next_id += 1;
        let flushable = job.flushable();
        st.ops.insert(
            id,
            OpEntry {
                token: s.token,
                notify: s.notify,
                on_change: s.on_change,
                work: Some(job),
                state: OpState::Queued,
                flushable,
                deadline: None,
                timed_out: false,
                timeout_note: "",
            },
        );
        st.queue.push_back(id);
        st.queued += 1;
        let spawn_error = pool::on_submit(sh, &mut st);
        drop(st);
        sh.work_cond.notify_one();
        if let Some(e) = spawn_error {
            sh.log(log::ERROR, || e);
        }
        sh.log(log::DEBUG, || format!("op {id} queued"));
        Ok(id)
    }

    /// Cancels an op. `Ok` when it completes cancelled or had already
    /// completed; `NotFound` when no such op was ever submitted here.
    pub fn cancel(&self, op: OpId) -> Result<()> {
        let sh = &self.shared;
        let mut st = sh.state.lock();
        if op == 0 || op >= st.next_id {
            return Err(Error::new(Status::NotFound, format!("no op {op} on this client")));
        }
        let queued = st.queued;
        let Some(e) = st.ops.get_mut(&op) else {
            return Ok(());
        };
        let abort = match &mut e.state {
            OpState::Delivering => return Ok(()),
            OpState::Queued => {
                e.work = None;
                None
            }
            OpState::Running {
                mode,
                cancel_requested,
                slot,
            } if mode.worker_completes() => {
                *cancel_requested = true;
                let interrupt = (*mode == CancelMode::Interrupt).then(|| slot.clone());
                drop(st);
                if let Some(slot) = interrupt {
                    slot.abort();
                }
                sh.log(log::DEBUG, || format!("op {op}: cancel requested"));
                return Ok(());
            }
            OpState::Running { slot, mode, .. } => (*mode == CancelMode::Abort).then(|| slot.clone()),
        };
        let was_queued = matches!(e.state, OpState::Queued);
        e.state = OpState::Delivering;
        let (token, route) = (e.token, e.notify.clone());
        if was_queued {
            st.queued = queued - 1;
        }
        drop(st);
        if let Some(slot) = abort {
            slot.abort();
        }
        sh.log(log::DEBUG, || format!("op {op} cancelled"));
        sh.deliver(Completion::cancelled(op, token, "cancelled", None), route, true);
        Ok(())
    }

    fn recursion_guard(&self, st: &State<J>, ops: &mut dyn Iterator<Item = OpId>) -> Result<()> {
        if self.shared.in_own_callback() {
            for op in ops {
                if let Some(e) = st.ops.get(&op) {
                    if matches!(e.notify, Notify::Callback(_)) {
                        return Err(Error::invalid(
                            "waiting inside a completion callback for an op of the same client would deadlock: \
                             its completion is delivered on this thread after the callback returns",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until `op`'s completion was delivered.
    pub fn wait(&self, op: OpId, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.state.lock();
        if op == 0 || op >= st.next_id {
            return Err(Error::new(Status::NotFound, format!("no op {op} on this client")));
        }
        if timeout != Some(Duration::ZERO) {
            self.recursion_guard(&st, &mut std::iter::once(op))?;
        }
        add_waiter(&mut st.waited, op);
        let mut done = true;
        while st.ops.contains_key(&op) {
            if !wait_until(&self.shared.done_cond, &mut st, deadline) {
                done = false;
                break;
            }
        }
        remove_waiter(&mut st.waited, op);
        if done {
            Ok(())
        } else {
            Err(Error::new(
                Status::Timeout,
                format!("op {op} did not complete in time"),
            ))
        }
    }

    /// Waits until every (flushable) op submitted so far has completed.
    pub fn flush(&self, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.state.lock();
        let last = st.next_id - 1;
        if timeout != Some(Duration::ZERO) && st.flush_pending(last) {
            let ids: Vec<OpId> = st.ops.keys().copied().filter(|id| *id <= last).collect();
            self.recursion_guard(&st, &mut ids.into_iter())?;
        }
        add_waiter(&mut st.flush_targets, last);
        let mut done = true;
        while st.flush_pending(last) {
            if !wait_until(&self.shared.done_cond, &mut st, deadline) {
                done = false;
                break;
            }
        }
        remove_waiter(&mut st.flush_targets, last);
        if done {
            Ok(())
        } else {
            let n = st.ops.range(..=last).filter(|(_, e)| e.flushable).count();
            Err(Error::new(Status::Timeout, format!("{n} ops still pending")))
        }
    }

    /// The next queued completion, waiting up to `timeout` (None: forever).
    pub fn next_completion(&self, timeout: Option<Duration>) -> Option<Completion> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let cq = &self.shared.completions;
        let mut q = cq.items.lock();
        loop {
            if let Some(c) = q.pop_front() {
                if q.is_empty() {
                    cq.wakeup.clear();
                }
                return Some(c);
            }
            if !wait_until(&cq.cond, &mut q, deadline) {
                return None;
            }
        }
    }

    pub fn wakeup_handle(&self) -> i64 {
        self.shared.completions.wakeup.handle()
    }

    pub fn set_progress(&self, f: Option<ProgressFn>) {
        *self.shared.progress.write() = f;
    }

    pub fn set_log(&self, max_level: u32, f: Option<LogFn>) {
        let level = if f.is_some() { max_level } else { 0 };
        *self.shared.log_fn.write() = f;
        self.shared.log_level.store(level, Ordering::Relaxed);
    }

    /// How many connections this client has open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.state.lock().pool.open_connections()
    }

    /// Stops everything: queued ops complete cancelled, running ones are
    /// aborted, and every completion is delivered before this returns.
    /// Safe to call from inside this client's own callbacks.
    pub fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let sh = self.shared.clone();
        // Not std::thread::current(): on a thread C made, it allocates a handle never freed.
        let me = pool::thread_tag();
        // 1. No new ops; take every op not yet delivering.
        let (slots, workers) = sh.take_all_for_shutdown();
        sh.work_cond.notify_all();
        sh.watch_cond.notify_all();
        // 2. Abort every connection so no blocking I/O outlives this call,
        //    then join the workers (all but this thread, if it is one).
        for s in &slots {
            s.abort();
        }
        for (tag, h) in workers {
            if tag != me {
                let _ = h.join();
            }
        }
        // 3. Ops still held by this very thread (free called from a progress or
        //    log callback on a worker): complete them now.
        sh.cancel_leftovers();
        // 4. Drain the delivery thread: join it, or, when this is it, deliver here.
        sh.drain_delivery(me);
        // 5. From here on no callback of this client runs.
        sh.freed.store(true, Ordering::Release);
        *sh.log_fn.write() = None;
        *sh.progress.write() = None;
        debug_assert!(
            sh.state.lock().ops.is_empty() || sh.dispatch.lock().thread_tag == Some(me),
            "shutdown left undelivered ops"
        );
    }
}

/// The steps of [`Engine::shutdown`], in its order.
impl<J: Job> Shared<J> {
    /// Step 1: marks the client shut down and takes every op not yet
    /// delivering: queued and aborted ones are completed cancelled here,
    /// cooperative ones are told to stop (their worker completes them).
    /// Returns every worker's slot and thread.
    fn take_all_for_shutdown(self: &Arc<Self>) -> (Vec<Arc<WorkerSlot>>, Vec<pool::TaggedThread>) {
        let mut cancelled = Vec::new();
        let mut st = self.state.lock();
        st.shutdown = true;
        st.queue.clear();
        st.queued = 0;
        for (id, e) in st.ops.iter_mut() {
            match &mut e.state {
                OpState::Queued => e.work = None,
                OpState::Running {
                    mode,
                    cancel_requested,
                    ..
                } if mode.worker_completes() => {
                    // The worker completes it with what it has; stopped below.
                    *cancel_requested = true;
                    continue;
                }
                OpState::Running { .. } => {}
                OpState::Delivering => continue,
            }
            e.state = OpState::Delivering;
            let c = Completion::cancelled(*id, e.token, "cancelled: the client was freed", None);
            cancelled.push((c, e.notify.clone()));
        }
        let mut taken = st.pool.take_for_shutdown();
        taken.1.extend(st.watchdog.take());
        drop(st);
        for (c, r) in cancelled {
            self.deliver(c, r, true);
        }
        taken
    }

    /// Step 3: completes, cancelled, every op no worker will complete.
    fn cancel_leftovers(self: &Arc<Self>) {
        let leftovers: Vec<(Completion, Notify)> = {
            let mut st = self.state.lock();
            st.ops
                .iter_mut()
                .filter(|(_, e)| !matches!(e.state, OpState::Delivering))
                .map(|(id, e)| {
                    e.state = OpState::Delivering;
                    (
                        Completion::cancelled(*id, e.token, "cancelled: the client was freed", None),
                        e.notify.clone(),
                    )
                })
                .collect()
        };
        for (c, r) in leftovers {
            self.deliver(c, r, true);
        }
    }

    /// Step 4: stops the delivery thread after it delivered everything, and
    /// joins it; on that very thread (`me`), delivers the rest here.
    fn drain_delivery(&self, me: u64) {
        let handle = {
            let mut d = self.dispatch.lock();
            d.stop = true;
            self.dispatch_cond.notify_all();
            if d.thread_tag == Some(me) {
                // The rest of the batch this thread is running comes first.
                let mut rest: Vec<_> = BATCH.with(|b| b.borrow_mut().drain(..).collect());
                rest.extend(d.items.drain(..));
                drop(d);
                for item in rest {
                    self.run_callback(item);
                }
                None
            } else {
                d.thread.take()
            }
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl<J: Job> Drop for Engine<J> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How long a worker has to complete a cooperative op past its deadline
/// (normally at once: its connection was shut down) before the watchdog does.
const COOPERATIVE_GRACE: Duration = Duration::from_millis(500);

/// Waits on `cond` until notified or `deadline`; false when the deadline passed.
fn wait_until<T>(
    cond: &Condvar,
    guard: &mut parking_lot::MutexGuard<'_, T>,
    deadline: Option<Instant>,
) -> bool {
    match deadline {
        None => {
            cond.wait(guard);
            true
        }
        Some(d) => {
            if Instant::now() >= d {
                return false;
            }
            cond.wait_until(guard, d);
            true
        }
    }
}

impl<J: Job> ClientApi for Engine<J> {
    fn options(&self) -> &Options {
        Engine::options(self)
    }
    fn cancel(&self, op: OpId) -> Result<()> {
        Engine::cancel(self, op)
    }
    fn wait(&self, op: OpId, timeout: Option<Duration>) -> Result<()> {
        Engine::wait(self, op, timeout)
    }
    fn flush(&self, timeout: Option<Duration>) -> Result<()> {
        Engine::flush(self, timeout)
    }
    fn next_completion(&self, timeout: Option<Duration>) -> Option<Completion> {
        Engine::next_completion(self, timeout)
    }
    fn wakeup_handle(&self) -> i64 {
        Engine::wakeup_handle(self)
    }
    fn set_progress(&self, f: Option<ProgressFn>) {
        Engine::set_progress(self, f)
    }
    fn set_log(&self, max_level: u32, f: Option<LogFn>) {
        Engine::set_log(self, max_level, f)
    }
    fn open_connections(&self) -> usize {
        Engine::open_connections(self)
    }
    fn shutdown(&mut self) {
        Engine::shutdown(self)
    }
}
