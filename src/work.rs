//! The input of an op, copied from the caller at submit.

use crate::options::Protocol;
use crate::smtp::codec::Needs;
use crate::status::{Error, Result};

/// A message to send: envelope and the exact bytes.
#[derive(Clone, Debug)]
pub struct SendJob {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    /// What the message needs from an SMTP server, found once, at submit
    /// (it scans every byte): `SendJob::new` sets it.
    pub needs: Needs,
}

impl SendJob {
    /// A job whose bytes are copied from `data`: copy and scan in one pass.
    pub fn copied(from: String, rcpts: Vec<String>, data: &[u8]) -> SendJob {
        let (needs, data) = Needs::of_copied(&from, &rcpts, data);
        SendJob {
            from,
            rcpts,
            data,
            needs,
        }
    }

    pub fn new(from: String, rcpts: Vec<String>, data: Vec<u8>) -> SendJob {
        let needs = Needs::of(&from, &rcpts, &data);
        SendJob {
            from,
            rcpts,
            data,
            needs,
        }
    }
}

/// A POP3 op. Messages are named by UIDL (checked at submit: printable
/// ASCII, no spaces); message numbers never leave a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pop3Job {
    List,
    Retrieve { uidl: String },
    Top { uidl: String, lines: u32 },
    Delete { uidls: Vec<String> },
}

/// What an op does.
#[derive(Debug)]
pub enum Work {
    Send(SendJob),
    Pop3(Pop3Job),
    Imap(crate::imap::ImapJob),
}

impl Work {
    fn name(&self) -> &'static str {
        match self {
            Work::Send(_) => "send",
            Work::Pop3(_) => "POP3",
            Work::Imap(j) => j.name(),
        }
    }

    fn protocols(&self) -> &'static [Protocol] {
        match self {
            Work::Send(_) => &[Protocol::Smtp, Protocol::Pickup],
            Work::Pop3(_) => &[Protocol::Pop3],
            Work::Imap(_) => &[Protocol::Imap],
        }
    }

    /// Refuses an op the client's protocol can't run, at submit.
    pub fn check_protocol(&self, p: Protocol) -> Result<()> {
        if self.protocols().contains(&p) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "a {} op needs a different client than {}",
                self.name(),
                p.name()
            )))
        }
    }

    /// Does `herald_client_flush` wait for this op? (Not for ops that run
    /// until cancelled.)
    pub fn flushable(&self) -> bool {
        !matches!(self, Work::Imap(j) if j.is_idle())
    }

    /// Is this op free of OP_TIMEOUT_MS? (Ops that run until cancelled: IDLE.)
    pub fn deadline_exempt(&self) -> bool {
        !self.flushable()
    }

    /// What a TIMEOUT completion adds about an op stopped at its deadline
    /// at a point the engine cannot see (whether its content went out).
    pub fn timeout_note(&self) -> &'static str {
        match self {
            Work::Send(_) => {
                "; if the message content had gone out, the server may or may not have accepted it"
            }
            _ => "",
        }
    }

    /// The connection state this op wants (an IMAP mailbox), for affinity.
    pub fn affinity_key(&self) -> Option<&str> {
        match self {
            Work::Imap(j) => j.affinity_key(),
            _ => None,
        }
    }

    /// The message of a send op.
    pub fn as_send(&self) -> Option<&SendJob> {
        match self {
            Work::Send(j) => Some(j),
            _ => None,
        }
    }

    /// The IMAP op of an IMAP client's work.
    pub fn as_imap(&self) -> Option<&crate::imap::ImapJob> {
        match self {
            Work::Imap(j) => Some(j),
            _ => None,
        }
    }

    /// The job of a POP3 op.
    pub fn as_pop3(&self) -> Option<&Pop3Job> {
        match self {
            Work::Pop3(j) => Some(j),
            _ => None,
        }
    }
}
