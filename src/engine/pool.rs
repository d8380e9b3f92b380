//! The connection pool: one worker thread per connection, at most
//! `MAX_CONNECTIONS` of them. Worker 0 is the main connection and stays;
//! the others are started when ops wait and no worker is free, and stop
//! (closing their connection) after `IDLE_TIMEOUT_MS` without work.
//!
//! A protocol plugs in as a [`Driver`]: it owns its worker's connection and
//! runs the ops the worker hands it, pulling more with [`WorkerCtx::try_next`]
//! when it can pipeline them.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{CancelMode, Job, OpEntry, OpState, Shared, State};
use crate::net::ConnCtl;
use crate::options::Options;
use crate::result::{OpId, Outcome, Success};
use crate::status::{Error, Status};

/// A protocol engine running on one worker thread, owning at most one
/// connection, running the ops of its own job type.
pub trait Driver: Send {
    /// The protocol's op.
    type Job: Job;
    /// Runs `first` (and whatever else it pulls from `w`) to completion.
    fn run(&mut self, first: Ticket<Self::Job>, w: &mut WorkerCtx<Self::Job>);
    /// Closes the connection politely (QUIT, LOGOUT); the worker was idle.
    fn close_idle(&mut self, w: &mut WorkerCtx<Self::Job>);
    /// Should the main worker close its connection when idle too? (POP3:
    /// an open session locks the maildrop.)
    fn close_main_when_idle(&self) -> bool {
        false
    }
    /// The affinity key of the connection's state (an IMAP selected mailbox):
    /// queued ops with the same key are preferred.
    fn affinity(&self) -> Option<&str> {
        None
    }
}

/// Makes the driver of each new connection of a client (the composition
/// root knows which; the engine does not).
pub type DriverFactory<J> = Box<dyn Fn(&Arc<Options>) -> Box<dyn Driver<Job = J>> + Send + Sync>;

/// A worker's handle on its current connection, shared with `cancel`.
pub(super) struct WorkerSlot {
    ctl: Mutex<Arc<ConnCtl>>,
}

impl WorkerSlot {
    fn new() -> Arc<WorkerSlot> {
        Arc::new(WorkerSlot {
            ctl: Mutex::new(ConnCtl::new()),
        })
    }

    /// Shuts the current connection's socket down from the calling thread.
    pub(super) fn abort(&self) {
        self.ctl.lock().abort();
    }

    fn is_open(&self) -> bool {
        self.ctl.lock().is_open()
    }
}

/// At most `limit` ops started in any `interval`.
struct Throttle {
    limit: u32,
    interval: Duration,
    starts: VecDeque<Instant>,
}

impl Throttle {
    /// When the next op may start: `None` now, else the instant.
    fn next_start(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&t) = self.starts.front() {
            if now.duration_since(t) >= self.interval {
                self.starts.pop_front();
            } else {
                break;
            }
        }
        if (self.starts.len() as u32) < self.limit {
            None
        } else {
            self.starts.front().map(|&t| t + self.interval)
        }
    }
}

/// Tags herald's own threads, so shutdown can tell whether it runs on one.
static NEXT_THREAD_TAG: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD_TAG: Cell<u64> = const { Cell::new(0) };
    /// Set while a worker drops a driver that panicked: the ops it still
    /// held are completed (PANIC) by their drop, which is expected then.
    static RECOVERING: Cell<bool> = const { Cell::new(false) };
}

pub(super) fn new_thread_tag() -> u64 {
    NEXT_THREAD_TAG.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn set_thread_tag(tag: u64) {
    THREAD_TAG.with(|t| t.set(tag));
}

/// This thread's tag: 0 for threads herald did not start.
pub(super) fn thread_tag() -> u64 {
    THREAD_TAG.with(|t| t.get())
}

/// A herald thread's tag and join handle.
pub(super) type TaggedThread = (u64, JoinHandle<()>);

struct Worker {
    index: usize,
    tag: u64,
    slot: Arc<WorkerSlot>,
    handle: Option<JoinHandle<()>>,
}

pub(super) struct PoolState {
    workers: Vec<Worker>,
    /// Workers blocked waiting for an op.
    waiting: usize,
    throttle: Option<Throttle>,
}

impl PoolState {
    pub(super) fn new(throttle: Option<(u32, Duration)>) -> PoolState {
        PoolState {
            workers: Vec::new(),
            waiting: 0,
            throttle: throttle.map(|(limit, interval)| Throttle {
                limit,
                interval,
                starts: VecDeque::new(),
            }),
        }
    }

    #[cfg(test)]
    pub(super) fn workers_for_tests(&self) -> usize {
        self.workers.len()
    }

    pub(super) fn open_connections(&self) -> usize {
        self.workers.iter().filter(|w| w.slot.is_open()).count()
    }

    /// Every worker's slot, and its thread tag and join handle, for shutdown.
    pub(super) fn take_for_shutdown(&mut self) -> (Vec<Arc<WorkerSlot>>, Vec<TaggedThread>) {
        let slots = self.workers.iter().map(|w| w.slot.clone()).collect();
        let handles = self
            .workers
            .iter_mut()
            .filter_map(|w| w.handle.take().map(|h| (w.tag, h)))
            .collect();
        (slots, handles)
    }
}

/// Called with the lock held after an op was queued: starts a worker when
/// ops outnumber idle workers and the cap allows. Returns a line to log
/// (after the lock is released) when no thread could be started.
pub(super) fn on_submit<J: Job>(sh: &Arc<Shared<J>>, st: &mut State<J>) -> Option<String> {
    let max = sh.options.max_connections;
    if st.queued <= st.pool.waiting || st.pool.workers.len() >= max {
        return None;
    }
    let index = (0..max)
        .find(|i| st.pool.workers.iter().all(|w| w.index != *i))
        .unwrap_or(0);
    let slot = WorkerSlot::new();
    let shared = sh.clone();
    let wslot = slot.clone();
    let name = format!("herald-{}-{}", sh.options.protocol.name().to_lowercase(), index);
    let tag = new_thread_tag();
    match std::thread::Builder::new().name(name).spawn(move || {
        set_thread_tag(tag);
        worker_main(shared, wslot, index)
    }) {
        Ok(h) => {
            st.pool.workers.push(Worker {
                index,
                tag,
                slot,
                handle: Some(h),
            });
            None
        }
        // The ops stay queued for the workers that exist; with none, the
        // next submit tries again.
        Err(e) => Some(format!("cannot start a worker thread: {e}")),
    }
}

/// Which queued ops a worker may take (all when `None`).
pub type Want<'a, J> = Option<&'a dyn Fn(&J) -> bool>;

/// Takes the next runnable op for a worker, if any. Lock held.
fn take<J: Job>(
    sh: &Arc<Shared<J>>,
    st: &mut State<J>,
    slot: &Arc<WorkerSlot>,
    affinity: Option<&str>,
    want: Want<J>,
) -> Take<J> {
    while let Some(id) = st.queue.front() {
        if matches!(st.ops.get(id).map(|e| &e.state), Some(OpState::Queued)) {
            break;
        }
        st.queue.pop_front();
    }
    if st.queue.is_empty() || st.shutdown {
        return Take::Nothing;
    }
    let now = Instant::now();
    if let Some(t) = st.pool.throttle.as_mut() {
        if let Some(at) = t.next_start(now) {
            return Take::Throttled(at);
        }
    }
    // Prefer an op matching the connection's state among the first few.
    let mut pos = 0;
    if let Some(want) = want {
        let ops = &st.ops;
        match st
            .queue
            .iter()
            .take(SCAN)
            .position(|id| queued_work(ops, id).is_some_and(want))
        {
            Some(i) => pos = i,
            None => return Take::Nothing,
        }
    }
    if let Some(key) = affinity {
        let ops = &st.ops;
        if let Some(i) = st.queue.iter().take(SCAN).position(|id| {
            queued_work(ops, id).is_some_and(|w| w.affinity_key() == Some(key) && want.is_none_or(|f| f(w)))
        }) {
            pos = i;
        }
    }
    let id = st.queue.remove(pos).expect("position within the queue");
    let e = st.ops.get_mut(&id).expect("queued op has an entry");
    let work = e.work.take().expect("queued op has its work");
    e.state = OpState::Running {
        slot: slot.clone(),
        mode: CancelMode::Abort,
        cancel_requested: false,
    };
    st.queued -= 1;
    if let Some(t) = st.pool.throttle.as_mut() {
        t.starts.push_back(now);
    }
    // The deadline counts from here: time in the queue is the caller's own backlog.
    if let Some(d) = sh.options.op_timeout.filter(|_| !work.deadline_exempt()) {
        sh.arm_deadline(st, id, now + d, work.timeout_note());
    }
    Take::Op(Ticket {
        id,
        job: work,
        shared: sh.clone(),
        done: false,
        attempts: 0,
    })
}

/// How far into the queue a worker looks for an op that suits it.
const SCAN: usize = 64;

/// The work of a queued op.
fn queued_work<'a, J>(ops: &'a super::OpTable<OpEntry<J>>, id: &OpId) -> Option<&'a J> {
    ops.get(id)
        .filter(|e| matches!(e.state, OpState::Queued))
        .and_then(|e| e.work.as_ref())
}

enum Take<J: Job> {
    Op(Ticket<J>),
    Throttled(Instant),
    Nothing,
}

/// An op a worker holds. It must be completed exactly once with
/// [`Ticket::complete`]; dropping it unconsumed is a bug: a debug build
/// asserts, a release build completes it with `HERALD_STATUS_PANIC`.
pub struct Ticket<J: Job> {
    /// The op's id.
    pub id: OpId,
    /// What it does.
    pub job: J,
    shared: Arc<Shared<J>>,
    done: bool,
    /// How many times the driver has already retried it.
    pub attempts: u32,
}

impl<J: Job> Ticket<J> {
    pub fn complete(mut self, outcome: Outcome) {
        self.done = true;
        self.shared.complete(self.id, outcome);
    }

    /// Still this worker's to finish: not cancelled, not completed by anyone.
    pub fn is_live(&self) -> bool {
        self.shared.is_live(self.id)
    }

    /// A cooperative cancel was asked for (or the op was cancelled outright).
    pub fn cancel_requested(&self) -> bool {
        self.shared.cancel_requested(self.id)
    }

    pub fn set_cancel_mode(&self, mode: CancelMode) {
        self.shared.set_cancel_mode(self.id, mode);
    }

    /// `set_cancel_mode` of every ticket in `all` (one client's), under one lock.
    pub fn set_cancel_modes(all: &mut dyn Iterator<Item = &Ticket<J>>, mode: CancelMode) {
        let mut all = all.peekable();
        if let Some(&first) = all.peek() {
            first.shared.set_cancel_modes(&mut all.map(|t| t.id), mode);
        }
    }

    pub fn progress(&self, done: u64, total: u64) {
        self.shared.progress(self.id, done, total);
    }

    /// A non-final notification to the op's `on_change` callback.
    pub fn notify_change(&self, s: Success) {
        self.shared.notify_change(self.id, s);
    }

    /// A streaming op's item, delivered in order and never coalesced;
    /// `release` runs when herald lets go of it. False when the op is
    /// already completed (the item was dropped).
    pub fn notify_item(&self, s: Success, release: crate::result::Release) -> bool {
        self.shared.notify_item(self.id, s, release)
    }
}

impl<J: Job> Drop for Ticket<J> {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.shared.complete(
                self.id,
                Err(Error::new(
                    Status::Panic,
                    "internal error: the op was dropped without a completion",
                )),
            );
            debug_assert!(
                std::thread::panicking() || RECOVERING.with(Cell::get),
                "op {} dropped without a completion",
                self.id
            );
        }
    }
}

/// What a driver sees of its worker.
pub struct WorkerCtx<J: Job> {
    shared: Arc<Shared<J>>,
    slot: Arc<WorkerSlot>,
    pub index: usize,
}

impl<J: Job> WorkerCtx<J> {
    pub fn options(&self) -> &Arc<Options> {
        &self.shared.options
    }

    /// The next queued op, if one may start now; never waits.
    pub fn try_next(&mut self) -> Option<Ticket<J>> {
        self.try_next_with(None)
    }

    /// Like `try_next`, preferring an op whose affinity key is `key`.
    pub fn try_next_with(&mut self, key: Option<&str>) -> Option<Ticket<J>> {
        self.try_next_where(key, None)
    }

    /// Like `try_next_with`, taking only an op that `want` accepts.
    pub fn try_next_where(&mut self, key: Option<&str>, want: Want<J>) -> Option<Ticket<J>> {
        let mut st = self.shared.state.lock();
        match take(&self.shared, &mut st, &self.slot, key, want) {
            Take::Op(t) => Some(t),
            _ => None,
        }
    }

    /// Are ops waiting that `want` accepts and that no other worker will
    /// take soon: none is free and the pool is at MAX_CONNECTIONS? A driver
    /// that holds its connection for a long-lived op (IMAP IDLE) asks this
    /// now and then, and lends its connection to them.
    pub fn ops_starved(&self, want: &dyn Fn(&J) -> bool) -> bool {
        let st = self.shared.state.lock();
        if st.shutdown
            || st.queued <= st.pool.waiting
            || st.pool.workers.len() < self.shared.options.max_connections
        {
            return false;
        }
        st.queue
            .iter()
            .take(SCAN)
            .any(|id| queued_work(&st.ops, id).is_some_and(want))
    }

    /// A fresh connection control, installed as this worker's current one
    /// before connecting, so a cancel during connect reaches it.
    pub fn new_ctl(&self) -> Arc<ConnCtl> {
        let ctl = ConnCtl::new();
        *self.slot.ctl.lock() = ctl.clone();
        ctl
    }

    pub fn log(&self, level: u32, line: impl FnOnce() -> String) {
        self.shared.log(level, line);
    }

    pub fn log_enabled(&self, level: u32) -> bool {
        self.shared.log_enabled(level)
    }

    pub fn shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// A handle on this client's log for protocol code.
    pub fn tracer(&self) -> crate::log::Tracer {
        let a = self.shared.clone();
        let b = self.shared.clone();
        crate::log::Tracer::new(
            std::sync::Arc::new(move |level, line| a.log(level, || line.to_string())),
            std::sync::Arc::new(move |level| b.log_enabled(level)),
        )
    }
}

enum Next<J: Job> {
    Op(Ticket<J>),
    Idle,
    Exit,
}

fn worker_main<J: Job>(shared: Arc<Shared<J>>, slot: Arc<WorkerSlot>, index: usize) {
    let mut driver = (shared.factory)(&shared.options);
    let mut ctx = WorkerCtx {
        shared: shared.clone(),
        slot: slot.clone(),
        index,
    };
    let idle_timeout = shared.options.idle_timeout;
    let mut idle_done = false;
    loop {
        let next = {
            let mut st = shared.state.lock();
            st.pool.waiting += 1;
            let idle_deadline = Instant::now() + idle_timeout;
            let next = loop {
                if st.shutdown {
                    break Next::Exit;
                }
                let throttled_until = match take(&shared, &mut st, &slot, driver.affinity(), None) {
                    Take::Op(t) => break Next::Op(t),
                    Take::Throttled(at) => Some(at),
                    Take::Nothing => None,
                };
                let mut wake = throttled_until;
                if !idle_done {
                    if Instant::now() >= idle_deadline {
                        break Next::Idle;
                    }
                    wake = Some(wake.map_or(idle_deadline, |w| w.min(idle_deadline)));
                }
                match wake {
                    Some(at) => {
                        shared.work_cond.wait_until(&mut st, at);
                    }
                    None => shared.work_cond.wait(&mut st),
                }
            };
            st.pool.waiting -= 1;
            next
        };
        match next {
            Next::Op(t) => {
                idle_done = false;
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run(t, &mut ctx)));
                if r.is_err() {
                    shared.log(crate::log::ERROR, || {
                        "internal error in a worker; its connection was reset".into()
                    });
                    RECOVERING.with(|r| r.set(true));
                    driver = (shared.factory)(&shared.options);
                    RECOVERING.with(|r| r.set(false));
                }
            }
            Next::Idle => {
                idle_done = true;
                if index != 0 || driver.close_main_when_idle() {
                    driver.close_idle(&mut ctx);
                }
                if index != 0 {
                    let mut st = shared.state.lock();
                    // Leave unless ops arrived meanwhile.
                    if st.queued == 0 || st.shutdown {
                        st.pool.workers.retain(|w| w.index != index);
                        return;
                    }
                }
            }
            Next::Exit => {
                drop(driver);
                return;
            }
        }
    }
}
