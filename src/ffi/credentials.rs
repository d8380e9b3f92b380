//! Credentials on a live client: a new OAuth2 token without freeing the
//! client (which would cancel its queue).

use std::ffi::c_char;

use super::boundary::ffi_boundary;
use super::client::herald_client;
use super::{arg_str, handle, herald_status};
use crate::status::Error;

/// METHOD. Replaces the client's OAuth2 token (HERALD_OPT_OAUTH2_TOKEN,
/// copied): the next authentication on every connection of the client uses
/// it — a new SMTP, IMAP (also IDLE's reconnect) or POP3 connection; ones
/// already logged in stay so. Call it when a token is about to expire, or
/// after an op completed HERALD_STATUS_AUTH because it had (the detail then
/// carries the server's words); a connection whose login failed is never
/// reused, so the ops after this use the new token. With a token set, herald
/// authenticates with SASL OAUTHBEARER (RFC 7628), else XOAUTH2, whichever
/// the server offers (first OAUTHBEARER); the client needs
/// HERALD_OPT_USERNAME. Thread-safe: any thread, any time, also from a
/// callback. The token is a secret: never logged. NULL `c` or `token`,
/// invalid UTF-8, an empty token, or one with spaces or control characters
/// (CR, LF, NUL ...) give HERALD_STATUS_INVALID_ARGUMENT and change nothing;
/// a PICKUP client has no use for a token (INVALID_ARGUMENT too).
#[no_mangle]
pub extern "C" fn herald_client_set_oauth2_token(
    c: *mut herald_client,
    token: *const c_char,
) -> herald_status {
    ffi_boundary! {
        let c = handle::arg(c)?;
        let token = arg_str(token, "token")?;
        let o = c.options();
        if o.protocol == crate::options::Protocol::Pickup {
            return Err(Error::invalid("a PICKUP client does not authenticate: it has no use for a token"));
        }
        o.oauth2_token.set(token)
    }
}
