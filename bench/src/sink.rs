//! A private `smtp-sink` that counts messages instead of storing them, for
//! throughput runs.
//!
//! `support::SmtpSink` always runs smtp-sink with `-d` (one file per
//! message). Here that costs the sink about three times the CPU of the
//! transaction itself (5000 x 10 KB over 8 connections on loopback:
//! ~2,000 msg/s with `-d`, ~5,700 msg/s without, for `smtp-source`), and
//! sink and clients share this machine's 2 cores. So the throughput rows
//! use `smtp-sink -c`: it prints `sess=S quit=Q mesg=M` after every final
//! "." it receives, and [`CountingSink::messages`] reads the last `M`. The
//! count is smtp-sink's own, made as it received each message; a separate
//! pass with `support::SmtpSink` (dumping) checks the messages themselves.
//!
//! Lifetime as in `support`: smtp-sink runs under a `/bin/sh` supervisor in
//! a process group of its own; the supervisor kills the group when its
//! stdin (a pipe only this process writes) reaches EOF, so the sink never
//! outlives this process, even when it is killed.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, TempDir};

// $1 = log file, $2... = command. See `support`'s SUPERVISOR.
const SUPERVISOR: &str = r#"
trap '' INT QUIT HUP
log=$1; shift
setsid "$@" </dev/null >>"$log" 2>&1 &
pid=$!
echo "$pid"
exec >/dev/null
while read -r line; do :; done
kill -KILL -"$pid" 2>/dev/null
wait "$pid"
exit 0
"#;

pub struct CountingSink {
    pub port: u16,
    pub pid: u32,
    log: PathBuf,
    supervisor: Child,
    stdin: Option<ChildStdin>,
    _dir: TempDir,
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|v| v == "0")
        })
        .unwrap_or(false)
}

impl CountingSink {
    /// Starts `smtp-sink -c 127.0.0.1:PORT 1024` on a fresh port; returns
    /// once it greets.
    pub fn start() -> CountingSink {
        support::require_servers();
        let mut last = String::new();
        for _ in 0..5 {
            let dir = TempDir::new("smtp-bench-sink");
            let log = dir.path().join("smtp-sink.log");
            let port = support::free_port();
            let mut args: Vec<String> = Vec::new();
            if is_root() {
                args.extend(["-u".into(), "nobody".into()]);
            }
            args.extend(["-c".into(), format!("{}:{port}", support::HOST), "1024".into()]);
            let mut supervisor = Command::new("/bin/sh")
                .arg("-c")
                .arg(SUPERVISOR)
                .arg("herald-bench-sink-supervisor")
                .arg(&log)
                .arg(support::SMTP_SINK)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn the smtp-sink supervisor");
            let stdin = supervisor.stdin.take();
            let mut pid = String::new();
            BufReader::new(supervisor.stdout.take().expect("supervisor stdout"))
                .read_line(&mut pid)
                .expect("read smtp-sink's pid");
            let sink = CountingSink {
                port,
                pid: pid.trim().parse().expect("smtp-sink's pid"),
                log,
                supervisor,
                stdin,
                _dir: dir,
            };
            match sink.wait_greeting(Duration::from_secs(5)) {
                Ok(()) => return sink,
                Err(e) => last = format!("{e}; log: {}", fs::read_to_string(&sink.log).unwrap_or_default()),
            }
        }
        panic!("smtp-sink -c did not start: {last}");
    }

    fn wait_greeting(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut s) = TcpStream::connect((support::HOST, self.port)) {
                let mut buf = [0u8; 4];
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                if s.read_exact(&mut buf).is_ok() && &buf == b"220 " {
                    let _ = s.write_all(b"QUIT\r\n");
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no greeting on port {}", self.port));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU time smtp-sink has used so far (it is one process, one thread).
    pub fn cpu(&self) -> Duration {
        crate::load::schedstat_runtime(&format!("/proc/{}/schedstat", self.pid))
    }

    /// Messages received so far: the last `mesg=` counter smtp-sink printed.
    pub fn messages(&self) -> u64 {
        let log = fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&log);
        text.rsplit("mesg=")
            .next()
            .filter(|_| text.contains("mesg="))
            .and_then(|t| {
                t.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Waits up to `timeout` for the counter to reach `n`; returns the last
    /// count (which may exceed `n`: that is for the caller to judge).
    pub fn wait_messages(&self, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m >= n || Instant::now() >= deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the supervisor kills the sink
        let _ = self.supervisor.wait();
    }
}
