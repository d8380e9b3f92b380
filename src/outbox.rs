//! The durable outbox wired into an SMTP client (see `spool` for what is
//! on disk when): a send is written to the spool before its submit
//! returns, marked before it goes to a server (the `SendJob` hook), and
//! forgotten at its final completion (the engine's `FinalHook`), which
//! also gets the message's spool id and Message-ID. Messages a crashed
//! client left are handed back by [`recover`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::engine::{Engine, FinalHook, Submit};
use crate::options::Options;
use crate::result::{field, Completion, OpId, ResultData, ResultItem};
use crate::smtp::{BeforeSend, Envelope, SendJob};
use crate::spool::{self, Found, Spool, Spooled};
use crate::status::{Error, Result, Status};

/// Opens the client's spool when SPOOL_DIR is set.
pub fn open(o: &Options) -> Result<Option<Arc<Spool>>> {
    let Some(dir) = &o.spool_dir else {
        return Ok(None);
    };
    let cfg = spool::Config {
        dir: dir.clone(),
        sync: o.spool_sync,
        max_messages: o.spool_max_messages,
        max_bytes: o.spool_max_bytes,
    };
    Ok(Some(Arc::new(Spool::open(&cfg)?)))
}

/// The longest spool id accepted.
pub const MAX_ID_BYTES: usize = 255;

/// A caller's spool id: 1..255 bytes, no control characters.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "a spool id must be 1..{MAX_ID_BYTES} bytes without control characters, got {id:?}"
        )));
    }
    Ok(())
}

/// Submits a send through the spool `sp` of `engine`'s client, with the
/// caller's id or one it assigns.
pub fn submit(
    sp: &Arc<Spool>,
    engine: &Engine<SendJob>,
    job: SendJob,
    id: Option<String>,
    s: Submit,
) -> Result<OpId> {
    let mut p = prepare(sp, job, id)?;
    let key = sp.add(&mut p.m)?;
    let (job, m) = p.into_job();
    start(sp, engine, job, m, key, 0, s)
}

/// One send of a batch: the job, the caller's spool id, how it completes.
pub type BatchItem = Result<(SendJob, Option<String>, Submit)>;

/// Submits sends in order, as `submit` each, until one is refused, with
/// one wait for the disk for all of them: every message accepted is
/// durable when this returns. The ops accepted, and the refusal if any.
pub fn submit_batch(
    sp: &Arc<Spool>,
    engine: &Engine<SendJob>,
    items: &mut dyn Iterator<Item = BatchItem>,
) -> (Vec<OpId>, Option<Error>) {
    let mut taken = Vec::new();
    let mut refused = None;
    let mut ticket = 0;
    for item in items {
        let appended = item.and_then(|(job, id, s)| {
            let mut p = prepare(sp, job, id)?;
            ticket = sp.append(&mut p.m)?;
            let (job, m) = p.into_job();
            Ok((job, m, s))
        });
        match appended {
            Ok(t) => taken.push(t),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let keys: Vec<u64> = taken.iter().map(|(_, m, _)| m.key).collect();
    if let Err(e) = sp.settle(&keys, ticket) {
        return (Vec::new(), Some(e));
    }
    let mut ops = Vec::with_capacity(taken.len());
    let mut rest = taken.into_iter();
    for (job, m, s) in rest.by_ref() {
        let key = m.key;
        match start(sp, engine, job, m, key, 0, s) {
            Ok(op) => ops.push(op),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    for (_, m, _) in rest {
        sp.done(m.key, true);
    }
    (ops, refused)
}

/// A send made ready for the spool: its id checked or assigned, a
/// Message-ID put first when it has none. The bytes are in `m` until the
/// spool has its copy (`into_job`).
fn prepare(sp: &Spool, mut job: SendJob, id: Option<String>) -> Result<Prepared> {
    let id = match id {
        Some(id) => {
            check_id(&id)?;
            id
        }
        None => sp.new_id(),
    };
    // The spool keeps whole bytes.
    job.settle_content()?;
    let data = std::mem::take(&mut job.data);
    let had_id = spool::message_id_of(&data).is_some();
    let unique = format!("{id}.{}", sp.new_id());
    let (data, message_id) = spool::ensure_message_id(data, &unique);
    let m = Spooled {
        key: 0,
        id,
        message_id,
        from: job.env.from().to_string(),
        rcpts: job.env.rcpts().map(str::to_string).collect(),
        data,
    };
    Ok(Prepared { job, had_id, m })
}

struct Prepared {
    job: SendJob,
    had_id: bool,
    m: Spooled,
}

impl Prepared {
    /// The job to run, its bytes moved back from the spooled copy.
    fn into_job(mut self) -> (SendJob, Spooled) {
        let data = std::mem::take(&mut self.m.data);
        let job = if self.had_id {
            SendJob { data, ..self.job }
        } else {
            // A header line was put first: what the bytes need is found again.
            SendJob::new(self.job.env, data)
        };
        (job, self.m)
    }
}

/// Hands a spooled message (key `key`) to the engine with its hooks.
fn start(
    sp: &Arc<Spool>,
    engine: &Engine<SendJob>,
    mut job: SendJob,
    m: Spooled,
    key: u64,
    state: u64,
    s: Submit,
) -> Result<OpId> {
    job.before_send = Some(Arc::new(Mark { sp: sp.clone(), key }));
    let hook = final_hook(sp.clone(), key, m.id, m.message_id, state);
    engine.submit_with_hook(job, s, Some(hook)).inspect_err(|_| {
        if state == 0 {
            sp.done(key, true);
        }
    })
}

/// A spooled message's SENDING mark, made before it goes to a server.
struct Mark {
    sp: Arc<Spool>,
    key: u64,
}

impl BeforeSend for Mark {
    fn begin(&self) -> Result<u64> {
        self.sp.begin_sending(self.key)
    }
    fn wait(&self, ticket: u64) -> Result<()> {
        self.sp.wait_sending(ticket)
    }
}

/// What runs at a spooled send's final completion.
fn final_hook(sp: Arc<Spool>, key: u64, id: String, message_id: String, state: u64) -> FinalHook {
    Box::new(move |c: &mut Completion| {
        label(c, &id, &message_id, state);
        if c.cancelled && sp.closing.load(Ordering::Acquire) {
            c.detail
                .push_str("; it stays in the spool for the next client on SPOOL_DIR");
            return None;
        }
        if c.status != Status::Ok {
            // The caller may act on a failure: it is off the spool first.
            sp.done(key, true);
            return None;
        }
        Some(Box::new(move || sp.done(key, false)))
    })
}

/// Puts the spool id and Message-ID on every item of the completion's
/// result (one item when it has none).
fn label(c: &mut Completion, id: &str, message_id: &str, state: u64) {
    let r = c.result.get_or_insert_with(|| ResultData::new(Vec::new()));
    if r.items.is_empty() {
        r.items.push(ResultItem::new(0));
    }
    for it in &mut r.items {
        it.set_str(field::SPOOL_ID, id);
        it.set_str(field::MESSAGE_ID, message_id);
        if state > 0 {
            it.set_int(field::SPOOL_STATE, state);
        }
    }
}

/// What the caller chose for a recovered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it (its completion comes like any other op's).
    Send,
    /// Forget it: removed from the spool, not sent.
    Drop,
    /// Leave it in the spool for a later client; not sent now.
    Keep,
}

/// Hands the messages found in the spool at open to `decide`, one by one,
/// in the order they were submitted, then acts on each decision. The
/// messages to send are submitted with `submit()`'s routes. Returns how
/// many were submitted. Only the first call finds anything. A submit
/// refused (queue full) leaves that message and the rest in the spool.
pub fn recover(
    sp: &Arc<Spool>,
    engine: &Engine<SendJob>,
    decide: &mut dyn FnMut(&Found) -> Decision,
    submit: &dyn Fn() -> Submit,
) -> Result<usize> {
    let found = sp.take_found();
    sp.log(crate::log::INFO, || {
        format!("{} messages found to recover", found.len())
    });
    let mut sent = 0;
    for f in found {
        match decide(&f) {
            Decision::Drop => sp.done(f.msg.key, true),
            Decision::Keep => sp.keep(&f)?,
            Decision::Send => {
                let state = if f.unknown { 2 } else { 1 };
                let Found { mut msg, .. } = f;
                let data = std::mem::take(&mut msg.data);
                let job = SendJob::new(Envelope::of(&msg.from, &msg.rcpts), data);
                let key = msg.key;
                start(sp, engine, job, msg, key, state, submit())?;
                sent += 1;
            }
        }
    }
    Ok(sent)
}
