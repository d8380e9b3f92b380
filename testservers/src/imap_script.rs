//! A scripted IMAP server for hostile-server tests: it speaks enough IMAP
//! for herald's ops (greeting, CAPABILITY, AUTHENTICATE/LOGIN, LIST,
//! SELECT/EXAMINE, UID SEARCH, UID FETCH, APPEND, IDLE, LOGOUT) and, at one
//! chosen step, misbehaves in one chosen way.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::scripted::Peer;

/// Where the server misbehaves: instead of the greeting, or instead of its
/// reply to a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The greeting.
    Greeting,
    /// The greeting carries no capabilities: herald asks.
    Capability,
    /// The reply to AUTHENTICATE or LOGIN.
    Login,
    /// The reply to LIST.
    List,
    /// The reply to SELECT or EXAMINE.
    Select,
    /// The reply to UID SEARCH.
    Search,
    /// The reply to UID FETCH.
    Fetch,
    /// APPEND without LITERAL+: herald waits for "+".
    AppendContinue,
    /// The reply to IDLE ("+ idling").
    Idle,
    /// After "+ idling", while herald waits in IDLE.
    Idling,
    /// The reply to LOGOUT (a connection closed after IDLE_TIMEOUT_MS).
    Logout,
}

impl Step {
    /// Every step an op reaches (LOGOUT comes only when a connection closes).
    pub const ALL: [Step; 10] = [
        Step::Greeting,
        Step::Capability,
        Step::Login,
        Step::List,
        Step::Select,
        Step::Search,
        Step::Fetch,
        Step::AppendContinue,
        Step::Idle,
        Step::Idling,
    ];

    fn is(self, cmd: &str) -> bool {
        match self {
            Step::Greeting => false,
            Step::Capability => cmd == "CAPABILITY",
            Step::Login => cmd == "AUTHENTICATE" || cmd == "LOGIN",
            Step::List => cmd == "LIST",
            Step::Select => cmd == "SELECT" || cmd == "EXAMINE",
            Step::Search => cmd == "UID SEARCH",
            Step::Fetch => cmd == "UID FETCH",
            Step::AppendContinue => cmd == "APPEND",
            Step::Idle => cmd == "IDLE",
            Step::Idling => false,
            Step::Logout => cmd == "LOGOUT",
        }
    }
}

/// How the server misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evil {
    /// Control bytes, no tag, no status.
    Garbage,
    /// NUL bytes where the status word goes.
    Nul,
    /// Invalid UTF-8 where the status word goes.
    BadUtf8,
    /// One 300 KiB line (over the default MAX_LINE_BYTES).
    Overlong,
    /// A line that never ends, as fast as the socket takes it.
    Endless,
    /// A literal of 99 999 999 999 bytes announced.
    HugeLiteral,
    /// A literal of -1 bytes announced.
    NegativeLiteral,
    /// This many nested '(' in one line.
    Deep(usize),
    /// Unsolicited `* n EXISTS` without end.
    Flood,
    /// A line, then a line without end, one byte every 10 ms.
    Trickle,
    /// A tagged reply with a tag herald never sent.
    WrongTag,
    /// Not a word.
    Silence,
    /// A TCP reset.
    Reset,
}

impl Evil {
    /// Every misbehaviour (nesting at two depths).
    pub const ALL: [Evil; 14] = [
        Evil::Garbage,
        Evil::Nul,
        Evil::BadUtf8,
        Evil::Overlong,
        Evil::Endless,
        Evil::HugeLiteral,
        Evil::NegativeLiteral,
        Evil::Deep(400),
        Evil::Deep(12_000),
        Evil::Flood,
        Evil::Trickle,
        Evil::WrongTag,
        Evil::Silence,
        Evil::Reset,
    ];
}

/// The capabilities the server announces.
pub const CAPS: &str = "IMAP4rev1 AUTH=PLAIN SASL-IR IDLE LITERAL+ UIDPLUS MOVE";
const CAPS_NO_LITERAL_PLUS: &str = "IMAP4rev1 AUTH=PLAIN SASL-IR IDLE UIDPLUS MOVE";

/// How long a misbehaving script goes on at most.
const EVIL_FOR: Duration = Duration::from_secs(20);

/// Does what `evil` says, in place of a reply to `tag`, then holds the
/// connection until the client leaves.
pub fn misbehave(mut peer: Peer, tag: &str, evil: Evil) -> io::Result<()> {
    match evil {
        Evil::Garbage => peer.send(b"\x01\x02 garbage \x7f\r\n")?,
        Evil::Nul => peer.send(format!("{tag} \0OK\0 done\r\n"))?,
        Evil::BadUtf8 => {
            let mut b = format!("{tag} ").into_bytes();
            b.extend_from_slice(b"\xff\xfe\xc3 done\r\n");
            peer.send(b)?
        }
        Evil::Overlong => {
            let mut b = b"* ".to_vec();
            b.extend(std::iter::repeat_n(b'x', 300 * 1024));
            b.extend_from_slice(b"\r\n");
            peer.send(b)?
        }
        Evil::Endless => {
            let chunk = vec![b'x'; 64 * 1024];
            peer.send(b"* ")?;
            return peer.flood(EVIL_FOR, |_| chunk.clone());
        }
        Evil::HugeLiteral => peer.send(b"* 1 FETCH (UID 1 BODY[] {99999999999}\r\nxx")?,
        Evil::NegativeLiteral => peer.send(b"* 1 FETCH (UID 1 BODY[] {-1}\r\nxx)\r\n")?,
        Evil::Deep(n) => {
            let mut b = b"* 1 FETCH (BODYSTRUCTURE ".to_vec();
            b.extend(std::iter::repeat_n(b'(', n));
            b.extend_from_slice(b"\r\n");
            peer.send(b)?
        }
        Evil::Flood => return peer.flood(EVIL_FOR, |i| format!("* {} EXISTS\r\n", i + 1).into_bytes()),
        Evil::Trickle => {
            // A whole line, then one that never ends, a byte every 10 ms.
            peer.trickle(b"* OK still here\r\n* OK ", Duration::from_millis(10))?;
            while !peer.stopping() {
                peer.trickle(b"x", Duration::from_millis(10))?;
            }
            return Ok(());
        }
        Evil::WrongTag => peer.send("x999 OK done\r\n")?,
        Evil::Silence => {}
        Evil::Reset => {
            peer.reset();
            return Ok(());
        }
    }
    peer.silence(EVIL_FOR);
    Ok(())
}

/// The command of a client line: `UID FETCH`, `LIST`...
fn command(line: &str) -> (String, String) {
    let mut w = line.splitn(3, ' ');
    let tag = w.next().unwrap_or("").to_string();
    let cmd = w.next().unwrap_or("").to_ascii_uppercase();
    if cmd == "UID" {
        let sub = w
            .next()
            .unwrap_or("")
            .split(' ')
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        return (tag, format!("UID {sub}"));
    }
    (tag, cmd)
}

/// A literal marker `{n}` or `{n+}` ending a client line.
fn literal(line: &str) -> Option<(usize, bool)> {
    let body = line.strip_suffix('}')?;
    let open = body.rfind('{')?;
    let d = &body[open + 1..];
    let plus = d.ends_with('+');
    Some((d.trim_end_matches('+').parse().ok()?, plus))
}

/// What IDLE does once "+ idling" is sent: wait for DONE, or flood
/// EXISTS with growing counts until DONE (counted in `sent`).
#[derive(Clone, Default)]
pub struct IdleFlood {
    /// How many EXISTS lines were sent during IDLE so far.
    pub sent: Arc<AtomicU64>,
    /// The last EXISTS count sent before the client's DONE was seen.
    pub last_before_done: Arc<AtomicU64>,
}

/// Plays a well-behaved server until `evil_at`, then misbehaves with
/// `evil`. `idle_flood`: IDLE floods EXISTS until DONE.
pub fn serve(
    mut peer: Peer,
    evil_at: Option<(Step, Evil)>,
    idle_flood: Option<&IdleFlood>,
) -> io::Result<()> {
    let caps = match evil_at {
        Some((Step::AppendContinue, _)) => CAPS_NO_LITERAL_PLUS,
        _ => CAPS,
    };
    match evil_at {
        Some((Step::Greeting, evil)) => return misbehave(peer, "*", evil),
        Some((Step::Capability, _)) => peer.send("* OK hello\r\n")?,
        _ => peer.send(format!("* OK [CAPABILITY {caps}] hello\r\n"))?,
    }
    let mut exists = 3u64;
    loop {
        let line = peer.line()?;
        if line.is_empty() {
            return Ok(());
        }
        let (tag, cmd) = command(&line);
        if let Some((step, evil)) = evil_at {
            if step.is(&cmd) {
                return misbehave(peer, &tag, evil);
            }
        }
        let reply = match cmd.as_str() {
            "CAPABILITY" => format!("* CAPABILITY {caps}\r\n{tag} OK done\r\n"),
            "AUTHENTICATE" | "LOGIN" => format!("{tag} OK [CAPABILITY {caps}] logged in\r\n"),
            "LIST" => format!("* LIST (\\HasNoChildren) \"/\" INBOX\r\n{tag} OK listed\r\n"),
            "SELECT" | "EXAMINE" => format!("* {exists} EXISTS\r\n{tag} OK [READ-WRITE] selected\r\n"),
            "UID SEARCH" => format!("* SEARCH 1 2\r\n{tag} OK done\r\n"),
            "UID FETCH" => format!("* 1 FETCH (UID 1 BODY[] {{5}}\r\nhello)\r\n{tag} OK done\r\n"),
            "APPEND" => {
                let mut line = line.clone();
                while let Some((n, plus)) = literal(&line) {
                    if !plus {
                        peer.send("+ go\r\n")?;
                    }
                    peer.bytes(n)?;
                    line = peer.line()?;
                }
                format!("{tag} OK [APPENDUID 1 7] appended\r\n")
            }
            "IDLE" => {
                peer.send("+ idling\r\n")?;
                if let Some((Step::Idling, evil)) = evil_at {
                    return misbehave(peer, &tag, evil);
                }
                match idle_flood {
                    Some(f) => exists = flood_until_done(&mut peer, f, exists)?,
                    None => {
                        if peer.line()?.is_empty() {
                            return Ok(());
                        }
                    }
                }
                format!("{tag} OK idle done\r\n")
            }
            "LOGOUT" => {
                peer.send(format!("* BYE bye\r\n{tag} OK\r\n"))?;
                return Ok(());
            }
            _ => format!("{tag} OK\r\n"),
        };
        peer.send(reply)?;
    }
}

/// Floods `* n EXISTS` with growing n until the client says DONE (read on
/// another thread); returns the last n sent.
fn flood_until_done(peer: &mut Peer, f: &IdleFlood, mut n: u64) -> io::Result<u64> {
    let done = Arc::new(AtomicBool::new(false));
    let mut reader = peer.stream().try_clone()?;
    let seen = done.clone();
    let t = std::thread::spawn(move || {
        // Byte by byte, so nothing after DONE is taken from the peer.
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while reader.read(&mut b).unwrap_or(0) == 1 {
            if b[0] == b'\n' {
                if line.starts_with(b"DONE") {
                    break;
                }
                line.clear();
            } else {
                line.push(b[0]);
            }
        }
        seen.store(true, Ordering::SeqCst);
    });
    let mut batch = Vec::new();
    while !done.load(Ordering::SeqCst) && !peer.stopping() {
        batch.clear();
        for _ in 0..64 {
            n += 1;
            batch.extend_from_slice(format!("* {n} EXISTS\r\n").as_bytes());
        }
        if peer.send(&batch).is_err() {
            break;
        }
        f.sent.fetch_add(64, Ordering::SeqCst);
    }
    f.last_before_done.store(n, Ordering::SeqCst);
    let _ = t.join();
    Ok(n)
}

/// This process's resident set now and at its peak, in KiB (Linux).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
