//! The job of a POP3 op, copied from the caller at submit.

use crate::engine::Job;

/// A POP3 op. Messages are named by UIDL (checked at submit: printable
/// ASCII, no spaces); message numbers never leave a session. `Test` tests
/// the account: a fresh session (connect, TLS, login), its capabilities
/// and security reported, then QUIT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pop3Job {
    List,
    Retrieve { uidl: String },
    Top { uidl: String, lines: u32 },
    Delete { uidls: Vec<String> },
    Test,
}

impl Job for Pop3Job {
    fn name(&self) -> &'static str {
        "POP3"
    }
}
