//! A private Cyrus IMAP 3.6 ([`Cyrus`]), run from Debian's .debs unpacked
//! by `scripts/cyrus-debs.sh` (Cyrus conflicts with the Dovecot packages,
//! so it is never installed).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::files::{chown_tree, find_placeholder, self_signed_cert, TempDir};
use crate::ports::free_port;
use crate::preconditions::{euid, is_executable, lookup_user, require_servers, which};
use crate::process::{bind_failed, expect_greeting, wait_listening, Supervised, STOP_TIMEOUT};

/// Where `scripts/cyrus-debs.sh` unpacks Cyrus unless `HERALD_CYRUS_DIR` says otherwise.
pub const CYRUS_DIR: &str = "/opt/herald-cyrus";
/// Users of every [`Cyrus`] instance: `(user, password)`, as Dovecot's.
pub const CYRUS_USERS: [(&str, &str); 3] =
    [("alice", "alicepass"), ("bob", "bobpass"), ("carol", "carolpass")];

const IMAPD_CONF_TEMPLATE: &str = include_str!("../../tests/servers/cyrus/imapd.conf.in");
const CYRUS_CONF_TEMPLATE: &str = include_str!("../../tests/servers/cyrus/cyrus.conf.in");

/// The unpacked Cyrus tree.
pub fn cyrus_dir() -> PathBuf {
    std::env::var_os("HERALD_CYRUS_DIR").map_or_else(|| PathBuf::from(CYRUS_DIR), PathBuf::from)
}

/// A private Cyrus IMAP 3.6 instance (configs: `tests/servers/cyrus/`)
/// with its own temp dir and ports. Several may run at once.
///
/// * IMAP on `imap_port` (plain, STARTTLS offered) and `imaps_port` (TLS),
///   AUTH=PLAIN and LOGIN (also without TLS), LITERAL+, MULTIAPPEND,
///   UIDPLUS, MOVE, IDLE (through `idled`), CONDSTORE, QRESYNC, ESEARCH.
/// * Users: [`CYRUS_USERS`] in a sasldb; each INBOX is created at the
///   user's first login. Folders sit beside INBOX, separated by `/`.
/// * `munge8bit: no`: 8-bit header bytes are kept. Cyrus refuses messages
///   with NUL bytes or bare LF, and a MULTIAPPEND with one of them is
///   refused whole.
/// * TLS certificate: self-signed, as Dovecot's; `ca_file` is its PEM.
pub struct Cyrus {
    /// IMAP, plain (STARTTLS offered).
    pub imap_port: u16,
    /// IMAP over implicit TLS.
    pub imaps_port: u16,
    /// The self-signed server certificate (PEM): trust it as a CA.
    pub ca_file: PathBuf,
    /// The instance's temp dir (configs, conf/, spool/, sasldb2, tls/, logs).
    pub root: PathBuf,
    proc: Supervised,
    _dir: TempDir,
}

/// Panics with instructions unless the unpacked Cyrus, `saslpasswd2` and
/// the `cyrus` user are there (tests never skip silently).
pub fn require_cyrus() {
    require_servers();
    let dir = cyrus_dir();
    let mut missing = Vec::new();
    if !dir.join(".complete").exists() || !is_executable(&dir.join("usr/lib/cyrus/bin/master")) {
        missing.push(format!("Cyrus unpacked in {}", dir.display()));
    }
    if which("saslpasswd2").is_none() && !is_executable(Path::new("/usr/sbin/saslpasswd2")) {
        missing.push("saslpasswd2 (sasl2-bin)".to_string());
    }
    if lookup_user("cyrus").is_none() {
        missing.push("user `cyrus`".to_string());
    }
    assert!(
        missing.is_empty(),
        "the Cyrus tests need: {}. Unpack it with: sudo scripts/cyrus-debs.sh (scripts/install-test-deps.sh runs it)",
        missing.join(", ")
    );
}

impl Cyrus {
    /// Starts an instance and returns once both listeners accept and the
    /// IMAP greeting arrives.
    pub fn start() -> Cyrus {
        Self::start_with("")
    }

    /// As [`Cyrus::start`], with `extra_conf` appended to imapd.conf (e.g.
    /// `suppress_capabilities: BINARY`).
    pub fn start_with(extra_conf: &str) -> Cyrus {
        require_cyrus();
        assert_eq!(
            euid(),
            0,
            "Cyrus tests must run as root (its master switches to the cyrus user)"
        );
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match start_cyrus(extra_conf) {
                Ok(c) => return c,
                Err((e, true)) => last_err = e,
                Err((e, false)) => {
                    last_err = e;
                    break;
                }
            }
        }
        panic!("Cyrus did not start: {last_err}");
    }

    /// Pid of the Cyrus master process.
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// What the master wrote to stdout and stderr (Cyrus logs the rest to
    /// syslog): for debugging failures.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("master.log")).unwrap_or_default()
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- Cyrus master output ({}) ---\n{}",
                self.root.display(),
                self.log()
            );
        }
        // SIGKILL to the master and its services (one process group).
        self.proc.stop(false, STOP_TIMEOUT);
    }
}

/// The unpacked shared libraries, for the loader.
fn library_path(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.join("usr/lib/x86_64-linux-gnu").display(),
        dir.join("lib/x86_64-linux-gnu").display()
    )
}

/// Writes the sasldb with every test user.
fn make_users(root: &Path) {
    let db = root.join("sasldb2");
    for (user, pass) in CYRUS_USERS {
        let mut child = Command::new("saslpasswd2")
            .arg("-f")
            .arg(&db)
            .args(["-p", "-c", user])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn saslpasswd2");
        child
            .stdin
            .take()
            .expect("saslpasswd2 stdin")
            .write_all(pass.as_bytes())
            .expect("write the password");
        let out = child.wait_with_output().expect("wait saslpasswd2");
        assert!(
            out.status.success(),
            "saslpasswd2 {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One attempt. Err((log, retry)): `retry` when a port was already in use.
fn start_cyrus(extra_conf: &str) -> Result<Cyrus, (String, bool)> {
    let (uid, gid) = lookup_user("cyrus").expect("user cyrus (scripts/cyrus-debs.sh)");
    let cyrus = cyrus_dir();
    let dir = TempDir::new("cyrus");
    let root = dir.path().to_path_buf();
    self_signed_cert(&root);
    for sub in ["conf/proc", "conf/lock", "conf/socket", "conf/db", "spool"] {
        fs::create_dir_all(root.join(sub)).expect("create Cyrus dirs");
    }
    make_users(&root);
    let ports = [free_port(), free_port()];
    let bin = cyrus.join("usr/lib/cyrus/bin");
    let fill = |template: &str, name: &str| {
        let text = template
            .replace("@ROOT@", &root.display().to_string())
            .replace("@BIN@", &bin.display().to_string())
            .replace("@IMAP_PORT@", &ports[0].to_string())
            .replace("@IMAPS_PORT@", &ports[1].to_string());
        if let Some(p) = find_placeholder(&text) {
            panic!("tests/servers/cyrus/{name}.in: unknown placeholder {p}");
        }
        let path = root.join(name);
        fs::write(&path, text).expect("write a Cyrus config");
        path
    };
    let imapd_conf = fill(&format!("{IMAPD_CONF_TEMPLATE}\n{extra_conf}\n"), "imapd.conf");
    let cyrus_conf = fill(CYRUS_CONF_TEMPLATE, "cyrus.conf");
    chown_tree(&root, uid, gid);

    let log = root.join("master.log");
    // env execs the master, so the supervised pid is the master's.
    let args = vec![
        format!("LD_LIBRARY_PATH={}", library_path(&cyrus)),
        bin.join("master").display().to_string(),
        "-C".into(),
        imapd_conf.display().to_string(),
        "-M".into(),
        cyrus_conf.display().to_string(),
        "-p".into(),
        root.join("master.pid").display().to_string(),
    ];
    let proc = Supervised::spawn("cyrus", "/usr/bin/env", &args, &log, &root);
    match wait_listening(&proc, &ports, &log).and_then(|()| expect_greeting(ports[0], "* OK")) {
        Ok(()) => Ok(Cyrus {
            imap_port: ports[0],
            imaps_port: ports[1],
            ca_file: root.join("tls/cert.pem"),
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
