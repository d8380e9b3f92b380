//! A private Exim 4 (4.96, Debian's `exim4-daemon-light`), started by the
//! tests like the other servers.
//!
//! Exim's packages conflict with Postfix's, so the daemon is never
//! installed: `scripts/install-exim.sh` (run by
//! `scripts/install-test-deps.sh`) extracts the package's binary into
//! [`EXIM_DIR`] and installs the libraries it links. Each [`Exim`] has its
//! own config (`tests/servers/exim/exim.conf.in`, with `exim_path` naming
//! that binary), spool, log and maildir under its temp dir, and its own port
//! on 127.0.0.1. It offers PIPELINING, CHUNKING, SIZE, 8BITMIME and
//! SMTPUTF8, refuses recipients past `recipients_max` (5 unless the test
//! says otherwise) with `452 too many recipients`, refuses local parts
//! starting with `refuse` (550) or `later` (450), and delivers every
//! accepted message for `@example.org` into one maildir, one file per
//! recipient: see [`Exim::deliveries`].
//!
//! # Process lifetime
//!
//! `exim4 -C CONF -bdf -q1s` keeps the daemon in the foreground (with a
//! queue run every second, for messages whose receiving process was killed
//! after their 250), in the process
//! group the supervisor made for it, with every process it forks (one per
//! connection, one per delivery), so stopping is the same as for the other
//! servers: SIGKILL to that group. Run as root: given `-C`, Exim drops its
//! privilege to the `Debian-exim` user (its compiled-in exim_user), which
//! owns the spool and the maildir.
//!
//! Start-up takes about 0.1 s here.
//!
//! # What differs from Postfix (seen with 4.96 here)
//!
//! * An ACL's `defer` answers 451, not 450; a refused RCPT counts against
//!   `recipients_max` too (12 recipients with one refused and one deferred
//!   at a limit of 5 take 3 transactions).
//! * It delivers each message from the process that received it, right
//!   after the 250; a message whose receiving process is killed then waits
//!   for a queue run (hence `-q1s`).
//! * Without `notifier_socket`, every instance binds the same abstract
//!   socket; without `smtp_accept_queue_per_connection = 0`, messages past
//!   the 10th on one connection wait for a queue run; without
//!   `daemon_startup_retries = 0`, a taken port costs 30 s per retry.
//! * Its greeting says "ESMTP Exim", which herald's driver recognises as a
//!   server that takes transactions pipelined behind a BDAT (no probe).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::postfix::{maildir_deliveries, wait_for_deliveries, Delivery, DeliveryHeaders};
use crate::{
    bind_failed, chown_tree, expect_greeting, find_placeholder, free_port, is_executable, lookup_user,
    require_servers, Supervised, TempDir, STOP_TIMEOUT,
};

/// Where `scripts/install-exim.sh` puts the extracted package; the
/// environment variable `HERALD_EXIM_DIR` overrides it.
pub const EXIM_DIR: &str = "/opt/herald-test-servers/exim";
const CONF: &str = include_str!("../../tests/servers/exim/exim.conf.in");
/// Exim's user (compiled into Debian's binary).
pub const EXIM_USER: &str = "Debian-exim";

/// The extracted daemon binary.
pub fn exim_binary() -> PathBuf {
    let dir = std::env::var_os("HERALD_EXIM_DIR").map_or_else(|| PathBuf::from(EXIM_DIR), PathBuf::from);
    dir.join("root/usr/sbin/exim4")
}

/// A running private Exim instance.
pub struct Exim {
    /// The daemon's port on 127.0.0.1.
    pub port: u16,
    /// The instance's temp dir (config, spool, log, mail).
    pub root: PathBuf,
    proc: Supervised,
    /// Kept for its drop: removes the instance's files.
    _dir: TempDir,
}

impl Exim {
    /// Starts an instance with the default config (recipients_max 5).
    pub fn start() -> Exim {
        Self::start_with("")
    }

    /// Starts an instance with `extra_main` added to the main section of the
    /// config (a later setting overrides an earlier one), e.g.
    /// `"recipients_max = 2\n"`. Returns once Exim answers with its greeting.
    pub fn start_with(extra_main: &str) -> Exim {
        require_servers();
        let bin = exim_binary();
        assert!(
            is_executable(&bin),
            "the Exim tests need {}: sudo scripts/install-test-deps.sh (it runs scripts/install-exim.sh)",
            bin.display()
        );
        assert!(
            lookup_user(EXIM_USER).is_some(),
            "user {EXIM_USER}: sudo scripts/install-exim.sh"
        );
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match start_exim(&bin, extra_main) {
                Ok(e) => return e,
                Err((e, true)) => last_err = e,
                Err((e, false)) => {
                    last_err = e;
                    break;
                }
            }
        }
        panic!("Exim did not start: {last_err}");
    }

    /// `host:port` of the daemon.
    pub fn addr(&self) -> String {
        format!("{}:{}", crate::HOST, self.port)
    }

    /// Exim's main and reject logs, and what it wrote to stderr.
    pub fn log(&self) -> String {
        ["log/mainlog", "log/rejectlog", "log/paniclog", "exim.out"]
            .iter()
            .map(|f| fs::read_to_string(self.root.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The maildir every accepted message is delivered to.
    pub fn maildir(&self) -> PathBuf {
        self.root.join("mail/inbox")
    }

    /// Every delivered copy so far (complete files in `new/`), in no order.
    /// Exim's own header lines (Return-path, Envelope-to, Delivery-date,
    /// Received) are taken off: [`Delivery::body`] is the message as
    /// received, with LF line endings.
    pub fn deliveries(&self) -> Vec<Delivery> {
        maildir_deliveries(&self.maildir(), parse_delivery, "an Exim maildir delivery")
    }

    /// Waits until Exim's queue is empty (every accepted message was
    /// delivered or deferred: nothing is on its way) and at least `n` copies
    /// were delivered, or `timeout` passes; returns the deliveries.
    pub fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        wait_for_deliveries(n, timeout, || self.queue_is_settled(), || self.deliveries())
    }

    /// Waits until nothing is being delivered, then returns the deliveries.
    pub fn settled_deliveries(&self, timeout: Duration) -> Vec<Delivery> {
        self.wait_for_deliveries(0, timeout)
    }

    /// True when no message is on Exim's spool (`input/`), or every message
    /// there had a delivery attempt that deferred all its recipients (none
    /// here does: the config defers at RCPT time, not at delivery).
    fn queue_is_settled(&self) -> bool {
        let input = self.root.join("spool/input");
        let Ok(rd) = fs::read_dir(&input) else { return true };
        !rd.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("-H"))
    }

    /// Kills (SIGKILL) every process of this instance that serves an SMTP
    /// connection: its clients' connections drop in the middle of whatever
    /// they were doing. The daemon (the group leader) and deliveries stay.
    /// Returns how many were killed.
    pub fn kill_connections(&self) -> usize {
        let pids: Vec<u32> = crate::live_group_members(self.proc.pid)
            .into_iter()
            .filter(|&pid| pid != self.proc.pid)
            .filter(|pid| {
                // A connection's process has its socket open: it is a child of
                // the daemon with the daemon's argv, not a delivery (-Mc).
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                    args.iter().any(|a| *a == b"-bdf") && !args.iter().any(|a| a.starts_with(b"-M"))
                })
            })
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

impl Drop for Exim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of the Exim logs ({}) ---\n{}",
                self.root.display(),
                tail.join("\n")
            );
        }
        self.proc.stop(false, STOP_TIMEOUT);
    }
}

/// Parses a maildir file written by the config's appendfile transport:
/// `Return-path:`, `Envelope-to:`, `Delivery-date:`, then Exim's
/// `Received:` header with its continuation lines, then the message.
pub fn parse_delivery(path: PathBuf, data: &[u8]) -> Option<Delivery> {
    let exim = DeliveryHeaders {
        return_path: "Return-path: ",
        delivered_to: "Envelope-to: ",
        other: "Delivery-date: ",
    };
    Delivery::parse_with(path, data, &exim)
}

/// One attempt. Err((log, retry)): `retry` when the port was taken.
fn start_exim(bin: &Path, extra_main: &str) -> Result<Exim, (String, bool)> {
    let (uid, gid) = lookup_user(EXIM_USER).expect("user Debian-exim");
    let dir = TempDir::new("exim");
    let root = dir.path().to_path_buf();
    let port = free_port();
    for d in ["spool", "log", "mail/inbox"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for d in ["spool", "log", "mail"] {
        chown_tree(&root.join(d), uid, gid);
    }
    let text = CONF
        .replace("@EXIM@", &bin.display().to_string())
        .replace("@ROOT@", &root.display().to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@RCPT_LIMIT@", "5");
    if let Some(p) = find_placeholder(&text) {
        panic!("tests/servers/exim/exim.conf.in: unknown placeholder {p}");
    }
    // The main section ends at the first "begin": extra settings go before it.
    let split = text.find("\nbegin ").expect("a begin line");
    let conf = format!(
        "{}\n# --- extra settings from the test\n{extra_main}\n{}",
        &text[..split],
        &text[split..]
    );
    let conf_path = root.join("exim.conf");
    fs::write(&conf_path, conf).unwrap();

    let out = root.join("exim.out");
    // A queue run every second: a message whose receiving process died
    // after its 250 (a test that kills connections) is still delivered.
    let args = vec![
        "-C".to_string(),
        conf_path.display().to_string(),
        "-bdf".to_string(),
        "-q1s".to_string(),
    ];
    let proc = Supervised::spawn("exim", &bin.display().to_string(), &args, &out, &root);
    let ready = crate::wait_listening(&proc, &[port], &out).and_then(|()| expect_greeting(port, "220 "));
    match ready {
        Ok(()) => Ok(Exim {
            port,
            root,
            proc,
            _dir: dir,
        }),
        Err(e) => {
            let log = ["log/mainlog", "log/paniclog", "exim.out"]
                .iter()
                .map(|f| fs::read_to_string(root.join(f)).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            let text = format!("{e}\n{log}");
            let retry = bind_failed(&text) || text.contains("Address already in use");
            drop(proc);
            Err((text, retry))
        }
    }
}
