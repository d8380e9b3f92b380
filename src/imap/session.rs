//! An IMAP session on a socket herald opened: greeting, STARTTLS or
//! implicit TLS, CAPABILITY and SELECT/EXAMINE by hand; login and the
//! simple commands through the `imap` crate, which drives the same
//! connection through [`Wire`].

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::args::{quote, Part};
use super::parse::{self, Cond, Piece, Response, StatusLine};
use super::utf7;
use super::wire::{literal_len, Conn, Wire};
use crate::log::Tracer;
use crate::net::{self, ConnCtl, Stream};
use crate::options::Options;
use crate::status::{Error, Result, Status};

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
}

/// An authenticated connection.
pub struct Session {
    conn: Arc<Mutex<Conn>>,
    imap: ::imap::Session<Wire>,
    pub caps: Caps,
    pub selected: Option<Selected>,
    ctl: Arc<ConnCtl>,
    io_timeout: Duration,
    changes: Arc<super::Changes>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ctl.release();
    }
}

fn io_error(e: std::io::Error, what: &str) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        return Error::protocol(format!("{what}: {e}"));
    }
    Error::from_io(&e, what)
}

/// Reads one whole response: its first line, and while a line ends with a
/// literal marker, the literal and the next line.
fn read_response_on(c: &mut Conn, progress: &mut dyn FnMut(usize)) -> Result<Response> {
    let what = "reading from the IMAP server";
    let mut pieces = Vec::new();
    loop {
        let line = c.read_line().map_err(|e| io_error(e, what))?;
        let untagged = match pieces.first() {
            Some(Piece::Line(l)) => l.starts_with(b"* "),
            _ => line.starts_with(b"* "),
        };
        let lit = if untagged { literal_len(&line) } else { None };
        pieces.push(Piece::Line(line));
        match lit {
            Some(n) => pieces.push(Piece::Literal(
                c.read_literal(n, progress).map_err(|e| io_error(e, what))?,
            )),
            None => break,
        }
    }
    parse::parse_response(pieces)
}

/// Sends a command by hand and reads up to its tagged reply. Untagged
/// responses go to `each`.
fn command_on(c: &mut Conn, text: &str, each: &mut dyn FnMut(Response)) -> Result<StatusLine> {
    let tag = c.next_tag();
    c.send(format!("{tag} {text}\r\n").as_bytes())
        .map_err(|e| io_error(e, "sending to the IMAP server"))?;
    loop {
        match read_response_on(c, &mut |_| {})? {
            Response::Tagged { tag: t, status } if t == tag => return Ok(status),
            Response::Tagged { tag: t, .. } => {
                return Err(Error::protocol(format!("a reply with tag {t} to command {tag}")))
            }
            r => each(r),
        }
    }
}

fn capabilities_on(c: &mut Conn) -> Result<Caps> {
    let mut caps = None;
    let st = command_on(c, "CAPABILITY", &mut |r| {
        if let Response::Data { name, values } = r {
            if name == "CAPABILITY" {
                caps = Some(Caps::from_words(values.iter().filter_map(|v| v.atom())));
            }
        }
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

/// A leading `[CODE` in a text the crate left unparsed.
fn leading_code(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('[')?;
    let end = rest.find([']', ' '])?;
    Some(rest[..end].to_ascii_uppercase())
}

/// Maps an error of the `imap` crate. `no_status`: what a NO means here
/// (AUTH while logging in); response codes (RFC 5530) refine it.
pub fn crate_error(e: ::imap::Error, what: &str, no_status: Status) -> Error {
    use ::imap::Error as E;
    match e {
        E::Io(io) => io_error(io, what),
        E::No(no) => {
            let code = no
                .code
                .as_ref()
                .map(|c| format!("{c:?}").to_ascii_uppercase())
                .or_else(|| leading_code(&no.information));
            let status = match parse::no_status(code.as_deref(), &no.information) {
                Status::Rejected => no_status,
                s => s,
            };
            Error::new(status, format!("{what}: {}", no.information))
        }
        E::Bad(bad) => Error::new(Status::Rejected, format!("{what}: {}", bad.information)),
        E::Bye(bye) => Error::new(
            Status::Io,
            format!("{what}: the server closed the connection: {}", bye.information),
        ),
        E::ConnectionLost => Error::new(Status::Io, format!("{what}: connection closed by the server")),
        E::Validate(v) => Error::invalid(format!("{what}: {v}")),
        other => Error::protocol(format!("{what}: {other}")),
    }
}

struct Plain<'a> {
    user: &'a str,
    pass: &'a str,
}

/// A SASL response as an initial response (RFC 4959): base64.
trait InitialResponse: ::imap::Authenticator<Response = String> {
    fn initial(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.process(b""))
    }
}

impl InitialResponse for Plain<'_> {}
impl InitialResponse for XOAuth2<'_> {}

impl ::imap::Authenticator for Plain<'_> {
    type Response = String;
    fn process(&self, _challenge: &[u8]) -> String {
        format!("\0{}\0{}", self.user, self.pass)
    }
}

/// XOAUTH2: the token once; to the error challenge that follows a refusal,
/// an empty response, as the mechanism asks.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
    sent: Cell<bool>,
}

impl ::imap::Authenticator for XOAuth2<'_> {
    type Response = String;
    fn process(&self, _challenge: &[u8]) -> String {
        if self.sent.replace(true) {
            String::new()
        } else {
            format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token)
        }
    }
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
        let host = o.host();
        let stream = net::open_stream(o, tls, ctl, &trace)?;
        let mut c = Conn::new(stream, trace);
        let greeting = match read_response_on(&mut c, &mut |_| {})? {
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
        let mut caps = match caps_of(&greeting) {
            Some(c) => c,
            None => capabilities_on(&mut c)?,
        };
        let mut is_tls = c.stream().is_tls();
        if net::wants_starttls(o, is_tls, caps.has("STARTTLS"), "STARTTLS")? {
            let st = command_on(&mut c, "STARTTLS", &mut |_| {})?;
            if st.cond != Cond::Ok {
                return Err(Error::new(
                    Status::Tls,
                    format!("STARTTLS refused: {}", st.detail()),
                ));
            }
            let (stream, trace, buffered) = c.into_parts();
            if buffered > 0 {
                // Bytes that came before the handshake would be trusted as if
                // they came over TLS: a known injection attack.
                return Err(Error::protocol("the server sent data after its STARTTLS reply"));
            }
            let Stream::Plain(tcp) = stream else {
                return Err(Error::protocol("STARTTLS on a TLS connection"));
            };
            c = Conn::new(net::tls_handshake(net::connector(o, tls)?, host, tcp)?, trace);
            is_tls = true;
            caps = capabilities_on(&mut c)?;
        }
        let Some(user) = o.username.as_deref() else {
            return Err(Error::invalid(
                "an IMAP client needs USERNAME, and PASSWORD or OAUTH2_TOKEN",
            ));
        };
        net::check_credentials_channel(o, is_tls, "STARTTLS")?;

        // With SASL-IR (RFC 4959) the credentials go with AUTHENTICATE: one
        // round trip less, and the crate never parses a challenge.
        let sasl_ir = caps.has("SASL-IR");
        let conn = Arc::new(Mutex::new(c));
        let client = ::imap::Client::new(Wire(conn.clone()));
        conn.lock().hide_client = true;
        let logged_in = if let Some(token) = o.oauth2_token.as_deref() {
            if !caps.has("AUTH=XOAUTH2") {
                return Err(Error::new(
                    Status::Unsupported,
                    "the server does not offer AUTH=XOAUTH2",
                ));
            }
            let ir = XOAuth2 {
                user,
                token,
                sent: Cell::new(false),
            }
            .initial();
            let auth = XOAuth2 {
                user,
                token,
                sent: Cell::new(sasl_ir),
            };
            client.authenticate(
                if sasl_ir {
                    format!("XOAUTH2 {ir}")
                } else {
                    "XOAUTH2".into()
                },
                &auth,
            )
        } else {
            let Some(pass) = o.password.as_deref() else {
                return Err(Error::invalid("USERNAME is set without PASSWORD or OAUTH2_TOKEN"));
            };
            if caps.has("AUTH=PLAIN") {
                let plain = Plain { user, pass };
                if sasl_ir {
                    client.authenticate(format!("PLAIN {}", plain.initial()), &plain)
                } else {
                    client.authenticate("PLAIN", &plain)
                }
            } else if !caps.has("LOGINDISABLED") {
                client.login(user, pass)
            } else {
                return Err(Error::new(
                    Status::Unsupported,
                    "the server offers neither AUTHENTICATE PLAIN nor LOGIN",
                ));
            }
        };
        conn.lock().hide_client = false;
        let imap = logged_in.map_err(|(e, _)| crate_error(e, "login", Status::Auth))?;
        let mut s = Session {
            conn,
            imap,
            caps,
            selected: None,
            ctl: ctl.clone(),
            io_timeout: o.io_timeout,
            changes,
        };
        // The login reply's [CAPABILITY] code, which the crate drops, may differ
        // from the greeting's: ask again.
        s.caps = capabilities_on(&mut s.conn.lock())?;
        s.drain_unsolicited();
        Ok(s)
    }

    pub fn crate_err(&self, e: ::imap::Error, what: &str) -> Error {
        if self.ctl.is_aborted() {
            return Error::cancelled();
        }
        crate_error(e, what, Status::Rejected)
    }

    pub fn imap(&mut self) -> &mut ::imap::Session<Wire> {
        &mut self.imap
    }

    pub fn is_aborted(&self) -> bool {
        self.ctl.is_aborted()
    }

    pub fn conn(&self) -> parking_lot::MutexGuard<'_, Conn> {
        self.conn.lock()
    }

    /// Is this idle connection unusable? (The server closed it or said
    /// something while no command ran: BYE before an autologout.)
    pub fn is_stale(&self) -> bool {
        if self.ctl.is_aborted() {
            return true;
        }
        let c = self.conn.lock();
        if c.buffered() > 0 {
            return true;
        }
        let tcp = c.stream().tcp();
        if tcp.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let r = tcp.peek(&mut b);
        let restored = tcp.set_nonblocking(false).is_ok();
        !restored || !matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Applies what untagged responses say about the selected mailbox.
    pub fn track(selected: &mut Option<Selected>, r: &Response) {
        if let Some(s) = selected.as_mut() {
            match r {
                Response::Exists(n) => s.exists = *n,
                Response::Expunge => s.exists = s.exists.saturating_sub(1),
                _ => {}
            }
        }
    }

    /// Takes what the crate kept of untagged responses (it would keep them forever).
    pub fn drain_unsolicited(&mut self) {
        for u in self.imap.take_all_unsolicited() {
            if let Some(s) = self.selected.as_mut() {
                match u {
                    ::imap::types::UnsolicitedResponse::Exists(n) => s.exists = n,
                    ::imap::types::UnsolicitedResponse::Expunge(_) => s.exists = s.exists.saturating_sub(1),
                    _ => {}
                }
            }
        }
    }

    /// Writes whole command lines.
    pub fn send(&self, data: &[u8]) -> Result<()> {
        self.conn
            .lock()
            .send(data)
            .map_err(|e| io_error(e, "sending to the IMAP server"))
    }

    /// Writes `head` (a command line ending in a literal marker, or
    /// nothing), the literal `data` and the CRLF that ends the command. A
    /// small message goes in one write; a large one in chunks, each
    /// reported to `progress`.
    /// `end`: the CRLF that ends the command follows the literal (else
    /// more of the command follows: MULTIAPPEND's next message).
    pub fn send_with_literal(
        &self,
        head: &[u8],
        data: &[u8],
        end: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        let tail: &[u8] = if end { b"\r\n" } else { b"" };
        const ONE_WRITE: usize = 256 * 1024;
        let err = |e| io_error(e, "sending to the IMAP server");
        let mut c = self.conn.lock();
        c.trace_out(head);
        if c.trace.enabled(crate::log::TRACE) {
            c.trace.log(crate::log::TRACE, || {
                format!("C: <literal, {} bytes>", data.len())
            });
        }
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
        c.flush().map_err(err)?;
        progress(data.len());
        Ok(())
    }

    /// Waits up to `tick` for the server to say something; true when it did.
    pub fn wait_data(&self, tick: Duration) -> Result<bool> {
        let mut c = self.conn.lock();
        if c.buffered() > 0 {
            return Ok(true);
        }
        let what = "waiting in IDLE";
        c.set_read_timeout(tick).map_err(|e| io_error(e, what))?;
        let r = c.fill();
        c.set_read_timeout(self.io_timeout)
            .map_err(|e| io_error(e, what))?;
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
            Err(e) => Err(io_error(e, what)),
        }
    }

    /// Reads one response of a command herald sent itself.
    pub fn read_response(&self, progress: &mut dyn FnMut(usize)) -> Result<Response> {
        read_response_on(&mut self.conn.lock(), progress)
    }

    /// Sends a command by hand; returns its tagged status (OK, NO or BAD).
    pub fn command(&mut self, text: &str, each: &mut dyn FnMut(Response)) -> Result<StatusLine> {
        let selected = &mut self.selected;
        command_on(&mut self.conn.lock(), text, &mut |r| {
            Self::track(selected, &r);
            each(r)
        })
    }

    /// Sends a command made of text and literals, waiting for the server's
    /// "+" before each literal unless LITERAL+ lets it go at once.
    pub fn command_parts(&mut self, parts: &[Part], each: &mut dyn FnMut(Response)) -> Result<StatusLine> {
        let send_err = |e| io_error(e, "sending to the IMAP server");
        let mut c = self.conn.lock();
        let tag = c.next_tag();
        let mut out = format!("{tag} ").into_bytes();
        for p in parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Literal(data) => {
                    if self.caps.nonsync(data.len()) {
                        out.extend_from_slice(format!("{{{}+}}\r\n", data.len()).as_bytes());
                        c.trace_out(&out);
                        c.send_quiet(&out).map_err(send_err)?;
                        out.clear();
                    } else {
                        out.extend_from_slice(format!("{{{}}}\r\n", data.len()).as_bytes());
                        c.send(&out).map_err(send_err)?;
                        out.clear();
                        loop {
                            match read_response_on(&mut c, &mut |_| {})? {
                                Response::Continue => break,
                                Response::Tagged { tag: t, status } if t == tag => return Ok(status),
                                Response::Tagged { tag: t, .. } => {
                                    return Err(Error::protocol(format!(
                                        "a reply with tag {t} to command {tag}"
                                    )))
                                }
                                r => {
                                    Self::track(&mut self.selected, &r);
                                    each(r)
                                }
                            }
                        }
                    }
                    c.send_quiet(data).map_err(send_err)?;
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        c.send(&out).map_err(send_err)?;
        loop {
            match read_response_on(&mut c, &mut |_| {})? {
                Response::Tagged { tag: t, status } if t == tag => return Ok(status),
                Response::Tagged { tag: t, .. } => {
                    return Err(Error::protocol(format!("a reply with tag {t} to command {tag}")))
                }
                r => {
                    Self::track(&mut self.selected, &r);
                    each(r)
                }
            }
        }
    }

    /// Makes `name` the selected mailbox, unless it already is (with write
    /// access when `write`). Read-only ops EXAMINE. A selection kept from
    /// before this client changed the mailbox through another connection is
    /// brought up to date first (NOOP): a server shows a connection others'
    /// changes only when it syncs.
    pub fn select(&mut self, name: &str, write: bool) -> Result<()> {
        let now = self.changes.now();
        let changed = self.changes.changed_at(name);
        if let Some(s) = &self.selected {
            if s.name == name && (!write || !s.read_only) {
                if s.synced >= changed {
                    return Ok(());
                }
                let st = self.command("NOOP", &mut |_| {})?;
                if st.cond != Cond::Ok {
                    return Err(st.error("NOOP"));
                }
                if let Some(s) = self.selected.as_mut() {
                    s.synced = now;
                }
                return Ok(());
            }
        }
        self.selected = None;
        let verb = if write { "SELECT" } else { "EXAMINE" };
        let mut exists = 0;
        let st = self.command(&format!("{verb} {}", quote(&utf7::encode(name))), &mut |r| {
            if let Response::Exists(n) = r {
                exists = n;
            }
        })?;
        if st.cond != Cond::Ok {
            return Err(st.error(&format!("{verb} {name}")));
        }
        let read_only = !write || st.code_name().as_deref() == Some("READ-ONLY");
        self.selected = Some(Selected {
            name: name.to_string(),
            read_only,
            exists,
            synced: now,
        });
        Ok(())
    }

    /// Ends the session politely: LOGOUT, waiting briefly for the reply.
    pub fn logout(mut self) {
        let _ = self.conn.lock().set_read_timeout(Duration::from_secs(2));
        let _ = self.imap.logout();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_in_unparsed_text() {
        assert_eq!(
            leading_code("[NONEXISTENT] Mailbox doesn't exist").as_deref(),
            Some("NONEXISTENT")
        );
        assert_eq!(
            leading_code("[AUTHENTICATIONFAILED]").as_deref(),
            Some("AUTHENTICATIONFAILED")
        );
        assert_eq!(leading_code("plain text"), None);
    }

    #[test]
    fn crate_errors_map_to_statuses() {
        let io = ::imap::Error::Io(std::io::Error::new(std::io::ErrorKind::WouldBlock, "t"));
        assert_eq!(crate_error(io, "x", Status::Rejected).status, Status::Timeout);
        assert_eq!(
            crate_error(::imap::Error::ConnectionLost, "x", Status::Rejected).status,
            Status::Io
        );
    }
}
