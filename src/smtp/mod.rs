//! herald's SMTP client: one session per pooled connection, sending the
//! worker's messages with PIPELINING (RFC 2920) and CHUNKING (RFC 3030)
//! when the server offers them. Where it offers both, every message goes by
//! `BDAT n LAST` and a window of several transactions is in flight on each
//! connection (MAIL, RCPT, BDAT, MAIL, RCPT, BDAT ...; see
//! [`pipeline`]), so messages are not bound to one round trip each. With
//! PIPELINING alone, MAIL, every RCPT and DATA go out as one group and the
//! next message's group right behind the previous message's final dot.
//!
//! Outcomes stay exact: replies are matched to commands strictly in order;
//! a message is reported sent only when its final 250 arrived; a message
//! whose content was sent but not acknowledged is never sent again, and is
//! reported as of unknown outcome; one whose content was not sent is retried
//! on a new connection. Recipients deferred with 452 (too many recipients)
//! go in a later transaction ([`outcome`]).
//!
//! Some servers break when a transaction ends while the next one's RCPT is
//! already pending (Dovecot 2.3's submission service aborts). A server
//! whose greeting names Dovecot is sent one transaction at a time, one that
//! names Postfix or Exim gets the full window at once; for any other, the
//! first time a client's connection has a transaction behind an
//! unfinished one, only the next envelope goes out early (a probe): if the
//! connection then dies, the client sends one transaction at a time from
//! then on; if not, it streams.

mod auth;
pub mod codec;
pub mod command;
mod job;
pub mod outcome;
pub mod pipeline;
pub mod reply;
pub mod session;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::engine::{CancelMode, Driver};
use crate::log::{DEBUG, INFO, WARN};
use crate::net::{self, ConnCtl};
use crate::options::Options;
use crate::status::{Error, Result, Status};

pub use job::{BeforeSend, Envelope, SendJob};

/// A send op a worker holds.
type Ticket = crate::engine::Ticket<SendJob>;
/// What the SMTP driver sees of its worker.
type WorkerCtx = crate::engine::WorkerCtx<SendJob>;

use codec::DotStuffer;
use command::Command;
use outcome::Recipients;
use pipeline::{Body, Broken, Event, Finished, Mode, Payload, Replies, Window, Wire};
use reply::Reply;
use session::{Extensions, Session};

/// Body bytes encoded per write (and per progress report) without PIPELINING.
const WRITE_CHUNK: usize = pipeline::WRITE_CHUNK;
/// How often a message is sent again after its MAIL met a server still in
/// the previous, failed transaction.
const MAX_REQUEUES: u32 = 3;

/// What a client has learned about its server's pipelining, shared by all
/// of its connections.
#[derive(Debug, Default)]
pub struct Learned {
    /// 0: not known yet (probe once); 1: takes transactions pipelined
    /// behind the previous one's end (named so by its greeting); 2: one
    /// transaction at a time; 3: took them so far (a probe passed), until a
    /// connection dies with one in flight.
    boundary: AtomicU8,
}

const STREAMS: u8 = 1;
const SERIAL: u8 = 2;
const PROBED: u8 = 3;

impl Learned {
    pub fn new() -> Arc<Learned> {
        Arc::new(Learned::default())
    }

    fn mode(&self) -> Mode {
        match self.boundary.load(Ordering::Relaxed) {
            STREAMS | PROBED => Mode::Stream,
            SERIAL => Mode::Serial,
            _ => Mode::Probe,
        }
    }

    /// Streaming only on a probe's word (not on the greeting's)?
    fn probed(&self) -> bool {
        self.boundary.load(Ordering::Relaxed) == PROBED
    }

    fn set(&self, v: u8) {
        // (A greeting that names a streaming server does not undo it either.)
        // SERIAL is final: once a server broke, never stream to it again.
        let _ = self
            .boundary
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (old != SERIAL).then_some(v)
            });
    }
}

/// Does the greeting name a server known to break when a transaction ends
/// while the next one's RCPT is pending? (Dovecot 2.3's submission service:
/// "220 host Dovecot ready.")
fn serial_by_greeting(greeting: &Reply) -> bool {
    greeting.text().to_ascii_lowercase().contains("dovecot")
}

/// Does the greeting name a server known to take transactions pipelined
/// behind the previous one's end (Postfix's "ESMTP Postfix", Exim's
/// "ESMTP Exim")? Then there is nothing to probe.
fn streams_by_greeting(greeting: &Reply) -> bool {
    let text = greeting.text().to_ascii_lowercase();
    text.contains("esmtp postfix") || text.contains("esmtp exim")
}

/// The SMTP protocol engine of one pooled connection.
pub struct SmtpDriver {
    opts: Arc<Options>,
    learned: Arc<Learned>,
    tls: Option<native_tls::TlsConnector>,
    session: Option<Session<crate::net::Stream>>,
    /// Messages this worker took but has not finished, to run before taking more.
    held: VecDeque<Job>,
    /// Messages made ready and marked together (`take_ready`), waiting for
    /// room in this connection's window. Kept across `fill`s: taken back
    /// into `held` only when the connection ends, so a message is made
    /// ready once, not once per reply the window waits for.
    pending: VecDeque<Job>,
    /// A test-account op taken while a session ran messages: it runs
    /// once they are done.
    test: Option<Job>,
}

/// How a message goes over this session.
#[derive(Clone, Debug)]
struct Plan {
    body: Body,
    params: String,
}

/// A message in this worker's hands, boxed: it moves from the queue
/// through the window to its completion a dozen times, 8 bytes each time
/// instead of its ~250 (one allocation and free on the worker's own thread
/// cost less than those copies).
type Job = Box<JobState>;

/// A message in this worker's hands: its op, how it goes, and its
/// recipients' answers over its transactions.
struct JobState {
    t: Ticket,
    plan: Option<Plan>,
    rc: Recipients,
    /// Times sent again after meeting a server still in a failed transaction.
    requeues: u32,
    /// Its `before_send` was begun with this ticket and is not yet waited for.
    mark: Option<u64>,
}

/// Most boxes of finished jobs a worker keeps for the next ones.
const MAX_SPARE_BOXES: usize = 64;

thread_local! {
    /// Boxes of jobs this worker finished, for the next ones it takes: a
    /// window takes up to 32 at once, more than the allocator's per-thread
    /// cache keeps, so a fresh box each time went through its shared bins.
    /// (The boxes themselves are kept: each is handed on as a `Job`.)
    #[allow(clippy::vec_box)]
    static SPARE_BOXES: RefCell<Vec<Box<MaybeUninit<JobState>>>> = const { RefCell::new(Vec::new()) };
}

impl JobState {
    fn new(t: Ticket) -> Job {
        let n = t.job.env.rcpt_count();
        let state = JobState {
            t,
            plan: None,
            rc: Recipients::new(n),
            requeues: 0,
            mark: None,
        };
        match SPARE_BOXES.with_borrow_mut(Vec::pop) {
            Some(spare) => Box::write(spare, state),
            None => Box::new(state),
        }
    }

    fn job(&self) -> &SendJob {
        &self.t.job
    }

    fn complete(self: Box<Self>, outcome: std::result::Result<crate::result::Success, Error>) {
        let raw = Box::into_raw(self);
        // SAFETY: `raw` is the box's JobState, valid and owned: it is moved
        // out here and never used or dropped through `raw` again.
        let state = unsafe { std::ptr::read(raw) };
        // SAFETY: the same allocation, now uninitialised, with the layout
        // MaybeUninit<JobState> has (JobState's).
        let spare = unsafe { Box::from_raw(raw.cast::<MaybeUninit<JobState>>()) };
        SPARE_BOXES.with_borrow_mut(|v| {
            if v.len() < MAX_SPARE_BOXES {
                v.push(spare);
            }
        });
        state.t.complete(outcome);
    }
}

impl Payload for Job {
    fn from(&self) -> &str {
        self.job().env.from()
    }
    fn params(&self) -> &str {
        self.plan.as_ref().map_or("", |p| p.params.as_str())
    }
    fn body(&self) -> Body {
        self.plan.as_ref().map_or(Body::Data, |p| p.body)
    }
    fn rcpt_count(&self) -> usize {
        self.rc.round_len()
    }
    fn rcpt(&self, k: usize) -> &str {
        self.job().env.rcpt(self.rc.round_at(k))
    }
    fn data(&self) -> &[u8] {
        self.job().content_so_far()
    }
    fn len(&self) -> usize {
        self.job().len()
    }
    fn wait_data(&self, to: usize) -> Result<()> {
        self.job().content_upto(to).map(|_| ())
    }
    fn tail(&self) -> &[u8] {
        self.job().content_tail()
    }
    fn verbatim(&self) -> bool {
        self.job().needs.verbatim()
    }
    fn live(&self) -> bool {
        self.t.is_live()
    }
    fn progress(&self, done: u64, total: u64) {
        self.t.progress(done, total);
    }
}

/// Is this error the connection going away (so the session is unusable)?
fn connection_lost(e: &Error) -> bool {
    e.is_connection_failure() || reply::is_closing_error(e)
}

/// The error of a message whose content was sent but whose final reply
/// never came.
fn unknown_outcome(mut e: Error, job: &Job) -> Error {
    e.status = Status::Io;
    e.detail = format!(
        "{}; the message content was sent but not acknowledged, so the server may or may not have accepted it",
        e.detail
    );
    let delivered = job.rc.delivered();
    if delivered > 0 {
        e.detail.push_str(&format!(
            " (it was accepted for {delivered} recipients in an earlier transaction)"
        ));
        e = e.with_partial(job.rc.items(&job.job().env));
    }
    e
}

impl SmtpDriver {
    pub fn new(opts: Arc<Options>, learned: Arc<Learned>) -> Self {
        SmtpDriver {
            opts,
            learned,
            tls: None,
            session: None,
            held: VecDeque::new(),
            pending: VecDeque::new(),
            test: None,
        }
    }

    /// The test-account op: a fresh session (connect, TLS, EHLO, AUTH)
    /// reported, then QUIT.
    fn test_account(&mut self, job: Job, w: &mut WorkerCtx) {
        let Some(job) = Self::live(job) else {
            return;
        };
        if let Some(s) = self.session.take() {
            s.quit(self.opts.io_timeout);
        }
        let outcome = self.open(w).and_then(|()| {
            let s = self
                .session
                .take()
                .ok_or_else(|| Error::protocol("no SMTP session"))?;
            let o = &self.opts;
            let (data, detail) = crate::net::account::report(o, s.tls, &s.ext.announced, s.mechanism);
            s.quit(o.io_timeout);
            Ok(crate::result::Success::new(0, detail).with_result(data))
        });
        job.complete(outcome);
    }

    fn open(&mut self, w: &mut WorkerCtx) -> Result<()> {
        let ctl: Arc<ConnCtl> = w.new_ctl();
        let tls = &mut self.tls;
        let s = net::tls::with_cert_info(&self.opts, |o| Session::open(o, tls, &ctl, w.tracer()))?;
        match &s.greeting {
            Some(g) if serial_by_greeting(g) => self.learned.set(SERIAL),
            Some(g) if streams_by_greeting(g) => self.learned.set(STREAMS),
            _ => {}
        }
        w.log(INFO, || {
            format!(
                "connected to {}:{}{}{}{}",
                self.opts.host(),
                self.opts.port(),
                if s.tls { " (TLS)" } else { "" },
                if s.ext.pipelining { " with PIPELINING" } else { "" },
                if s.ext.chunking { " and CHUNKING" } else { "" },
            )
        });
        self.session = Some(s);
        Ok(())
    }

    fn drop_session(&mut self) {
        self.session = None;
    }

    /// Checks a message against the session's extensions before any of it
    /// is sent, and chooses DATA or BDAT: BDAT whenever the server offers
    /// CHUNKING. It is never slower: it needs no 354 round trip (so in a
    /// window it costs none at all), it sends the bytes unchanged with no
    /// dot-stuffing, and it is the only way to carry bare CR/LF or NUL.
    fn plan(ext: &Extensions, j: &SendJob) -> Result<Plan> {
        if j.env.rcpt_count() == 0 {
            return Err(Error::invalid("the message has no recipients"));
        }
        let needs = j.needs;
        if let Some(max) = ext.size {
            if max > 0 && j.len() as u64 > max {
                return Err(Error::new(
                    Status::Limit,
                    format!(
                        "the message is {} bytes; the server accepts at most {max} (SIZE)",
                        j.len()
                    ),
                ));
            }
        }
        if needs.smtputf8 && !ext.smtputf8 {
            return Err(Error::new(
                Status::Unsupported,
                "the addresses are not ASCII and the server does not offer SMTPUTF8",
            ));
        }
        let bdat = ext.chunking;
        if needs.eight_bit && !ext.eightbitmime && !(bdat && ext.binarymime) {
            return Err(Error::new(
                Status::Unsupported,
                "the message has 8-bit bytes and the server does not offer 8BITMIME",
            ));
        }
        let mut params = String::new();
        if ext.size.is_some() {
            // Into the one buffer, with room for what may follow.
            params.reserve(48);
            let _ = std::fmt::Write::write_fmt(&mut params, format_args!(" SIZE={}", j.len()));
        }
        if bdat && needs.binary && ext.binarymime {
            params.push_str(" BODY=BINARYMIME");
        } else if needs.eight_bit {
            params.push_str(" BODY=8BITMIME");
        }
        if needs.smtputf8 {
            params.push_str(" SMTPUTF8");
        }
        Ok(Plan {
            body: if bdat { Body::Bdat } else { Body::Data },
            params,
        })
    }

    /// The next message to run: one this worker holds, else one from the queue.
    fn next_job(&mut self, w: &mut WorkerCtx) -> Option<Job> {
        if self.test.is_some() {
            return None;
        }
        let job = self
            .held
            .pop_front()
            .or_else(|| w.try_next().map(JobState::new))?;
        if job.job().account_test {
            // Not a message: it ends what this session pulls, and runs next.
            self.test = Some(job);
            return None;
        }
        Some(job)
    }

    /// Makes a job ready for this session: planned, and its mark begun. A
    /// job that cannot be completes at once. Whether it is still live is
    /// asked just before it is sent (`fill`, `run_lockstep`), not here too.
    fn ready(&self, mut job: Job) -> Option<Job> {
        if job.plan.is_none() {
            let ext = &self.session.as_ref().expect("a session").ext;
            match Self::plan(ext, job.job()) {
                Ok(p) => job.plan = Some(p),
                Err(e) => {
                    job.complete(Err(e));
                    return None;
                }
            }
        }
        match job.job().before_send.as_ref().map(|f| f.begin()) {
            Some(Err(e)) => {
                job.complete(Err(e));
                return None;
            }
            Some(Ok(ticket)) => job.mark = Some(ticket),
            None => {}
        }
        Some(job)
    }

    /// Waits for what `ready` began for `job` (its `before_send`): after
    /// this, and only after, the message may go out.
    fn marked(mut job: Job) -> Option<Job> {
        let (Some(ticket), Some(f)) = (job.mark.take(), job.job().before_send.clone()) else {
            return Some(job);
        };
        match f.wait(ticket) {
            Ok(()) => Some(job),
            Err(e) => {
                job.complete(Err(e));
                None
            }
        }
    }

    /// The messages to push next, at most `room`: those at hand, made
    /// ready together, so a connection waits once for all their marks.
    fn take_ready(&mut self, room: usize, next: &mut Option<Job>, w: &mut WorkerCtx) -> VecDeque<Job> {
        loop {
            let mut batch = Vec::new();
            let mut took = false;
            while batch.len() < room {
                let Some(job) = next.take().or_else(|| self.next_job(w)) else {
                    break;
                };
                took = true;
                batch.extend(self.ready(job));
            }
            let batch: VecDeque<Job> = batch.into_iter().filter_map(Self::marked).collect();
            // Not on the wire while they wait: a cancel completes one at
            // once and the window drops it (`fill`), leaving the connection
            // and the transactions in flight on it alone.
            Ticket::set_cancel_modes(&mut batch.iter().map(|j| &j.t), CancelMode::Defer);
            if !batch.is_empty() || !took {
                return batch;
            }
        }
    }

    /// `job` unless it was cancelled; a cancelled one completes so here.
    fn live(job: Job) -> Option<Job> {
        if job.t.is_live() {
            return Some(job);
        }
        job.complete(Err(Error::cancelled()));
        None
    }

    /// Those taken for the window but not pushed go back first in line.
    fn hold_pending(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        self.hold(rest);
    }

    /// Messages taken but not pushed go back first in line, in order.
    fn hold(&mut self, rest: VecDeque<Job>) {
        for job in rest.into_iter().rev() {
            self.held.push_front(job);
        }
    }

    /// Pushes messages into the window while it takes more (see
    /// `take_ready`). False when no message is left to push.
    fn fill(
        &mut self,
        window: &mut Window<Job>,
        next: &mut Option<Job>,
        w: &mut WorkerCtx,
    ) -> std::result::Result<bool, Broken<Job>> {
        while window.can_push() {
            if self.pending.is_empty() {
                self.pending = self.take_ready(window.room(), next, w);
            }
            let Some(job) = self.pending.pop_front() else {
                return Ok(false);
            };
            // Cancelled while it waited for room: gone.
            let Some(job) = Self::live(job) else {
                continue;
            };
            // Cancelling the only transaction in flight shuts the socket
            // down (no wait outlives the cancel); with others in flight it
            // completes the op at once and the connection carries on, so
            // one cancel does not leave the others' outcomes unknown. The
            // job is Defer already (`take_ready`); so is the oldest unless
            // it was alone.
            if window.in_flight() == 1 {
                if let Some(j) = window.oldest() {
                    j.t.set_cancel_mode(CancelMode::Defer);
                }
            } else if window.in_flight() == 0 {
                job.t.set_cancel_mode(CancelMode::Abort);
            }
            let s = self.session.as_mut().expect("a session");
            window.push(s, job)?;
        }
        Ok(true)
    }

    /// A transaction of `job` finished: complete it, or hold it for its
    /// next transaction.
    fn finished(&mut self, f: Finished<Job>, w: &mut WorkerCtx) {
        let Finished {
            payload: mut job,
            mut replies,
            abandoned,
        } = f;
        if abandoned {
            // Cancelled while the server waited for its DATA content: there is
            // no way to abort DATA, so give the connection up instead.
            self.drop_session();
            job.complete(Err(Error::cancelled()));
            return;
        }
        if replies.behind_failure
            && replies.mail.as_ref().is_some_and(|m| m.code == 503)
            && job.requeues < MAX_REQUEUES
        {
            // The server was still in the failed transaction before this one.
            job.requeues += 1;
            if let Some(s) = self.session.as_mut() {
                s.need_rset = true;
            }
            self.held.push_front(job);
            return;
        }
        if replies.delivered() {
            if let Some(s) = self.session.as_mut() {
                s.transactions += 1;
            }
        }
        if job.rc.settle(&mut replies) {
            w.log(DEBUG, || {
                format!(
                    "op {}: {} recipients deferred, sending them in another transaction",
                    job.t.id,
                    job.rc.round_len()
                )
            });
            job.plan = None;
            self.held.push_front(job);
            return;
        }
        let outcome = job.rc.outcome(&job.job().env, &replies);
        job.complete(outcome);
    }

    /// The connection failed with transactions in flight: each gets the
    /// outcome its replies allow, or is retried if none of its content
    /// went out.
    fn broken(&mut self, b: Broken<Job>, w: &mut WorkerCtx) {
        self.drop_session();
        // Those taken but not pushed go behind the ones retried below.
        self.hold_pending();
        let Broken {
            error,
            closing,
            during_probe,
            behind_an_end,
            finished,
            in_flight,
        } = b;
        // Dovecot 2.3's bug depends on timing, so a passed probe proves
        // little: a server streamed to on a probe's word that dies with a
        // transaction pipelined behind another's end is taught too.
        let suspect = during_probe || (behind_an_end && self.learned.probed());
        if suspect && !closing && error.is_connection_failure() && !error.is_timeout() {
            w.log(WARN, || {
                format!(
                    "the connection died right after a transaction was pipelined behind the end of another ({}); \
                     sending one transaction at a time to this server from now on",
                    error.detail
                )
            });
            self.learned.set(SERIAL);
        }
        for f in finished {
            self.finished(f, w);
        }
        let mut retry = Vec::new();
        for (mut job, mut r) in in_flight {
            let stale = r.behind_failure && r.mail.as_ref().is_some_and(|m| m.code == 503);
            if r.envelope_refused() && !stale {
                // Known: nothing of it can have been accepted.
                job.rc.settle(&mut r);
                let outcome = job.rc.outcome(&job.job().env, &r);
                job.complete(outcome);
                continue;
            }
            if r.content_sent && !closing && !stale {
                let e = unknown_outcome(error.clone(), &job);
                job.complete(Err(e));
                continue;
            }
            // Nothing of it was accepted: a 421, or its content never went out.
            let e = error.clone();
            if job.t.attempts == 0 && connection_lost(&e) && !e.is_timeout() && job.t.is_live() {
                job.t.attempts += 1;
                retry.push(job);
            } else if job.rc.delivered() > 0 {
                let e = e.with_partial(job.rc.items(&job.job().env));
                job.complete(Err(e));
            } else {
                job.complete(Err(e));
            }
        }
        if !retry.is_empty() {
            w.log(WARN, || {
                format!(
                    "{}; retrying {} messages on a new connection",
                    error.detail,
                    retry.len()
                )
            });
        }
        for job in retry.into_iter().rev() {
            self.held.push_front(job);
        }
    }

    /// Runs messages over the session (opened first if needed), starting
    /// with `first`, until none is left or the connection ends.
    fn run_connection(&mut self, first: Job, w: &mut WorkerCtx) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.conn.buffered() > 0 || s.conn.get_ref().readable_now())
        {
            // The server spoke (421, or closed) while the connection was
            // idle: open a new one rather than send content into it.
            w.log(DEBUG, || "the server closed the idle SMTP connection".into());
            self.drop_session();
        }
        if self.session.is_none() {
            if !first.t.is_live() {
                first.complete(Err(Error::cancelled()));
                return;
            }
            if let Err(e) = self.open(w) {
                first.complete(Err(e));
                return;
            }
        }
        if !self.session.as_ref().expect("opened").ext.pipelining {
            return self.run_lockstep(first, w);
        }
        self.run_window(first, w);
        // Taken but not pushed: first in line for the next connection.
        self.hold_pending();
    }

    /// With PIPELINING: a window of transactions in flight (see
    /// `src/smtp/pipeline.rs`), until none is left or the connection ends.
    fn run_window(&mut self, first: Job, w: &mut WorkerCtx) {
        let mut window: Window<Job> = Window::new(self.learned.mode());
        let mut next = Some(first);
        loop {
            let more = match self.fill(&mut window, &mut next, w) {
                Ok(more) => more,
                Err(b) => return self.broken(b, w),
            };
            let s = self.session.as_mut().expect("a session");
            match window.step(s, more) {
                Ok(Event::Finished(f)) => {
                    if window.probe_confirmed() && self.learned.mode() == Mode::Probe {
                        self.learned.set(PROBED);
                    }
                    if window.in_flight() == 1 {
                        if let Some(j) = window.oldest() {
                            j.t.set_cancel_mode(CancelMode::Abort);
                        }
                    }
                    self.finished(f, w);
                    if self.session.is_none() {
                        // Abandoned mid-DATA (nothing else can be in flight
                        // then: DATA holds the window until its 354).
                        if !window.is_empty() {
                            let b = window.abandon_all(Error::new(
                                Status::Io,
                                "the connection was closed after a cancel",
                            ));
                            return self.broken(b, w);
                        }
                        return;
                    }
                }
                Ok(Event::Ready) => {}
                Ok(Event::Idle) => return,
                Err(b) => return self.broken(b, w),
            }
        }
    }

    /// Without PIPELINING: one command at a time, stopping early when MAIL
    /// or every RCPT fails.
    fn run_lockstep(&mut self, first: Job, w: &mut WorkerCtx) {
        let mut next = Some(first);
        while let Some(job) = next.take().or_else(|| self.next_job(w)) {
            let Some(job) = self.ready(job).and_then(Self::marked).and_then(Self::live) else {
                continue;
            };
            job.t.set_cancel_mode(CancelMode::Abort);
            let s = self.session.as_mut().expect("a session");
            match lockstep(s, &job) {
                (r, None) => {
                    let closing = r.rcpts.iter().flatten().any(Reply::is_closing)
                        || r.mail.as_ref().is_some_and(Reply::is_closing)
                        || r.decisive().is_some_and(Reply::is_closing);
                    let f = Finished {
                        payload: job,
                        replies: r,
                        abandoned: false,
                    };
                    if closing {
                        self.drop_session();
                        self.finished(f, w);
                        return;
                    }
                    if !f.replies.delivered() {
                        s.need_rset = true;
                    }
                    self.finished(f, w);
                }
                (r, Some(e)) => {
                    let b = Broken {
                        closing: reply::is_closing_error(&e),
                        error: e,
                        during_probe: false,
                        behind_an_end: false,
                        finished: Vec::new(),
                        in_flight: vec![(job, r)],
                    };
                    return self.broken(b, w);
                }
            }
            if self.session.is_none() {
                return;
            }
        }
    }
}

/// One transaction, one command at a time.
/// The replies, and the error that ended the connection if one did.
fn lockstep<S: Wire>(s: &mut Session<S>, job: &Job) -> (Replies, Option<Error>) {
    let mut r = Replies::default();
    macro_rules! cmd {
        ($c:expr) => {
            match s.send($c.to_string().as_bytes()).and_then(|()| {
                s.conn.get_ref().before_wait();
                s.reply()
            }) {
                Ok(reply) => reply,
                Err(e) => return (r, Some(e)),
            }
        };
    }
    if s.need_rset {
        let reply = cmd!(Command::Rset);
        if !reply.is_positive() {
            return (r, Some(reply.error("RSET")));
        }
        s.need_rset = false;
    }
    let mail = cmd!(Command::Mail {
        from: job.from(),
        params: job.params(),
    });
    let go = mail.is_positive();
    r.mail = Some(mail);
    r.rcpts = vec![None; job.rcpt_count()];
    if !go {
        return (r, None);
    }
    for k in 0..job.rcpt_count() {
        let reply = cmd!(Command::Rcpt { to: job.rcpt(k) });
        let closing = reply.is_closing();
        r.rcpts[k] = Some(reply);
        if closing {
            return (r, None);
        }
    }
    if r.accepted_rcpts() == 0 {
        return (r, None);
    }
    match send_content(s, job, &mut r) {
        Ok(true) => {}
        Ok(false) => return (r, None),
        Err(e) => return (r, Some(e)),
    }
    s.conn.get_ref().before_wait();
    match s.reply() {
        Ok(reply) => {
            r.last = Some(reply);
            (r, None)
        }
        Err(e) => (r, Some(e)),
    }
}

/// Sends the message of a transaction whose recipients were accepted:
/// BDAT, or DATA and (after its 354) the dot-stuffed content. True when
/// the content is sent and its final reply is to be read; false when the
/// server refused DATA; an error when the connection failed or the op was
/// cancelled before the content.
fn send_content<S: Wire>(s: &mut Session<S>, job: &Job, r: &mut Replies) -> Result<bool> {
    // One command at a time: the content is sent once it is all made.
    let data = job.job().content()?;
    let total = data.len() as u64;
    let fail = |e: std::io::Error| Error::from_io(&e, "sending the message");
    match job.body() {
        Body::Bdat => {
            let head = Command::Bdat {
                len: data.len(),
                last: true,
            }
            .to_string();
            s.trace_out(head.as_bytes());
            r.content_sent = true;
            s.conn.write_all(head.as_bytes()).map_err(fail)?;
            let mut sent = 0;
            for chunk in data.chunks(WRITE_CHUNK) {
                s.conn.write_all(chunk).map_err(fail)?;
                sent += chunk.len();
                job.progress(sent as u64, total);
            }
        }
        Body::Data => {
            s.send(Command::Data.to_string().as_bytes())?;
            s.conn.get_ref().before_wait();
            let reply = s.reply()?;
            let go = reply.code == 354;
            r.data = Some(reply);
            if !go {
                return Ok(false);
            }
            if !job.live() {
                return Err(Error::cancelled());
            }
            r.content_sent = true;
            s.trace_out(format!("<message, {total} bytes>\r\n").as_bytes());
            let mut stuffer = DotStuffer::default();
            let mut out = Vec::with_capacity(WRITE_CHUNK + WRITE_CHUNK / 32 + 8);
            let mut sent = 0;
            for chunk in data.chunks(WRITE_CHUNK) {
                stuffer.encode(chunk, &mut out);
                s.conn.write_all(&out).map_err(fail)?;
                out.clear();
                sent += chunk.len();
                job.progress(sent as u64, total);
            }
            stuffer.finish(&mut out);
            s.conn.write_all(&out).map_err(fail)?;
        }
    }
    if data.is_empty() {
        job.progress(0, 0);
    }
    s.conn.flush().map_err(fail)?;
    Ok(true)
}

impl Driver for SmtpDriver {
    type Job = SendJob;

    fn run(&mut self, first: Ticket, w: &mut WorkerCtx) {
        let mut cur = Some(JobState::new(first));
        while let Some(job) = cur
            .take()
            .or_else(|| self.test.take())
            .or_else(|| self.held.pop_front())
        {
            if job.job().account_test {
                self.test_account(job, w);
            } else {
                self.run_connection(job, w);
            }
        }
    }

    fn close_idle(&mut self, w: &mut WorkerCtx) {
        if let Some(s) = self.session.take() {
            w.log(DEBUG, || "closing an idle SMTP connection".into());
            s.quit(self.opts.io_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        Reply::new(code, text)
    }

    fn job(data: &[u8]) -> SendJob {
        SendJob::new(Envelope::of("a@example.org", &["b@example.org"]), data.to_vec())
    }

    #[test]
    fn greetings_name_the_servers_they_are() {
        assert!(serial_by_greeting(&reply(220, "mx.example Dovecot ready.")));
        assert!(!serial_by_greeting(&reply(220, "mx.example ESMTP Postfix")));
        assert!(streams_by_greeting(&reply(
            220,
            "mx.example ESMTP Postfix (Debian/GNU)"
        )));
        assert!(streams_by_greeting(&reply(220, "mx.example ESMTP Exim 4.96")));
        assert!(!streams_by_greeting(&reply(220, "mx.example ESMTP ready")));
    }

    #[test]
    fn what_is_learned_about_a_server() {
        // Unknown: probe. A passed probe streams, on the probe's word only.
        let l = Learned::default();
        assert_eq!(l.mode(), Mode::Probe);
        l.set(PROBED);
        assert_eq!(l.mode(), Mode::Stream);
        assert!(l.probed());
        // A crash teaches serial mode, and that is final.
        l.set(SERIAL);
        assert_eq!(l.mode(), Mode::Serial);
        l.set(STREAMS);
        l.set(PROBED);
        assert_eq!(l.mode(), Mode::Serial);
        // Named by its greeting: streams, and not on a probe's word.
        let l = Learned::default();
        l.set(STREAMS);
        assert_eq!(l.mode(), Mode::Stream);
        assert!(!l.probed());
    }

    #[test]
    fn plans_follow_the_servers_extensions() {
        let mut ext = Extensions {
            esmtp: true,
            pipelining: true,
            eightbitmime: true,
            size: Some(0),
            ..Default::default()
        };
        let text = b"Subject: x\r\n\r\nhi\r\n";
        let p = SmtpDriver::plan(&ext, &job(text)).unwrap();
        assert_eq!(p.body, Body::Data);
        assert_eq!(p.params, format!(" SIZE={}", text.len()));
        ext.chunking = true;
        let eight = "Subject: x\r\n\r\nh\u{e9}\r\n".as_bytes();
        let p = SmtpDriver::plan(&ext, &job(eight)).unwrap();
        assert_eq!(
            p.body,
            Body::Bdat,
            "every message goes by BDAT where CHUNKING is offered"
        );
        assert_eq!(p.params, format!(" SIZE={} BODY=8BITMIME", eight.len()));
        // Over the server's SIZE: LIMIT, before anything is sent.
        ext.size = Some(10);
        let e = SmtpDriver::plan(&ext, &job(b"Subject: x\r\n\r\nhi\r\n")).unwrap_err();
        assert_eq!(e.status, Status::Limit);
        // 8-bit content without 8BITMIME (or BINARYMIME with BDAT): UNSUPPORTED.
        let ext = Extensions {
            esmtp: true,
            ..Default::default()
        };
        let e = SmtpDriver::plan(&ext, &job("h\u{e9}\r\n".as_bytes())).unwrap_err();
        assert_eq!(e.status, Status::Unsupported);
        // A UTF-8 address without SMTPUTF8: UNSUPPORTED.
        let utf8 = SendJob::new(
            Envelope::of("j\u{f6}rg@example.org", &["b@example.org"]),
            b"x\r\n".to_vec(),
        );
        let e = SmtpDriver::plan(&ext, &utf8).unwrap_err();
        assert_eq!(e.status, Status::Unsupported);
        // No recipient: INVALID_ARGUMENT.
        let none = SendJob::new(Envelope::new("a@example.org", 0), b"x\r\n".to_vec());
        assert_eq!(
            SmtpDriver::plan(&ext, &none).unwrap_err().status,
            Status::InvalidArgument
        );
    }
}
