//! The TLS options beyond verification on/off and CA_FILE: the pin, the
//! lowest TLS version, the client certificate; and the OAuth2 token a live
//! client can be given anew.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Opt;
use crate::status::{Error, Result};

/// The lowest TLS version a connection may use (TLS_MIN_VERSION).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// A client certificate as read from CLIENT_CERT_FILE (and CLIENT_KEY_FILE).
#[derive(Clone)]
pub enum ClientCert {
    /// PEM certificate (chain), with its PEM key (PKCS#8, or the key file's
    /// own form when the TLS library reads it).
    Pem { cert: Vec<u8>, key: Option<Vec<u8>> },
    /// A PKCS#12 archive (DER) holding the certificate and its key, without
    /// a password.
    Pkcs12(Vec<u8>),
}

/// TLS_PIN_SHA256, TLS_MIN_VERSION, CLIENT_CERT_FILE, CLIENT_KEY_FILE.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// The SHA-256 (32 bytes) of the one certificate, or SPKI, accepted.
    pub pin: Option<[u8; 32]>,
    pub min_version: Option<TlsVersion>,
    pub client_cert: Option<ClientCert>,
    /// A key read before the certificate it belongs to.
    pending_key: Option<Vec<u8>>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("pin", &self.pin.map(|p| hex(&p)))
            .field("min_version", &self.min_version)
            .field("client_cert", &self.client_cert.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SHA-256 written as 64 hex digits, upper or lower case, optionally
/// with ':' between the bytes (as `openssl x509 -fingerprint` prints it).
pub fn parse_pin(value: &str) -> Option<[u8; 32]> {
    let digits: String = value.chars().filter(|&c| c != ':').collect();
    if digits.len() != 64 || !digits.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn read(name: &str, path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::invalid(format!("{name} {path}: {e}")))
}

fn is_pem(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"-----BEGIN ").is_some()
}

impl TlsOptions {
    /// Sets one of the string options this struct keeps.
    pub fn set_str(&mut self, option: Opt, value: &str) -> Result<()> {
        let name = option.name();
        match option {
            Opt::TlsPinSha256 => {
                self.pin = Some(parse_pin(value).ok_or_else(|| {
                    Error::invalid(format!(
                        "{name} must be a SHA-256 in hex (64 digits, ':' between bytes allowed)"
                    ))
                })?);
            }
            Opt::ClientCertFile => {
                let data = read(name, value)?;
                self.client_cert = Some(if is_pem(&data) {
                    if memchr::memmem::find(&data, b"-----BEGIN CERTIFICATE-----").is_none() {
                        return Err(Error::invalid(format!(
                            "{name} {value}: no PEM certificate in it"
                        )));
                    }
                    ClientCert::Pem {
                        cert: data,
                        key: self.pending_key.take(),
                    }
                } else {
                    native_tls::Identity::from_pkcs12(&data, "").map_err(|e| {
                        Error::invalid(format!(
                            "{name} {value}: neither PEM nor a PKCS#12 archive without password: {e}"
                        ))
                    })?;
                    ClientCert::Pkcs12(data)
                });
            }
            Opt::ClientKeyFile => {
                let data = read(name, value)?;
                if !is_pem(&data) || memchr::memmem::find(&data, b"PRIVATE KEY-----").is_none() {
                    return Err(Error::invalid(format!(
                        "{name} {value}: no PEM private key in it"
                    )));
                }
                match &mut self.client_cert {
                    Some(ClientCert::Pem { key, .. }) => *key = Some(data),
                    Some(ClientCert::Pkcs12(_)) => {
                        return Err(Error::invalid(format!(
                            "{name} does not go with a PKCS#12 CLIENT_CERT_FILE, which holds its key"
                        )))
                    }
                    None => self.pending_key = Some(data),
                }
            }
            _ => unreachable!("not a TLS option: {name}"),
        }
        Ok(())
    }

    /// Sets TLS_MIN_VERSION: 12 or 13.
    pub fn set_min_version(&mut self, value: i64) -> Result<()> {
        self.min_version = Some(match value {
            12 => TlsVersion::Tls12,
            13 => TlsVersion::Tls13,
            _ => {
                return Err(Error::invalid(format!(
                    "TLS_MIN_VERSION must be 12 (TLS 1.2) or 13 (TLS 1.3), got {value}"
                )))
            }
        });
        Ok(())
    }

    /// The client identity for the TLS library; checks a PEM certificate has its key.
    pub fn identity(&self) -> Result<Option<native_tls::Identity>> {
        let id = match &self.client_cert {
            None if self.pending_key.is_some() => {
                return Err(Error::invalid(
                    "CLIENT_KEY_FILE is set but CLIENT_CERT_FILE is not",
                ))
            }
            None => return Ok(None),
            Some(ClientCert::Pkcs12(der)) => native_tls::Identity::from_pkcs12(der, ""),
            Some(ClientCert::Pem { key: None, .. }) => {
                return Err(Error::invalid(
                    "a PEM CLIENT_CERT_FILE needs CLIENT_KEY_FILE (or use a PKCS#12 file)",
                ))
            }
            Some(ClientCert::Pem { cert, key: Some(key) }) => native_tls::Identity::from_pkcs8(cert, key),
        };
        id.map(Some)
            .map_err(|e| Error::invalid(format!("CLIENT_CERT_FILE/CLIENT_KEY_FILE: {e}")))
    }
}

/// Called before each authentication to refresh the token (C:
/// `herald_client_set_oauth2_token_provider`); an error fails that login.
pub type TokenProvider = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// The OAuth2 token a client authenticates with, which
/// `herald_client_set_oauth2_token` replaces on a live client: every
/// connection of the client reads it before each authentication, after
/// asking the token provider when one is set. Cloning an `Options` copies
/// the token into a cell of its own, so options and the client made from
/// them never share it; a client's connections share the client's one
/// `Options`.
#[derive(Default)]
pub struct LiveToken {
    token: Arc<Mutex<Option<Arc<str>>>>,
    provider: Arc<Mutex<Option<TokenProvider>>>,
}

impl Clone for LiveToken {
    fn clone(&self) -> Self {
        LiveToken {
            token: Arc::new(Mutex::new(self.token.lock().clone())),
            provider: Arc::new(Mutex::new(self.provider.lock().clone())),
        }
    }
}

impl LiveToken {
    pub fn get(&self) -> Option<Arc<str>> {
        self.token.lock().clone()
    }

    /// Replaces the token. It goes on the wire: control characters (CR, LF,
    /// NUL ...) and an empty token are refused.
    pub fn set(&self, token: &str) -> Result<()> {
        check_token(token)?;
        *self.token.lock() = Some(token.into());
        Ok(())
    }

    /// Sets (or clears) the provider asked before each authentication.
    pub fn set_provider(&self, provider: Option<TokenProvider>) {
        *self.provider.lock() = provider;
    }

    /// The token for the login about to happen: the provider is asked first
    /// (on the calling thread, no lock held: it may set the token), then the
    /// token last set is used.
    pub fn for_login(&self) -> Result<Option<Arc<str>>> {
        let provider = self.provider.lock().clone();
        if let Some(p) = provider {
            p()?;
        }
        Ok(self.get())
    }
}

/// An OAuth2 token's form: printable, no spaces or control characters,
/// not empty (RFC 6750's b64token is narrower still).
pub fn check_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::invalid("the OAuth2 token must not be empty"));
    }
    if let Some(c) = token.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(format!(
            "the OAuth2 token must not contain spaces or control characters (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_in_both_cases_and_with_colons() {
        let hexed = "AB".repeat(32);
        assert_eq!(parse_pin(&hexed), Some([0xab; 32]));
        let colons = vec!["0f"; 32].join(":");
        assert_eq!(parse_pin(&colons), Some([0x0f; 32]));
        assert_eq!(parse_pin("abcd"), None);
        assert_eq!(parse_pin(&"zz".repeat(32)), None);
        assert_eq!(parse_pin(&"é".repeat(32)), None);
    }

    #[test]
    fn min_version_is_12_or_13() {
        let mut t = TlsOptions::default();
        t.set_min_version(13).unwrap();
        assert_eq!(t.min_version, Some(TlsVersion::Tls13));
        for bad in [0, 1, 10, 11, 14, 120] {
            assert!(t.set_min_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_with_line_breaks_or_nul_are_refused() {
        let t = LiveToken::default();
        for bad in ["", "a\r\nb", "a\nb", "a\0b", "a b"] {
            let e = t.set(bad).unwrap_err();
            assert_eq!(e.status, crate::status::Status::InvalidArgument, "{bad:?}");
        }
        assert!(t.get().is_none());
        t.set("ya29.ok-token_/+=").unwrap();
        assert_eq!(t.get().as_deref(), Some("ya29.ok-token_/+="));
    }

    #[test]
    fn the_options_take_them_and_check_them() {
        use crate::options::{id, Options, Protocol};
        let mut o = Options::new(Protocol::Imap);
        o.set_str(id::TLS_PIN_SHA256, &"00".repeat(32)).unwrap();
        assert_eq!(o.tls.pin, Some([0; 32]));
        assert!(o.set_str(id::TLS_PIN_SHA256, "sha256:00").is_err());
        assert!(o.set_int(id::TLS_MIN_VERSION, 11).is_err());
        o.set_int(id::TLS_MIN_VERSION, 12).unwrap();
        assert!(o.set_str(id::CLIENT_CERT_FILE, "/nonexistent/cert.pem").is_err());
        let key = std::env::temp_dir().join(format!("herald-key-{}.pem", std::process::id()));
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        o.set_str(id::CLIENT_KEY_FILE, &key.to_string_lossy()).unwrap();
        o.set_str(id::HOST, "127.0.0.1").unwrap();
        let e = o.validate().unwrap_err();
        assert!(e.detail.contains("CLIENT_CERT_FILE is not"), "{e}");
        std::fs::remove_file(&key).unwrap();
        let s = format!("{o:?}");
        assert!(s.contains("pin"), "{s}");
    }

    #[test]
    fn the_provider_is_asked_before_each_login() {
        let t = Arc::new(LiveToken::default());
        assert_eq!(t.for_login().unwrap(), None);
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (t2, n2) = (t.clone(), n.clone());
        t.set_provider(Some(Arc::new(move || {
            let i = n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            t2.set(&format!("gen-{i}"))
        })));
        assert_eq!(t.for_login().unwrap().as_deref(), Some("gen-0"));
        assert_eq!(t.for_login().unwrap().as_deref(), Some("gen-1"));
        t.set_provider(Some(Arc::new(|| {
            Err(Error::new(crate::status::Status::Auth, "no"))
        })));
        assert!(t.for_login().is_err());
        t.set_provider(None);
        assert_eq!(t.for_login().unwrap().as_deref(), Some("gen-1"));
    }

    #[test]
    fn a_clone_has_a_cell_of_its_own() {
        let a = LiveToken::default();
        a.set("one").unwrap();
        let b = a.clone();
        b.set("two").unwrap();
        assert_eq!(a.get().as_deref(), Some("one"));
        assert_eq!(b.get().as_deref(), Some("two"));
    }
}
