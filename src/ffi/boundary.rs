//! The one boundary every export runs its body in: [`ffi_boundary!`].
//!
//! The body is a closure returning `Result<_>`, so a NULL or bad argument is
//! an early `?` that cannot forget to return. What C then gets follows the
//! export's return type ([`Outcome`], [`Fallback`]):
//!
//! | body gives        | C gets on `Ok(v)` | on `Err(e)`      | on a panic        |
//! |-------------------|-------------------|------------------|-------------------|
//! | `Result<()>`      | HERALD_STATUS_OK  | `e`'s status     | HERALD_STATUS_PANIC |
//! | `Result<*T>`      | `v`               | NULL             | NULL              |
//! | `Result<usize/u64>` | `v`             | 0                | 0                 |
//! | `Result<i64>` (a wakeup handle) | `v` | -1               | -1                |
//!
//! and in every failing case `herald_last_error()` says why. Exports that
//! promise never to return NULL give their own fallback
//! (`ffi_boundary!(fallback = c"".as_ptr(); ...)`). A `*_free` returns
//! nothing: `ffi_boundary!(void; ...)` only catches a panic (and records it).
//!
//! Being a macro inside the function body, the boundary leaves cbindgen
//! plain `extern "C" fn`s to read.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::herald_status;
use crate::status::codes::{HERALD_STATUS_OK, HERALD_STATUS_PANIC};
use crate::status::{Error, Result, Status};

/// Runs an export's body inside the panic boundary; see the module doc.
macro_rules! ffi_boundary {
    (void; $($body:tt)*) => {
        $crate::ffi::boundary::run_void(|| { $($body)* })
    };
    (fallback = $fallback:expr; $($body:tt)*) => {
        $crate::ffi::boundary::run_or($fallback, || -> $crate::status::Result<_> { $($body)* })
    };
    ($($body:tt)*) => {
        $crate::ffi::boundary::run(|| -> $crate::status::Result<_> { $($body)* })
    };
}
pub(crate) use ffi_boundary;

/// The value an export returns when it cannot give a real one: the
/// fallback follows the return type. (`u32` has none on purpose: it is
/// `herald_status`, whose failures are statuses, not a fixed value.)
pub(crate) trait Fallback {
    /// NULL, 0 or -1.
    fn fallback() -> Self;
}

impl<T> Fallback for *const T {
    fn fallback() -> Self {
        std::ptr::null()
    }
}

impl<T> Fallback for *mut T {
    fn fallback() -> Self {
        std::ptr::null_mut()
    }
}

/// A count.
impl Fallback for usize {
    fn fallback() -> Self {
        0
    }
}

/// A UID or number field.
impl Fallback for u64 {
    fn fallback() -> Self {
        0
    }
}

/// A wakeup handle (fd or HANDLE): -1 is never a valid one.
impl Fallback for i64 {
    fn fallback() -> Self {
        -1
    }
}

/// What an export's body gives back, and what C gets for it.
pub(crate) trait Outcome {
    /// The C return type.
    type C;
    /// The value for C; an error's detail is recorded for `herald_last_error`.
    fn into_c(self) -> Self::C;
    /// What C gets when the body panicked.
    fn panicked() -> Self::C;
}

/// A status export.
impl Outcome for Result<()> {
    type C = herald_status;
    fn into_c(self) -> herald_status {
        match self {
            Ok(()) => HERALD_STATUS_OK,
            Err(e) => {
                super::set_last_error(&e);
                e.status.code()
            }
        }
    }
    fn panicked() -> herald_status {
        HERALD_STATUS_PANIC
    }
}

/// A value export.
impl<T: Fallback> Outcome for Result<T> {
    type C = T;
    fn into_c(self) -> T {
        self.unwrap_or_else(|e| {
            super::set_last_error(&e);
            T::fallback()
        })
    }
    fn panicked() -> T {
        T::fallback()
    }
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

/// Records a caught panic for `herald_last_error`.
fn record_panic(p: &(dyn std::any::Any + Send)) {
    super::set_last_error(&Error::new(
        Status::Panic,
        format!("internal error: {}", panic_text(p)),
    ));
}

/// The body of [`ffi_boundary!`]: `f`'s outcome for C, or on a panic the
/// return type's fallback.
pub(crate) fn run<R: Outcome>(f: impl FnOnce() -> R) -> R::C {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.into_c(),
        Err(p) => {
            record_panic(&*p);
            R::panicked()
        }
    }
}

/// As [`run`] for an export with a fallback of its own (one that is never NULL).
pub(crate) fn run_or<T>(fallback: T, f: impl FnOnce() -> Result<T>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            super::set_last_error(&e);
            fallback
        }
        Err(p) => {
            record_panic(&*p);
            fallback
        }
    }
}

/// As [`run`] for an export that returns nothing.
pub(crate) fn run_void(f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        record_panic(&*p);
    }
}
