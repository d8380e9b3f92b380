//! herald's POP3 client (RFC 1939, with CAPA, PIPELINING and RESP-CODES
//! from RFC 2449, STLS from RFC 2595, SASL from RFC 5034).
//!
//! Sessions. A POP3 server locks the maildrop for one session and shows it
//! as it was at login, so a session is opened when an op needs one, kept
//! while ops keep coming, and closed with QUIT when idle (IDLE_TIMEOUT_MS;
//! also on the main worker). At open it takes the maildrop's map (UIDL and
//! LIST): messages are named by UIDL and the message numbers never leave the
//! session. A list op always reports a map taken after the op was queued,
//! reopening a session that is older; a retrieve, top or delete whose UIDL
//! is missing from an older session's map reopens once before answering
//! `NOT_FOUND`, so mail that arrived meanwhile is found.
//!
//! Pipelining. When the server offers PIPELINING, a RETR or TOP op takes the
//! RETR and TOP ops queued behind it and keeps up to `WINDOW` commands on
//! the wire, reading the responses strictly in order and completing each op
//! with its own outcome. Without PIPELINING, one command at a time.
//!
//! Failures. A lost connection fails nothing that could still succeed: ops
//! whose responses had not arrived (and the one being read, unless its reply
//! was malformed) are retried once on a new session; list, retrieve and top
//! have no side effects, and a delete commits only at QUIT. Not retried: a
//! timeout, a second loss, a delete whose QUIT was already sent (its outcome
//! is unknown, and the completion says so). When a session cannot be opened
//! (refused, bad password, TLS), the op and every op waiting behind it
//! complete with that error rather than each trying again.
//!
//! More than one session per client (MAX_CONNECTIONS > 1, default 1) works
//! with servers that allow concurrent sessions on a maildrop, as Dovecot
//! does; one that locks it refuses the extra session with [IN-USE], and the
//! op that opened it completes TRANSIENT.
//!
//! Deletes. A delete op marks every given UIDL that the maildrop has (DELE),
//! then commits with QUIT, which ends the session. It completes OK with one
//! item per deleted message; UIDLs not in the maildrop are named in the
//! detail; if none of them is, it is `NOT_FOUND` and nothing is sent. A DELE
//! the server refuses resets the others (RSET): nothing is deleted. A session
//! is never ended with QUIT while messages are marked that the user did not
//! ask to delete.
//!
//! Cancel. The op being waited on is aborted (the socket is shut down);
//! ops pipelined or waiting behind it complete at once and their responses,
//! if on the wire, are read and dropped. Once a delete's QUIT is sent, a
//! cancel can no longer stop it: the op completes cancelled, with the
//! deleted messages as its result.

pub mod codec;
pub mod command;
mod job;
pub mod md5;
pub mod response;
pub mod session;
pub mod uidl;

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::engine::{CancelMode, Driver};
use crate::log::{DEBUG, INFO, WARN};
use crate::net::{ConnCtl, Stream};
use crate::options::Options;
use crate::result::{field, Outcome, ResultData, ResultItem, Success};
use crate::status::{Error, Result, Status};

pub use job::Pop3Job;

/// A POP3 op a worker holds.
type Ticket = crate::engine::Ticket<Pop3Job>;
/// What the POP3 driver sees of its worker.
type WorkerCtx = crate::engine::WorkerCtx<Pop3Job>;

use command::Command;
use response::{Kind, Response};
use session::{Entry, Session};

/// Most commands on the wire at once. A command is at most 27 bytes
/// ("TOP 4294967295 4294967295\r\n"), so a full window (under 14 KB) always
/// fits in the socket buffers: herald never blocks writing commands while
/// the server blocks writing the responses herald has not read yet.
const WINDOW: usize = 512;

/// Initial buffer for a retrieved message, at most (it grows as needed).
const MAX_PREALLOC: usize = 64 << 20;

/// The POP3 protocol engine of one pooled connection.
pub struct Pop3Driver {
    opts: Arc<Options>,
    tls: Option<native_tls::TlsConnector>,
    session: Option<Session<Stream>>,
    /// The current session's connection control (to tell a cancel's abort
    /// from a lost connection).
    ctl: Option<Arc<ConnCtl>>,
    /// Ops taken from the queue and not yet run, in order.
    held: VecDeque<Held>,
    /// RETR and TOP responses the current session delivered.
    answered: u64,
}

/// An op this worker holds, and when it took it: a session opened before
/// then may not show mail that arrived before the op was queued.
struct Held {
    t: Ticket,
    taken: Instant,
}

impl Held {
    fn new(t: Ticket) -> Held {
        Held {
            t,
            taken: Instant::now(),
        }
    }
}

/// A RETR or TOP on the wire.
struct Flight {
    h: Held,
    entry: Entry,
    top: Option<u32>,
}

/// The UIDL and TOP line count of a retrieve or top op.
fn fetch_args(t: &Ticket) -> Option<(&str, Option<u32>)> {
    match &t.job {
        Pop3Job::Retrieve { uidl, .. } => Some((uidl, None)),
        Pop3Job::Top { uidl, lines } => Some((uidl, Some(*lines))),
        _ => None,
    }
}

fn not_found(uidl: &str) -> Error {
    Error::new(
        Status::NotFound,
        format!("no message with UIDL {uidl} in the maildrop"),
    )
}

/// The result item of a message.
fn item(e: &Entry) -> ResultItem {
    ResultItem::new(e.num as u64)
        .with_str(field::NAME, &e.uidl)
        .with_int(field::SIZE, e.size)
}

impl Pop3Driver {
    pub fn new(opts: Arc<Options>) -> Self {
        Pop3Driver {
            opts,
            tls: None,
            session: None,
            ctl: None,
            held: VecDeque::new(),
            answered: 0,
        }
    }

    /// Keeps an op to run later; a cancel completes it at once meanwhile.
    fn hold_front(&mut self, h: Held) {
        h.t.set_cancel_mode(CancelMode::Defer);
        self.held.push_front(h);
    }

    /// Opens a session unless one is open. On failure `h` completes with the
    /// error, and so does every op waiting behind it, unless the failure was
    /// `h`'s own cancel, or the connection broke during the setup (IO): then
    /// `h` is tried once more and the ops behind it keep their own chance.
    fn ensure_session(&mut self, h: Held, w: &mut WorkerCtx) -> Option<Held> {
        if self.session.is_some() {
            return Some(h);
        }
        h.t.set_cancel_mode(CancelMode::Abort);
        let ctl = w.new_ctl();
        let tls = &mut self.tls;
        match crate::net::tls::with_cert_info(&self.opts, |o| Session::open(o, tls, &ctl, w.tracer())) {
            Ok(s) => {
                w.log(INFO, || {
                    format!(
                        "connected to {}:{}{}{}; {} messages in the maildrop",
                        self.opts.host(),
                        self.opts.port(),
                        if s.tls { " (TLS)" } else { "" },
                        if s.caps.pipelining { " with PIPELINING" } else { "" },
                        s.entries.len()
                    )
                });
                self.session = Some(s);
                self.ctl = Some(ctl);
                self.answered = 0;
                Some(h)
            }
            Err(e) => {
                if ctl.is_aborted() || !h.t.is_live() {
                    h.t.complete(Err(Error::cancelled()));
                    return None;
                }
                if e.status == Status::Io && h.t.attempts == 0 {
                    // The connection broke while the session was set up (not
                    // refused, not silent): once more for this op, and the
                    // ops waiting behind it keep their chance.
                    w.log(WARN, || format!("cannot open a POP3 session: {e}; retrying"));
                    let mut h = h;
                    h.t.attempts += 1;
                    self.hold_front(h);
                    return None;
                }
                w.log(WARN, || format!("cannot open a POP3 session: {e}"));
                h.t.complete(Err(e.clone()));
                // An extra connection refused as transient (a server that locks
                // the maildrop: [IN-USE]) leaves the waiting ops to the main one.
                if (w.index == 0 || !e.is_transient()) && e.status != Status::Io {
                    self.fail_waiting(&e, w);
                }
                None
            }
        }
    }

    /// Completes every op held or queued with `e` (a session could not be
    /// opened: they would meet the same error, each after its own wait).
    fn fail_waiting(&mut self, e: &Error, w: &mut WorkerCtx) {
        for h in self.held.drain(..) {
            h.t.complete(Err(e.clone()));
        }
        while let Some(t) = w.try_next() {
            t.complete(Err(e.clone()));
        }
    }

    /// Ends the session politely (QUIT; RSET first if anything is marked).
    fn close_session(&mut self, w: &mut WorkerCtx) {
        if let Some(s) = self.session.take() {
            w.log(DEBUG, || "closing the POP3 session".into());
            s.quit();
        }
        self.ctl = None;
    }

    /// Forgets the session without QUIT: the server commits nothing.
    fn drop_session(&mut self) {
        self.session = None;
        self.ctl = None;
    }

    /// Was the connection shut down by a cancel (not by the server or the network)?
    fn aborted_by_cancel(&self, w: &WorkerCtx) -> bool {
        self.ctl.as_ref().is_some_and(|c| c.is_aborted()) && !w.shutting_down()
    }

    fn step(&mut self, h: Held, w: &mut WorkerCtx) {
        if !h.t.is_live() {
            h.t.complete(Err(Error::cancelled()));
            return;
        }
        h.t.set_cancel_mode(CancelMode::Abort);
        match &h.t.job {
            Pop3Job::List => self.list(h, w),
            Pop3Job::Retrieve { .. } | Pop3Job::Top { .. } => self.fetch(h, w),
            Pop3Job::Delete { .. } => self.delete(h, w),
            Pop3Job::Test => self.test_account(h, w),
        }
    }

    /// A fresh session (connect, TLS, login) reported, then QUIT.
    fn test_account(&mut self, h: Held, w: &mut WorkerCtx) {
        self.close_session(w);
        let Some(h) = self.ensure_session(h, w) else {
            return;
        };
        let Some(s) = self.session.as_ref() else {
            h.t.complete(Err(Error::new(Status::Panic, "no session")));
            return;
        };
        let caps: Vec<String> = s
            .caps
            .announced
            .iter()
            .map(|l| crate::net::account::one_word(l))
            .collect();
        let (data, detail) = crate::net::account::report(&self.opts, s.tls, &caps, s.mechanism.as_deref());
        self.close_session(w);
        h.t.complete(Ok(Success::new(0, detail).with_result(data)));
    }

    /// Lists the maildrop as a session opened after the op was taken sees it.
    fn list(&mut self, h: Held, w: &mut WorkerCtx) {
        if self.session.as_ref().is_some_and(|s| s.opened_at < h.taken) {
            self.close_session(w);
        }
        let Some(h) = self.ensure_session(h, w) else {
            return;
        };
        let Some(s) = self.session.as_ref() else {
            h.t.complete(Err(Error::new(Status::Panic, "no session")));
            return;
        };
        let items: Vec<ResultItem> = s.entries.iter().map(item).collect();
        let detail = format!("{} messages, {} octets", items.len(), s.octets);
        h.t.complete(Ok(Success::new(0, detail).with_result(ResultData::new(items))));
    }

    /// Runs a retrieve or top op and, pipelined behind it, the retrieve and
    /// top ops queued after it.
    fn fetch(&mut self, first: Held, w: &mut WorkerCtx) {
        let Some(first) = self.ensure_session(first, w) else {
            return;
        };
        // Largest message retrieved (into memory, as the result's bytes).
        let max_message = self.opts.max_message_bytes;
        let mut next = Some(first);
        let mut inflight: VecDeque<Flight> = VecDeque::new();
        let mut pulling = true;
        let mut refresh = false;
        while let Some(s) = self.session.as_mut() {
            let window = if s.caps.pipelining { WINDOW } else { 1 };
            let mut out = Vec::new();
            while inflight.len() < window {
                let h = match next.take() {
                    Some(h) => h,
                    None if !pulling => break,
                    None => match self.held.pop_front().or_else(|| w.try_next().map(Held::new)) {
                        Some(h) => h,
                        None => break,
                    },
                };
                match admit(s, h, max_message, &mut out) {
                    Admit::Sent(f) => inflight.push_back(f),
                    Admit::Completed => {}
                    Admit::Later { h, refresh: again } => {
                        // Not a fetch (it runs after this pipeline), or the
                        // session may predate the message (look again in a new one).
                        h.t.set_cancel_mode(CancelMode::Defer);
                        self.held.push_front(h);
                        pulling = false;
                        refresh |= again;
                        break;
                    }
                }
            }
            if !out.is_empty() {
                if let Err(e) = s.send(&out) {
                    self.lost(e, None, inflight, w);
                    return;
                }
            }
            let Some(f) = inflight.pop_front() else { break };
            f.h.t.set_cancel_mode(CancelMode::Abort);
            match Self::read_fetched(s, &f, max_message) {
                Ok(outcome) => {
                    self.answered += 1;
                    f.h.t.set_cancel_mode(CancelMode::Defer);
                    let outcome = f.h.t.job.finish(outcome);
                    f.h.t.complete(outcome);
                }
                Err(e) => {
                    self.lost(e, Some(f.h), inflight, w);
                    return;
                }
            }
        }
        // (Never left over: the loop ends with nothing in flight.)
        for f in inflight.into_iter().rev() {
            self.hold_front(f.h);
        }
        if let Some(h) = next {
            self.hold_front(h);
        }
        if refresh {
            self.close_session(w);
        }
    }

    /// Reads the response to a RETR or TOP: the op's outcome, or the
    /// connection's failure.
    fn read_fetched(s: &mut Session<Stream>, f: &Flight, max_message: usize) -> Result<Outcome> {
        let t = &f.h.t;
        read_message(s, &f.entry, f.top, max_message, &mut |n, total| {
            t.progress(n, total)
        })
    }

    /// The connection failed with `e` while reading the response of `front`
    /// (if any), with `behind` on the wire after it. The session is gone;
    /// ops are retried once on a new one or completed with the error. The
    /// ops behind are not to blame when the session had answered others
    /// (the connection broke, not the op): they are retried without using
    /// up their retry. (RETR and TOP change nothing; the op's deadline
    /// bounds the retries.)
    fn lost(&mut self, e: Error, front: Option<Held>, behind: VecDeque<Flight>, w: &mut WorkerCtx) {
        let by_cancel = self.aborted_by_cancel(w);
        let progressed = self.answered > 0;
        self.drop_session();
        let mut retry = Vec::new();
        if let Some(h) = front {
            if matches!(e.status, Status::Protocol | Status::Limit) {
                // The malformed (or oversized) response was this op's.
                h.t.complete(Err(e.clone()));
            } else {
                Self::retry_or_fail(h, &e, by_cancel, &mut retry, w);
            }
        }
        for f in behind {
            Self::retry_or_fail(f.h, &e, by_cancel || progressed, &mut retry, w);
        }
        for h in retry.into_iter().rev() {
            self.hold_front(h);
        }
    }

    /// An op whose response never came: retry it once on a new session,
    /// unless the connection timed out or this was its second try.
    fn retry_or_fail(mut h: Held, e: &Error, by_cancel: bool, retry: &mut Vec<Held>, w: &WorkerCtx) {
        if !h.t.is_live() {
            h.t.complete(Err(Error::cancelled()));
        } else if by_cancel {
            // Another op's cancel cut the connection: not this op's failure.
            retry.push(h);
        } else if e.is_timeout() || h.t.attempts > 0 {
            let detail = format!("{}; no response arrived for this op", e.detail);
            h.t.complete(Err(Error::new(e.status, detail)));
        } else {
            h.t.attempts += 1;
            w.log(WARN, || {
                format!("op {}: {}; retrying on a new session", h.t.id, e.detail)
            });
            retry.push(h);
        }
    }

    /// Deletes the op's UIDLs that the maildrop has and commits with QUIT.
    fn delete(&mut self, h: Held, w: &mut WorkerCtx) {
        let uidls = delete_uidls(&h.t.job);
        let Some(h) = self.delete_session(h, &uidls, w) else {
            return;
        };
        let Some(s) = self.session.as_mut() else {
            h.t.complete(Err(Error::new(Status::Panic, "no session")));
            return;
        };
        let (found, missing) = partition_uidls(s, &uidls);
        if found.is_empty() {
            let e = Error::new(
                Status::NotFound,
                format!(
                    "no message with UIDL {} in the maildrop; nothing was deleted",
                    missing.join(", ")
                ),
            );
            h.t.complete(Err(e));
            return;
        }
        h.t.set_cancel_mode(CancelMode::Abort);
        match mark_deleted(s, &found) {
            Err(e) => self.delete_lost(h, e, w),
            Ok(Some(mut e)) => {
                // Unmark the others: a delete is all of the messages or none.
                match s.command(Command::Rset) {
                    Ok(r) if r.is_ok() => s.marked = 0,
                    // Not reset: close without QUIT, so nothing is deleted.
                    _ => self.drop_session(),
                }
                e.detail.push_str("; nothing was deleted");
                h.t.complete(Err(e));
            }
            Ok(None) => self.commit_delete(h, &found, &missing, w),
        }
    }

    /// A session for a delete of `uidls`: one opened after the op was
    /// taken when the current one may predate some of them. None when the
    /// op was completed (or handed back) instead.
    fn delete_session(&mut self, h: Held, uidls: &[String], w: &mut WorkerCtx) -> Option<Held> {
        let h = self.ensure_session(h, w)?;
        let stale =
            |s: &Session<Stream>| s.opened_at < h.taken && uidls.iter().any(|u| s.lookup(u).is_none());
        if self.session.as_ref().is_some_and(stale) {
            // The session may predate some of them: look again in a new one.
            self.close_session(w);
            return self.ensure_session(h, w);
        }
        Some(h)
    }

    /// Commits a delete whose messages are all marked: QUIT. From here a
    /// cancel cannot stop the server: it cuts the wait for QUIT's reply
    /// short, and the op says the server may have deleted.
    fn commit_delete(&mut self, h: Held, found: &[Entry], missing: &[&str], w: &mut WorkerCtx) {
        h.t.set_cancel_mode(CancelMode::Interrupt);
        if !h.t.is_live() {
            // Cancelled before QUIT: closing without it deletes nothing.
            self.drop_session();
            h.t.complete(Err(Error::cancelled()));
            return;
        }
        let Some(mut s) = self.session.take() else {
            h.t.complete(Err(Error::new(Status::Panic, "no session")));
            return;
        };
        if let Err(e) = s.send_all(&[Command::Quit]) {
            drop(s);
            self.delete_lost(h, e, w);
            return;
        }
        self.ctl = None;
        let reply = s.response();
        drop(s);
        h.t.complete(quit_outcome(reply, found, missing));
    }

    /// A delete's connection failed before its QUIT was sent: the server
    /// deleted nothing. Retried once on a new session, like any op whose
    /// outcome could not have taken effect.
    fn delete_lost(&mut self, mut h: Held, e: Error, w: &mut WorkerCtx) {
        let by_cancel = self.aborted_by_cancel(w);
        self.drop_session();
        if !h.t.is_live() {
            h.t.complete(Err(Error::cancelled()));
        } else if !by_cancel && (e.is_timeout() || e.status == Status::Protocol || h.t.attempts > 0) {
            let detail = format!(
                "{}; the connection was lost before QUIT, so nothing was deleted",
                e.detail
            );
            h.t.complete(Err(Error::new(e.status, detail)));
        } else {
            if !by_cancel {
                h.t.attempts += 1;
            }
            w.log(WARN, || {
                format!(
                    "op {}: {}; nothing was deleted, retrying on a new session",
                    h.t.id, e.detail
                )
            });
            self.hold_front(h);
        }
    }
}

/// Reads the response to a RETR (`top` None) or TOP of `entry`: the op's
/// outcome (-ERR is a failed op), or the connection's failure (Err). The
/// body is bounded by MAX_MESSAGE_BYTES and by twice LIST's size.
fn read_message<S: Read + Write>(
    s: &mut Session<S>,
    entry: &Entry,
    top: Option<u32>,
    max_message: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Outcome> {
    let r = s.response()?;
    match r.kind {
        Kind::Ok => {}
        Kind::Err => {
            let cmd = if top.is_some() { "TOP" } else { "RETR" };
            return Ok(Err(r.error(&format!(
                "{cmd} of message {} (UIDL {})",
                entry.num, entry.uidl
            ))));
        }
        Kind::Continue => return Err(Error::protocol(format!("unexpected POP3 response: {r}"))),
    }
    let size = usize::try_from(entry.size.min(max_message as u64)).unwrap_or(usize::MAX);
    // Servers may count octets loosely, but not this loosely: more is an
    // endless response (PROTOCOL). Beyond MAX_MESSAGE_BYTES it is LIMIT.
    let sane = size.saturating_mul(2).saturating_add(1 << 20);
    let limit = sane.min(max_message);
    let cap = match top {
        None => size.saturating_add(64).min(MAX_PREALLOC),
        Some(_) => size.min(64 * 1024),
    };
    let mut body = Vec::with_capacity(cap);
    let total = entry.size;
    s.body(limit, &mut body, &mut |n| progress(n, total.max(n)))
        .map_err(|e| {
            if e.status == Status::Protocol && limit == max_message && body.len() > limit {
                Error::new(
                    Status::Limit,
                    format!(
                        "message {} (UIDL {}) is larger than {max_message} bytes (MAX_MESSAGE_BYTES)",
                        entry.num, entry.uidl
                    ),
                )
            } else {
                e
            }
        })?;
    let len = body.len() as u64;
    progress(len, len);
    let detail = match top {
        None => format!("message {} ({} bytes)", entry.num, len),
        Some(n) => format!("headers and {n} lines of message {} ({} bytes)", entry.num, len),
    };
    Ok(Ok(Success::new(0, detail).with_result(ResultData::new(vec![
        item(entry).with_bytes(body),
    ]))))
}

/// What became of an op offered to a fetch pipeline.
enum Admit {
    /// Its RETR or TOP is in the batch.
    Sent(Flight),
    /// Completed without a command (cancelled, unsupported, too large, not found).
    Completed,
    /// Held back: not a fetch, or (`refresh`) a UIDL the session may not know yet.
    Later { h: Held, refresh: bool },
}

/// Offers `h` to the fetch pipeline on `s`: appends its RETR or TOP to
/// `out`, or completes it, or hands it back.
fn admit<S: Read + Write>(s: &Session<S>, h: Held, max_message: usize, out: &mut Vec<u8>) -> Admit {
    let Some((uidl, top)) = fetch_args(&h.t) else {
        return Admit::Later { h, refresh: false };
    };
    if !h.t.is_live() {
        h.t.complete(Err(Error::cancelled()));
        return Admit::Completed;
    }
    if top.is_some() && s.caps.known && !s.caps.top {
        h.t.complete(Err(Error::new(
            Status::Unsupported,
            "the server does not offer TOP",
        )));
        return Admit::Completed;
    }
    match s.lookup(uidl) {
        Some(e) if top.is_none() && e.size > max_message as u64 => {
            let e = Error::new(
                Status::Limit,
                format!(
                    "message {} (UIDL {uidl}) is {} bytes; herald retrieves at most \
                     {max_message} (MAX_MESSAGE_BYTES)",
                    e.num, e.size
                ),
            );
            h.t.complete(Err(e));
            Admit::Completed
        }
        Some(e) => {
            let entry = e.clone();
            match top {
                None => Command::Retr(entry.num).write_to(out),
                Some(lines) => Command::Top {
                    num: entry.num,
                    lines,
                }
                .write_to(out),
            }
            h.t.set_cancel_mode(CancelMode::Defer);
            Admit::Sent(Flight { h, entry, top })
        }
        None if s.opened_at >= h.taken => {
            let e = not_found(uidl);
            h.t.complete(Err(e));
            Admit::Completed
        }
        None => Admit::Later { h, refresh: true },
    }
}

/// The UIDLs a delete op names, each once, in their order.
fn delete_uidls(job: &Pop3Job) -> Vec<String> {
    match job {
        Pop3Job::Delete { uidls } => {
            let mut seen = HashSet::new();
            uidls
                .iter()
                .filter(|u| seen.insert(u.as_str()))
                .cloned()
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The maildrop's entries for `uidls`, and the UIDLs it does not have.
fn partition_uidls<'u, S: Read + Write>(s: &Session<S>, uidls: &'u [String]) -> (Vec<Entry>, Vec<&'u str>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for u in uidls {
        match s.lookup(u) {
            Some(e) => found.push(e.clone()),
            None => missing.push(u.as_str()),
        }
    }
    (found, missing)
}

/// Marks `found` deleted: DELE, up to WINDOW on the wire at once (one
/// without PIPELINING), reading every reply. Ok(None) when all are marked,
/// Ok(Some(refusal)) with the first -ERR when the server refused any; Err
/// when the connection failed or the server answered out of protocol.
fn mark_deleted<S: Read + Write>(s: &mut Session<S>, found: &[Entry]) -> Result<Option<Error>> {
    let window = if s.caps.pipelining { WINDOW } else { 1 };
    let mut refused: Option<Error> = None;
    let (mut sent, mut answered) = (0, 0);
    while answered < found.len() {
        if sent < found.len() && sent - answered < window.div_ceil(2).max(1) {
            let mut out = Vec::new();
            while sent < found.len() && sent - answered < window {
                Command::Dele(found[sent].num).write_to(&mut out);
                sent += 1;
            }
            s.send(&out)?;
        }
        let r = s.response()?;
        if r.is_ok() {
            s.marked += 1;
        } else if r.kind == Kind::Err {
            if refused.is_none() {
                let f = &found[answered];
                refused = Some(r.error(&format!("DELE of message {} (UIDL {})", f.num, f.uidl)));
            }
        } else {
            return Err(Error::protocol(format!("unexpected reply to DELE: {r}")));
        }
        answered += 1;
    }
    Ok(refused)
}

/// A delete's outcome from the reply to its QUIT (or the failure to read it).
fn quit_outcome(reply: Result<Response>, found: &[Entry], missing: &[&str]) -> Outcome {
    let n = found.len();
    match reply {
        Ok(r) if r.is_ok() => {
            let mut detail = format!("deleted {n} message{}", if n == 1 { "" } else { "s" });
            if !missing.is_empty() {
                detail.push_str(&format!("; not in the maildrop: {}", missing.join(", ")));
            }
            let items = found.iter().map(item).collect();
            Ok(Success::new(0, detail).with_result(ResultData::new(items)))
        }
        Ok(r) => {
            let mut e = r.error("QUIT");
            e.detail.push_str(&format!(
                "; the server may have removed some of the {n} marked messages, not all"
            ));
            Err(e)
        }
        Err(e) => {
            let detail = format!(
                "{}; the connection was lost after QUIT was sent, before its reply: \
                 the server may or may not have deleted the {n} messages",
                e.detail
            );
            Err(Error::new(e.status, detail))
        }
    }
}

impl Driver for Pop3Driver {
    type Job = Pop3Job;

    fn run(&mut self, first: Ticket, w: &mut WorkerCtx) {
        self.held.push_back(Held::new(first));
        while let Some(h) = self.held.pop_front() {
            self.step(h, w);
        }
    }

    fn close_idle(&mut self, w: &mut WorkerCtx) {
        self.close_session(w);
    }

    /// An open session locks the maildrop, and deletes commit only at QUIT.
    fn close_main_when_idle(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    //! The protocol steps of the driver over canned server bytes: the DELE
    //! batch, the QUIT commit's outcome, a RETR or TOP response.
    use super::*;
    use crate::log::Tracer;
    use crate::net::mem::MemStream;

    /// A session over `server`'s bytes, delivered `chunk` bytes per read.
    fn session(server: &str, chunk: usize, pipelining: bool) -> Session<MemStream> {
        let mut s = Session::new(MemStream::chunked(server, chunk), Tracer::default());
        s.caps.pipelining = pipelining;
        s
    }

    fn sent(s: &Session<MemStream>) -> String {
        s.conn.get_ref().written()
    }

    fn entries(n: u32) -> Vec<Entry> {
        (1..=n)
            .map(|num| Entry {
                num,
                uidl: format!("u{num}"),
                size: 10 * num as u64,
            })
            .collect()
    }

    #[test]
    fn dele_batch_pipelined_with_replies_split_anywhere() {
        for chunk in [1, 2, 3, 7, 64] {
            let mut s = session("+OK\r\n+OK marked\r\n+OK\r\n", chunk, true);
            assert!(mark_deleted(&mut s, &entries(3)).unwrap().is_none());
            assert_eq!(sent(&s), "DELE 1\r\nDELE 2\r\nDELE 3\r\n");
            assert_eq!(s.marked, 3);
        }
    }

    #[test]
    fn dele_without_pipelining_is_one_at_a_time() {
        let stream = MemStream::scripted("", &[("DELE 1\r\n", "+OK\r\n"), ("DELE 2\r\n", "+OK\r\n")]);
        let mut s = Session::new(stream, Tracer::default());
        assert!(mark_deleted(&mut s, &entries(2)).unwrap().is_none());
        assert_eq!(s.marked, 2);
    }

    #[test]
    fn dele_window_keeps_reading_past_a_refusal() {
        // More than one window: every reply is read, the first -ERR kept.
        let n = (WINDOW * 2 + 3) as u32;
        let mut server = String::new();
        for k in 1..=n {
            server.push_str(if k == 5 || k == 9 {
                "-ERR no such message\r\n"
            } else {
                "+OK\r\n"
            });
        }
        let mut s = session(&server, 5, true);
        let refused = mark_deleted(&mut s, &entries(n)).unwrap().expect("a refusal");
        assert!(
            refused.detail.contains("DELE of message 5 (UIDL u5)"),
            "{}",
            refused.detail
        );
        assert_eq!(s.marked, n as usize - 2);
        assert_eq!(sent(&s).matches("DELE ").count(), n as usize);
        assert!(s.conn.get_ref().position() == server.len());
    }

    #[test]
    fn dele_garbage_and_partial_input_end_the_session() {
        let mut s = session("+OK\r\n+ go on\r\n", 4, true);
        let e = mark_deleted(&mut s, &entries(2)).unwrap_err();
        assert_eq!(e.status, Status::Protocol, "{}", e.detail);
        for cut in ["", "+OK\r\n", "+OK\r\n+O"] {
            let mut s = session(cut, 2, true);
            let e = mark_deleted(&mut s, &entries(2)).unwrap_err();
            assert_ne!(e.status, Status::Ok, "{cut:?}");
        }
        let mut s = session("+OK\r\nHTTP/1.1 400 Bad Request\r\n", 3, true);
        assert!(mark_deleted(&mut s, &entries(2)).is_err());
    }

    #[test]
    fn quit_outcome_says_what_the_server_may_have_done() {
        let found = entries(2);
        let ok = quit_outcome(Ok(Response::parse(b"+OK bye").unwrap()), &found, &["gone"]).unwrap();
        assert_eq!(ok.detail, "deleted 2 messages; not in the maildrop: gone");
        assert_eq!(ok.result.map(|r| r.items.len()), Some(2));
        let err = quit_outcome(Ok(Response::parse(b"-ERR disk full").unwrap()), &found, &[]).unwrap_err();
        assert!(
            err.detail.contains("may have removed some of the 2"),
            "{}",
            err.detail
        );
        let lost = quit_outcome(Err(Error::new(Status::Io, "reset")), &found, &[]).unwrap_err();
        assert_eq!(lost.status, Status::Io);
        assert!(
            lost.detail.contains("may or may not have deleted"),
            "{}",
            lost.detail
        );
    }

    #[test]
    fn retr_and_top_responses_split_refused_and_cut() {
        let e = &entries(1)[0];
        for chunk in [1, 3, 64] {
            let mut s = session("+OK 10 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r\n", chunk, true);
            let mut seen = Vec::new();
            let ok = read_message(&mut s, e, None, 1 << 20, &mut |n, t| seen.push((n, t)))
                .unwrap()
                .unwrap();
            let item = &ok.result.unwrap().items[0];
            assert_eq!(item.bytes.as_deref(), Some(&b"Subject: x\r\n\r\n.dot\r\n"[..]));
            assert_eq!(seen.last(), Some(&(20, 20)));
        }
        let mut s = session("-ERR [IN-USE] locked\r\n", 4, true);
        let refused = read_message(&mut s, e, Some(0), 1 << 20, &mut |_, _| {})
            .unwrap()
            .unwrap_err();
        assert!(
            refused.detail.contains("TOP of message 1 (UIDL u1)"),
            "{}",
            refused.detail
        );
        let mut s = session("+OK\r\nSubject: x\r\n", 4, true);
        assert!(read_message(&mut s, e, None, 1 << 20, &mut |_, _| {}).is_err());
        let mut s = session("+ more\r\n", 4, true);
        let garbage = read_message(&mut s, e, None, 1 << 20, &mut |_, _| {}).unwrap_err();
        assert_eq!(garbage.status, Status::Protocol);
    }

    #[test]
    fn retr_larger_than_the_limit_is_limit() {
        let e = &entries(1)[0];
        let body = "x".repeat(100);
        let mut s = session(&format!("+OK\r\n{body}\r\n.\r\n"), 16, true);
        let err = read_message(&mut s, e, None, 50, &mut |_, _| {}).unwrap_err();
        assert_eq!(err.status, Status::Limit, "{}", err.detail);
    }
}
