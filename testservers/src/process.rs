//! Supervised server processes: each server runs under a `/bin/sh`
//! supervisor, in a process group of its own, and dies with the test process
//! (see the crate docs, "Process lifetime"). Also how to tell that a server
//! is up: it listens on its ports and greets.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::files::keep_temp;
use crate::HOST;

/// How long a server may take to listen on its ports and greet.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long stopping a server may take before its group is killed directly.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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
/// The supervisor script (`/bin/sh -c SUPERVISOR name log cleanup program args...`).
pub const SUPERVISOR: &str = r#"
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

/// A server process under the [`SUPERVISOR`] script: it dies with the test
/// process, and dropping it stops the server and removes its dir.
pub struct Supervised {
    /// The server's name, for messages (`smtp-sink`, `dovecot`...).
    pub name: &'static str,
    supervisor: Child,
    stdin: Option<ChildStdin>,
    /// The server's own pid (a child of the supervisor), also its pgid.
    pub pid: u32,
}

impl Supervised {
    /// Starts `program args` under a supervisor: the server's stdout and
    /// stderr are appended to `log`; `cleanup` (a dir under
    /// `$TMPDIR/herald-tests/`) is removed when the server stops, unless
    /// `HERALD_KEEP_TEMP` is set. Returns once the server's pid is known (not
    /// once it listens: see [`wait_listening`]).
    pub fn spawn(
        name: &'static str,
        program: &str,
        args: &[String],
        log: &Path,
        cleanup: &Path,
    ) -> Supervised {
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
    pub fn is_running(&self) -> bool {
        pid_alive(self.pid)
    }

    /// Stops the server (SIGKILL to its process group, from the supervisor)
    /// and waits until no live process is left in that group (zombies
    /// aside); gives up after `timeout`. The supervisor then removes the
    /// server's dir unless `keep_dir`. Idempotent.
    pub fn stop(&mut self, keep_dir: bool, timeout: Duration) {
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

/// True while process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
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
pub fn pid_listens_on(pid: u32, port: u16) -> bool {
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
pub fn wait_listening(proc: &Supervised, ports: &[u16], log: &Path) -> Result<(), String> {
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

/// Does a server's log say that a port was taken (so that starting again
/// with fresh ports may work)?
pub fn bind_failed(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("address already in use")
}

/// Connects to 127.0.0.1:`port` and reads one line; Ok if it starts with
/// `prefix`.
pub fn expect_greeting(port: u16, prefix: &str) -> Result<(), String> {
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
