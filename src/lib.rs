//! herald: send mail over SMTP and read it over IMAP and POP3 without ever
//! blocking the caller, through a C ABI (see `include/herald.h`).
//!
//! # Layers
//!
//! Modules import only from their own layer or the ones below it, never
//! from a layer above, and never in a cycle. `tests/layers.rs` reads this
//! table and checks every `crate::` reference in `src/` against it.
//!
//! | layer | name | modules | may import |
//! |---|---|---|---|
//! | 0 | foundation | `status`, `data`, `result`, `options`, `log`, `envelope`, `buffer`, `parsed`, `sasl` | std and dependencies only |
//! | 1 | net | `net` | foundation |
//! | 2 | engine | `engine` | foundation, net |
//! | 3 | protocols | `smtp`, `imap`, `pop3`, `pickup`, `message`, `spool` | foundation, net, engine |
//! | 4 | composition root | `client`, `outbox` | everything below |
//! | 5 | C API | `ffi`, `fuzzing` | everything below; nothing imports it |
//!
//! - Foundation: errors and status codes (`status`), the data an op hands
//!   back (`data`, `result`), typed options, the log, the envelope's
//!   limits (`envelope`), large buffers (`buffer`), parsed messages and
//!   MIME structure (`parsed`), the SASL mechanisms the three protocols
//!   authenticate with (`sasl`).
//! - `net`: connect, TLS, the bounded reader, connection control.
//! - `engine`: the op table and queue, the pool, throttle, delivery,
//!   deadlines, cancel and shutdown, generic over a protocol's
//!   `engine::Driver` and its `engine::Job` type. It names no protocol.
//! - The protocols: each a driver with its own job type (`smtp::SendJob`,
//!   `imap::ImapJob`, `pop3::Pop3Job`); PICKUP runs `SendJob`s too; the
//!   message builder; the durable outbox's journal (`spool`).
//! - `client`: the only place that lists the protocols: which driver a
//!   client of each protocol runs, and which engine takes each job type;
//!   `outbox` wires a client's sends through its spool.
//! - [`ffi`]: the C ABI.

#![deny(missing_docs)]

pub(crate) mod buffer;
pub(crate) mod client;
pub(crate) mod data;
pub(crate) mod engine;
pub(crate) mod envelope;
pub mod ffi;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub(crate) mod imap;
pub(crate) mod log;
pub(crate) mod message;
pub(crate) mod net;
pub(crate) mod options;
pub(crate) mod outbox;
pub(crate) mod parsed;
pub(crate) mod pickup;
pub(crate) mod pop3;
pub(crate) mod result;
pub(crate) mod sasl;
pub(crate) mod smtp;
pub(crate) mod spool;
pub(crate) mod status;
