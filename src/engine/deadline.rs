//! The per-op deadline (OP_TIMEOUT_MS): armed when a worker takes an op,
//! enforced by the client's watchdog thread, which completes an op past it
//! TIMEOUT and shuts its connection down as a cancel would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{pool, CancelMode, Job, OpState, Shared, State};
use crate::log;
use crate::result::{Completion, OpId};
use crate::status::{Error, Status};

/// How long a worker has to complete a cooperative op past its deadline
/// (normally at once: its connection was shut down) before the watchdog does.
const COOPERATIVE_GRACE: Duration = Duration::from_millis(500);

impl<J: Job> Shared<J> {
    /// The error of an op past its deadline.
    pub(super) fn timeout_error(&self, aborted: bool) -> Error {
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
    pub(super) fn arm_deadline(
        self: &Arc<Self>,
        st: &mut State<J>,
        op: OpId,
        at: Instant,
        note: &'static str,
    ) {
        let Some(e) = st.ops.get_mut(&op) else { return };
        e.timeout_note = note;
        if let Some(old) = e.deadline.replace(at) {
            st.drop_deadline((old, op));
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
    pub(super) fn watchdog_main(self: Arc<Self>) {
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
}
