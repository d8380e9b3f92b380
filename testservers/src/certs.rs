//! Certificates the TLS tests need, made with `openssl` in a private
//! directory ([`TestCerts`]): a private CA, server certificates it signed
//! (for localhost, for another host, expired), a self-signed one, and a
//! client certificate (PEM and PKCS#12).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::files::TempDir;

/// The files [`TestCerts::make`] writes; every key is an EC P-256 PEM key
/// (PKCS#8), every certificate PEM.
pub struct TestCerts {
    /// The private CA (trust it with HERALD_OPT_CA_FILE).
    pub ca: PathBuf,
    /// CA-signed, CN=localhost, SAN DNS:localhost and IP:127.0.0.1, valid 30 days.
    pub localhost: (PathBuf, PathBuf),
    /// CA-signed, for `wrong.example` only (SAN DNS:wrong.example).
    pub wrong_host: (PathBuf, PathBuf),
    /// CA-signed for localhost, but expired (its validity ended yesterday).
    pub expired: (PathBuf, PathBuf),
    /// Self-signed for localhost and 127.0.0.1.
    pub self_signed: (PathBuf, PathBuf),
    /// CA-signed client certificate (CN=herald-client, extendedKeyUsage clientAuth).
    pub client: (PathBuf, PathBuf),
    /// The client certificate and its key as PKCS#12, without a password.
    pub client_p12: PathBuf,
    /// The directory, world-readable so servers switching users can read it.
    pub dir: PathBuf,
    _dir: TempDir,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A key and a certificate for `cn` signed by the CA in `dir`, with the
/// extensions `ext` (an `openssl x509 -extfile` line), valid `days` (-1: expired).
fn signed(dir: &Path, name: &str, cn: &str, ext: &str, days: &str) -> (PathBuf, PathBuf) {
    let (key, csr, cert, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    let subj = format!("/CN={cn}");
    let mut req = vec!["req", "-nodes"];
    req.extend(EC);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(&req, dir);
    fs::write(dir.join(&extfile), format!("{ext}\n")).expect("write extfile");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            days,
            "-out",
            &cert,
            "-extfile",
            &extfile,
        ],
        dir,
    );
    (dir.join(cert), dir.join(key))
}

impl TestCerts {
    /// Makes them all (a few tens of ms).
    pub fn make() -> TestCerts {
        let tmp = TempDir::new("certs");
        let dir = tmp.path().to_path_buf();
        let mut ca = vec!["req", "-x509", "-nodes"];
        ca.extend(EC);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=herald test CA",
        ]);
        openssl(&ca, &dir);
        let local = "subjectAltName=DNS:localhost,IP:127.0.0.1";
        let localhost = signed(&dir, "localhost", "localhost", local, "30");
        let wrong_host = signed(
            &dir,
            "wrong",
            "wrong.example",
            "subjectAltName=DNS:wrong.example",
            "30",
        );
        let expired = signed(&dir, "expired", "localhost", local, "-1");
        let client = signed(
            &dir,
            "client",
            "herald-client",
            "extendedKeyUsage=clientAuth",
            "30",
        );
        let mut ss = vec!["req", "-x509", "-nodes"];
        ss.extend(EC);
        ss.extend([
            "-keyout",
            "self.key",
            "-out",
            "self.pem",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            local,
        ]);
        openssl(&ss, &dir);
        openssl(
            &[
                "pkcs12",
                "-export",
                "-in",
                "client.pem",
                "-inkey",
                "client.key",
                "-out",
                "client.p12",
                "-passout",
                "pass:",
            ],
            &dir,
        );
        // Servers read them as their own users (Dovecot's login processes).
        for e in fs::read_dir(&dir).expect("read certs dir").flatten() {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o644));
        }
        TestCerts {
            ca: dir.join("ca.pem"),
            localhost,
            wrong_host,
            expired,
            self_signed: (dir.join("self.pem"), dir.join("self.key")),
            client,
            client_p12: dir.join("client.p12"),
            dir,
            _dir: tmp,
        }
    }

    /// `openssl x509 -fingerprint -sha256` of `cert`: 64 lower-case hex digits.
    pub fn sha256(cert: &Path) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(cert)
            .output()
            .expect("run openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        let fp = text.trim().rsplit('=').next().unwrap_or("");
        fp.replace(':', "").to_ascii_lowercase()
    }

    /// SHA-256 of `cert`'s SubjectPublicKeyInfo (DER): the public-key pin.
    pub fn spki_sha256(cert: &Path) -> String {
        let script = format!(
            "openssl x509 -in '{}' -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
            cert.display()
        );
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("run openssl");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    }
}
