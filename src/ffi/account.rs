//! `herald_client_test_async`: the "test the account" op of an account
//! settings dialog, for SMTP, IMAP and POP3 clients.

use std::ffi::c_void;

use super::client::{herald_client, submit};
use super::completion::{herald_callback, herald_op};
use super::handle;
use super::herald_status;
use crate::imap::{ImapJob, ImapOp};
use crate::options::Protocol;
use crate::pop3::Pop3Job;
use crate::smtp::SendJob;
use crate::status::Error;

/// METHOD (SMTP, IMAP and POP3 clients). Tests the account as the options
/// describe it: opens a new connection (through PROXY when set), secures it
/// as SECURITY asks (implicit TLS or STARTTLS/STLS, certificate verified),
/// logs in with USERNAME and PASSWORD or OAUTH2_TOKEN (SMTP: only when
/// USERNAME is set), reads the server's capabilities, and logs out (QUIT,
/// LOGOUT). An open pooled connection of the worker that runs the op is
/// closed first, so the test always does the whole sequence.
///
/// On success one result item: `HERALD_FIELD_CAPABILITIES` = the server's
/// capabilities, space separated, one word each: a capability with
/// parameters is its name, `=`, and the parameters joined by `,` (IMAP:
/// CAPABILITY after login, upper case, sorted, e.g. "AUTH=PLAIN IDLE
/// IMAP4REV1"; POP3: each line of the last CAPA, after STLS and login
/// when the server answers it then, e.g. "TOP UIDL PIPELINING"; SMTP: each EHLO extension, after STARTTLS when used,
/// e.g. "PIPELINING SIZE=10240000 AUTH=PLAIN,LOGIN"), and
/// `HERALD_FIELD_SECURITY` = "TLS (implicit)", "STARTTLS" or "none", and
/// `HERALD_FIELD_AUTH_MECHANISM` = how it logged in ("PLAIN", "LOGIN",
/// "XOAUTH2", POP3 "APOP" or "USER"; absent without a login); the detail
/// says who logged in, and how. On failure the status is the failing step's:
/// CONNECT (DNS, refused, proxy), TIMEOUT, TLS, UNSUPPORTED (STARTTLS
/// required and not offered), AUTH (credentials rejected), PROTOCOL.
/// A PICKUP client has no account: INVALID_ARGUMENT.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
pub extern "C" fn herald_client_test_async(
    c: *mut herald_client,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    let protocol = handle::arg(c).map(|client| client.options().protocol).ok();
    match protocol {
        Some(Protocol::Imap) => submit(
            c,
            |_| {
                Ok(ImapJob {
                    mailbox: String::new(),
                    uidvalidity: None,
                    op: ImapOp::Test,
                })
            },
            None,
            cb,
            user_token,
            op_out,
        ),
        Some(Protocol::Pop3) => submit(
            c,
            |client| match client.options().username {
                Some(_) => Ok(Pop3Job::Test),
                None => Err(Error::invalid(
                    "a POP3 client needs USERNAME (and PASSWORD or OAUTH2_TOKEN)",
                )),
            },
            None,
            cb,
            user_token,
            op_out,
        ),
        Some(Protocol::Pickup) => submit(
            c,
            |_| -> crate::status::Result<SendJob> {
                Err(Error::invalid("a PICKUP client has no server account to test"))
            },
            None,
            cb,
            user_token,
            op_out,
        ),
        // SMTP, and a NULL or bad handle (which submit reports).
        _ => submit(c, |_| Ok(SendJob::account_test()), None, cb, user_token, op_out),
    }
}
