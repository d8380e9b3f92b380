//! A private Dovecot 2.3: IMAP, POP3 and submission ([`Dovecot`]).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::files::{chown_tree, find_placeholder, self_signed_cert, TempDir};
use crate::ports::free_port;
use crate::preconditions::{euid, lookup_user, require_servers};
use crate::process::{bind_failed, expect_greeting, wait_listening, Supervised, STOP_TIMEOUT};
use crate::smtp_sink::SmtpSink;

/// Dovecot master binary.
pub const DOVECOT: &str = "/usr/sbin/dovecot";
/// Dovecot admin tool.
pub const DOVEADM: &str = "/usr/bin/doveadm";
/// Users of every [`Dovecot`] instance: `(user, password)`.
pub const USERS: [(&str, &str); 3] = [("alice", "alicepass"), ("bob", "bobpass"), ("carol", "carolpass")];

/// The config template (kept in the repository's `tests/servers/`, which the
/// Python bindings' tests read too).
const DOVECOT_CONF_TEMPLATE: &str = include_str!("../../tests/servers/dovecot.conf.in");

/// A private Dovecot 2.3 instance (config: `tests/servers/dovecot.conf.in`)
/// with its own temp dir, ports, instance name, TLS certificate and
/// [`SmtpSink`] relay target. Several may run at once.
///
/// * IMAP on `imap_port` (plain, STARTTLS offered) and `imaps_port` (TLS).
/// * POP3 on `pop3_port` (plain, STLS offered) and `pop3s_port` (TLS).
/// * Submission on `submission_port`: SMTP, STARTTLS, AUTH PLAIN LOGIN
///   (also allowed without TLS), PIPELINING, CHUNKING, SIZE, 8BITMIME,
///   ENHANCEDSTATUSCODES, BURL; relays accepted mail to `sink`.
/// * Users: [`USERS`]; maildir under `root/mail/<user>/Maildir`, owned by
///   `vmail`; mailboxes separated by `/`; Sent, Drafts, Trash, Junk carry
///   SPECIAL-USE flags when created.
/// * TLS certificate: self-signed EC P-256, CN=localhost, SAN DNS:localhost
///   and IP:127.0.0.1; `ca_file` is that PEM, usable as the CA to trust.
pub struct Dovecot {
    /// IMAP, plain (STARTTLS offered).
    pub imap_port: u16,
    /// IMAP over implicit TLS.
    pub imaps_port: u16,
    /// POP3, plain (STLS offered).
    pub pop3_port: u16,
    /// POP3 over implicit TLS.
    pub pop3s_port: u16,
    /// Submission (SMTP with STARTTLS and AUTH).
    pub submission_port: u16,
    /// The self-signed server certificate (PEM): trust it as a CA.
    pub ca_file: PathBuf,
    /// Where submission relays to.
    pub sink: SmtpSink,
    /// The instance's temp dir (config, run/, state/, mail/, tls/, logs).
    pub root: PathBuf,
    /// The generated config file (`root/dovecot.conf`).
    pub conf: PathBuf,
    /// Dovecot `instance_name` (process titles read `dovecot-<instance>/...`).
    pub instance: String,
    proc: Supervised,
    _dir: TempDir,
}

impl Dovecot {
    /// Starts an instance and returns once every listener accepts and the
    /// IMAP, POP3 and submission greetings arrive.
    pub fn start() -> Dovecot {
        Self::start_with("")
    }

    /// Like [`start`](Self::start), with `extra_conf` appended to the config
    /// (later settings override earlier ones), e.g.
    /// `"imap_idle_notify_interval = 5 secs\n"`.
    pub fn start_with(extra_conf: &str) -> Dovecot {
        require_servers();
        assert_eq!(
            euid(),
            0,
            "Dovecot tests must run as root (Dovecot switches to the vmail user); CI runs them as root"
        );
        let sink = SmtpSink::start(&[]);
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match start_dovecot(sink.port, extra_conf) {
                Ok(s) => {
                    return Dovecot {
                        imap_port: s.ports[0],
                        imaps_port: s.ports[1],
                        pop3_port: s.ports[2],
                        pop3s_port: s.ports[3],
                        submission_port: s.ports[4],
                        ca_file: s.dir.path().join("tls/cert.pem"),
                        sink,
                        root: s.dir.path().to_path_buf(),
                        conf: s.dir.path().join("dovecot.conf"),
                        instance: s.instance,
                        proc: s.proc,
                        _dir: s.dir,
                    }
                }
                // A port was taken by another process between free_port()
                // and Dovecot's bind: start over with fresh ports.
                Err((e, true)) => last_err = e,
                Err((e, false)) => {
                    last_err = e;
                    break;
                }
            }
        }
        panic!("Dovecot did not start: {last_err}");
    }

    /// Pid of the Dovecot master process.
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// The maildir of `user`: `root/mail/<user>/Maildir` (exists from start).
    pub fn user_maildir(&self, user: &str) -> PathBuf {
        self.root.join("mail").join(user).join("Maildir")
    }

    /// Dovecot's log (`root/dovecot.log`) followed by anything the master
    /// wrote to stderr: for debugging failures.
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.root.join("dovecot.log")).unwrap_or_default();
        let stderr = fs::read_to_string(self.root.join("dovecot.stderr")).unwrap_or_default();
        if !stderr.is_empty() {
            s.push_str("--- dovecot stderr ---\n");
            s.push_str(&stderr);
        }
        s
    }

    /// Runs `doveadm -c <conf> <args>` (with `stdin` as its input) and
    /// returns its stdout; panics if it fails.
    pub fn doveadm(&self, args: &[&str], stdin: &[u8]) -> String {
        let mut child = Command::new(DOVEADM)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn doveadm");
        let mut input = child.stdin.take().expect("doveadm stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait doveadm");
        let _ = writer.join();
        assert!(
            out.status.success(),
            "doveadm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stores `message` in `user`'s `mailbox` (created if missing) with
    /// `doveadm save`, as a delivery would: indexes stay consistent and
    /// IMAP IDLE clients are notified.
    pub fn append(&self, user: &str, mailbox: &str, message: &[u8]) {
        if !mailbox.eq_ignore_ascii_case("INBOX") {
            let list = self.doveadm(&["mailbox", "list", "-u", user], b"");
            if !list.lines().any(|l| l == mailbox) {
                self.create_mailbox(user, mailbox);
            }
        }
        self.doveadm(&["save", "-u", user, "-m", mailbox], message);
    }

    /// Creates a mailbox for `user` (`/` is the hierarchy separator).
    pub fn create_mailbox(&self, user: &str, mailbox: &str) {
        self.doveadm(&["mailbox", "create", "-u", user, mailbox], b"");
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of the Dovecot log ({}) ---\n{}",
                self.root.display(),
                tail.join("\n")
            );
        }
        // SIGKILL to the master and all its children (one process group),
        // then wait until all are gone. (`doveadm stop` signals only the
        // master: 1-8 s here, with session processes left over.) Then `sink`
        // and `dir` drop.
        self.proc.stop(false, STOP_TIMEOUT);
    }
}

struct StartedDovecot {
    // field order = drop order: stop the process before removing its dir
    proc: Supervised,
    dir: TempDir,
    ports: [u16; 5],
    instance: String,
}

/// One attempt to start Dovecot. Err((log, retry)): `retry` when a port
/// was already in use.
fn start_dovecot(sink_port: u16, extra_conf: &str) -> Result<StartedDovecot, (String, bool)> {
    static INSTANCES: AtomicU64 = AtomicU64::new(0);
    let (vmail_uid, vmail_gid) = lookup_user("vmail").expect("user vmail (scripts/install-test-deps.sh)");
    let dir = TempDir::new("dovecot");
    let root = dir.path().to_path_buf();
    let instance = format!(
        "herald-{}-{}",
        std::process::id(),
        INSTANCES.fetch_add(1, Ordering::Relaxed)
    );

    self_signed_cert(&root);

    // Users: passwd-file (scheme=PLAIN) and pre-created maildirs.
    let passwd: String = USERS.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
    fs::write(root.join("passwd"), passwd).expect("write passwd");
    let mail = root.join("mail");
    for (user, _) in USERS {
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(mail.join(user).join("Maildir").join(sub)).expect("create maildir");
        }
    }
    chown_tree(&mail, vmail_uid, vmail_gid);
    for (user, _) in USERS {
        let _ = fs::set_permissions(mail.join(user), fs::Permissions::from_mode(0o700));
    }

    let ports = [free_port(), free_port(), free_port(), free_port(), free_port()];
    let mut conf_text = DOVECOT_CONF_TEMPLATE
        .replace("@ROOT@", &root.display().to_string())
        .replace("@INSTANCE@", &instance)
        .replace("@IMAP_PORT@", &ports[0].to_string())
        .replace("@IMAPS_PORT@", &ports[1].to_string())
        .replace("@POP3_PORT@", &ports[2].to_string())
        .replace("@POP3S_PORT@", &ports[3].to_string())
        .replace("@SUBMISSION_PORT@", &ports[4].to_string())
        .replace("@SINK_PORT@", &sink_port.to_string());
    if let Some(p) = find_placeholder(&conf_text) {
        panic!("tests/servers/dovecot.conf.in: unknown placeholder {p}");
    }
    conf_text.push_str("\n# --- extra settings from the test\n");
    conf_text.push_str(extra_conf);
    conf_text.push('\n');
    let conf = root.join("dovecot.conf");
    fs::write(&conf, conf_text).expect("write dovecot.conf");

    let stderr_log = root.join("dovecot.stderr");
    let args = vec!["-F".to_string(), "-c".to_string(), conf.display().to_string()];
    let proc = Supervised::spawn("dovecot", DOVECOT, &args, &stderr_log, &root);
    let ready = wait_listening(&proc, &ports, &stderr_log).and_then(|()| {
        expect_greeting(ports[0], "* OK")?;
        expect_greeting(ports[2], "+OK")?;
        expect_greeting(ports[4], "220 ")
    });
    match ready {
        Ok(()) => Ok(StartedDovecot {
            proc,
            dir,
            ports,
            instance,
        }),
        Err(e) => {
            let log = format!(
                "{e}\n{}{}",
                fs::read_to_string(root.join("dovecot.log")).unwrap_or_default(),
                fs::read_to_string(&stderr_log).unwrap_or_default()
            );
            let retry = bind_failed(&log);
            drop(proc); // stop it before `dir` goes
            Err((log, retry))
        }
    }
}
