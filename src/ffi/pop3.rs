//! POP3: `herald_pop3_*_async` on POP3 clients. Messages are named by their
//! UIDL, stable across sessions; message numbers (the results' uid) hold
//! for one session only.

use std::ffi::{c_char, c_void};

use super::client::{herald_client, submit};
use super::completion::{herald_callback, herald_op};
use super::{arg_str, arg_str_array, herald_status};
use crate::client::Client;
use crate::options::Protocol;
use crate::pop3::uidl::{check_delete_count, check_uidl};
use crate::pop3::Pop3Job;
use crate::status::{Error, Result};

/// A UIDL argument, checked as POP3 requires ([`check_uidl`]).
fn uidl_arg(p: *const c_char, what: &str) -> Result<String> {
    let u = arg_str(p, what)?;
    check_uidl(u, what)?;
    Ok(u.to_string())
}

/// A POP3 job for `client`, refusing at submit what can never run.
fn pop3_work(client: &Client, job: Pop3Job) -> Result<Pop3Job> {
    if client.options().protocol == Protocol::Pop3 && client.options().username.is_none() {
        return Err(Error::invalid(
            "a POP3 client needs USERNAME (and PASSWORD or OAUTH2_TOKEN)",
        ));
    }
    Ok(job)
}

/// METHOD (POP3 client). Lists the maildrop as it is when the op runs. Result: one item per
/// message in message-number order: uid = the message number in this
/// session, `HERALD_FIELD_NAME` = the UIDL, `HERALD_FIELD_SIZE` = octets.
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_pop3_list_async(
    c: *mut herald_client,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |client| pop3_work(client, Pop3Job::List),
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (POP3 client). Retrieves the message named `uidl`, byte-exact (dot-unstuffed, CRLF
/// kept). Result: one item: uid = message number, `HERALD_FIELD_NAME` = the
/// UIDL, `HERALD_FIELD_SIZE` = octets as the server lists them, bytes = the
/// message. `HERALD_STATUS_NOT_FOUND` when the maildrop has no such UIDL,
/// `HERALD_STATUS_LIMIT` for a message over 1 GiB (results live in memory).
/// Retrieve and top ops queued together are pipelined when the server
/// offers PIPELINING.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_pop3_retrieve_async(
    c: *mut herald_client,
    uidl: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |client| {
            let uidl = uidl_arg(uidl, "uidl")?;
            pop3_work(client, Pop3Job::Retrieve { uidl, parse: false })
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (POP3 client). As `herald_pop3_retrieve_async`, and the item
/// also holds the parsed message: `herald_result_parsed(result, 0)` gives
/// it (owned by the result), parsed on herald's worker thread before the
/// completion comes. The bytes are still the raw message.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_pop3_retrieve_parsed_async(
    c: *mut herald_client,
    uidl: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |client| {
            let uidl = uidl_arg(uidl, "uidl")?;
            pop3_work(client, Pop3Job::Retrieve { uidl, parse: true })
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (POP3 client). The header block and the first `lines` body lines of the message named
/// `uidl` (TOP). Result as for `herald_pop3_retrieve_async`, the bytes being
/// the headers, the blank line and those lines. `HERALD_STATUS_UNSUPPORTED`
/// when the server does not offer TOP.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_pop3_top_async(
    c: *mut herald_client,
    uidl: *const c_char,
    lines: u32,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |client| {
            let uidl = uidl_arg(uidl, "uidl")?;
            pop3_work(client, Pop3Job::Top { uidl, lines })
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (POP3 client). Deletes the `n` messages named in `uidls` and commits (QUIT) in one
/// session; the next op opens a new one.
///
/// - OK: the result has one item per message deleted (uid = its message
///   number in that session, `HERALD_FIELD_NAME` = the UIDL, `_SIZE`);
///   UIDLs the maildrop does not have (already deleted, never there) are
///   skipped and named in `detail`.
/// - `HERALD_STATUS_NOT_FOUND`: none of the UIDLs is in the maildrop;
///   nothing was sent.
/// - Any other error: nothing was deleted, unless `detail` says the
///   connection was lost after QUIT was sent, when the outcome is unknown.
///   A DELE the server refuses (REJECTED) unmarks the others: all or none.
///   A connection lost before QUIT deletes nothing (RFC 1939 §6).
/// - Cancelled before QUIT: nothing deleted. After QUIT was sent the server
///   commits regardless: the completion is cancelled and still carries the
///   deleted messages as its result.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_pop3_delete_async(
    c: *mut herald_client,
    uidls: *const *const c_char,
    n: usize,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |client| {
            check_delete_count(n)?;
            let uidls = arg_str_array(uidls, n, "uidls")?
                .into_iter()
                .enumerate()
                .map(|(i, u)| check_uidl(u, &format!("uidls[{i}]")).map(|()| u.to_string()))
                .collect::<Result<Vec<String>>>()?;
            pop3_work(client, Pop3Job::Delete { uidls })
        },
        None,
        cb,
        user_token,
        op_out,
    )
}
