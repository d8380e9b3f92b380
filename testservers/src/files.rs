//! Files the servers are given: private temp dirs (removed on drop unless
//! `HERALD_KEEP_TEMP` is set), ownership changes and config templates.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::pid_alive;

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

    /// The directory.
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

/// Is `HERALD_KEEP_TEMP` set (not empty, not `0`)? Then temp dirs stay.
pub fn keep_temp() -> bool {
    std::env::var_os("HERALD_KEEP_TEMP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The first `@NAME@` left in a config, if any: a placeholder that a
/// server module did not replace in its template.
pub fn find_placeholder(text: &str) -> Option<&str> {
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

/// `chown -R uid:gid path` (symlinks not followed); panics on failure.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
        for entry in fs::read_dir(path).expect("read_dir").flatten() {
            chown_tree(&entry.path(), uid, gid);
        }
    }
}

/// Makes `dir/tls/` with a fresh self-signed certificate for `localhost`
/// and 127.0.0.1 (`cert.pem`, an EC key in `key.pem`: a few ms; RSA would
/// take ~0.2 s), valid 30 days. Returns the `tls` directory.
pub fn self_signed_cert(dir: &Path) -> PathBuf {
    let tls = dir.join("tls");
    fs::create_dir(&tls).expect("create tls dir");
    let out = std::process::Command::new("openssl")
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
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    tls
}
