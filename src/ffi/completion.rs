//! `herald_completion`: how an op's outcome reaches C.

use std::ffi::{c_char, c_void, CStr, CString};

use super::boundary::ffi_boundary;
use super::handle::{self, Castable, Owned};
use super::herald_status;
use super::result::herald_result;
use crate::result::{c_string, Completion, ResultData};

/// An op id, set by every `*_async` call that returns OK (unique per
/// client); 0 is never a valid op.
pub type herald_op = u64;

/// An op's completion. Passed to a callback, it and every pointer in it are
/// valid only during the callback. Taken with `herald_client_next`, it is the
/// caller's until `herald_completion_free`.
#[repr(C)]
pub struct herald_completion {
    /// The op this completes, as the `*_async` call set in `*op_out`.
    pub op: herald_op,
    /// HERALD_STATUS_OK on success.
    pub status: herald_status,
    /// 1 iff cancelled; then status == HERALD_STATUS_CANCELLED.
    pub cancelled: i32,
    /// As passed to the *_async call; herald never dereferences it.
    pub user_token: *mut c_void,
    /// The last server reply code (SMTP 250, 550 ...), 0 if none.
    pub reply_code: i32,
    /// Server text or local reason (UTF-8); never NULL, valid as long as
    /// the completion.
    pub detail: *const c_char,
    /// The op's result, NULL when it has none (read it with
    /// `herald_result_*`; each op's doc says what its items hold). A failed
    /// or cancelled op may still have one: what it did before it stopped (an
    /// IMAP append's UIDs). Valid as long as the completion.
    pub result: *const herald_result,
}

/// A completion callback: called exactly once per op with its completion
/// (and, for IMAP IDLE's `on_change`, once per change), on the client's
/// delivery thread (`herald-deliver`), one call at a time and never while
/// herald holds a lock. `c` and every pointer in it are valid only during
/// the call. It may call any herald function, also `herald_client_free`.
pub type herald_callback = Option<unsafe extern "C" fn(c: *const herald_completion)>;

fn result_ptr(r: &Option<ResultData>) -> *const herald_result {
    r.as_ref()
        .map_or(std::ptr::null(), handle::borrow::<herald_result>)
}

/// A completion taken from the queue is C's own (`herald_completion_free`);
/// one passed to a callback is only lent, as a `&herald_completion` (see
/// [`with_c_completion`]), and never reaches the free.
impl Castable for herald_completion {
    type Ownership = Owned;
    type Rust = OwnedCompletion;
    const NAME: &'static str = "completion";
}

/// Shows `c` to C as a `herald_completion` for the duration of `f`.
pub(crate) fn with_c_completion(c: &Completion, f: impl FnOnce(&herald_completion)) {
    // A short detail (nearly every one) goes to C from the stack: copied,
    // its NUL put after it, nothing else of the buffer written or scanned.
    let mut short = [std::mem::MaybeUninit::<u8>::uninit(); 256];
    let heap;
    let detail: &CStr = match c.detail.as_bytes() {
        d if d.len() < short.len() && !d.contains(&0) => {
            // SAFETY: `d` and the NUL fit in `short` (d.len() < 256); the
            // first d.len() + 1 bytes are written before they are read,
            // and they are `d`, which has no NUL, then one NUL.
            unsafe {
                let p = short.as_mut_ptr().cast::<u8>();
                std::ptr::copy_nonoverlapping(d.as_ptr(), p, d.len());
                *p.add(d.len()) = 0;
                CStr::from_bytes_with_nul_unchecked(std::slice::from_raw_parts(p, d.len() + 1))
            }
        }
        _ => {
            heap = c_string(&c.detail);
            &heap
        }
    };
    let cc = herald_completion {
        op: c.op,
        status: c.status.code(),
        cancelled: c.cancelled as i32,
        user_token: c.token as *mut c_void,
        reply_code: c.reply_code,
        detail: detail.as_ptr(),
        result: result_ptr(&c.result),
    };
    f(&cc);
}

/// A completion C owns: the struct first, so a `*mut herald_completion`
/// is a pointer to the whole allocation.
#[repr(C)]
pub struct OwnedCompletion {
    c: herald_completion,
    detail: CString,
    result: Option<ResultData>,
}

/// Gives a completion to C, to be freed with `herald_completion_free`.
pub(crate) fn into_owned(c: Completion) -> *mut herald_completion {
    let detail = c_string(&c.detail);
    let mut owned = Box::new(OwnedCompletion {
        c: herald_completion {
            op: c.op,
            status: c.status.code(),
            cancelled: c.cancelled as i32,
            user_token: c.token as *mut c_void,
            reply_code: c.reply_code,
            detail: std::ptr::null(),
            result: std::ptr::null(),
        },
        detail,
        result: c.result,
    });
    owned.c.detail = owned.detail.as_ptr();
    owned.c.result = result_ptr(&owned.result);
    // The box is not moved again, so the pointers into it stay valid.
    handle::boxed_into_handle(owned)
}

/// DESTRUCTOR for a completion from `herald_client_next`, with its detail
/// and result. NULL is a no-op. Never pass the completion a callback received.
#[no_mangle]
pub extern "C" fn herald_completion_free(c: *mut herald_completion) {
    ffi_boundary! { void; handle::free(c) }
}
