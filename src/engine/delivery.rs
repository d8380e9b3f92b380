//! Completion delivery: the delivery thread that runs callbacks in
//! batches, the completion queue with its wakeup handle, IDLE's coalesced
//! change notifications, and marking ops delivered (which is when they leave
//! the op table and their waiters wake). No user callback runs under a lock.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::wakeup::Wakeup;
use super::{pool, Callback, Job, Notify, OpState, Shared};
use crate::result::{Completion, OpId, Release, Success};

/// The delivery thread's queue of callbacks to run.
pub(super) struct DispatchState {
    pub(super) items: VecDeque<Delivery>,
    pub(super) thread: Option<JoinHandle<()>>,
    pub(super) thread_tag: Option<u64>,
    pub(super) stop: bool,
    /// The delivery thread waits without a deadline: a new item must wake it.
    /// While it is busy or gathering a batch, items are queued silently.
    pub(super) idle: bool,
}

/// When completions come faster than this apart, the delivery thread is
/// busy: after a batch it gathers the next one for `DELIVERY_GATHER` instead
/// of being woken for each completion. At a bulk sender's thousands of
/// completions per second that is one wake-up per batch instead of one per
/// op; a callback waits at most `DELIVERY_GATHER` longer than it would.
const DELIVERY_BUSY_GAP: Duration = Duration::from_millis(2);
const DELIVERY_GATHER: Duration = Duration::from_millis(1);

/// The completions of ops submitted without a callback, for `herald_client_next`.
pub(super) struct CompletionQueue {
    pub(super) items: Mutex<VecDeque<Completion>>,
    pub(super) cond: Condvar,
    pub(super) wakeup: Wakeup,
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
    pub(super) fn addr(&self) -> usize {
        self as *const Shared<J> as usize
    }

    pub(super) fn in_own_callback(&self) -> bool {
        IN_CALLBACK.with(|c| c.get() == self.addr())
    }

    /// Hands a completion to its route. `fin`: the op's final completion.
    pub(super) fn deliver(self: &Arc<Self>, mut c: Completion, route: Notify, fin: bool) {
        if fin && self.hooks.load(Ordering::Acquire) {
            self.run_final_hook(&mut c);
        }
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
                let Some(mut d) = self.with_delivery_thread(d) else {
                    return;
                };
                if d.idle {
                    d.idle = false;
                    self.dispatch_cond.notify_one();
                }
            }
        }
    }

    /// The delivery thread: runs the queued callbacks in order, a batch at a
    /// time (one lock round trip each way per batch, not per op).
    pub(super) fn dispatch_main(self: Arc<Self>) {
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
    pub(super) fn call(&self, c: &Completion, cb: &Callback) {
        if !self.freed.load(Ordering::Acquire) {
            let prev = IN_CALLBACK.with(|x| x.replace(self.addr()));
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(c)));
            IN_CALLBACK.with(|x| x.set(prev));
        }
    }

    pub(super) fn run_callback(&self, (c, cb, fin): (Completion, Callback, bool)) {
        self.call(&c, &cb);
        if fin {
            self.mark_delivered(c.op);
        }
    }

    /// The op's completion was delivered: it leaves the table, and whoever
    /// waits for it (`wait`, or a `flush` it was holding up) is woken. Only
    /// those: waking every waiter on every completion cost a bulk sender
    /// thousands of useless wake-ups.
    pub(super) fn mark_delivered(&self, op: OpId) {
        self.mark_all_delivered(&[op]);
    }

    /// Runs the op's [`super::FinalHook`], if it has one, keeping what is
    /// to run after the delivery.
    fn run_final_hook(&self, c: &mut Completion) {
        let hook = self
            .state
            .lock()
            .ops
            .get_mut(&c.op)
            .and_then(|e| e.final_hook.take());
        if let Some(after) = hook.and_then(|h| h(c)) {
            if let Some(e) = self.state.lock().ops.get_mut(&c.op) {
                e.after = Some(after);
            }
        }
    }

    /// `mark_delivered` for a batch: one lock, at most one wake-up.
    pub(super) fn mark_all_delivered(&self, ops: &[OpId]) {
        if ops.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        let mut wake = false;
        let mut after = Vec::new();
        for &op in ops {
            if let Some(e) = st.ops.get_mut(&op) {
                // Dropped in place: an entry is a few hundred bytes to move.
                let deadline = e.deadline;
                after.extend(e.after.take());
                st.ops.discard(&op);
                if let Some(at) = deadline {
                    st.drop_deadline((at, op));
                }
            }
            wake |= st.waited.contains_key(&op);
        }
        wake |= st
            .flush_targets
            .first_key_value()
            .is_some_and(|(&target, _)| !st.flush_pending(target));
        drop(st);
        // Before the waiters wake: a flush that returns finds it done.
        for a in after {
            a();
        }
        if wake {
            self.done_cond.notify_all();
        }
    }

    /// A non-final notification (IDLE's on_change). Coalesced: while an
    /// earlier notification of the op waits to be delivered, it is replaced
    /// by this one, so at most one is pending per op and it is the latest.
    /// The state lock is held throughout, so no final completion of the op
    /// can slip in between (state, then queue or dispatch: the order
    /// everywhere).
    pub(super) fn notify_change(self: &Arc<Self>, op: OpId, s: Success) {
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
                    pending.replace_pending(c);
                    return;
                }
                self.deliver(c, route, false);
            }
            Notify::Callback(cb) => {
                let mut d = self.dispatch.lock();
                if let Some(pending) = d.items.iter_mut().rev().find(|x| !x.2 && x.0.op == op) {
                    pending.0.replace_pending(c);
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

    /// A non-final item of a streaming op, never coalesced: each one is
    /// delivered, in order, to the op's `on_change` route. False when the op
    /// was cancelled or completed (timed out): then the item is dropped, so
    /// no item is queued after `cancel` returned, nor after the final
    /// completion. The state
    /// lock is held while the item is queued, as in `notify_change`.
    pub(super) fn notify_item(self: &Arc<Self>, op: OpId, s: Success, release: Release) -> bool {
        let st = self.state.lock();
        let Some(e) = st.ops.get(&op) else { return false };
        // After a cancel (or the deadline) no new item is queued.
        if !matches!(
            e.state,
            OpState::Running {
                cancel_requested: false,
                ..
            }
        ) {
            return false;
        }
        let mut c = Completion::from_outcome(op, e.token, Ok(s));
        c.on_release = Some(release);
        let route = e.on_change.clone().unwrap_or_else(|| e.notify.clone());
        match route {
            Notify::Queue => self.deliver(c, route, false),
            Notify::Callback(cb) => {
                let mut d = self.dispatch.lock();
                if d.stop {
                    return false;
                }
                d.items.push_back((c, cb, false));
                if d.thread.is_some() {
                    if d.idle {
                        d.idle = false;
                        self.dispatch_cond.notify_one();
                    }
                    return true;
                }
                // No delivery thread yet: start one, outside the locks (the
                // item is queued already, so nothing can overtake it).
                drop(d);
                drop(st);
                self.start_delivery();
            }
        }
        true
    }

    /// Starts the delivery thread for items queued without one.
    fn start_delivery(self: &Arc<Self>) {
        let d = self.dispatch.lock();
        if !d.items.is_empty() {
            self.with_delivery_thread(d);
        }
    }

    /// Starts the delivery thread unless one runs (or delivery stopped)
    /// and hands the lock back. Should no thread start, the queued items
    /// are delivered here instead, rather than lost, and the lock is let go
    /// (None).
    fn with_delivery_thread<'a>(
        self: &'a Arc<Self>,
        mut d: parking_lot::MutexGuard<'a, DispatchState>,
    ) -> Option<parking_lot::MutexGuard<'a, DispatchState>> {
        if d.thread.is_some() || d.stop {
            return Some(d);
        }
        let shared = self.clone();
        let tag = pool::new_thread_tag();
        let spawned = std::thread::Builder::new()
            .name("herald-deliver".into())
            .spawn(move || {
                pool::set_thread_tag(tag);
                shared.dispatch_main()
            });
        match spawned {
            Ok(h) => {
                d.thread_tag = Some(tag);
                d.thread = Some(h);
                Some(d)
            }
            Err(_) => {
                let items: Vec<_> = d.items.drain(..).collect();
                drop(d);
                for item in items {
                    self.run_callback(item);
                }
                None
            }
        }
    }

    /// Step 4: stops the delivery thread after it delivered everything, and
    /// joins it; on that very thread (`me`), delivers the rest here.
    pub(super) fn drain_delivery(&self, me: u64) {
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
