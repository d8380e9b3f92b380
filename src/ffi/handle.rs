//! Opaque C handles and the Rust values behind them.
//!
//! Each C type says, with [`Castable::Ownership`], whether C owns the value
//! ([`Owned`]: made by a constructor, a `Box` freed by its `*_free`) or only
//! borrows it from another handle ([`Borrowed`]: a result inside its
//! completion). [`into_handle`] and [`free`] accept only owned handles, so
//! freeing a borrowed one does not compile:
//!
//! ```compile_fail
//! herald::ffi::handle::free::<herald::ffi::result::herald_result>(std::ptr::null_mut());
//! ```

use crate::status::{Error, Result};

/// C owns the handle: a `Box` made by a constructor, freed once by its `*_free`.
pub struct Owned;
/// C borrows the handle from another one, which owns it; it is never freed by itself.
pub struct Borrowed;

/// Ties an opaque C handle type to the Rust value behind its pointer.
pub trait Castable {
    /// [`Owned`] or [`Borrowed`].
    type Ownership;
    /// The Rust value a handle points at.
    type Rust;
    /// The argument's name in "`NAME` is NULL".
    const NAME: &'static str;
}

/// A handle argument as a shared reference; NULL is INVALID_ARGUMENT ("NAME is NULL").
pub(crate) fn arg<'a, C: Castable>(p: *const C) -> Result<&'a C::Rust> {
    // SAFETY: a non-NULL handle points at its live `C::Rust` (API contract:
    // it came from herald and is not freed yet, or its owner still lives).
    unsafe { (p as *const C::Rust).as_ref() }.ok_or_else(|| null::<C>())
}

/// A handle argument as a unique reference; NULL is INVALID_ARGUMENT.
/// Only owned handles are changed through.
pub(crate) fn arg_mut<'a, C: Castable<Ownership = Owned>>(p: *mut C) -> Result<&'a mut C::Rust> {
    // SAFETY: as in `arg`; the caller does not use the handle from two threads at once.
    unsafe { (p as *mut C::Rust).as_mut() }.ok_or_else(|| null::<C>())
}

fn null<C: Castable>() -> Error {
    Error::invalid(format!("{} is NULL", C::NAME))
}

/// Gives `v` to C as an owned handle.
pub fn into_handle<C: Castable<Ownership = Owned>>(v: C::Rust) -> *mut C {
    boxed_into_handle(Box::new(v))
}

/// Gives an already boxed value to C as an owned handle (for values that
/// point into themselves and so must not move again).
pub fn boxed_into_handle<C: Castable<Ownership = Owned>>(b: Box<C::Rust>) -> *mut C {
    Box::into_raw(b) as *mut C
}

/// Frees an owned handle; NULL is a no-op.
pub fn free<C: Castable<Ownership = Owned>>(p: *mut C) {
    if !p.is_null() {
        // SAFETY: the handle came from `into_handle` and is freed once (API contract).
        drop(unsafe { Box::from_raw(p as *mut C::Rust) });
    }
}

/// Shows a borrowed value to C as its handle type.
pub(crate) fn borrow<C: Castable<Ownership = Borrowed>>(v: &C::Rust) -> *const C {
    v as *const C::Rust as *const C
}
