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

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::log::{self, LogFn};
use crate::options::Options;
use crate::result::{Completion, OpId, Outcome};
use crate::status::{Error, Result, Status};

mod deadline;
mod delivery;
mod optable;
mod pool;
#[cfg(test)]
mod tests;
mod wakeup;

use delivery::{CompletionQueue, DispatchState};
use optable::OpTable;
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

/// Runs just before an op's final completion is delivered (no lock held)
/// and may add to it; what it returns runs once the completion was
/// delivered (its callback returned, or it was queued). The durable
/// outbox's hook into a send op.
pub type FinalHook = Box<dyn FnOnce(&mut Completion) -> Option<AfterHook> + Send>;
/// See [`FinalHook`].
pub type AfterHook = Box<dyn FnOnce() + Send>;

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
    /// Run at its final completion ([`FinalHook`]), then after its delivery.
    final_hook: Option<FinalHook>,
    after: Option<AfterHook>,
}

/// Everything guarded by the client's main lock.
struct State<J> {
    next_id: OpId,
    ops: OpTable<OpEntry<J>>,
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
    deadlines: optable::Deadlines,
    /// The watchdog thread that enforces them, started with the first one.
    watchdog: Option<pool::TaggedThread>,
}

impl<J> State<J> {
    /// Takes the deadline `d` out (see [`optable::Deadlines`]): the ring is
    /// compacted once stale entries make it long.
    fn drop_deadline(&mut self, d: (Instant, OpId)) {
        self.deadlines.remove(&d);
        if self.deadlines.needs_compact(self.ops.len()) {
            let ops = &self.ops;
            self.deadlines
                .compact(|&(at, op)| ops.get(&op).is_some_and(|e| e.deadline == Some(at)));
        }
    }

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
    /// Some op was submitted with a [`FinalHook`].
    hooks: AtomicBool,
    factory: DriverFactory<J>,
}

impl<J: Job> Shared<J> {
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

    fn set_cancel_mode(&self, op: OpId, new_mode: CancelMode) {
        self.set_cancel_modes(&mut std::iter::once(op), new_mode);
    }

    /// `set_cancel_mode` of several ops, under one lock.
    fn set_cancel_modes(&self, ops: &mut dyn Iterator<Item = OpId>, new_mode: CancelMode) {
        let mut st = self.state.lock();
        for op in ops {
            if let Some(OpState::Running { mode, .. }) = st.ops.get_mut(&op).map(|e| &mut e.state) {
                *mode = new_mode;
            }
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
                ops: OpTable::new(),
                queue: VecDeque::new(),
                queued: 0,
                shutdown: false,
                pool: PoolState::new(throttle),
                waited: BTreeMap::new(),
                flush_targets: BTreeMap::new(),
                deadlines: optable::Deadlines::default(),
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
            hooks: AtomicBool::new(false),
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
        self.submit_with_hook(job, s, None)
    }

    /// [`Engine::submit`] with a hook run at the op's final completion.
    pub fn submit_with_hook(&self, job: J, s: Submit, final_hook: Option<FinalHook>) -> Result<OpId> {
        let sh = &self.shared;
        if final_hook.is_some() {
            sh.hooks.store(true, Ordering::Release);
        }
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
                final_hook,
                after: None,
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
}

impl<J: Job> Drop for Engine<J> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

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
