//! A bare TLS server, `openssl s_server` ([`TlsServer`]): for handshakes a
//! mail server cannot be configured into (Dovecot 2.3 has no highest TLS
//! version). It speaks no mail protocol: after the handshake it is silent.

use std::path::Path;

use crate::files::TempDir;
use crate::ports::free_port;
use crate::process::{wait_listening, Supervised, STOP_TIMEOUT};

/// `openssl s_server` on a loopback port with a given certificate.
pub struct TlsServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    proc: Supervised,
    _dir: TempDir,
}

impl TlsServer {
    /// Serves `cert`/`key` with the `extra` s_server options (`-tls1_2`:
    /// TLS 1.2 only). Returns once it listens.
    pub fn start(cert: &Path, key: &Path, extra: &[&str]) -> TlsServer {
        let dir = TempDir::new("s_server");
        let log = dir.path().join("s_server.log");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut args = vec![
                "s_server".to_string(),
                "-accept".into(),
                format!("127.0.0.1:{port}"),
                "-cert".into(),
                cert.display().to_string(),
                "-key".into(),
                key.display().to_string(),
                "-quiet".into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut proc = Supervised::spawn("s_server", "openssl", &args, &log, dir.path());
            match wait_listening(&proc, &[port], &log) {
                Ok(()) => {
                    return TlsServer {
                        port,
                        proc,
                        _dir: dir,
                    }
                }
                Err(e) => {
                    last = e;
                    proc.stop(true, STOP_TIMEOUT);
                }
            }
        }
        panic!("openssl s_server did not start: {last}");
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.proc.stop(false, STOP_TIMEOUT);
    }
}
