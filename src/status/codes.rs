//! The status codes: the one place their numbers are written. cbindgen reads
//! this file (build.rs, tests/header.rs) and writes each as
//! `#define HERALD_STATUS_* N` into include/herald.h; `Status` (the parent
//! module) takes its discriminants from these, and its text table is matched
//! on `Status`, so no number appears twice. Values are never renumbered.

#![allow(non_camel_case_types)]

/// A status code (`HERALD_STATUS_*`). Values are never renumbered.
pub type herald_status = u32;

/// Success.
pub const HERALD_STATUS_OK: herald_status = 0;
/// NULL, bad UTF-8, CR/LF in an address or header, bad option.
pub const HERALD_STATUS_INVALID_ARGUMENT: herald_status = 1;
/// DNS failure, refused, unreachable.
pub const HERALD_STATUS_CONNECT: herald_status = 2;
/// Handshake or certificate failure.
pub const HERALD_STATUS_TLS: herald_status = 3;
/// Credentials rejected.
pub const HERALD_STATUS_AUTH: herald_status = 4;
/// Permanent refusal: SMTP 5xx, IMAP NO/BAD, POP3 -ERR.
pub const HERALD_STATUS_REJECTED: herald_status = 5;
/// Try later: SMTP 4xx.
pub const HERALD_STATUS_TRANSIENT: herald_status = 6;
/// Malformed or unexpected server reply.
pub const HERALD_STATUS_PROTOCOL: herald_status = 7;
/// A connect, read or write took longer than its timeout, or an op its
/// deadline (HERALD_OPT_OP_TIMEOUT_MS); also `herald_wait`/`herald_client_flush`
/// and `herald_client_next` running out of time.
pub const HERALD_STATUS_TIMEOUT: herald_status = 8;
/// Connection lost, file unreadable.
pub const HERALD_STATUS_IO: herald_status = 9;
/// The op was cancelled (`herald_cancel`, or `herald_client_free`); then
/// `cancelled` is 1.
pub const HERALD_STATUS_CANCELLED: herald_status = 10;
/// The client is being freed: a submission during `herald_client_free` is refused.
pub const HERALD_STATUS_SHUTDOWN: herald_status = 11;
/// Mailbox, message or op id unknown.
pub const HERALD_STATUS_NOT_FOUND: herald_status = 12;
/// The server lacks a needed extension.
pub const HERALD_STATUS_UNSUPPORTED: herald_status = 13;
/// A bug inside herald, caught at the boundary.
pub const HERALD_STATUS_PANIC: herald_status = 14;
/// Queue full, message over the server's SIZE.
pub const HERALD_STATUS_LIMIT: herald_status = 15;
