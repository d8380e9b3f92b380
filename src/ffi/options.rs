//! `herald_options`: a protocol's settings, checked as they are set.

use std::ffi::c_char;

use super::boundary::ffi_boundary;
use super::handle::{self, Castable, Owned};
use super::{arg_str, herald_status};
use crate::options::{Opt, Options, Protocol};
use crate::status::Error;
use crate::status::Result;

/// Options for a client (CONSTRUCTOR `herald_options_new`, DESTRUCTOR
/// `herald_options_free`). `herald_client_new` copies them: free them whenever you like.
pub struct herald_options {
    _private: [u8; 0],
}

impl Castable for herald_options {
    type Ownership = Owned;
    type Rust = Options;
    const NAME: &'static str = "options";
}

/// An SMTP client: sends mail (`herald_send_async`, `herald_send_raw_async`).
pub const HERALD_PROTOCOL_SMTP: u32 = 1;
/// An IMAP client: `herald_imap_*`.
pub const HERALD_PROTOCOL_IMAP: u32 = 2;
/// A POP3 client: `herald_pop3_*`.
pub const HERALD_PROTOCOL_POP3: u32 = 3;
/// A PICKUP client: sends by writing each message as an .eml file into
/// PICKUP_DIR (which must exist): no server needed.
pub const HERALD_PROTOCOL_PICKUP: u32 = 4;

/// str, network clients: the server's name or address (no default: required).
/// Certificates are checked against it.
pub const HERALD_OPT_HOST: u32 = 1;
/// int 1..65535, network clients; default by protocol and SECURITY: SMTP 587
/// (465 with IMPLICIT_TLS, 25 with NONE), IMAP 143 (993), POP3 110 (995).
pub const HERALD_OPT_PORT: u32 = 2;
/// int 0..3, network clients: a `HERALD_SECURITY_*` value; default
/// HERALD_SECURITY_STARTTLS (required).
pub const HERALD_OPT_SECURITY: u32 = 3;
/// str, network clients: the login name (no default: no authentication).
pub const HERALD_OPT_USERNAME: u32 = 4;
/// str, network clients: the password (with USERNAME); never logged.
pub const HERALD_OPT_PASSWORD: u32 = 5;
/// str, network clients: an OAuth2 bearer token (with USERNAME), used
/// instead of PASSWORD, over SASL OAUTHBEARER or else XOAUTH2, whichever the
/// server offers; never logged. No spaces or control characters. Replace it
/// on a live client with `herald_client_set_oauth2_token` when it expires.
pub const HERALD_OPT_OAUTH2_TOKEN: u32 = 6;
/// int 1..1024, default 4 (POP3: 1): one main connection kept open, the
/// others opened on demand and closed when idle.
pub const HERALD_OPT_MAX_CONNECTIONS: u32 = 7;
/// int ms 1..86400000, network clients, default 60000: the longest a
/// connect (TCP, TLS handshake, greeting) may take.
pub const HERALD_OPT_CONNECT_TIMEOUT_MS: u32 = 8;
/// int ms 1..86400000, network clients, default 60000: the longest wait for
/// any read or write.
pub const HERALD_OPT_IO_TIMEOUT_MS: u32 = 9;
/// int ms 0..86400000, default 30000: an unused extra connection is closed
/// after this (the main connection stays).
pub const HERALD_OPT_IDLE_TIMEOUT_MS: u32 = 10;
/// int 0 or 1, network clients, default 0: 1 accepts any certificate and
/// host name (for tests only).
pub const HERALD_OPT_ACCEPT_INVALID_CERTS: u32 = 11;
/// str, network clients: a PEM file of extra trusted roots, read when set
/// (an unreadable file or one without certificates is INVALID_ARGUMENT).
pub const HERALD_OPT_CA_FILE: u32 = 12;
/// str, SMTP: the EHLO name; default the machine's host name when it is a
/// domain name, else the local address as a literal (`[192.0.2.1]`).
pub const HERALD_OPT_HELO_NAME: u32 = 13;
/// str, PICKUP: the directory a PICKUP client writes into (required; it
/// must exist when messages are sent).
pub const HERALD_OPT_PICKUP_DIR: u32 = 14;
/// int >= 0, default 0 (off): at most this many ops started per
/// THROTTLE_INTERVAL_MS.
pub const HERALD_OPT_THROTTLE_MESSAGES: u32 = 15;
/// int ms 0..86400000, default 0: the interval of THROTTLE_MESSAGES.
pub const HERALD_OPT_THROTTLE_INTERVAL_MS: u32 = 16;
/// int 1..100000000, default 100000: queued ops beyond this get
/// HERALD_STATUS_LIMIT at submit.
pub const HERALD_OPT_QUEUE_LIMIT: u32 = 17;
/// int ms, 0..86400000: an op's overall deadline; 0 = none; default 600000
/// (10 minutes). It counts from when a connection starts working on the op:
/// time spent waiting in the client's queue (behind the caller's own earlier
/// ops, or for a free connection) does not count; connecting, TLS, login and
/// retries on a new connection do. IDLE ops are exempt. An op past its
/// deadline completes HERALD_STATUS_TIMEOUT (not CANCELLED), exactly once,
/// and the connection it was using is shut down, as by herald_cancel; other
/// ops that were pipelined on that connection are retried on a new one.
pub const HERALD_OPT_OP_TIMEOUT_MS: u32 = 18;
/// int bytes, 1024..67108864, default 262144 (256 KiB): the longest line
/// (without IMAP literals) accepted from the server, per connection. A longer
/// line is HERALD_STATUS_PROTOCOL and the connection is dropped. It also
/// bounds a whole multi-line SMTP reply (at most 1000 lines, together at
/// most this many bytes). A connection's read buffer never grows beyond
/// twice this value.
pub const HERALD_OPT_MAX_LINE_BYTES: u32 = 19;
/// int bytes, 1024..4294967295, default 104857600 (100 MiB): the largest IMAP
/// literal or POP3 message accepted from the server, and the most a POP3
/// UIDL or LIST listing may take. A message LIST announces as larger is not
/// retrieved, and a RETR or TOP response that grows beyond it is stopped;
/// both complete HERALD_STATUS_LIMIT (the connection is then dropped, other
/// ops on it are retried). A POP3 response larger than twice its announced
/// size plus 1 MiB is HERALD_STATUS_PROTOCOL.
pub const HERALD_OPT_MAX_MESSAGE_BYTES: u32 = 20;
/// str: the SHA-256 of the one server certificate accepted, in hex (64
/// digits, upper or lower case, ':' between bytes allowed, as
/// `openssl x509 -fingerprint -sha256` prints it): of the certificate (DER)
/// or of its public key (SubjectPublicKeyInfo, DER). With a pin the TLS
/// library's own verification is off: exactly that certificate is accepted,
/// also self-signed, expired or for another name, and any other fails
/// HERALD_STATUS_TLS with the certificate in the result item (see
/// HERALD_FIELD_CERT_SHA256), before anything else is sent on the connection.
/// A bad value is INVALID_ARGUMENT.
pub const HERALD_OPT_TLS_PIN_SHA256: u32 = 21;
/// int: the lowest TLS version used, 12 (TLS 1.2, the default) or 13 (TLS
/// 1.3); a server that cannot do it fails HERALD_STATUS_TLS. Other values
/// are INVALID_ARGUMENT.
pub const HERALD_OPT_TLS_MIN_VERSION: u32 = 22;
/// str: a file with the client certificate TLS presents when the server asks:
/// PEM (the certificate, then any intermediates; the key in
/// HERALD_OPT_CLIENT_KEY_FILE) or PKCS#12 (DER, holding the key, without a
/// password). Read when set: an unreadable file is INVALID_ARGUMENT; a PEM
/// one without CLIENT_KEY_FILE fails `herald_client_new`.
pub const HERALD_OPT_CLIENT_CERT_FILE: u32 = 23;
/// str: the PEM private key (PKCS#8, "BEGIN PRIVATE KEY") of
/// HERALD_OPT_CLIENT_CERT_FILE's PEM certificate. Read when set.
pub const HERALD_OPT_CLIENT_KEY_FILE: u32 = 24;
/// str, network clients, default none: every connection goes through this
/// proxy, `"socks5://[user:pass@]host:port"` (RFC 1928; user/password auth
/// RFC 1929) or `"http://[user:pass@]host:port"` (HTTP CONNECT, Basic
/// Proxy-Authorization). User and password may be %-escaped. The mail
/// server's name (HOST) is sent to the proxy, which resolves it; TLS
/// (implicit or STARTTLS) runs through the tunnel and the certificate is
/// checked against HOST, not the proxy. The proxy's handshake counts
/// against CONNECT_TIMEOUT_MS; a proxy that refuses (bad credentials, no
/// route, a non-200 CONNECT reply) is HERALD_STATUS_CONNECT with the
/// proxy's reply in the detail. The credentials are never logged. A
/// malformed URL is INVALID_ARGUMENT when set; "" removes the proxy.
pub const HERALD_OPT_PROXY: u32 = 25;
/// int seconds 0..7200, network clients, default 60: TCP keepalive on every
/// connection (pooled and IDLE ones too): the first probe after this many
/// idle seconds, then probes every idle/4 seconds (1..75), 4 unanswered
/// probes (where the system lets herald set them; Windows: its fixed 10)
/// drop the connection. So a connection a NAT or firewall silently
/// dropped is noticed in about twice this time. 0 = off.
pub const HERALD_OPT_KEEPALIVE_S: u32 = 26;
/// str, SMTP: the durable outbox, a directory (created when missing) that
/// only this client uses while it lives (locked: a second client on it
/// fails at `herald_client_new` with HERALD_STATUS_IO). With it, a message
/// `herald_send_async` (or `_raw_`, `_spooled_`, `_batch_`) accepts is on disk when
/// the call returns OK (with SPOOL_SYNC 1: fdatasync'ed, concurrent
/// submitters sharing one sync), is marked "outcome unknown" on disk before
/// any of it goes to a server, and is removed once its completion was
/// delivered (a failure's removal is on disk before the callback runs).
/// Ops cancelled by `herald_client_free` stay in it. After a crash, a new
/// client on the directory reports and resends what was left through
/// `herald_spool_recover`. A message without a Message-ID gets one before
/// it is spooled (also a raw one: a header line is put first). Every send
/// completion's result items carry HERALD_FIELD_SPOOL_ID and
/// HERALD_FIELD_MESSAGE_ID (a failure has one item with them). Files in it
/// that are not the spool's, or records that are corrupt, are moved to its
/// `quarantine` folder with a log line (HERALD_LOG_WARN, when
/// `herald_spool_recover` runs), never sent.
pub const HERALD_OPT_SPOOL_DIR: u32 = 27;
/// int 0 or 1, SMTP, default 1: 1 syncs the spool to disk (fdatasync) at
/// each point SPOOL_DIR names, so accepted messages survive power loss; 0
/// only hands the records to the operating system (they survive the
/// process being killed, not the machine going down), which is faster.
pub const HERALD_OPT_SPOOL_SYNC: u32 = 28;
/// int 1..100000000, SMTP, default 100000: messages the spool holds at
/// most; beyond, a send returns HERALD_STATUS_LIMIT.
pub const HERALD_OPT_SPOOL_MAX_MESSAGES: u32 = 29;
/// int bytes 65536..2^50, SMTP, default 1073741824 (1 GiB): the most the
/// spool's files take (its journal segments, of up to 4 MiB each unless a
/// message is larger, with the records of completed messages until every
/// message of a segment has completed, and of the segments after it). A
/// send that would take it beyond returns HERALD_STATUS_LIMIT. The
/// quarantine folder is not counted.
pub const HERALD_OPT_SPOOL_MAX_BYTES: u32 = 30;

/// The protocol a `HERALD_PROTOCOL_*` number names.
fn protocol_of(n: u32) -> Option<Protocol> {
    Some(match n {
        HERALD_PROTOCOL_SMTP => Protocol::Smtp,
        HERALD_PROTOCOL_IMAP => Protocol::Imap,
        HERALD_PROTOCOL_POP3 => Protocol::Pop3,
        HERALD_PROTOCOL_PICKUP => Protocol::Pickup,
        _ => return None,
    })
}

/// The option a `HERALD_OPT_*` number names: the one place the numbers meet
/// the typed options. An unknown number is INVALID_ARGUMENT.
/// Not part of the C API (so not in the header): the IMAP IDLE renewal
/// period in ms, for tests that need to see a renewal happen.
pub(crate) const IDLE_RENEW_MS_FOR_TESTS: u32 = 0x7fff_0001;

fn opt(option: u32) -> Result<Opt> {
    Ok(match option {
        HERALD_OPT_HOST => Opt::Host,
        HERALD_OPT_PORT => Opt::Port,
        HERALD_OPT_SECURITY => Opt::Security,
        HERALD_OPT_USERNAME => Opt::Username,
        HERALD_OPT_PASSWORD => Opt::Password,
        HERALD_OPT_OAUTH2_TOKEN => Opt::OAuth2Token,
        HERALD_OPT_MAX_CONNECTIONS => Opt::MaxConnections,
        HERALD_OPT_CONNECT_TIMEOUT_MS => Opt::ConnectTimeoutMs,
        HERALD_OPT_IO_TIMEOUT_MS => Opt::IoTimeoutMs,
        HERALD_OPT_IDLE_TIMEOUT_MS => Opt::IdleTimeoutMs,
        HERALD_OPT_ACCEPT_INVALID_CERTS => Opt::AcceptInvalidCerts,
        HERALD_OPT_CA_FILE => Opt::CaFile,
        HERALD_OPT_HELO_NAME => Opt::HeloName,
        HERALD_OPT_PICKUP_DIR => Opt::PickupDir,
        HERALD_OPT_THROTTLE_MESSAGES => Opt::ThrottleMessages,
        HERALD_OPT_THROTTLE_INTERVAL_MS => Opt::ThrottleIntervalMs,
        HERALD_OPT_QUEUE_LIMIT => Opt::QueueLimit,
        HERALD_OPT_OP_TIMEOUT_MS => Opt::OpTimeoutMs,
        HERALD_OPT_MAX_LINE_BYTES => Opt::MaxLineBytes,
        HERALD_OPT_MAX_MESSAGE_BYTES => Opt::MaxMessageBytes,
        HERALD_OPT_TLS_PIN_SHA256 => Opt::TlsPinSha256,
        HERALD_OPT_TLS_MIN_VERSION => Opt::TlsMinVersion,
        HERALD_OPT_CLIENT_CERT_FILE => Opt::ClientCertFile,
        HERALD_OPT_CLIENT_KEY_FILE => Opt::ClientKeyFile,
        HERALD_OPT_PROXY => Opt::Proxy,
        HERALD_OPT_KEEPALIVE_S => Opt::KeepaliveS,
        HERALD_OPT_SPOOL_DIR => Opt::SpoolDir,
        HERALD_OPT_SPOOL_SYNC => Opt::SpoolSync,
        HERALD_OPT_SPOOL_MAX_MESSAGES => Opt::SpoolMaxMessages,
        HERALD_OPT_SPOOL_MAX_BYTES => Opt::SpoolMaxBytes,
        IDLE_RENEW_MS_FOR_TESTS => Opt::IdleRenewMsForTests,
        _ => return Err(Error::invalid(format!("unknown option id {option}"))),
    })
}

/// No TLS: everything, credentials included, in clear (for tests and
/// trusted networks only).
pub const HERALD_SECURITY_NONE: i64 = 0;
/// STARTTLS, required: a server without it is an error (the default).
pub const HERALD_SECURITY_STARTTLS: i64 = 1;
/// TLS from the first byte (SMTP 465, IMAP 993, POP3 995).
pub const HERALD_SECURITY_IMPLICIT_TLS: i64 = 2;
/// STARTTLS when offered, else plain text; credentials are then refused
/// (HERALD_STATUS_TLS) rather than sent in clear.
pub const HERALD_SECURITY_STARTTLS_IF_AVAILABLE: i64 = 3;

/// CONSTRUCTOR. New options for `protocol` (`HERALD_PROTOCOL_*`) with the
/// defaults; NULL for an unknown protocol (the reason in
/// `herald_last_error()`). Free with `herald_options_free`.
#[no_mangle]
pub extern "C" fn herald_options_new(protocol: u32) -> *mut herald_options {
    ffi_boundary! {
        let p = protocol_of(protocol).ok_or_else(|| {
            Error::invalid(format!(
                "unknown protocol {protocol}: expected HERALD_PROTOCOL_SMTP (1), _IMAP (2), _POP3 (3) or _PICKUP (4)"
            ))
        })?;
        Ok(handle::into_handle::<herald_options>(Options::new(p)))
    }
}

/// METHOD. Sets a string option (`HERALD_OPT_*`, UTF-8, copied). An unknown option, an integer option, an
/// option of another protocol or a bad value is HERALD_STATUS_INVALID_ARGUMENT
/// now (the reason in `herald_last_error()`), and the options are unchanged.
#[no_mangle]
pub extern "C" fn herald_options_set_str(
    o: *mut herald_options,
    option: u32,
    value: *const c_char,
) -> herald_status {
    ffi_boundary! {
        let o = handle::arg_mut(o)?;
        let v = arg_str(value, "value")?;
        o.set_str(opt(option)?, v)
    }
}

/// METHOD. Sets an integer option (`HERALD_OPT_*`; ranges and defaults are
/// in each option's doc); checked as `herald_options_set_str` is.
#[no_mangle]
pub extern "C" fn herald_options_set_int(o: *mut herald_options, option: u32, value: i64) -> herald_status {
    ffi_boundary! {
        let o = handle::arg_mut(o)?;
        o.set_int(opt(option)?, value)
    }
}

/// DESTRUCTOR. Frees options from `herald_options_new`; NULL is a no-op.
/// Clients made from them keep their own copy.
#[no_mangle]
pub extern "C" fn herald_options_free(o: *mut herald_options) {
    ffi_boundary! { void; handle::free(o) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Security;

    /// Every typed option has exactly one C number, its name is the C
    /// constant's, and numbers beyond them are unknown.
    #[test]
    fn every_option_has_one_c_number() {
        let header = include_str!("../../include/herald.h");
        let mut seen = std::collections::HashMap::new();
        for n in 0..=64u32 {
            if let Ok(o) = opt(n) {
                assert!(seen.insert(o, n).is_none(), "{o:?} has two numbers");
                let line = format!("#define HERALD_OPT_{} {n}\n", o.name());
                assert!(header.contains(&line), "{line:?} missing from include/herald.h");
            }
        }
        assert_eq!(seen.len(), Opt::ALL.len(), "an option without a C number");
        let e = opt(999).unwrap_err();
        assert_eq!(e.detail, "unknown option id 999");
    }

    #[test]
    fn security_and_protocol_numbers_agree_with_the_engine() {
        for (c, s) in [
            (HERALD_SECURITY_NONE, Security::None),
            (HERALD_SECURITY_STARTTLS, Security::StartTls),
            (HERALD_SECURITY_IMPLICIT_TLS, Security::ImplicitTls),
            (
                HERALD_SECURITY_STARTTLS_IF_AVAILABLE,
                Security::StartTlsIfAvailable,
            ),
        ] {
            assert_eq!(Security::from_i64(c), Some(s));
        }
        for (c, p) in [
            (HERALD_PROTOCOL_SMTP, Protocol::Smtp),
            (HERALD_PROTOCOL_IMAP, Protocol::Imap),
            (HERALD_PROTOCOL_POP3, Protocol::Pop3),
            (HERALD_PROTOCOL_PICKUP, Protocol::Pickup),
        ] {
            assert_eq!(protocol_of(c), Some(p));
        }
    }
}
