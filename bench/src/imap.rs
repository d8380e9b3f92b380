//! What the IMAP benches share: a client of the private Dovecot, and a way
//! to run one op through the C ABI and wait for its completion.

use std::ffi::{c_void, CString};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use herald::ffi::client::*;
use herald::ffi::completion::*;
use herald::ffi::imap_sync::HERALD_FIELD_HIGHESTMODSEQ;
use herald::ffi::options::*;
use herald::ffi::result::*;
use herald::ffi::HERALD_STATUS_OK;

/// What a completion said: status, items, bytes in all items, the
/// mailbox's HIGHESTMODSEQ (0 when the result has none).
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub status: u32,
    pub items: usize,
    pub bytes: usize,
    pub modseq: u64,
}

struct Waiter {
    done: Mutex<Option<Outcome>>,
    cond: Condvar,
}

static WAITER: Waiter = Waiter {
    done: Mutex::new(None),
    cond: Condvar::new(),
};

unsafe extern "C" fn on_done(c: *const herald_completion) {
    // SAFETY: herald hands the callback a completion valid for the call.
    let c = unsafe { &*c };
    let n = herald_result_count(c.result);
    let bytes = (0..n)
        .map(|i| {
            let mut len = 0;
            herald_result_bytes(c.result, i, &mut len);
            len
        })
        .sum();
    *WAITER.done.lock().unwrap() = Some(Outcome {
        status: c.status,
        items: n,
        bytes,
        modseq: herald_result_mailbox_int(c.result, HERALD_FIELD_HIGHESTMODSEQ),
    });
    WAITER.cond.notify_all();
}

/// Runs one op (`submit` calls a `*_async` function with the callback,
/// token and op out) and waits for it: its outcome and how long it took.
/// One op at a time, process-wide.
pub fn run(submit: impl FnOnce(herald_callback, *mut c_void, *mut herald_op) -> u32) -> (Outcome, Duration) {
    *WAITER.done.lock().unwrap() = None;
    let mut op = 0;
    let t = Instant::now();
    let s = submit(Some(on_done), std::ptr::null_mut(), &mut op);
    assert_eq!(s, HERALD_STATUS_OK, "submit refused");
    let mut g = WAITER.done.lock().unwrap();
    while g.is_none() {
        g = WAITER.cond.wait(g).unwrap();
    }
    let elapsed = t.elapsed();
    let o = g.take().unwrap();
    assert_eq!(o.status, HERALD_STATUS_OK, "op failed: {o:?}");
    (o, elapsed)
}

/// An IMAP client of the private Dovecot's alice on `port` (no TLS), with
/// at most `max_connections` connections when given.
pub fn client(port: u16, max_connections: Option<i64>) -> *mut herald_client {
    let o = herald_options_new(HERALD_PROTOCOL_IMAP);
    let s = |v: &str| CString::new(v).unwrap();
    let (host, user, pass) = (s("127.0.0.1"), s("alice"), s("alicepass"));
    assert_eq!(herald_options_set_str(o, HERALD_OPT_HOST, host.as_ptr()), 0);
    assert_eq!(herald_options_set_int(o, HERALD_OPT_PORT, port as i64), 0);
    assert_eq!(
        herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE),
        0
    );
    assert_eq!(herald_options_set_str(o, HERALD_OPT_USERNAME, user.as_ptr()), 0);
    assert_eq!(herald_options_set_str(o, HERALD_OPT_PASSWORD, pass.as_ptr()), 0);
    if let Some(n) = max_connections {
        assert_eq!(herald_options_set_int(o, HERALD_OPT_MAX_CONNECTIONS, n), 0);
    }
    let mut c = std::ptr::null_mut();
    assert_eq!(herald_client_new(o, &mut c), 0);
    herald_options_free(o);
    c
}
