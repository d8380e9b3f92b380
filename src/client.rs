//! The composition root: the only place that lists the protocols. It maps a
//! client's [`Protocol`] to the driver its engine runs, and hands each
//! protocol's jobs to the engine of that protocol's job type. What is the
//! same for every client goes through [`ClientApi`].
//!
//! Adding a protocol here is: one arm in [`Client::new`], one accessor in
//! [`AnyClient`] with the `impl AnyClient` of its engine, and one
//! `impl ClientJob` for its job type.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::engine::{ClientApi, Driver, Engine, Job, Submit};
use crate::imap::{Changes, ImapDriver, ImapJob};
use crate::log::LogFn;
use crate::options::{Options, Protocol};
use crate::outbox::{self, Decision};
use crate::pickup::PickupDriver;
use crate::pop3::{Pop3Driver, Pop3Job};
use crate::result::OpId;
use crate::smtp::{Learned, SendJob, SmtpDriver};
use crate::spool::{Found, Spool};
use crate::status::{Error, Result};

/// An engine of any protocol, asked for the engine of a job type by name
/// (no downcast): each accessor is `None` unless this client runs that job.
pub trait AnyClient: ClientApi {
    /// The engine of a client that sends messages (SMTP, PICKUP).
    fn sender(&self) -> Option<&Engine<SendJob>> {
        None
    }
    /// The engine of an IMAP client.
    fn imap(&self) -> Option<&Engine<ImapJob>> {
        None
    }
    /// The engine of a POP3 client.
    fn pop3(&self) -> Option<&Engine<Pop3Job>> {
        None
    }
}

impl AnyClient for Engine<SendJob> {
    fn sender(&self) -> Option<&Engine<SendJob>> {
        Some(self)
    }
}

impl AnyClient for Engine<ImapJob> {
    fn imap(&self) -> Option<&Engine<ImapJob>> {
        Some(self)
    }
}

impl AnyClient for Engine<Pop3Job> {
    fn pop3(&self) -> Option<&Engine<Pop3Job>> {
        Some(self)
    }
}

/// A job some client can run: finds that client's engine, if it is one.
pub trait ClientJob: Job + Sized {
    /// The engine of `c` that runs this job, if `c` has one.
    fn engine(c: &dyn AnyClient) -> Option<&Engine<Self>>;

    /// Submits it on `c` (a send goes through the client's spool, if any).
    fn submit_on(self, c: &Client, s: Submit) -> Result<OpId> {
        c.submit_plain(self, s)
    }
}

impl ClientJob for SendJob {
    fn engine(c: &dyn AnyClient) -> Option<&Engine<SendJob>> {
        c.sender()
    }

    fn submit_on(self, c: &Client, s: Submit) -> Result<OpId> {
        c.submit_send(self, None, s)
    }
}

impl ClientJob for ImapJob {
    fn engine(c: &dyn AnyClient) -> Option<&Engine<ImapJob>> {
        c.imap()
    }
}

impl ClientJob for Pop3Job {
    fn engine(c: &dyn AnyClient) -> Option<&Engine<Pop3Job>> {
        c.pop3()
    }
}

/// A client of any protocol: what `herald_client` wraps.
pub struct Client {
    inner: Box<dyn AnyClient>,
    /// The durable outbox (SPOOL_DIR); dropped after the engine.
    spool: Option<Arc<Spool>>,
}

/// An engine whose connections each run a driver `make` makes.
fn engine<D, F>(options: Options, make: F) -> Result<Box<dyn AnyClient>>
where
    D: Driver + 'static,
    F: Fn(&Arc<Options>) -> D + Send + Sync + 'static,
    Engine<D::Job>: AnyClient,
{
    let factory: crate::engine::DriverFactory<D::Job> = Box::new(move |o| Box::new(make(o)));
    Ok(Box::new(Engine::new(options, factory)?))
}

impl Client {
    /// Makes a client of `options.protocol`. Validates the options; does no
    /// network I/O.
    pub fn new(options: Options) -> Result<Client> {
        options.validate()?;
        let spool = outbox::open(&options)?;
        let inner = match options.protocol {
            Protocol::Smtp => {
                // What the client learns about its server's pipelining, shared by its connections.
                let learned = Learned::new();
                engine(options, move |o| SmtpDriver::new(o.clone(), learned.clone()))?
            }
            Protocol::Pickup => engine(options, |o| PickupDriver::new(o.clone()))?,
            Protocol::Imap => {
                // One view of the mailboxes' changes, shared by the client's connections.
                let changes = Changes::new();
                engine(options, move |o| ImapDriver::new(o.clone(), changes.clone()))?
            }
            Protocol::Pop3 => engine(options, |o| Pop3Driver::new(o.clone()))?,
        };
        Ok(Client { inner, spool })
    }

    /// The client's spool, if it has one.
    pub fn spool(&self) -> Option<&Arc<Spool>> {
        self.spool.as_ref()
    }

    /// Submits a send: through the spool when the client has one (with the
    /// caller's stable id, or one it assigns), else as any op.
    pub fn submit_send(&self, job: SendJob, id: Option<String>, s: Submit) -> Result<OpId> {
        match (&self.spool, self.inner.sender()) {
            (Some(sp), Some(engine)) => outbox::submit(sp, engine, job, id, s),
            _ if id.is_some() => Err(Error::invalid(
                "a spool id needs an SMTP client with HERALD_OPT_SPOOL_DIR",
            )),
            _ => self.submit_plain(job, s),
        }
    }

    /// Submits sends in order until one is refused; through the spool with
    /// one wait for the disk for all (see [`outbox::submit_batch`]).
    pub fn submit_send_batch(
        &self,
        items: &mut dyn Iterator<Item = outbox::BatchItem>,
    ) -> (Vec<OpId>, Option<Error>) {
        if let (Some(sp), Some(engine)) = (&self.spool, self.inner.sender()) {
            return outbox::submit_batch(sp, engine, items);
        }
        let mut ops = Vec::new();
        for item in items {
            match item.and_then(|(job, id, s)| self.submit_send(job, id, s)) {
                Ok(op) => ops.push(op),
                Err(e) => return (ops, Some(e)),
            }
        }
        (ops, None)
    }

    /// Whether a message's content may still be made while it is sent
    /// (an SMTP client without a spool: nothing keeps the whole bytes first).
    pub fn sends_while_building(&self) -> bool {
        self.spool.is_none() && self.inner.options().protocol == Protocol::Smtp
    }

    /// Recovers what a previous client left in the spool (see [`outbox::recover`]).
    pub fn recover(
        &self,
        decide: &mut dyn FnMut(&Found) -> Decision,
        submit: &dyn Fn() -> Submit,
    ) -> Result<usize> {
        match (&self.spool, self.inner.sender()) {
            (Some(sp), Some(engine)) => outbox::recover(sp, engine, decide, submit),
            _ => Err(Error::invalid(
                "herald_spool_recover needs an SMTP client with HERALD_OPT_SPOOL_DIR",
            )),
        }
    }

    /// Sets (or clears) the log callback, of the spool too.
    pub fn set_log(&self, max_level: u32, f: Option<LogFn>) {
        if let Some(sp) = &self.spool {
            sp.set_log(max_level, f.clone());
        }
        self.inner.set_log(max_level, f);
    }

    /// Queues an op. A job this client's protocol does not run is refused
    /// (INVALID_ARGUMENT). Never blocks on the network. On `Ok`, exactly one
    /// final completion will come; on `Err`, none.
    pub fn submit<J: ClientJob>(&self, job: J, s: Submit) -> Result<OpId> {
        job.submit_on(self, s)
    }

    /// [`Client::submit`] past the spool.
    pub fn submit_plain<J: ClientJob>(&self, job: J, s: Submit) -> Result<OpId> {
        match J::engine(&*self.inner) {
            Some(e) => e.submit(job, s),
            None => Err(Error::invalid(format!(
                "a {} op needs a different client than {}",
                job.name(),
                self.inner.options().protocol.name()
            ))),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(sp) = &self.spool {
            // Ops the engine cancels from here on stay in the spool.
            sp.closing.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Deref for Client {
    type Target = dyn AnyClient;

    fn deref(&self) -> &Self::Target {
        &*self.inner
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Notify;
    use crate::imap::ImapOp;
    use crate::options::id;
    use crate::status::Status;

    fn submit(job: impl ClientJob) -> impl FnOnce(&Client) -> Result<OpId> {
        move |c| {
            c.submit(
                job,
                Submit {
                    notify: Notify::Queue,
                    on_change: None,
                    token: 0,
                },
            )
        }
    }

    #[test]
    fn a_job_for_another_protocol_is_refused_at_submit() {
        let dir = std::env::temp_dir().join(format!("herald-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut o = Options::new(Protocol::Pickup);
        o.set_str(id::PICKUP_DIR, &dir.to_string_lossy()).unwrap();
        let c = Client::new(o).unwrap();
        let imap = ImapJob {
            mailbox: "INBOX".into(),
            op: ImapOp::Expunge,
            uidvalidity: None,
        };
        let e = submit(imap)(&c).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(
            e.detail.contains("needs a different client than PICKUP"),
            "{}",
            e.detail
        );
        let e = submit(Pop3Job::List)(&c).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        let send = SendJob::new(
            crate::envelope::Envelope::of("a@example.org", &["b@example.org"]),
            b"x\r\n".to_vec(),
        );
        let op = submit(send)(&c).unwrap();
        let done = c
            .next_completion(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        assert_eq!((done.op, done.status), (op, Status::Ok), "{}", done.detail);
        drop(c);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_protocol_makes_its_client() {
        for p in [Protocol::Smtp, Protocol::Imap, Protocol::Pop3] {
            let mut o = Options::new(p);
            o.set_str(id::HOST, "127.0.0.1").unwrap();
            let c = Client::new(o).unwrap();
            assert_eq!(c.options().protocol, p);
            assert_eq!(c.open_connections(), 0, "no connection before the first op");
        }
    }

    /// Counts what `ready` begins for each message.
    #[derive(Default)]
    struct CountBegins(std::sync::atomic::AtomicUsize);

    impl crate::smtp::BeforeSend for CountBegins {
        fn begin(&self) -> crate::status::Result<u64> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(0)
        }
        fn wait(&self, _ticket: u64) -> crate::status::Result<()> {
            Ok(())
        }
    }

    /// smtp-sink offers PIPELINING but not CHUNKING, so every DATA holds
    /// the window until its 354 while the messages taken with it wait:
    /// they are made ready (and their spool mark begun) once each, not
    /// again for every reply the window waits for. Taking them back and
    /// forth once cost 29 `ready` calls per message and doubled the CPU per
    /// message of a bulk send (`cpu_bench`).
    #[test]
    fn a_message_is_made_ready_once() {
        use crate::engine::{Notify, Submit};
        use crate::smtp::{Envelope, SendJob};
        use std::sync::atomic::Ordering;
        use std::sync::Arc;
        herald_testservers::require_servers();
        let sink = herald_testservers::SmtpSink::start(&[]);
        let mut o = Options::new(Protocol::Smtp);
        o.set_str(id::HOST, "127.0.0.1").unwrap();
        o.set_int(id::PORT, i64::from(sink.port)).unwrap();
        o.set_int(id::SECURITY, 0).unwrap();
        let c = Client::new(o).unwrap();
        let count = Arc::new(CountBegins::default());
        let n = 200;
        for i in 0..n {
            let mut j = SendJob::new(
                Envelope::of("a@example.org", &["b@example.org"]),
                format!("Subject: {i}\r\n\r\nhi\r\n").into_bytes(),
            );
            j.before_send = Some(count.clone());
            let s = Submit {
                notify: Notify::Queue,
                on_change: None,
                token: 0,
            };
            c.submit_send(j, None, s).unwrap();
        }
        let mut ok = 0;
        for _ in 0..n {
            let done = c
                .next_completion(Some(std::time::Duration::from_secs(60)))
                .expect("a completion");
            ok += usize::from(done.status == Status::Ok);
        }
        assert_eq!(ok, n, "every message sent");
        assert_eq!(count.0.load(Ordering::Relaxed), n, "one begin per message");
        assert!(sink.wait_for_dumps(n, std::time::Duration::from_secs(10)).len() == n);
    }
}
