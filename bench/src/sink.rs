//! A private `smtp-sink` that counts messages instead of storing them, for
//! throughput runs.
//!
//! `herald_testservers::SmtpSink` always runs smtp-sink with `-d` (one file per
//! message). Here that costs the sink about three times the CPU of the
//! transaction itself (5000 x 10 KB over 8 connections on loopback:
//! ~2,000 msg/s with `-d`, ~5,700 msg/s without, for `smtp-source`), and
//! sink and clients share this machine's 2 cores. So the throughput rows
//! use `smtp-sink -c`: it prints `sess=S quit=Q mesg=M` after every final
//! "." it receives, and [`CountingSink::messages`] reads the last `M`. The
//! count is smtp-sink's own, made as it received each message; a separate
//! pass with `herald_testservers::SmtpSink` (dumping) checks the messages themselves.
//!
//! Lifetime as for every server of `herald_testservers`: smtp-sink runs as a
//! [`Supervised`] process, in a process group of its own, killed when its
//! supervisor's stdin (a pipe only this process writes) reaches EOF, so the
//! sink never outlives this process, even when it is killed.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use herald_testservers::{euid, free_port, require_servers, Supervised, TempDir, HOST, SMTP_SINK};

/// `smtp-sink -c`: counts the messages it receives, stores none.
pub struct CountingSink {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Its pid (for its CPU time).
    pub pid: u32,
    log: PathBuf,
    // field order = drop order: stop the process before removing its dir
    _proc: Supervised,
    _dir: TempDir,
}

impl CountingSink {
    /// Starts `smtp-sink -c 127.0.0.1:PORT 1024` on a fresh port; returns
    /// once it greets.
    pub fn start() -> CountingSink {
        require_servers();
        let mut last = String::new();
        for _ in 0..5 {
            let dir = TempDir::new("smtp-bench-sink");
            let log = dir.path().join("smtp-sink.log");
            let port = free_port();
            let mut args: Vec<String> = Vec::new();
            if euid() == 0 {
                args.extend(["-u".into(), "nobody".into()]);
            }
            args.extend(["-c".into(), format!("{HOST}:{port}"), "1024".into()]);
            let proc = Supervised::spawn("smtp-sink", SMTP_SINK, &args, &log, dir.path());
            let sink = CountingSink {
                port,
                pid: proc.pid,
                log,
                _proc: proc,
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
            if let Ok(mut s) = TcpStream::connect((HOST, self.port)) {
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
