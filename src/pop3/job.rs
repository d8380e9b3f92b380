//! The job of a POP3 op, copied from the caller at submit.

use std::sync::Arc;

use crate::engine::Job;
use crate::parsed::Parsed;
use crate::result::Outcome;

/// A POP3 op. Messages are named by UIDL (checked at submit: printable
/// ASCII, no spaces); message numbers never leave a session. `Test` tests
/// the account: a fresh session (connect, TLS, login), its capabilities
/// and security reported, then QUIT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pop3Job {
    List,
    /// `parse`: the result item also holds the parsed message, parsed on
    /// the worker thread (`herald_pop3_retrieve_parsed_async`).
    Retrieve {
        uidl: String,
        parse: bool,
    },
    Top {
        uidl: String,
        lines: u32,
    },
    Delete {
        uidls: Vec<String>,
    },
    Test,
}

impl Pop3Job {
    /// A retrieve's outcome as the caller gets it: with `parse`, each
    /// item's message parsed (on the worker thread, before the completion).
    pub fn finish(&self, mut outcome: Outcome) -> Outcome {
        if let (Pop3Job::Retrieve { parse: true, .. }, Ok(s)) = (self, &mut outcome) {
            for it in s.result.iter_mut().flat_map(|r| r.items.iter_mut()) {
                it.parsed = it.bytes.as_deref().and_then(Parsed::parse).map(Arc::new);
            }
        }
        outcome
    }
}

impl Job for Pop3Job {
    fn name(&self) -> &'static str {
        "POP3"
    }
}
