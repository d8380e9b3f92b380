//! The C ABI. A thin layer over the Rust engine: one file per C type, every
//! export a plain `extern "C" fn` whose body runs inside the one panic/NULL
//! boundary ([`boundary`]: its fallback follows the return type and the
//! reason always goes to `herald_last_error`), so no panic ever crosses into
//! C. Handles say whether C owns or borrows them ([`handle`]).
//!
//! Conventions (see the README's "API conventions"):
//! - NULL or non-UTF-8 input gives `HERALD_STATUS_INVALID_ARGUMENT`;
//! - out-params are written only on success;
//! - `*_free(NULL)` is a no-op;
//! - the detail of the last failed call on a thread is `herald_last_error()`.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use crate::status::{Error, Result};
use boundary::ffi_boundary;
use std::cell::RefCell;
use std::ffi::{c_char, CStr};

pub mod boundary;
#[cfg(test)]
mod boundary_tests;
pub mod client;
pub mod completion;
pub mod credentials;
pub mod handle;
pub mod imap;
pub mod imap_parts;
pub mod imap_sync;
pub mod message;
pub mod options;
pub mod parsed;
pub mod pop3;
pub mod result;
pub mod smtp;
pub mod spool;
pub mod stream;
// After the others, so that the generated header keeps their order.
pub mod account;

pub use crate::status::codes::*;

/// Size of the per-thread `herald_last_error()` buffer, NUL included.
const LAST_ERROR_SIZE: usize = 4096;

thread_local! {
    /// Allocated once per thread and never moved or freed before the thread
    /// ends, so a pointer from `herald_last_error()` never dangles: a later
    /// failure rewrites the text in place.
    static LAST_ERROR: RefCell<Option<Box<[u8; LAST_ERROR_SIZE]>>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's error buffer, allocating it (all NULs) the
/// first time; `None` while the thread's locals are being destroyed (a call
/// from a C thread-exit destructor), where nothing may panic.
fn with_last_error<T>(f: impl FnOnce(&mut [u8; LAST_ERROR_SIZE]) -> T) -> Option<T> {
    LAST_ERROR
        .try_with(|l| {
            let mut l = l.borrow_mut();
            f(l.get_or_insert_with(|| Box::new([0; LAST_ERROR_SIZE])))
        })
        .ok()
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(crate) fn set_last_error(e: &Error) {
    // NULs inside the detail would cut it short in C: shown as U+FFFD.
    let detail = e.detail.replace('\0', "\u{FFFD}");
    let text = truncated(&detail, LAST_ERROR_SIZE - 1);
    with_last_error(|buf| {
        buf[..text.len()].copy_from_slice(text.as_bytes());
        buf[text.len()] = 0;
    });
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
    arg_str_iter(p, n, what)?.collect()
}

/// [`arg_str_array`]'s strings one by one, without collecting them first.
pub(crate) fn arg_str_iter<'a, 'w>(
    p: *const *const c_char,
    n: usize,
    what: &'w str,
) -> Result<impl Iterator<Item = Result<&'a str>> + 'w> {
    if n != 0 && p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller passes `n` string pointers that outlive the call.
    let ptrs: &[*const c_char] = if n == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(p, n) }
    };
    Ok(ptrs
        .iter()
        .enumerate()
        // The element's name is only formatted for an error (this runs per recipient).
        .map(move |(i, s)| arg_str(*s, what).or_else(|_| arg_str(*s, &format!("{what}[{i}]")))))
}

/// An out-param; NULL is INVALID_ARGUMENT.
pub(crate) fn arg_out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: the caller passes a writable T or NULL.
    unsafe { p.as_mut() }.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// FUNCTION. Static text for a status code ("ok", "invalid argument" ...); never NULL,
/// also for unknown codes. The text is herald's and lives forever.
#[no_mangle]
pub extern "C" fn herald_status_str(s: herald_status) -> *const c_char {
    ffi_boundary! { fallback = c"unknown status code".as_ptr();
        Ok(crate::status::Status::text_c(s).as_ptr())
    }
}

/// FUNCTION. herald's version, "MAJOR.MINOR.PATCH": equals `HERALD_VERSION` of the
/// header the library was built with. Static text, never NULL.
#[no_mangle]
pub extern "C" fn herald_version() -> *const c_char {
    static V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("version has a NUL"),
    };
    // Static text: nothing here can fail or panic at run time.
    V.as_ptr()
}

/// METHOD (per thread). The detail of the last herald call on the calling
/// thread that failed ("" before any failed): why `herald_client_new`, a
/// setter or an `*_async` call refused its input. Never NULL. herald owns the
/// text: don't free it.
///
/// The pointer is the same for the thread's whole life (a per-thread buffer
/// of 4096 bytes; longer details are cut at a UTF-8 boundary). Calls that
/// succeed leave the text alone; the next failing call on the same thread
/// rewrites it in place. So the text read through the pointer is the
/// detail of the latest failure on this thread at the time it is read, and
/// `printf("%s: %s\n", herald_status_str(f()), herald_last_error())` prints
/// f()'s own failure whichever argument C evaluates first. When f()
/// succeeded, the second string is an older failure's detail (or ""): read
/// it only when a status was not HERALD_STATUS_OK. Other threads' failures
/// never change it. Details of failed *ops* come in their completion's
/// `detail`, not here.
#[no_mangle]
pub extern "C" fn herald_last_error() -> *const c_char {
    ffi_boundary! { fallback = c"".as_ptr();
        Ok(with_last_error(|buf| buf.as_ptr() as *const c_char).unwrap_or(c"".as_ptr()))
    }
}

/// Parses a decimal version component at compile time.
const fn version_part(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut v = 0;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

/// MAJOR * 1000000 + MINOR * 1000 + PATCH of this build.
pub(crate) const VERSION_NUMBER: u32 = version_part(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
    + version_part(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
    + version_part(env!("CARGO_PKG_VERSION_PATCH"));

/// FUNCTION. herald's version as a number, MAJOR * 1000000 + MINOR * 1000 + PATCH:
/// equals `HERALD_VERSION_NUMBER` of the header the library was built with.
/// Compare the two at startup to catch a program running with an older
/// library than its header (`herald_version_number() < HERALD_VERSION_NUMBER`).
#[no_mangle]
pub extern "C" fn herald_version_number() -> u32 {
    VERSION_NUMBER
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status export's boundary around `f`.
    fn status(f: impl FnOnce() -> Result<()>) -> herald_status {
        boundary::run(f)
    }

    #[test]
    fn boundary_turns_a_panic_into_a_status() {
        let s = status(|| panic!("boom"));
        assert_eq!(s, HERALD_STATUS_PANIC);
        // SAFETY: herald_last_error returns a valid C string.
        let detail = unsafe { CStr::from_ptr(herald_last_error()) }.to_str().unwrap();
        assert!(detail.contains("boom"), "{detail}");
    }

    fn last_error_text() -> String {
        // SAFETY: herald_last_error returns a valid C string.
        unsafe { CStr::from_ptr(herald_last_error()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn last_error_pointer_is_stable_and_only_failures_change_it() {
        let p = herald_last_error();
        assert_eq!(
            status(|| Err(Error::invalid("first"))),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(herald_last_error(), p, "the buffer never moves");
        assert_eq!(last_error_text(), "first");
        assert_eq!(status(|| Ok(())), HERALD_STATUS_OK);
        assert_eq!(last_error_text(), "first", "a success leaves the text alone");
        status(|| Err(Error::invalid("second")));
        assert_eq!(herald_last_error(), p);
        assert_eq!(last_error_text(), "second");
        // Another thread's failure is its own.
        std::thread::spawn(|| status(|| Err(Error::invalid("elsewhere"))))
            .join()
            .unwrap();
        assert_eq!(last_error_text(), "second");
    }

    #[test]
    fn last_error_is_cut_at_a_character_boundary() {
        let long = "é".repeat(LAST_ERROR_SIZE);
        status(|| Err(Error::invalid(long.clone())));
        let text = last_error_text();
        assert!(text.len() < LAST_ERROR_SIZE && text.len() >= LAST_ERROR_SIZE - 2);
        assert!(long.starts_with(&text));
        status(|| Err(Error::invalid("a\0b")));
        assert_eq!(last_error_text(), "a\u{FFFD}b");
    }

    #[test]
    fn version_number_matches_the_version_string() {
        let v: Vec<u32> = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(herald_version_number(), v[0] * 1_000_000 + v[1] * 1_000 + v[2]);
    }
}
