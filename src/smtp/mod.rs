//! herald's SMTP client: one session per pooled connection, sending the
//! worker's messages with PIPELINING (RFC 2920) when the server offers it:
//! MAIL, every RCPT and DATA go out as one group, and the next message's
//! group goes out right behind the previous message's final dot, so each
//! message costs one round trip. CHUNKING (RFC 3030) carries large or binary
//! messages unchanged.
//!
//! Outcomes stay exact: replies are matched to commands strictly in order;
//! a message is reported sent only when its final 250 arrived; after a failed
//! transaction the session is reset (RSET) or replaced; a message is retried
//! on a new connection only if no byte of its content was sent.

pub mod codec;
pub mod reply;
pub mod session;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::engine::CancelMode;
use crate::log::{DEBUG, INFO, WARN};
use crate::net::{ConnCtl, Stream};
use crate::options::Options;
use crate::pool::{Driver, Ticket, WorkerCtx};
use crate::result::{field, ResultData, ResultItem, Success};
use crate::status::{Error, Result, Status};
use crate::work::SendJob;

use codec::{DotStuffer, Needs};
use reply::Reply;
use session::{Extensions, Session};

/// Messages at least this large go by BDAT when the server offers CHUNKING.
const BDAT_THRESHOLD: usize = 64 * 1024;
/// Body bytes encoded per write (and per progress report).
const WRITE_CHUNK: usize = 64 * 1024;

/// The SMTP protocol engine of one pooled connection.
pub struct SmtpDriver {
    opts: Arc<Options>,
    tls: Option<native_tls::TlsConnector>,
    session: Option<Session<Stream>>,
    /// Messages this worker took but has not started, to run before taking more.
    held: VecDeque<Ticket>,
}

/// How a message goes over this session.
struct Plan {
    bdat: bool,
    params: String,
}

/// The replies to a message's envelope group.
struct EnvelopeReplies {
    mail: Reply,
    rcpts: Vec<Reply>,
    /// The reply to DATA, or to BDAT ... LAST (the final one).
    data: Option<Reply>,
}

/// Where a failed exchange left the message.
enum Failure {
    /// Nothing of the content was sent; safe to retry on a new connection.
    BeforeContent(Error),
    /// Content (or the whole message) was sent; the outcome is unknown.
    AfterContent(Error),
}

/// The message of an op. An SMTP client only runs send ops (checked at
/// submit); anything else reads as a message without recipients, which
/// `plan` refuses before a byte is sent.
fn job(t: &Ticket) -> &SendJob {
    static NONE: SendJob = SendJob {
        from: String::new(),
        rcpts: Vec::new(),
        data: Vec::new(),
        needs: Needs::NONE,
    };
    t.work.as_send().unwrap_or(&NONE)
}

/// Is this error the connection going away (so the session is unusable)?
fn connection_lost(e: &Error) -> bool {
    e.is_connection_failure() || e.reply_code == 421
}

impl SmtpDriver {
    pub fn new(opts: Arc<Options>) -> Self {
        SmtpDriver {
            opts,
            tls: None,
            session: None,
            held: VecDeque::new(),
        }
    }

    fn open(&mut self, w: &mut WorkerCtx) -> Result<()> {
        let ctl: Arc<ConnCtl> = w.new_ctl();
        let s = Session::open(&self.opts, &mut self.tls, &ctl, w.tracer())?;
        w.log(INFO, || {
            format!(
                "connected to {}:{}{}{}",
                self.opts.host(),
                self.opts.port(),
                if s.tls { " (TLS)" } else { "" },
                if s.ext.pipelining { " with PIPELINING" } else { "" }
            )
        });
        self.session = Some(s);
        Ok(())
    }

    fn drop_session(&mut self) {
        self.session = None;
    }

    /// Checks a message against the session's extensions before any of it is sent.
    fn plan(ext: &Extensions, j: &SendJob) -> Result<Plan> {
        if j.rcpts.is_empty() {
            return Err(Error::invalid("the message has no recipients"));
        }
        let needs = j.needs;
        if let Some(max) = ext.size {
            if max > 0 && j.data.len() as u64 > max {
                return Err(Error::new(
                    Status::Limit,
                    format!(
                        "the message is {} bytes; the server accepts at most {max} (SIZE)",
                        j.data.len()
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
        let bdat = ext.chunking && (needs.binary || j.data.len() >= BDAT_THRESHOLD);
        if needs.eight_bit && !ext.eightbitmime && !(bdat && ext.binarymime) {
            return Err(Error::new(
                Status::Unsupported,
                "the message has 8-bit bytes and the server does not offer 8BITMIME",
            ));
        }
        let mut params = String::new();
        if ext.size.is_some() {
            params.push_str(&format!(" SIZE={}", j.data.len()));
        }
        if bdat && needs.binary && ext.binarymime {
            params.push_str(" BODY=BINARYMIME");
        } else if needs.eight_bit {
            params.push_str(" BODY=8BITMIME");
        }
        if needs.smtputf8 {
            params.push_str(" SMTPUTF8");
        }
        Ok(Plan { bdat, params })
    }

    /// The envelope commands of a message (MAIL, RCPT..., and DATA unless BDAT).
    fn envelope_commands(out: &mut Vec<u8>, j: &SendJob, plan: &Plan) {
        out.extend_from_slice(format!("MAIL FROM:<{}>{}\r\n", j.from, plan.params).as_bytes());
        for r in &j.rcpts {
            out.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
        }
        if !plan.bdat {
            out.extend_from_slice(b"DATA\r\n");
        }
    }

    /// Writes a BDAT chunk header and the message bytes unchanged.
    fn write_bdat(s: &mut Session<Stream>, t: &Ticket, mut head: Vec<u8>) -> Result<()> {
        let data = &job(t).data;
        head.extend_from_slice(format!("BDAT {} LAST\r\n", data.len()).as_bytes());
        s.trace_out(&head);
        let total = data.len() as u64;
        let mut sent = 0usize;
        let mut write = |bytes: &[u8]| -> Result<()> {
            s.conn
                .write_all(bytes)
                .map_err(|e| Error::from_io(&e, "sending the message"))
        };
        write(&head)?;
        for chunk in data.chunks(WRITE_CHUNK) {
            write(chunk)?;
            sent += chunk.len();
            t.progress(sent as u64, total);
        }
        if data.is_empty() {
            t.progress(0, 0);
        }
        s.conn
            .flush()
            .map_err(|e| Error::from_io(&e, "sending the message"))
    }

    /// Sends the envelope (unless already on the wire) and reads its replies.
    /// Pipelined: one write, then the replies in order. Otherwise one
    /// command at a time, stopping early when MAIL or every RCPT fails.
    fn envelope(
        s: &mut Session<Stream>,
        t: &Ticket,
        plan: &Plan,
        on_wire: bool,
    ) -> std::result::Result<EnvelopeReplies, Failure> {
        let j = job(t);
        let before = Failure::BeforeContent;
        if s.ext.pipelining {
            if !on_wire {
                let mut out = Vec::with_capacity(64 + 40 * j.rcpts.len());
                if s.need_rset {
                    out.extend_from_slice(b"RSET\r\n");
                }
                Self::envelope_commands(&mut out, j, plan);
                if plan.bdat {
                    Self::write_bdat(s, t, out).map_err(Failure::AfterContent)?;
                } else {
                    s.send(&out).map_err(before)?;
                }
            }
            if s.need_rset && !on_wire {
                let r = s.reply().map_err(before)?;
                if !r.is_positive() {
                    return Err(Failure::BeforeContent(r.error("RSET")));
                }
                s.need_rset = false;
            }
            let mail = s.reply().map_err(before)?;
            let mut rcpts = Vec::with_capacity(j.rcpts.len());
            for _ in &j.rcpts {
                rcpts.push(s.reply().map_err(before)?);
            }
            let data = if plan.bdat {
                Some(s.reply().map_err(Failure::AfterContent)?)
            } else {
                Some(s.reply().map_err(before)?)
            };
            return Ok(EnvelopeReplies { mail, rcpts, data });
        }

        if s.need_rset {
            let r = s.command("RSET").map_err(before)?;
            if !r.is_positive() {
                return Err(Failure::BeforeContent(r.error("RSET")));
            }
            s.need_rset = false;
        }
        let mail = s
            .command(&format!("MAIL FROM:<{}>{}", j.from, plan.params))
            .map_err(before)?;
        let mut env = EnvelopeReplies {
            mail,
            rcpts: Vec::new(),
            data: None,
        };
        if !env.mail.is_positive() {
            return Ok(env);
        }
        for r in &j.rcpts {
            let reply = s.command(&format!("RCPT TO:<{r}>")).map_err(before)?;
            let closing = reply.code == 421;
            env.rcpts.push(reply);
            if closing {
                return Ok(env);
            }
        }
        if !env.rcpts.iter().any(Reply::is_positive) {
            return Ok(env);
        }
        env.data = Some(if plan.bdat {
            Self::write_bdat(s, t, Vec::new()).map_err(Failure::AfterContent)?;
            s.reply().map_err(Failure::AfterContent)?
        } else {
            s.command("DATA").map_err(before)?
        });
        Ok(env)
    }

    /// Sends a message's content and final dot, with the next message's
    /// envelope right behind it when pipelining, and reads the dot's reply.
    fn content(
        s: &mut Session<Stream>,
        t: &Ticket,
        next: Option<(&Ticket, &Plan)>,
    ) -> std::result::Result<Reply, Failure> {
        let data = &job(t).data;
        let total = data.len() as u64;
        let mut stuffer = DotStuffer::default();
        // Verbatim: the message goes out from its own buffer, not copied.
        let verbatim = job(t).needs.verbatim();
        let mut out = Vec::with_capacity(if verbatim {
            1024
        } else {
            WRITE_CHUNK + WRITE_CHUNK / 32 + 1024
        });
        let mut last: &[u8] = &[];
        let mut done = 0usize;
        s.trace_out(format!("<message, {total} bytes>\r\n").as_bytes());
        for chunk in data.chunks(WRITE_CHUNK) {
            if verbatim {
                stuffer.skip(chunk);
                last = chunk;
            } else {
                stuffer.encode(chunk, &mut out);
            }
            done += chunk.len();
            if done < data.len() {
                s.conn
                    .write_all(if verbatim { chunk } else { &out })
                    .map_err(|e| Failure::AfterContent(Error::from_io(&e, "sending the message")))?;
                out.clear();
                last = &[];
                t.progress(done as u64, total);
            }
        }
        stuffer.finish(&mut out);
        let body_end = out.len();
        if let Some((n, plan)) = next {
            Self::envelope_commands(&mut out, job(n), plan);
            s.trace_out(&out[body_end..]);
        }
        s.conn
            .send2(last, &out)
            .map_err(|e| Failure::AfterContent(Error::from_io(&e, "sending the message")))?;
        t.progress(total, total);
        s.reply().map_err(Failure::AfterContent)
    }

    /// The outcome of a transaction whose envelope was refused (no content sent).
    fn refused(env: &EnvelopeReplies, j: &SendJob) -> Error {
        if !env.mail.is_positive() {
            return env.mail.error("MAIL FROM refused");
        }
        if let Some(r) = env.rcpts.iter().find(|r| r.code == 421) {
            return r.error("the server is closing the connection");
        }
        if !env.rcpts.iter().any(Reply::is_positive) {
            let list: Vec<String> = j
                .rcpts
                .iter()
                .zip(&env.rcpts)
                .map(|(a, r)| format!("{a}: {r}"))
                .collect();
            let first = &env.rcpts[0];
            let mut e = first.error("");
            // Permanent only if every recipient was refused permanently.
            if env.rcpts.iter().any(|r| (400..500).contains(&r.code)) {
                e.status = Status::Transient;
            }
            e.detail = format!("every recipient was refused: {}", list.join("; "));
            return e;
        }
        match &env.data {
            Some(d) => d.error("DATA refused"),
            None => Error::protocol("no reply to DATA"),
        }
    }

    /// Success with the per-recipient result.
    fn accepted(final_reply: &Reply, env: &EnvelopeReplies, j: &SendJob) -> Success {
        let mut refused = Vec::new();
        let items = j
            .rcpts
            .iter()
            .zip(&env.rcpts)
            .map(|(a, r)| {
                if !r.is_positive() {
                    refused.push(format!("{a} ({r})"));
                }
                ResultItem::new(0)
                    .with_str(field::NAME, a)
                    .with_int(field::REPLY_CODE, r.code as u64)
                    .with_str(field::REPLY_TEXT, &r.text())
            })
            .collect();
        let mut detail = final_reply.to_string();
        if !refused.is_empty() {
            detail.push_str(&format!(
                "; accepted for {} of {} recipients, refused: {}",
                j.rcpts.len() - refused.len(),
                j.rcpts.len(),
                refused.join(", ")
            ));
        }
        Success::new(final_reply.code as i32, detail).with_result(ResultData::new(items))
    }

    /// Takes the next queued message that can be pipelined behind the
    /// current one; messages that fail their checks complete at once.
    fn next_pipelined(&mut self, w: &mut WorkerCtx) -> Option<(Ticket, Plan)> {
        let ext = &self.session.as_ref()?.ext;
        if !ext.pipelining {
            return None;
        }
        loop {
            let n = w.try_next()?;
            n.set_cancel_mode(CancelMode::Defer);
            match Self::plan(ext, job(&n)) {
                Ok(p) => return Some((n, p)),
                Err(e) => n.complete(Err(e)),
            }
        }
    }

    /// Runs one message. Returns the message to run next, and whether its
    /// envelope is already on the wire.
    fn step(&mut self, t: Ticket, on_wire: bool, w: &mut WorkerCtx) -> Option<(Ticket, bool)> {
        if self.session.is_none() {
            if !t.is_live() {
                t.complete(Err(Error::cancelled()));
                return w.try_next().map(|n| (n, false));
            }
            if let Err(e) = self.open(w) {
                t.complete(Err(e));
                return None;
            }
        }
        t.set_cancel_mode(CancelMode::Abort);
        let s = self.session.as_mut().expect("opened above");
        if !on_wire && !t.is_live() {
            t.complete(Err(Error::cancelled()));
            return w.try_next().map(|n| (n, false));
        }
        let plan = match Self::plan(&s.ext, job(&t)) {
            Ok(p) => p,
            Err(e) => {
                t.complete(Err(e));
                return w.try_next().map(|n| (n, false));
            }
        };

        let env = match Self::envelope(s, &t, &plan, on_wire) {
            Ok(env) => env,
            Err(f) => return self.failed(t, f, None, w),
        };
        let go = env.mail.is_positive()
            && env.rcpts.iter().any(Reply::is_positive)
            && env
                .data
                .as_ref()
                .is_some_and(|d| if plan.bdat { d.is_positive() } else { d.code == 354 });

        if plan.bdat {
            let s = self.session.as_mut().expect("session");
            let final_reply = env.data.clone();
            if go {
                s.transactions += 1;
                let r = final_reply.expect("go implies a reply");
                let ok = Self::accepted(&r, &env, job(&t));
                t.complete(Ok(ok));
            } else {
                s.need_rset = true;
                let e = Self::refused(&env, job(&t));
                let lost = e.reply_code == 421;
                t.complete(Err(e));
                if lost {
                    self.drop_session();
                }
            }
            return w.try_next().map(|n| (n, false));
        }

        if !go {
            let e = Self::refused(&env, job(&t));
            let s = self.session.as_mut().expect("session");
            if env.data.as_ref().is_some_and(|d| d.code == 354) {
                // DATA was accepted though no recipient was: end it empty (RFC 2920 §3.1).
                let _ = s.send(b".\r\n").and_then(|_| s.reply());
            }
            s.need_rset = true;
            let lost = connection_lost(&e);
            if lost {
                self.drop_session();
                if t.attempts == 0 && e.reply_code == 421 {
                    // The server closed an idle connection before accepting anything: retry once.
                    let mut t = t;
                    t.attempts += 1;
                    return Some((t, false));
                }
            }
            t.complete(Err(e));
            return if lost {
                None
            } else {
                w.try_next().map(|n| (n, false))
            };
        }

        // 354: the server waits for the content.
        if !t.is_live() {
            // Cancelled while its envelope was pipelined: there is no way to
            // abort DATA, so give the connection up rather than send anything.
            self.drop_session();
            t.complete(Err(Error::cancelled()));
            return w.try_next().map(|n| (n, false));
        }
        let next = self.next_pipelined(w);
        let s = self.session.as_mut().expect("session");
        let result = Self::content(s, &t, next.as_ref().map(|(n, p)| (n, p)));
        let next = next.map(|(n, _)| n);
        match result {
            Ok(r) if r.is_positive() => {
                s.transactions += 1;
                let ok = Self::accepted(&r, &env, job(&t));
                t.complete(Ok(ok));
            }
            Ok(r) => {
                let lost = r.code == 421;
                t.complete(Err(r.error("the message was refused")));
                if lost {
                    self.drop_session();
                    return next.map(|n| (n, false));
                }
            }
            Err(f) => return self.failed(t, f, next, w),
        }
        match next {
            Some(n) => Some((n, true)),
            None => w.try_next().map(|n| (n, false)),
        }
    }

    /// The connection failed while `t` was running: close it; retry `t` once
    /// if none of its content was sent, else complete it with the error.
    /// `next` (pipelined behind `t`) is retried on a new connection.
    fn failed(
        &mut self,
        mut t: Ticket,
        f: Failure,
        next: Option<Ticket>,
        w: &mut WorkerCtx,
    ) -> Option<(Ticket, bool)> {
        self.drop_session();
        let retry = match &f {
            Failure::BeforeContent(e) => {
                t.attempts == 0 && connection_lost(e) && !e.is_timeout() && t.is_live()
            }
            Failure::AfterContent(_) => false,
        };
        if retry {
            if let Failure::BeforeContent(e) = &f {
                w.log(WARN, || {
                    format!("op {}: {}; retrying on a new connection", t.id, e.detail)
                });
            }
            t.attempts += 1;
            // The one pipelined behind it runs afterwards, on the new connection.
            if let Some(n) = next {
                self.held.push_front(n);
            }
            return Some((t, false));
        }
        let e = match f {
            Failure::BeforeContent(e) => e,
            Failure::AfterContent(mut e) => {
                e.detail = format!(
                    "{}; the message content was sent but not acknowledged, so the server may or may not have accepted it",
                    e.detail
                );
                e
            }
        };
        t.complete(Err(e));
        next.map(|n| (n, false))
    }
}

impl Driver for SmtpDriver {
    fn run(&mut self, first: Ticket, w: &mut WorkerCtx) {
        let mut cur = Some((first, false));
        while let Some((t, on_wire)) = cur {
            cur = self
                .step(t, on_wire, w)
                .or_else(|| self.held.pop_front().map(|t| (t, false)));
        }
    }

    fn close_idle(&mut self, w: &mut WorkerCtx) {
        if let Some(s) = self.session.take() {
            w.log(DEBUG, || "closing an idle SMTP connection".into());
            s.quit();
        }
    }
}
