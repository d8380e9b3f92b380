//! The IMAP ops of an IMAP client: every op names its mailbox; herald
//! picks a pooled connection and SELECTs as needed, so ops from any thread
//! never mix. All inputs are checked (CR, LF and NUL are refused) and
//! copied before the call returns.

use std::ffi::{c_char, c_void};

use super::client::{herald_client, submit};
use super::completion::{herald_callback, herald_op};
use super::{arg_bytes, arg_opt_str, arg_str, herald_status};
use crate::imap::command::FlagChange;
use crate::imap::{args, ImapJob, ImapOp};
use crate::status::{Error, Result};

/// `parts` bit of `herald_imap_fetch_async`: the flags (HERALD_FIELD_FLAGS, space separated).
pub const HERALD_FETCH_FLAGS: u32 = 1;
/// `parts` bit: HERALD_FIELD_SUBJECT, _FROM, _TO, _DATE and _MESSAGE_ID from the ENVELOPE.
pub const HERALD_FETCH_ENVELOPE: u32 = 2;
/// `parts` bit: the size in bytes (HERALD_FIELD_SIZE).
pub const HERALD_FETCH_SIZE: u32 = 4;
/// `parts` bit: the header block as the item's bytes.
pub const HERALD_FETCH_HEADERS: u32 = 8;
/// `parts` bit: the whole message as the item's bytes (never marks it \Seen).
pub const HERALD_FETCH_BODY: u32 = 16;

/// `mode` of `herald_imap_store_async`: add `flags` to the messages' flags.
pub const HERALD_STORE_ADD: i32 = 1;
/// `mode` of `herald_imap_store_async`: remove `flags` from them.
pub const HERALD_STORE_REMOVE: i32 = -1;
/// `mode` of `herald_imap_store_async`: replace all their flags with `flags`.
pub const HERALD_STORE_REPLACE: i32 = 0;

/// Most messages one append may carry.
const MAX_APPEND: usize = 1_000_000;

pub(super) fn imap(mailbox: &str, op: ImapOp) -> ImapJob {
    ImapJob {
        mailbox: mailbox.to_string(),
        op,
        uidvalidity: None,
    }
}

/// An array argument of `n` elements; NULL is INVALID_ARGUMENT.
pub(super) fn arg_slice<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T]> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller passes `n` readable elements that outlive the call.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A fetch's `parts` argument: only the HERALD_FETCH_* bits.
pub(super) fn parts_arg(parts: u32) -> Result<()> {
    if parts & !crate::imap::FETCH_ALL != 0 {
        return Err(Error::invalid(format!(
            "parts {parts:#x} has bits other than HERALD_FETCH_FLAGS | _ENVELOPE | _SIZE | _HEADERS | _BODY | _PARSED | _BODYSTRUCTURE | _MODSEQ"
        )));
    }
    Ok(())
}

pub(super) fn mailbox_arg(p: *const c_char, what: &str) -> Result<String> {
    args::mailbox(what, arg_str(p, what)?)
}

/// METHOD (IMAP client). Lists the mailboxes matching `pattern` (`*` and `%`
/// are wildcards, as in IMAP LIST; "*" lists all). Result: one item per
/// mailbox, with HERALD_FIELD_NAME (UTF-8) and HERALD_FIELD_FLAGS (its
/// attributes, such as "\HasNoChildren \Sent"); uid 0. A mailbox with a
/// SPECIAL-USE role (RFC 6154: \Sent, \Trash, \Drafts, \Junk, \Archive,
/// \All, \Flagged) also has HERALD_FIELD_SPECIAL_USE.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_list_async(
    c: *mut herald_client,
    pattern: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let pattern = args::pattern(arg_str(pattern, "pattern")?)?;
            Ok(imap("", ImapOp::List { pattern }))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Creates `mailbox` (UTF-8; the server's hierarchy
/// separator, usually "/" or ".", makes children). Result: none (NULL);
/// an existing mailbox is HERALD_STATUS_REJECTED.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_create_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| Ok(imap(&mailbox_arg(mailbox, "mailbox")?, ImapOp::Create)),
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Deletes `mailbox`. Result: none (NULL); an unknown
/// mailbox is HERALD_STATUS_NOT_FOUND.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_delete_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| Ok(imap(&mailbox_arg(mailbox, "mailbox")?, ImapOp::Delete)),
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Searches `mailbox` with `criteria` in IMAP SEARCH syntax
/// (`UNSEEN FROM "bob"`). Quotes and parentheses must balance; literals,
/// CR and LF are refused (non-ASCII text in quotes is sent as UTF-8).
/// Result: the UIDs found, ascending, one item each (with
/// HERALD_FIELD_UIDVALIDITY); no match gives OK with an empty result. The
/// result's mailbox fields (`herald_result_mailbox_int`) hold the mailbox's
/// UIDVALIDITY, UIDNEXT, EXISTS and HIGHESTMODSEQ.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_search_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    criteria: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let mb = mailbox_arg(mailbox, "mailbox")?;
            let criteria = args::criteria(arg_str(criteria, "criteria")?)?;
            Ok(imap(&mb, ImapOp::Search { criteria }))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Fetches the messages of `uid_set` ("1:5,7,10:*") in `mailbox`; `parts`
/// is HERALD_FETCH_FLAGS | _ENVELOPE | _SIZE | _HEADERS | _BODY | _PARSED |
/// _BODYSTRUCTURE | _MODSEQ. Result: one
/// item per message, in UID order; its bytes are the whole message when
/// BODY was asked for, else the header block. Fetching never marks mail
/// \Seen. Each item's uid is the message's UID; its fields are those
/// `parts` asked for (HERALD_FIELD_FLAGS; _SUBJECT, _FROM, _TO, _DATE,
/// _MESSAGE_ID, and with ENVELOPE also _CC, _BCC, _REPLY_TO, _SENDER,
/// _IN_REPLY_TO, _REFERENCES, _INTERNALDATE, _DATE_UNIX; _SIZE; _MODSEQ),
/// HERALD_FIELD_UIDVALIDITY, the parsed message (`herald_result_parsed`,
/// HERALD_FETCH_PARSED) and the MIME structure (`herald_result_part`,
/// HERALD_FETCH_BODYSTRUCTURE); UIDs the mailbox lacks are left out (no
/// error). The result's mailbox fields (`herald_result_mailbox_int`) hold
/// the mailbox's state. `uid_set` may end in ";UIDVALIDITY=n": then nothing
/// is fetched unless the mailbox's UIDVALIDITY is n (HERALD_STATUS_NOT_FOUND;
/// see HERALD_FIELD_UIDVALIDITY).
/// Progress reports the bytes received so far, with total 0.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_fetch_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid_set: *const c_char,
    parts: u32,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let mb = mailbox_arg(mailbox, "mailbox")?;
            let (uids, uidvalidity) = super::imap_sync::uid_set_arg(uid_set)?;
            parts_arg(parts)?;
            Ok(imap(&mb, ImapOp::Fetch { uids, parts }).expecting(uidvalidity))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Appends `n` messages (`messages[i]`, `lens[i]` bytes each, stored
/// byte-exact) to `mailbox` in one op, with `flags` ("\\Seen", space
/// separated; NULL for none). Result: one item per message appended, its
/// UID (0 if the server lacks UIDPLUS) and, from APPENDUID, the mailbox's
/// HERALD_FIELD_UIDVALIDITY. A cancel stops between messages;
/// the cancelled completion still lists every message that reached the
/// server, and so does a completion with an error (a refusal or a lost
/// connection part way). Progress reports bytes sent of the total. `n` is
/// 1 or more; `messages` and `lens` hold `n` entries each.
///
/// A server that refuses a whole MULTIAPPEND batch for one bad message
/// (Cyrus, for a bare LF) gets that batch again one message at a time, so
/// the good ones are stored. Once any message was refused, the completion
/// is HERALD_STATUS_REJECTED (its detail names the first refused message)
/// and the result has one item per message tried, in order, each with
/// HERALD_FIELD_INDEX (its 1-based place in `messages`): a stored one with
/// its UID, a refused one with uid 0 and HERALD_FIELD_REPLY_TEXT (the
/// server's reply). A refusal of the mailbox itself (TRYCREATE, OVERQUOTA
/// ...) or of a single APPEND outside such a retry ends the op there.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn herald_imap_append_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    messages: *const *const u8,
    lens: *const usize,
    n: usize,
    flags: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let mb = mailbox_arg(mailbox, "mailbox")?;
            let flags = args::flags(arg_opt_str(flags, "flags")?.unwrap_or(""))?;
            if n == 0 {
                return Err(Error::invalid("n is 0: nothing to append"));
            }
            if n > MAX_APPEND {
                return Err(Error::invalid(format!(
                    "n is {n}; one append takes at most {MAX_APPEND}"
                )));
            }
            let ptrs = arg_slice(messages, n, "messages")?;
            let lens = arg_slice(lens, n, "lens")?;
            let mut copied = Vec::with_capacity(n);
            for (i, (&p, &len)) in ptrs.iter().zip(lens).enumerate() {
                let m = arg_bytes(p, len, &format!("messages[{i}]"))?;
                if m.is_empty() {
                    return Err(Error::invalid(format!("messages[{i}] is empty")));
                }
                if m.contains(&0) {
                    return Err(Error::invalid(format!(
                        "messages[{i}] contains a NUL byte, which IMAP cannot carry"
                    )));
                }
                copied.push(m.to_vec());
            }
            Ok(imap(
                &mb,
                ImapOp::Append {
                    messages: copied,
                    flags,
                },
            ))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Changes the flags of `uid_set` in `mailbox`:
/// `mode` HERALD_STORE_ADD (1) adds `flags` ("\Seen \Flagged", space
/// separated), HERALD_STORE_REMOVE (-1) removes them, HERALD_STORE_REPLACE
/// (0) replaces all flags with them; another mode is INVALID_ARGUMENT.
/// Result: no items; its mailbox fields hold the mailbox's state. `uid_set`
/// may end in ";UIDVALIDITY=n": nothing is stored unless the mailbox's
/// UIDVALIDITY is n (HERALD_STATUS_NOT_FOUND).
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn herald_imap_store_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid_set: *const c_char,
    mode: i32,
    flags: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let mb = mailbox_arg(mailbox, "mailbox")?;
            let (uids, uidvalidity) = super::imap_sync::uid_set_arg(uid_set)?;
            let mode = match mode {
                HERALD_STORE_ADD => FlagChange::Add,
                HERALD_STORE_REMOVE => FlagChange::Remove,
                HERALD_STORE_REPLACE => FlagChange::Replace,
                m => {
                    return Err(Error::invalid(format!(
                        "mode must be 1 (add), -1 (remove) or 0 (replace), got {m}"
                    )))
                }
            };
            let flags = args::flags(arg_str(flags, "flags")?)?;
            Ok(imap(&mb, ImapOp::Store { uids, mode, flags }).expecting(uidvalidity))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

#[allow(clippy::too_many_arguments)]
fn copy_or_move(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid_set: *const c_char,
    target: *const c_char,
    is_move: bool,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let mb = mailbox_arg(mailbox, "mailbox")?;
            let (uids, uidvalidity) = super::imap_sync::uid_set_arg(uid_set)?;
            let target = mailbox_arg(target, "target")?;
            let op = if is_move {
                ImapOp::Move { uids, target }
            } else {
                ImapOp::Copy { uids, target }
            };
            Ok(imap(&mb, op).expecting(uidvalidity))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Copies `uid_set` from `mailbox` to `target`.
/// Result: with UIDPLUS (COPYUID), one item per copy: uid = its UID in
/// `target`, HERALD_FIELD_SOURCE_UID = its UID in `mailbox`,
/// HERALD_FIELD_UIDVALIDITY = `target`'s; else no items. The mailbox
/// fields hold `mailbox`'s state. An unknown target is
/// HERALD_STATUS_NOT_FOUND or REJECTED, as the server says. `uid_set` may
/// end in ";UIDVALIDITY=n" (nothing is copied unless `mailbox` has it).
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_copy_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid_set: *const c_char,
    target: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    copy_or_move(c, mailbox, uid_set, target, false, cb, user_token, op_out)
}

/// METHOD (IMAP client). Moves `uid_set` from `mailbox` to `target`: MOVE
/// when the server offers it, else COPY, STORE \Deleted and UID EXPUNGE of
/// exactly those UIDs. Result: as `herald_imap_copy_async`'s (COPYUID
/// items). `uid_set` may end in ";UIDVALIDITY=n" (nothing is moved unless
/// `mailbox` has it).
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_move_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid_set: *const c_char,
    target: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    copy_or_move(c, mailbox, uid_set, target, true, cb, user_token, op_out)
}

/// METHOD (IMAP client). Removes the messages flagged \Deleted from
/// `mailbox`. Result: no items; its mailbox fields hold the mailbox's state.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_expunge_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| Ok(imap(&mailbox_arg(mailbox, "mailbox")?, ImapOp::Expunge)),
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Watches `mailbox` with IMAP IDLE: unlike other
/// ops, one IDLE op delivers MANY notifications and then one completion.
///
/// - Each time the mailbox changes, a notification with the op's id and
///   `user_token`, status OK and a result goes to `on_change`, on the
///   delivery thread. Its first item (uid 0) is the mailbox's state:
///   HERALD_FIELD_NAME, HERALD_FIELD_EXISTS (the message count),
///   HERALD_FIELD_UIDVALIDITY, HERALD_FIELD_HIGHESTMODSEQ (with CONDSTORE).
///   The items after it say what changed since the previous notification,
///   oldest first: an expunge (uid 0, HERALD_FIELD_EXPUNGED = its sequence
///   number) or, with QRESYNC, an expunged UID (uid, HERALD_FIELD_VANISHED =
///   1); a flag change (uid, 0 when the server did not say it, as Cyrus
///   without QRESYNC; HERALD_FIELD_INDEX, its sequence number;
///   HERALD_FIELD_FLAGS, the message's flags now; HERALD_FIELD_MODSEQ).
///   Notifications are coalesced (at most one waits for delivery; a newer
///   one takes over its change items); one lists at most 10000 changes,
///   beyond which its first item has HERALD_FIELD_TRUNCATED = 1. With `on_change` NULL the notifications are queued on the
///   client's completion queue instead (take them with `herald_client_next`
///   and free each with `herald_completion_free`), whatever `cb` is. In the
///   queue, the IDLE op's entries with status OK are notifications; its
///   final completion is never OK.
/// - The op's one final completion goes to `cb` (or the queue when `cb` is
///   NULL), as for every op. It comes only when `herald_cancel` stops the
///   IDLE (cancelled), when the client is freed, or at once with an error
///   when the mailbox cannot be watched at all (no such mailbox, no IDLE,
///   refused login). No notification comes after it.
///
/// IDLE is renewed before servers drop it, and after a lost connection
/// herald reconnects and goes on watching. The op holds a pooled connection
/// (it counts toward MAX_CONNECTIONS) and lends it to other ops when they
/// would wait otherwise. `herald_client_flush` does not wait for it.
/// `*op_out` is required (NULL is INVALID_ARGUMENT).
#[no_mangle]
pub extern "C" fn herald_imap_idle_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    on_change: herald_callback,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| Ok(imap(&mailbox_arg(mailbox, "mailbox")?, ImapOp::Idle)),
        Some(on_change),
        cb,
        user_token,
        op_out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_parts_agree_with_the_engine() {
        use crate::imap::*;
        assert_eq!(
            [
                HERALD_FETCH_FLAGS,
                HERALD_FETCH_ENVELOPE,
                HERALD_FETCH_SIZE,
                HERALD_FETCH_HEADERS,
                HERALD_FETCH_BODY
            ],
            [FETCH_FLAGS, FETCH_ENVELOPE, FETCH_SIZE, FETCH_HEADERS, FETCH_BODY]
        );
    }
}
