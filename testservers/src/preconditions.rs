//! Preconditions: the server binaries, tools and users the tests need, and
//! small facts about this process and system (effective uid, users).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::dovecot::{DOVEADM, DOVECOT};
use crate::smtp_sink::SMTP_SINK;

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

/// Is `path` a file with an execute bit set?
pub fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The first executable `name` in `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// `(uid, gid)` of a local user, from /etc/passwd.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
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
pub fn euid() -> u32 {
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
