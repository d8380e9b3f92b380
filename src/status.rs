//! Status codes and the error type every engine returns.
//!
//! The numeric values are part of the C ABI (`HERALD_STATUS_*` in
//! `include/herald.h`) and are never renumbered.

use std::ffi::CStr;
use std::fmt;

pub mod codes;
use codes::*;

/// What went wrong, as one of the C ABI's status codes (numbers in [`codes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    Ok = HERALD_STATUS_OK,
    InvalidArgument = HERALD_STATUS_INVALID_ARGUMENT,
    Connect = HERALD_STATUS_CONNECT,
    Tls = HERALD_STATUS_TLS,
    Auth = HERALD_STATUS_AUTH,
    Rejected = HERALD_STATUS_REJECTED,
    Transient = HERALD_STATUS_TRANSIENT,
    Protocol = HERALD_STATUS_PROTOCOL,
    Timeout = HERALD_STATUS_TIMEOUT,
    Io = HERALD_STATUS_IO,
    Cancelled = HERALD_STATUS_CANCELLED,
    Shutdown = HERALD_STATUS_SHUTDOWN,
    NotFound = HERALD_STATUS_NOT_FOUND,
    Unsupported = HERALD_STATUS_UNSUPPORTED,
    Panic = HERALD_STATUS_PANIC,
    Limit = HERALD_STATUS_LIMIT,
}

/// The text of codes this version does not know.
const UNKNOWN: &CStr = c"unknown status code";

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 16] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::Connect,
        Status::Tls,
        Status::Auth,
        Status::Rejected,
        Status::Transient,
        Status::Protocol,
        Status::Timeout,
        Status::Io,
        Status::Cancelled,
        Status::Shutdown,
        Status::NotFound,
        Status::Unsupported,
        Status::Panic,
        Status::Limit,
    ];

    /// The status with this code, `None` for codes this version does not know.
    pub fn from_code(code: u32) -> Option<Status> {
        Self::ALL.iter().copied().find(|s| s.code() == code)
    }

    /// Static text for a status code; also answers for codes this version does not know.
    pub fn text(code: u32) -> &'static str {
        Self::text_c(code).to_str().unwrap_or("unknown status code")
    }

    /// The same text as a C string (for `herald_status_str`).
    pub fn text_c(code: u32) -> &'static CStr {
        Self::from_code(code).map_or(UNKNOWN, Status::c_text)
    }

    /// This status's static text.
    pub fn c_text(self) -> &'static CStr {
        match self {
            Status::Ok => c"ok",
            Status::InvalidArgument => c"invalid argument",
            Status::Connect => c"could not connect",
            Status::Tls => c"TLS handshake or certificate failure",
            Status::Auth => c"authentication failed",
            Status::Rejected => c"rejected by the server",
            Status::Transient => c"transient failure, try again later",
            Status::Protocol => c"protocol error: malformed or unexpected reply",
            Status::Timeout => c"timed out",
            Status::Io => c"I/O error or connection lost",
            Status::Cancelled => c"cancelled",
            Status::Shutdown => c"the client is shutting down",
            Status::NotFound => c"not found",
            Status::Unsupported => c"not supported by the server",
            Status::Panic => c"internal error (panic) in herald",
            Status::Limit => c"limit exceeded",
        }
    }

    pub fn code(self) -> u32 {
        self as u32
    }
}

/// What caused an error (an I/O or TLS error), for `std::error::Error::source`.
pub type Source = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// An error with its status, the server's reply code (0 when none) and a
/// human-readable detail (server text or local reason). Equality compares
/// what the caller sees (status, code, detail, partial result), not the source.
#[derive(Clone, Debug)]
pub struct Error {
    pub status: Status,
    pub reply_code: i32,
    pub detail: String,
    /// What is rarely there, in one box so that `Error`, which every
    /// `Result` of the crate carries, stays small.
    extra: Option<Box<Extra>>,
}

/// The rare parts of an [`Error`].
#[derive(Clone, Debug, Default)]
struct Extra {
    /// What the op did before it failed (an append's UIDs), handed to the
    /// caller as the completion's result.
    partial: Option<crate::data::ResultData>,
    /// The error this one comes from.
    source: Option<Source>,
}

impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        (self.status, self.reply_code, &self.detail, self.partial())
            == (other.status, other.reply_code, &other.detail, other.partial())
    }
}

impl Eq for Error {}

impl Error {
    pub fn new(status: Status, detail: impl Into<String>) -> Self {
        Error {
            status,
            reply_code: 0,
            detail: detail.into(),
            extra: None,
        }
    }

    pub fn with_code(status: Status, reply_code: i32, detail: impl Into<String>) -> Self {
        Error {
            status,
            reply_code,
            detail: detail.into(),
            extra: None,
        }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(Status::InvalidArgument, detail)
    }

    pub fn protocol(detail: impl Into<String>) -> Self {
        Self::new(Status::Protocol, detail)
    }

    pub fn cancelled() -> Self {
        Self::new(Status::Cancelled, "cancelled")
    }

    /// Maps an I/O error to TIMEOUT or IO, keeping its text, and as its
    /// source an I/O error of the same kind, OS code and text.
    pub fn from_io(e: &std::io::Error, context: &str) -> Self {
        use std::io::ErrorKind::*;
        let err = match e.kind() {
            WouldBlock | TimedOut => Self::new(Status::Timeout, format!("{context}: timed out")),
            UnexpectedEof => Self::new(Status::Io, format!("{context}: connection closed by the server")),
            _ => Self::new(Status::Io, format!("{context}: {e}")),
        };
        let copy = match e.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(e.kind(), e.to_string()),
        };
        err.with_source(copy)
    }

    /// Keeps `source` as the cause of this error (an I/O or TLS error).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.extra.get_or_insert_default().source = Some(std::sync::Arc::new(source));
        self
    }

    /// What the op did before it failed, if anything.
    pub fn partial(&self) -> Option<&crate::data::ResultData> {
        self.extra.as_ref()?.partial.as_ref()
    }

    /// Takes what the op did before it failed out of the error.
    pub fn take_partial(&mut self) -> Option<crate::data::ResultData> {
        self.extra.as_mut()?.partial.take()
    }

    /// Maps an I/O error as [`from_io`](Self::from_io) does and keeps it as the source.
    pub fn io(e: std::io::Error, context: &str) -> Self {
        Self::from_io(&e, context).with_source(e)
    }

    /// Keeps what the op did before it failed, for the completion's result.
    pub fn with_partial(mut self, partial: crate::data::ResultData) -> Self {
        self.extra.get_or_insert_default().partial = Some(partial);
        self
    }

    pub fn is_transient(&self) -> bool {
        self.status == Status::Transient
    }

    pub fn is_permanent(&self) -> bool {
        self.status == Status::Rejected
    }

    pub fn is_timeout(&self) -> bool {
        self.status == Status::Timeout
    }

    /// The connection itself failed (lost, timed out, closed by the server):
    /// whatever was in flight on it has an unknown outcome.
    pub fn is_connection_failure(&self) -> bool {
        matches!(self.status, Status::Io | Status::Timeout)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reply_code != 0 {
            write!(
                f,
                "{} ({}): {}",
                Status::text(self.status.code()),
                self.reply_code,
                self.detail
            )
        } else {
            write!(f, "{}: {}", Status::text(self.status.code()), self.detail)
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let s = self.extra.as_ref()?.source.as_ref()?;
        Some(&**s as &(dyn std::error::Error + 'static))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_text_and_unknown_codes_too() {
        for c in 0..=15u32 {
            assert_ne!(Status::text(c), "unknown status code", "code {c}");
        }
        assert_eq!(Status::text(16), "unknown status code");
        assert_eq!(Status::text(9999), "unknown status code");
    }

    /// The enum, the C constants and the text table agree for every code:
    /// `ALL` lists each status once, in code order with no gaps; each C
    /// constant names the status with its number; every text is distinct.
    #[test]
    fn enum_constants_and_text_agree() {
        let consts = [
            (HERALD_STATUS_OK, Status::Ok),
            (HERALD_STATUS_INVALID_ARGUMENT, Status::InvalidArgument),
            (HERALD_STATUS_CONNECT, Status::Connect),
            (HERALD_STATUS_TLS, Status::Tls),
            (HERALD_STATUS_AUTH, Status::Auth),
            (HERALD_STATUS_REJECTED, Status::Rejected),
            (HERALD_STATUS_TRANSIENT, Status::Transient),
            (HERALD_STATUS_PROTOCOL, Status::Protocol),
            (HERALD_STATUS_TIMEOUT, Status::Timeout),
            (HERALD_STATUS_IO, Status::Io),
            (HERALD_STATUS_CANCELLED, Status::Cancelled),
            (HERALD_STATUS_SHUTDOWN, Status::Shutdown),
            (HERALD_STATUS_NOT_FOUND, Status::NotFound),
            (HERALD_STATUS_UNSUPPORTED, Status::Unsupported),
            (HERALD_STATUS_PANIC, Status::Panic),
            (HERALD_STATUS_LIMIT, Status::Limit),
        ];
        assert_eq!(consts.len(), Status::ALL.len());
        let mut texts = std::collections::HashSet::new();
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(s.code(), i as u32, "{s:?} out of order");
            assert_eq!(consts[i], (s.code(), *s));
            assert_eq!(Status::from_code(s.code()), Some(*s));
            assert_eq!(Status::text_c(s.code()), s.c_text());
            assert!(texts.insert(s.c_text()), "{s:?}'s text is not its own");
        }
    }

    /// The header cbindgen makes holds every constant, by name and number.
    #[test]
    fn header_defines_every_code() {
        let h = include_str!("../include/herald.h");
        for s in Status::ALL {
            let name = format!("{s:?}");
            let mut c = String::new();
            for (i, ch) in name.chars().enumerate() {
                if ch.is_uppercase() && i > 0 {
                    c.push('_');
                }
                c.push(ch.to_ascii_uppercase());
            }
            let line = format!("#define HERALD_STATUS_{c} {}\n", s.code());
            assert!(h.contains(&line), "{line:?} missing from include/herald.h");
        }
    }

    #[test]
    fn io_errors_map_to_timeout_or_io() {
        let t = std::io::Error::new(std::io::ErrorKind::WouldBlock, "x");
        assert_eq!(Error::from_io(&t, "read").status, Status::Timeout);
        let e = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(Error::from_io(&e, "read").status, Status::Io);
    }

    #[test]
    fn io_errors_keep_their_source() {
        use std::error::Error as _;
        let e = Error::io(
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer"),
            "read",
        );
        assert_eq!(e.status, Status::Io);
        assert_eq!(e.source().unwrap().to_string(), "reset by peer");
        assert_eq!(e.clone(), e);
        assert!(Error::protocol("x").source().is_none());
    }

    #[test]
    fn errors_keep_their_source() {
        use std::error::Error as _;
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let err = Error::from_io(&e, "connect");
        let src = err.source().expect("an I/O error has a source");
        let io = src.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::ECONNREFUSED));
        assert!(Error::new(Status::Io, "x").source().is_none());
        let gone = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        let owned = Error::new(Status::Io, "write: gone").with_source(gone);
        assert_eq!(owned.source().unwrap().to_string(), "gone");
        assert_eq!(
            owned,
            Error::new(Status::Io, "write: gone"),
            "equality ignores the source"
        );
    }
}
