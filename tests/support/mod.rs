//! Real mail servers for herald's integration tests.
//!
//! Every integration test file starts with `mod support;`. This module uses the
//! standard library only (no crates, and nothing from herald), and starts real
//! servers on loopback ports:
//!
//! * [`SmtpSink`]: Postfix's `smtp-sink`, a fast SMTP test server that writes
//!   every accepted message to a file (see [`SinkDump`] for the exact format).
//! * [`Dovecot`]: a private Dovecot 2.3 instance with IMAP (plain and implicit
//!   TLS), POP3 (plain and implicit TLS) and submission (SMTP with AUTH PLAIN
//!   LOGIN over STARTTLS) relaying to its own `SmtpSink`. Users `alice`,
//!   `bob`, `carol` with passwords `alicepass`, `bobpass`, `carolpass`. The
//!   config template is `tests/servers/dovecot.conf.in`.
//! * [`postfix::Postfix`]: a private full Postfix smtpd (PIPELINING,
//!   CHUNKING, SMTPUTF8, SIZE, STARTTLS, a recipient limit) delivering into
//!   a maildir; configs in `tests/servers/postfix/`.
//! * [`imap_append`]: a minimal IMAP client that stores messages byte for
//!   byte with APPEND, to put mail in independently of herald.
//! * [`scripted`]: hostile or broken servers, a closure per connection.
//!
//! Install the servers with `scripts/install-test-deps.sh` (as root, or with
//! sudo). Dovecot must be started as root (it switches to the `vmail` user
//! for mail access); smtp-sink also runs as a normal user.
//!
//! # Process lifetime
//!
//! Each server runs under a tiny `/bin/sh` supervisor, in a process group of
//! its own (via `setsid`). The supervisor blocks reading its stdin, a pipe
//! whose only write end belongs to the test process. When the pipe reaches
//! EOF (the `Drop` impl closed it, or the test process exited, aborted, or was
//! killed with SIGKILL) the supervisor sends SIGKILL to the server's whole
//! process group, reaps the server and removes the server's temp dir. So no
//! server process outlives its test process, even when `Drop` never runs.
//! `Drop` also waits until no process of the group is left alive. There is
//! no graceful shutdown: clients just see their connections close.
//!
//! # Environment
//!
//! * `HERALD_KEEP_TEMP=1` keeps every temp dir (`$TMPDIR/herald-tests/...`)
//!   for post-mortem debugging.
//!
//! # Timing (Debian 12, 2 cores)
//!
//! * `SmtpSink::start`: ~15 ms.
//! * `Dovecot::start`: 0.1-0.2 s (including its smtp-sink, an EC certificate
//!   and reading the IMAP, POP3 and submission greetings).
//! * `Postfix::start`: ~0.5 s (mostly `postfix check`).
//! * Dropping a `Dovecot` or `SmtpSink`: a few ms to ~30 ms.
//! * A failed login takes ~0.5 s (Dovecot's failure timer granularity).

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Loopback address every test server listens on.
pub const HOST: &str = "127.0.0.1";
/// Postfix's SMTP test server.
pub const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
/// Dovecot master binary.
pub const DOVECOT: &str = "/usr/sbin/dovecot";
/// Dovecot admin tool.
pub const DOVEADM: &str = "/usr/bin/doveadm";
/// Users of every [`Dovecot`] instance: `(user, password)`.
pub const USERS: [(&str, &str); 3] = [("alice", "alicepass"), ("bob", "bobpass"), ("carol", "carolpass")];

mod imap_append;
#[allow(unused_imports)] // not every test file stores mail over IMAP
pub use imap_append::imap_append;
pub mod postfix;
pub mod scripted;

const DOVECOT_CONF_TEMPLATE: &str = include_str!("../servers/dovecot.conf.in");
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Preconditions
// ---------------------------------------------------------------------------

/// Panics with instructions unless every server binary, tool and the `vmail`
/// user that the tests need are present. Tests never skip silently: call this
/// first in any test that needs servers (the `start` functions call it too).
pub fn require_servers() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(msg) = CHECK.get_or_init(check_servers) {
        panic!("{msg}");
    }
}

fn check_servers() -> Result<(), String> {
    let mut missing = Vec::new();
    for path in [
        SMTP_SINK,
        DOVECOT,
        DOVEADM,
        "/usr/lib/dovecot/imap",
        "/usr/lib/dovecot/imap-login",
        "/usr/lib/dovecot/pop3",
        "/usr/lib/dovecot/pop3-login",
        "/usr/lib/dovecot/submission",
        "/usr/lib/dovecot/submission-login",
        "/bin/sh",
    ] {
        if !is_executable(Path::new(path)) {
            missing.push(path.to_string());
        }
    }
    for tool in ["ss", "openssl", "setsid"] {
        if which(tool).is_none() {
            missing.push(format!("{tool} (in PATH)"));
        }
    }
    if lookup_user("vmail").is_none() {
        missing.push("user `vmail`".to_string());
    }
    if !missing.is_empty() {
        return Err(format!(
            "herald's integration tests need real mail servers (Postfix smtp-sink, Dovecot 2.3 \
             imapd/pop3d/submissiond), openssl, ss (iproute2), setsid and the `vmail` user.\n\
             Missing: {}\n\
             Install them with: sudo scripts/install-test-deps.sh   (CI runs it as root)",
            missing.join(", ")
        ));
    }
    let version = Command::new(DOVECOT)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !version.starts_with("2.3.") {
        return Err(format!(
            "Dovecot {version:?} found; tests/servers/dovecot.conf.in is written for Dovecot 2.3.x"
        ));
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// `(uid, gid)` of a local user, from /etc/passwd.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// Effective uid of this process (std has no getuid; read /proc).
fn euid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------
// Temp dirs and ports
// ---------------------------------------------------------------------------

/// A fresh directory under `std::env::temp_dir()/herald-tests/`, removed
/// (recursively) on drop unless `HERALD_KEEP_TEMP` is set. Mode 0755, so the
/// unprivileged users the servers switch to can traverse it.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/herald-tests/<prefix>-<pid>-<n>`.
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir().join("herald-tests");
        fs::create_dir_all(&base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
        // Like /tmp: root's and other users' test runs may share it.
        let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o1777));
        static REAPED: OnceLock<()> = OnceLock::new();
        REAPED.get_or_init(|| reap_stale_dirs(&base));
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
                    return TempDir { path };
                }
                // Left over from an earlier process with the same pid.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if keep_temp() {
            eprintln!("HERALD_KEEP_TEMP: keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes `<prefix>-<pid>-<n>` dirs left by test processes that no longer
/// run (killed before their servers' supervisors could clean up, or kept
/// with HERALD_KEEP_TEMP) once they are 10 minutes old.
fn reap_stale_dirs(base: &Path) {
    if keep_temp() {
        return;
    }
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '-');
        let (Some(_n), Some(pid), Some(_prefix)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if old && !pid_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn keep_temp() -> bool {
    std::env::var_os("HERALD_KEEP_TEMP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A TCP port on 127.0.0.1 that is free right now and that this process has
/// not handed out before.
///
/// Ports come from below (or above) the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), not from `bind(:0)`: a port
/// from the ephemeral range can be taken as the *source* port of some
/// outgoing connection (tests open thousands) between this check and the
/// server's `bind`. Another process may still grab the port in that window;
/// the `start` functions then retry with fresh ports.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    static SEED: AtomicU64 = AtomicU64::new(0);
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let mut given = given.lock().unwrap_or_else(|e| e.into_inner());

    let (lo, hi) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let range = if lo >= 12000 {
        Some((10000u32, lo))
    } else if hi <= 55000 {
        Some((hi + 1, 65536))
    } else {
        None
    };
    if let Some((start, end)) = range {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut x = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            | 1;
        for _ in 0..10_000 {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = (start + (x % u64::from(end - start)) as u32) as u16;
            if !given.contains(&port) && TcpListener::bind((HOST, port)).is_ok() {
                given.insert(port);
                return port;
            }
        }
    }
    loop {
        let port = TcpListener::bind((HOST, 0))
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------
// Connections as seen from outside the process
// ---------------------------------------------------------------------------

/// Number of ESTABLISHED TCP connections to 127.0.0.1:`port` (counted by
/// their client side: destination port `port`), from any process, as `ss`
/// reports them: `ss -Htn state established '( dport = :PORT and dst 127.0.0.1 )'`.
pub fn established_connections(port: u16) -> usize {
    let filter = format!("( dport = :{port} and dst {HOST} )");
    let out = Command::new("ss")
        .args(["-Htn", "state", "established", &filter])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run ss: {e} (install iproute2: scripts/install-test-deps.sh)"));
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Polls [`established_connections`] until it equals `expected` or `timeout`
/// passes; returns the last count.
pub fn wait_for_connections(port: u16, expected: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let n = established_connections(port);
        if n == expected || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Supervised server process
// ---------------------------------------------------------------------------

// $1 = log file, $2 = dir to remove if the test process vanishes, $3... = command.
// The server runs under setsid(1): its own session and process group (pgid =
// its pid, which is printed), so the whole group can be signalled without
// hitting the supervisor, and terminal signals never reach it. The supervisor
// then blocks on stdin. At EOF (Drop closed the pipe, or the test process
// is gone) it stops the server and removes the dir, unless a "keep" line
// came first (SmtpSink::stop keeps the dumps readable until Drop).
//
// Stop = SIGKILL to the server's whole process group (then the Rust side
// waits until no live process is left in the group: killed grandchildren
// stay zombies until PID 1 reaps them, which took ~2 s here, so zombies are
// not waited for). Nothing here needs a graceful shutdown, and
// the graceful ones are slow or unreliable: SIGTERM to Dovecot's master alone
// (what `doveadm stop` does) takes 1-3 s (8 s via doveadm) and leaves session
// processes with connected clients behind for ~10 s; SIGTERM to the whole
// group usually takes ~20 ms, but sometimes 2.5 s (the master respawns a
// login process that died first, then waits for it).
const SUPERVISOR: &str = r#"
trap '' INT QUIT HUP
log=$1; cleanup=$2; shift 2
setsid "$@" </dev/null >>"$log" 2>&1 &
pid=$!
echo "$pid"
exec >/dev/null
while read -r line; do
    if [ "$line" = keep ]; then cleanup=; fi
done
kill -KILL -"$pid" 2>/dev/null
wait "$pid"
case "$cleanup" in
    */herald-tests/*) rm -rf -- "$cleanup" 2>/dev/null || { sleep 0.2; rm -rf -- "$cleanup"; } ;;
esac
exit 0
"#;

struct Supervised {
    name: &'static str,
    supervisor: Child,
    stdin: Option<ChildStdin>,
    /// The server's own pid (a child of the supervisor), also its pgid.
    pid: u32,
}

impl Supervised {
    fn spawn(name: &'static str, program: &str, args: &[String], log: &Path, cleanup: &Path) -> Supervised {
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let cleanup = if keep_temp() {
            String::new()
        } else {
            cleanup.display().to_string()
        };
        let mut supervisor = Command::new("/bin/sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(format!("herald-{name}-supervisor"))
            .arg(log)
            .arg(cleanup)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            // Own process group: a terminal's Ctrl-C reaches only the test
            // process; its exit then stops the servers through the pipe.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdin = supervisor.stdin.take();
        let mut line = String::new();
        BufReader::new(supervisor.stdout.take().expect("supervisor stdout"))
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read {name} pid: {e}"));
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: supervisor printed {line:?}, not a pid"));
        Supervised {
            name,
            supervisor,
            stdin,
            pid,
        }
    }

    /// True while the server process exists and is not a zombie.
    fn is_running(&self) -> bool {
        pid_alive(self.pid)
    }

    /// Stops the server (SIGKILL to its process group, from the supervisor)
    /// and waits until no live process is left in that group (zombies
    /// aside); gives up after `timeout`. The supervisor then removes the
    /// server's dir unless `keep_dir`. Idempotent.
    fn stop(&mut self, keep_dir: bool, timeout: Duration) {
        if let Some(mut stdin) = self.stdin.take() {
            if keep_dir {
                let _ = stdin.write_all(b"keep\n");
            }
        } // dropping stdin closes the pipe
        let deadline = Instant::now() + timeout;
        loop {
            match self.supervisor.try_wait() {
                Ok(Some(_)) | Err(_) => {
                    while !live_group_members(self.pid).is_empty() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    return;
                }
                Ok(None) => {}
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "{}: pid {} did not stop in {timeout:?}; killing it",
                    self.name, self.pid
                );
                // sh's builtin kill takes a negative pid as a process group
                let _ = Command::new("/bin/sh")
                    .args(["-c", &format!("kill -KILL -{}", self.pid)])
                    .status();
                let _ = self.supervisor.kill();
                let _ = self.supervisor.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(false, STOP_TIMEOUT);
    }
}

/// Pids of the live (not zombie) processes in process group `pgid`.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp ..."
            let Some(i) = stat.rfind(')') else { return false };
            let f: Vec<&str> = stat[i + 1..].split_whitespace().collect();
            f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" && f[0] != "X"
        })
        .collect()
}

fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ..." — comm may contain spaces or parens.
        Ok(stat) => match stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
        {
            Some(state) => state != "Z" && state != "X",
            None => false,
        },
        Err(_) => false,
    }
}

/// Inodes of the sockets listening on 127.0.0.1:`port` (or 0.0.0.0:`port`).
fn listening_inodes(port: u16) -> Vec<u64> {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    let want = [format!("0100007F:{port:04X}"), format!("00000000:{port:04X}")];
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && want.iter().any(|w| w == f[1]) {
                f[9].parse().ok()
            } else {
                None
            }
        })
        .collect()
}

/// True when process `pid` itself holds a socket listening on `port`.
fn pid_listens_on(pid: u32, port: u16) -> bool {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .ok()
            .and_then(|t| {
                let t = t.to_string_lossy().into_owned();
                t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok()
            })
            .is_some_and(|ino| inodes.contains(&ino))
    })
}

/// Waits until `proc` listens on every port. Err(log text) if the server died
/// or the deadline passed.
fn wait_listening(proc: &Supervised, ports: &[u16], log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if !proc.is_running() {
            return Err(format!("{} exited during startup", proc.name));
        }
        if ports.iter().all(|&p| pid_listens_on(proc.pid, p)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not listen on {ports:?} within {START_TIMEOUT:?}\n{}",
                proc.name,
                fs::read_to_string(log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn bind_failed(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("address already in use")
}

// ---------------------------------------------------------------------------
// smtp-sink
// ---------------------------------------------------------------------------

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
    pub port: u16,
    pub dump_dir: PathBuf,
    log_path: PathBuf,
    proc: Supervised,
    dir: TempDir,
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
                        dir,
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

// ---------------------------------------------------------------------------
// Dovecot
// ---------------------------------------------------------------------------

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
    pub imap_port: u16,
    pub imaps_port: u16,
    pub pop3_port: u16,
    pub pop3s_port: u16,
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
    dir: TempDir,
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
                        dir: s.dir,
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

    // TLS certificate (a fresh EC key: a few ms; RSA would take ~0.2 s).
    let tls = root.join("tls");
    fs::create_dir(&tls).expect("create tls dir");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(tls.join("key.pem"))
        .arg("-out")
        .arg(tls.join("cert.pem"))
        .args(["-days", "30", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

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

/// The first `@NAME@` left in a config, if any.
fn find_placeholder(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find('@') {
        let start = i + off;
        let mut j = start + 1;
        while j < bytes.len()
            && (bytes[j].is_ascii_uppercase() || bytes[j].is_ascii_digit() || bytes[j] == b'_')
        {
            j += 1;
        }
        if j > start + 1 && j < bytes.len() && bytes[j] == b'@' {
            return Some(&text[start..=j]);
        }
        i = start + 1;
    }
    None
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
        for entry in fs::read_dir(path).expect("read_dir").flatten() {
            chown_tree(&entry.path(), uid, gid);
        }
    }
}

/// Connects to 127.0.0.1:`port` and reads one line; Ok if it starts with
/// `prefix`.
fn expect_greeting(port: u16, prefix: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect((HOST, port)).map_err(|e| format!("connect {port}: {e}"))?;
    stream.set_read_timeout(Some(START_TIMEOUT)).ok();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            Ok(_) => break,
            Err(e) => return Err(format!("read greeting on {port}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&line);
    if line.starts_with(prefix) {
        Ok(())
    } else {
        Err(format!("port {port}: expected greeting {prefix:?}, got {line:?}"))
    }
}
