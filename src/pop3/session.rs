//! A POP3 session (RFC 1939, 2449, 2595, 5034): greeting, CAPA, STLS or
//! implicit TLS, login (SASL OAUTHBEARER, XOAUTH2, SCRAM or PLAIN,
//! USER/PASS, APOP), and the
//! maildrop's message map (STAT, UIDL, LIST), taken once per session: a
//! POP3 server shows each session the maildrop as it was at login.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use super::command::Command;
use super::md5;
use super::response::{read_body, read_listing, read_response, Kind, Response};
use crate::log::{Tracer, DEBUG, TRACE};
use crate::net::{self, ConnCtl, Stream, Transport};
use crate::options::Options;
use crate::sasl::{self, Exchange, Mech};
use crate::status::{Error, Result, Status};

/// Most lines accepted in a CAPA listing.
const MAX_CAPA_LINES: usize = 1000;
/// Most bytes accepted in a CAPA listing.
const MAX_CAPA_BYTES: usize = 64 * 1024;
/// What a maildrop listing (UIDL, LIST) may take per message STAT
/// announced: a well-formed line is under 90 bytes (RFC 1939: a UIDL is
/// at most 70 characters), plus the bookkeeping `read_listing` counts.
const LISTING_BYTES_PER_MESSAGE: usize = 256;
/// Most messages accepted in one maildrop (bounds the listings' memory).
const MAX_MESSAGES: usize = 10_000_000;
/// RFC 5034 §4: an AUTH command with its initial response is at most 255 octets.
const MAX_AUTH_LINE: usize = 255;
/// Most SASL challenges one exchange may take (SCRAM needs two).
const MAX_CHALLENGES: usize = 8;

/// What the server said in its CAPA reply (RFC 2449).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered CAPA at all (RFC 1939-only servers don't).
    pub known: bool,
    pub top: bool,
    pub uidl: bool,
    pub pipelining: bool,
    pub stls: bool,
    pub user: bool,
    pub resp_codes: bool,
    /// SASL mechanisms, upper case.
    pub sasl: Vec<String>,
    /// The CAPA lines as the server sent them (the test-account op's report).
    pub announced: Vec<String>,
}

impl Capabilities {
    pub fn parse(lines: &[String]) -> Capabilities {
        let mut c = Capabilities {
            known: true,
            announced: lines.to_vec(),
            ..Default::default()
        };
        for line in lines {
            let mut words = line.split_whitespace();
            let Some(tag) = words.next() else { continue };
            match tag.to_ascii_uppercase().as_str() {
                "TOP" => c.top = true,
                "UIDL" => c.uidl = true,
                "PIPELINING" => c.pipelining = true,
                "STLS" => c.stls = true,
                "USER" => c.user = true,
                "RESP-CODES" => c.resp_codes = true,
                "SASL" => {
                    for m in words {
                        let m = m.to_ascii_uppercase();
                        if !c.sasl.contains(&m) {
                            c.sasl.push(m);
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }

    fn sasl(&self, mech: &str) -> bool {
        self.sasl.iter().any(|m| m == mech)
    }
}

/// One message of the maildrop, as this session numbers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The message number, valid in this session only.
    pub num: u32,
    pub uidl: String,
    /// Octets, as LIST says.
    pub size: u64,
}

/// An open POP3 session over `S`, logged in (TRANSACTION state) once
/// [`Session::open`] returns it.
pub struct Session<S: Read + Write> {
    /// The connection: reads, and the one traced write path.
    pub conn: Transport<S>,
    pub caps: Capabilities,
    pub tls: bool,
    /// When the maildrop map was taken: what this session can see is the
    /// maildrop as of then.
    pub opened_at: Instant,
    /// The maildrop's messages in message-number order.
    pub entries: Vec<Entry>,
    index: HashMap<String, usize>,
    /// Total octets (STAT).
    pub octets: u64,
    /// Messages marked deleted (DELE) and neither committed nor reset.
    pub marked: usize,
    /// The greeting's APOP timestamp, "<...@...>".
    apop_stamp: Option<String>,
    /// Most bytes of one UIDL or LIST listing (MAX_MESSAGE_BYTES).
    max_listing: usize,
    /// How the last login attempt went: a SASL mechanism, "APOP" or "USER".
    pub mechanism: Option<String>,
}

/// The APOP timestamp in a greeting: "<" ... "@" ... ">" (RFC 1939 §7).
fn apop_stamp(greeting: &str) -> Option<String> {
    let start = greeting.find('<')?;
    let len = greeting[start..].find('>')?;
    let stamp = &greeting[start..=start + len];
    (stamp.contains('@') && stamp.is_ascii() && !stamp.contains(' ')).then(|| stamp.to_string())
}

#[cfg(test)]
fn b64(s: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl<S: Read + Write> Session<S> {
    /// A session over `stream`, not yet greeted (the tests' and fuzz targets' way in).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn new(stream: S, trace: Tracer) -> Self {
        Self::over(Transport::new(stream, trace, "the POP3 server"))
    }

    /// A session over an open transport (a fresh one after STLS).
    fn over(conn: Transport<S>) -> Self {
        Session {
            conn,
            caps: Capabilities::default(),
            tls: false,
            opened_at: Instant::now(),
            entries: Vec::new(),
            index: HashMap::new(),
            octets: 0,
            marked: 0,
            apop_stamp: None,
            max_listing: crate::options::DEFAULT_MAX_MESSAGE_BYTES,
            mechanism: None,
        }
    }

    /// Applies MAX_LINE_BYTES and MAX_MESSAGE_BYTES to this connection.
    pub fn set_limits(&mut self, o: &Options) {
        self.conn.set_max_line(o.max_line_bytes);
        self.max_listing = o.max_message_bytes;
    }

    pub fn tracer(&self) -> &Tracer {
        self.conn.tracer()
    }

    /// Writes `data` (one or more commands) and logs each command line.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.conn.transmit(data)
    }

    /// Writes `cmds`, one line each, in one write (PIPELINING).
    pub fn send_all(&mut self, cmds: &[Command]) -> Result<()> {
        let mut out = Vec::new();
        for c in cmds {
            c.write_to(&mut out);
        }
        self.send(&out)
    }

    /// Reads one status line.
    pub fn response(&mut self) -> Result<Response> {
        let r = read_response(&mut self.conn)?;
        self.tracer().log(TRACE, || format!("S: {r}"));
        Ok(r)
    }

    /// Sends one command (a [`Command`]; the driver's raw text still
    /// passes) and reads its status line.
    pub fn command(&mut self, cmd: impl fmt::Display) -> Result<Response> {
        self.send(format!("{cmd}\r\n").as_bytes())?;
        self.response()
    }

    /// Reads a multi-line listing; the trace shows only its length.
    fn listing(&mut self, max_lines: usize, what: &str) -> Result<Vec<String>> {
        let max_bytes = max_lines
            .saturating_mul(LISTING_BYTES_PER_MESSAGE)
            .saturating_add(64 * 1024)
            .min(self.max_listing);
        let lines = read_listing(&mut self.conn, max_lines, max_bytes).map_err(|mut e| {
            e.detail = format!("{what} listing: {}", e.detail);
            e
        })?;
        self.tracer()
            .log(TRACE, || format!("S: <{what} listing, {} lines>", lines.len()));
        Ok(lines)
    }

    /// Reads a message body (RETR, TOP) into `out`; the trace shows only its size.
    pub fn body(&mut self, limit: usize, out: &mut Vec<u8>, progress: &mut dyn FnMut(u64)) -> Result<()> {
        read_body(&mut self.conn, limit, out, progress)?;
        self.tracer()
            .log(TRACE, || format!("S: <message, {} bytes>", out.len()));
        Ok(())
    }

    /// Reads the greeting: +OK (keeping an APOP timestamp), or the refusal.
    pub fn greeting(&mut self) -> Result<()> {
        let r = self.response()?;
        match r.kind {
            Kind::Ok => {
                self.apop_stamp = apop_stamp(&r.text);
                Ok(())
            }
            Kind::Err => Err(r.error("the server refused the connection")),
            Kind::Continue => Err(Error::protocol(format!("unexpected greeting: {r}"))),
        }
    }

    /// Asks for the capabilities; a server without CAPA has none we know of.
    pub fn capa(&mut self) -> Result<()> {
        self.send_all(&[Command::Capa])?;
        self.read_capa()
    }

    fn read_capa(&mut self) -> Result<()> {
        let r = self.response()?;
        match r.kind {
            Kind::Ok => {
                let lines = read_listing(&mut self.conn, MAX_CAPA_LINES, MAX_CAPA_BYTES)?;
                for l in &lines {
                    self.tracer().log(TRACE, || format!("S: {l}"));
                }
                self.caps = Capabilities::parse(&lines);
            }
            Kind::Err => {}
            Kind::Continue => return Err(Error::protocol(format!("unexpected reply to CAPA: {r}"))),
        }
        Ok(())
    }

    /// Logs in with the best mechanism both sides have. With a token, SASL
    /// OAUTHBEARER, then XOAUTH2. With a password, SASL SCRAM-SHA-256 or
    /// SCRAM-SHA-1 first (the password never goes over the wire); then, over
    /// an unencrypted connection, APOP (it does not reveal the password);
    /// over TLS, SASL PLAIN, then USER/PASS, then APOP.
    pub fn authenticate(&mut self, user: &str, password: Option<&str>, token: Option<&str>) -> Result<()> {
        if let Some(token) = token {
            let Some(mech) = sasl::choose(&sasl::TOKEN_ORDER, |m| self.caps.sasl(m)) else {
                return Err(self.no_mechanism(&format!("SASL {}", sasl::names(&sasl::TOKEN_ORDER))));
            };
            return self.sasl(Exchange::new(mech, user, token));
        }
        let Some(pass) = password else {
            return Err(Error::invalid("USERNAME is set without PASSWORD or OAUTH2_TOKEN"));
        };
        if let Some(mech) = sasl::choose(&[Mech::ScramSha256, Mech::ScramSha1], |m| self.caps.sasl(m)) {
            return self.sasl(Exchange::new(mech, user, pass));
        }
        let plain = self.caps.sasl("PLAIN");
        // Without CAPA, USER/PASS is the baseline every server knows.
        let user_pass = self.caps.user || !self.caps.known;
        if let Some(stamp) = self.apop_stamp.clone() {
            if !self.tls || (!plain && !user_pass) {
                match self.apop(user, pass, &stamp) {
                    // Some servers send a timestamp but keep APOP secrets for
                    // some users only: the user chose a plain connection, so
                    // the password may go as it would without the timestamp.
                    Err(e) if e.status == Status::Auth && (plain || user_pass) => {
                        self.tracer().log(DEBUG, || {
                            format!("APOP refused ({}); trying the next mechanism", e.detail)
                        });
                    }
                    r => return r,
                }
            }
        }
        if plain {
            return self.sasl(Exchange::new(Mech::Plain, user, pass));
        }
        if user_pass {
            self.mechanism = Some("USER".into());
            let r = self.command(Command::User(user))?;
            if !r.is_ok() {
                return Err(r.auth_error());
            }
            self.conn.transmit_secret("PASS ", pass)?;
            let r = self.response()?;
            return if r.is_ok() { Ok(()) } else { Err(r.auth_error()) };
        }
        Err(self.no_mechanism("SASL PLAIN, USER or APOP"))
    }

    fn apop(&mut self, user: &str, pass: &str, stamp: &str) -> Result<()> {
        self.mechanism = Some("APOP".into());
        let digest = md5::hex_digest(format!("{stamp}{pass}").as_bytes());
        self.conn.transmit_secret(&format!("APOP {user} "), &digest)?;
        let r = self.response()?;
        if r.is_ok() {
            Ok(())
        } else {
            Err(r.auth_error())
        }
    }

    /// AUTH with an initial response (RFC 5034), sent on the command line
    /// when it fits, else after the server's "+"; each challenge answered
    /// by the mechanism. A challenge it cannot answer cancels the exchange ("*").
    fn sasl(&mut self, mut x: Exchange) -> Result<()> {
        let mech = x.mech().name();
        self.mechanism = Some(mech.to_string());
        let ir = sasl::b64(&x.initial()?.unwrap_or_default());
        let head = format!("AUTH {mech} ");
        let mut r = if head.len() + ir.len() + 2 <= MAX_AUTH_LINE {
            self.conn.transmit_secret(&head, &ir)?;
            self.response()?
        } else {
            let r = self.command(Command::Auth(mech))?;
            if r.kind != Kind::Continue {
                return Err(r.auth_error());
            }
            self.conn.transmit_secret("", &ir)?;
            self.response()?
        };
        for _ in 0..MAX_CHALLENGES {
            if r.kind != Kind::Continue {
                break;
            }
            match sasl::unb64(r.text.as_bytes()).and_then(|ch| x.respond(&ch)) {
                Ok(a) => self.conn.transmit_secret("", &sasl::b64(&a))?,
                Err(e) => {
                    self.send(b"*\r\n")?;
                    let _ = self.response()?;
                    return Err(e);
                }
            }
            r = self.response()?;
        }
        match r.kind {
            Kind::Ok => x.finish(),
            Kind::Continue => Err(Error::protocol(format!(
                "the server sent more than {MAX_CHALLENGES} challenges to AUTH {mech}"
            ))),
            Kind::Err => Err(x.with_server_error(r.auth_error())),
        }
    }

    fn no_mechanism(&self, wanted: &str) -> Error {
        let offered = if self.caps.sasl.is_empty() {
            "no SASL mechanism".to_string()
        } else {
            format!("SASL {}", self.caps.sasl.join(" "))
        };
        Error::new(
            Status::Unsupported,
            format!("the server offers {offered}, not {wanted}"),
        )
    }

    /// After login: CAPA again (servers may say more once logged in), then
    /// the maildrop map: STAT, UIDL and LIST, sent together when the server
    /// pipelines.
    pub fn load_maildrop(&mut self) -> Result<()> {
        let batched = self.caps.pipelining;
        if batched {
            self.send_all(&[Command::Capa, Command::Stat, Command::Uidl, Command::List])?;
        } else {
            self.send_all(&[Command::Capa])?;
        }
        let before = self.caps.clone();
        self.read_capa()?;
        if !self.caps.known {
            self.caps = before;
        }
        let batched_now = batched || self.caps.pipelining;
        if !batched && batched_now {
            self.send_all(&[Command::Stat, Command::Uidl, Command::List])?;
        }

        if !batched_now {
            self.send_all(&[Command::Stat])?;
        }
        let r = self.response()?;
        if !r.is_ok() {
            return Err(r.error("STAT"));
        }
        let (count, octets) = r.stat()?;
        if count > MAX_MESSAGES {
            return Err(Error::new(
                Status::Limit,
                format!("the maildrop holds {count} messages; herald handles at most {MAX_MESSAGES}"),
            ));
        }
        self.octets = octets;

        if !batched_now {
            self.send_all(&[Command::Uidl])?;
        }
        let r = self.response()?;
        let uidls = if r.is_ok() {
            Some(self.listing(count, "UIDL")?)
        } else {
            None
        };

        if !batched_now {
            self.send_all(&[Command::List])?;
        }
        let r_list = self.response()?;
        let sizes = if r_list.is_ok() {
            self.listing(count, "LIST")?
        } else {
            return Err(r_list.error("LIST"));
        };
        let Some(uidls) = uidls else {
            return Err(Error::new(
                Status::Unsupported,
                format!("the server does not support UIDL ({r}), by which herald names messages"),
            ));
        };
        self.set_map(&uidls, &sizes)
    }

    /// Builds the message map from the UIDL and LIST listings.
    fn set_map(&mut self, uidls: &[String], sizes: &[String]) -> Result<()> {
        let pair = |line: &str, what: &str| -> Result<(u32, String)> {
            let mut w = line.split_whitespace();
            let num = w.next().and_then(|n| n.parse::<u32>().ok()).filter(|n| *n > 0);
            match (num, w.next()) {
                (Some(n), Some(v)) => Ok((n, v.to_string())),
                _ => Err(Error::protocol(format!("malformed {what} line: {line:?}"))),
            }
        };
        let mut size_of = HashMap::with_capacity(sizes.len());
        for line in sizes {
            let (n, v) = pair(line, "LIST")?;
            let size = v
                .parse::<u64>()
                .map_err(|_| Error::protocol(format!("malformed LIST line: {line:?}")))?;
            size_of.insert(n, size);
        }
        self.entries.clear();
        self.index.clear();
        for line in uidls {
            let (num, uidl) = pair(line, "UIDL")?;
            if uidl.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
                return Err(Error::protocol(format!("malformed UIDL line: {line:?}")));
            }
            let size = size_of.get(&num).copied().unwrap_or(0);
            self.entries.push(Entry { num, uidl, size });
        }
        self.entries.sort_by_key(|e| e.num);
        if self.entries.windows(2).any(|w| w[0].num == w[1].num) {
            return Err(Error::protocol("the UIDL listing repeats a message number"));
        }
        // A UIDL the server repeats names its first message only.
        self.index = self
            .entries
            .iter()
            .enumerate()
            .rev()
            .map(|(i, e)| (e.uidl.clone(), i))
            .collect();
        self.opened_at = Instant::now();
        Ok(())
    }

    /// The message named `uidl` in this session, if the maildrop has it.
    pub fn lookup(&self, uidl: &str) -> Option<&Entry> {
        self.index.get(uidl).map(|&i| &self.entries[i])
    }
}

impl Session<Stream> {
    /// Connects and sets the session up as the options say: TLS, login,
    /// and the maildrop map.
    pub fn open(
        o: &Options,
        tls: &mut Option<native_tls::TlsConnector>,
        ctl: &Arc<ConnCtl>,
        trace: Tracer,
    ) -> Result<Session<Stream>> {
        let stream = net::open_stream(o, tls, ctl, &trace)?;
        let mut s = Session::over(Transport::new(stream, trace, "the POP3 server").with_ctl(ctl));
        s.set_limits(o);
        s.tls = s.conn.is_tls();
        s.greeting()?;
        s.capa()?;
        if net::wants_starttls(o, s.tls, s.caps.stls, "STLS")? {
            s = s.stls(o, tls)?;
        }
        let Some(user) = &o.username else {
            return Err(Error::invalid("a POP3 client needs USERNAME"));
        };
        net::check_credentials_channel(o, s.tls, "STLS")?;
        let token = o.oauth2_token.for_login()?;
        s.authenticate(user, o.password.as_deref(), token.as_deref())?;
        s.load_maildrop()?;
        Ok(s)
    }

    /// STLS (RFC 2595), then CAPA again: what the server said before TLS
    /// is not to be trusted.
    fn stls(mut self, o: &Options, tls: &mut Option<native_tls::TlsConnector>) -> Result<Self> {
        let r = self.command(Command::Stls)?;
        if !r.is_ok() {
            return Err(Error::new(Status::Tls, format!("STLS refused: {r}")));
        }
        let apop_stamp = self.apop_stamp.take();
        let mut s = Session::over(self.conn.upgrade(o, tls, "STLS")?);
        s.set_limits(o);
        s.tls = true;
        s.apop_stamp = apop_stamp;
        s.capa()?;
        Ok(s)
    }

    /// Ends the session politely, committing nothing the user did not ask
    /// for: RSET first if messages are marked, then QUIT, waiting briefly.
    pub fn quit(mut self) {
        self.conn.bound_quit_wait(net::QUIT_WAIT);
        if self.marked > 0 {
            match self.command(Command::Rset) {
                Ok(r) if r.is_ok() => self.marked = 0,
                // Not reset: close without QUIT, so nothing is deleted.
                _ => return,
            }
        }
        let _ = self.command(Command::Quit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mem::MemStream;
    use std::sync::Mutex;

    fn session(server: &str) -> (Session<MemStream>, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let trace = Tracer::new(
            Arc::new(move |_, line: &str| l.lock().unwrap().push(line.to_string())),
            Arc::new(|_| true),
        );
        let s = Session::new(MemStream::chunked(server, 5), trace);
        (s, log)
    }

    fn sent(s: &Session<MemStream>) -> String {
        s.conn.get_ref().written()
    }

    const CAPA: &str =
        "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n";

    #[test]
    fn capabilities() {
        let (mut s, _) = session(CAPA);
        s.capa().unwrap();
        let c = &s.caps;
        assert!(c.known && c.top && c.uidl && c.pipelining && c.stls && c.user && c.resp_codes);
        assert_eq!(c.sasl, ["PLAIN", "LOGIN"]);
        let (mut s, _) = session("-ERR unknown command\r\n");
        s.capa().unwrap();
        assert!(!s.caps.known && !s.caps.user);
    }

    #[test]
    fn apop_timestamp_from_the_greeting() {
        let (mut s, _) = session("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
        s.greeting().unwrap();
        assert_eq!(s.apop_stamp.as_deref(), Some("<1896.697170952@dbc.mtview.ca.us>"));
        let (mut s, _) = session("+OK Dovecot ready.\r\n");
        s.greeting().unwrap();
        assert_eq!(s.apop_stamp, None);
        let (mut s, _) = session("-ERR [SYS/TEMP] overloaded\r\n");
        assert_eq!(s.greeting().unwrap_err().status, Status::Transient);
        let (mut s, _) = session("* OK IMAP4rev1\r\n");
        assert_eq!(s.greeting().unwrap_err().status, Status::Protocol);
    }

    #[test]
    fn plain_over_tls_and_the_password_never_logged() {
        let (mut s, log) = session("+OK Logged in.\r\n");
        s.caps = Capabilities::parse(&["SASL PLAIN".into(), "USER".into()]);
        s.tls = true;
        s.authenticate("bob", Some("hunter2"), None).unwrap();
        let want = format!("AUTH PLAIN {}\r\n", b64(b"\0bob\0hunter2"));
        assert_eq!(sent(&s), want);
        let log = log.lock().unwrap().join("\n");
        assert!(log.contains("C: AUTH PLAIN <credentials hidden>"), "{log}");
        assert!(
            !log.contains("hunter2") && !log.contains(&b64(b"\0bob\0hunter2")),
            "{log}"
        );
    }

    #[test]
    fn user_pass_without_sasl_plain() {
        let (mut s, log) = session("+OK\r\n+OK Logged in.\r\n");
        s.caps = Capabilities::parse(&["USER".into(), "SASL LOGIN".into()]);
        s.tls = true;
        s.authenticate("bob", Some("hunter2"), None).unwrap();
        assert_eq!(sent(&s), "USER bob\r\nPASS hunter2\r\n");
        let log = log.lock().unwrap().join("\n");
        assert!(
            log.contains("C: PASS <credentials hidden>") && !log.contains("hunter2"),
            "{log}"
        );
    }

    #[test]
    fn bad_password_is_auth() {
        let (mut s, _) = session("+OK\r\n-ERR [AUTH] Authentication failed.\r\n");
        s.caps = Capabilities::parse(&["USER".into()]);
        s.tls = true;
        let e = s.authenticate("bob", Some("wrong"), None).unwrap_err();
        assert_eq!(e.status, Status::Auth);
        assert!(e.detail.contains("Authentication failed"), "{e}");
        let (mut s, _) = session("+OK\r\n-ERR [IN-USE] Mailbox is locked\r\n");
        s.caps = Capabilities::parse(&["USER".into()]);
        s.tls = true;
        let e = s.authenticate("bob", Some("right"), None).unwrap_err();
        assert_eq!(e.status, Status::Transient);
    }

    #[test]
    fn apop_first_on_a_plain_connection() {
        let (mut s, log) = session(
            "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n+OK maildrop has 1 message\r\n",
        );
        s.greeting().unwrap();
        s.caps = Capabilities::parse(&["USER".into(), "SASL PLAIN".into()]);
        s.authenticate("mrose", Some("tanstaaf"), None).unwrap();
        assert_eq!(sent(&s), "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
        assert!(!log.lock().unwrap().join("\n").contains("c4c9334b"));
    }

    #[test]
    fn apop_refused_falls_back_to_user_pass() {
        let (mut s, _) = session("+OK ready <1.2@host>\r\n-ERR [AUTH] no APOP secret\r\n+OK\r\n+OK in\r\n");
        s.greeting().unwrap();
        s.caps = Capabilities::parse(&["USER".into()]);
        s.authenticate("bob", Some("pw"), None).unwrap();
        let out = sent(&s);
        assert!(
            out.starts_with("APOP bob ") && out.ends_with("USER bob\r\nPASS pw\r\n"),
            "{out}"
        );
    }

    #[test]
    fn xoauth2_with_its_error_challenge() {
        let token = "ya29.secret-token";
        let (mut s, log) = session("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n-ERR [AUTH] invalid token\r\n");
        s.caps = Capabilities::parse(&["SASL XOAUTH2".into()]);
        s.tls = true;
        let e = s.authenticate("bob", None, Some(token)).unwrap_err();
        assert_eq!(e.status, Status::Auth);
        let out = sent(&s);
        let ir = b64(format!("user=bob\x01auth=Bearer {token}\x01\x01").as_bytes());
        assert_eq!(out, format!("AUTH XOAUTH2 {ir}\r\n\r\n"));
        let log = log.lock().unwrap().join("\n");
        assert!(!log.contains(token) && !log.contains(&ir), "{log}");
    }

    #[test]
    fn long_sasl_response_goes_after_the_continuation() {
        let token = "t".repeat(400);
        let (mut s, _) = session("+ \r\n+OK welcome\r\n");
        s.caps = Capabilities::parse(&["SASL XOAUTH2".into()]);
        s.tls = true;
        s.authenticate("bob", None, Some(&token)).unwrap();
        let ir = b64(format!("user=bob\x01auth=Bearer {token}\x01\x01").as_bytes());
        assert_eq!(sent(&s), format!("AUTH XOAUTH2\r\n{ir}\r\n"));
    }

    #[test]
    fn xoauth2_not_offered_is_unsupported() {
        let (mut s, _) = session("");
        s.caps = Capabilities::parse(&["SASL PLAIN".into()]);
        let e = s.authenticate("bob", None, Some("tok")).unwrap_err();
        assert_eq!(e.status, Status::Unsupported);
    }

    #[test]
    fn maildrop_map_pipelined() {
        let (mut s, _) = session(
            "+OK\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n+OK 3 600\r\n+OK\r\n1 aaa\r\n2 bbb\r\n3 ccc\r\n.\r\n+OK\r\n1 100\r\n2 200\r\n3 300\r\n.\r\n",
        );
        s.caps.pipelining = true;
        s.load_maildrop().unwrap();
        assert_eq!(sent(&s), "CAPA\r\nSTAT\r\nUIDL\r\nLIST\r\n");
        assert_eq!(s.entries.len(), 3);
        assert_eq!(s.octets, 600);
        assert_eq!(
            s.lookup("bbb"),
            Some(&Entry {
                num: 2,
                uidl: "bbb".into(),
                size: 200
            })
        );
        assert_eq!(s.lookup("zzz"), None);
    }

    #[test]
    fn maildrop_map_one_command_at_a_time() {
        let (mut s, _) = session("-ERR no CAPA\r\n+OK 1 10\r\n+OK\r\n1 only\r\n.\r\n+OK\r\n1 10\r\n.\r\n");
        s.load_maildrop().unwrap();
        assert_eq!(sent(&s), "CAPA\r\nSTAT\r\nUIDL\r\nLIST\r\n");
        assert_eq!(s.lookup("only").map(|e| e.num), Some(1));
    }

    #[test]
    fn lockstep_login_and_maildrop_over_a_scripted_server() {
        let stream = MemStream::scripted(
            "+OK ready\r\n",
            &[
                ("CAPA\r\n", "+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
                ("USER bob\r\n", "+OK\r\n"),
                ("PASS pw\r\n", "+OK in\r\n"),
                ("CAPA\r\n", "+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
                ("STAT\r\n", "+OK 2 30\r\n"),
                ("UIDL\r\n", "+OK\r\n1 a\r\n2 b\r\n.\r\n"),
                ("LIST\r\n", "+OK\r\n1 10\r\n2 20\r\n.\r\n"),
            ],
        );
        let mut s = Session::new(stream, Tracer::default());
        s.tls = true;
        s.greeting().unwrap();
        s.capa().unwrap();
        s.authenticate("bob", Some("pw"), None).unwrap();
        s.load_maildrop().unwrap();
        assert_eq!((s.entries.len(), s.octets), (2, 30));
        assert_eq!(s.lookup("b").map(|e| e.size), Some(20));
    }

    #[test]
    fn no_uidl_is_unsupported() {
        let (mut s, _) = session("-ERR\r\n+OK 1 10\r\n-ERR unknown command\r\n+OK\r\n1 10\r\n.\r\n");
        assert_eq!(s.load_maildrop().unwrap_err().status, Status::Unsupported);
    }

    #[test]
    fn listing_longer_than_stat_is_a_protocol_error() {
        let (mut s, _) = session("-ERR\r\n+OK 1 10\r\n+OK\r\n1 a\r\n2 b\r\n.\r\n+OK\r\n1 10\r\n.\r\n");
        assert_eq!(s.load_maildrop().unwrap_err().status, Status::Protocol);
    }
}
