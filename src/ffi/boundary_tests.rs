//! The boundary's promises, export by export: every value-returning export
//! given NULL returns its type's fallback and says why in
//! `herald_last_error()`, naming the argument; status exports give
//! INVALID_ARGUMENT likewise; a panic gives the fallback and its text.

use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};

use super::boundary::run;
use super::client::*;
use super::completion::*;
use super::handle;
use super::imap::*;
use super::message::*;
use super::options::*;
use super::pop3::*;
use super::result::*;
use super::smtp::*;
use super::*;
use crate::result::{ResultData, ResultItem};
use crate::status::{Error, Result};

fn last_error() -> String {
    // SAFETY: herald_last_error returns a valid C string.
    unsafe { CStr::from_ptr(herald_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

/// Clears the thread's detail, so each check sees only its own call's.
fn clear() {
    status_of(|| Err(Error::invalid("-")));
}

fn status_of(f: impl FnOnce() -> Result<()>) -> herald_status {
    run(f)
}

/// `got` is `want`, and the call's detail mentions `arg`.
#[track_caller]
fn check<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T, arg: &str) {
    assert_eq!(got, want, "{what}");
    let e = last_error();
    assert!(
        e.contains(arg),
        "{what}: herald_last_error() is {e:?}, not about {arg:?}"
    );
}

#[test]
fn every_value_export_sets_last_error_on_null() {
    let mut len = 7usize;
    clear();
    check(
        "herald_client_next",
        herald_client_next(null_mut(), 0),
        null_mut(),
        "client is NULL",
    );
    clear();
    check(
        "herald_client_wakeup_handle",
        herald_client_wakeup_handle(null()),
        -1,
        "client is NULL",
    );
    clear();
    check(
        "herald_result_count",
        herald_result_count(null()),
        0,
        "result is NULL",
    );
    clear();
    check(
        "herald_result_uid",
        herald_result_uid(null(), 0),
        0,
        "result is NULL",
    );
    clear();
    check(
        "herald_result_str",
        herald_result_str(null(), 0, HERALD_FIELD_NAME),
        null(),
        "result is NULL",
    );
    clear();
    check(
        "herald_result_int",
        herald_result_int(null(), 0, HERALD_FIELD_SIZE),
        0,
        "result is NULL",
    );
    clear();
    check(
        "herald_result_bytes",
        herald_result_bytes(null(), 0, &mut len),
        null(),
        "result is NULL",
    );
    assert_eq!(len, 0, "*len is 0 when there are no bytes");
    clear();
    check(
        "herald_options_new",
        herald_options_new(99),
        null_mut(),
        "unknown protocol 99",
    );
}

/// A status export called with fixed arguments.
type Call<'a> = Box<dyn Fn() -> herald_status + 'a>;

#[test]
fn every_status_export_sets_last_error_on_a_null_handle() {
    let mut op: herald_op = 0;
    let op_out: *mut herald_op = &mut op;
    let s = c"x".as_ptr();
    let uidls = [s];
    let mut bytes: *mut u8 = null_mut();
    let mut n = 0usize;
    let mut client: *mut herald_client = null_mut();
    let client_out: *mut *mut herald_client = &mut client;
    let bytes_out: *mut *mut u8 = &mut bytes;
    let n_out: *mut usize = &mut n;
    let m: *mut herald_message = null_mut();
    let o: *mut herald_options = null_mut();
    let c: *mut herald_client = null_mut();
    let calls: Vec<(&str, Call, &str)> = vec![
        (
            "herald_options_set_str",
            Box::new(|| herald_options_set_str(o, HERALD_OPT_HOST, s)),
            "options is NULL",
        ),
        (
            "herald_options_set_int",
            Box::new(|| herald_options_set_int(o, HERALD_OPT_PORT, 25)),
            "options is NULL",
        ),
        (
            "herald_client_new",
            Box::new(move || herald_client_new(o, client_out)),
            "options is NULL",
        ),
        (
            "herald_message_set_from",
            Box::new(|| herald_message_set_from(m, s)),
            "message is NULL",
        ),
        (
            "herald_message_add_to",
            Box::new(|| herald_message_add_to(m, s)),
            "message is NULL",
        ),
        (
            "herald_message_add_header",
            Box::new(|| herald_message_add_header(m, s, s)),
            "message is NULL",
        ),
        (
            "herald_message_to_bytes",
            Box::new(move || herald_message_to_bytes(m, bytes_out, n_out)),
            "message is NULL",
        ),
        (
            "herald_cancel",
            Box::new(|| herald_cancel(c, 1)),
            "client is NULL",
        ),
        ("herald_wait", Box::new(|| herald_wait(c, 1, 0)), "client is NULL"),
        (
            "herald_client_flush",
            Box::new(|| herald_client_flush(c, 0)),
            "client is NULL",
        ),
        (
            "herald_client_set_progress",
            Box::new(|| herald_client_set_progress(c, None)),
            "client is NULL",
        ),
        (
            "herald_client_set_log",
            Box::new(|| herald_client_set_log(c, 0, None, null_mut())),
            "client is NULL",
        ),
        (
            "herald_send_async",
            Box::new(move || herald_send_async(c, m, None, null_mut(), op_out)),
            "client is NULL",
        ),
        (
            "herald_imap_list_async",
            Box::new(move || herald_imap_list_async(c, s, None, null_mut(), op_out)),
            "client is NULL",
        ),
        (
            "herald_pop3_list_async",
            Box::new(move || herald_pop3_list_async(c, None, null_mut(), op_out)),
            "client is NULL",
        ),
        (
            "herald_pop3_delete_async",
            Box::new(move || herald_pop3_delete_async(c, uidls.as_ptr(), 1, None, null_mut(), op_out)),
            "client is NULL",
        ),
    ];
    for (what, call, arg) in calls {
        clear();
        check(what, call(), HERALD_STATUS_INVALID_ARGUMENT, arg);
    }
    // A NULL argument other than the handle is named too.
    let o = herald_options_new(HERALD_PROTOCOL_SMTP);
    clear();
    check(
        "herald_options_set_str(value NULL)",
        herald_options_set_str(o, HERALD_OPT_HOST, null()),
        HERALD_STATUS_INVALID_ARGUMENT,
        "value is NULL",
    );
    clear();
    check(
        "herald_client_new(out NULL)",
        herald_client_new(o, null_mut()),
        HERALD_STATUS_INVALID_ARGUMENT,
        "out is NULL",
    );
    herald_options_free(o);
}

#[test]
fn result_lookups_that_find_nothing_keep_their_values_and_say_why() {
    let data = ResultData::new(vec![ResultItem::new(42)
        .with_str(HERALD_FIELD_NAME, "INBOX")
        .with_int(HERALD_FIELD_SIZE, 7)
        .with_bytes(b"hi".to_vec())]);
    let r: *const herald_result = handle::borrow(&data);
    assert_eq!(herald_result_count(r), 1);
    assert_eq!(herald_result_uid(r, 0), 42);
    // SAFETY: a found field is a NUL-terminated string owned by `data`.
    assert_eq!(
        unsafe { CStr::from_ptr(herald_result_str(r, 0, HERALD_FIELD_NAME)) },
        c"INBOX"
    );
    assert_eq!(herald_result_int(r, 0, HERALD_FIELD_SIZE), 7);
    let mut len = 0;
    assert!(!herald_result_bytes(r, 0, &mut len).is_null());
    assert_eq!(len, 2);

    clear();
    check(
        "uid out of range",
        herald_result_uid(r, 1),
        0,
        "index 1 is out of range",
    );
    clear();
    check(
        "str out of range",
        herald_result_str(r, 5, HERALD_FIELD_NAME),
        null(),
        "index 5 is out of range",
    );
    clear();
    check(
        "str absent",
        herald_result_str(r, 0, HERALD_FIELD_SUBJECT),
        null(),
        "no field 2",
    );
    clear();
    check(
        "int absent",
        herald_result_int(r, 0, HERALD_FIELD_EXISTS),
        0,
        "no field 9",
    );
    clear();
    check(
        "int out of range",
        herald_result_int(r, 3, HERALD_FIELD_SIZE),
        0,
        "index 3 is out of range",
    );
    let empty = ResultData::new(vec![ResultItem::new(0)]);
    let e: *const herald_result = handle::borrow(&empty);
    clear();
    len = 9;
    check(
        "bytes absent",
        herald_result_bytes(e, 0, &mut len),
        null(),
        "no bytes",
    );
    assert_eq!(len, 0);
}

#[test]
fn a_panic_gives_the_return_types_fallback_and_its_text() {
    clear();
    check(
        "status",
        run(|| -> Result<()> { panic!("boom 1") }),
        HERALD_STATUS_PANIC,
        "boom 1",
    );
    clear();
    check(
        "pointer",
        run(|| -> Result<*const c_char> { panic!("boom 2") }),
        null(),
        "boom 2",
    );
    clear();
    check(
        "count",
        run(|| -> Result<usize> { panic!("boom 3") }),
        0,
        "boom 3",
    );
    clear();
    check("uid", run(|| -> Result<u64> { panic!("boom 4") }), 0, "boom 4");
    clear();
    check(
        "wakeup handle",
        run(|| -> Result<i64> { panic!("boom 5") }),
        -1,
        "boom 5",
    );
    clear();
    super::boundary::run_void(|| panic!("boom 6"));
    assert!(last_error().contains("boom 6"));
    clear();
    let never_null = super::boundary::run_or(c"".as_ptr(), || -> Result<*const c_char> { panic!("boom 7") });
    check("never NULL", never_null.is_null(), false, "boom 7");
}

#[test]
fn never_null_exports_stay_never_null() {
    assert!(!herald_status_str(9999).is_null());
    assert!(!herald_last_error().is_null());
    assert!(!herald_version().is_null());
    // SAFETY: static text.
    assert_eq!(
        unsafe { CStr::from_ptr(herald_status_str(9999)) },
        c"unknown status code"
    );
}
