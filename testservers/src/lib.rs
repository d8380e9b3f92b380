//! Real mail servers for herald's integration tests and benchmarks.
//!
//! The tests (`[dev-dependencies]`) and the bench crate use this crate. It
//! uses the standard library only (no crates, and nothing from herald), and
//! starts real servers on loopback ports, one module per server:
//!
//! * [`smtp_sink`]: [`SmtpSink`], Postfix's `smtp-sink`, a fast SMTP test
//!   server that writes every accepted message to a file (see [`SinkDump`]
//!   for the exact format).
//! * [`dovecot`]: [`Dovecot`], a private Dovecot 2.3 instance with IMAP
//!   (plain and implicit TLS), POP3 (plain and implicit TLS) and submission
//!   (SMTP with AUTH PLAIN LOGIN over STARTTLS) relaying to its own
//!   `SmtpSink`. Users `alice`, `bob`, `carol` with passwords `alicepass`,
//!   `bobpass`, `carolpass`. The config template is the repository's
//!   `tests/servers/dovecot.conf.in`.
//! * [`imap_append`](mod@imap_append): a minimal IMAP client that stores messages byte for
//!   byte with APPEND, to put mail in independently of herald.
//! * [`cyrus`]: [`Cyrus`], a private Cyrus IMAP 3.6 (plain with STARTTLS,
//!   and implicit TLS) from Debian's .debs unpacked by
//!   `scripts/cyrus-debs.sh`; the same users as Dovecot's, in a sasldb;
//!   configs in `tests/servers/cyrus/`.
//! * [`postfix`]: [`Postfix`], a private full Postfix smtpd (PIPELINING,
//!   CHUNKING, SMTPUTF8, SIZE, STARTTLS, a recipient limit) delivering into
//!   a maildir; configs in `tests/servers/postfix/`.
//! * [`proxies`]: [`Socks5Proxy`] (microsocks) and [`HttpProxy`]
//!   (tinyproxy, HTTP CONNECT), each with or without a password.
//! * [`exim`]: [`Exim`], a private Exim 4.96 (PIPELINING, CHUNKING,
//!   SMTPUTF8, SIZE, `recipients_max`) delivering into a maildir, from
//!   Debian's package extracted by `scripts/install-exim.sh`; config in
//!   `tests/servers/exim/`.
//! * [`scripted`]: hostile or broken servers, a closure per connection.
//! * [`imap_script`]: a scripted IMAP server that misbehaves at one chosen
//!   step, on top of [`scripted`].
//!
//! What the servers share: [`preconditions`] ([`require_servers`]),
//! [`process`] (supervised process groups, readiness), [`files`] (temp dirs,
//! config templates), [`ports`] ([`free_port`]) and [`connections`]
//! (counting ESTABLISHED connections with `ss`). Everything a server module
//! needs is re-exported here, so a new server is one new module that uses
//! `crate::{...}` (or `super::...`) and one `pub mod` line below.
//!
//! Linux only: the servers are found, watched and stopped through `/proc`,
//! process groups and `ss`.
//!
//! # Adding a server
//!
//! A file `src/<server>.rs` with its `//!` docs, a `pub mod <server>;` line
//! below and a `pub use` of its main type. It builds on [`require_servers`]
//! (add its binaries to the list there), [`TempDir`], [`free_port`],
//! [`Supervised::spawn`], [`wait_listening`] and [`expect_greeting`], and
//! retries with fresh ports when [`bind_failed`] says so, as [`smtp_sink`]
//! and [`dovecot`] do. Config templates live in the repository's
//! `tests/servers/` (`include_str!("../../tests/servers/<file>.in")`) and
//! are checked with [`find_placeholder`].
//!
//! Install the servers with `scripts/install-test-deps.sh` (as root, or with
//! sudo). Dovecot must be started as root (it switches to the `vmail` user
//! for mail access); smtp-sink also runs as a normal user.
//!
//! # Process lifetime
//!
//! Each server runs under a tiny `/bin/sh` supervisor, in a process group of
//! its own (via `setsid`). The supervisor blocks reading its stdin, a pipe
//! whose only write end belongs to the test process. When the pipe reaches
//! EOF (the `Drop` impl closed it, or the test process exited, aborted, or was
//! killed with SIGKILL) the supervisor sends SIGKILL to the server's whole
//! process group, reaps the server and removes the server's temp dir. So no
//! server process outlives its test process, even when `Drop` never runs.
//! `Drop` also waits until no process of the group is left alive. There is
//! no graceful shutdown: clients just see their connections close.
//!
//! # Environment
//!
//! * `HERALD_KEEP_TEMP=1` keeps every temp dir (`$TMPDIR/herald-tests/...`)
//!   for post-mortem debugging.
//!
//! # Timing (Debian 12, 2 cores)
//!
//! * `SmtpSink::start`: ~15 ms.
//! * `Dovecot::start`: 0.1-0.2 s (including its smtp-sink, an EC certificate
//!   and reading the IMAP, POP3 and submission greetings).
//! * `Postfix::start`: ~0.5 s (mostly `postfix check`).
//! * `Cyrus::start`: a few tenths of a second (sasldb, certificate, greeting).
//! * `Exim::start`: ~0.1 s.
//! * Dropping a `Dovecot` or `SmtpSink`: a few ms to ~30 ms.
//! * A failed login takes ~0.5 s (Dovecot's failure timer granularity).

#![deny(missing_docs)]

/// Loopback address every test server listens on.
pub const HOST: &str = "127.0.0.1";

// What the servers share.
pub mod connections;
pub mod files;
pub mod ports;
pub mod preconditions;
pub mod process;

// One module per server.
pub mod certs;
pub mod cyrus;
pub mod dovecot;
pub mod exim;
pub mod imap_append;
pub mod imap_script;
pub mod postfix;
pub mod proxies;
pub mod scripted;
pub mod smtp_sink;
pub mod tls_server;
pub mod tokens;

pub use certs::TestCerts;
pub use connections::{established_connections, wait_for_connections};
pub use cyrus::{require_cyrus, Cyrus, CYRUS_USERS};
pub use dovecot::{Dovecot, DOVEADM, DOVECOT, USERS};
pub use exim::Exim;
pub use files::{chown_tree, find_placeholder, keep_temp, self_signed_cert, TempDir};
pub use imap_append::imap_append;
pub use ports::free_port;
pub use postfix::Postfix;
pub use preconditions::{euid, is_executable, lookup_user, require_servers, which};
pub use process::{
    bind_failed, expect_greeting, live_group_members, pid_alive, pid_listens_on, wait_listening, Supervised,
    START_TIMEOUT, STOP_TIMEOUT,
};
pub use proxies::{HttpProxy, Proxy, Socks5Proxy};
pub use smtp_sink::{sink_form, SinkDump, SmtpSink, SMTP_SINK};
pub use tls_server::TlsServer;
pub use tokens::TokenServer;
