//! Streaming IMAP fetch: messages delivered one by one as they arrive
//! (`herald_imap_fetch_stream_async`) or written to a directory
//! (`herald_imap_fetch_to_dir_async`), with bounded memory.

use std::ffi::{c_char, c_void};

use super::boundary::ffi_boundary;
use super::client::{herald_client, submit};
use super::completion::{herald_callback, herald_completion, herald_op};
use super::result::herald_result;
use super::{arg_str, handle, herald_status};
use crate::imap::{args, ImapJob, ImapOp};
use crate::result::field;
use crate::status::codes::HERALD_STATUS_OK;
use crate::status::{Error, Result};

/// int: a 1-based position. On an item of a streaming fetch, its order of
/// arrival (1, 2, 3 ...); on an item of a failed bulk append's result, the
/// message's place in the `messages` array; on a flag change of an IDLE
/// notification, the message's sequence number.
pub const HERALD_FIELD_INDEX: u32 = 50;
/// int: how many items a streaming fetch delivered (its final completion's
/// one result item).
pub const HERALD_FIELD_COUNT: u32 = 51;
/// Most items of one streaming fetch that herald hands out and the caller
/// has not yet let go of (an item callback that has not returned, items
/// waiting in the completion queue). At this bound herald stops reading
/// from the server until the caller catches up.
pub const HERALD_STREAM_MAX_HELD_ITEMS: u32 = 16;
/// Most message bytes in those items (2 MiB; one item always passes, however large).
pub const HERALD_STREAM_MAX_HELD_BYTES: u32 = 2_097_152;

fn job(
    mailbox: *const c_char,
    uid_set: *const c_char,
    op: impl FnOnce(String) -> Result<ImapOp>,
) -> Result<ImapJob> {
    let mailbox = args::mailbox("mailbox", arg_str(mailbox, "mailbox")?)?;
    let (uids, uidvalidity) = super::imap_sync::uid_set_arg(uid_set)?;
    Ok(ImapJob {
        mailbox,
        uidvalidity,
        op: op(uids)?,
    })
}

/// METHOD (IMAP client). Fetches the messages of `uid_set` in `mailbox` as
/// `herald_imap_fetch_async` does (same `parts`, same item fields and
/// bytes), but hands each message on as it arrives instead of gathering
/// them: a mailbox of any size is read with bounded memory.
///
/// - **Items.** Each message becomes one *item*: a `herald_completion` with
///   the op's id and `user_token`, status OK and a result of exactly one
///   item (the message: uid, fields, bytes, and HERALD_FIELD_INDEX = 1, 2,
///   3 ... in order of arrival, usually ascending UID). Items go to
///   `on_item`, on the client's delivery thread, one call at a time, in
///   order; the item and everything it points to are valid only during the
///   call (copy what you keep). With `on_item` NULL, items are queued on
///   the client's completion queue instead (take them with
///   `herald_client_next`, free each with `herald_completion_free`),
///   whatever `cb` is. Items are not completions: `herald_completion_is_item`
///   tells them apart in the queue.
/// - **The final completion** comes exactly once, after the last item, to
///   `cb` (or the queue when `cb` is NULL): status OK when the whole set
///   was fetched, else the failure. Its result (also on failure or cancel)
///   is one item, uid 0, with HERALD_FIELD_COUNT = the number of items
///   delivered. No item ever comes after it.
/// - **Backpressure.** herald holds at most HERALD_STREAM_MAX_HELD_ITEMS
///   items and HERALD_STREAM_MAX_HELD_BYTES of message bytes that the
///   caller has not let go of (an `on_item` call that has not returned, or
///   an item still in the queue: one taken with `herald_client_next` is the
///   caller's). Beyond that herald pauses reading from the server until the
///   caller catches up; so its memory for the op stays within those bytes
///   plus the message being read (at most MAX_MESSAGE_BYTES), however large
///   the mailbox and however slow the caller. A queue user who never takes
///   items holds the op until OP_TIMEOUT_MS or a cancel.
/// - **Cancel.** `herald_cancel` shuts the connection down. No item is
///   handed on after it returned; those handed on before (at most the
///   bound above) are still delivered, then the final completion
///   (cancelled, with their count). The same holds for OP_TIMEOUT_MS.
///
/// The delivery thread runs every callback of the client, so a slow
/// `on_item` also delays other ops' completions. `*op_out` is required
/// (NULL is INVALID_ARGUMENT); on an error status no item and no
/// completion come, and `herald_last_error()` says why.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn herald_imap_fetch_stream_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid_set: *const c_char,
    parts: u32,
    on_item: herald_callback,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            job(mailbox, uid_set, |uids| {
                super::imap::parts_arg(parts)?;
                Ok(ImapOp::FetchStream { uids, parts })
            })
        },
        Some(on_item),
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (IMAP client). Fetches the whole messages of `uid_set` in
/// `mailbox` into the existing directory `dir` (UTF-8 path), one file per
/// message, each written as it arrives: `<dir>/<UID>.eml` holds the
/// message byte for byte (for example `dir/4711.eml`). Each file is written
/// under a hidden temp name (`.<UID>.eml.<op>.part`) and renamed to its
/// name only once it is complete, so a `*.eml` file is never a partial
/// message; a file of the same name is replaced. Files are not fsynced.
/// Fetching never marks mail \Seen. herald holds one message at a time,
/// and the list of files for the result (about 200 bytes per file).
///
/// Result, on the one completion: one item per file written, in order of
/// arrival: uid, HERALD_FIELD_NAME (the file's path) and HERALD_FIELD_SIZE
/// (its bytes). A failed or cancelled fetch lists the files written before
/// it stopped (they stay; no temp file is left behind). A `dir` that does
/// not exist is HERALD_STATUS_IO on the completion; a failed write is IO.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_imap_fetch_to_dir_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid_set: *const c_char,
    dir: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            job(mailbox, uid_set, |uids| {
                let dir = arg_str(dir, "dir")?;
                if dir.is_empty() {
                    return Err(Error::invalid("dir is empty"));
                }
                Ok(ImapOp::FetchToDir {
                    uids,
                    dir: dir.to_string(),
                })
            })
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

fn completion_arg<'a>(c: *const herald_completion) -> Result<&'a herald_completion> {
    // SAFETY: a non-NULL completion herald handed out is valid (API contract).
    unsafe { c.as_ref() }.ok_or_else(|| Error::invalid("completion is NULL"))
}

/// METHOD. 1 if `c` is an item of a streaming fetch
/// (`herald_imap_fetch_stream_async`), 0 if it is a completion (or NULL,
/// the reason then in `herald_last_error()`). An item has status OK and a
/// result whose item 0 carries HERALD_FIELD_INDEX; no final completion
/// does. For completions and items herald handed out (in a callback or
/// from `herald_client_next`).
#[no_mangle]
pub extern "C" fn herald_completion_is_item(c: *const herald_completion) -> i32 {
    ffi_boundary! {
        fallback = 0;
        let c = completion_arg(c)?;
        if c.status != HERALD_STATUS_OK || c.result.is_null() {
            return Ok(0);
        }
        let r = handle::arg::<herald_result>(c.result)?;
        Ok(i32::from(
            r.items.first().and_then(|i| i.int_field(field::INDEX)).is_some(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_agree_with_the_engine() {
        assert_eq!(
            [HERALD_FIELD_INDEX, HERALD_FIELD_COUNT],
            [field::INDEX, field::COUNT]
        );
        assert_eq!(
            HERALD_STREAM_MAX_HELD_ITEMS as usize,
            crate::imap::stream_bounds().0
        );
        assert_eq!(
            HERALD_STREAM_MAX_HELD_BYTES as usize,
            crate::imap::stream_bounds().1
        );
    }

    #[test]
    fn null_is_no_item() {
        assert_eq!(herald_completion_is_item(std::ptr::null()), 0);
    }
}
