//! The job of a send op (SMTP and PICKUP clients run it), copied from the
//! caller at submit.

use std::sync::Arc;

use crate::buffer::Growing;
use crate::engine::Job;
pub use crate::envelope::Envelope;
use crate::smtp::codec::Needs;
use crate::status::Result;

/// Runs before any command of a message goes to a server, on every
/// connection it is tried on, in two steps so that a connection about to
/// send several messages waits once for all of them: `begin` (for each
/// message) starts it and `wait` (for each, after every `begin`) returns
/// once it is done; only then may the message go out. An error from
/// either completes the message with that error, nothing of it sent. (The
/// durable outbox marks the message there: every mark is appended by
/// `begin`, and the first `wait` makes them all durable at once.)
pub trait BeforeSend: Send + Sync {
    /// Starts it; the ticket for `wait`.
    fn begin(&self) -> Result<u64>;
    /// Returns once what `begin` started (its ticket) is done.
    fn wait(&self, ticket: u64) -> Result<()>;
}

/// A message to send: envelope and the exact bytes.
#[derive(Clone)]
pub struct SendJob {
    /// The sender and recipients.
    pub env: Envelope,
    pub data: Vec<u8>,
    /// The content while it is being made (a large built message, its
    /// attachments encoded on another thread while it is sent): `data` is
    /// then empty. See [`SendJob::len`] and [`SendJob::content_upto`].
    pub growing: Option<Arc<Growing>>,
    /// What the message needs from an SMTP server, found once, at submit
    /// (it scans every byte): `SendJob::new` sets it.
    pub needs: Needs,
    /// Not a message: the test-account op (connect, TLS, EHLO, AUTH, the
    /// extensions reported, QUIT). `SendJob::account_test` makes one.
    pub account_test: bool,
    pub before_send: Option<Arc<dyn BeforeSend>>,
}

impl std::fmt::Debug for SendJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendJob")
            .field("from", &self.env.from())
            .field("rcpts", &self.env.rcpts().collect::<Vec<_>>())
            .field("len", &self.len())
            .field("account_test", &self.account_test)
            .finish()
    }
}

impl SendJob {
    /// A job whose bytes are copied from `data`: copy and scan in one pass.
    pub fn copied(env: Envelope, data: &[u8]) -> SendJob {
        let (needs, data) = Needs::of_copied(&env, data);
        SendJob {
            env,
            data,
            growing: None,
            needs,
            account_test: false,
            before_send: None,
        }
    }

    /// The test-account op.
    pub fn account_test() -> SendJob {
        SendJob {
            account_test: true,
            ..SendJob::new(Envelope::default(), Vec::new())
        }
    }

    pub fn new(env: Envelope, data: Vec<u8>) -> SendJob {
        let needs = Needs::of(&env, &data);
        SendJob {
            env,
            data,
            growing: None,
            needs,
            account_test: false,
            before_send: None,
        }
    }
}

impl SendJob {
    /// The content's length.
    pub fn len(&self) -> usize {
        self.growing.as_ref().map_or(self.data.len(), |g| g.len())
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The content's first `to` bytes, waiting for them while it is made.
    pub fn content_upto(&self, to: usize) -> Result<&[u8]> {
        match &self.growing {
            Some(g) => g.upto(to).map_err(|_| unfilled()),
            None => Ok(&self.data[..to]),
        }
    }

    /// The content, waiting for all of it while it is made.
    pub fn content(&self) -> Result<&[u8]> {
        self.content_upto(self.len())
    }

    /// The content made so far (all of it unless it is being made).
    pub fn content_so_far(&self) -> &[u8] {
        match &self.growing {
            Some(g) => g.filled(),
            None => &self.data,
        }
    }

    /// The content's last bytes (at most 2), known while it is made.
    pub fn content_tail(&self) -> &[u8] {
        match &self.growing {
            Some(g) => g.tail(),
            None => &self.data[self.data.len().saturating_sub(2)..],
        }
    }

    /// Makes the content bytes of its own (`data`), waiting for a growing
    /// one: for what keeps or writes the whole message (spool, pickup).
    pub fn settle_content(&mut self) -> Result<()> {
        if let Some(g) = self.growing.take() {
            self.data = g.all().map_err(|_| unfilled())?.to_vec();
        }
        Ok(())
    }
}

fn unfilled() -> crate::status::Error {
    crate::status::Error::new(
        crate::status::Status::Panic,
        "internal error: the message's attachments could not be encoded",
    )
}

impl Job for SendJob {
    fn name(&self) -> &'static str {
        if self.account_test {
            "SMTP account test"
        } else {
            "send"
        }
    }

    fn timeout_note(&self) -> &'static str {
        "; if the message content had gone out, the server may or may not have accepted it"
    }
}
