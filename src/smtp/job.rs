//! The job of a send op (SMTP and PICKUP clients run it), copied from the
//! caller at submit.

use crate::engine::Job;
use crate::smtp::codec::Needs;

/// A message to send: envelope and the exact bytes.
#[derive(Clone, Debug)]
pub struct SendJob {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    /// What the message needs from an SMTP server, found once, at submit
    /// (it scans every byte): `SendJob::new` sets it.
    pub needs: Needs,
    /// Not a message: the test-account op (connect, TLS, EHLO, AUTH, the
    /// extensions reported, QUIT). `SendJob::account_test` makes one.
    pub account_test: bool,
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
            account_test: false,
        }
    }

    /// The test-account op.
    pub fn account_test() -> SendJob {
        SendJob {
            account_test: true,
            ..SendJob::new(String::new(), Vec::new(), Vec::new())
        }
    }

    pub fn new(from: String, rcpts: Vec<String>, data: Vec<u8>) -> SendJob {
        let needs = Needs::of(&from, &rcpts, &data);
        SendJob {
            from,
            rcpts,
            data,
            needs,
            account_test: false,
        }
    }
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
