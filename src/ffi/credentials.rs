//! Credentials on a live client: a new OAuth2 token without freeing the
//! client (which would cancel its queue).

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::boundary::ffi_boundary;
use super::client::herald_client;
use super::{arg_str, handle, herald_status};
use crate::options::TokenProvider;
use crate::status::{Error, Status};

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

/// A token provider (see `herald_client_set_oauth2_token_provider`): `c` is
/// the client about to authenticate, `user` as given when it was set.
pub type herald_token_provider =
    Option<unsafe extern "C" fn(c: *mut herald_client, user: *mut c_void) -> herald_status>;

/// The caller's pointers, carried to worker threads; herald never dereferences them.
#[derive(Clone, Copy)]
struct Pointers(*mut herald_client, *mut c_void);
// SAFETY: herald only passes them back to the caller's callback; a client may
// be used from any thread (its own callbacks included).
unsafe impl Send for Pointers {}
unsafe impl Sync for Pointers {}

/// METHOD. Sets (or with `cb` NULL, clears) the client's OAuth2 token
/// provider: `cb(c, user)` is called before each authentication with a
/// token — each new SMTP, IMAP (IDLE's reconnects too) or POP3 connection's
/// login — on the herald worker thread about to log in, with no herald lock
/// held. It hands over a fresh token by calling
/// `herald_client_set_oauth2_token(c, token)` (or leaves the current one)
/// and returns HERALD_STATUS_OK; then the login uses the client's token as
/// it is. Any other status fails that login: the op completes
/// HERALD_STATUS_AUTH. The call counts against the op's deadline: keep it
/// short (a token cached and refreshed ahead of its expiry, not a blocking
/// network round trip). `user` is passed back as is; herald never
/// dereferences it. NULL `c` is INVALID_ARGUMENT, as is a PICKUP client.
#[no_mangle]
pub extern "C" fn herald_client_set_oauth2_token_provider(
    c: *mut herald_client,
    cb: herald_token_provider,
    user: *mut c_void,
) -> herald_status {
    ffi_boundary! {
        let client = handle::arg(c)?;
        let o = client.options();
        if o.protocol == crate::options::Protocol::Pickup {
            return Err(Error::invalid("a PICKUP client does not authenticate: it has no use for a token"));
        }
        let ptrs = Pointers(c, user);
        o.oauth2_token.set_provider(cb.map(|f| {
            Arc::new(move || {
                let p = ptrs;
                // SAFETY: the caller's callback with its own client and user pointer.
                let st = unsafe { f(p.0, p.1) };
                if st == 0 {
                    Ok(())
                } else {
                    Err(Error::new(
                        Status::Auth,
                        format!("the OAuth2 token provider returned status {st}: no login attempted"),
                    ))
                }
            }) as TokenProvider
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::client::{herald_client_free, herald_client_new};
    use crate::ffi::herald_last_error;
    use crate::ffi::options::*;
    use std::ptr::null_mut;

    fn last_error_text() -> String {
        // SAFETY: herald_last_error returns a valid C string.
        unsafe { std::ffi::CStr::from_ptr(herald_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    fn client(protocol: u32) -> *mut herald_client {
        let o = herald_options_new(protocol);
        let host = c"127.0.0.1";
        let dir = std::env::temp_dir();
        let dir = std::ffi::CString::new(dir.to_string_lossy().as_bytes()).unwrap();
        if protocol == HERALD_PROTOCOL_PICKUP {
            assert_eq!(herald_options_set_str(o, HERALD_OPT_PICKUP_DIR, dir.as_ptr()), 0);
        } else {
            assert_eq!(herald_options_set_str(o, HERALD_OPT_HOST, host.as_ptr()), 0);
        }
        let mut c = null_mut();
        assert_eq!(herald_client_new(o, &mut c), 0);
        herald_options_free(o);
        c
    }

    #[test]
    fn bad_arguments_are_refused_with_a_reason() {
        let invalid = Status::InvalidArgument.code();
        assert_eq!(herald_client_set_oauth2_token(null_mut(), c"t".as_ptr()), invalid);
        assert!(
            last_error_text().contains("client is NULL"),
            "{}",
            last_error_text()
        );
        let c = client(HERALD_PROTOCOL_IMAP);
        assert_eq!(herald_client_set_oauth2_token(c, std::ptr::null()), invalid);
        assert!(last_error_text().contains("token"), "{}", last_error_text());
        assert_eq!(herald_client_set_oauth2_token(c, c"a\r\nb".as_ptr()), invalid);
        assert!(
            last_error_text().contains("control characters"),
            "{}",
            last_error_text()
        );
        assert_eq!(herald_client_set_oauth2_token(c, c"ya29.good".as_ptr()), 0);
        assert_eq!(herald_client_set_oauth2_token_provider(c, None, null_mut()), 0);
        assert_eq!(
            herald_client_set_oauth2_token_provider(null_mut(), None, null_mut()),
            invalid
        );
        herald_client_free(c);
        let p = client(HERALD_PROTOCOL_PICKUP);
        assert_eq!(herald_client_set_oauth2_token(p, c"t".as_ptr()), invalid);
        assert!(last_error_text().contains("PICKUP"), "{}", last_error_text());
        herald_client_free(p);
    }
}
