//! Sending: `herald_send_async` and `herald_send_raw_async` on SMTP and
//! PICKUP clients.

use std::ffi::{c_char, c_void};

use super::client::{herald_client, submit};
use super::completion::{herald_callback, herald_op};
use super::handle;
use super::message::herald_message;
use super::{arg_bytes, arg_str, arg_str_iter, herald_status};
use crate::envelope::check_rcpt_count;
use crate::message::check_envelope_address;
use crate::smtp::{Envelope, SendJob};

/// METHOD (SMTP and PICKUP clients). Sends a message built with
/// `herald_message_*`. The envelope comes from From and To/Cc/Bcc; Bcc never
/// appears in the sent bytes; Date and Message-ID are added when missing.
/// The message is copied: free it at once if you like. On an SMTP client
/// without HERALD_OPT_SPOOL_DIR, a message whose attachments make 4 MiB or
/// more of base64 is encoded on a thread of its own while it is sent, so
/// this returns before the encoding is done and the sending starts at once.
///
/// On OK, `*op_out` (required: NULL is INVALID_ARGUMENT) is set and exactly
/// one completion comes, to `cb` on the client's delivery thread, or to the
/// completion queue when `cb` is NULL; on an error status none comes and
/// `herald_last_error()` says why.
///
/// The completion is OK when the server accepted the message (its 250 to
/// the final dot or BDAT LAST; `reply_code` 250) for at least one
/// recipient. Its result then has one item per envelope recipient, in the
/// order given (To, Cc, then Bcc, each address once): HERALD_FIELD_NAME the address,
/// HERALD_FIELD_REPLY_CODE the server's reply to its RCPT TO (250, 550 ...)
/// and HERALD_FIELD_REPLY_TEXT that reply's text; `detail` names any refused
/// recipients. Every recipient refused: HERALD_STATUS_REJECTED (or
/// TRANSIENT when a refusal was 4xx), no result. Content sent but no final
/// reply: HERALD_STATUS_IO, and `detail` says the server may or may not have
/// accepted it. A PICKUP client's result is one item whose
/// HERALD_FIELD_NAME is the .eml file written.
#[no_mangle]
pub extern "C" fn herald_send_async(
    c: *mut herald_client,
    m: *const herald_message,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |client| {
            let m = handle::arg(m)?;
            // A large message's attachments are encoded while it is sent,
            // unless its bytes must all be kept first (spool, pickup).
            let e = if client.sends_while_building() {
                m.to_envelope_growing()?
            } else {
                m.to_envelope()?
            };
            Ok(SendJob::from(e))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

/// METHOD (SMTP and PICKUP clients). Sends `data` (a complete RFC 5322
/// message, `len` bytes) byte-exact from `mail_from` ("" for the null
/// sender) to the `n_rcpt` (1 or more) addresses in `rcpt_to` (dot-stuffing
/// is herald's job). All inputs are copied before this returns. `*op_out` is
/// required; completion and result as for `herald_send_async`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn herald_send_raw_async(
    c: *mut herald_client,
    mail_from: *const c_char,
    rcpt_to: *const *const c_char,
    n_rcpt: usize,
    data: *const u8,
    len: usize,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let from = check_envelope_address(arg_str(mail_from, "mail_from")?, "mail_from", true)?;
            check_rcpt_count(n_rcpt)?;
            // One buffer for every address (room for a few typical ones).
            let mut env = Envelope::new(from, n_rcpt.min(8) * 32);
            for (i, r) in arg_str_iter(rcpt_to, n_rcpt, "rcpt_to")?.enumerate() {
                let r = r?;
                // The name is only formatted for an error (this runs per recipient).
                let r = check_envelope_address(r, "rcpt_to", false)
                    .or_else(|_| check_envelope_address(r, &format!("rcpt_to[{i}]"), false))?;
                env.push_rcpt(r);
            }
            let data = arg_bytes(data, len, "data")?;
            Ok(SendJob::copied(env, data))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}
