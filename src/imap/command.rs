//! IMAP commands (RFC 3501, 9051 and extensions) as small values whose
//! `Display` writes the command's text: no tag, no CRLF (the session adds
//! both, and sends literals as their own parts). Mailbox names are given
//! as the API has them (UTF-8) and written as quoted modified UTF-7.

use std::fmt;

use super::args::quote;
use super::utf7;

/// A mailbox name as the API has it, written as IMAP wants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mailbox<'a>(pub &'a str);

impl fmt::Display for Mailbox<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote(&utf7::encode(self.0)))
    }
}

/// How UID STORE changes the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagChange {
    Add,
    Remove,
    Replace,
}

/// One IMAP command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Capability,
    StartTls,
    Noop,
    Logout,
    Idle,
    /// AUTHENTICATE, with the base64 initial response (SASL-IR) when given.
    Authenticate {
        mechanism: &'a str,
        initial: Option<&'a str>,
    },
    Select(Mailbox<'a>),
    Examine(Mailbox<'a>),
    Create(Mailbox<'a>),
    Delete(Mailbox<'a>),
    /// LIST "" pattern.
    List(Mailbox<'a>),
    Expunge,
    /// `uids` is a sequence set ("1:3,7"); `flags` the flag list's inside.
    UidStore {
        uids: &'a str,
        change: FlagChange,
        flags: &'a str,
    },
    UidCopy {
        uids: &'a str,
        to: Mailbox<'a>,
    },
    UidMove {
        uids: &'a str,
        to: Mailbox<'a>,
    },
    UidExpunge {
        uids: &'a str,
    },
    /// `items`: the data items' inside ("UID FLAGS BODY.PEEK[]").
    UidFetch {
        uids: &'a str,
        items: &'a str,
    },
}

impl fmt::Display for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Capability => f.write_str("CAPABILITY"),
            Command::StartTls => f.write_str("STARTTLS"),
            Command::Noop => f.write_str("NOOP"),
            Command::Logout => f.write_str("LOGOUT"),
            Command::Idle => f.write_str("IDLE"),
            Command::Authenticate {
                mechanism,
                initial: Some(ir),
            } => write!(f, "AUTHENTICATE {mechanism} {ir}"),
            Command::Authenticate {
                mechanism,
                initial: None,
            } => write!(f, "AUTHENTICATE {mechanism}"),
            Command::Select(m) => write!(f, "SELECT {m}"),
            Command::Examine(m) => write!(f, "EXAMINE {m}"),
            Command::Create(m) => write!(f, "CREATE {m}"),
            Command::Delete(m) => write!(f, "DELETE {m}"),
            Command::List(m) => write!(f, "LIST \"\" {m}"),
            Command::Expunge => f.write_str("EXPUNGE"),
            Command::UidStore { uids, change, flags } => {
                let verb = match change {
                    FlagChange::Add => "+FLAGS.SILENT",
                    FlagChange::Remove => "-FLAGS.SILENT",
                    FlagChange::Replace => "FLAGS.SILENT",
                };
                write!(f, "UID STORE {uids} {verb} ({flags})")
            }
            Command::UidCopy { uids, to } => write!(f, "UID COPY {uids} {to}"),
            Command::UidMove { uids, to } => write!(f, "UID MOVE {uids} {to}"),
            Command::UidExpunge { uids } => write!(f, "UID EXPUNGE {uids}"),
            Command::UidFetch { uids, items } => write!(f, "UID FETCH {uids} ({items})"),
        }
    }
}

/// What a session sends as one command: a [`Command`], or text the
/// caller built (`&str`, `&String`).
pub trait CommandText {
    fn text(&self) -> String;
}

impl CommandText for Command<'_> {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl CommandText for &str {
    fn text(&self) -> String {
        (*self).to_string()
    }
}

impl CommandText for &String {
    fn text(&self) -> String {
        (*self).clone()
    }
}

impl Command<'_> {
    /// The whole line with its tag: "h3 NOOP\r\n".
    pub fn line(&self, tag: &str) -> String {
        format!("{tag} {self}\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        let inbox = Mailbox("INBOX");
        let cases = [
            (Command::Capability, "CAPABILITY"),
            (Command::StartTls, "STARTTLS"),
            (Command::Noop, "NOOP"),
            (Command::Logout, "LOGOUT"),
            (Command::Idle, "IDLE"),
            (
                Command::Authenticate {
                    mechanism: "PLAIN",
                    initial: Some("AGEAYg=="),
                },
                "AUTHENTICATE PLAIN AGEAYg==",
            ),
            (
                Command::Authenticate {
                    mechanism: "XOAUTH2",
                    initial: None,
                },
                "AUTHENTICATE XOAUTH2",
            ),
            (Command::Select(inbox), "SELECT \"INBOX\""),
            (
                Command::Examine(Mailbox("Entw\u{fc}rfe")),
                "EXAMINE \"Entw&APw-rfe\"",
            ),
            (Command::Create(Mailbox("a\"b")), "CREATE \"a\\\"b\""),
            (Command::Delete(inbox), "DELETE \"INBOX\""),
            (Command::List(Mailbox("*")), "LIST \"\" \"*\""),
            (Command::Expunge, "EXPUNGE"),
            (
                Command::UidStore {
                    uids: "1:3",
                    change: FlagChange::Add,
                    flags: "\\Seen",
                },
                "UID STORE 1:3 +FLAGS.SILENT (\\Seen)",
            ),
            (
                Command::UidStore {
                    uids: "4",
                    change: FlagChange::Replace,
                    flags: "",
                },
                "UID STORE 4 FLAGS.SILENT ()",
            ),
            (Command::UidCopy { uids: "5", to: inbox }, "UID COPY 5 \"INBOX\""),
            (
                Command::UidMove {
                    uids: "5,7",
                    to: inbox,
                },
                "UID MOVE 5,7 \"INBOX\"",
            ),
            (Command::UidExpunge { uids: "9" }, "UID EXPUNGE 9"),
            (
                Command::UidFetch {
                    uids: "1:*",
                    items: "UID FLAGS",
                },
                "UID FETCH 1:* (UID FLAGS)",
            ),
        ];
        for (c, text) in cases {
            assert_eq!(c.to_string(), text);
        }
        assert_eq!(Command::Noop.line("h7"), "h7 NOOP\r\n");
    }
}
