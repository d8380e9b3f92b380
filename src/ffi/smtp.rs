//! Sending: `herald_send_async` and `herald_send_raw_async` on SMTP and
//! PICKUP clients.

use std::ffi::{c_char, c_void};

use super::client::{herald_client, submit};
use super::completion::{herald_callback, herald_op};
use super::message::herald_message;
use super::{arg_bytes, arg_str, arg_str_array, herald_status, BoxHandle};
use crate::message::check_envelope_address;
use crate::status::Error;
use crate::work::{SendJob, Work};

/// Most recipients one message may have.
const MAX_RCPTS: usize = 100_000;

/// Sends a message built with `herald_message_*`. The envelope comes from
/// From and To/Cc/Bcc; Bcc never appears in the sent bytes; Date and
/// Message-ID are added when missing. The message is copied: free it at once
/// if you like. On OK, `*op_out` is set and exactly one completion comes (to
/// `cb`, or to the completion queue when `cb` is NULL); on an error status,
/// none comes.
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
        |_| Ok(Work::Send(herald_message::arg(m)?.to_send_job()?)),
        None,
        cb,
        user_token,
        op_out,
    )
}

/// Sends `data` (a complete RFC 5322 message, `len` bytes) byte-exact from
/// `mail_from` ("" for the null sender) to the `n_rcpt` addresses in
/// `rcpt_to`. All inputs are copied before this returns. Completion as for
/// `herald_send_async`.
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
            if n_rcpt == 0 {
                return Err(Error::invalid(
                    "a message needs at least one recipient (n_rcpt is 0)",
                ));
            }
            if n_rcpt > MAX_RCPTS {
                return Err(Error::invalid(format!(
                    "too many recipients ({n_rcpt}; at most {MAX_RCPTS})"
                )));
            }
            let rcpts = arg_str_array(rcpt_to, n_rcpt, "rcpt_to")?
                .into_iter()
                .enumerate()
                .map(|(i, r)| check_envelope_address(r, &format!("rcpt_to[{i}]"), false))
                .collect::<crate::status::Result<Vec<String>>>()?;
            let data = arg_bytes(data, len, "data")?;
            Ok(Work::Send(SendJob::copied(from, rcpts, data)))
        },
        None,
        cb,
        user_token,
        op_out,
    )
}
