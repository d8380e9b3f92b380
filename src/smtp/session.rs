//! An SMTP session: greeting, EHLO (falling back to HELO), STARTTLS or
//! implicit TLS, AUTH; then the building blocks of mail transactions.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use super::command::Command;
use super::reply::{read_reply, Reply};
use crate::log::{Tracer, TRACE};
use crate::net::{self, ConnCtl, Stream, Transport};
use crate::options::Options;
use crate::status::{Error, Result, Status};

/// What the server offered in its EHLO reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    pub esmtp: bool,
    pub pipelining: bool,
    pub chunking: bool,
    pub binarymime: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    /// SIZE's limit; `Some(0)` means SIZE without a limit.
    pub size: Option<u64>,
    /// AUTH mechanisms, upper case.
    pub auth: Vec<String>,
    /// Every extension as the server announced it, its parameters joined
    /// to it by `=` and each other by `,` ("SIZE=10240000",
    /// "AUTH=PLAIN,LOGIN"): the test-account op's report.
    pub announced: Vec<String>,
}

impl Extensions {
    /// Parses an EHLO reply: the first line is the server's name, each
    /// further line a keyword and its parameters.
    pub fn parse(reply: &Reply) -> Extensions {
        let mut e = Extensions {
            esmtp: true,
            ..Default::default()
        };
        for line in reply.lines().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            e.announced.push(crate::net::account::one_word(line));
            let keyword = keyword.to_ascii_uppercase();
            // Old servers write "AUTH=PLAIN LOGIN".
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, p)) => (k.to_string(), Some(p.to_string())),
                None => (keyword, None),
            };
            match keyword.as_str() {
                "PIPELINING" => e.pipelining = true,
                "CHUNKING" => e.chunking = true,
                "BINARYMIME" => e.binarymime = true,
                "8BITMIME" => e.eightbitmime = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "STARTTLS" => e.starttls = true,
                "SIZE" => e.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0)),
                "AUTH" => {
                    for m in first_param.into_iter().chain(words.map(str::to_string)) {
                        let m = m.to_ascii_uppercase();
                        if !m.is_empty() && !e.auth.contains(&m) {
                            e.auth.push(m);
                        }
                    }
                }
                _ => {}
            }
        }
        e
    }
}

/// An open SMTP session over `S`.
pub struct Session<S: Read + Write> {
    /// The connection: reads, and the one traced write path.
    pub conn: Transport<S>,
    pub ext: Extensions,
    pub tls: bool,
    /// A transaction was left unfinished: send RSET before the next MAIL.
    pub need_rset: bool,
    /// Transactions completed on this connection.
    pub transactions: u64,
    /// The AUTH mechanism of the last login attempt.
    pub mechanism: Option<&'static str>,
    /// The server's greeting.
    pub greeting: Option<Reply>,
}

/// The in-memory stream as an SMTP wire: a read would not block while
/// server bytes are left.
#[cfg(any(test, feature = "fuzzing"))]
impl super::pipeline::Wire for crate::net::mem::MemStream {
    fn readable_now(&self) -> bool {
        crate::net::mem::MemStream::readable_now(self)
    }
}

/// The EHLO argument: HELO_NAME, else this host's name when it is fully
/// qualified, else an address literal of the local end.
fn helo_name(o: &Options, local: Option<std::net::SocketAddr>) -> String {
    if let Some(n) = &o.helo_name {
        return n.clone();
    }
    #[cfg(unix)]
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    #[cfg(unix)]
    if unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0 {
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(h) = std::str::from_utf8(&buf[..len]) {
            if h.contains('.')
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return h.to_string();
            }
        }
    }
    match local {
        Some(std::net::SocketAddr::V4(a)) => format!("[{}]", a.ip()),
        Some(std::net::SocketAddr::V6(a)) => format!("[IPv6:{}]", a.ip()),
        None => "localhost".into(),
    }
}

impl<S: Read + Write> Session<S> {
    /// A session over `stream`, not yet greeted (the tests' and fuzz targets' way in).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn new(stream: S, trace: Tracer) -> Self {
        Self::over(Transport::new(stream, trace, "the SMTP server"))
    }

    /// A session over an open transport (a fresh one after STARTTLS).
    fn over(conn: Transport<S>) -> Self {
        Session {
            conn,
            ext: Extensions::default(),
            tls: false,
            need_rset: false,
            transactions: 0,
            greeting: None,
            mechanism: None,
        }
    }

    /// Writes `data` (one or more commands) and logs each command line.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.conn.transmit(data)
    }

    /// Is TRACE logging on (so that a trace line is worth formatting)?
    pub fn tracing(&self) -> bool {
        self.conn.tracer().enabled(crate::log::TRACE)
    }

    /// Logs the command lines of `data` at TRACE.
    pub fn trace_out(&mut self, data: &[u8]) {
        self.conn.trace_out(data);
    }

    pub fn reply(&mut self) -> Result<Reply> {
        let r = read_reply(&mut self.conn)?;
        self.conn.tracer().log(TRACE, || format!("S: {r}"));
        Ok(r)
    }

    /// Sends one command and reads its reply.
    pub fn command(&mut self, cmd: Command) -> Result<Reply> {
        self.send(cmd.to_string().as_bytes())?;
        self.reply()
    }

    /// Reads the greeting: 220, or the server's refusal.
    pub fn greeting(&mut self) -> Result<Reply> {
        let r = self.reply()?;
        match r.code {
            220 => {
                self.greeting = Some(r.clone());
                Ok(r)
            }
            c if c >= 400 => Err(r.error("the server refused the connection")),
            _ => Err(Error::with_code(
                Status::Protocol,
                r.code as i32,
                format!("unexpected greeting: {r}"),
            )),
        }
    }

    /// EHLO, or HELO when the server does not know EHLO.
    pub fn hello(&mut self, name: &str) -> Result<()> {
        let r = self.command(Command::Ehlo { name })?;
        if r.is_positive() {
            self.ext = Extensions::parse(&r);
            return Ok(());
        }
        if r.is_closing() {
            return Err(r.error("EHLO"));
        }
        let r = self.command(Command::Helo { name })?;
        if !r.is_positive() {
            return Err(r.error("HELO"));
        }
        self.ext = Extensions::default();
        Ok(())
    }
}

impl Session<Stream> {
    /// Connects and sets the session up as the options say: TLS, EHLO, AUTH.
    pub fn open(
        o: &Options,
        tls: &mut Option<native_tls::TlsConnector>,
        ctl: &Arc<ConnCtl>,
        trace: Tracer,
    ) -> Result<Session<Stream>> {
        let stream = net::open_stream(o, tls, ctl, &trace)?;
        let local = stream.tcp().local_addr().ok();
        let mut s = Session::over(Transport::new(stream, trace, "the SMTP server").with_ctl(ctl));
        s.conn.set_max_line(o.max_line_bytes);
        s.tls = s.conn.is_tls();
        s.greeting()?;
        let name = helo_name(o, local);
        s.hello(&name)?;
        if net::wants_starttls(o, s.tls, s.ext.starttls, "STARTTLS")? {
            s = s.starttls(o, tls, &name)?;
        }
        if let Some(user) = &o.username {
            net::check_credentials_channel(o, s.tls, "STARTTLS")?;
            let token = o.oauth2_token.for_login()?;
            s.authenticate(user, o.password.as_deref(), token.as_deref())?;
        }
        Ok(s)
    }

    /// STARTTLS (RFC 3207), then EHLO again: what the server said before
    /// TLS is not to be trusted.
    fn starttls(
        mut self,
        o: &Options,
        tls: &mut Option<native_tls::TlsConnector>,
        name: &str,
    ) -> Result<Self> {
        let r = self.command(Command::StartTls)?;
        if r.code != 220 {
            return Err(Error::with_code(
                Status::Tls,
                r.code as i32,
                format!("STARTTLS refused: {r}"),
            ));
        }
        let greeting = self.greeting.take();
        let mut s = Session::over(self.conn.upgrade(o, tls, "STARTTLS")?);
        s.greeting = greeting;
        s.tls = true;
        s.hello(name)?;
        Ok(s)
    }

    /// Ends the session politely: QUIT, waiting briefly for the reply.
    pub fn quit(mut self, io_timeout: Duration) {
        self.conn.bound_quit_wait(net::quit_wait(io_timeout));
        let _ = self.command(Command::Quit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mem::MemStream;

    fn session(replies: &str, auth: &[&str]) -> Session<MemStream> {
        let mut s = Session::new(MemStream::new(replies), Tracer::default());
        s.ext.auth = auth.iter().map(|m| m.to_string()).collect();
        s
    }

    fn written(s: &Session<MemStream>) -> String {
        s.conn.get_ref().written()
    }

    #[test]
    fn helo_fallback_and_greeting_refusal() {
        let mut s = session("502 5.5.2 what?\r\n250 hi\r\n", &[]);
        s.hello("client.example").unwrap();
        assert_eq!(written(&s), "EHLO client.example\r\nHELO client.example\r\n");
        assert!(!s.ext.esmtp && !s.ext.pipelining);
        let e = session("421 4.3.2 busy\r\n", &[]).greeting().unwrap_err();
        assert_eq!((e.status, e.reply_code), (Status::Transient, 421));
    }

    #[test]
    fn a_scripted_session_from_greeting_to_auth() {
        let mut s = Session::new(
            MemStream::scripted(
                "220 mx.example ESMTP\r\n",
                &[
                    ("EHLO c.example\r\n", "250-mx.example\r\n250 AUTH PLAIN\r\n"),
                    ("AUTH PLAIN AHUAcA==\r\n", "235 2.7.0 ok\r\n"),
                ],
            ),
            Tracer::default(),
        );
        s.greeting().unwrap();
        s.hello("c.example").unwrap();
        assert_eq!(s.ext.auth, ["PLAIN"]);
        s.authenticate("u", Some("p"), None).unwrap();
        let e = session("421 4.3.2 closing\r\n", &[]).hello("c").unwrap_err();
        assert_eq!((e.status, e.reply_code), (Status::Transient, 421));
    }

    #[test]
    fn ehlo_keywords() {
        let r = Reply::from_lines(
            250,
            [
                "mx.example hello",
                "PIPELINING",
                "SIZE 10240000",
                "8bitmime",
                "AUTH PLAIN LOGIN",
                "AUTH=XOAUTH2",
                "CHUNKING",
                "STARTTLS",
                "",
            ],
        );
        let e = Extensions::parse(&r);
        assert!(e.pipelining && e.chunking && e.eightbitmime && e.starttls && !e.smtputf8);
        assert_eq!(e.size, Some(10_240_000));
        assert_eq!(e.auth, ["PLAIN", "LOGIN", "XOAUTH2"]);
    }
}
