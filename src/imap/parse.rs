//! IMAP responses as herald reads them itself (RFC 3501 section 7 and 9):
//! tagged status lines, continuations, and untagged data made of atoms,
//! strings (quoted or literal), NIL and parenthesised lists. A literal's
//! bytes are moved into the value, never copied.

use crate::status::{Error, Result, Status};

/// The deepest nesting of lists herald parses. Real responses nest a few
/// levels (BODYSTRUCTURE of a deep multipart a dozen or so); deeper is
/// PROTOCOL, and the connection is dropped.
pub(crate) const MAX_DEPTH: usize = 64;

/// A line or a literal of a response, in the order they came.
#[derive(Debug)]
pub enum Piece {
    /// A line without its CRLF; a literal marker `{n}` may end it.
    Line(Vec<u8>),
    Literal(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Atom(String),
    Str(Vec<u8>),
    Nil,
    List(Vec<Value>),
}

impl Value {
    pub fn atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }

    pub fn number(&self) -> Option<u64> {
        self.atom()?.parse().ok()
    }

    /// A string's text (lossy UTF-8); atoms count as strings (astring).
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Atom(a) => Some(a.clone()),
            _ => None,
        }
    }

    pub fn list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

/// The status of a tagged or untagged status response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Ok,
    No,
    Bad,
    Bye,
    PreAuth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    pub cond: Cond,
    /// The response code's text without brackets (`APPENDUID 38505 3955`).
    pub code: Option<String>,
    pub text: String,
}

impl StatusLine {
    /// The response code's first word, upper case (`APPENDUID`).
    pub fn code_name(&self) -> Option<String> {
        self.code
            .as_deref()
            .and_then(|c| c.split_ascii_whitespace().next())
            .map(|w| w.to_ascii_uppercase())
    }

    /// The server's text with its code, as a detail for an error.
    pub fn detail(&self) -> String {
        match &self.code {
            Some(c) => format!("[{c}] {}", self.text),
            None => self.text.clone(),
        }
    }

    /// The error for a NO or BAD: the status follows the response code
    /// (RFC 5530), the detail is the server's text.
    pub fn error(&self, what: &str) -> Error {
        let status = match self.cond {
            Cond::Bye => Status::Io,
            Cond::Bad => Status::Rejected,
            _ => no_status(self.code_name().as_deref(), &self.text),
        };
        Error::new(status, format!("{what}: {}", self.detail()))
    }
}

/// The status of a NO: by its response code (RFC 5530), or for servers
/// that send none (Dovecot's SELECT of a missing mailbox), by its text.
pub fn no_status(code: Option<&str>, text: &str) -> Status {
    if code.is_none() {
        let t = text.to_ascii_lowercase();
        if [
            "doesn't exist",
            "does not exist",
            "no such mailbox",
            "unknown mailbox",
            "mailbox not found",
        ]
        .iter()
        .any(|p| t.contains(p))
        {
            return Status::NotFound;
        }
    }
    code_status(code)
}

/// The status a NO with this response code gets.
pub fn code_status(code: Option<&str>) -> Status {
    match code {
        Some("NONEXISTENT" | "TRYCREATE") => Status::NotFound,
        Some("AUTHENTICATIONFAILED" | "AUTHORIZATIONFAILED" | "EXPIRED") => Status::Auth,
        Some("UNAVAILABLE" | "INUSE" | "SERVERBUG") => Status::Transient,
        Some("OVERQUOTA" | "LIMIT") => Status::Limit,
        _ => Status::Rejected,
    }
}

#[derive(Debug)]
pub enum Response {
    Tagged {
        tag: String,
        status: StatusLine,
    },
    Continue,
    Status(StatusLine),
    Exists(u32),
    /// `* n EXPUNGE`: the message's sequence number.
    Expunge(u32),
    /// `* n FETCH (...)`: the message's sequence number and attributes.
    Fetch {
        seq: u32,
        atts: Vec<Value>,
    },
    /// `* SEARCH`, `* CAPABILITY`, `* FLAGS` ...: the name and what follows.
    Data {
        name: String,
        values: Vec<Value>,
    },
}

/// Parses `[CODE ...] text` after a status word.
fn status_rest(cond: Cond, rest: &str) -> StatusLine {
    let rest = rest.trim_start();
    if let Some(after) = rest.strip_prefix('[') {
        // The code ends at the first ']' outside parentheses.
        let mut depth = 0i32;
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ']' if depth <= 0 => {
                    return StatusLine {
                        cond,
                        code: Some(after[..i].to_string()),
                        text: after[i + 1..].trim_start().to_string(),
                    }
                }
                _ => {}
            }
        }
    }
    StatusLine {
        cond,
        code: None,
        text: rest.to_string(),
    }
}

fn cond_of(word: &str) -> Option<Cond> {
    Some(match word.to_ascii_uppercase().as_str() {
        "OK" => Cond::Ok,
        "NO" => Cond::No,
        "BAD" => Cond::Bad,
        "BYE" => Cond::Bye,
        "PREAUTH" => Cond::PreAuth,
        _ => return None,
    })
}

/// Parses one complete response (its lines and literals).
pub fn parse_response(mut pieces: Vec<Piece>) -> Result<Response> {
    let first = match pieces.first() {
        Some(Piece::Line(l)) => l,
        _ => return Err(Error::protocol("empty response")),
    };
    let bad = |l: &[u8]| Error::protocol(format!("unexpected response: {}", String::from_utf8_lossy(l)));
    if first.starts_with(b"+") {
        return Ok(Response::Continue);
    }
    if let Some(rest) = first.strip_prefix(b"* ") {
        let line = String::from_utf8_lossy(rest).into_owned();
        let mut words = line.splitn(2, ' ');
        let w1 = words.next().unwrap_or("");
        let after1 = words.next().unwrap_or("");
        if let Some(cond) = cond_of(w1) {
            return Ok(Response::Status(status_rest(cond, after1)));
        }
        if let Ok(n) = w1.parse::<u32>() {
            let mut w = after1.splitn(2, ' ');
            let name = w.next().unwrap_or("").to_ascii_uppercase();
            match name.as_str() {
                "EXISTS" => return Ok(Response::Exists(n)),
                "EXPUNGE" => return Ok(Response::Expunge(n)),
                "FETCH" => {
                    let values = parse_values(&mut pieces, 2 + w1.len() + 1 + name.len())?;
                    let atts = match values.into_iter().next() {
                        Some(Value::List(l)) => l,
                        _ => return Err(bad(first_line(&pieces))),
                    };
                    return Ok(Response::Fetch { seq: n, atts });
                }
                _ => {
                    return Ok(Response::Data {
                        name,
                        values: vec![Value::Atom(n.to_string())],
                    })
                }
            }
        }
        let name = w1.to_ascii_uppercase();
        let values = parse_values(&mut pieces, 2 + w1.len())?;
        return Ok(Response::Data { name, values });
    }
    // Tagged: "tag SP cond SP text".
    let line = String::from_utf8_lossy(first).into_owned();
    let mut words = line.splitn(3, ' ');
    let (Some(tag), Some(w2)) = (words.next(), words.next()) else {
        return Err(bad(first));
    };
    let Some(cond) = cond_of(w2) else {
        return Err(bad(first));
    };
    Ok(Response::Tagged {
        tag: tag.to_string(),
        status: status_rest(cond, words.next().unwrap_or("")),
    })
}

fn first_line(pieces: &[Piece]) -> &[u8] {
    match pieces.first() {
        Some(Piece::Line(l)) => l,
        _ => b"",
    }
}

/// Reads values from `pieces`, starting at byte `at` of the first line.
pub fn parse_values(pieces: &mut [Piece], at: usize) -> Result<Vec<Value>> {
    let mut t = Tokens {
        pieces,
        idx: 0,
        pos: at,
    };
    let mut out = Vec::new();
    while let Some(v) = t.value()? {
        out.push(v);
    }
    Ok(out)
}

struct Tokens<'a> {
    pieces: &'a mut [Piece],
    idx: usize,
    pos: usize,
}

impl Tokens<'_> {
    fn line(&self) -> &[u8] {
        match self.pieces.get(self.idx) {
            Some(Piece::Line(l)) => l,
            _ => b"",
        }
    }

    fn peek(&self) -> Option<u8> {
        self.line().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// The next value; `None` at the end of the response or before a ')'.
    /// Iterative: lists are built on a stack of at most [`MAX_DEPTH`]
    /// levels, so no input can exhaust the thread's stack.
    fn value(&mut self) -> Result<Option<Value>> {
        let mut open: Vec<Vec<Value>> = Vec::new();
        loop {
            self.skip_spaces();
            let v = match self.peek() {
                None if open.is_empty() => return Ok(None),
                None => return Err(Error::protocol("a list in the response is not closed")),
                Some(b')') => {
                    let Some(items) = open.pop() else { return Ok(None) };
                    self.pos += 1;
                    Value::List(items)
                }
                Some(b'(') => {
                    if open.len() >= MAX_DEPTH {
                        return Err(Error::protocol(format!(
                            "the response nests lists deeper than {MAX_DEPTH} levels"
                        )));
                    }
                    self.pos += 1;
                    open.push(Vec::new());
                    continue;
                }
                // A literal8 (RFC 3516: BINARY's data) reads as a literal.
                Some(b'~') if self.line().get(self.pos + 1) == Some(&b'{') => {
                    self.pos += 1;
                    self.scalar(b'{')?
                }
                Some(c) => self.scalar(c)?,
            };
            match open.last_mut() {
                Some(list) => list.push(v),
                None => return Ok(Some(v)),
            }
        }
    }

    /// A quoted string, a literal, NIL or an atom starting with `c`.
    fn scalar(&mut self, c: u8) -> Result<Value> {
        match c {
            b'"' => {
                self.pos += 1;
                let mut s = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(Error::protocol("a quoted string in the response is not closed")),
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(Value::Str(s));
                        }
                        Some(b'\\') => {
                            self.pos += 1;
                            if let Some(e) = self.peek() {
                                s.push(e);
                                self.pos += 1;
                            }
                        }
                        Some(b) => {
                            s.push(b);
                            self.pos += 1;
                        }
                    }
                }
            }
            b'{' => {
                let line = self.line();
                if super::wire::literal_len(&line[self.pos..]).is_none() {
                    return Err(Error::protocol("a malformed literal in the response"));
                }
                let data = match self.pieces.get_mut(self.idx + 1) {
                    Some(Piece::Literal(d)) => std::mem::take(d),
                    _ => return Err(Error::protocol("a literal is missing from the response")),
                };
                self.idx += 2;
                self.pos = 0;
                Ok(Value::Str(data))
            }
            _ => {
                let line = self.line();
                let start = self.pos;
                let mut i = start;
                let mut bracket = 0i32;
                while i < line.len() {
                    match line[i] {
                        b'[' => bracket += 1,
                        b']' => bracket -= 1,
                        b' ' | b'(' | b')' if bracket <= 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
                let atom = String::from_utf8_lossy(&line[start..i]).into_owned();
                self.pos = i;
                if atom.eq_ignore_ascii_case("NIL") {
                    Ok(Value::Nil)
                } else {
                    Ok(Value::Atom(atom))
                }
            }
        }
    }
}

/// The fields of a FETCH response that herald reports.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FetchData {
    pub uid: Option<u32>,
    pub flags: Option<String>,
    pub size: Option<u64>,
    pub envelope: Option<Envelope>,
    pub body: Option<Vec<u8>>,
    pub header: Option<Vec<u8>>,
    /// CONDSTORE's `MODSEQ (n)`.
    pub modseq: Option<u64>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub message_id: Option<String>,
}

/// Reads a FETCH response's attribute list (`UID 5 FLAGS (\Seen) ...`).
pub fn fetch_data(atts: Vec<Value>) -> Result<FetchData> {
    let mut d = FetchData::default();
    let mut it = atts.into_iter();
    while let Some(name) = it.next() {
        let Some(name) = name.atom().map(str::to_ascii_uppercase) else {
            return Err(Error::protocol("a FETCH item without a name"));
        };
        let Some(v) = it.next() else {
            return Err(Error::protocol(format!("FETCH item {name} has no value")));
        };
        match name.as_str() {
            "UID" => d.uid = v.number().and_then(|n| u32::try_from(n).ok()),
            "FLAGS" => {
                d.flags = v
                    .list()
                    .map(|l| l.iter().filter_map(Value::atom).collect::<Vec<_>>().join(" "))
            }
            "RFC822.SIZE" => d.size = v.number(),
            "MODSEQ" => d.modseq = v.list().and_then(|l| l.first()).and_then(Value::number),
            "ENVELOPE" => d.envelope = v.list().map(envelope),
            "BODY[]" | "RFC822" => d.body = string_bytes(v),
            "BODY[HEADER]" | "RFC822.HEADER" => d.header = string_bytes(v),
            _ => {}
        }
    }
    Ok(d)
}

fn string_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::Str(b) => Some(b),
        Value::Atom(a) => Some(a.into_bytes()),
        _ => None,
    }
}

/// Decodes RFC 2047 encoded words (`=?UTF-8?B?...?=`) in UTF-8, US-ASCII
/// and ISO-8859-1; words in other charsets are left as they are.
pub fn decode_words(s: &str) -> String {
    use base64::Engine as _;
    let decode_one = |word: &str| -> Option<String> {
        let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
        let mut parts = inner.splitn(3, '?');
        let (charset, enc, text) = (parts.next()?, parts.next()?, parts.next()?);
        let charset = charset.split('*').next()?.to_ascii_lowercase();
        let bytes = match enc {
            "B" | "b" => base64::engine::general_purpose::STANDARD.decode(text).ok()?,
            "Q" | "q" => {
                let mut out = Vec::new();
                let b = text.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    match b[i] {
                        b'_' => out.push(b' '),
                        b'=' => {
                            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                            out.push(u8::from_str_radix(hex, 16).ok()?);
                            i += 2;
                        }
                        c => out.push(c),
                    }
                    i += 1;
                }
                out
            }
            _ => return None,
        };
        match charset.as_str() {
            "utf-8" | "utf8" | "us-ascii" => Some(String::from_utf8_lossy(&bytes).into_owned()),
            "iso-8859-1" | "latin1" => Some(bytes.iter().map(|&b| b as char).collect()),
            _ => None,
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, at) = rest.split_at(start);
        // The word ends at the first "?=" after its charset and encoding.
        let end = at
            .char_indices()
            .skip(2)
            .filter(|(i, _)| at[*i..].starts_with("?="))
            .map(|(i, _)| i + 2)
            .find(|&e| at[2..e - 2].matches('?').count() == 2);
        let Some(end) = end else { break };
        let word = &at[..end];
        match decode_one(word) {
            Some(text) => {
                // Whitespace between two encoded words is not part of the text (RFC 2047 6.2).
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str(word);
                last_was_word = false;
            }
        }
        rest = &at[end..];
    }
    out.push_str(rest);
    out
}

/// ENVELOPE: date, subject, from, sender, reply-to, to, cc, bcc,
/// in-reply-to, message-id (RFC 3501 section 7.4.2).
fn envelope(l: &[Value]) -> Envelope {
    let text = |i: usize| l.get(i).and_then(Value::text).filter(|s| !s.is_empty());
    Envelope {
        date: text(0),
        subject: text(1).map(|s| decode_words(&s)),
        from: l.get(2).and_then(addresses),
        to: l.get(5).and_then(addresses),
        message_id: text(9),
    }
}

/// An address list as `Name <mailbox@host>, ...` (group markers left out).
pub fn addresses(v: &Value) -> Option<String> {
    let list = v.list()?;
    let out: Vec<String> = list
        .iter()
        .filter_map(|a| {
            let f = a.list()?;
            let name = f
                .first()
                .and_then(Value::text)
                .filter(|s| !s.is_empty())
                .map(|s| decode_words(&s));
            let mailbox = f.get(2).and_then(Value::text)?;
            let host = f.get(3).and_then(Value::text)?;
            let addr = format!("{mailbox}@{host}");
            Some(match name {
                Some(n) => format!("{n} <{addr}>"),
                None => addr,
            })
        })
        .collect();
    (!out.is_empty()).then(|| out.join(", "))
}

/// `APPENDUID uidvalidity uid-set` (RFC 4315): the first `n` UIDs of the
/// set, in order (a MULTIAPPEND's set covers all its messages).
pub fn appenduids(status: &StatusLine, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let Some(code) = status.code.as_deref() else {
        return out;
    };
    let mut w = code.split_ascii_whitespace();
    if !w.next().is_some_and(|c| c.eq_ignore_ascii_case("APPENDUID")) {
        return out;
    }
    let (Some(_validity), Some(set)) = (w.next(), w.next()) else {
        return out;
    };
    for range in set.split(',') {
        let mut ends = range.splitn(2, ':').map(|x| x.parse::<u64>().ok());
        let (Some(Some(a)), b) = (ends.next(), ends.next()) else {
            return Vec::new();
        };
        let b = match b {
            None => a,
            Some(Some(b)) => b,
            Some(None) => return Vec::new(),
        };
        let (lo, hi) = (a.min(b), a.max(b));
        let mut u = lo;
        while u <= hi && out.len() < n {
            out.push(u);
            u += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(ps: &[&[u8]]) -> Vec<Piece> {
        ps.iter()
            .enumerate()
            .map(|(i, p)| {
                if i % 2 == 0 {
                    Piece::Line(p.to_vec())
                } else {
                    Piece::Literal(p.to_vec())
                }
            })
            .collect()
    }

    #[test]
    fn tagged_and_status_lines() {
        let Response::Tagged { tag, status } =
            parse_response(lines(&[b"h3 OK [APPENDUID 38505 3955] APPEND completed"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(tag, "h3");
        assert_eq!(status.cond, Cond::Ok);
        assert_eq!(appenduids(&status, 1), [3955]);
        let st = |code: &str| StatusLine {
            cond: Cond::Ok,
            code: Some(code.into()),
            text: String::new(),
        };
        assert_eq!(appenduids(&st("APPENDUID 1 5:7,9"), 10), [5, 6, 7, 9]);
        assert_eq!(appenduids(&st("APPENDUID 1 1:4294967295"), 3), [1, 2, 3]);
        assert_eq!(appenduids(&st("APPENDUID 1 x"), 3), Vec::<u64>::new());
        assert_eq!(appenduids(&st("COPYUID 1 2 3"), 3), Vec::<u64>::new());
        let Response::Tagged { status, .. } =
            parse_response(lines(&[b"h4 NO [NONEXISTENT] Mailbox doesn't exist: x"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(status.error("SELECT x").status, Status::NotFound);
        assert!(status.error("SELECT x").detail.contains("Mailbox doesn't exist"));
        let Response::Tagged { status, .. } = parse_response(lines(&[
            b"h5 NO Mailbox doesn't exist: Nowhere (0.001 + 0.000 secs).",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(status.error("EXAMINE Nowhere").status, Status::NotFound);
        let Response::Tagged { status, .. } =
            parse_response(lines(&[b"h6 NO [CANNOT] Not allowed"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(status.error("x").status, Status::Rejected);
        let Response::Status(s) =
            parse_response(lines(&[b"* OK [PERMANENTFLAGS (\\Seen \\*)] Flags permitted."])).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.code.as_deref(), Some("PERMANENTFLAGS (\\Seen \\*)"));
        assert!(matches!(
            parse_response(lines(&[b"+ idling"])).unwrap(),
            Response::Continue
        ));
        assert!(matches!(
            parse_response(lines(&[b"* 23 EXISTS"])).unwrap(),
            Response::Exists(23)
        ));
        assert!(matches!(
            parse_response(lines(&[b"* 2 EXPUNGE"])).unwrap(),
            Response::Expunge(2)
        ));
        assert!(parse_response(lines(&[b"garbage"])).is_err());
        assert!(parse_response(lines(&[b"h1 MAYBE"])).is_err());
    }

    #[test]
    fn fetch_with_literals_and_envelope() {
        let r = parse_response(lines(&[
            b"* 12 FETCH (UID 7 FLAGS (\\Seen $Label) RFC822.SIZE 44 ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800\" {5}",
            b"Hi (]",
            b" ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) NIL NIL ((NIL NIL \"mooch\" \"owatagu.siam.edu\")(NIL NIL \"b\" \"c.d\")) NIL NIL NIL \"<B27397-0100000@Blurdybloop.COM>\") BODY[] {10}",
            b"a\r\n)b\r\n{3}",
            b")",
        ]))
        .unwrap();
        let Response::Fetch { seq, atts } = r else {
            panic!()
        };
        assert_eq!(seq, 12);
        let d = fetch_data(atts).unwrap();
        assert_eq!(d.uid, Some(7));
        assert_eq!(d.flags.as_deref(), Some("\\Seen $Label"));
        assert_eq!(d.size, Some(44));
        assert_eq!(d.body.as_deref(), Some(&b"a\r\n)b\r\n{3}"[..]));
        let e = d.envelope.unwrap();
        assert_eq!(e.subject.as_deref(), Some("Hi (]"));
        assert_eq!(e.from.as_deref(), Some("Fred Foobar <foobar@Blurdybloop.COM>"));
        assert_eq!(e.to.as_deref(), Some("mooch@owatagu.siam.edu, b@c.d"));
        assert_eq!(e.message_id.as_deref(), Some("<B27397-0100000@Blurdybloop.COM>"));
        assert_eq!(e.date.as_deref(), Some("Mon, 7 Feb 1994 21:52:25 -0800"));
    }

    #[test]
    fn header_section_and_nil() {
        let r = parse_response(lines(&[
            b"* 1 FETCH (UID 3 BODY[HEADER] \"Subject: x\\r\" FLAGS ())",
        ]))
        .unwrap();
        let Response::Fetch { atts, .. } = r else { panic!() };
        let d = fetch_data(atts).unwrap();
        assert_eq!(d.header.as_deref(), Some(&b"Subject: xr"[..]));
        assert_eq!(d.flags.as_deref(), Some(""));
        let r = parse_response(lines(&[b"* 1 FETCH (UID 3 BODY[] NIL)"])).unwrap();
        let Response::Fetch { atts, .. } = r else { panic!() };
        assert_eq!(fetch_data(atts).unwrap().body, None);
    }

    #[test]
    fn broken_responses_are_errors_not_panics() {
        for bad in [
            &b"* 1 FETCH (UID 3"[..],
            b"* 1 FETCH (UID 3 BODY[] {5}",
            b"* 1 FETCH UID",
            b"* 1 FETCH (\"unterminated",
            b"* 1 FETCH (UID)",
            b"* 1 FETCH ((",
        ] {
            let r = parse_response(lines(&[bad])).and_then(|r| match r {
                Response::Fetch { atts, .. } => fetch_data(atts).map(|_| ()),
                _ => Ok(()),
            });
            assert!(r.is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn nesting_is_limited_without_recursion() {
        for depth in [MAX_DEPTH + 1, 400, 12_000, 1_000_000] {
            for head in ["* FLAGS ", "* 1 FETCH (BODYSTRUCTURE ", "* LIST "] {
                let mut line = head.as_bytes().to_vec();
                line.extend(std::iter::repeat_n(b'(', depth));
                let e = parse_response(lines(&[&line])).unwrap_err();
                assert_eq!(e.status, Status::Protocol, "{head} {depth}");
                assert!(e.detail.contains("deeper than"), "{}", e.detail);
            }
        }
        // As deep as allowed, and closed: parsed.
        let mut line = b"* FLAGS ".to_vec();
        line.extend(std::iter::repeat_n(b'(', MAX_DEPTH));
        line.extend_from_slice(b"x");
        line.extend(std::iter::repeat_n(b')', MAX_DEPTH));
        let Response::Data { values, .. } = parse_response(lines(&[&line])).unwrap() else {
            panic!()
        };
        let mut v = &values[0];
        for _ in 0..MAX_DEPTH {
            v = &v.list().unwrap()[0];
        }
        assert_eq!(v.atom(), Some("x"));
        // Unbalanced the other way: a stray ')' ends the values.
        assert!(parse_response(lines(&[b"* FLAGS ))))"])).is_ok());
        assert!(parse_response(lines(&[b"* FLAGS (a (b) c"])).is_err());
    }

    #[test]
    fn garbage_nul_and_invalid_utf8_are_errors_or_data_never_panics() {
        for bad in [
            &b"\0\0\0"[..],
            b"* \xff\xfe FETCH (",
            b"* 1 FETCH (UID \xff BODY[] \"\xc3\")",
            b"*",
            b"* ",
            b"+",
            b"h1",
            b"h1 ",
            b"* OK [",
            b"* OK [((((]",
            b"* 4294967296 EXISTS",
            b"* 1 FETCH (BODY[] {3}",
            b"* 1 FETCH (BODY[] {-3}",
        ] {
            let _ = parse_response(lines(&[bad]));
        }
    }

    #[test]
    fn encoded_words() {
        assert_eq!(decode_words("=?UTF-8?B?R3LDvMOfZQ==?="), "Gr\u{fc}\u{df}e");
        assert_eq!(
            decode_words("=?iso-8859-1?Q?caf=E9_au_lait?= ok"),
            "caf\u{e9} au lait ok"
        );
        assert_eq!(decode_words("a =?utf-8?q?x?= =?utf-8?q?y?= b"), "a xy b");
        assert_eq!(decode_words("=?koi8-r?B?8NLJ18XU?="), "=?koi8-r?B?8NLJ18XU?=");
        assert_eq!(decode_words("plain =? text ?= here"), "plain =? text ?= here");
        assert_eq!(decode_words("=?utf-8?Q?bad=Z?="), "=?utf-8?Q?bad=Z?=");
        assert_eq!(decode_words("=?utf-8?Q?trail="), "=?utf-8?Q?trail=");
        assert_eq!(decode_words("=?utf-8?Q?end=?="), "=?utf-8?Q?end=?=");
    }
}
