//! The durable outbox of SMTP clients (`HERALD_OPT_SPOOL_DIR`): sending
//! with a stable id, and recovering what a crashed client left.

use std::ffi::{c_char, c_void, CString};

use super::boundary::ffi_boundary;
use super::client::{herald_client, notify};
use super::completion::{herald_callback, herald_op};
use super::message::herald_message;
use super::{arg_opt_str, arg_out, handle, herald_status};
use crate::engine::Submit;
use crate::outbox::Decision;
use crate::result::c_string;
use crate::smtp::SendJob;
use crate::spool::Found;

/// str: a spooled message's stable id, on every item of a send's result
/// on a client with HERALD_OPT_SPOOL_DIR (the caller's, from
/// `herald_send_spooled_async`, or the one herald assigned).
pub const HERALD_FIELD_SPOOL_ID: u32 = 55;
/// int: on the result items of a message sent by `herald_spool_recover`,
/// its state when it was found: HERALD_SPOOL_PENDING or
/// HERALD_SPOOL_UNKNOWN_OUTCOME (0, absent, for a message not recovered).
pub const HERALD_FIELD_SPOOL_STATE: u32 = 56;

/// A recovered message no server was ever sent any of.
pub const HERALD_SPOOL_PENDING: u32 = 1;
/// A recovered message that may have reached the server (its commands or
/// content went out, but its completion was never delivered): sending it
/// again may deliver it twice; its Message-ID lets duplicates be found.
pub const HERALD_SPOOL_UNKNOWN_OUTCOME: u32 = 2;

/// `herald_spool_decide`'s answer: send the message (the default).
pub const HERALD_SPOOL_SEND: u32 = 0;
/// `herald_spool_decide`'s answer: remove it from the spool, unsent.
pub const HERALD_SPOOL_DROP: u32 = 1;
/// `herald_spool_decide`'s answer: leave it in the spool for a later
/// client, unsent (it counts toward the spool's limits).
pub const HERALD_SPOOL_KEEP: u32 = 2;

/// A message found in the spool, as `herald_spool_decide` sees it. Every
/// pointer is valid only during the call.
#[repr(C)]
pub struct herald_spool_entry {
    /// Its stable id (UTF-8).
    pub spool_id: *const c_char,
    /// Its Message-ID header value ("<...>").
    pub message_id: *const c_char,
    /// The envelope sender ("" for the null sender).
    pub mail_from: *const c_char,
    /// Envelope recipients.
    pub n_rcpt: usize,
    /// The message's size in bytes.
    pub size: u64,
    /// HERALD_SPOOL_PENDING or HERALD_SPOOL_UNKNOWN_OUTCOME.
    pub state: u32,
}

/// Called by `herald_spool_recover` on the calling thread, once per
/// message found, in the order they were submitted: returns
/// HERALD_SPOOL_SEND, _DROP or _KEEP (anything else is SEND).
pub type herald_spool_decide =
    Option<unsafe extern "C" fn(user: *mut c_void, entry: *const herald_spool_entry) -> u32>;

/// METHOD (SMTP clients with HERALD_OPT_SPOOL_DIR). `herald_send_async`
/// with a stable id: `spool_id` (1..255 bytes of UTF-8 without control
/// characters, unique among the messages in the spool: one still in it is
/// INVALID_ARGUMENT) names the message in the spool, in its completion's
/// result (HERALD_FIELD_SPOOL_ID) and after a crash; NULL lets herald
/// assign one. When this returns OK the message is on disk (see
/// HERALD_OPT_SPOOL_DIR); a full spool is HERALD_STATUS_LIMIT. On a client
/// without a spool, a non-NULL `spool_id` is INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn herald_send_spooled_async(
    c: *mut herald_client,
    m: *const herald_message,
    spool_id: *const c_char,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    ffi_boundary! {
        let client = handle::arg(c)?;
        let out = arg_out(op_out, "op_out")?;
        let id = arg_opt_str(spool_id, "spool_id")?.map(str::to_string);
        let e = handle::arg(m)?.to_envelope()?;
        let job = SendJob::from(e);
        let s = Submit {
            notify: notify(cb),
            on_change: None,
            token: user_token as usize,
        };
        *out = client.submit_send(job, id, s)?;
        Ok(())
    }
}

/// METHOD (SMTP and PICKUP clients). Sends the `n` messages of `msgs` as
/// `n` calls of `herald_send_async` in that order would, but on a client
/// with HERALD_OPT_SPOOL_DIR with one wait for the disk for all of them:
/// when this returns, every message it accepted is on disk (see
/// HERALD_OPT_SPOOL_DIR), and a connection marks the messages it sends
/// together, so one thread submitting many messages is not held to one
/// disk sync per message. Each gets the spool id herald assigns.
/// `user_tokens` has `n` tokens (NULL: every token NULL); `ops_out` has
/// room for `n` ops (required when `n` > 0), `n_accepted_out` is required.
/// It stops at the first message refused and returns its status
/// (`herald_last_error` names its index, "msgs[i]: ..."); the messages
/// before it are accepted: `*n_accepted_out` says how many, their ops are
/// the first ones in `ops_out`, and each gets its completion. OK when all
/// `n` were accepted.
#[no_mangle]
pub extern "C" fn herald_send_batch_async(
    c: *mut herald_client,
    msgs: *const *const herald_message,
    n: usize,
    cb: herald_callback,
    user_tokens: *const *mut c_void,
    ops_out: *mut herald_op,
    n_accepted_out: *mut usize,
) -> herald_status {
    ffi_boundary! {
        let accepted = arg_out(n_accepted_out, "n_accepted_out")?;
        *accepted = 0;
        let client = handle::arg(c)?;
        if n == 0 {
            return Ok(());
        }
        if msgs.is_null() || ops_out.is_null() {
            return Err(crate::status::Error::invalid("msgs and ops_out are required when n > 0"));
        }
        let (ptrs, ops) = (slice(msgs, n), slice_mut(ops_out, n));
        let tokens = (!user_tokens.is_null()).then(|| slice(user_tokens, n));
        let mut items = ptrs.iter().enumerate().map(|(i, &m)| {
            let e = handle::arg(m)?.to_envelope()?;
            let job = SendJob::from(e);
            let s = Submit {
                notify: notify(cb),
                on_change: None,
                token: tokens.map_or(0, |t| t[i] as usize),
            };
            Ok((job, None, s))
        });
        let (done, refused) = client.submit_send_batch(&mut items);
        *accepted = done.len();
        for (slot, op) in ops.iter_mut().zip(done) {
            *slot = op;
        }
        match refused {
            None => Ok(()),
            Some(mut e) => {
                e.detail = format!("msgs[{}]: {}", *accepted, e.detail);
                Err(e)
            }
        }
    }
}

/// The caller's `n` elements at `p` (not NULL), valid for the call.
fn slice<'a, T>(p: *const T, n: usize) -> &'a [T] {
    // SAFETY: the caller passes `n` readable elements that outlive the call.
    unsafe { std::slice::from_raw_parts(p, n) }
}

/// The caller's room for `n` elements at `p` (not NULL), valid for the call.
fn slice_mut<'a, T>(p: *mut T, n: usize) -> &'a mut [T] {
    // SAFETY: the caller passes room for `n` elements that outlives the call.
    unsafe { std::slice::from_raw_parts_mut(p, n) }
}

/// Calls `decide` with one found message; what it chose.
fn ask(decide: herald_spool_decide, user: *mut c_void, f: &Found) -> Decision {
    let Some(d) = decide else {
        return Decision::Send;
    };
    let strs: [CString; 3] = [
        c_string(&f.msg.id),
        c_string(&f.msg.message_id),
        c_string(&f.msg.from),
    ];
    let e = herald_spool_entry {
        spool_id: strs[0].as_ptr(),
        message_id: strs[1].as_ptr(),
        mail_from: strs[2].as_ptr(),
        n_rcpt: f.msg.rcpts.len(),
        size: f.msg.data.len() as u64,
        state: if f.unknown {
            HERALD_SPOOL_UNKNOWN_OUTCOME
        } else {
            HERALD_SPOOL_PENDING
        },
    };
    // SAFETY: the caller's callback, with its own pointer and an entry valid for the call.
    match unsafe { d(user, &e) } {
        HERALD_SPOOL_DROP => Decision::Drop,
        HERALD_SPOOL_KEEP => Decision::Keep,
        _ => Decision::Send,
    }
}

/// METHOD (SMTP clients with HERALD_OPT_SPOOL_DIR). Recovers the messages
/// a previous client on the spool directory left unfinished (it crashed,
/// was killed, or was freed with sends pending): each is first shown to
/// `decide` (NULL: send them all), on this thread, with its stable id and
/// state (HERALD_SPOOL_UNKNOWN_OUTCOME when it may have reached the server
/// already), before anything is sent. Those it answers HERALD_SPOOL_SEND
/// are submitted as sends: each completes exactly once like any other op,
/// to `cb` (or the completion queue when NULL) with `user_token`, its
/// result carrying HERALD_FIELD_SPOOL_ID and HERALD_FIELD_SPOOL_STATE.
/// `*n_sent_out` (may be NULL) gets how many were submitted. Only the first
/// call finds messages (later ones find none); call it before or after new
/// sends, as you like. It also logs (HERALD_LOG_WARN) the files the spool
/// set aside in its `quarantine` folder when the client was made. A send
/// refused by the queue (QUEUE_LIMIT) stops it with that status: the
/// messages not submitted stay in the spool for the next client. (The
/// messages found are read into memory when the client is made, and held
/// until this hands them over: at most SPOOL_MAX_BYTES.)
#[no_mangle]
pub extern "C" fn herald_spool_recover(
    c: *mut herald_client,
    decide: herald_spool_decide,
    user: *mut c_void,
    cb: herald_callback,
    user_token: *mut c_void,
    n_sent_out: *mut usize,
) -> herald_status {
    ffi_boundary! {
        let client = handle::arg(c)?;
        let token = user_token as usize;
        let n = client.recover(
            &mut |f| ask(decide, user, f),
            &|| Submit {
                notify: notify(cb),
                on_change: None,
                token,
            },
        )?;
        if !n_sent_out.is_null() {
            *arg_out(n_sent_out, "n_sent_out")? = n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::field;

    #[test]
    fn field_ids_agree_with_the_engine() {
        assert_eq!(HERALD_FIELD_SPOOL_ID, field::SPOOL_ID);
        assert_eq!(HERALD_FIELD_SPOOL_STATE, field::SPOOL_STATE);
    }
}
