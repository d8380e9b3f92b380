//! An IMAP session on a socket herald opened: greeting, STARTTLS or
//! implicit TLS, CAPABILITY, login (AUTHENTICATE with the best SASL
//! mechanism offered, `crate::sasl`, with SASL-IR when offered, else
//! LOGIN), SELECT/EXAMINE and every command,
//! all read through one bounded reader ([`Conn::read_response`]).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use super::args::{quote, Part};
use super::command::{Command, CommandText, Mailbox};
use super::parse::{Cond, Response, StatusLine};
use super::wire::{io_error, Conn, Limits, ReadTimeout};
use crate::log::Tracer;
use crate::net::{self, ConnCtl};
use crate::options::Options;
use crate::sasl::{self, Exchange, Mech};
use crate::status::{Error, Result, Status};

/// Most SASL challenges one AUTHENTICATE answers before herald gives up.
const MAX_CHALLENGES: usize = 4;

/// What the server offers (CAPABILITY), upper case.
#[derive(Clone, Debug, Default)]
pub struct Caps(HashSet<String>);

impl Caps {
    fn from_words<'a>(words: impl Iterator<Item = &'a str>) -> Caps {
        Caps(words.map(|w| w.to_ascii_uppercase()).collect())
    }

    pub fn has(&self, cap: &str) -> bool {
        self.0.contains(cap)
    }

    /// Every capability, upper case, sorted (the test-account op's report).
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.iter().cloned().collect();
        v.sort();
        v
    }

    /// Non-synchronizing literals of any size (RFC 7888 LITERAL+).
    pub fn literal_plus(&self) -> bool {
        self.has("LITERAL+")
    }

    /// May a literal of `len` bytes go without waiting for "+"?
    pub fn nonsync(&self, len: usize) -> bool {
        self.literal_plus() || (self.has("LITERAL-") && len <= 4096)
    }
}

/// The mailbox a connection has selected.
#[derive(Clone, Debug)]
pub struct Selected {
    /// As the API names it (UTF-8).
    pub name: String,
    /// EXAMINEd, or SELECTed without write access.
    pub read_only: bool,
    pub exists: u32,
    /// The client's change clock when this connection last synced the
    /// mailbox (SELECT, EXAMINE or NOOP).
    pub synced: u64,
    /// UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ.
    pub state: super::sync::MailboxState,
}

/// An authenticated connection.
pub struct Session {
    /// The connection; its transport releases the connection control's
    /// socket when the session drops.
    conn: Conn,
    pub caps: Caps,
    pub selected: Option<Selected>,
    io_timeout: Duration,
    changes: Arc<super::Changes>,
    /// QRESYNC is enabled (RFC 7162): VANISHED instead of EXPUNGE.
    pub qresync: bool,
    /// The server offers QRESYNC and it is not yet asked for: ENABLE goes
    /// in the same write as the session's first SELECT or EXAMINE.
    qresync_pending: bool,
    /// The UIDVALIDITY the running op's UIDs belong to, if it named one.
    pub expect_uidvalidity: Option<u32>,
}

/// Applies what untagged responses say about the selected mailbox.
pub fn track(selected: &mut Option<Selected>, r: &Response) {
    if let Some(s) = selected.as_mut() {
        match r {
            Response::Exists(n) => s.exists = *n,
            Response::Expunge(_) => s.exists = s.exists.saturating_sub(1),
            r => super::sync::track(s, r),
        }
    }
}

/// Reads up to the tagged reply to `tag`; untagged responses go to
/// `each`, a continuation ends the wait (`Ok(None)`) when `until_continue`.
fn reply_on<S: Read + Write + ReadTimeout>(
    c: &mut Conn<S>,
    tag: &str,
    until_continue: bool,
    each: &mut dyn FnMut(Response) -> Result<()>,
) -> Result<Option<StatusLine>> {
    loop {
        match c.read_response(&mut |_| {})? {
            Response::Tagged { tag: t, status } if t == tag => return Ok(Some(status)),
            Response::Tagged { tag: t, .. } => {
                return Err(Error::protocol(format!("a reply with tag {t} to command {tag}")))
            }
            Response::Continue if until_continue => return Ok(None),
            Response::Continue => {
                return Err(Error::protocol(format!(
                    "an unexpected continuation during command {tag}"
                )))
            }
            r => each(r)?,
        }
    }
}

/// Sends a command made of text and literals, waiting for the server's
/// "+" before each literal unless `nonsync` lets it go at once; reads up
/// to its tagged status (OK, NO or BAD). Untagged responses go to `each`.
fn command_on<S: Read + Write + ReadTimeout>(
    c: &mut Conn<S>,
    parts: &[Part],
    nonsync: &dyn Fn(usize) -> bool,
    each: &mut dyn FnMut(Response) -> Result<()>,
) -> Result<StatusLine> {
    let send_err = |e| io_error(e, "sending to the IMAP server");
    let tag = c.next_tag();
    let mut out = format!("{tag} ").into_bytes();
    for p in parts {
        match p {
            Part::Text(t) => out.extend_from_slice(t.as_bytes()),
            Part::Literal(data) if nonsync(data.len()) => {
                out.extend_from_slice(format!("{{{}+}}\r\n", data.len()).as_bytes());
                c.trace_out(&out);
                c.send_quiet(&out).map_err(send_err)?;
                c.send_quiet(data).map_err(send_err)?;
                out.clear();
            }
            Part::Literal(data) => {
                out.extend_from_slice(format!("{{{}}}\r\n", data.len()).as_bytes());
                c.send(&out)?;
                out.clear();
                if let Some(status) = reply_on(c, &tag, true, each)? {
                    return Ok(status);
                }
                c.send_quiet(data).map_err(send_err)?;
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    c.send(&out)?;
    reply_on(c, &tag, false, each)?.ok_or_else(|| Error::protocol("no reply"))
}

/// A command of plain text.
fn text_on<S: Read + Write + ReadTimeout>(
    c: &mut Conn<S>,
    cmd: Command,
    each: &mut dyn FnMut(Response) -> Result<()>,
) -> Result<StatusLine> {
    command_on(c, &[Part::Text(cmd.to_string())], &|_| false, each)
}

fn capabilities_on<S: Read + Write + ReadTimeout>(c: &mut Conn<S>) -> Result<Caps> {
    let mut caps = None;
    let st = text_on(c, Command::Capability, &mut |r| {
        if let Response::Data { name, values } = r {
            if name == "CAPABILITY" {
                caps = Some(Caps::from_words(values.iter().filter_map(|v| v.atom())));
            }
        }
        Ok(())
    })?;
    if st.cond != Cond::Ok {
        return Err(st.error("CAPABILITY"));
    }
    caps.ok_or_else(|| Error::protocol("no CAPABILITY in the reply to CAPABILITY"))
}

/// The capabilities a status line's code carries (`[CAPABILITY ...]`).
fn caps_of(st: &StatusLine) -> Option<Caps> {
    let code = st.code.as_deref()?;
    let mut w = code.split_ascii_whitespace();
    if !w.next()?.eq_ignore_ascii_case("CAPABILITY") {
        return None;
    }
    Some(Caps::from_words(w))
}

/// The error for a refused login: AUTH, unless the response code says
/// more (UNAVAILABLE is TRANSIENT: RFC 5530).
fn login_error(st: &StatusLine, what: &str) -> Error {
    let mut e = st.error(what);
    if st.cond == Cond::No && e.status == Status::Rejected {
        e.status = Status::Auth;
    }
    e
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// AUTHENTICATE with `x`'s mechanism, its initial response on the command
/// line when the server has SASL-IR (RFC 4959); each challenge answered by
/// the mechanism. A challenge it cannot answer cancels the exchange ("*")
/// and fails with the mechanism's reason.
fn authenticate_on<S: Read + Write + ReadTimeout>(
    c: &mut Conn<S>,
    x: &mut Exchange,
    sasl_ir: bool,
) -> Result<StatusLine> {
    let tag = c.next_tag();
    let mech = x.mech().name();
    c.mechanism = Some(mech.to_string());
    let ir = match sasl_ir {
        true => x
            .initial()?
            .map(|i| if i.is_empty() { "=".to_string() } else { b64(&i) }),
        false => None,
    };
    let cmd = Command::Authenticate {
        mechanism: mech,
        initial: ir.as_deref(),
    };
    c.send(cmd.line(&tag).as_bytes())?;
    let mut challenges = 0;
    loop {
        match c.read_response_text()? {
            (Response::Tagged { tag: t, status }, _) if t == tag => return Ok(status),
            (Response::Tagged { tag: t, .. }, _) => {
                return Err(Error::protocol(format!("a reply with tag {t} to command {tag}")))
            }
            (Response::Continue, _) if challenges == MAX_CHALLENGES => {
                return Err(Error::protocol(format!(
                    "the server sent more than {MAX_CHALLENGES} challenges to AUTHENTICATE {mech}"
                )))
            }
            (Response::Continue, text) => {
                challenges += 1;
                match sasl::unb64(&text).and_then(|ch| x.respond(&ch)) {
                    Ok(a) => c.send(format!("{}\r\n", b64(&a)).as_bytes())?,
                    Err(e) => {
                        c.send(b"*\r\n")?;
                        let _ = reply_on(c, &tag, false, &mut |_| Ok(()))?;
                        return Err(e);
                    }
                }
            }
            _ => {}
        }
    }
}

/// One SASL exchange; a success only when the mechanism agrees (SCRAM: the
/// server proved it knows the password); a refusal carries the OAuth2
/// server's error details.
fn sasl_on<S: Read + Write + ReadTimeout>(
    c: &mut Conn<S>,
    mut x: Exchange,
    sasl_ir: bool,
) -> Result<StatusLine> {
    let mut st = authenticate_on(c, &mut x, sasl_ir)?;
    if st.cond == Cond::Ok {
        x.finish()?;
    } else if let Some(e) = x.server_error() {
        st.text = format!("{} (server: {})", st.text, e.trim());
    }
    Ok(st)
}

/// LOGIN with quoted strings, or literals for 8-bit text.
fn login_on<S: Read + Write + ReadTimeout>(
    c: &mut Conn<S>,
    caps: &Caps,
    user: &str,
    pass: &str,
) -> Result<StatusLine> {
    c.mechanism = Some("LOGIN".to_string());
    let arg = |s: &str| {
        if s.is_ascii() {
            Part::Text(quote(s))
        } else {
            Part::Literal(s.as_bytes().to_vec())
        }
    };
    let parts = [
        Part::Text("LOGIN ".into()),
        arg(user),
        Part::Text(" ".into()),
        arg(pass),
    ];
    command_on(c, &parts, &|n| caps.nonsync(n), &mut |_| Ok(()))
}

/// Logs in as the options say. The credentials never reach the trace.
fn log_in<S: Read + Write + ReadTimeout>(c: &mut Conn<S>, o: &Options, caps: &Caps) -> Result<StatusLine> {
    let Some(user) = o.username.as_deref() else {
        return Err(Error::invalid(
            "an IMAP client needs USERNAME, and PASSWORD or OAUTH2_TOKEN",
        ));
    };
    // With SASL-IR the credentials go with AUTHENTICATE: one round trip less.
    let sasl_ir = caps.has("SASL-IR");
    let offered = |m: &str| caps.has(&format!("AUTH={m}"));
    if let Some(token) = o.oauth2_token.for_login()? {
        let Some(mech) = sasl::choose(&sasl::TOKEN_ORDER, offered) else {
            return Err(Error::new(
                Status::Unsupported,
                "the server offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2",
            ));
        };
        return sasl_on(c, Exchange::new(mech, user, &token), sasl_ir);
    }
    let Some(pass) = o.password.as_deref() else {
        return Err(Error::invalid("USERNAME is set without PASSWORD or OAUTH2_TOKEN"));
    };
    let order = [Mech::ScramSha256, Mech::ScramSha1, Mech::Plain];
    if let Some(mech) = sasl::choose(&order, offered) {
        sasl_on(c, Exchange::new(mech, user, pass), sasl_ir)
    } else if !caps.has("LOGINDISABLED") {
        login_on(c, caps, user, pass)
    } else {
        Err(Error::new(
            Status::Unsupported,
            "the server offers neither AUTHENTICATE (SCRAM or PLAIN) nor LOGIN",
        ))
    }
}

/// Reads the greeting; the capabilities it carries, or asks for them.
fn greeting_on<S: Read + Write + ReadTimeout>(c: &mut Conn<S>) -> Result<Caps> {
    let greeting = match c.read_response(&mut |_| {})? {
        Response::Status(st) => st,
        _ => return Err(Error::protocol("the server's greeting is not a status line")),
    };
    match greeting.cond {
        Cond::Ok => {}
        Cond::PreAuth => {
            return Err(Error::new(
                Status::Unsupported,
                "the server greets with PREAUTH; herald always logs in",
            ))
        }
        _ => {
            return Err(Error::new(
                Status::Connect,
                format!("the server refused the connection: {}", greeting.detail()),
            ))
        }
    }
    match caps_of(&greeting) {
        Some(caps) => Ok(caps),
        None => capabilities_on(c),
    }
}

/// Upgrades with STARTTLS; the new connection and its capabilities
/// (what the server said before TLS is not to be trusted).
fn starttls(mut c: Conn, o: &Options, tls: &mut Option<native_tls::TlsConnector>) -> Result<(Conn, Caps)> {
    let st = text_on(&mut c, Command::StartTls, &mut |_| Ok(()))?;
    if st.cond != Cond::Ok {
        return Err(Error::new(
            Status::Tls,
            format!("STARTTLS refused: {}", st.detail()),
        ));
    }
    let mut c = c.upgrade(o, tls)?;
    let caps = capabilities_on(&mut c)?;
    Ok((c, caps))
}

impl Session {
    /// Connects and logs in as the options say.
    pub fn open(
        o: &Options,
        tls: &mut Option<native_tls::TlsConnector>,
        ctl: &Arc<ConnCtl>,
        trace: Tracer,
        changes: Arc<super::Changes>,
    ) -> Result<Session> {
        let limits = Limits {
            text: o.max_line_bytes,
            literals: o.max_message_bytes,
        };
        let stream = net::open_stream(o, tls, ctl, &trace)?;
        let mut c = Conn::new(stream, trace, limits).with_ctl(ctl);
        let mut caps = greeting_on(&mut c)?;
        let mut is_tls = c.stream().is_tls();
        if net::wants_starttls(o, is_tls, caps.has("STARTTLS"), "STARTTLS")? {
            (c, caps) = starttls(c, o, tls)?;
            is_tls = true;
        }
        if o.username.is_some() {
            net::check_credentials_channel(o, is_tls, "STARTTLS")?;
        }
        c.hide_credentials(true);
        let logged_in = log_in(&mut c, o, &caps);
        c.hide_credentials(false);
        let st = logged_in?;
        if st.cond != Cond::Ok {
            return Err(login_error(&st, "login"));
        }
        // The login reply may carry the capabilities, which may differ from
        // the greeting's; else ask again.
        let caps = match caps_of(&st) {
            Some(c) => c,
            None => capabilities_on(&mut c)?,
        };
        let qresync_pending = caps.has("QRESYNC");
        Ok(Session {
            conn: c,
            caps,
            selected: None,
            io_timeout: o.io_timeout,
            changes,
            qresync: false,
            qresync_pending,
            expect_uidvalidity: None,
        })
    }

    /// IO_TIMEOUT_MS: the longest wait for one reply.
    pub fn io_timeout(&self) -> Duration {
        self.io_timeout
    }

    pub fn is_tls(&self) -> bool {
        self.conn.stream().is_tls()
    }

    /// The mechanism this session logged in with (AUTHENTICATE's, or LOGIN).
    pub fn mechanism(&self) -> Option<&str> {
        self.conn.mechanism.as_deref()
    }

    pub fn is_aborted(&self) -> bool {
        self.conn.ctl().is_some_and(|c| c.is_aborted())
    }

    /// Did a read fail part way (the stream is out of step)?
    pub fn is_broken(&self) -> bool {
        self.conn.is_broken()
    }

    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// A failure while the connection was shut down by a cancel is the cancel.
    fn checked<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(_) if self.is_aborted() => Err(Error::cancelled()),
            r => r,
        }
    }

    /// Is this idle connection unusable? (The server closed it or said
    /// something while no command ran: BYE before an autologout.)
    pub fn is_stale(&self) -> bool {
        if self.is_aborted() || self.conn.is_broken() || self.conn.buffered() > 0 {
            return true;
        }
        let tcp = self.conn.stream().tcp();
        if tcp.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let r = tcp.peek(&mut b);
        let restored = tcp.set_nonblocking(false).is_ok();
        !restored || !matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Writes whole command lines.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        let r = self.conn.send(data);
        self.checked(r)
    }

    /// Writes `head` (a command line ending in a literal marker, or
    /// nothing), the literal `data` and the CRLF that ends the command. A
    /// small message goes in one write; a large one in chunks, each
    /// reported to `progress`.
    /// `end`: the CRLF that ends the command follows the literal (else
    /// more of the command follows: MULTIAPPEND's next message).
    pub fn send_with_literal(
        &mut self,
        head: &[u8],
        data: &[u8],
        end: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        let tail: &[u8] = if end { b"\r\n" } else { b"" };
        const ONE_WRITE: usize = 256 * 1024;
        let err = |e| io_error(e, "sending to the IMAP server");
        let c = &mut self.conn;
        c.trace_out(head);
        if c.tracer().enabled(crate::log::TRACE) {
            c.tracer().log(crate::log::TRACE, || {
                format!("C: <literal, {} bytes>", data.len())
            });
        }
        let r = (|| {
            if data.len() <= ONE_WRITE {
                let mut buf = Vec::with_capacity(head.len() + data.len() + 2);
                buf.extend_from_slice(head);
                buf.extend_from_slice(data);
                buf.extend_from_slice(tail);
                c.send_quiet(&buf).map_err(err)?;
            } else {
                c.send_quiet(head).map_err(err)?;
                let mut done = 0;
                for chunk in data.chunks(ONE_WRITE) {
                    c.send_quiet(chunk).map_err(err)?;
                    done += chunk.len();
                    progress(done);
                }
                c.send_quiet(tail).map_err(err)?;
            }
            c.flush().map_err(err)
        })();
        self.checked(r)?;
        progress(data.len());
        Ok(())
    }

    /// Waits up to `tick` for the server to say something; true when it did.
    pub fn wait_data(&mut self, tick: Duration) -> Result<bool> {
        if self.conn.buffered() > 0 {
            return Ok(true);
        }
        let what = "waiting in IDLE";
        let io_timeout = self.io_timeout;
        let c = &mut self.conn;
        c.set_read_timeout(tick).map_err(|e| io_error(e, what))?;
        let r = c.fill();
        c.set_read_timeout(io_timeout).map_err(|e| io_error(e, what))?;
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => self.checked(Err(io_error(e, what))),
        }
    }

    /// Runs `f` with no read waiting past `within` from now, however
    /// slowly the server trickles; a read past it fails TIMEOUT.
    pub fn within<T>(&mut self, within: Duration, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let what = "reading from the IMAP server";
        self.conn
            .set_deadline(Some(std::time::Instant::now() + within))
            .map_err(|e| io_error(e, what))?;
        let r = f(self);
        self.conn.set_deadline(None).map_err(|e| io_error(e, what))?;
        r
    }

    /// Is a whole one-line response already buffered?
    pub fn line_buffered(&self) -> bool {
        self.conn.line_buffered()
    }

    /// Reads one response of a command herald sent itself.
    pub fn read_response(&mut self, progress: &mut dyn FnMut(usize)) -> Result<Response> {
        let r = self.conn.read_response(progress);
        self.checked(r)
    }

    /// Sends a command by hand; returns its tagged status (OK, NO or BAD).
    /// `cmd`: a [`Command`] (the driver's raw text still passes).
    pub fn command(&mut self, cmd: impl CommandText, each: &mut dyn FnMut(Response)) -> Result<StatusLine> {
        self.command_parts(&[Part::Text(cmd.text())], each)
    }

    /// Sends a command made of text and literals, waiting for the server's
    /// "+" before each literal unless LITERAL+ lets it go at once.
    pub fn command_parts(&mut self, parts: &[Part], each: &mut dyn FnMut(Response)) -> Result<StatusLine> {
        let caps = &self.caps;
        let selected = &mut self.selected;
        let r = command_on(&mut self.conn, parts, &|n| caps.nonsync(n), &mut |r| {
            track(selected, &r);
            each(r);
            Ok(())
        });
        if let Ok(st) = &r {
            // A tagged OK's codes (HIGHESTMODSEQ) are news about the mailbox too.
            super::sync::track_status(selected, st);
        }
        self.checked(r)
    }

    /// Runs a command that must end OK; NO and BAD are errors about `what`.
    pub fn simple(&mut self, cmd: impl CommandText, what: &str) -> Result<()> {
        let st = self.command(cmd, &mut |_| {})?;
        if st.cond != Cond::Ok {
            return Err(st.error(what));
        }
        Ok(())
    }

    /// Makes `name` the selected mailbox, unless it already is (with write
    /// access when `write`). Read-only ops EXAMINE. A selection kept from
    /// before this client changed the mailbox through another connection is
    /// brought up to date first (NOOP): a server shows a connection others'
    /// changes only when it syncs.
    pub fn select(&mut self, name: &str, write: bool) -> Result<()> {
        self.select_then(name, write, None).map(|_| ())
    }

    /// As [`Session::select`], with `then` (a whole command line and its
    /// tag) sent behind a fresh SELECT or EXAMINE in the same write, so both
    /// take one round trip: true if it was sent (else the caller sends it).
    /// Not when the op named a UIDVALIDITY (it is checked first). If the
    /// selection fails, the server refuses `then` too (no mailbox is
    /// selected: RFC 3501 6.3.1), and that reply is read here.
    pub fn select_then(&mut self, name: &str, write: bool, then: Option<(&str, &[u8])>) -> Result<bool> {
        let then = then.filter(|_| self.expect_uidvalidity.is_none());
        let now = self.changes.now();
        let changed = self.changes.changed_at(name);
        if let Some(s) = &self.selected {
            if s.name == name && (!write || !s.read_only) {
                if s.synced >= changed {
                    return super::sync::check_uidvalidity(s, self.expect_uidvalidity).map(|_| false);
                }
                let st = self.command(Command::Noop, &mut |_| {})?;
                if st.cond != Cond::Ok {
                    return Err(st.error("NOOP"));
                }
                if let Some(s) = self.selected.as_mut() {
                    s.synced = now;
                }
                return self.checked_uidvalidity().map(|_| false);
            }
        }
        self.selected = None;
        let (verb, cmd) = if write {
            ("SELECT", Command::Select(Mailbox(name)))
        } else {
            ("EXAMINE", Command::Examine(Mailbox(name)))
        };
        let mut exists = 0;
        let mut state = super::sync::MailboxState::default();
        let enable = self.qresync_pending.then(|| self.conn.next_tag());
        let tag = self.conn.next_tag();
        let mut line = Vec::new();
        if let Some(t) = &enable {
            // QRESYNC's VANISHED (and CONDSTORE's MODSEQs) for every op
            // from now on; ENABLE is valid before a mailbox is selected.
            line.extend_from_slice(format!("{t} ENABLE QRESYNC\r\n").as_bytes());
        }
        line.extend_from_slice(cmd.line(&tag).as_bytes());
        if let Some((_, then)) = then {
            line.extend_from_slice(then);
        }
        self.send(&line)?;
        if let Some(t) = enable {
            self.enabled(&t)?;
        }
        let r = reply_on(&mut self.conn, &tag, false, &mut |r| {
            match r {
                Response::Exists(n) => exists = n,
                Response::Status(st) => state.apply_code(&st),
                _ => {}
            }
            Ok(())
        });
        let st = self.checked(r)?.ok_or_else(|| Error::protocol("no reply"))?;
        if st.cond != Cond::Ok {
            if let Some((then_tag, _)) = then {
                let r = reply_on(&mut self.conn, then_tag, false, &mut |_| Ok(()));
                self.checked(r)?;
            }
            return Err(st.error(&format!("{verb} {name}")));
        }
        let read_only = !write || st.code_name().as_deref() == Some("READ-ONLY");
        self.selected = Some(Selected {
            name: name.to_string(),
            read_only,
            exists,
            synced: now,
            state,
        });
        self.checked_uidvalidity().map(|_| then.is_some())
    }

    /// Reads the reply to ENABLE QRESYNC (command `tag`).
    fn enabled(&mut self, tag: &str) -> Result<()> {
        self.qresync_pending = false;
        let r = reply_on(&mut self.conn, tag, false, &mut |_| Ok(()));
        self.qresync = self.checked(r)?.is_some_and(|st| st.cond == Cond::Ok);
        Ok(())
    }

    /// The selected mailbox's UIDVALIDITY is the running op's (if it named one).
    fn checked_uidvalidity(&self) -> Result<()> {
        match &self.selected {
            Some(s) => super::sync::check_uidvalidity(s, self.expect_uidvalidity),
            None => Ok(()),
        }
    }

    /// Ends the session politely: LOGOUT, waiting briefly for the reply
    /// (at most [`net::QUIT_WAIT`] in all, whatever the server sends).
    pub fn logout(mut self) {
        if self.is_broken() || self.is_aborted() {
            return;
        }
        let tag = self.conn.next_tag();
        if self.send(Command::Logout.line(&tag).as_bytes()).is_err() {
            return;
        }
        let _ = self.within(net::QUIT_WAIT, |s| loop {
            if let Response::Tagged { .. } = s.conn.read_response(&mut |_| {})? {
                return Ok(());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mem::MemStream;
    use crate::status::Status;

    fn conn(server: &str) -> Conn<MemStream> {
        Conn::new(
            MemStream::new(server),
            Tracer::default(),
            Limits {
                text: 4096,
                literals: 4096,
            },
        )
    }

    fn opts(caps_secret: (Option<&str>, Option<&str>)) -> Options {
        let mut o = Options::new(crate::options::Protocol::Imap);
        o.username = Some("carol".into());
        o.password = caps_secret.0.map(Into::into);
        if let Some(t) = caps_secret.1 {
            o.oauth2_token.set(t).unwrap();
        }
        o
    }

    fn caps(words: &str) -> Caps {
        Caps::from_words(words.split(' '))
    }

    fn written(c: Conn<MemStream>) -> String {
        c.inner().written()
    }

    #[test]
    fn greeting_without_capabilities_asks_for_them() {
        let stream = MemStream::scripted(
            "* OK ready\r\n",
            &[(
                "h1 CAPABILITY\r\n",
                "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nh1 OK done\r\n",
            )],
        );
        let mut c = Conn::new(
            stream,
            Tracer::default(),
            Limits {
                text: 4096,
                literals: 4096,
            },
        );
        let caps = greeting_on(&mut c).unwrap();
        assert!(caps.has("AUTH=PLAIN") && !caps.has("IDLE"));
        let e = greeting_on(&mut conn("* PREAUTH hi\r\n")).unwrap_err();
        assert_eq!(e.status, Status::Unsupported);
        let e = greeting_on(&mut conn("* BYE busy\r\n")).unwrap_err();
        assert_eq!(e.status, Status::Connect);
        let caps = greeting_on(&mut conn("* OK [CAPABILITY IMAP4rev1 IDLE] hi\r\n")).unwrap();
        assert!(caps.has("IDLE"));
    }

    #[test]
    fn plain_with_sasl_ir_goes_in_one_line() {
        let mut c = conn("h1 OK [CAPABILITY IMAP4rev1 IDLE] in\r\n");
        let st = log_in(&mut c, &opts((Some("pw"), None)), &caps("AUTH=PLAIN SASL-IR")).unwrap();
        assert!(caps_of(&st).unwrap().has("IDLE"));
        assert_eq!(
            written(c),
            format!("h1 AUTHENTICATE PLAIN {}\r\n", b64(b"\0carol\0pw"))
        );
    }

    #[test]
    fn xoauth2_answers_the_error_challenge_with_an_empty_line() {
        let mut c = conn("+ \r\n+ eyJzdGF0dXMiOiI0MDEifQ==\r\nh1 NO [AUTHENTICATIONFAILED] no\r\n");
        let st = log_in(&mut c, &opts((None, Some("tok"))), &caps("AUTH=XOAUTH2")).unwrap();
        assert_eq!(login_error(&st, "login").status, Status::Auth);
        let token = b64(b"user=carol\x01auth=Bearer tok\x01\x01");
        assert_eq!(written(c), format!("h1 AUTHENTICATE XOAUTH2\r\n{token}\r\n\r\n"));
    }

    #[test]
    fn oauthbearer_is_preferred_and_the_servers_error_is_in_the_detail() {
        let mut c = conn("+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\nh1 NO [AUTHENTICATIONFAILED] no\r\n");
        let caps = caps("AUTH=XOAUTH2 AUTH=OAUTHBEARER SASL-IR");
        let st = log_in(&mut c, &opts((None, Some("tok"))), &caps).unwrap();
        let e = login_error(&st, "login");
        assert_eq!(e.status, Status::Auth);
        assert!(e.detail.contains("invalid_token"), "{e}");
        let ir = b64(b"n,a=carol,\x01auth=Bearer tok\x01\x01");
        assert_eq!(
            written(c),
            format!("h1 AUTHENTICATE OAUTHBEARER {ir}\r\nAQ==\r\n")
        );
    }

    #[test]
    fn scram_is_preferred_and_a_success_without_the_servers_proof_fails() {
        // The server skips its final message and says OK: not a login.
        let mut c = conn("+ \r\nh1 OK logged in\r\n");
        let caps = caps("AUTH=PLAIN AUTH=SCRAM-SHA-1 AUTH=SCRAM-SHA-256");
        let e = log_in(&mut c, &opts((Some("pw"), None)), &caps).unwrap_err();
        assert_eq!(e.status, Status::Auth, "{e}");
        assert!(written(c).starts_with("h1 AUTHENTICATE SCRAM-SHA-256\r\n"));
        // A server nonce that is not ours: cancelled with "*".
        let first = b64(b"r=other,s=QSXCR+Q6sek8bf92,i=4096");
        let mut c = conn(&format!("+ \r\n+ {first}\r\nh1 BAD cancelled\r\n"));
        let e = log_in(&mut c, &opts((Some("pw"), None)), &caps).unwrap_err();
        assert_eq!(e.status, Status::Protocol, "{e}");
        assert!(written(c).ends_with("\r\n*\r\n"));
    }

    #[test]
    fn login_quotes_ascii_and_sends_8bit_as_literals() {
        let mut c = conn("h1 OK in\r\n");
        log_in(&mut c, &opts((Some("p\"w\\"), None)), &caps("IMAP4rev1")).unwrap();
        assert_eq!(written(c), "h1 LOGIN \"carol\" \"p\\\"w\\\\\"\r\n");
        let mut c = conn("+ go\r\nh1 OK in\r\n");
        log_in(&mut c, &opts((Some("p\u{e4}ss"), None)), &caps("IMAP4rev1")).unwrap();
        assert_eq!(written(c), "h1 LOGIN \"carol\" {5}\r\np\u{e4}ss\r\n");
        let mut c = conn("");
        let e = log_in(&mut c, &opts((Some("pw"), None)), &caps("LOGINDISABLED")).unwrap_err();
        assert_eq!(e.status, Status::Unsupported);
    }

    #[test]
    fn endless_challenges_and_hostile_replies_end_the_login() {
        let mut c = conn(&"+ more\r\n".repeat(100));
        let e = log_in(&mut c, &opts((Some("pw"), None)), &caps("AUTH=PLAIN")).unwrap_err();
        assert_eq!(e.status, Status::Protocol, "{e}");
        let deep = format!("* FLAGS {}\r\n", "(".repeat(100_000));
        let mut c = conn(&deep);
        let e = log_in(&mut c, &opts((Some("pw"), None)), &caps("IMAP4rev1")).unwrap_err();
        assert_eq!(e.status, Status::Protocol, "{e}");
        assert!(c.is_broken());
        let mut c = conn("h7 OK not yours\r\n");
        let e = log_in(&mut c, &opts((Some("pw"), None)), &caps("IMAP4rev1")).unwrap_err();
        assert_eq!(e.status, Status::Protocol, "{e}");
        let mut c = conn("h1 NO [UNAVAILABLE] later\r\n");
        let st = log_in(&mut c, &opts((Some("pw"), None)), &caps("IMAP4rev1")).unwrap();
        assert_eq!(login_error(&st, "login").status, Status::Transient);
    }

    #[test]
    fn literals_wait_for_the_continuation_unless_literal_plus() {
        let parts = [
            Part::Text("UID SEARCH CHARSET UTF-8 TEXT ".into()),
            Part::Literal("\u{e9}t\u{e9}".as_bytes().to_vec()),
        ];
        let mut c = conn("+ ok\r\n* SEARCH 3 5\r\nh1 OK done\r\n");
        let mut found = Vec::new();
        let st = command_on(&mut c, &parts, &|_| false, &mut |r| {
            if let Response::Data { values, .. } = r {
                found.extend(values.iter().filter_map(|v| v.number()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!((st.cond, found), (Cond::Ok, vec![3, 5]));
        assert_eq!(
            written(c),
            "h1 UID SEARCH CHARSET UTF-8 TEXT {5}\r\n\u{e9}t\u{e9}\r\n"
        );
        let mut c = conn("h1 NO [BADCHARSET] no\r\n");
        let st = command_on(&mut c, &parts, &|_| false, &mut |_| Ok(())).unwrap();
        assert_eq!(st.cond, Cond::No);
        let mut c = conn("h1 OK done\r\n");
        command_on(&mut c, &parts, &|_| true, &mut |_| Ok(())).unwrap();
        assert_eq!(
            written(c),
            "h1 UID SEARCH CHARSET UTF-8 TEXT {5+}\r\n\u{e9}t\u{e9}\r\n"
        );
    }
}
