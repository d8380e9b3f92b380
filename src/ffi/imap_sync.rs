//! IMAP sync state for C: STATUS without selecting, fetch of what changed
//! (CONDSTORE, QRESYNC), the fields that carry UIDVALIDITY, UIDNEXT,
//! MODSEQs and folder roles, and UID sets bound to a UIDVALIDITY.
//!
//! Cached UIDs and a changed UIDVALIDITY: every `uid_set` argument (fetch,
//! fetch_changed, store, copy, move) may end in `;UIDVALIDITY=n` (as IMAP
//! URLs write it, RFC 5092): "1:5,7;UIDVALIDITY=3857529045". The op then
//! runs only while the mailbox's UIDVALIDITY is n; if it is not, the op
//! sends no UID, completes with HERALD_STATUS_NOT_FOUND and a detail that
//! names both values, and its result has no items but the mailbox's new
//! state (`herald_result_mailbox_int(r, HERALD_FIELD_UIDVALIDITY)` differs
//! from n: a missing mailbox has no result).

use std::ffi::{c_char, c_void};

use super::client::{herald_client, submit};
use super::completion::{herald_callback, herald_op};
use super::herald_status;
use super::imap::{arg_slice, imap, mailbox_arg};
use super::{arg_str, arg_str_array};
use crate::imap::{args, sync, ImapOp};
use crate::status::{Error, Result};

/// `parts` bit of `herald_imap_fetch_async`: each message's CONDSTORE
/// mod-sequence (HERALD_FIELD_MODSEQ; the server needs CONDSTORE).
pub const HERALD_FETCH_MODSEQ: u32 = 128;

/// int: a mailbox's UIDVALIDITY. On every fetch and search item, on
/// append and copy/move items (the target's, from APPENDUID/COPYUID), on
/// STATUS items, and as a mailbox field of every op that selects.
///
/// Cached UIDs: every `uid_set` argument (fetch, fetch_changed, store,
/// copy, move) may end in ";UIDVALIDITY=n" (as IMAP URLs write it, RFC
/// 5092), e.g. "1:5,7;UIDVALIDITY=3857529045". The op then runs only while
/// the mailbox's UIDVALIDITY is n. If it is not (the mailbox was deleted
/// and made again, or renumbered), the op sends no UID, completes with
/// HERALD_STATUS_NOT_FOUND and a detail naming both values, and its result
/// has no items but mailbox fields with the new state:
/// `herald_result_mailbox_int(r, HERALD_FIELD_UIDVALIDITY)` != n tells it
/// from a missing mailbox (which has no result).
pub const HERALD_FIELD_UIDVALIDITY: u32 = 12;
/// int: the UID the mailbox's next message will get (STATUS; mailbox field
/// of ops that select: as of the SELECT).
pub const HERALD_FIELD_UIDNEXT: u32 = 13;
/// int: a mailbox's highest CONDSTORE mod-sequence (STATUS; mailbox field
/// of ops that select; IDLE notifications); absent without CONDSTORE.
pub const HERALD_FIELD_HIGHESTMODSEQ: u32 = 14;
/// int: messages in the mailbox (STATUS).
pub const HERALD_FIELD_MESSAGES: u32 = 15;
/// int: messages without \Seen (STATUS).
pub const HERALD_FIELD_UNSEEN: u32 = 16;
/// int: 1 on an item whose uid was expunged (fetch_changed with QRESYNC,
/// IDLE notifications).
pub const HERALD_FIELD_VANISHED: u32 = 17;
/// int: a message's CONDSTORE mod-sequence (HERALD_FETCH_MODSEQ,
/// fetch_changed, IDLE flag changes).
pub const HERALD_FIELD_MODSEQ: u32 = 18;
/// str: a mailbox's SPECIAL-USE roles (RFC 6154) on list items: "\Sent",
/// "\Trash", "\Drafts", "\Junk", "\Archive", "\All", "\Flagged", space
/// separated; absent when it has none.
pub const HERALD_FIELD_SPECIAL_USE: u32 = 19;
/// int: the sequence number of an expunged message (IDLE notifications,
/// when the server reports EXPUNGE rather than VANISHED UIDs); each is
/// relative to the mailbox as the expunges before it in the same
/// notification left it.
pub const HERALD_FIELD_EXPUNGED: u32 = 20;
/// int: the UID a copied or moved message had in its source mailbox
/// (copy/move items, from COPYUID).
pub const HERALD_FIELD_SOURCE_UID: u32 = 60;
/// int: 1 on the first item of an IDLE notification when more changed
/// than it lists (over 10000 changes, or a change herald could not read):
/// fetch what changed (herald_imap_fetch_changed_async) to catch up.
pub const HERALD_FIELD_TRUNCATED: u32 = 61;

/// Most mailboxes one STATUS op asks about.
const MAX_STATUS: usize = 100_000;

/// A `uid_set` argument, with the UIDVALIDITY it may name.
pub(super) fn uid_set_arg(p: *const c_char) -> Result<(String, Option<u32>)> {
    let (set, v) = sync::split_uidvalidity(arg_str(p, "uid_set")?)?;
    Ok((args::uid_set(set)?, v))
}

/// METHOD (IMAP client). STATUS of `mailbox` without selecting it. Result:
/// one item (uid 0) with HERALD_FIELD_NAME and the int fields
/// HERALD_FIELD_MESSAGES, _UNSEEN, _UIDNEXT, _UIDVALIDITY and, when the
/// server has CONDSTORE, _HIGHESTMODSEQ. An unknown mailbox is
/// HERALD_STATUS_NOT_FOUND.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_status_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let mb = mailbox_arg(mailbox, "mailbox")?;
            Ok(imap(
                &mb,
                ImapOp::Status {
                    mailboxes: vec![mb.clone()],
                },
            ))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). STATUS of `n` mailboxes (`mailboxes[i]`, UTF-8
/// names; 1 to 100000) in one op, pipelined, none selected. Result: one
/// item per mailbox, in the order given, as `herald_imap_status_async`'s.
/// A mailbox the server refuses (unknown: HERALD_STATUS_NOT_FOUND) fails
/// the op with the server's reason; the result then holds the items of
/// the mailboxes before it.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_status_list_async(
    c: *mut herald_client,
    mailboxes: *const *const c_char,
    n: usize,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            if n == 0 || n > MAX_STATUS {
                return Err(Error::invalid(format!(
                    "n is {n}; one STATUS op takes 1 to {MAX_STATUS} mailboxes"
                )));
            }
            arg_slice(mailboxes, n, "mailboxes")?;
            let names = arg_str_array(mailboxes, n, "mailboxes")?
                .into_iter()
                .map(|m| args::mailbox("mailboxes", m))
                .collect::<Result<Vec<_>>>()?;
            Ok(imap("", ImapOp::Status { mailboxes: names }))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Fetches what changed in `uid_set` of `mailbox`
/// since mod-sequence `changed_since_modseq` (CONDSTORE `CHANGEDSINCE`,
/// RFC 7162): one item per message whose flags changed, in UID order, with
/// HERALD_FIELD_MODSEQ and what `parts` asks for (as
/// `herald_imap_fetch_async`); with QRESYNC, also one item per UID of the
/// set expunged since then, with HERALD_FIELD_VANISHED = 1 and no other
/// field. Every item carries HERALD_FIELD_UIDVALIDITY, and the result's
/// mailbox fields (`herald_result_mailbox_int`) the mailbox's
/// HIGHESTMODSEQ: keep it for the next call. `uid_set` may name its
/// UIDVALIDITY (see HERALD_FIELD_UIDVALIDITY). 0 as the mod-sequence asks
/// for every message. A server without CONDSTORE is
/// HERALD_STATUS_UNSUPPORTED.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn herald_imap_fetch_changed_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid_set: *const c_char,
    parts: u32,
    changed_since_modseq: u64,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let mb = mailbox_arg(mailbox, "mailbox")?;
            let (uids, uidvalidity) = uid_set_arg(uid_set)?;
            super::imap::parts_arg(parts)?;
            let op = ImapOp::FetchChanged {
                uids,
                parts,
                since: changed_since_modseq,
            };
            Ok(imap(&mb, op).expecting(uidvalidity))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::field;

    #[test]
    fn numbers_agree_with_the_engine() {
        let pairs = [
            (HERALD_FIELD_UIDVALIDITY, field::UIDVALIDITY),
            (HERALD_FIELD_UIDNEXT, field::UIDNEXT),
            (HERALD_FIELD_HIGHESTMODSEQ, field::HIGHESTMODSEQ),
            (HERALD_FIELD_MESSAGES, field::MESSAGES),
            (HERALD_FIELD_UNSEEN, field::UNSEEN),
            (HERALD_FIELD_VANISHED, field::VANISHED),
            (HERALD_FIELD_MODSEQ, field::MODSEQ),
            (HERALD_FIELD_SPECIAL_USE, field::SPECIAL_USE),
            (HERALD_FIELD_EXPUNGED, field::EXPUNGED),
            (HERALD_FIELD_SOURCE_UID, field::SOURCE_UID),
            (HERALD_FIELD_TRUNCATED, field::TRUNCATED),
            (HERALD_FETCH_MODSEQ, crate::imap::FETCH_MODSEQ),
        ];
        for (c, r) in pairs {
            assert_eq!(c, r);
        }
    }
}
