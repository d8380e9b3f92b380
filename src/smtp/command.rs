//! SMTP commands as small values whose `Display` writes the exact
//! protocol line, CRLF included.

use std::fmt;

/// One SMTP command (RFC 5321 §4.1.1, RFC 3030, RFC 3207, RFC 4954).
/// AUTH with an initial response carries a secret: it goes through the
/// transport's secret send, not through this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo {
        name: &'a str,
    },
    Helo {
        name: &'a str,
    },
    StartTls,
    /// AUTH without an initial response (LOGIN).
    Auth {
        mechanism: &'a str,
    },
    Rset,
    /// `params` starts with a space when not empty (" SIZE=123 BODY=8BITMIME").
    Mail {
        from: &'a str,
        params: &'a str,
    },
    Rcpt {
        to: &'a str,
    },
    Data,
    /// A chunk of `len` bytes follows the line unchanged.
    Bdat {
        len: usize,
        last: bool,
    },
    Quit,
}

impl fmt::Display for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo { name } => write!(f, "EHLO {name}\r\n"),
            Command::Helo { name } => write!(f, "HELO {name}\r\n"),
            Command::StartTls => f.write_str("STARTTLS\r\n"),
            Command::Auth { mechanism } => write!(f, "AUTH {mechanism}\r\n"),
            Command::Rset => f.write_str("RSET\r\n"),
            Command::Mail { from, params } => write!(f, "MAIL FROM:<{from}>{params}\r\n"),
            Command::Rcpt { to } => write!(f, "RCPT TO:<{to}>\r\n"),
            Command::Data => f.write_str("DATA\r\n"),
            Command::Bdat { len, last: true } => write!(f, "BDAT {len} LAST\r\n"),
            Command::Bdat { len, last: false } => write!(f, "BDAT {len}\r\n"),
            Command::Quit => f.write_str("QUIT\r\n"),
        }
    }
}

impl Command<'_> {
    /// Appends the command line to `out`, without going through `fmt` for
    /// the commands written for every message.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Command::Ehlo { .. } | Command::Helo { .. } | Command::StartTls | Command::Auth { .. } => {
                out.extend_from_slice(self.to_string().as_bytes())
            }
            Command::Rset => out.extend_from_slice(b"RSET\r\n"),
            Command::Mail { from, params } => {
                out.extend_from_slice(b"MAIL FROM:<");
                out.extend_from_slice(from.as_bytes());
                out.push(b'>');
                out.extend_from_slice(params.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Command::Rcpt { to } => {
                out.extend_from_slice(b"RCPT TO:<");
                out.extend_from_slice(to.as_bytes());
                out.extend_from_slice(b">\r\n");
            }
            Command::Data => out.extend_from_slice(b"DATA\r\n"),
            Command::Bdat { len, last } => {
                out.extend_from_slice(b"BDAT ");
                push_decimal(out, *len as u64);
                out.extend_from_slice(if *last { b" LAST\r\n" } else { b"\r\n" });
            }
            Command::Quit => out.extend_from_slice(b"QUIT\r\n"),
        }
    }
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut out = Vec::new();
        Command::Rset.write_to(&mut out);
        Command::Mail {
            from: "a@b",
            params: " SIZE=5",
        }
        .write_to(&mut out);
        Command::Rcpt { to: "c@d" }.write_to(&mut out);
        Command::Data.write_to(&mut out);
        Command::Bdat { len: 5, last: true }.write_to(&mut out);
        Command::Bdat { len: 0, last: false }.write_to(&mut out);
        Command::Quit.write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "RSET\r\nMAIL FROM:<a@b> SIZE=5\r\nRCPT TO:<c@d>\r\nDATA\r\nBDAT 5 LAST\r\nBDAT 0\r\nQUIT\r\n"
        );
        assert_eq!(
            Command::Mail { from: "", params: "" }.to_string(),
            "MAIL FROM:<>\r\n"
        );
        assert_eq!(
            Command::Ehlo { name: "c.example" }.to_string(),
            "EHLO c.example\r\n"
        );
        assert_eq!(
            Command::Helo { name: "c.example" }.to_string(),
            "HELO c.example\r\n"
        );
        assert_eq!(Command::StartTls.to_string(), "STARTTLS\r\n");
        assert_eq!(Command::Auth { mechanism: "LOGIN" }.to_string(), "AUTH LOGIN\r\n");
        // write_to and Display agree.
        for c in [
            Command::Rset,
            Command::Mail {
                from: "x@y",
                params: " BODY=8BITMIME",
            },
            Command::Rcpt { to: "z@w" },
            Command::Data,
            Command::Bdat { len: 0, last: true },
            Command::Bdat {
                len: 1234567890123,
                last: false,
            },
            Command::Bdat {
                len: usize::MAX,
                last: true,
            },
            Command::Quit,
        ] {
            let mut out = Vec::new();
            c.write_to(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), c.to_string());
        }
    }
}
