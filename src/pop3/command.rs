//! POP3 commands (RFC 1939, 2449, 2595, 5034) as small values whose
//! `Display` writes the command's text; the session adds the CRLF, and
//! [`Command::write_to`] appends the whole line to a batch (PIPELINING).
//! Commands that carry a secret (PASS, APOP's digest, AUTH's initial
//! response) go through the transport's secret send, not through this type.

use std::fmt;

/// One POP3 command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Capa,
    Stls,
    User(&'a str),
    /// AUTH without an initial response: the response follows the server's "+".
    Auth(&'a str),
    Stat,
    Uidl,
    List,
    Retr(u32),
    /// The headers and the first `lines` lines of the body.
    Top {
        num: u32,
        lines: u32,
    },
    Dele(u32),
    Rset,
    Quit,
}

impl fmt::Display for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Capa => f.write_str("CAPA"),
            Command::Stls => f.write_str("STLS"),
            Command::User(user) => write!(f, "USER {user}"),
            Command::Auth(mech) => write!(f, "AUTH {mech}"),
            Command::Stat => f.write_str("STAT"),
            Command::Uidl => f.write_str("UIDL"),
            Command::List => f.write_str("LIST"),
            Command::Retr(n) => write!(f, "RETR {n}"),
            Command::Top { num, lines } => write!(f, "TOP {num} {lines}"),
            Command::Dele(n) => write!(f, "DELE {n}"),
            Command::Rset => f.write_str("RSET"),
            Command::Quit => f.write_str("QUIT"),
        }
    }
}

impl Command<'_> {
    /// Appends the command line, CRLF included, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = write!(out, "{self}\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut out = Vec::new();
        for c in [
            Command::Capa,
            Command::Stls,
            Command::User("bob"),
            Command::Auth("XOAUTH2"),
            Command::Stat,
            Command::Uidl,
            Command::List,
            Command::Retr(3),
            Command::Top { num: 4, lines: 0 },
            Command::Dele(5),
            Command::Rset,
            Command::Quit,
        ] {
            c.write_to(&mut out);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CAPA\r\nSTLS\r\nUSER bob\r\nAUTH XOAUTH2\r\nSTAT\r\nUIDL\r\nLIST\r\n\
             RETR 3\r\nTOP 4 0\r\nDELE 5\r\nRSET\r\nQUIT\r\n"
        );
        assert_eq!(Command::Retr(7).to_string(), "RETR 7");
    }
}
