//! A private, full Postfix smtpd (Postfix 3.x from Debian's `postfix`
//! package), started by the tests like the other servers.
//!
//! Each [`Postfix`] has its own config directory (`main.cf`, `master.cf`
//! from `tests/servers/postfix/*.in`), queue, data and mail directories under
//! its temp dir, and its own port on 127.0.0.1, so any number may run at
//! once, beside the system's own Postfix service, which stays off. It offers
//! PIPELINING, CHUNKING, SMTPUTF8, SIZE, 8BITMIME, DSN and STARTTLS (with a
//! self-signed certificate, not required), refuses recipients past
//! `smtpd_recipient_limit` (5 unless the test says otherwise) with `452 4.5.3
//! Error: too many recipients`, refuses recipients whose local part starts
//! with `refuse` with 554 and those starting with `later` with 450, and delivers every accepted message for
//! `@example.org` with virtual(8) into one maildir, one file per recipient:
//! see [`Delivery`].
//!
//! # Process lifetime
//!
//! `postfix start` (and even `start-fg`) leaves the master in a process group
//! of its own, out of reach of the supervisor. So `postfix -c DIR check` runs
//! first (it creates the queue directories), then the supervisor starts the
//! master itself, `master -c DIR -d`: it stays in the foreground and in the
//! process group the supervisor made for it, with every daemon it forks.
//! Stopping is then the same as for the other servers: SIGKILL to that
//! process group, from `Drop` or from the supervisor when the test process is
//! gone. `Drop` also reads the master's pid file and kills a master that
//! somehow ran elsewhere.
//!
//! Start-up takes about 0.5 s here (mostly `postfix check`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    bind_failed, chown_tree, expect_greeting, find_placeholder, free_port, lookup_user, require_servers,
    self_signed_cert, wait_listening, Supervised, TempDir, STOP_TIMEOUT,
};

/// Postfix's command (for `postfix check`).
pub const POSTFIX: &str = "/usr/sbin/postfix";
/// Postfix's master daemon.
pub const MASTER: &str = "/usr/lib/postfix/sbin/master";
const MAIN_CF: &str = include_str!("../../tests/servers/postfix/main.cf.in");
const MASTER_CF: &str = include_str!("../../tests/servers/postfix/master.cf.in");
const RCPT_ACCESS: &str = include_str!("../../tests/servers/postfix/rcpt_access");

/// A running private Postfix instance.
pub struct Postfix {
    /// The smtpd's port on 127.0.0.1.
    pub port: u16,
    /// The instance's temp dir: the config directory itself.
    pub root: PathBuf,
    /// The self-signed certificate (PEM) smtpd offers with STARTTLS.
    pub ca_file: PathBuf,
    proc: Supervised,
    /// Kept for its drop: removes the instance's files.
    _dir: TempDir,
}

/// The deliveries in a maildir's `new/`, each file parsed by `parse`;
/// `what` names what a file must be (a file that is not panics).
pub(crate) fn maildir_deliveries(
    maildir: &Path,
    parse: impl Fn(PathBuf, &[u8]) -> Option<Delivery>,
    what: &str,
) -> Vec<Delivery> {
    let Ok(dir) = fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let data = fs::read(e.path()).ok()?;
            Some(parse(e.path(), &data).unwrap_or_else(|| panic!("{}: not {what}", e.path().display())))
        })
        .collect()
}

/// Waits until at least `n` copies were delivered and `settled` says the
/// server's queue holds nothing more (asked first: a message leaves the
/// queue only after its delivery), or `timeout` passes; returns them.
pub(crate) fn wait_for_deliveries(
    n: usize,
    timeout: Duration,
    settled: impl Fn() -> bool,
    deliveries: impl Fn() -> Vec<Delivery>,
) -> Vec<Delivery> {
    let deadline = Instant::now() + timeout;
    loop {
        let settled = settled();
        let d = deliveries();
        if (d.len() >= n && settled) || Instant::now() >= deadline {
            return d;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One delivered copy of a message: virtual(8) writes a file per recipient,
/// starting with `Return-Path:`, `X-Original-To:`, `Delivered-To:` and
/// Postfix's `Received:` header, then the message as received with LF line
/// endings.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The delivered file.
    pub path: PathBuf,
    /// The envelope sender (Return-Path), without brackets.
    pub return_path: String,
    /// The envelope recipient.
    pub delivered_to: String,
    /// The message after Postfix's own header lines.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(80)]).into_owned();
        f.debug_struct("Delivery")
            .field("delivered_to", &self.delivered_to)
            .field("return_path", &self.return_path)
            .field("bytes", &self.body.len())
            .field("body", &body)
            .finish()
    }
}

/// The header lines a mail server puts before a delivered message, in a
/// maildir file: the envelope sender, the envelope recipient, one more
/// line of its own, then its `Received:` header.
pub struct DeliveryHeaders {
    /// The envelope sender's header, with its ": " ("Return-Path: ").
    pub return_path: &'static str,
    /// The envelope recipient's header ("Delivered-To: ").
    pub delivered_to: &'static str,
    /// One more line of the server's, skipped ("X-Original-To: ").
    pub other: &'static str,
}

impl Delivery {
    /// Parses a maildir file written by virtual(8).
    pub fn parse(path: PathBuf, data: &[u8]) -> Option<Delivery> {
        let postfix = DeliveryHeaders {
            return_path: "Return-Path: ",
            delivered_to: "Delivered-To: ",
            other: "X-Original-To: ",
        };
        Delivery::parse_with(path, data, &postfix)
    }

    /// Parses a maildir file whose server's own lines are `names`, then
    /// `Received:` with its continuation lines, then the message; None for
    /// a file that does not start so.
    pub fn parse_with(path: PathBuf, data: &[u8], names: &DeliveryHeaders) -> Option<Delivery> {
        let mut return_path = None;
        let mut delivered_to = None;
        let mut rest = data;
        let mut in_received = false;
        loop {
            let end = rest.iter().position(|&b| b == b'\n')?;
            let line = String::from_utf8_lossy(&rest[..end]).into_owned();
            if in_received && line.starts_with([' ', '\t']) {
                rest = &rest[end + 1..];
                continue;
            }
            if in_received {
                break; // the first line after the server's Received header
            }
            if let Some(v) = line.strip_prefix(names.return_path) {
                return_path = Some(v.trim().trim_start_matches('<').trim_end_matches('>').to_string());
            } else if let Some(v) = line.strip_prefix(names.delivered_to) {
                delivered_to = Some(v.trim().to_string());
            } else if line.starts_with(names.other) {
            } else if line.starts_with("Received: ") {
                in_received = true;
            } else {
                return None;
            }
            rest = &rest[end + 1..];
        }
        Some(Delivery {
            path,
            return_path: return_path?,
            delivered_to: delivered_to?,
            body: rest.to_vec(),
        })
    }
}

/// What a maildir holds for an original message `msg` (the bytes a client
/// was asked to send): each CRLF as LF, and a final LF added unless `msg` is
/// empty or already ends in one. Bare LFs stay as they are.
pub fn maildir_form(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    let mut i = 0;
    while i < msg.len() {
        if msg[i] == b'\r' && msg.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(msg[i]);
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

impl Postfix {
    /// Starts an instance with the default config (recipient limit 5).
    pub fn start() -> Postfix {
        Self::start_with("")
    }

    /// Starts an instance with `extra_main_cf` appended to main.cf (a later
    /// setting overrides an earlier one), e.g. `"smtpd_recipient_limit = 2\n"`.
    /// Returns once smtpd answers with its greeting.
    pub fn start_with(extra_main_cf: &str) -> Postfix {
        require_servers();
        assert!(
            Path::new(POSTFIX).exists() && Path::new("/usr/lib/postfix/sbin/virtual").exists(),
            "the full Postfix tests need Debian's postfix package: sudo scripts/install-test-deps.sh"
        );
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match start_postfix(extra_main_cf) {
                Ok(p) => return p,
                Err((e, true)) => last_err = e,
                Err((e, false)) => {
                    last_err = e;
                    break;
                }
            }
        }
        panic!("Postfix did not start: {last_err}");
    }

    /// `host:port` of smtpd.
    pub fn addr(&self) -> String {
        format!("{}:{}", super::HOST, self.port)
    }

    /// Postfix's log (every daemon logs to the instance's log file).
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("postfix.log")).unwrap_or_default()
    }

    /// The maildir every accepted message is delivered to.
    pub fn maildir(&self) -> PathBuf {
        self.root.join("mail/inbox")
    }

    /// Every delivered copy so far (complete files in `new/`), in no order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        maildir_deliveries(&self.maildir(), Delivery::parse, "a virtual(8) delivery")
    }

    /// Waits until at least `n` copies were delivered and Postfix's queue is
    /// empty (nothing more is on its way), or `timeout` passes; returns the
    /// deliveries.
    pub fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        wait_for_deliveries(n, timeout, || self.queue_is_empty(), || self.deliveries())
    }

    /// Waits until Postfix's queue is empty (every accepted message was
    /// delivered or discarded), then returns the deliveries.
    pub fn settled_deliveries(&self, timeout: Duration) -> Vec<Delivery> {
        self.wait_for_deliveries(0, timeout)
    }

    /// True when no message is in Postfix's incoming or active queue.
    fn queue_is_empty(&self) -> bool {
        ["incoming", "active", "maildrop"].iter().all(|q| {
            let mut stack = vec![self.root.join("queue").join(q)];
            while let Some(d) = stack.pop() {
                let Ok(rd) = fs::read_dir(&d) else { continue };
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(e.path());
                    } else {
                        return false;
                    }
                }
            }
            true
        })
    }

    /// Kills (SIGKILL) every smtpd process of this instance: its clients'
    /// connections drop in the middle of whatever they were doing. Returns
    /// how many were killed.
    pub fn kill_smtpd(&self) -> usize {
        let pids: Vec<u32> = super::live_group_members(self.proc.pid)
            .into_iter()
            .filter(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "smtpd"))
            .collect();
        for pid in &pids {
            let _ = Command::new("/bin/sh")
                .args(["-c", &format!("kill -KILL {pid}")])
                .status();
        }
        pids.len()
    }

    /// Removes every delivery so far.
    pub fn clear_deliveries(&self) {
        for d in self.deliveries() {
            let _ = fs::remove_file(d.path);
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("not owned by root")).collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of the Postfix log ({}) ---\n{}",
                self.root.display(),
                tail.join("\n")
            );
        }
        let pid_file = self.root.join("queue/pid/master.pid");
        let master: Option<u32> = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        self.proc.stop(false, STOP_TIMEOUT);
        if let Some(pid) = master.filter(|&p| p != self.proc.pid && super::pid_alive(p)) {
            eprintln!("postfix: master {pid} ran outside its process group; killing it");
            let _ = Command::new("/bin/sh")
                .args(["-c", &format!("kill -KILL {pid}")])
                .status();
        }
    }
}

/// One attempt. Err((log, retry)): `retry` when the port was taken.
fn start_postfix(extra_main_cf: &str) -> Result<Postfix, (String, bool)> {
    let (vmail_uid, vmail_gid) = lookup_user("vmail").expect("user vmail (scripts/install-test-deps.sh)");
    let (postfix_uid, postfix_gid) = lookup_user("postfix").expect("user postfix (the postfix package)");
    let dir = TempDir::new("postfix");
    let root = dir.path().to_path_buf();
    let port = free_port();

    let tls = self_signed_cert(&root);
    // smtpd reads the key as root before dropping privileges; keep it private.
    fs::set_permissions(tls.join("key.pem"), fs::Permissions::from_mode(0o600)).unwrap();

    fs::create_dir(root.join("queue")).unwrap();
    fs::create_dir(root.join("data")).unwrap();
    std::os::unix::fs::chown(root.join("data"), Some(postfix_uid), Some(postfix_gid)).unwrap();
    fs::create_dir_all(root.join("mail")).unwrap();
    chown_tree(&root.join("mail"), vmail_uid, vmail_gid);

    let fill = |template: &str, name: &str| -> String {
        let text = template
            .replace("@ROOT@", &root.display().to_string())
            .replace("@PORT@", &port.to_string())
            .replace("@RCPT_LIMIT@", "5")
            .replace("@UID@", &vmail_uid.to_string())
            .replace("@GID@", &vmail_gid.to_string());
        if let Some(p) = find_placeholder(&text) {
            panic!("tests/servers/postfix/{name}: unknown placeholder {p}");
        }
        text
    };
    let mut main_cf = fill(MAIN_CF, "main.cf.in");
    main_cf.push_str("\n# --- extra settings from the test\n");
    main_cf.push_str(extra_main_cf);
    main_cf.push('\n');
    fs::write(root.join("main.cf"), main_cf).unwrap();
    fs::write(root.join("master.cf"), fill(MASTER_CF, "master.cf.in")).unwrap();
    fs::write(root.join("rcpt_access"), RCPT_ACCESS).unwrap();

    let log = root.join("postfix.log");
    let check = Command::new(POSTFIX)
        .arg("-c")
        .arg(&root)
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .expect("run postfix check");
    assert!(
        check.status.success(),
        "postfix check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let args = vec!["-c".to_string(), root.display().to_string(), "-d".to_string()];
    let proc = Supervised::spawn("postfix", MASTER, &args, &log, &root);
    let ready = wait_listening(&proc, &[port], &log).and_then(|()| expect_greeting(port, "220 "));
    match ready {
        Ok(()) => Ok(Postfix {
            port,
            ca_file: tls.join("cert.pem"),
            root,
            proc,
            _dir: dir,
        }),
        Err(e) => {
            let text = format!("{e}\n{}", fs::read_to_string(&log).unwrap_or_default());
            let retry = bind_failed(&text);
            drop(proc);
            Err((text, retry))
        }
    }
}
