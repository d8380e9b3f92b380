//! Real proxies on loopback for the network tests: [`Socks5Proxy`]
//! (microsocks, SOCKS5 with or without user/password) and [`HttpProxy`]
//! (tinyproxy, HTTP CONNECT with or without Basic auth).

use std::fs;
use std::path::Path;

use crate::files::TempDir;
use crate::ports::free_port;
use crate::preconditions::{euid, is_executable};
use crate::process::{bind_failed, wait_listening, Supervised};
use crate::HOST;

/// The SOCKS5 proxy's binary (Debian's `microsocks`).
pub const MICROSOCKS: &str = "/usr/bin/microsocks";
/// The HTTP proxy's binary (Debian's `tinyproxy`).
pub const TINYPROXY: &str = "/usr/bin/tinyproxy";

fn require(binary: &str, package: &str) {
    assert!(
        is_executable(Path::new(binary)),
        "{binary} missing: the proxy tests need Debian's {package} \
         (sudo scripts/install-test-deps.sh installs it; scripts/deps.d/net.list)"
    );
}

/// A supervised proxy on 127.0.0.1:`port`.
pub struct Proxy {
    /// The port it listens on, on [`HOST`].
    pub port: u16,
    log_path: std::path::PathBuf,
    _proc: Supervised,
    _dir: TempDir,
}

impl Proxy {
    /// What the proxy logged.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Starts `program` with the args `args(port, dir)` makes, retrying on a
/// taken port.
fn start(name: &'static str, program: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> Proxy {
    let mut last_err = String::new();
    for _attempt in 0..5 {
        let dir = TempDir::new(name);
        let port = free_port();
        let log_path = dir.path().join(format!("{name}.log"));
        let args = args(port, dir.path());
        let proc = Supervised::spawn(name, program, &args, &log_path, dir.path());
        match wait_listening(&proc, &[port], &log_path) {
            Ok(()) => {
                return Proxy {
                    port,
                    log_path,
                    _proc: proc,
                    _dir: dir,
                }
            }
            Err(e) => {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                last_err = format!("{e}\n{name} {args:?}\n{log}");
                if !bind_failed(&log) {
                    break;
                }
            }
        }
    }
    panic!("{name} did not start: {last_err}");
}

/// microsocks: a SOCKS5 proxy (RFC 1928), with user/password auth (RFC
/// 1929) when `credentials` are given. It resolves names itself.
pub struct Socks5Proxy;

impl Socks5Proxy {
    /// Starts microsocks on a fresh port, `microsocks -i 127.0.0.1 -p PORT
    /// [-u USER -P PASS]`.
    pub fn start(credentials: Option<(&str, &str)>) -> Proxy {
        require(MICROSOCKS, "microsocks");
        start("microsocks", MICROSOCKS, |port, _| {
            let mut a: Vec<String> = vec!["-i".into(), HOST.into(), "-p".into(), port.to_string()];
            if let Some((u, p)) = credentials {
                a.extend(["-u".into(), u.into(), "-P".into(), p.into()]);
            }
            a
        })
    }
}

/// tinyproxy: an HTTP proxy whose CONNECT reaches only `connect_ports`
/// (its `ConnectPort` lines), with `BasicAuth` when `credentials` are given.
pub struct HttpProxy;

impl HttpProxy {
    /// Starts tinyproxy in the foreground (`-d`) with a config of its own.
    pub fn start(connect_ports: &[u16], credentials: Option<(&str, &str)>) -> Proxy {
        require(TINYPROXY, "tinyproxy");
        start("tinyproxy", TINYPROXY, |port, dir| {
            let mut conf = format!(
                "Port {port}\nListen {HOST}\nTimeout 60\nMaxClients 50\nAllow 127.0.0.1\n\
                 LogLevel Info\nDisableViaHeader Yes\n"
            );
            for p in connect_ports {
                conf.push_str(&format!("ConnectPort {p}\n"));
            }
            if let Some((u, p)) = credentials {
                conf.push_str(&format!("BasicAuth {u} {p}\n"));
            }
            if euid() == 0 {
                // It refuses to keep root; the log goes to stderr (our file).
                conf.push_str("User nobody\nGroup nogroup\n");
            }
            let path = dir.join("tinyproxy.conf");
            fs::write(&path, conf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            vec!["-d".into(), "-c".into(), path.display().to_string()]
        })
    }
}
