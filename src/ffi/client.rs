//! `herald_client`: the handle ops are submitted to, and how their
//! completions come back.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::boundary::ffi_boundary;
use super::completion::{herald_callback, herald_completion, herald_op, into_owned, with_c_completion};
use super::handle::{self, Castable, Owned};
use super::options::herald_options;
use super::{arg_out, herald_status};
use crate::client::{Client, ClientJob};
use crate::engine::{Callback, Notify, Submit};
use crate::options::Options;
use crate::result::Completion;
use crate::status::{Error, Result};

/// A client of one server (or one pickup directory). Every function may be
/// called on it from any thread, concurrently, also from inside its callbacks
/// (see the README's "Threading").
pub struct herald_client {
    _private: [u8; 0],
}

impl Castable for herald_client {
    type Ownership = Owned;
    type Rust = Client;
    const NAME: &'static str = "client";
}

/// Progress of an op: bytes `done` of `total` (0 when unknown, as for an
/// IMAP fetch), with the op's `user_token`. Called on the worker thread
/// running the op, possibly many times per op, never after its completion.
/// Keep it short: it runs between network reads and writes.
pub type herald_progress_callback =
    Option<unsafe extern "C" fn(op: herald_op, user_token: *mut c_void, done: u64, total: u64)>;
/// A log line: `user` as given to `herald_client_set_log`, `level` one of
/// HERALD_LOG_ERROR (1) .. HERALD_LOG_TRACE (5), `line` UTF-8 without a line
/// end, valid only during the call (copy it to keep it). Called on whatever
/// herald thread logs (workers, the delivery thread), possibly from several
/// at once; never contains a password, token or message content.
pub type herald_log_callback =
    Option<unsafe extern "C" fn(user: *mut c_void, level: u32, line: *const c_char)>;

/// Log level 1: an op or connection failed.
pub const HERALD_LOG_ERROR: u32 = 1;
/// Log level 2: something unexpected that herald worked around (a retry, a reconnect).
pub const HERALD_LOG_WARN: u32 = 2;
/// Log level 3: connections opened and closed, ops completed.
pub const HERALD_LOG_INFO: u32 = 3;
/// Log level 4: the pool's decisions and each op's steps.
pub const HERALD_LOG_DEBUG: u32 = 4;
/// Log level 5: every protocol line (credentials and message contents left out).
pub const HERALD_LOG_TRACE: u32 = 5;

/// A C pointer carried across threads; herald never dereferences it.
#[derive(Clone, Copy)]
struct UserPtr(*mut c_void);
// SAFETY: the pointer is only handed back to the caller's own callbacks.
unsafe impl Send for UserPtr {}
unsafe impl Sync for UserPtr {}

fn timeout(ms: i32) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

/// Queues `work` on the client: the common path of every *_async call.
pub(crate) fn submit<J: ClientJob>(
    c: *mut herald_client,
    work: impl FnOnce(&Client) -> Result<J>,
    on_change: Option<herald_callback>,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    ffi_boundary! {
        let client = handle::arg(c)?;
        let out = arg_out(op_out, "op_out")?;
        let work = work(client)?;
        let op = client.submit(
            work,
            Submit {
                notify: notify(cb),
                on_change: on_change.map(notify),
                token: user_token as usize,
            },
        )?;
        *out = op;
        Ok(())
    }
}

pub(crate) fn notify(cb: herald_callback) -> Notify {
    type CFn = unsafe extern "C" fn(*const herald_completion);
    thread_local! {
        /// The last callback this thread submitted with, and its wrapper: a
        /// bulk sender passes the same function to every op, which then
        /// shares one wrapper instead of allocating its own.
        static LAST: std::cell::RefCell<Option<(CFn, Callback)>> = const { std::cell::RefCell::new(None) };
    }
    let Some(f) = cb else { return Notify::Queue };
    let wrap = |f: CFn| -> Callback {
        Arc::new(move |c: &Completion| {
            // SAFETY: the caller's callback, given a completion valid for the call.
            with_c_completion(c, |cc| unsafe { f(cc) })
        })
    };
    let cb = LAST
        .try_with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some((g, w)) if std::ptr::fn_addr_eq(*g, f) => w.clone(),
                _ => {
                    let w = wrap(f);
                    *last = Some((f, w.clone()));
                    w
                }
            }
        })
        .unwrap_or_else(|_| wrap(f));
    Notify::Callback(cb)
}

/// CONSTRUCTOR. Makes a client from `o` (validated and copied: free `o`
/// whenever you like) into `*out`; the caller owns it and frees it with
/// `herald_client_free`. Connects lazily: no network I/O here, and no thread
/// calls back before the first op. NULL `o` or `out`, or options that do not
/// make a client (an SMTP client without HOST, a PICKUP one without
/// PICKUP_DIR), give HERALD_STATUS_INVALID_ARGUMENT with the reason in
/// `herald_last_error()`; `*out` is then not written.
#[no_mangle]
pub extern "C" fn herald_client_new(o: *const herald_options, out: *mut *mut herald_client) -> herald_status {
    ffi_boundary! {
        let o = handle::arg(o)?;
        let out = arg_out(out, "out")?;
        let client = Client::new(Options::clone(o))?;
        *out = handle::into_handle::<herald_client>(client);
        Ok(())
    }
}

/// DESTRUCTOR. NULL is a no-op. Queued ops complete with cancelled = 1,
/// running ones are aborted; every op's completion is delivered (callbacks
/// have returned, or completions are queued) before this returns, and no
/// callback of this client runs after it. Never deadlocks, also when called
/// from inside one of the client's own completion callbacks (the remaining
/// completions are then delivered on the calling thread). Nothing else may
/// use the client while or after this runs. Queued completions already taken
/// with `herald_client_next` stay valid.
#[no_mangle]
pub extern "C" fn herald_client_free(c: *mut herald_client) {
    ffi_boundary! { void; handle::free(c) }
}

/// METHOD. The next queued completion (of ops submitted with `cb` NULL, and
/// IDLE changes whose `on_change` is NULL), in the order they completed, or
/// NULL when none came within `timeout_ms` (0 = don't wait, -1 = wait
/// forever; NULL `c` also gives NULL, with the reason in
/// `herald_last_error()`). Call it on any thread. The caller owns
/// the completion and everything it points to, until
/// `herald_completion_free` (also after the client is freed).
#[no_mangle]
pub extern "C" fn herald_client_next(c: *mut herald_client, timeout_ms: i32) -> *mut herald_completion {
    ffi_boundary! {
        // None within the timeout is not a failure: NULL, last_error untouched.
        Ok(handle::arg(c)?
            .next_completion(timeout(timeout_ms))
            .map_or(std::ptr::null_mut(), into_owned))
    }
}

/// METHOD. POSIX: a file descriptor that is readable exactly while
/// completions are queued (poll it for POLLIN; don't read or close it; take
/// the completions with `herald_client_next(c, 0)` until it gives NULL).
/// Windows: an event HANDLE signalled likewise (wait on it, don't close it).
/// Owned by the client and valid until `herald_client_free`. -1 for NULL
/// (the reason in `herald_last_error()`).
#[no_mangle]
pub extern "C" fn herald_client_wakeup_handle(c: *const herald_client) -> i64 {
    ffi_boundary! { Ok(handle::arg(c)?.wakeup_handle()) }
}

/// METHOD. Cancels `op`, queued or running: a running op has its connection
/// shut down from the calling thread. OK: the op completes cancelled (its
/// completion comes as usual, on the usual thread, cancelled = 1), or had
/// already completed and nothing happens. NOT_FOUND: no such op on this
/// client. Safe at any time, from any thread and from callbacks.
#[no_mangle]
pub extern "C" fn herald_cancel(c: *mut herald_client, op: herald_op) -> herald_status {
    ffi_boundary! { handle::arg(c)?.cancel(op) }
}

/// METHOD. Blocks the calling thread until `op`'s completion was delivered
/// (its callback returned, or it was queued): OK; TIMEOUT if not within
/// `timeout_ms` (0 = just ask, -1 = forever); NOT_FOUND for an unknown op.
/// Inside a completion callback of the same client, waiting (timeout not 0)
/// for an op with a callback would deadlock and is INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn herald_wait(c: *mut herald_client, op: herald_op, timeout_ms: i32) -> herald_status {
    ffi_boundary! { handle::arg(c)?.wait(op, timeout(timeout_ms)) }
}

/// METHOD. Blocks the calling thread until every op submitted so far has
/// completed (IMAP IDLE ops, which run until cancelled, excepted): OK;
/// TIMEOUT if not within `timeout_ms` (0 = just ask, -1 = forever). From a
/// completion callback of the same client, with ops that have callbacks and
/// a timeout other than 0, INVALID_ARGUMENT (it would wait forever).
#[no_mangle]
pub extern "C" fn herald_client_flush(c: *mut herald_client, timeout_ms: i32) -> herald_status {
    ffi_boundary! { handle::arg(c)?.flush(timeout(timeout_ms)) }
}

/// METHOD. Sets (or with `cb` NULL, clears) the client's progress callback
/// (see `herald_progress_callback`): bytes sent or received, with the op's
/// user token, called on worker threads. Applies to ops running from now on.
#[no_mangle]
pub extern "C" fn herald_client_set_progress(
    c: *mut herald_client,
    cb: herald_progress_callback,
) -> herald_status {
    ffi_boundary! {
        let client = handle::arg(c)?;
        client.set_progress(cb.map(|f| {
            Arc::new(move |op, token: usize, done, total| {
                // SAFETY: the caller's callback with the op's own token.
                unsafe { f(op, token as *mut c_void, done, total) }
            }) as crate::engine::ProgressFn
        }));
        Ok(())
    }
}

/// METHOD. Sets (or with `cb` NULL, clears) the client's log callback (see
/// `herald_log_callback`) for levels 1..`max_level` (`HERALD_LOG_ERROR` 1 ..
/// `HERALD_LOG_TRACE` 5; 0 logs nothing; above 5 is INVALID_ARGUMENT).
/// `user` is passed back to every call; herald never dereferences it.
/// Passwords, tokens and message contents never appear in the log.
#[no_mangle]
pub extern "C" fn herald_client_set_log(
    c: *mut herald_client,
    max_level: u32,
    cb: herald_log_callback,
    user: *mut c_void,
) -> herald_status {
    ffi_boundary! {
        let client = handle::arg(c)?;
        if max_level > HERALD_LOG_TRACE {
            return Err(Error::invalid(format!("max_level must be 0..5, got {max_level}")));
        }
        let user = UserPtr(user);
        client.set_log(
            max_level,
            cb.map(|f| {
                Arc::new(move |level: u32, line: &str| {
                    let u = user;
                    let line = crate::result::c_string(line);
                    // SAFETY: the caller's callback with its own user pointer and a
                    // NUL-terminated line valid for the call.
                    unsafe { f(u.0, level, line.as_ptr()) }
                }) as crate::log::LogFn
            }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_agree_with_the_engine() {
        use crate::log;
        assert_eq!(
            [
                HERALD_LOG_ERROR,
                HERALD_LOG_WARN,
                HERALD_LOG_INFO,
                HERALD_LOG_DEBUG,
                HERALD_LOG_TRACE
            ],
            [log::ERROR, log::WARN, log::INFO, log::DEBUG, log::TRACE]
        );
    }
}
