//! Postfix's `smtp-sink`: [`SmtpSink`], the messages it stored
//! ([`SinkDump`]) and [`sink_form`], the stored form of a message.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::files::TempDir;
use crate::ports::free_port;
use crate::preconditions::{euid, require_servers};
use crate::process::{bind_failed, wait_listening, Supervised, STOP_TIMEOUT};
use crate::HOST;

/// Postfix's SMTP test server.
pub const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// Postfix's `smtp-sink` on 127.0.0.1:`port`, run as
/// `smtp-sink -u nobody <extra_args> -d <dump_dir>/%M. 127.0.0.1:<port> 1024`
/// (`-u nobody` only when running as root; it is then required).
///
/// `-d <dump_dir>/%M.`: the template is expanded with strftime(3) and a
/// pseudo-random hex number is appended, so every mail transaction gets its
/// own file named `<minute>.<8 hex digits>`, e.g. `dumps/05.809a62e3`
/// (`%M` is just the minute; it carries no order within a minute). The dump
/// directory is mode 0777 because smtp-sink writes as `nobody`.
///
/// Life of a dump file (found by experiment, Postfix 3.7): created at MAIL
/// FROM, written while DATA arrives, closed after the final "." and before
/// the 250 reply; deleted again if the transaction is aborted (RSET, or the
/// connection drops before the "."). [`dumps`](Self::dumps) and
/// [`count_dumps`](Self::count_dumps) only report files that smtp-sink no
/// longer holds open (checked via `/proc/<pid>/fd`), i.e. complete messages;
/// a message counts as soon as the client has the 250 reply to its final
/// dot (checked 300 times in a row).
///
/// smtp-sink quirks: the last EHLO line is `250 ` with an empty keyword; AUTH
/// is advertised but answered 250 (not 235); no CHUNKING, no TLS; it
/// advertises XCLIENT, XFORWARD, DSN, 8BITMIME, PIPELINING,
/// ENHANCEDSTATUSCODES. Fault options (as `extra_args`): `-f CMDS` hard 5xx,
/// `-r CMDS` soft 4xx (both turn PIPELINING off), `-Q CMDS` 421 + disconnect,
/// `-q CMDS` silent disconnect, `-w SEC` delay before the DATA reply,
/// `-W CMD:SEC[:ODDS]` delay before a reply, `-A SEC` 550 after DATA and stop
/// reading. CMDS: CONNECT, EHLO, HELO, MAIL, RCPT, DATA, ".", RSET, QUIT...
pub struct SmtpSink {
    /// The port it listens on, on [`HOST`].
    pub port: u16,
    /// Where it writes one file per message (see [`SinkDump`]).
    pub dump_dir: PathBuf,
    log_path: PathBuf,
    proc: Supervised,
    _dir: TempDir,
}

impl SmtpSink {
    /// Starts a sink on a fresh port and returns once it listens.
    pub fn start(extra_args: &[&str]) -> SmtpSink {
        require_servers();
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let dir = TempDir::new("smtp-sink");
            let dump_dir = dir.path().join("dumps");
            fs::create_dir(&dump_dir).unwrap_or_else(|e| panic!("create {}: {e}", dump_dir.display()));
            fs::set_permissions(&dump_dir, fs::Permissions::from_mode(0o777))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", dump_dir.display()));
            let port = free_port();
            let log_path = dir.path().join("smtp-sink.log");
            let mut args: Vec<String> = Vec::new();
            if euid() == 0 {
                args.extend(["-u".to_string(), "nobody".to_string()]);
            }
            args.extend(extra_args.iter().map(|s| s.to_string()));
            args.push("-d".to_string());
            args.push(format!("{}/%M.", dump_dir.display()));
            args.push(format!("{HOST}:{port}"));
            args.push("1024".to_string());
            let proc = Supervised::spawn("smtp-sink", SMTP_SINK, &args, &log_path, dir.path());
            match wait_listening(&proc, &[port], &log_path) {
                Ok(()) => {
                    return SmtpSink {
                        port,
                        dump_dir,
                        log_path,
                        proc,
                        _dir: dir,
                    }
                }
                Err(e) => {
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    last_err = format!("{e}\nsmtp-sink {args:?}\n{log}");
                    if !bind_failed(&log) {
                        break;
                    }
                }
            }
        }
        panic!("smtp-sink did not start: {last_err}");
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// Pid of the smtp-sink process.
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// smtp-sink's stdout/stderr (it writes nothing unless it fails, or with
    /// `-v`/`-c`).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops the sink now (e.g. to test a server going away); dumps stay
    /// readable until `self` is dropped.
    pub fn stop(&mut self) {
        self.proc.stop(true, STOP_TIMEOUT);
    }

    /// Dump files smtp-sink still holds open (transactions in progress).
    fn open_files(&self) -> HashSet<PathBuf> {
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", self.proc.pid)) else {
            return HashSet::new();
        };
        fds.flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .collect()
    }

    /// (path, metadata) of the complete dump files, in no particular order.
    fn complete_files(&self) -> Vec<(PathBuf, fs::Metadata)> {
        // List first, then look at open fds: a file that is not open after
        // it was listed can only be complete (or already deleted).
        let listed: Vec<PathBuf> = match fs::read_dir(&self.dump_dir) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(_) => return Vec::new(),
        };
        let open = self.open_files();
        listed
            .into_iter()
            .filter(|p| !open.contains(p))
            .filter_map(|p| {
                let md = fs::metadata(&p).ok()?;
                // size 0: smtp-sink is inside open(2) right now (the name
                // exists before the fd does); nothing written yet.
                (md.is_file() && md.len() > 0).then_some((p, md))
            })
            .collect()
    }

    /// Number of complete dumps (cheap: no parsing).
    pub fn count_dumps(&self) -> usize {
        self.complete_files().len()
    }

    /// The complete dumps, parsed, oldest first by file mtime then name.
    /// The order is only approximate: mtime has a few ms resolution here and
    /// file names are random within a minute, so tests with several messages
    /// should match dumps by content (e.g. [`SinkDump::header`]).
    pub fn dumps(&self) -> Vec<SinkDump> {
        let mut files = self.complete_files();
        files.sort_by(|a, b| {
            let ta = a.1.modified().ok();
            let tb = b.1.modified().ok();
            ta.cmp(&tb).then_with(|| a.0.cmp(&b.0))
        });
        files
            .into_iter()
            .filter_map(|(path, _)| {
                let data = fs::read(&path).ok()?;
                SinkDump::parse(path, &data)
            })
            .collect()
    }

    /// Waits until at least `n` complete dumps exist, or `timeout` passes;
    /// returns [`dumps`](Self::dumps) either way.
    pub fn wait_for_dumps(&self, n: usize, timeout: Duration) -> Vec<SinkDump> {
        let deadline = Instant::now() + timeout;
        while self.count_dumps() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.dumps()
    }

    /// Removes every complete dump (in-progress transactions are kept).
    pub fn clear_dumps(&self) {
        for (path, _) in self.complete_files() {
            let _ = fs::remove_file(path);
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.proc.stop(false, STOP_TIMEOUT);
        // then `dir` is removed
    }
}

/// One message as smtp-sink stored it.
///
/// # Dump file format (Postfix 3.7 smtp-sink, `-d`), found by experiment
///
/// Every line ends in a bare LF. First smtp-sink's own records, one per line:
///
/// ```text
/// X-Client-Addr: 127.0.0.1
/// X-Client-Proto: ESMTP                       (SMTP after HELO)
/// X-Helo-Args: client.example                 (only if HELO/EHLO was sent)
/// X-Mail-Args: <a@x> BODY=8BITMIME SIZE=123   (text after "MAIL FROM:", leading blanks removed)
/// X-Rcpt-Args: <r1@y> NOTIFY=NEVER            (one line per accepted RCPT, in order;
/// X-Rcpt-Args: <r2@y>                          1200 recipients give 1200 lines)
/// Received: from client.example ([127.0.0.1])
/// <TAB>by smtp-sink (smtp-sink) with ESMTP id 03a1b249;
/// <TAB>Mon, 23 Nov 2026 07:28:48 +0000 (UTC)
/// ```
///
/// then the message exactly as received after the DATA command, with:
/// * dot-stuffing undone (`..x` on the wire is stored as `.x`, `..` as `.`),
/// * every CR byte removed: CRLF becomes LF, and a bare CR vanishes
///   (`a\rb` is stored as `ab`); a bare LF stays a LF, so CRLF and bare LF
///   cannot be told apart here,
/// * all other bytes kept verbatim (8-bit, NUL, trailing blanks, lines of
///   100,000 bytes),
///
/// and finally one extra empty line (`\n`) appended by smtp-sink.
///
/// A message whose last line had no CRLF cannot be told apart either: the
/// client must send CRLF before the final ".", so it is stored with a final
/// LF. [`sink_form`] computes the stored form of an original message.
///
/// Example: MAIL FROM:<a@x>, RCPT TO:<b@y>, then on the wire
/// `Subject: t\r\n\r\n..dot\r\nend\r\n.\r\n` gives the file
///
/// ```text
/// X-Client-Addr: 127.0.0.1\n
/// X-Client-Proto: ESMTP\n
/// X-Helo-Args: me\n
/// X-Mail-Args: <a@x>\n
/// X-Rcpt-Args: <b@y>\n
/// Received: from me ([127.0.0.1])\n
/// \tby smtp-sink (smtp-sink) with ESMTP id 72b969e1;\n
/// \tMon, 23 Nov 2026 07:28:48 +0000 (UTC)\n
/// Subject: t\n
/// \n
/// .dot\n
/// end\n
/// \n
/// ```
///
/// and `body == b"Subject: t\n\n.dot\nend\n"`.
#[derive(Clone)]
pub struct SinkDump {
    /// Reverse-path without angle brackets; "" for the null sender `<>`.
    pub mail_from: String,
    /// Forward-paths without angle brackets, in RCPT order.
    pub rcpts: Vec<String>,
    /// The message: the dump minus smtp-sink's records (X-* lines and its
    /// three-line Received: header) and minus the final empty line it adds.
    /// LF line endings, dot-stuffing undone, CRs removed (see above).
    pub body: Vec<u8>,
    /// The dump file.
    pub path: PathBuf,
    /// Full `X-Mail-Args` value, e.g. `<a@x> BODY=8BITMIME SIZE=120`.
    pub mail_args: String,
    /// Full `X-Rcpt-Args` values, e.g. `<b@y> NOTIFY=NEVER`.
    pub rcpt_args: Vec<String>,
    /// `X-Helo-Args`: the HELO/EHLO argument, if one was sent.
    pub helo: Option<String>,
    /// `X-Client-Proto`: `SMTP` or `ESMTP`.
    pub proto: String,
}

impl SinkDump {
    /// Parses a complete dump file; None if it is not one (yet).
    pub fn parse(path: PathBuf, data: &[u8]) -> Option<SinkDump> {
        let mut pos = 0;
        let next_line = |pos: &mut usize| -> Option<&[u8]> {
            let rest = &data[*pos..];
            let end = rest.iter().position(|&b| b == b'\n')?;
            *pos += end + 1;
            Some(&rest[..end])
        };
        let mut mail_args = None;
        let mut rcpt_args = Vec::new();
        let mut helo = None;
        let mut proto = String::new();
        let mut seen_client = false;
        loop {
            let line = next_line(&mut pos)?;
            let text = String::from_utf8_lossy(line).into_owned();
            if text.starts_with("X-Client-Addr: ") {
                seen_client = true;
            } else if !seen_client {
                // lines of a -S start string come first; skip them
            } else if let Some(v) = text.strip_prefix("X-Client-Proto: ") {
                proto = v.to_string();
            } else if let Some(v) = text.strip_prefix("X-Helo-Args: ") {
                helo = Some(v.to_string());
            } else if let Some(v) = text.strip_prefix("X-Mail-Args: ") {
                mail_args = Some(v.to_string());
            } else if let Some(v) = text.strip_prefix("X-Rcpt-Args: ") {
                rcpt_args.push(v.to_string());
            } else if text.starts_with("Received: ") {
                // exactly two continuation lines follow
                for _ in 0..2 {
                    let cont = next_line(&mut pos)?;
                    if !cont.starts_with(b"\t") {
                        return None;
                    }
                }
                break;
            } else if text.starts_with("X-") {
                // a record this version does not know; ignore
            } else {
                return None;
            }
        }
        let rest = &data[pos..];
        let body = rest.strip_suffix(b"\n")?.to_vec();
        let mail_args = mail_args?;
        Some(SinkDump {
            mail_from: smtp_path(&mail_args),
            rcpts: rcpt_args.iter().map(|a| smtp_path(a)).collect(),
            body,
            path,
            mail_args,
            rcpt_args,
            helo,
            proto,
        })
    }

    /// The body without the `Received:` header fields at its top (with
    /// their continuation lines). Dovecot's submission service prepends one
    /// (5 lines: `Received: from <helo> ([127.0.0.1])`, `by localhost with
    /// ESMTPA`, `id ...`, `(envelope-from <...>)`, `for <...>; <date>`) to
    /// every message it relays; this gives back what the client sent.
    pub fn body_after_received(&self) -> &[u8] {
        let mut pos = 0;
        let b = &self.body[..];
        while b[pos..].len() >= 9 && b[pos..pos + 9].eq_ignore_ascii_case(b"Received:") {
            // skip this field: its first line and every continuation line
            loop {
                match b[pos..].iter().position(|&c| c == b'\n') {
                    Some(i) => pos += i + 1,
                    None => return &b[b.len()..],
                }
                if !matches!(b.get(pos), Some(b' ') | Some(b'\t')) {
                    break;
                }
            }
        }
        &b[pos..]
    }

    /// The body as (lossy) UTF-8.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First header field `name` (case-insensitive) of the message, unfolded
    /// and trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.body);
        let mut found: Option<String> = None;
        for line in text.split('\n') {
            if line.is_empty() {
                break; // end of the header section
            }
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push_str(line);
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    found = Some(v.to_string());
                }
            }
        }
        found.map(|v| v.trim().to_string())
    }
}

impl std::fmt::Debug for SinkDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkDump")
            .field("mail_from", &self.mail_from)
            .field("rcpts", &self.rcpts)
            .field("body", &self.body_str())
            .field("path", &self.path)
            .field("mail_args", &self.mail_args)
            .field("rcpt_args", &self.rcpt_args)
            .field("helo", &self.helo)
            .field("proto", &self.proto)
            .finish()
    }
}

/// The address inside `<...>` at the start of MAIL/RCPT arguments (or the
/// first word when there are no brackets).
fn smtp_path(args: &str) -> String {
    let args = args.trim_start();
    if let Some(rest) = args.strip_prefix('<') {
        rest.split('>').next().unwrap_or("").to_string()
    } else {
        args.split_whitespace().next().unwrap_or("").to_string()
    }
}

/// What smtp-sink stores for an original message `msg` (the bytes a client
/// was asked to send, before dot-stuffing): every CR removed, and a final LF
/// added unless `msg` is empty or already ends in LF. So
/// `SinkDump::body == sink_form(original)` when the client transmitted the
/// message faithfully.
pub fn sink_form(msg: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = msg.iter().copied().filter(|&b| b != b'\r').collect();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}
