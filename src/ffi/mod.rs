//! The C ABI. A thin layer over the Rust engine: one file per C type, every
//! export a plain `extern "C" fn` whose body runs inside a panic boundary
//! ([`status_boundary`], [`boundary`]), so no panic ever crosses into C.
//!
//! Conventions (see the README's "API conventions"):
//! - NULL or non-UTF-8 input gives `HERALD_STATUS_INVALID_ARGUMENT`;
//! - out-params are written only on success;
//! - `*_free(NULL)` is a no-op;
//! - the detail of the last failed call on a thread is `herald_last_error()`.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::{Error, Result, Status};

pub mod client;
pub mod completion;
pub mod imap;
pub mod message;
pub mod options;
pub mod pop3;
pub mod result;
pub mod smtp;

/// A status code (`HERALD_STATUS_*`). Values are never renumbered.
pub type herald_status = u32;

pub const HERALD_STATUS_OK: herald_status = 0;
/// NULL, bad UTF-8, CR/LF in an address or header, bad option.
pub const HERALD_STATUS_INVALID_ARGUMENT: herald_status = 1;
/// DNS failure, refused, unreachable.
pub const HERALD_STATUS_CONNECT: herald_status = 2;
/// Handshake or certificate failure.
pub const HERALD_STATUS_TLS: herald_status = 3;
/// Credentials rejected.
pub const HERALD_STATUS_AUTH: herald_status = 4;
/// Permanent refusal: SMTP 5xx, IMAP NO/BAD, POP3 -ERR.
pub const HERALD_STATUS_REJECTED: herald_status = 5;
/// Try later: SMTP 4xx.
pub const HERALD_STATUS_TRANSIENT: herald_status = 6;
/// Malformed or unexpected server reply.
pub const HERALD_STATUS_PROTOCOL: herald_status = 7;
pub const HERALD_STATUS_TIMEOUT: herald_status = 8;
/// Connection lost, file unreadable.
pub const HERALD_STATUS_IO: herald_status = 9;
pub const HERALD_STATUS_CANCELLED: herald_status = 10;
/// The client is being freed.
pub const HERALD_STATUS_SHUTDOWN: herald_status = 11;
/// Mailbox, message or op id unknown.
pub const HERALD_STATUS_NOT_FOUND: herald_status = 12;
/// The server lacks a needed extension.
pub const HERALD_STATUS_UNSUPPORTED: herald_status = 13;
/// A bug inside herald, caught at the boundary.
pub const HERALD_STATUS_PANIC: herald_status = 14;
/// Queue full, message over the server's SIZE.
pub const HERALD_STATUS_LIMIT: herald_status = 15;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(e: &Error) {
    let text = crate::result::c_string(&e.detail);
    LAST_ERROR.with(|l| *l.borrow_mut() = text);
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Runs an export that returns a status: `Ok` becomes `HERALD_STATUS_OK`, an
/// error its status (its detail kept for `herald_last_error`), a panic
/// `HERALD_STATUS_PANIC`.
pub(crate) fn status_boundary(f: impl FnOnce() -> Result<()>) -> herald_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => HERALD_STATUS_OK,
        Ok(Err(e)) => {
            set_last_error(&e);
            e.status.code()
        }
        Err(p) => {
            set_last_error(&Error::new(
                Status::Panic,
                format!("internal error: {}", panic_text(&*p)),
            ));
            HERALD_STATUS_PANIC
        }
    }
}

/// Runs an export that returns a value; a panic gives `default`.
pub(crate) fn boundary<T>(default: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            set_last_error(&Error::new(
                Status::Panic,
                format!("internal error: {}", panic_text(&*p)),
            ));
            default
        }
    }
}

/// A C string argument as UTF-8; NULL or invalid UTF-8 is INVALID_ARGUMENT.
pub(crate) fn arg_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string that outlives the call.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// An optional C string argument: NULL is `None`.
pub(crate) fn arg_opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        arg_str(p, what).map(Some)
    }
}

/// A byte buffer argument; NULL is allowed only when `len` is 0.
pub(crate) fn arg_bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller passes `len` readable bytes that outlive the call.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// An optional out-param: NULL is `None`.
pub(crate) fn opt_out<'a, T>(p: *mut T) -> Option<&'a mut T> {
    // SAFETY: the caller passes a writable T or NULL.
    unsafe { p.as_mut() }
}

/// An array of `n` C strings, each UTF-8; NULL anywhere is INVALID_ARGUMENT.
pub(crate) fn arg_str_array<'a>(p: *const *const c_char, n: usize, what: &str) -> Result<Vec<&'a str>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller passes `n` string pointers that outlive the call.
    let ptrs = unsafe { std::slice::from_raw_parts(p, n) };
    ptrs.iter()
        .enumerate()
        .map(|(i, s)| arg_str(*s, &format!("{what}[{i}]")))
        .collect()
}

/// An out-param; NULL is INVALID_ARGUMENT.
pub(crate) fn arg_out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: the caller passes a writable T or NULL.
    unsafe { p.as_mut() }.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// Ties an opaque C handle type to the Rust value it boxes, so handles are
/// made, borrowed and freed one way only.
pub(crate) trait BoxHandle: Sized {
    type Rust;
    const NAME: &'static str;

    fn into_handle(v: Self::Rust) -> *mut Self {
        Box::into_raw(Box::new(v)) as *mut Self
    }

    fn arg<'a>(p: *const Self) -> Result<&'a Self::Rust> {
        // SAFETY: a non-NULL handle came from `into_handle` and is not freed yet (API contract).
        unsafe { (p as *const Self::Rust).as_ref() }
            .ok_or_else(|| Error::invalid(format!("{} is NULL", Self::NAME)))
    }

    fn arg_mut<'a>(p: *mut Self) -> Result<&'a mut Self::Rust> {
        // SAFETY: as in `arg`; the caller does not use the handle from two threads at once.
        unsafe { (p as *mut Self::Rust).as_mut() }
            .ok_or_else(|| Error::invalid(format!("{} is NULL", Self::NAME)))
    }

    /// Frees a handle; NULL is a no-op.
    fn free(p: *mut Self) {
        if !p.is_null() {
            // SAFETY: the handle came from `into_handle` and is freed once (API contract).
            drop(unsafe { Box::from_raw(p as *mut Self::Rust) });
        }
    }
}

/// Static text for a status code; never NULL, also for unknown codes.
#[no_mangle]
pub extern "C" fn herald_status_str(s: herald_status) -> *const c_char {
    boundary(c"unknown status code".as_ptr(), || Status::text_c(s).as_ptr())
}

/// herald's version, "MAJOR.MINOR.PATCH"; equals `HERALD_VERSION` in the header.
#[no_mangle]
pub extern "C" fn herald_version() -> *const c_char {
    boundary(std::ptr::null(), || {
        static V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes())
        {
            Ok(v) => v,
            Err(_) => panic!("version has a NUL"),
        };
        V.as_ptr()
    })
}

/// The detail of the last call on this thread that returned an error status
/// ("" when none): why `herald_client_new` or a setter refused its input.
/// Valid until the next herald call on this thread.
#[no_mangle]
pub extern "C" fn herald_last_error() -> *const c_char {
    boundary(c"".as_ptr(), || LAST_ERROR.with(|l| l.borrow().as_ptr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_turns_a_panic_into_a_status() {
        let s = status_boundary(|| panic!("boom"));
        assert_eq!(s, HERALD_STATUS_PANIC);
        // SAFETY: herald_last_error returns a valid C string.
        let detail = unsafe { CStr::from_ptr(herald_last_error()) }.to_str().unwrap();
        assert!(detail.contains("boom"), "{detail}");
    }
}
