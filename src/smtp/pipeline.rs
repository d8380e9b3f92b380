//! The mail transactions in flight on one connection (RFC 2920 PIPELINING,
//! RFC 3030 CHUNKING), as a state machine over any `Read + Write`.
//!
//! A [`Window`] writes each transaction's commands as soon as the server
//! allows it and matches every reply to its command strictly in order:
//!
//! * BDAT: `MAIL`, `RCPT`..., `BDAT n LAST` and the content go out in one go,
//!   and in [`Mode::Stream`] the next transaction follows at once, so several
//!   are in flight (MAIL, RCPT, BDAT, MAIL, RCPT, BDAT ...).
//! * DATA: `MAIL`, `RCPT`..., `DATA`; the content waits for the 354, and the
//!   next transaction may follow the final dot.
//! * [`Mode::Serial`]: the next transaction only after the previous one's
//!   final reply (for servers that break when a transaction ends while the
//!   next one's RCPT is pending). [`Mode::Probe`]: serial, except that once,
//!   the next envelope goes out right behind the final command (its content
//!   only after the reply): the caller learns from the outcome which mode
//!   the server takes.
//!
//! Writes are buffered and flushed before each wait; replies already there
//! are read between the chunks of a large content, and the number of
//! replies outstanding is bounded, so a full socket buffer on either side
//! never deadlocks the window. When the connection fails, every transaction
//! still in flight comes back with the replies it got and whether any of
//! its content was written: the caller knows exactly which outcomes are
//! unknown and which messages can be sent again.
//!
//! Nothing here knows about ops or the pool: a transaction is anything that
//! implements [`Payload`].

use std::collections::VecDeque;
use std::io::{Read, Write};

use super::codec::DotStuffer;
use super::command::Command;
use super::reply::Reply;
use super::session::Session;
use crate::status::{Error, Result};

/// Content bytes written per write call (and per progress report).
pub(crate) const WRITE_CHUNK: usize = 64 * 1024;
/// Most transactions in flight on one connection.
pub(crate) const MAX_TRANSACTIONS: usize = 32;
/// Most replies outstanding (bounds what the server may have to buffer).
pub(crate) const MAX_REPLIES: usize = 256;
/// Most content bytes of unanswered transactions: enough to keep a fast
/// link busy (2 MiB is 100 MB/s at 20 ms; 1 MiB measured 0.76× the
/// streamer with 100 KB messages at 20 ms), and a bound on how many
/// messages a dropped connection leaves with an unknown outcome.
pub(crate) const MAX_BYTES_IN_FLIGHT: usize = 2 * 1024 * 1024;

/// What the window needs from a connection beyond reading and writing.
pub trait Wire: Read + Write {
    /// Called before each wait for a reply (TCP_QUICKACK).
    fn before_wait(&self) {}
    /// True when a read would not block.
    fn readable_now(&self) -> bool {
        false
    }
}

impl Wire for crate::net::Stream {
    fn before_wait(&self) {
        self.quickack();
    }
    fn readable_now(&self) -> bool {
        crate::net::Stream::readable_now(self)
    }
}

/// How a transaction's content goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Data,
    Bdat,
}

/// When a transaction may follow the previous one on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Right away: several transactions in flight.
    Stream,
    /// Serial, but once the next envelope goes right behind the final command.
    Probe,
    /// Only after the previous transaction's final reply.
    Serial,
}

/// One transaction to run.
pub trait Payload {
    fn from(&self) -> &str;
    /// MAIL parameters, each with a leading space.
    fn params(&self) -> &str;
    fn body(&self) -> Body;
    /// How many recipients this transaction has.
    fn rcpt_count(&self) -> usize;
    /// Recipient `k` of this transaction (`k < rcpt_count()`).
    fn rcpt(&self, k: usize) -> &str;
    /// The content made so far: all of it, unless it is still being made
    /// (a large message whose attachments are encoded while it is sent).
    fn data(&self) -> &[u8];
    /// The content's length.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Waits until `data()` has at least `to` bytes; an error if it never
    /// will.
    fn wait_data(&self, _to: usize) -> Result<()> {
        Ok(())
    }
    /// The content's last bytes (at most 2), known before it is all made.
    fn tail(&self) -> &[u8] {
        let d = self.data();
        &d[d.len().saturating_sub(2)..]
    }
    /// DATA carries the content unchanged (no line starts with '.', no
    /// bare CR or LF): it is then written from its own buffer, not copied
    /// through the dot-stuffer.
    fn verbatim(&self) -> bool {
        false
    }
    /// False once the transaction must not be continued (cancelled): its
    /// content is then not written.
    fn live(&self) -> bool {
        true
    }
    fn progress(&self, _done: u64, _total: u64) {}
}

/// The replies one transaction got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replies {
    pub mail: Option<Reply>,
    /// One per recipient of the transaction, in order.
    pub rcpts: Vec<Option<Reply>>,
    /// The reply to DATA (354, or a refusal).
    pub data: Option<Reply>,
    /// The final reply: to the dot, or to BDAT ... LAST.
    pub last: Option<Reply>,
    /// Some of the content was (or may have been) written.
    pub content_sent: bool,
    /// A transaction written before it ended without its final 250 while
    /// this one was already on the wire: a refusal of this one's MAIL may
    /// be the server still being in that transaction (RSET, then retry).
    pub behind_failure: bool,
}

impl Replies {
    pub fn accepted_rcpts(&self) -> usize {
        self.rcpts
            .iter()
            .filter(|r| r.as_ref().is_some_and(Reply::is_positive))
            .count()
    }

    /// MAIL or every recipient was refused: nothing can be delivered, sent content or not.
    pub fn envelope_refused(&self) -> bool {
        match &self.mail {
            Some(m) if !m.is_positive() => true,
            Some(_) => self
                .rcpts
                .iter()
                .all(|r| r.as_ref().is_some_and(|r| !r.is_positive())),
            None => false,
        }
    }

    /// The reply that decides the transaction's content: the final one, or
    /// DATA's refusal.
    pub fn decisive(&self) -> Option<&Reply> {
        match &self.data {
            Some(d) if d.code != 354 => Some(d),
            _ => self.last.as_ref(),
        }
    }

    /// The server accepted the content.
    pub fn delivered(&self) -> bool {
        self.mail.as_ref().is_some_and(Reply::is_positive)
            && self.accepted_rcpts() > 0
            && self.decisive().is_some_and(Reply::is_positive)
    }
}

/// A transaction whose replies all came.
#[derive(Debug)]
pub struct Finished<P> {
    pub payload: P,
    pub replies: Replies,
    /// Cancelled when the server was waiting for its DATA content: the
    /// connection is in the middle of DATA and must be closed.
    pub abandoned: bool,
}

/// What [`Window::step`] came to.
#[derive(Debug)]
pub enum Event<P> {
    Finished(Finished<P>),
    /// Another transaction may be pushed now.
    Ready,
    /// Nothing in flight.
    Idle,
}

/// The connection failed (or the server said 421): what was in flight.
#[derive(Debug)]
pub struct Broken<P> {
    pub error: Error,
    /// The server announced it is closing (421): nothing still in flight
    /// was accepted.
    pub closing: bool,
    /// The failure came while the probe's envelope was pipelined behind
    /// the previous transaction's final command, before the server had
    /// answered that one.
    pub during_probe: bool,
    /// The failure came while a transaction had been pipelined behind
    /// another's end (two or more in flight): the pattern of a server that
    /// breaks on that, whether probing or streaming.
    pub behind_an_end: bool,
    /// Transactions that had finished before the failure.
    pub finished: Vec<Finished<P>>,
    /// Transactions still in flight, oldest first, with what they got.
    pub in_flight: Vec<(P, Replies)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    Last,
    /// The dot ending a DATA the server accepted without any recipient.
    EmptyDot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Envelope written; BDAT content too, or DATA's 354 awaited.
    Envelope,
    /// DATA answered 354: the content is to be written.
    SendContent,
    /// A probe's BDAT: content waits for the previous transaction to end.
    HoldContent,
    /// Everything written; replies outstanding.
    Written,
}

struct Flight<P> {
    seq: u64,
    p: P,
    r: Replies,
    stage: Stage,
    probe: bool,
}

/// Most message contents written straight from their own buffers that
/// one write gathers (each between two parts of the command buffer).
const MAX_PIECES: usize = 8;

/// Content of flight `seq`, `data()[from..to]`, due on the wire right
/// after the first `at` bytes of the command buffer (before the rest).
#[derive(Clone, Copy, Debug)]
struct Piece {
    at: usize,
    seq: u64,
    from: usize,
    to: usize,
}

/// The transactions in flight on one connection.
pub struct Window<P> {
    mode: Mode,
    probed: bool,
    probe_confirmed: bool,
    flights: VecDeque<Flight<P>>,
    /// The content bytes of `flights`, together.
    flight_bytes: usize,
    /// The last reply ended a transaction with another already written
    /// behind it: the moment a server with Dovecot 2.3's bug dies at.
    ended_ahead: bool,
    expect: VecDeque<(u64, Want)>,
    next_seq: u64,
    out: Vec<u8>,
    /// Contents due between parts of `out`, in order: written with it in
    /// one vectored write, never copied into it.
    pieces: Vec<Piece>,
    done: VecDeque<Finished<P>>,
    max_transactions: usize,
    /// A transaction ended unsuccessfully with nothing behind it: RSET
    /// before the next MAIL.
    needs_rset: bool,
}

enum Failure {
    Io(Error),
    Closing(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Io(e)
    }
}

impl<P: Payload> Window<P> {
    pub fn new(mode: Mode) -> Self {
        Window {
            mode,
            probed: false,
            probe_confirmed: false,
            flights: VecDeque::new(),
            flight_bytes: 0,
            ended_ahead: false,
            expect: VecDeque::new(),
            next_seq: 0,
            out: Vec::with_capacity(4096),
            pieces: Vec::with_capacity(MAX_PIECES),
            done: VecDeque::new(),
            max_transactions: MAX_TRANSACTIONS,
            needs_rset: false,
        }
    }

    /// At most `n` transactions in flight (tests use a small window).
    #[cfg(test)]
    pub fn with_max_transactions(mut self, n: usize) -> Self {
        self.max_transactions = n.max(1);
        self
    }

    /// How the window sends transactions (tests check what it learned).
    #[cfg(test)]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True once a probe showed that the server takes a transaction
    /// pipelined behind the previous one's end (the window then streams).
    pub fn probe_confirmed(&self) -> bool {
        self.probe_confirmed
    }

    /// Nothing in flight and nothing finished waiting to be taken.
    pub fn is_empty(&self) -> bool {
        self.flights.is_empty() && self.done.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// May another transaction be written now?
    pub fn can_push(&self) -> bool {
        if self.flights.is_empty() {
            return true;
        }
        // Only the newest can be unwritten: a transaction is pushed only
        // when every other one is written, and a stage never goes back.
        debug_assert!(self
            .flights
            .iter()
            .rev()
            .skip(1)
            .all(|f| f.stage == Stage::Written));
        if self.flights.back().is_some_and(|f| f.stage != Stage::Written) {
            return false;
        }
        match self.mode {
            Mode::Serial => false,
            Mode::Probe => !self.probed && self.flights.len() == 1,
            Mode::Stream => {
                self.flights.len() < self.max_transactions
                    && self.expect.len() < MAX_REPLIES
                    && self.flight_bytes < MAX_BYTES_IN_FLIGHT
            }
        }
    }

    /// How many transactions may be pushed now at most (the bytes and
    /// replies in flight may allow fewer).
    pub fn room(&self) -> usize {
        if !self.can_push() {
            return 0;
        }
        match self.mode {
            Mode::Stream => self.max_transactions.saturating_sub(self.flights.len()).max(1),
            Mode::Serial | Mode::Probe => 1,
        }
    }

    /// Writes (buffers) a transaction's commands, and its BDAT content
    /// unless it must wait. Call only when [`can_push`](Self::can_push).
    pub fn push<S: Wire>(&mut self, s: &mut Session<S>, p: P) -> std::result::Result<(), Broken<P>> {
        debug_assert!(self.can_push());
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sync_rset(s);
        let probe = self.mode == Mode::Probe && !self.flights.is_empty();
        if probe {
            self.probed = true;
        }
        let start = self.out.len();
        if s.need_rset {
            Command::Rset.write_to(&mut self.out);
            self.expect.push_back((seq, Want::Rset));
            s.need_rset = false;
        }
        Command::Mail {
            from: p.from(),
            params: p.params(),
        }
        .write_to(&mut self.out);
        self.expect.push_back((seq, Want::Mail));
        let n = p.rcpt_count();
        for i in 0..n {
            Command::Rcpt { to: p.rcpt(i) }.write_to(&mut self.out);
            self.expect.push_back((seq, Want::Rcpt(i)));
        }
        let body = p.body();
        let stage = match body {
            Body::Data => {
                Command::Data.write_to(&mut self.out);
                self.expect.push_back((seq, Want::Data));
                Stage::Envelope
            }
            Body::Bdat if probe => Stage::HoldContent,
            Body::Bdat => Stage::Envelope,
        };
        s.trace_out(&self.out[start..]);
        self.flight_bytes += p.len();
        self.flights.push_back(Flight {
            seq,
            p,
            r: Replies {
                rcpts: vec![None; n],
                ..Replies::default()
            },
            stage,
            probe,
        });
        if body == Body::Bdat && !probe {
            let i = self.flights.len() - 1;
            if let Err(f) = self.write_bdat(s, i) {
                return Err(self.broken(f));
            }
        }
        Ok(())
    }

    /// Runs the window until a transaction finishes ([`Event::Finished`]),
    /// or, when `more` (the caller has more transactions), until another
    /// one may be pushed ([`Event::Ready`]): writes what the replies allow,
    /// reads replies. [`Event::Idle`] when nothing is in flight.
    pub fn step<S: Wire>(
        &mut self,
        s: &mut Session<S>,
        more: bool,
    ) -> std::result::Result<Event<P>, Broken<P>> {
        loop {
            if let Some(f) = self.done.pop_front() {
                return Ok(Event::Finished(f));
            }
            if let Err(f) = self.write_pending(s) {
                return Err(self.broken(f));
            }
            if let Some(f) = self.done.pop_front() {
                return Ok(Event::Finished(f));
            }
            if self.expect.is_empty() {
                if let Err(e) = self.flush(s) {
                    return Err(self.broken(e.into()));
                }
                return Ok(Event::Idle);
            }
            if more && self.can_push() {
                return Ok(Event::Ready);
            }
            if let Err(f) = self.read_one(s) {
                return Err(self.broken(f));
            }
        }
    }

    /// Writes buffered commands (and contents) out.
    pub fn flush<S: Wire>(&mut self, s: &mut Session<S>) -> Result<()> {
        self.write_out(s)
            .map_err(|e| Error::from_io(&e, "sending to the SMTP server"))
    }

    /// Writes the command buffer with the contents due between its parts,
    /// in one vectored write (more than one only when the socket takes
    /// less), and flushes. Everything is cleared, written or not.
    fn write_out<S: Wire>(&mut self, s: &mut Session<S>) -> std::io::Result<()> {
        if self.pieces.is_empty() {
            if self.out.is_empty() {
                return Ok(());
            }
            let r = s.conn.send(&self.out);
            self.out.clear();
            return r;
        }
        let empty = std::io::IoSlice::new(&[]);
        let mut parts = [empty; 2 * MAX_PIECES + 1];
        let mut n = 0;
        let mut at = 0;
        for piece in &self.pieces {
            let f = self
                .flights
                .iter()
                .find(|f| f.seq == piece.seq)
                .expect("content is written before its transaction can finish");
            if piece.at > at {
                parts[n] = std::io::IoSlice::new(&self.out[at..piece.at]);
                n += 1;
            }
            parts[n] = std::io::IoSlice::new(&f.p.data()[piece.from..piece.to]);
            n += 1;
            at = piece.at;
        }
        if self.out.len() > at {
            parts[n] = std::io::IoSlice::new(&self.out[at..]);
            n += 1;
        }
        let r = s.conn.send_vectored(&mut parts[..n]);
        self.pieces.clear();
        self.out.clear();
        r
    }

    /// Bytes buffered for the next write.
    fn pending(&self) -> usize {
        self.out.len() + self.pieces.iter().map(|p| p.to - p.from).sum::<usize>()
    }

    fn read_one<S: Wire>(&mut self, s: &mut Session<S>) -> std::result::Result<(), Failure> {
        self.flush(s)?;
        if s.conn.buffered() == 0 {
            s.conn.get_ref().before_wait();
        }
        let r = s.reply()?;
        self.apply(r)
    }

    /// Reads the replies that are already there (between the content
    /// chunks of transaction `writing`, whose final reply cannot be due yet).
    fn drain<S: Wire>(&mut self, s: &mut Session<S>, writing: u64) -> std::result::Result<(), Failure> {
        while self.expect.front().is_some_and(|&e| e != (writing, Want::Last))
            && (s.conn.buffered() > 0 || s.conn.get_ref().readable_now())
        {
            let r = s.reply()?;
            self.apply(r)?;
        }
        Ok(())
    }

    fn index(&self, seq: u64) -> usize {
        self.flights
            .iter()
            .position(|f| f.seq == seq)
            .expect("a reply is expected only for a transaction in flight")
    }

    /// Files one reply under the command it answers.
    fn apply(&mut self, r: Reply) -> std::result::Result<(), Failure> {
        // A reply after an end: the server lived through it.
        self.ended_ahead = false;
        let Some((seq, want)) = self.expect.pop_front() else {
            return Err(Failure::Io(Error::protocol(format!(
                "unexpected SMTP reply: {r}"
            ))));
        };
        let Some(i) = self.flights.iter().position(|f| f.seq == seq) else {
            return Err(Failure::Io(Error::protocol(format!(
                "unexpected SMTP reply: {r}"
            ))));
        };
        let closing = r.is_closing();
        let closing_error = closing.then(|| r.error("the server is closing the connection"));
        let f = &mut self.flights[i];
        let mut finish = false;
        match want {
            Want::Rset => {
                if !r.is_positive() && !closing {
                    return Err(Failure::Io(r.error("RSET")));
                }
            }
            Want::Mail => f.r.mail = Some(r),
            Want::Rcpt(k) => f.r.rcpts[k] = Some(r),
            Want::Data => {
                let go = r.code == 354;
                f.r.data = Some(r);
                if go {
                    if !f.p.live() {
                        return self.abandon(i);
                    }
                    if f.r.accepted_rcpts() == 0 || !f.r.mail.as_ref().is_some_and(Reply::is_positive) {
                        // DATA accepted though nothing else was: end it empty (RFC 2920 §3.1).
                        self.out.extend_from_slice(b".\r\n");
                        self.expect.push_front((seq, Want::EmptyDot));
                        f.stage = Stage::Written;
                    } else {
                        f.stage = Stage::SendContent;
                    }
                } else {
                    finish = true;
                }
            }
            Want::Last => {
                f.r.last = Some(r);
                finish = true;
            }
            Want::EmptyDot => finish = true,
        }
        if let Some(e) = closing_error {
            if finish {
                self.finish(i);
            }
            return Err(Failure::Closing(e));
        }
        if finish {
            self.finish(i);
        } else if want != Want::Rset {
            self.check_probe(i);
        }
        Ok(())
    }

    /// The probe flight got its envelope replies after the transaction
    /// before it ended: the server takes pipelined transactions.
    fn check_probe(&mut self, i: usize) {
        let f = &self.flights[i];
        if f.probe && i == 0 && f.r.mail.is_some() && f.r.rcpts.iter().all(Option::is_some) {
            self.probe_confirmed = true;
            self.mode = Mode::Stream;
            self.flights[0].probe = false;
        }
    }

    /// Takes flight `i` out of the window.
    fn take_flight(&mut self, i: usize) -> Flight<P> {
        let f = self.flights.remove(i).expect("in flight");
        self.flight_bytes -= f.p.len();
        f
    }

    fn abandon(&mut self, i: usize) -> std::result::Result<(), Failure> {
        let f = self.take_flight(i);
        self.expect.retain(|(s, _)| *s != f.seq);
        self.done.push_back(Finished {
            payload: f.p,
            replies: f.r,
            abandoned: true,
        });
        Ok(())
    }

    fn finish(&mut self, i: usize) {
        let f = self.take_flight(i);
        self.ended_ahead = i == 0 && !self.flights.is_empty();
        debug_assert!(!self.expect.iter().any(|(s, _)| *s == f.seq));
        if !f.r.delivered() {
            match self.flights.get_mut(i) {
                Some(next) => next.r.behind_failure = true,
                None => {
                    // The server may still be inside this transaction.
                    self.needs_rset = true;
                }
            }
        }
        self.done.push_back(Finished {
            payload: f.p,
            replies: f.r,
            abandoned: false,
        });
    }

    /// Content that the replies so far allow to be written.
    fn sync_rset<S: Wire>(&mut self, s: &mut Session<S>) {
        if self.needs_rset {
            self.needs_rset = false;
            s.need_rset = true;
        }
    }

    /// The oldest transaction in flight (the one whose reply comes next).
    pub fn oldest(&self) -> Option<&P> {
        self.flights.front().map(|f| &f.p)
    }

    fn write_pending<S: Wire>(&mut self, s: &mut Session<S>) -> std::result::Result<(), Failure> {
        self.sync_rset(s);
        let Some(i) = self
            .flights
            .iter()
            .position(|f| matches!(f.stage, Stage::SendContent | Stage::HoldContent))
        else {
            return Ok(());
        };
        match self.flights[i].stage {
            Stage::SendContent => self.write_data(s, i),
            Stage::HoldContent if i == 0 && self.probe_confirmed => {
                let f = &self.flights[0];
                if f.r.envelope_refused() || !f.p.live() {
                    // Nothing to deliver: no content, and a BDAT with no
                    // chunk cannot be sent; the server needs an RSET.
                    let f = self.take_flight(0);
                    s.need_rset = true;
                    self.done.push_back(Finished {
                        payload: f.p,
                        replies: f.r,
                        abandoned: false,
                    });
                    return Ok(());
                }
                self.write_bdat(s, 0)
            }
            _ => Ok(()),
        }
    }

    /// `BDAT n LAST` and the content, unchanged.
    fn write_bdat<S: Wire>(&mut self, s: &mut Session<S>, i: usize) -> std::result::Result<(), Failure> {
        let seq = self.flights[i].seq;
        let len = self.flights[i].p.len();
        let start = self.out.len();
        Command::Bdat { len, last: true }.write_to(&mut self.out);
        s.trace_out(&self.out[start..]);
        self.expect.push_back((seq, Want::Last));
        self.flights[i].stage = Stage::Written;
        self.flights[i].r.content_sent = true;
        self.write_unchanged(s, seq, b"")
    }

    /// DATA's content, dot-stuffed, and the final dot.
    fn write_data<S: Wire>(&mut self, s: &mut Session<S>, i: usize) -> std::result::Result<(), Failure> {
        let seq = self.flights[i].seq;
        self.flights[i].stage = Stage::Written;
        self.flights[i].r.content_sent = true;
        self.expect.push_back((seq, Want::Last));
        if self.flights[i].p.verbatim() {
            // Only the terminator is added (and the line end the
            // content lacks, as the dot-stuffer would).
            let (len, tail) = (self.flights[i].p.len(), self.flights[i].p.tail());
            let end: &'static [u8] = if len == 0 || tail.ends_with(b"\r\n") {
                b".\r\n"
            } else if tail.ends_with(b"\r") {
                b"\n.\r\n"
            } else {
                b"\r\n.\r\n"
            };
            return self.write_unchanged(s, seq, end);
        }
        let stuffer = std::cell::RefCell::new(DotStuffer::default());
        self.write_content(
            s,
            seq,
            |data, out, _| stuffer.borrow_mut().encode(data, out),
            |out| stuffer.borrow_mut().finish(out),
        )
    }

    /// Writes flight `seq`'s content as it is, then `end`, from the
    /// message's own buffer: each chunk goes out in one vectored write
    /// with what is buffered before it, replies are read between chunks,
    /// and the last chunk stays pending so that what follows can share
    /// its write.
    fn write_unchanged<S: Wire>(
        &mut self,
        s: &mut Session<S>,
        seq: u64,
        end: &[u8],
    ) -> std::result::Result<(), Failure> {
        let i = self.index(seq);
        let total = self.flights[i].p.len();
        if s.tracing() {
            s.trace_out(format!("<message, {total} bytes>\r\n").as_bytes());
        }
        if self.pieces.len() == MAX_PIECES {
            self.write_out(s)
                .map_err(|e| Error::from_io(&e, "sending the message"))?;
        }
        let mut done = 0usize;
        while total - done > WRITE_CHUNK {
            // A piece is written only once its bytes exist (see `write_out`).
            self.flights[self.index(seq)].p.wait_data(done + WRITE_CHUNK)?;
            self.pieces.push(Piece {
                at: self.out.len(),
                seq,
                from: done,
                to: done + WRITE_CHUNK,
            });
            done += WRITE_CHUNK;
            self.write_out(s)
                .map_err(|e| Error::from_io(&e, "sending the message"))?;
            let i = self.index(seq);
            self.flights[i].p.progress(done as u64, total as u64);
            self.drain(s, seq)?;
        }
        if done < total {
            self.flights[self.index(seq)].p.wait_data(total)?;
            self.pieces.push(Piece {
                at: self.out.len(),
                seq,
                from: done,
                to: total,
            });
        }
        self.out.extend_from_slice(end);
        let i = self.index(seq);
        self.flights[i].p.progress(total as u64, total as u64);
        if self.pending() >= WRITE_CHUNK || self.pieces.len() == MAX_PIECES {
            self.flush(s)?;
        }
        Ok(())
    }

    /// Writes flight `seq`'s content through `encode` in chunks, reading the
    /// replies that arrive meanwhile; `end` adds the trailer. The last piece
    /// stays buffered, so what follows can share its segment.
    fn write_content<S: Wire>(
        &mut self,
        s: &mut Session<S>,
        seq: u64,
        encode: impl Fn(&[u8], &mut Vec<u8>, usize),
        end: impl Fn(&mut Vec<u8>),
    ) -> std::result::Result<(), Failure> {
        let i = self.index(seq);
        let total = self.flights[i].p.len();
        if s.tracing() {
            s.trace_out(format!("<message, {total} bytes>\r\n").as_bytes());
        }
        let mut done = 0usize;
        while done < total {
            let i = self.index(seq);
            let n = (total - done).min(WRITE_CHUNK);
            self.flights[i].p.wait_data(done + n)?;
            let data = self.flights[i].p.data();
            encode(&data[done..done + n], &mut self.out, done);
            done += n;
            if done < total {
                self.write_out(s)
                    .map_err(|e| Error::from_io(&e, "sending the message"))?;
                let i = self.index(seq);
                self.flights[i].p.progress(done as u64, total as u64);
                self.drain(s, seq)?;
            }
        }
        end(&mut self.out);
        let i = self.index(seq);
        self.flights[i].p.progress(total as u64, total as u64);
        if self.pending() >= WRITE_CHUNK {
            self.flush(s)?;
        }
        Ok(())
    }

    /// Gives up the connection: everything in flight, as after a failure.
    pub fn abandon_all(&mut self, error: Error) -> Broken<P> {
        self.broken(Failure::Io(error))
    }

    fn broken(&mut self, f: Failure) -> Broken<P> {
        let (error, closing) = match f {
            Failure::Io(e) => (e, false),
            Failure::Closing(e) => (e, true),
        };
        // The pattern of a server that breaks on a transaction pipelined
        // behind another's end: it died before the earlier one's final
        // reply, or right after it with nothing answered since (Dovecot 2.3
        // sometimes sends that 250 before it aborts).
        let ended_ahead = self.ended_ahead && !self.flights.is_empty();
        let during_probe = (self.flights.iter().any(|f| f.probe)
            && self.flights.front().is_some_and(|f| !f.probe))
            || (ended_ahead && self.flights.front().is_some_and(|f| f.probe));
        let behind_an_end = during_probe || self.flights.len() >= 2 || ended_ahead;
        self.expect.clear();
        self.out.clear();
        self.pieces.clear();
        Broken {
            error,
            closing,
            during_probe,
            behind_an_end,
            finished: self.done.drain(..).collect(),
            in_flight: {
                self.flight_bytes = 0;
                self.flights.drain(..).map(|f| (f.p, f.r)).collect()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Tracer;
    use crate::net::mem::MemStream;
    use crate::status::Status;
    use std::cell::Cell;

    #[derive(Debug)]
    struct Msg {
        rcpts: Vec<String>,
        data: Vec<u8>,
        body: Body,
        live: Cell<bool>,
        verbatim: bool,
    }

    impl Payload for Msg {
        fn from(&self) -> &str {
            "a@example.org"
        }
        fn params(&self) -> &str {
            ""
        }
        fn body(&self) -> Body {
            self.body
        }
        fn rcpt_count(&self) -> usize {
            self.rcpts.len()
        }
        fn rcpt(&self, k: usize) -> &str {
            &self.rcpts[k]
        }
        fn data(&self) -> &[u8] {
            &self.data
        }
        fn live(&self) -> bool {
            self.live.get()
        }
        fn verbatim(&self) -> bool {
            self.verbatim
        }
    }

    fn msg(body: Body, rcpts: usize, data: &str) -> Msg {
        Msg {
            rcpts: (1..=rcpts).map(|i| format!("r{i}@example.org")).collect(),
            data: data.as_bytes().to_vec(),
            body,
            live: Cell::new(true),
            verbatim: false,
        }
    }

    /// A server's canned replies, handed out at most `step` bytes per read.
    fn session(replies: &str, step: usize) -> Session<MemStream> {
        Session::new(MemStream::chunked(replies, step), Tracer::default())
    }

    fn written(s: &Session<MemStream>) -> String {
        s.conn.get_ref().written()
    }

    /// What finished before a connection broke, and the break.
    type Dropped = (Vec<Finished<Msg>>, Broken<Msg>);

    /// Pushes every message as soon as the window allows and runs it dry,
    /// as the SMTP driver does.
    fn run(
        w: &mut Window<Msg>,
        s: &mut Session<MemStream>,
        msgs: Vec<Msg>,
    ) -> std::result::Result<Vec<Finished<Msg>>, Dropped> {
        let mut queue: VecDeque<Msg> = msgs.into();
        let mut done = Vec::new();
        loop {
            while w.can_push() {
                let Some(m) = queue.pop_front() else { break };
                if let Err(b) = w.push(s, m) {
                    return Err((done, b));
                }
            }
            match w.step(s, !queue.is_empty()) {
                Ok(Event::Finished(f)) => done.push(f),
                Ok(Event::Ready) => {}
                Ok(Event::Idle) => return Ok(done),
                Err(b) => return Err((done, b)),
            }
        }
    }

    const OK3: &str = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n";

    #[test]
    fn bdat_transactions_stream_before_any_reply() {
        // Replies handed out 3 bytes at a time (partial input).
        let mut s = session(&OK3.repeat(3), 3);
        let mut w = Window::new(Mode::Stream);
        let mut pushed = 0;
        for data in ["one\r\n", "two\r\n", "three\r\n"] {
            assert!(w.can_push());
            w.push(&mut s, msg(Body::Bdat, 1, data)).unwrap();
            pushed += 1;
        }
        assert_eq!(pushed, 3);
        // Nothing was read: all three are on the wire (or in the buffer) at once.
        assert_eq!(s.conn.get_ref().position(), 0);
        let done = run(&mut w, &mut s, vec![]).unwrap();
        assert_eq!(done.len(), 3);
        assert!(done
            .iter()
            .all(|f| f.replies.delivered() && f.replies.content_sent));
        let one = "MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.org>\r\nBDAT 5 LAST\r\none\r\n";
        assert!(written(&s).starts_with(one), "{}", written(&s));
        assert!(written(&s).ends_with("BDAT 7 LAST\r\nthree\r\n"));
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn data_waits_for_354_and_the_next_envelope_follows_the_dot() {
        let replies = "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n".to_string() + OK3;
        let mut s = session(&replies, 1000);
        let mut w = Window::new(Mode::Stream);
        let done = run(
            &mut w,
            &mut s,
            vec![msg(Body::Data, 1, ".dot\r\nx"), msg(Body::Bdat, 1, "bare\nlf")],
        )
        .unwrap();
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|f| f.replies.delivered()), "{done:?}");
        assert_eq!(
            written(&s),
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.org>\r\nDATA\r\n\
             ..dot\r\nx\r\n.\r\n\
             MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.org>\r\nBDAT 7 LAST\r\nbare\nlf"
        );
    }

    #[test]
    fn refusals_are_filed_under_their_transactions_and_rset_follows() {
        // 1: MAIL refused; 2: every RCPT refused (BDAT refused); 3: one of two RCPTs refused.
        let replies = "550 5.1.0 no\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n\
                       250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n\
                       250 ok\r\n250 ok\r\n452 4.5.3 too many\r\n250 queued\r\n";
        let mut s = session(replies, 7);
        let mut w = Window::new(Mode::Stream);
        let done = run(
            &mut w,
            &mut s,
            vec![
                msg(Body::Bdat, 1, "a"),
                msg(Body::Bdat, 1, "b"),
                msg(Body::Bdat, 2, "c"),
            ],
        )
        .unwrap();
        assert_eq!(done.len(), 3);
        assert_eq!(done[0].replies.mail.as_ref().unwrap().code, 550);
        assert!(done[0].replies.envelope_refused() && !done[0].replies.delivered());
        assert!(done[1].replies.envelope_refused());
        assert_eq!(done[1].replies.last.as_ref().unwrap().code, 554);
        assert!(done[1].replies.behind_failure && done[2].replies.behind_failure);
        assert!(done[2].replies.delivered());
        assert_eq!(done[2].replies.accepted_rcpts(), 1);
        assert_eq!(done[2].replies.rcpts[1].as_ref().unwrap().code, 452);
        assert!(!s.need_rset, "the last transaction succeeded");

        // A failed transaction with nothing behind it: RSET before the next MAIL.
        let mut s = session(
            "250 ok\r\n550 no\r\n554 no\r\n250 reset\r\n250 ok\r\n250 ok\r\n250 q\r\n",
            1000,
        );
        let mut w = Window::new(Mode::Serial);
        let done = run(
            &mut w,
            &mut s,
            vec![msg(Body::Bdat, 1, "a"), msg(Body::Bdat, 1, "b")],
        )
        .unwrap();
        assert!(!done[0].replies.delivered() && done[1].replies.delivered());
        assert!(
            written(&s).contains("BDAT 1 LAST\r\naRSET\r\nMAIL"),
            "{}",
            written(&s)
        );
    }

    #[test]
    fn a_dropped_connection_says_which_content_went_out() {
        // The first transaction is answered; the second only up to its RCPT.
        let replies = OK3.to_string() + "250 ok\r\n250 ok\r\n";
        let mut s = session(&replies, 1000);
        let mut w = Window::new(Mode::Stream);
        let (done, b) = run(
            &mut w,
            &mut s,
            vec![
                msg(Body::Bdat, 1, "a"),
                msg(Body::Bdat, 1, "b"),
                msg(Body::Data, 1, "c"),
            ],
        )
        .unwrap_err();
        assert_eq!(b.error.status, Status::Io);
        assert!(!b.closing);
        let finished: Vec<_> = done.iter().chain(&b.finished).collect();
        assert_eq!(finished.len(), 1);
        assert!(finished[0].replies.delivered());
        // The BDAT one went out whole; the DATA one never got its 354.
        assert_eq!(b.in_flight.len(), 2);
        assert!(b.in_flight[0].1.content_sent);
        assert_eq!(b.in_flight[0].1.accepted_rcpts(), 1);
        assert!(!b.in_flight[1].1.content_sent);
    }

    #[test]
    fn a_421_means_nothing_after_it_was_accepted() {
        let replies = OK3.to_string() + "421 4.3.2 shutting down\r\n";
        let mut s = session(&replies, 1000);
        let mut w = Window::new(Mode::Stream);
        let (done, b) = run(
            &mut w,
            &mut s,
            vec![msg(Body::Bdat, 1, "a"), msg(Body::Bdat, 1, "b")],
        )
        .unwrap_err();
        assert!(b.closing);
        assert_eq!((b.error.status, b.error.reply_code), (Status::Transient, 421));
        assert_eq!(done.len() + b.finished.len(), 1);
        assert_eq!(b.in_flight.len(), 1);
    }

    #[test]
    fn garbage_and_unasked_replies_break_the_window() {
        let mut s = session("250 ok\r\nnot smtp at all\r\n", 1000);
        let mut w = Window::new(Mode::Stream);
        let (_, b) = run(&mut w, &mut s, vec![msg(Body::Bdat, 1, "a")]).unwrap_err();
        assert_eq!(b.error.status, Status::Protocol);
        assert!(b.in_flight[0].1.content_sent);

        // A reply nobody asked for is not taken for the next command's.
        let mut s = session(&(OK3.to_string() + "250 extra\r\n"), 1);
        let mut w = Window::new(Mode::Stream);
        w.push(&mut s, msg(Body::Bdat, 1, "a")).unwrap();
        assert!(matches!(w.step(&mut s, false), Ok(Event::Finished(_))));
        assert!(matches!(w.step(&mut s, false), Ok(Event::Idle)));
        assert_eq!(s.conn.get_ref().position(), OK3.len());
        assert!(
            s.conn.get_ref().readable_now(),
            "left for the driver to see before reuse"
        );
    }

    #[test]
    fn serial_mode_waits_for_each_final_reply() {
        let mut s = session(&OK3.repeat(2), 1);
        let mut w = Window::new(Mode::Serial);
        w.push(&mut s, msg(Body::Bdat, 1, "a")).unwrap();
        assert!(!w.can_push());
        assert!(matches!(w.step(&mut s, true), Ok(Event::Finished(_))));
        assert!(w.can_push());
        w.push(&mut s, msg(Body::Bdat, 1, "b")).unwrap();
        // The first one's replies were all read before the second was written.
        assert_eq!(s.conn.get_ref().position(), OK3.len());
    }

    #[test]
    fn a_probe_sends_only_the_envelope_early_then_streams() {
        let mut s = session(&OK3.repeat(4), 1000);
        let mut w = Window::new(Mode::Probe);
        w.push(&mut s, msg(Body::Bdat, 1, "first")).unwrap();
        assert!(w.can_push());
        w.push(&mut s, msg(Body::Bdat, 1, "second")).unwrap();
        assert!(!w.can_push());
        w.flush(&mut s).unwrap();
        assert!(
            written(&s).ends_with("firstMAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.org>\r\n"),
            "only the envelope behind the first: {}",
            written(&s)
        );
        let done = run(
            &mut w,
            &mut s,
            vec![msg(Body::Bdat, 1, "3"), msg(Body::Bdat, 1, "4")],
        )
        .unwrap();
        assert_eq!(done.len(), 4);
        assert!(w.probe_confirmed());
        assert_eq!(w.mode(), Mode::Stream);
        assert!(written(&s).contains("RCPT TO:<r1@example.org>\r\nBDAT 6 LAST\r\nsecond"));

        // The server dies before the first one's final reply, with the
        // probe's envelope behind it: the failure says so.
        let mut s = session("250 ok\r\n250 ok\r\n", 1000);
        let mut w = Window::new(Mode::Probe);
        let two = vec![msg(Body::Bdat, 1, "a"), msg(Body::Bdat, 1, "b")];
        let (_, b) = run(&mut w, &mut s, two).unwrap_err();
        assert!(b.during_probe);
        assert!(b.behind_an_end);
        assert_eq!(b.in_flight.len(), 2);
        assert!(b.in_flight[0].1.content_sent);
        assert!(
            !b.in_flight[1].1.content_sent,
            "the probe's content never went out"
        );

        // It dies right after answering the first one, with the probe's
        // envelope behind it and nothing answered since (Dovecot 2.3 may
        // send that 250 before it aborts): that pattern too.
        let mut s = session(OK3, 1000);
        let mut w = Window::new(Mode::Probe);
        let two = vec![msg(Body::Bdat, 1, "a"), msg(Body::Bdat, 1, "b")];
        let (done, b) = run(&mut w, &mut s, two).unwrap_err();
        assert_eq!(done.len() + b.finished.len(), 1);
        assert!(b.during_probe);
        assert!(
            b.behind_an_end,
            "it died right after the end, the next envelope pending"
        );
        assert!(!b.in_flight[0].1.content_sent);

        // It answers the next one's MAIL too before it dies (a connection
        // limit, say): it lived through the end, so not that pattern.
        let mut s = session(&format!("{OK3}250 ok\r\n"), 1000);
        let mut w = Window::new(Mode::Probe);
        let two = vec![msg(Body::Bdat, 1, "a"), msg(Body::Bdat, 1, "b")];
        let (_, b) = run(&mut w, &mut s, two).unwrap_err();
        assert!(!b.during_probe);
        assert!(
            !b.behind_an_end,
            "only one transaction was left in flight, answered since"
        );

        // Streaming, the server dies with two transactions in flight, the
        // second pipelined behind the first's end: the failure says so too.
        let mut s = session("250 ok\r\n250 ok\r\n", 1000);
        let mut w = Window::new(Mode::Stream);
        let two = vec![msg(Body::Bdat, 1, "a"), msg(Body::Bdat, 1, "b")];
        let (_, b) = run(&mut w, &mut s, two).unwrap_err();
        assert!(!b.during_probe);
        assert!(b.behind_an_end);
    }

    #[test]
    fn cancelled_at_354_abandons_and_empty_data_gets_an_empty_dot() {
        let m = msg(Body::Data, 1, "x");
        m.live.set(false);
        let mut s = session("250 ok\r\n250 ok\r\n354 go\r\n", 1000);
        let mut w = Window::new(Mode::Stream);
        let done = run(&mut w, &mut s, vec![m]).unwrap();
        assert!(done[0].abandoned && !done[0].replies.content_sent);

        // DATA accepted though no recipient was: ".", and its reply is read.
        let mut s = session("250 ok\r\n550 no\r\n354 go\r\n554 no valid recipients\r\n", 1000);
        let mut w = Window::new(Mode::Stream);
        let done = run(&mut w, &mut s, vec![msg(Body::Data, 1, "x")]).unwrap();
        assert!(!done[0].replies.content_sent);
        assert!(written(&s).ends_with("DATA\r\n.\r\n"));
        assert!(!s.conn.get_ref().readable_now(), "every reply was read");
    }

    #[test]
    fn large_content_is_written_in_chunks_reading_replies_between() {
        let big = "x".repeat(3 * WRITE_CHUNK + 10);
        let mut s = session(&OK3.repeat(2), 1000);
        let mut w = Window::new(Mode::Stream);
        w.push(&mut s, msg(Body::Bdat, 1, "small")).unwrap();
        // The second's content is written in chunks; the first's replies are
        // taken between them.
        w.push(&mut s, msg(Body::Bdat, 1, &big)).unwrap();
        assert_eq!(
            w.in_flight(),
            1,
            "the first finished while the second was written"
        );
        let done = run(&mut w, &mut s, vec![]).unwrap();
        assert_eq!(done.len(), 2);
        assert!(written(&s).ends_with(&big));

        // A write that fails part way: the content counts as sent.
        let mut s = session("", 1000);
        s.conn.get_mut().write_limit = Some(WRITE_CHUNK);
        let mut w = Window::new(Mode::Stream);
        let b = w.push(&mut s, msg(Body::Bdat, 1, &big)).unwrap_err();
        assert!(b.in_flight[0].1.content_sent);
        assert_eq!(b.error.status, Status::Io);
    }

    #[test]
    fn unchanged_contents_go_out_exact_from_their_own_buffers() {
        // DATA, verbatim: large (several chunks), without a final CRLF, ending
        // in CRLF, and empty; the same with the dot-stuffer gives the same bytes.
        let big = "line of text\r\n".repeat(WRITE_CHUNK / 7) + "no end";
        let datas = [big.as_str(), "ends\r\n", "", "x"];
        let replies = "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n".repeat(datas.len());
        let mut outputs = Vec::new();
        for verbatim in [true, false] {
            let mut s = session(&replies, 1000);
            let mut w = Window::new(Mode::Stream);
            let msgs = datas
                .iter()
                .map(|d| Msg {
                    verbatim,
                    ..msg(Body::Data, 1, d)
                })
                .collect();
            let done = run(&mut w, &mut s, msgs).unwrap();
            assert!(done.iter().all(|f| f.replies.delivered()));
            outputs.push(written(&s));
        }
        assert_eq!(outputs[0], outputs[1]);
        let one = "MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.org>\r\nDATA\r\n";
        let expect = format!("{one}{big}\r\n.\r\n{one}ends\r\n.\r\n{one}.\r\n{one}x\r\n.\r\n");
        assert_eq!(outputs[0], expect);

        // BDAT: more transactions streamed than one write gathers contents.
        let n = 3 * MAX_PIECES + 1;
        let mut s = session(&OK3.repeat(n), 1000);
        let mut w = Window::new(Mode::Stream);
        let msgs = (0..n).map(|i| msg(Body::Bdat, 1, &format!("m{i}\n"))).collect();
        let done = run(&mut w, &mut s, msgs).unwrap();
        assert_eq!(done.len(), n);
        let expect: String = (0..n)
            .map(|i| {
                let d = format!("m{i}\n");
                format!(
                    "MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.org>\r\nBDAT {} LAST\r\n{d}",
                    d.len()
                )
            })
            .collect();
        assert_eq!(written(&s), expect);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut s = session("", 1000);
        let mut w = Window::new(Mode::Stream).with_max_transactions(4);
        for _ in 0..4 {
            assert!(w.can_push());
            w.push(&mut s, msg(Body::Bdat, 1, "a")).unwrap();
        }
        assert!(!w.can_push());
        let mut s = session("", 1000);
        let mut w = Window::new(Mode::Stream);
        w.push(&mut s, msg(Body::Bdat, MAX_REPLIES, "a")).unwrap();
        assert!(!w.can_push(), "too many replies outstanding");
        let mut s = session("", 1000);
        let mut w = Window::new(Mode::Stream);
        let big = "x".repeat(MAX_BYTES_IN_FLIGHT / 2);
        w.push(&mut s, msg(Body::Bdat, 1, &big)).unwrap();
        assert!(w.can_push());
        w.push(&mut s, msg(Body::Bdat, 1, &big)).unwrap();
        assert!(!w.can_push(), "too many bytes unanswered");
    }
}
