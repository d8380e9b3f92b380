//! Checks on what callers pass to the IMAP ops, done at the call so that
//! nothing malformed or injected ever reaches a server: CR, LF and NUL are
//! refused everywhere; UID sets, flags and search criteria are checked
//! against the IMAP grammar (RFC 3501 section 9).

use crate::status::{Error, Result};

/// Refuses control characters (CR, LF, NUL and the rest of C0, and DEL).
fn no_controls(what: &str, s: &str) -> Result<()> {
    if let Some(c) = s.chars().find(|c| c.is_ascii_control()) {
        return Err(Error::invalid(format!(
            "{what} must not contain control characters (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

/// A mailbox name as the API takes it (UTF-8). `INBOX` is case-insensitive
/// (RFC 3501 section 5.1), so any spelling of it becomes `INBOX`.
pub fn mailbox(what: &str, name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    no_controls(what, name)?;
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    Ok(name.to_string())
}

/// A LIST pattern (`*` and `%` are wildcards; "" asks for the hierarchy delimiter).
pub fn pattern(p: &str) -> Result<String> {
    no_controls("pattern", p)?;
    Ok(p.to_string())
}

/// A UID set: `1:5,7,10:*` (RFC 3501 `sequence-set`).
pub fn uid_set(s: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "uid_set {s:?} is not a UID set like \"1:5,7,10:*\": {why}"
        ))
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.len() > 100_000 {
        return Err(bad("it is longer than 100000 characters"));
    }
    for range in s.split(',') {
        let mut ends = range.split(':');
        let (Some(a), b, None) = (ends.next(), ends.next(), ends.next()) else {
            return Err(bad("a range has more than two ends"));
        };
        for n in std::iter::once(a).chain(b) {
            if n == "*" {
                continue;
            }
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad("each member is a number or *"));
            }
            match n.parse::<u32>() {
                Ok(0) => return Err(bad("UIDs start at 1")),
                Ok(_) => {}
                Err(_) => return Err(bad("a UID is at most 4294967295")),
            }
        }
    }
    Ok(s.to_string())
}

/// Characters an IMAP atom may not contain, besides controls and space.
fn atom_special(c: char) -> bool {
    matches!(c, '(' | ')' | '{' | ' ' | '%' | '*' | '"' | '\\' | ']')
}

/// A space separated list of flags: system flags (`\Seen`) and keywords
/// (`$Forwarded`). Returned with single spaces.
pub fn flags(s: &str) -> Result<String> {
    no_controls("flags", s)?;
    let mut out = Vec::new();
    for f in s.split_ascii_whitespace() {
        let body = f.strip_prefix('\\').unwrap_or(f);
        if body.is_empty()
            || !body
                .chars()
                .all(|c| c.is_ascii() && !c.is_ascii_control() && !atom_special(c))
        {
            return Err(Error::invalid(format!(
                "flag {f:?} is not a flag like \\Seen or a keyword like $Label"
            )));
        }
        out.push(f);
    }
    Ok(out.join(" "))
}

/// A piece of a command: text as it is, or a string sent as a literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Literal(Vec<u8>),
}

/// Search criteria, checked: balanced quotes and parentheses, no literal
/// markers, no CR/LF. Strings with non-ASCII text become literals and the
/// search asks for `CHARSET UTF-8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Criteria {
    pub parts: Vec<Part>,
}

impl Criteria {
    /// The criteria as one ASCII line, when they need no literal.
    pub fn as_line(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }
}

pub fn criteria(s: &str) -> Result<Criteria> {
    let bad = |why: &str| Error::invalid(format!("search criteria {s:?}: {why}"));
    if s.contains(['\r', '\n', '\0']) {
        return Err(bad("CR, LF and NUL are not allowed"));
    }
    no_controls("search criteria", s)?;
    if s.trim().is_empty() {
        return Err(bad("they are empty (use ALL for every message)"));
    }
    let toks = criteria_tokens(s, &bad)?;
    let utf8 = !s.is_ascii();
    let mut parts = Vec::new();
    let mut text = String::new();
    if utf8 && !s.trim_start().to_ascii_uppercase().starts_with("CHARSET ") {
        text.push_str("CHARSET UTF-8 ");
    }
    for t in toks {
        match t {
            Tok::Plain(p) if p.is_ascii() => text.push_str(&p),
            Tok::Plain(p) | Tok::Str(p) if !p.is_ascii() => {
                parts.push(Part::Text(std::mem::take(&mut text)));
                parts.push(Part::Literal(p.into_bytes()));
            }
            Tok::Plain(p) => text.push_str(&p),
            Tok::Str(p) => text.push_str(&quote(&p)),
        }
    }
    if !text.is_empty() || parts.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(Criteria { parts })
}

/// A token of search criteria.
enum Tok {
    Plain(String),
    /// A string's content, unescaped.
    Str(String),
}

/// Splits criteria into tokens, checking the grammar's framing as it goes:
/// closed quotes, balanced parentheses, no literals.
fn criteria_tokens(s: &str, bad: &dyn Fn(&str) -> Error) -> Result<Vec<Tok>> {
    let mut toks: Vec<Tok> = Vec::new();
    let mut depth = 0i32;
    let mut chars = s.chars();
    let mut plain = String::new();
    let flush = |plain: &mut String, toks: &mut Vec<Tok>| {
        if !plain.is_empty() {
            toks.push(Tok::Plain(std::mem::take(plain)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                flush(&mut plain, &mut toks);
                toks.push(Tok::Str(quoted_content(&mut chars, bad)?));
            }
            '{' => return Err(bad("literals ({n}) are not allowed; quote the string instead")),
            '(' | ')' | ' ' => {
                flush(&mut plain, &mut toks);
                if c == '(' {
                    depth += 1;
                } else if c == ')' {
                    depth -= 1;
                    if depth < 0 {
                        return Err(bad("a ) has no matching ("));
                    }
                }
                toks.push(Tok::Plain(c.to_string()));
            }
            c => plain.push(c),
        }
    }
    flush(&mut plain, &mut toks);
    if depth != 0 {
        return Err(bad("a ( is not closed"));
    }
    Ok(toks)
}

/// The content of a quoted string whose opening quote was read, unescaped,
/// up to and consuming its closing quote.
fn quoted_content(chars: &mut std::str::Chars<'_>, bad: &dyn Fn(&str) -> Error) -> Result<String> {
    let mut content = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(content),
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => content.push(e),
                _ => return Err(bad("inside quotes, \\ may only escape \" or \\")),
            },
            c => content.push(c),
        }
    }
    Err(bad("a quoted string is not closed"))
}

/// An IMAP quoted string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets() {
        for ok in ["1", "1:5", "1:5,7,10:*", "*", "4294967295", "3:1"] {
            assert_eq!(uid_set(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "0",
            "1:",
            ":1",
            "1::2",
            "a",
            "1,,2",
            "1 2",
            "1\r\n",
            "-1",
            "4294967296",
            "1:2:3",
            "1;2",
        ] {
            assert!(uid_set(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flag_lists() {
        assert_eq!(
            flags("\\Seen  \\Flagged $Label").unwrap(),
            "\\Seen \\Flagged $Label"
        );
        assert_eq!(flags("").unwrap(), "");
        for bad in [
            "\\Seen)",
            "(\\Seen",
            "a\"b",
            "\\",
            "x\r\nA1 LOGOUT",
            "caf\u{e9}",
            "a{3}",
            "\\Seen\0",
        ] {
            assert!(flags(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mailbox_names() {
        assert_eq!(mailbox("m", "inbox").unwrap(), "INBOX");
        assert_eq!(mailbox("m", "Archive/2024").unwrap(), "Archive/2024");
        assert!(mailbox("m", "").is_err());
        assert!(mailbox("m", "a\r\nb").is_err());
        assert!(mailbox("m", "a\0").is_err());
        assert!(pattern("*").is_ok() && pattern("").is_ok());
        assert!(pattern("x\n").is_err());
    }

    #[test]
    fn criteria_are_checked_and_kept() {
        let c = criteria("UNSEEN FROM \"bob\"").unwrap();
        assert_eq!(c.as_line(), Some("UNSEEN FROM \"bob\""));
        let c = criteria("OR (SUBJECT \"a \\\"b\\\"\") (LARGER 100)").unwrap();
        assert_eq!(c.as_line(), Some("OR (SUBJECT \"a \\\"b\\\"\") (LARGER 100)"));
        for bad in [
            "ALL\r\nA1 LOGOUT",
            "SUBJECT \"open",
            "SUBJECT {5}",
            "SUBJECT {5+}",
            "(UNSEEN",
            "UNSEEN)",
            "",
            "  ",
            "SUBJECT \"bad \\x escape\"",
            "ALL\n",
        ] {
            assert!(criteria(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn non_ascii_criteria_become_literals() {
        let c = criteria("SUBJECT \"caf\u{e9}\" UNSEEN").unwrap();
        assert_eq!(
            c.parts,
            vec![
                Part::Text("CHARSET UTF-8 SUBJECT ".into()),
                Part::Literal("caf\u{e9}".as_bytes().to_vec()),
                Part::Text(" UNSEEN".into()),
            ]
        );
        assert_eq!(c.as_line(), None);
    }
}
