//! herald: send mail over SMTP and read it over IMAP and POP3 without ever
//! blocking the caller, through a C ABI (see `include/herald.h`).
//!
//! Layout: the protocol engines ([`smtp`], [`imap`], [`pop3`], [`pickup`]) and the engine
//! ([`engine`], [`pool`]) are plain safe Rust; the C layer is [`ffi`].

pub mod client;
pub mod data;
pub mod engine;
pub mod ffi;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod imap;
pub mod log;
pub mod message;
pub mod net;
pub mod options;
pub mod pickup;
pub mod pop3;
pub mod result;
pub mod smtp;
pub mod status;

pub use client::Client;
pub use engine::{Notify, Submit};
pub use options::{Options, Protocol, Security};
pub use result::{Completion, OpId, ResultData, ResultItem, Success};
pub use status::{Error, Status};
