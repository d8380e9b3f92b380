//! herald's IMAP client. Every op names its mailbox; each pooled
//! connection (one worker thread) remembers which mailbox it has selected,
//! SELECTs or EXAMINEs only when an op needs another one, and runs one op
//! at a time, so ops from many threads never mix.
//!
//! herald speaks every command itself, on one connection with one reader
//! (`wire::Conn::read_response`) and one parser (`parse`): the greeting
//! and STARTTLS, login (AUTHENTICATE OAUTHBEARER, XOAUTH2, SCRAM or PLAIN
//! with SASL-IR, else LOGIN), LIST, CREATE, DELETE, SELECT and EXAMINE, UID SEARCH, UID FETCH
//! (bodies read straight into the result), APPEND (pipelined with
//! LITERAL+, batched with MULTIAPPEND, UIDs from APPENDUID), UID STORE,
//! UID COPY, UID MOVE (or COPY, STORE and UID EXPUNGE), EXPUNGE, IDLE
//! (woken by herald to renew it, lend the connection or stop) and LOGOUT;
//! and for sync state (`sync`): ENABLE QRESYNC, STATUS, UID FETCH with
//! CHANGEDSINCE and VANISHED, LIST RETURN (SPECIAL-USE).
//!
//! Why not the `imap` crate (3.0 alpha) with imap-proto, which herald once
//! used for login and the simple commands: the crate reads response lines
//! with no length limit (a server sending an endless line grew memory by
//! hundreds of MB a second); imap-proto's nom parser recurses once per
//! nesting level, so about 400 `(` in one line overflowed the worker's
//! stack and killed the host process; the crate panics on some inputs;
//! and it needs a reader of its own, so two engines shared each socket.
//! None of that can be fixed from outside the crate.
//!
//! Limits per connection, whatever the server sends:
//! - one response's text (its lines without the literals) is at most
//!   MAX_LINE_BYTES (256 KiB by default): longer is PROTOCOL;
//! - one response's literals are at most MAX_MESSAGE_BYTES together
//!   (100 MiB by default): larger is LIMIT, refused before it is read;
//! - lists nest at most `parse::MAX_DEPTH` (64) levels: deeper is
//!   PROTOCOL; the parser is iterative, so no input reaches the stack limit;
//! - at most 4 SASL challenges per login;
//! - a search result holds at most 1 048 576 UIDs (LIMIT). With ESEARCH
//!   (RFC 4731) herald asks for them as a compact set, so a search of a
//!   large mailbox fits in one response line.
//!
//! After any of these the connection is dropped (the next op opens a new
//! one): its stream is out of step. The read buffer is at most about twice
//! MAX_LINE_BYTES; a fetch holds what it fetched until it completes (a
//! streaming fetch, `stream`, holds one message plus a bounded hand-off to
//! the caller), and OP_TIMEOUT_MS bounds how long a server can keep any op
//! but IDLE.
//!
//! Waits that a cancel cannot cut short by shutting the socket down (IDLE
//! and a bulk append cancel cooperatively, to keep the connection or report
//! exact UIDs) are bounded by a read deadline, however slowly the server
//! trickles: an append's responses, IDLE's "+" and DONE's reply must each
//! arrive whole within IO_TIMEOUT_MS, LOGOUT's reply within 2 s; IDLE reads
//! a response that is not yet buffered with an aborting cancel.
//!
//! IDLE and the pool: an IDLE op holds its worker's connection, so it
//! counts toward MAX_CONNECTIONS. Every 100 ms, and after every response
//! the server sends, it looks at cancels, renewal and whether ops wait
//! that no other worker will take (all busy, pool at the cap); if so it
//! ends IDLE (DONE), runs them on its connection, selects its mailbox
//! again (reporting any change meanwhile) and resumes IDLE. At most
//! MAX_CONNECTIONS IDLEs run at once; another waits for a connection.
//! Changes are coalesced: at most one on_change notification per IDLE op
//! is pending at a time; it carries the latest count, and the change items
//! of the one it replaced (`sync::ChangeLog`, `result::coalesce`).

mod append_retry;
pub mod args;
mod bodystructure;
pub mod command;
pub mod fetch_ext;
mod fetched;
mod parse;
pub mod section;
mod session;
mod stream;
pub mod sync;
pub mod utf7;
mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{CancelMode, Driver, Job};
use crate::log::{DEBUG, INFO, WARN};
use crate::options::Options;
use crate::result::{field, Outcome, ResultData, ResultItem, Success};
use crate::status::{Error, Result, Status};

/// An IMAP op a worker holds.
type Ticket = crate::engine::Ticket<ImapJob>;
/// What the IMAP driver sees of its worker.
type WorkerCtx = crate::engine::WorkerCtx<ImapJob>;

use args::{quote, Criteria, Part};
use command::{Command, FlagChange, Mailbox};
use parse::{Cond, Response, Value};
use session::Session;

/// `parts` of a fetch (`HERALD_FETCH_*`).
pub const FETCH_FLAGS: u32 = 1;
pub const FETCH_ENVELOPE: u32 = 2;
pub const FETCH_SIZE: u32 = 4;
pub const FETCH_HEADERS: u32 = 8;
pub const FETCH_BODY: u32 = 16;
/// CONDSTORE's MODSEQ of each message (`sync`).
pub const FETCH_MODSEQ: u32 = 128;
pub const FETCH_ALL: u32 = 31 | fetch_ext::FETCH_PARSED | fetch_ext::FETCH_BODYSTRUCTURE | FETCH_MODSEQ;

#[cfg(test)]
/// A streaming fetch's bounds: most items, and bytes, held for the caller.
pub fn stream_bounds() -> (usize, usize) {
    (stream::MAX_HELD_ITEMS, stream::MAX_HELD_BYTES)
}

/// What an IMAP op does.
#[derive(Debug)]
pub enum ImapOp {
    List {
        pattern: String,
    },
    Create,
    Delete,
    Search {
        criteria: Criteria,
    },
    Fetch {
        uids: String,
        parts: u32,
    },
    /// One body section, decoded (`section` checked by `section::check_section`).
    FetchSection {
        uid: u64,
        section: String,
        offset: u64,
        max_len: u64,
    },
    /// A fetch that delivers each message as an item as it arrives (`stream`).
    FetchStream {
        uids: String,
        parts: u32,
    },
    /// A fetch that writes each message to `dir` (`stream`).
    FetchToDir {
        uids: String,
        dir: String,
    },
    Append {
        messages: Vec<Vec<u8>>,
        flags: String,
    },
    Store {
        uids: String,
        mode: FlagChange,
        flags: String,
    },
    Copy {
        uids: String,
        target: String,
    },
    Move {
        uids: String,
        target: String,
    },
    Expunge,
    Idle,
    /// Test the account: a fresh session (connect, TLS, login), its
    /// capabilities and security reported, then LOGOUT.
    Test,
    /// STATUS of each mailbox, without selecting (`sync::status`).
    Status {
        mailboxes: Vec<String>,
    },
    /// UID FETCH ... (CHANGEDSINCE since [VANISHED]).
    FetchChanged {
        uids: String,
        parts: u32,
        since: u64,
    },
}

/// An IMAP op and its mailbox (UTF-8, as the caller named it; empty for LIST).
#[derive(Debug)]
pub struct ImapJob {
    pub mailbox: String,
    pub op: ImapOp,
    /// The UIDVALIDITY the op's UIDs belong to, when the caller named it:
    /// the op fails unless the mailbox still has it (`sync`).
    pub uidvalidity: Option<u32>,
}

impl Job for ImapJob {
    fn name(&self) -> &'static str {
        match self.op {
            ImapOp::List { .. } => "IMAP list",
            ImapOp::Create => "IMAP create",
            ImapOp::Delete => "IMAP delete",
            ImapOp::Search { .. } => "IMAP search",
            ImapOp::Fetch { .. } => "IMAP fetch",
            ImapOp::FetchSection { .. } => "IMAP fetch section",
            ImapOp::FetchStream { .. } => "IMAP streaming fetch",
            ImapOp::FetchToDir { .. } => "IMAP fetch to directory",
            ImapOp::Append { .. } => "IMAP append",
            ImapOp::Store { .. } => "IMAP store",
            ImapOp::Copy { .. } => "IMAP copy",
            ImapOp::Move { .. } => "IMAP move",
            ImapOp::Expunge => "IMAP expunge",
            ImapOp::Idle => "IMAP idle",
            ImapOp::Test => "IMAP account test",
            ImapOp::Status { .. } => "IMAP status",
            ImapOp::FetchChanged { .. } => "IMAP fetch changed",
        }
    }

    /// Flush does not wait for IDLE: it runs until cancelled.
    fn flushable(&self) -> bool {
        !self.is_idle()
    }

    /// The mailbox the op needs selected, if it needs one: the pool
    /// prefers a connection that already has it.
    fn affinity_key(&self) -> Option<&str> {
        match self.op {
            ImapOp::List { .. }
            | ImapOp::Create
            | ImapOp::Delete
            | ImapOp::Append { .. }
            | ImapOp::Status { .. } => None,
            _ => Some(&self.mailbox),
        }
    }
}

impl ImapJob {
    /// The op, to run only while the mailbox's UIDVALIDITY is `v` (when given).
    pub fn expecting(mut self, v: Option<u32>) -> Self {
        self.uidvalidity = v;
        self
    }

    /// Does the op run until cancelled (IDLE)?
    pub fn is_idle(&self) -> bool {
        matches!(self.op, ImapOp::Idle)
    }
}

/// Which mailboxes this client changed, and when, shared by its
/// connections: a connection that selected a mailbox before another one
/// changed it syncs (NOOP) before its next op there, so an op always sees
/// what the client's earlier ops did.
#[derive(Default)]
pub struct Changes {
    clock: AtomicU64,
    at: parking_lot::Mutex<HashMap<String, u64>>,
}

impl Changes {
    pub fn new() -> Arc<Changes> {
        Arc::new(Changes::default())
    }

    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn changed_at(&self, mailbox: &str) -> u64 {
        self.at.lock().get(mailbox).copied().unwrap_or(0)
    }

    fn touch(&self, mailboxes: &[&str]) {
        let mut at = self.at.lock();
        let t = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        for m in mailboxes {
            at.insert(m.to_string(), t);
        }
    }
}

/// Reads `input` as a server's bytes through herald's IMAP reader and
/// parser (with limits of 64 KiB of text and 1 MiB of literals per
/// response) until it ends or a response is refused; returns how many
/// responses were read. The fuzz target's entry point. Never panics.
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_responses(input: &[u8]) -> usize {
    let limits = wire::Limits {
        text: 64 * 1024,
        literals: 1024 * 1024,
    };
    let mut n = 0;
    for r in wire::read_all(input, limits) {
        // And what herald makes of each kind of response.
        match r {
            Ok(Response::Fetch { atts, .. }) => {
                let _ = fetch_ext::Extra::scan(&atts);
                let _ = parse::fetch_data(atts);
            }
            Ok(Response::Data { name, values }) => match name.as_str() {
                "LIST" => {
                    let _ = list_item(&values);
                }
                "ESEARCH" => {
                    for v in values.iter().filter_map(Value::atom) {
                        let _ = add_uid_set(v, &mut Vec::new(), 1024);
                    }
                }
                _ => {}
            },
            Ok(Response::Tagged { status, .. } | Response::Status(status)) => {
                let _ = parse::appenduids(&status, 1024);
                let _ = status.error("fuzz");
            }
            _ => {}
        }
        n += 1;
    }
    n
}

/// How often an IDLE wakes to look at cancels, renewal and waiting ops.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// Most APPENDs in flight at once, and most of their bytes.
const APPEND_WINDOW: usize = 64;
const APPEND_WINDOW_BYTES: usize = 8 * 1024 * 1024;
/// Fetched bytes between progress reports.
const FETCH_PROGRESS_STEP: u64 = 1024 * 1024;

/// Ops an IDLE worker may run while it lends its connection: anything but another IDLE.
fn not_idle(j: &ImapJob) -> bool {
    !j.is_idle()
}

/// The IMAP protocol engine of one pooled connection.
pub struct ImapDriver {
    opts: Arc<Options>,
    tls: Option<native_tls::TlsConnector>,
    session: Option<Session>,
    changes: Arc<Changes>,
}

impl ImapDriver {
    /// A connection's driver; `changes` is shared by all of a client's drivers.
    pub fn new(opts: Arc<Options>, changes: Arc<Changes>) -> Self {
        ImapDriver {
            opts,
            tls: None,
            session: None,
            changes,
        }
    }

    /// The session, opened (or reopened, when the server closed it) as needed.
    fn ensure(&mut self, w: &mut WorkerCtx) -> Result<&mut Session> {
        if self.session.as_ref().is_some_and(Session::is_stale) {
            w.log(DEBUG, || {
                "the IMAP connection was closed; opening a new one".into()
            });
            self.session = None;
        }
        if self.session.is_none() {
            let ctl = w.new_ctl();
            let (tls, changes) = (&mut self.tls, &self.changes);
            let s = crate::net::tls::with_cert_info(&self.opts, |o| {
                Session::open(o, tls, &ctl, w.tracer(), changes.clone())
            })?;
            w.log(INFO, || {
                format!(
                    "connected to {}:{}{}",
                    self.opts.host(),
                    self.opts.port(),
                    if s.is_tls() { " (TLS)" } else { "" }
                )
            });
            self.session = Some(s);
        }
        self.session
            .as_mut()
            .ok_or_else(|| Error::protocol("no IMAP session"))
    }

    /// After a failed op: a connection that failed, or that a cancel shut
    /// down, is closed; after NO or BAD it stays.
    fn after_error(&mut self, e: &Error) {
        let broken = matches!(
            e.status,
            Status::Io | Status::Timeout | Status::Protocol | Status::Cancelled | Status::Panic
        );
        if broken
            || self
                .session
                .as_ref()
                .is_some_and(|s| s.is_aborted() || s.is_broken())
        {
            self.session = None;
        } else if e.status == Status::Transient {
            // The server could not use the mailbox (Dovecot: SERVERBUG after
            // another client deleted and made it again): select it afresh next time.
            if let Some(s) = self.session.as_mut() {
                s.selected = None;
            }
        }
    }

    /// Runs one op to its completion.
    fn run_op(&mut self, t: Ticket, w: &mut WorkerCtx) {
        if t.job.is_idle() {
            return self.idle(t, w);
        }
        if !t.is_live() {
            return t.complete(Err(Error::cancelled()));
        }
        if matches!(t.job.op, ImapOp::Test) {
            let outcome = self.test_account(w);
            if let Err(e) = &outcome {
                self.after_error(e);
            }
            return t.complete(outcome);
        }
        let outcome = self.perform(&t, w);
        let j = &t.job;
        let changed: Vec<&str> = match &j.op {
            ImapOp::Copy { target, .. } => vec![target.as_str()],
            ImapOp::Move { target, .. } => vec![j.mailbox.as_str(), target.as_str()],
            ImapOp::Append { .. }
            | ImapOp::Store { .. }
            | ImapOp::Expunge
            | ImapOp::Create
            | ImapOp::Delete => {
                vec![j.mailbox.as_str()]
            }
            _ => vec![],
        };
        if !changed.is_empty() {
            self.changes.touch(&changed);
        }
        if let Err(e) = &outcome {
            self.after_error(e);
        }
        t.complete(outcome);
    }

    /// A fresh session (connect, TLS, login) reported, then LOGOUT.
    fn test_account(&mut self, w: &mut WorkerCtx) -> Outcome {
        if let Some(s) = self.session.take() {
            s.logout();
        }
        let s = self.ensure(w)?;
        let (tls, caps, mech) = (s.is_tls(), s.caps.list(), s.mechanism().map(str::to_string));
        let (data, detail) = crate::net::account::report(&self.opts, tls, &caps, mech.as_deref());
        if let Some(s) = self.session.take() {
            s.logout();
        }
        Ok(Success::new(0, detail).with_result(data))
    }

    fn perform(&mut self, t: &Ticket, w: &mut WorkerCtx) -> Outcome {
        let job = &t.job;
        let s = self.ensure(w)?;
        s.expect_uidvalidity = job.uidvalidity;
        let mb = job.mailbox.as_str();
        match &job.op {
            ImapOp::List { pattern } => list(s, pattern),
            ImapOp::Create => {
                s.simple(Command::Create(Mailbox(mb)), &format!("CREATE {mb}"))?;
                Ok(Success::new(0, format!("created {mb}")))
            }
            ImapOp::Delete => {
                if s.selected.as_ref().is_some_and(|x| x.name == mb) {
                    // Leave it first: servers refuse or misbehave deleting the selected mailbox.
                    s.selected = None;
                    let _ = s.command(Command::Examine(Mailbox("INBOX")), &mut |_| {})?;
                }
                s.simple(Command::Delete(Mailbox(mb)), &format!("DELETE {mb}"))?;
                Ok(Success::new(0, format!("deleted {mb}")))
            }
            ImapOp::Search { criteria } => search(s, mb, criteria),
            ImapOp::Fetch { .. }
            | ImapOp::FetchSection { .. }
            | ImapOp::FetchStream { .. }
            | ImapOp::FetchToDir { .. }
            | ImapOp::FetchChanged { .. } => fetch_op(s, t, mb, &job.op),
            ImapOp::Status { mailboxes } => sync::status(s, mailboxes),
            ImapOp::Append { messages, flags } => append(s, t, mb, messages, flags),
            ImapOp::Store { uids, mode, flags } => {
                s.select(mb, true)?;
                let store = Command::UidStore {
                    uids,
                    change: *mode,
                    flags,
                };
                s.simple(store, &format!("UID STORE {uids}"))?;
                sync::state_only(s, format!("flags stored on {uids}"))
            }
            ImapOp::Copy { uids, target } => {
                s.select(mb, false)?;
                let copy = Command::UidCopy {
                    uids,
                    to: Mailbox(target),
                };
                let st = s.command(copy, &mut |_| {})?;
                if st.cond != Cond::Ok {
                    return Err(st.error(&format!("UID COPY {uids} to {target}")));
                }
                let copies = ResultData::new(sync::copyuid_items(&st, MAX_SEARCH_UIDS));
                Ok(Success::new(0, format!("copied {uids} to {target}"))
                    .with_result(sync::stamp(s, copies, false)))
            }
            ImapOp::Move { uids, target } => move_messages(s, mb, uids, target),
            ImapOp::Expunge => {
                s.select(mb, true)?;
                s.simple(Command::Expunge, &format!("EXPUNGE in {mb}"))?;
                sync::state_only(s, format!("expunged {mb}"))
            }
            ImapOp::Idle => Err(Error::invalid("IDLE runs on its own")),
            ImapOp::Test => Err(Error::invalid("the account test runs on its own")),
        }
    }

    /// IMAP IDLE until cancelled: `on_change` hears of every change of the
    /// mailbox's message count (and flags). The IDLE command is renewed
    /// before servers drop it; after a lost connection it reconnects, with
    /// a growing pause; while ops wait that no other connection will take,
    /// it ends IDLE, runs them on this connection, and resumes.
    fn idle(&mut self, t: Ticket, w: &mut WorkerCtx) {
        let mailbox = t.job.mailbox.clone();
        let mut known: Option<u32> = None;
        // What changed since the last notification.
        let mut log = sync::ChangeLog::default();
        let mut started = false;
        let mut failures = 0u32;
        let mut unfinished = None;
        while t.is_live() {
            // Connecting and selecting can block: a cancel shuts the socket down.
            t.set_cancel_mode(CancelMode::Abort);
            let exists = match self.idle_select(&mailbox, w) {
                Ok(n) => n,
                Err(e) => {
                    self.after_error(&e);
                    if !started {
                        return t.complete(Err(e));
                    }
                    failures += 1;
                    w.log(WARN, || format!("IDLE on {mailbox}: {}; trying again", e.detail));
                    self.session = None;
                    if !pause(&t, w, backoff(failures)) {
                        break;
                    }
                    continue;
                }
            };
            started = true;
            if known.is_some_and(|k| k != exists) {
                let sel = self.session.as_ref().and_then(|s| s.selected.as_ref());
                changed(&t, &mailbox, exists, &mut log, sel);
            }
            known = Some(exists);
            // Waiting in IDLE: a cancel is seen at the next tick, and the connection kept.
            t.set_cancel_mode(CancelMode::Cooperative);
            if !t.is_live() {
                break;
            }
            let Some(s) = self.session.as_mut() else { continue };
            match idle_once(s, &t, w, &mailbox, &mut known, &mut log) {
                Ok(IdleEnd::Stop(tag)) => {
                    unfinished = Some(tag);
                    break;
                }
                Ok(IdleEnd::Renew) => failures = 0,
                Ok(IdleEnd::Lend) => {
                    failures = 0;
                    while let Some(op) = w.try_next_where(Some(&mailbox), Some(&not_idle)) {
                        self.run_op(op, w);
                    }
                }
                Err(e) => {
                    self.session = None;
                    if !t.is_live() {
                        break;
                    }
                    failures += 1;
                    w.log(WARN, || format!("IDLE on {mailbox}: {}; reconnecting", e.detail));
                    if !pause(&t, w, backoff(failures)) {
                        break;
                    }
                }
            }
        }
        t.complete(Err(Error::cancelled()));
        if let Some(tag) = unfinished {
            self.finish_done(&tag);
        }
    }

    /// The session for an IDLE on `mailbox`, selected: the mailbox's
    /// message count.
    fn idle_select(&mut self, mailbox: &str, w: &mut WorkerCtx) -> Result<u32> {
        let s = self.ensure(w)?;
        if !s.caps.has("IDLE") {
            return Err(Error::new(Status::Unsupported, "the server does not offer IDLE"));
        }
        s.select(mailbox, false)?;
        Ok(s.selected.as_ref().map_or(0, |x| x.exists))
    }

    /// Reads the reply to the DONE that ended an IDLE (tagged `tag`). It is
    /// read after the cancel is delivered, so a server that keeps talking
    /// delays neither, and the connection is kept when the server ends IDLE
    /// in time.
    fn finish_done(&mut self, tag: &str) {
        let Some(s) = self.session.as_mut() else { return };
        let wait = s.io_timeout().min(DONE_WAIT);
        let deadline = Instant::now() + wait;
        let mut count = s.selected.as_ref().map_or(0, |x| x.exists);
        let mut log = sync::ChangeLog::default();
        match s.within(wait, |s| done_reply(s, None, tag, &mut count, deadline, &mut log)) {
            Ok(_) => {
                if let Some(sel) = s.selected.as_mut() {
                    sel.exists = count;
                }
            }
            Err(_) => self.session = None,
        }
    }
}

/// The longest wait for the reply to DONE after a cancel.
const DONE_WAIT: Duration = Duration::from_secs(2);

/// The pause before reconnect attempt `n` (1-based): none, then 1 s, doubling to 30 s.
fn backoff(n: u32) -> Duration {
    if n <= 1 {
        Duration::ZERO
    } else {
        Duration::from_secs((1u64 << (n - 2).min(5)).min(30))
    }
}

/// How often a pause before reconnecting looks for a cancel.
const PAUSE_POLL: Duration = Duration::from_millis(20);

/// Sleeps `d`, waking every [`PAUSE_POLL`]; false if the op was cancelled meanwhile.
fn pause(t: &Ticket, w: &WorkerCtx, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if !t.is_live() || w.shutting_down() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep(PAUSE_POLL.min(until - now));
    }
}

/// Notifies the IDLE op's caller: the mailbox's state, then what changed
/// since the last notification (`sync::ChangeLog`).
fn changed(
    t: &Ticket,
    mailbox: &str,
    exists: u32,
    log: &mut sync::ChangeLog,
    sel: Option<&session::Selected>,
) {
    let items = log.take(mailbox, exists, sel);
    t.notify_change(
        Success::new(0, format!("{mailbox} changed: {exists} messages")).with_result(ResultData::new(items)),
    );
}

/// Reads one response while IDLE waits cooperatively for a cancel: one
/// already buffered at once; else with the cancel mode at Abort for the
/// read, so a server trickling a line cannot hold a cancel up (the
/// connection is then lost, since a response was cut short).
fn read_idle(s: &mut Session, t: &Ticket) -> Result<Response> {
    if s.line_buffered() {
        return s.read_response(&mut |_| {});
    }
    t.set_cancel_mode(CancelMode::Abort);
    let r = if t.is_live() {
        s.read_response(&mut |_| {})
    } else {
        Err(Error::cancelled())
    };
    t.set_cancel_mode(CancelMode::Cooperative);
    r
}

enum IdleEnd {
    /// Cancelled: DONE is sent, its reply (to this tag) not yet read.
    Stop(String),
    /// Time to renew the IDLE command.
    Renew,
    /// Ops wait for this connection.
    Lend,
}

/// Reads up to the reply to `tag` (an IDLE ended by DONE) by `deadline`.
/// With a ticket, a cancel meanwhile stops the wait: `Ok(false)`.
fn done_reply(
    s: &mut Session,
    t: Option<&Ticket>,
    tag: &str,
    count: &mut u32,
    deadline: Instant,
    log: &mut sync::ChangeLog,
) -> Result<bool> {
    loop {
        if t.is_some_and(|t| !t.is_live()) {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            return Err(Error::new(Status::Timeout, "the server did not end IDLE"));
        }
        if !s.wait_data(IDLE_TICK)? {
            continue;
        }
        let r = match t {
            Some(t) => read_idle(s, t)?,
            None => s.read_response(&mut |_| {})?,
        };
        match r {
            Response::Tagged { tag: tg, .. } if tg == tag => return Ok(true),
            Response::Tagged { tag: tg, .. } => {
                return Err(Error::protocol(format!("a reply with tag {tg} in IDLE")))
            }
            r => {
                idle_event(&r, count, log)?;
            }
        }
    }
}

/// Waits for the "+" that starts IDLE (to command `tag`).
fn idle_started(
    s: &mut Session,
    t: &Ticket,
    tag: &str,
    count: &mut u32,
    log: &mut sync::ChangeLog,
) -> Result<()> {
    let deadline = Instant::now() + s.io_timeout();
    loop {
        if !t.is_live() {
            return Err(Error::cancelled());
        }
        if Instant::now() >= deadline {
            return Err(Error::new(Status::Timeout, "the server did not start IDLE"));
        }
        if !s.wait_data(IDLE_TICK)? {
            continue;
        }
        match read_idle(s, t)? {
            Response::Continue => return Ok(()),
            Response::Tagged { tag: tg, status } if tg == tag => {
                return Err(Error::new(
                    Status::Unsupported,
                    format!("IDLE refused: {}", status.detail()),
                ))
            }
            Response::Tagged { tag: tg, .. } => {
                return Err(Error::protocol(format!("a reply with tag {tg} in IDLE")))
            }
            r => {
                idle_event(&r, count, log)?;
            }
        }
    }
}

/// One IDLE command, from IDLE to DONE. Every pass of its loop, whether
/// or not the server said something, looks at cancels, renewal and
/// starved ops; changes are reported at most once per tick while the
/// server keeps talking (and the engine coalesces what is not yet
/// delivered).
fn idle_once(
    s: &mut Session,
    t: &Ticket,
    w: &WorkerCtx,
    mailbox: &str,
    known: &mut Option<u32>,
    log: &mut sync::ChangeLog,
) -> Result<IdleEnd> {
    let mut count = known.unwrap_or(0);
    let tag = s.conn().next_tag();
    s.send(Command::Idle.line(&tag).as_bytes())?;
    let io = s.io_timeout();
    s.within(io, |s| idle_started(s, t, &tag, &mut count, log))?;
    let renew_at = Instant::now() + w.options().idle_renew;
    let mut dirty = count != known.unwrap_or(count);
    let mut reported = Instant::now();
    let end = loop {
        if !t.is_live() {
            break Some(IdleEnd::Stop(tag.clone()));
        }
        if Instant::now() >= renew_at {
            break Some(IdleEnd::Renew);
        }
        if w.ops_starved(&not_idle) {
            break Some(IdleEnd::Lend);
        }
        if !s.wait_data(IDLE_TICK)? {
            continue;
        }
        let r = read_idle(s, t)?;
        if let Response::Tagged { tag: tg, .. } = &r {
            if *tg == tag {
                // The server ended IDLE itself: start it again.
                break None;
            }
            return Err(Error::protocol(format!("a reply with tag {tg} in IDLE")));
        }
        dirty |= idle_event(&r, &mut count, log)?;
        if dirty && (s.conn().buffered() == 0 || reported.elapsed() >= IDLE_TICK) {
            changed(t, mailbox, count, log, s.selected.as_ref());
            *known = Some(count);
            dirty = false;
            reported = Instant::now();
        }
    };
    let end = match end {
        None => IdleEnd::Renew,
        Some(IdleEnd::Stop(tag)) => {
            s.send(b"DONE\r\n")?;
            IdleEnd::Stop(tag)
        }
        Some(end) => {
            s.send(b"DONE\r\n")?;
            let io = s.io_timeout();
            let deadline = Instant::now() + io;
            if s.within(io, |s| done_reply(s, Some(t), &tag, &mut count, deadline, log))? {
                end
            } else {
                IdleEnd::Stop(tag)
            }
        }
    };
    if dirty {
        changed(t, mailbox, count, log, s.selected.as_ref());
        *known = Some(count);
    }
    if let Some(sel) = s.selected.as_mut() {
        sel.exists = count;
    }
    Ok(end)
}

/// Applies an untagged response seen in IDLE (what changed goes to
/// `log`); true if the mailbox changed.
fn idle_event(r: &Response, count: &mut u32, log: &mut sync::ChangeLog) -> Result<bool> {
    log.record(r);
    Ok(match r {
        Response::Exists(n) => {
            let changed = *n != *count;
            *count = *n;
            changed
        }
        Response::Expunge(_) => {
            *count = count.saturating_sub(1);
            true
        }
        Response::Data { name, values } if name == "VANISHED" => {
            if let Some(n) = sync::vanished_now(values) {
                *count = count.saturating_sub(n);
            }
            true
        }
        Response::Fetch { .. } => true,
        Response::Status(st) if st.cond == Cond::Bye => {
            return Err(Error::new(
                Status::Io,
                format!("the server closed the connection: {}", st.detail()),
            ))
        }
        _ => false,
    })
}

/// A mailbox attribute as herald reports it: the RFC 3501 and RFC 6154
/// ones in their canonical spelling, others as the server wrote them.
fn attribute_name(a: &str) -> String {
    /// RFC 3501's and RFC 5258's; RFC 6154's are `sync::SPECIAL_USE`.
    const BASE: [&str; 7] = [
        "\\Noinferiors",
        "\\Noselect",
        "\\Marked",
        "\\Unmarked",
        "\\HasChildren",
        "\\HasNoChildren",
        "\\NonExistent",
    ];
    BASE.iter()
        .chain(&sync::SPECIAL_USE)
        .find(|k| k.eq_ignore_ascii_case(a))
        .map_or_else(|| a.to_string(), |k| k.to_string())
}

/// `* LIST (attributes) delimiter name` as a result item.
fn list_item(values: &[parse::Value]) -> Option<ResultItem> {
    let [attrs, _delimiter, name, ..] = values else {
        return None;
    };
    let flags: Vec<String> = attrs
        .list()?
        .iter()
        .filter_map(|a| a.atom())
        .map(attribute_name)
        .collect();
    let mut item = ResultItem::new(0)
        .with_str(field::NAME, &utf7::decode(&name.text()?))
        .with_str(field::FLAGS, &flags.join(" "));
    let roles = sync::special_use(&flags);
    if !roles.is_empty() {
        item.set_str(field::SPECIAL_USE, &roles);
    }
    Some(item)
}

fn list(s: &mut Session, pattern: &str) -> Outcome {
    let mut items = Vec::new();
    let mut malformed = None;
    let st = s.command(&sync::list_command(s, pattern), &mut |r| {
        if let Response::Data { name, values } = r {
            if name == "LIST" {
                match list_item(&values) {
                    Some(item) => items.push(item),
                    None => malformed = Some(format!("{values:?}")),
                }
            }
        }
    })?;
    if st.cond != Cond::Ok {
        return Err(st.error(&format!("LIST {pattern}")));
    }
    if let Some(m) = malformed {
        return Err(Error::protocol(format!("a malformed LIST response: {m:.200}")));
    }
    Ok(Success::new(0, format!("{} mailboxes", items.len())).with_result(ResultData::new(items)))
}

/// Most UIDs one search result holds (a result item each).
const MAX_SEARCH_UIDS: usize = 1 << 20;

/// Adds the UIDs of an ESEARCH `ALL` set (`1:3,7,9:12`) to `out`, at most
/// `max` in all: a set can name billions of UIDs in a few bytes.
fn add_uid_set(set: &str, out: &mut Vec<u32>, max: usize) -> Result<()> {
    for range in set.split(',') {
        let mut ends = range.splitn(2, ':').map(str::parse::<u32>);
        let (a, b) = match (ends.next(), ends.next()) {
            (Some(Ok(a)), None) => (a, a),
            (Some(Ok(a)), Some(Ok(b))) => (a.min(b), a.max(b)),
            _ => {
                return Err(Error::protocol(format!(
                    "a malformed UID set in ESEARCH: {set:.100}"
                )))
            }
        };
        if (b - a) as usize >= max.saturating_sub(out.len()) {
            return Err(Error::new(
                Status::Limit,
                format!("the search found more than {max} messages"),
            ));
        }
        out.extend(a..=b);
    }
    Ok(())
}

/// UID SEARCH. With ESEARCH (RFC 4731) the UIDs come as a compact set
/// (`RETURN (ALL)`), so a search of a large mailbox fits in a response
/// line of MAX_LINE_BYTES; without it, as a list of numbers.
fn search(s: &mut Session, mailbox: &str, criteria: &Criteria) -> Outcome {
    s.select(mailbox, false)?;
    let esearch = s.caps.has("ESEARCH");
    let verb = if esearch {
        "UID SEARCH RETURN (ALL) "
    } else {
        "UID SEARCH "
    };
    let mut parts = vec![Part::Text(verb.into())];
    parts.extend(criteria.parts.iter().cloned());
    let mut uids: Vec<u32> = Vec::new();
    let mut bad = None;
    let st = s.command_parts(&parts, &mut |r| {
        let Response::Data { name, values } = r else {
            return;
        };
        match name.as_str() {
            "SEARCH" => uids.extend(
                values
                    .iter()
                    .filter_map(|v| v.number())
                    .filter_map(|n| u32::try_from(n).ok())
                    .take(MAX_SEARCH_UIDS.saturating_sub(uids.len())),
            ),
            // `(TAG "h5") UID ALL 1:3,7`: the set follows ALL.
            "ESEARCH" => {
                let all = values
                    .iter()
                    .position(|v| v.atom().is_some_and(|a| a.eq_ignore_ascii_case("ALL")));
                if let Some(set) = all.and_then(|i| values.get(i + 1)).and_then(Value::atom) {
                    if let Err(e) = add_uid_set(set, &mut uids, MAX_SEARCH_UIDS) {
                        bad.get_or_insert(e);
                    }
                }
            }
            _ => {}
        }
    })?;
    if st.cond != Cond::Ok {
        return Err(st.error("UID SEARCH"));
    }
    if let Some(e) = bad {
        return Err(e);
    }
    uids.sort_unstable();
    uids.dedup();
    let items: Vec<ResultItem> = uids.iter().map(|&u| ResultItem::new(u64::from(u))).collect();
    let n = items.len();
    Ok(
        Success::new(0, format!("{n} messages found")).with_result(sync::stamp(
            s,
            ResultData::new(items),
            true,
        )),
    )
}

fn move_messages(s: &mut Session, mailbox: &str, uids: &str, target: &str) -> Outcome {
    s.select(mailbox, true)?;
    let to = Mailbox(target);
    let what = format!("moving {uids} to {target}");
    // COPYUID: untagged before MOVE's expunges (RFC 6851), or COPY's reply.
    let mut copies = Vec::new();
    let mut copyuid = |r: Response| {
        if let Response::Status(st) = r {
            copies.extend(sync::copyuid_items(&st, MAX_SEARCH_UIDS));
        }
    };
    if s.caps.has("MOVE") {
        let st = s.command(Command::UidMove { uids, to }, &mut copyuid)?;
        if st.cond != Cond::Ok {
            return Err(st.error(&what));
        }
        copies.extend(sync::copyuid_items(&st, MAX_SEARCH_UIDS));
    } else if s.caps.has("UIDPLUS") {
        // COPY, then mark and expunge exactly these UIDs (UID EXPUNGE: RFC 4315).
        let st = s.command(Command::UidCopy { uids, to }, &mut copyuid)?;
        if st.cond != Cond::Ok {
            return Err(st.error(&what));
        }
        copies.extend(sync::copyuid_items(&st, MAX_SEARCH_UIDS));
        let deleted = Command::UidStore {
            uids,
            change: FlagChange::Add,
            flags: "\\Deleted",
        };
        s.simple(deleted, &what)?;
        s.simple(Command::UidExpunge { uids }, &what)?;
    } else {
        return Err(Error::new(
            Status::Unsupported,
            "moving needs MOVE or UIDPLUS (UID EXPUNGE); the server offers neither",
        ));
    }
    let copies = sync::stamp(s, ResultData::new(copies), false);
    Ok(Success::new(0, format!("moved {uids} to {target}")).with_result(copies))
}

/// The fetches: plain, one section, streamed, to a directory, changed since.
fn fetch_op(s: &mut Session, t: &Ticket, mb: &str, op: &ImapOp) -> Outcome {
    match op {
        ImapOp::Fetch { uids, parts } => fetch(
            s,
            t,
            mb,
            uids,
            fetch_ext::implied(*parts, FETCH_BODY, FETCH_HEADERS),
            None,
        ),
        ImapOp::FetchSection {
            uid,
            section,
            offset,
            max_len,
        } => section::SectionFetch {
            mailbox: mb,
            uid: *uid,
            section,
            offset: *offset,
            max_len: *max_len,
        }
        .run(s, t),
        ImapOp::FetchStream { uids, parts } => {
            let parts = fetch_ext::implied(*parts, FETCH_BODY, FETCH_HEADERS);
            stream::fetch_stream(s, t, mb, uids, parts)
        }
        ImapOp::FetchToDir { uids, dir } => stream::fetch_to_dir(s, t, mb, uids, dir),
        ImapOp::FetchChanged { uids, parts, since } => {
            sync::select_synced(s, mb)?;
            let parts = fetch_ext::implied(*parts, FETCH_BODY, FETCH_HEADERS);
            fetch(s, t, mb, uids, parts, Some(*since))
        }
        _ => Err(Error::invalid("not a fetch")),
    }
}

/// UID FETCH; with `since`, only what changed since that MODSEQ
/// (CHANGEDSINCE), and with QRESYNC the UIDs expunged since (VANISHED).
fn fetch(s: &mut Session, t: &Ticket, mailbox: &str, uids: &str, parts: u32, since: Option<u64>) -> Outcome {
    let modseq = parts & FETCH_MODSEQ != 0 || since.is_some();
    let items = fetched::items(parts, modseq);
    let tag = s.conn().next_tag();
    sync::select_and_fetch(s, mailbox, &tag, uids, &items, since)?;
    let mut got: BTreeMap<u32, ResultItem> = BTreeMap::new();
    let mut received = 0u64;
    let mut reported = 0u64;
    loop {
        let base = received;
        let r = s.read_response(&mut |n| t.progress(base + n as u64, 0))?;
        match r {
            Response::Tagged { tag: tg, status } if tg == tag => {
                if status.cond != Cond::Ok {
                    return Err(status.error(&format!("UID FETCH {uids} in {mailbox}")));
                }
                session::track(&mut s.selected, &Response::Status(status));
                break;
            }
            Response::Tagged { tag: tg, .. } => {
                return Err(Error::protocol(format!("a reply with tag {tg} to UID FETCH")))
            }
            Response::Fetch { atts, .. } => {
                let f = fetched::Fetched::decode(atts)?;
                let Some(uid) = f.uid else { continue };
                let item = got.entry(uid).or_insert_with(|| ResultItem::new(u64::from(uid)));
                received += f.apply(item, parts);
                if received - reported >= FETCH_PROGRESS_STEP {
                    reported = received;
                    t.progress(received, 0);
                }
            }
            Response::Data { name, values } if name == "VANISHED" && since.is_some() => {
                sync::add_vanished(&values, &mut got)?;
                session::track(&mut s.selected, &Response::Data { name, values });
            }
            r => session::track(&mut s.selected, &r),
        }
    }
    let mut items: Vec<ResultItem> = got.into_values().collect();
    fetch_ext::finish(&mut items, parts, FETCH_BODY);
    sync::saw_items(s, &items);
    let n = items.len();
    Ok(
        Success::new(0, format!("{n} messages fetched")).with_result(sync::stamp(
            s,
            ResultData::new(items),
            true,
        )),
    )
}

/// Where a bulk append stands.
struct AppendState {
    /// Per message: its UID once the server accepted it (0 without UIDPLUS).
    uids: Vec<Option<u64>>,
    /// APPEND commands sent and not yet answered: tag, first message, how many.
    inflight: VecDeque<(String, usize, usize)>,
    inflight_bytes: usize,
    refused: Option<Error>,
    /// After a cancel, replies are awaited until then, no longer.
    give_up: Option<Instant>,
    /// What `append_retry` keeps: batches refused whole, and messages refused one by one.
    retry: append_retry::Retry,
    /// The target's UIDVALIDITY, from APPENDUID.
    uidvalidity: Option<u32>,
}

impl AppendState {
    /// After a cancel, the replies to what was sent are still read, for
    /// exact UIDs; but a server that keeps talking without answering gets
    /// IO_TIMEOUT_MS, not forever.
    fn check_cancel(&mut self, s: &Session, t: &Ticket) -> Result<()> {
        if !t.cancel_requested() {
            return Ok(());
        }
        let give_up = *self
            .give_up
            .get_or_insert_with(|| Instant::now() + s.io_timeout());
        if Instant::now() >= give_up {
            return Err(Error::cancelled());
        }
        Ok(())
    }

    fn messages_in_flight(&self) -> usize {
        self.inflight.iter().map(|(_, _, n)| n).sum()
    }

    /// Reads one response; records the reply to an APPEND in flight.
    fn read_reply(&mut self, s: &mut Session, t: &Ticket, messages: &[Vec<u8>]) -> Result<()> {
        self.check_cancel(s, t)?;
        match read_reply_within(s)? {
            Response::Tagged { tag, status } => {
                let Some(pos) = self.inflight.iter().position(|(t, _, _)| *t == tag) else {
                    return Err(Error::protocol(format!("a reply with tag {tag} to no APPEND")));
                };
                let (_, first, count) = self.inflight.remove(pos).unwrap_or_default();
                let range = first..(first + count).min(messages.len());
                self.inflight_bytes -= messages[range.clone()].iter().map(Vec::len).sum::<usize>();
                if status.cond == Cond::Ok {
                    self.uidvalidity = sync::appenduid_validity(&status).or(self.uidvalidity);
                    let uids = parse::appenduids(&status, count);
                    for (k, i) in range.enumerate() {
                        self.uids[i] = Some(uids.get(k).copied().unwrap_or(0));
                    }
                } else {
                    self.on_refusal(first, count, &status);
                }
                Ok(())
            }
            Response::Continue => Err(Error::protocol("an unexpected continuation during APPEND")),
            r => {
                session::track(&mut s.selected, &r);
                Ok(())
            }
        }
    }
}

/// Appends the messages, pipelined. With LITERAL+ each message goes out
/// with its command in one write, without waiting, and with MULTIAPPEND
/// (RFC 3502) up to [`MULTI_BATCH`] messages share one APPEND: the server
/// stores them in one transaction. Without LITERAL+ each literal waits for
/// the server's "+". Stops between messages when cancelled (ending a
/// MULTIAPPEND early), and always reads the reply to every APPEND sent, so
/// the UIDs reported are exactly what the mailbox gained. A batch refused
/// whole is retried one message at a time (`append_retry`).
fn append(s: &mut Session, t: &Ticket, mailbox: &str, messages: &[Vec<u8>], flags: &str) -> Outcome {
    t.set_cancel_mode(CancelMode::Cooperative);
    let mut st = AppendState {
        uids: vec![None; messages.len()],
        inflight: VecDeque::new(),
        inflight_bytes: 0,
        refused: None,
        give_up: None,
        retry: append_retry::Retry::default(),
        uidvalidity: None,
    };
    let sent = append_run(s, t, mailbox, messages, flags, &mut st);
    let items = st.result_items();
    let n = messages.len();
    let k = st.uids.iter().flatten().count();
    // On failure too, the result holds the UIDs of the messages appended.
    let appended = ResultData::new(items.clone());
    if let Err(mut e) = sent {
        let unknown = st.messages_in_flight();
        e.detail = format!(
            "{}; {k} of {n} messages were appended{}",
            e.detail,
            if unknown > 0 {
                format!(", and {unknown} more may have been")
            } else {
                String::new()
            }
        );
        return Err(e.with_partial(appended));
    }
    if let Some(mut e) = st.refused.or(st.retry.first_refusal) {
        e.detail = format!("{}; {k} of {n} messages were appended", e.detail);
        return Err(e.with_partial(appended));
    }
    Ok(
        Success::new(0, format!("{k} of {n} messages appended to {mailbox}"))
            .with_result(ResultData::new(items)),
    )
}

/// Reads one response during an append, which must arrive whole within
/// IO_TIMEOUT_MS: the op runs with a cooperative cancel (to report exact
/// UIDs), so a server trickling a line must not hold it longer.
fn read_reply_within(s: &mut Session) -> Result<Response> {
    let io = s.io_timeout();
    s.within(io, |s| s.read_response(&mut |_| {}))
}

/// Most messages, and bytes, in one MULTIAPPEND command.
const MULTI_BATCH: usize = 100;
const MULTI_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What every APPEND command of one op shares.
struct AppendRun<'a> {
    t: &'a Ticket,
    messages: &'a [Vec<u8>],
    /// The mailbox, quoted modified UTF-7.
    target: String,
    /// " (flags)", or nothing.
    flag_part: String,
    multi: bool,
    /// Bytes of all the messages, and of those written so far.
    total: u64,
    written: u64,
}

fn append_run(
    s: &mut Session,
    t: &Ticket,
    mailbox: &str,
    messages: &[Vec<u8>],
    flags: &str,
    st: &mut AppendState,
) -> Result<()> {
    let mut run = AppendRun {
        t,
        messages,
        target: quote(&utf7::encode(mailbox)),
        flag_part: if flags.is_empty() {
            String::new()
        } else {
            format!(" ({flags})")
        },
        multi: s.caps.has("MULTIAPPEND"),
        total: messages.iter().map(|m| m.len() as u64).sum(),
        written: 0,
    };
    run.send_range(s, st, 0..messages.len())?;
    // Batches a server refused whole for one bad message, one by one.
    append_retry::retry_batches(s, &mut run, st)
}

impl AppendRun<'_> {
    /// Sends the messages of `range` (pipelined, in MULTIAPPEND batches
    /// when `multi`) and reads every reply; stops early when one is refused
    /// for good or the op is cancelled.
    fn send_range(
        &mut self,
        s: &mut Session,
        st: &mut AppendState,
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let (t, messages) = (self.t, self.messages);
        let mut i = range.start;
        while i < range.end {
            let nonsync = s.caps.nonsync(messages[i].len());
            while !st.inflight.is_empty()
                && (!nonsync
                    || st.inflight.len() >= APPEND_WINDOW
                    || st.inflight_bytes + messages[i].len() > APPEND_WINDOW_BYTES)
            {
                st.read_reply(s, t, messages)?;
            }
            if st.refused.is_some() || t.cancel_requested() {
                break;
            }
            let tag = s.conn().next_tag();
            if nonsync {
                i = self.send_nonsync(s, st, tag, i, range.end)?;
            } else if self.send_sync(s, st, tag, i)? {
                i += 1;
            } else {
                break;
            }
        }
        while !st.inflight.is_empty() {
            st.read_reply(s, t, messages)?;
        }
        Ok(())
    }

    /// One APPEND with a non-synchronizing literal (LITERAL+), or a
    /// MULTIAPPEND of message `first` and those that follow: the index of
    /// the first message not sent.
    fn send_nonsync(
        &mut self,
        s: &mut Session,
        st: &mut AppendState,
        tag: String,
        first: usize,
        end: usize,
    ) -> Result<usize> {
        let (t, messages) = (self.t, self.messages);
        let mut bytes = 0;
        let mut i = first;
        loop {
            let m = &messages[i];
            let head = if i == first {
                format!(
                    "{tag} APPEND {}{} {{{}+}}\r\n",
                    self.target,
                    self.flag_part,
                    m.len()
                )
            } else {
                format!("{} {{{}+}}\r\n", self.flag_part, m.len())
            };
            let next = messages[..end].get(i + 1);
            let more = self.multi
                && next.is_some_and(|x| {
                    i + 1 - first < MULTI_BATCH
                        && bytes + m.len() + x.len() <= MULTI_BATCH_BYTES
                        && s.caps.nonsync(x.len())
                });
            let (base, total) = (self.written, self.total);
            s.send_with_literal(head.as_bytes(), m, !more, &mut |n| {
                t.progress(base + n as u64, total)
            })?;
            self.written += m.len() as u64;
            bytes += m.len();
            i += 1;
            if !more {
                break;
            }
            if t.cancel_requested() {
                // End the MULTIAPPEND here: what was sent is appended.
                s.send(b"\r\n")?;
                break;
            }
        }
        st.inflight.push_back((tag, first, i - first));
        st.inflight_bytes += bytes;
        Ok(i)
    }

    /// One APPEND of message `i` with a synchronizing literal: the message
    /// goes after the server's "+". False when the server refused it.
    fn send_sync(&mut self, s: &mut Session, st: &mut AppendState, tag: String, i: usize) -> Result<bool> {
        let t = self.t;
        let m = &self.messages[i];
        let head = format!(
            "{tag} APPEND {}{} {{{}}}\r\n",
            self.target,
            self.flag_part,
            m.len()
        );
        s.send(head.as_bytes())?;
        loop {
            if t.cancel_requested() {
                // Nothing of this message was sent: the command is
                // abandoned, and the connection with it.
                return Err(Error::cancelled());
            }
            match read_reply_within(s)? {
                Response::Continue => break,
                Response::Tagged { tag: tg, status } if tg == tag => {
                    st.on_refusal(i, 1, &status);
                    return Ok(st.refused.is_none());
                }
                Response::Tagged { tag: tg, .. } => {
                    return Err(Error::protocol(format!("a reply with tag {tg} during APPEND")))
                }
                r => session::track(&mut s.selected, &r),
            }
        }
        let (base, total) = (self.written, self.total);
        s.send_with_literal(b"", m, true, &mut |n| t.progress(base + n as u64, total))?;
        self.written += m.len() as u64;
        st.inflight.push_back((tag, i, 1));
        st.inflight_bytes += m.len();
        Ok(true)
    }
}

impl Driver for ImapDriver {
    type Job = ImapJob;

    fn run(&mut self, first: Ticket, w: &mut WorkerCtx) {
        self.run_op(first, w);
    }

    fn close_idle(&mut self, w: &mut WorkerCtx) {
        if let Some(s) = self.session.take() {
            w.log(DEBUG, || "closing an idle IMAP connection".into());
            s.logout();
        }
    }

    fn affinity(&self) -> Option<&str> {
        self.session.as_ref()?.selected.as_ref().map(|s| s.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's regression corpus, replayed: no input panics, and
    /// the hostile ones end as they must.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/imap_response");
        let limits = wire::Limits {
            text: 64 * 1024,
            literals: 1024 * 1024,
        };
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(fuzz_responses(&input) > 0, "{name}");
            let all = wire::read_all(&input, limits);
            let last = all.last().unwrap().as_ref().map(|_| ()).map_err(|e| e.status);
            let oks = all.iter().filter(|r| r.is_ok()).count();
            let want = match name.as_str() {
                "session" => Some((Err(Status::Io), 11)),
                "exists_flood" => Some((Err(Status::Io), 2000)),
                "deep_closed_64" => Some((Err(Status::Io), 2)),
                "deep_fetch_400" | "deep_flags_12000" | "deep_65" => Some((Err(Status::Protocol), 0)),
                "huge_literal" | "literal_over_limit" => Some((Err(Status::Limit), 0)),
                "negative_literal" | "endless_line" | "long_line_then_ok" => Some((Err(Status::Protocol), 0)),
                _ => None,
            };
            if let Some((want_last, want_oks)) = want {
                assert_eq!((last, oks), (want_last, want_oks), "{name}");
            }
            seen += 1;
        }
        assert!(seen >= 15, "the corpus is in {dir}");
    }

    #[test]
    fn esearch_sets_expand_within_a_bound() {
        let mut v = Vec::new();
        add_uid_set("1:3,7,12:9", &mut v, 100).unwrap();
        assert_eq!(v, [1, 2, 3, 7, 9, 10, 11, 12]);
        let mut v = Vec::new();
        let e = add_uid_set("1:4294967295", &mut v, MAX_SEARCH_UIDS).unwrap_err();
        assert_eq!(e.status, Status::Limit);
        assert!(v.is_empty());
        let mut v = Vec::new();
        add_uid_set("1:5", &mut v, 4).unwrap_err();
        add_uid_set("1:4", &mut v, 4).unwrap();
        add_uid_set("5", &mut v, 4).unwrap_err();
        for bad in ["", "x", "1:", ":2", "1:2:3", "-1", "4294967296"] {
            assert_eq!(
                add_uid_set(bad, &mut Vec::new(), 10).unwrap_err().status,
                Status::Protocol,
                "{bad}"
            );
        }
    }

    #[test]
    fn reconnect_pauses_grow_and_stop_growing() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(10), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }
}
