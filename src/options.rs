//! Client options: typed, validated when set, copied into the client.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::status::{Error, Result};

/// The protocol a client speaks (`HERALD_PROTOCOL_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Smtp = 1,
    Imap = 2,
    Pop3 = 3,
    Pickup = 4,
}

impl Protocol {
    pub fn from_u32(v: u32) -> Option<Protocol> {
        Some(match v {
            1 => Protocol::Smtp,
            2 => Protocol::Imap,
            3 => Protocol::Pop3,
            4 => Protocol::Pickup,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "SMTP",
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
            Protocol::Pickup => "PICKUP",
        }
    }
}

/// Transport security (`HERALD_SECURITY_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    None = 0,
    /// STARTTLS, required: a server that does not offer it is an error.
    StartTls = 1,
    ImplicitTls = 2,
    StartTlsIfAvailable = 3,
}

impl Security {
    pub fn from_i64(v: i64) -> Option<Security> {
        Some(match v {
            0 => Security::None,
            1 => Security::StartTls,
            2 => Security::ImplicitTls,
            3 => Security::StartTlsIfAvailable,
            _ => return None,
        })
    }
}

/// Option ids (`HERALD_OPT_*`).
pub mod id {
    pub(crate) const HOST: u32 = 1;
    pub(crate) const PORT: u32 = 2;
    pub(crate) const SECURITY: u32 = 3;
    pub(crate) const USERNAME: u32 = 4;
    pub(crate) const PASSWORD: u32 = 5;
    pub(crate) const OAUTH2_TOKEN: u32 = 6;
    pub(crate) const MAX_CONNECTIONS: u32 = 7;
    pub(crate) const CONNECT_TIMEOUT_MS: u32 = 8;
    pub(crate) const IO_TIMEOUT_MS: u32 = 9;
    pub(crate) const IDLE_TIMEOUT_MS: u32 = 10;
    pub(crate) const ACCEPT_INVALID_CERTS: u32 = 11;
    pub(crate) const CA_FILE: u32 = 12;
    pub(crate) const HELO_NAME: u32 = 13;
    pub(crate) const PICKUP_DIR: u32 = 14;
    pub(crate) const THROTTLE_MESSAGES: u32 = 15;
    pub(crate) const THROTTLE_INTERVAL_MS: u32 = 16;
    pub(crate) const QUEUE_LIMIT: u32 = 17;
    pub(crate) const OP_TIMEOUT_MS: u32 = 18;
    pub(crate) const MAX_LINE_BYTES: u32 = 19;
    pub(crate) const MAX_MESSAGE_BYTES: u32 = 20;
    /// Not part of the C API: how often an IMAP IDLE is renewed, in ms
    /// (default 25 minutes), so that tests can see a renewal happen.
    #[doc(hidden)]
    pub const IDLE_RENEW_MS_FOR_TESTS: u32 = 0x7fff_0001;
}

/// Default overall deadline of an op (IDLE is exempt): 10 minutes.
pub(crate) const DEFAULT_OP_TIMEOUT_MS: i64 = 600_000;
/// Default longest server line: 256 KiB.
pub(crate) const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024;
/// Default largest literal or message accepted from a server: 100 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;
/// MAX_LINE_BYTES range.
const MAX_LINE_RANGE: (i64, i64) = (1024, 64 * 1024 * 1024);
/// MAX_MESSAGE_BYTES range (the top is also bounded by the address space).
const MAX_MESSAGE_RANGE: (i64, i64) = (1024, 4 * 1024 * 1024 * 1024 - 1);

/// Longest timeout accepted: one day. Longer values are almost certainly a unit mistake.
const MAX_TIMEOUT_MS: i64 = 86_400_000;
const MAX_CONNECTIONS_LIMIT: i64 = 1024;

fn option_name(option: u32) -> &'static str {
    match option {
        id::HOST => "HOST",
        id::PORT => "PORT",
        id::SECURITY => "SECURITY",
        id::USERNAME => "USERNAME",
        id::PASSWORD => "PASSWORD",
        id::OAUTH2_TOKEN => "OAUTH2_TOKEN",
        id::MAX_CONNECTIONS => "MAX_CONNECTIONS",
        id::CONNECT_TIMEOUT_MS => "CONNECT_TIMEOUT_MS",
        id::IO_TIMEOUT_MS => "IO_TIMEOUT_MS",
        id::IDLE_TIMEOUT_MS => "IDLE_TIMEOUT_MS",
        id::ACCEPT_INVALID_CERTS => "ACCEPT_INVALID_CERTS",
        id::CA_FILE => "CA_FILE",
        id::HELO_NAME => "HELO_NAME",
        id::PICKUP_DIR => "PICKUP_DIR",
        id::THROTTLE_MESSAGES => "THROTTLE_MESSAGES",
        id::THROTTLE_INTERVAL_MS => "THROTTLE_INTERVAL_MS",
        id::QUEUE_LIMIT => "QUEUE_LIMIT",
        id::OP_TIMEOUT_MS => "OP_TIMEOUT_MS",
        id::MAX_LINE_BYTES => "MAX_LINE_BYTES",
        id::MAX_MESSAGE_BYTES => "MAX_MESSAGE_BYTES",
        id::IDLE_RENEW_MS_FOR_TESTS => "IDLE_RENEW_MS_FOR_TESTS",
        _ => "unknown",
    }
}

/// A client's configuration. `Debug` never shows the password or token.
#[derive(Clone)]
pub struct Options {
    pub protocol: Protocol,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
    pub oauth2_token: Option<String>,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub idle_timeout: Duration,
    pub accept_invalid_certs: bool,
    /// Extra trusted roots, each a PEM certificate block, read when CA_FILE was set.
    pub extra_roots_pem: Vec<Vec<u8>>,
    pub ca_file: Option<PathBuf>,
    pub helo_name: Option<String>,
    pub pickup_dir: Option<PathBuf>,
    pub throttle_messages: u32,
    pub throttle_interval: Duration,
    pub queue_limit: usize,
    /// The overall deadline of every op but IDLE; `None` = no deadline.
    pub op_timeout: Option<Duration>,
    /// The longest line (without literals) accepted from the server.
    pub max_line_bytes: usize,
    /// The largest literal or message accepted from the server.
    pub max_message_bytes: usize,
    /// How often an IMAP IDLE is renewed (servers may drop it after 30
    /// minutes: RFC 2177).
    pub idle_renew: Duration,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("protocol", &self.protocol)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("oauth2_token", &self.oauth2_token.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("ca_file", &self.ca_file)
            .field("helo_name", &self.helo_name)
            .field("pickup_dir", &self.pickup_dir)
            .field("throttle_messages", &self.throttle_messages)
            .field("throttle_interval", &self.throttle_interval)
            .field("queue_limit", &self.queue_limit)
            .finish()
    }
}

/// Rejects control characters (CR, LF, NUL ...) in a value that may reach the wire.
fn no_controls(name: &str, value: &str) -> Result<()> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "{name} must not contain control characters (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

/// A byte count within `range`, and within this platform's address space.
fn bytes_in(name: &str, value: i64, range: (i64, i64)) -> Result<usize> {
    let (lo, hi) = range;
    match usize::try_from(value) {
        Ok(v) if (lo..=hi).contains(&value) => Ok(v),
        _ => Err(Error::invalid(format!(
            "{name} must be {lo}..{hi} (and fit this platform), got {value}"
        ))),
    }
}

fn timeout(name: &str, value: i64, min: i64) -> Result<Duration> {
    if value < min || value > MAX_TIMEOUT_MS {
        return Err(Error::invalid(format!(
            "{name} must be between {min} and {MAX_TIMEOUT_MS} ms, got {value}"
        )));
    }
    Ok(Duration::from_millis(value as u64))
}

/// Splits a PEM bundle into its certificate blocks.
pub fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = &text[..];
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else { break };
        let end = start + len + END.len();
        out.push(rest.as_bytes()[start..end].to_vec());
        rest = &rest[end..];
    }
    out
}

impl Options {
    pub fn new(protocol: Protocol) -> Options {
        Options {
            protocol,
            host: None,
            port: None,
            security: Security::StartTls,
            username: None,
            password: None,
            oauth2_token: None,
            // A POP3 maildrop is locked by the server for one session.
            max_connections: if protocol == Protocol::Pop3 { 1 } else { 4 },
            connect_timeout: Duration::from_millis(60_000),
            io_timeout: Duration::from_millis(60_000),
            idle_timeout: Duration::from_millis(30_000),
            accept_invalid_certs: false,
            extra_roots_pem: Vec::new(),
            ca_file: None,
            helo_name: None,
            pickup_dir: None,
            throttle_messages: 0,
            throttle_interval: Duration::ZERO,
            queue_limit: 100_000,
            op_timeout: Some(Duration::from_millis(DEFAULT_OP_TIMEOUT_MS as u64)),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            idle_renew: Duration::from_secs(25 * 60),
        }
    }

    fn is_network(&self) -> bool {
        self.protocol != Protocol::Pickup
    }

    /// Checks that `option` exists and applies to this client's protocol.
    fn check_applies(&self, option: u32) -> Result<()> {
        let applies = match option {
            id::HOST
            | id::PORT
            | id::SECURITY
            | id::USERNAME
            | id::PASSWORD
            | id::OAUTH2_TOKEN
            | id::CONNECT_TIMEOUT_MS
            | id::IO_TIMEOUT_MS
            | id::ACCEPT_INVALID_CERTS
            | id::CA_FILE
            | id::MAX_LINE_BYTES
            | id::MAX_MESSAGE_BYTES => self.is_network(),
            id::MAX_CONNECTIONS
            | id::IDLE_TIMEOUT_MS
            | id::THROTTLE_MESSAGES
            | id::THROTTLE_INTERVAL_MS
            | id::QUEUE_LIMIT
            | id::OP_TIMEOUT_MS => true,
            id::HELO_NAME => self.protocol == Protocol::Smtp,
            id::PICKUP_DIR => self.protocol == Protocol::Pickup,
            id::IDLE_RENEW_MS_FOR_TESTS => self.protocol == Protocol::Imap,
            _ => return Err(Error::invalid(format!("unknown option id {option}"))),
        };
        if !applies {
            return Err(Error::invalid(format!(
                "option {} does not apply to a {} client",
                option_name(option),
                self.protocol.name()
            )));
        }
        Ok(())
    }

    fn is_str_option(option: u32) -> bool {
        matches!(
            option,
            id::HOST
                | id::USERNAME
                | id::PASSWORD
                | id::OAUTH2_TOKEN
                | id::CA_FILE
                | id::HELO_NAME
                | id::PICKUP_DIR
        )
    }

    /// Sets a string option. The value is checked now, not at send time.
    pub fn set_str(&mut self, option: u32, value: &str) -> Result<()> {
        self.check_applies(option)?;
        if !Self::is_str_option(option) {
            return Err(Error::invalid(format!(
                "option {} takes an integer: use herald_options_set_int",
                option_name(option)
            )));
        }
        let name = option_name(option);
        match option {
            id::HOST => {
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::invalid(
                        "HOST must be a non-empty name or address without spaces",
                    ));
                }
                self.host = Some(value.to_string());
            }
            id::USERNAME => {
                no_controls(name, value)?;
                self.username = Some(value.to_string());
            }
            id::PASSWORD => {
                no_controls(name, value)?;
                self.password = Some(value.to_string());
            }
            id::OAUTH2_TOKEN => {
                no_controls(name, value)?;
                self.oauth2_token = Some(value.to_string());
            }
            id::CA_FILE => {
                let pem =
                    std::fs::read(value).map_err(|e| Error::invalid(format!("CA_FILE {value}: {e}")))?;
                let certs = pem_certificates(&pem);
                if certs.is_empty() {
                    return Err(Error::invalid(format!(
                        "CA_FILE {value}: no PEM certificate in it"
                    )));
                }
                for c in &certs {
                    native_tls::Certificate::from_pem(c)
                        .map_err(|e| Error::invalid(format!("CA_FILE {value}: {e}")))?;
                }
                self.extra_roots_pem = certs;
                self.ca_file = Some(PathBuf::from(value));
            }
            id::HELO_NAME => {
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::invalid(
                        "HELO_NAME must be a non-empty name without spaces",
                    ));
                }
                self.helo_name = Some(value.to_string());
            }
            id::PICKUP_DIR => {
                if value.is_empty() {
                    return Err(Error::invalid("PICKUP_DIR must not be empty"));
                }
                self.pickup_dir = Some(PathBuf::from(value));
            }
            _ => unreachable!("checked by is_str_option"),
        }
        Ok(())
    }

    /// Sets an integer option. The value is checked now, not at send time.
    pub fn set_int(&mut self, option: u32, value: i64) -> Result<()> {
        self.check_applies(option)?;
        if Self::is_str_option(option) {
            return Err(Error::invalid(format!(
                "option {} takes a string: use herald_options_set_str",
                option_name(option)
            )));
        }
        let name = option_name(option);
        match option {
            id::PORT => {
                if !(1..=65535).contains(&value) {
                    return Err(Error::invalid(format!("PORT must be 1..65535, got {value}")));
                }
                self.port = Some(value as u16);
            }
            id::SECURITY => {
                self.security = Security::from_i64(value).ok_or_else(|| {
                    Error::invalid(format!("SECURITY must be 0 (none), 1 (STARTTLS), 2 (implicit TLS) or 3 (STARTTLS if available), got {value}"))
                })?;
            }
            id::MAX_CONNECTIONS => {
                if !(1..=MAX_CONNECTIONS_LIMIT).contains(&value) {
                    return Err(Error::invalid(format!(
                        "MAX_CONNECTIONS must be 1..{MAX_CONNECTIONS_LIMIT}, got {value}"
                    )));
                }
                self.max_connections = value as usize;
            }
            id::CONNECT_TIMEOUT_MS => self.connect_timeout = timeout(name, value, 1)?,
            id::IO_TIMEOUT_MS => self.io_timeout = timeout(name, value, 1)?,
            id::IDLE_TIMEOUT_MS => self.idle_timeout = timeout(name, value, 0)?,
            id::IDLE_RENEW_MS_FOR_TESTS => self.idle_renew = timeout(name, value, 1)?,
            id::ACCEPT_INVALID_CERTS => {
                if value != 0 && value != 1 {
                    return Err(Error::invalid(format!(
                        "ACCEPT_INVALID_CERTS must be 0 or 1, got {value}"
                    )));
                }
                self.accept_invalid_certs = value == 1;
            }
            id::THROTTLE_MESSAGES => {
                if !(0..=u32::MAX as i64).contains(&value) {
                    return Err(Error::invalid(format!(
                        "THROTTLE_MESSAGES must be >= 0, got {value}"
                    )));
                }
                self.throttle_messages = value as u32;
            }
            id::THROTTLE_INTERVAL_MS => self.throttle_interval = timeout(name, value, 0)?,
            id::QUEUE_LIMIT => {
                if !(1..=100_000_000).contains(&value) {
                    return Err(Error::invalid(format!(
                        "QUEUE_LIMIT must be 1..100000000, got {value}"
                    )));
                }
                self.queue_limit = value as usize;
            }
            id::OP_TIMEOUT_MS => {
                self.op_timeout = match value {
                    0 => None,
                    v => Some(timeout(name, v, 1)?),
                }
            }
            id::MAX_LINE_BYTES => self.max_line_bytes = bytes_in(name, value, MAX_LINE_RANGE)?,
            id::MAX_MESSAGE_BYTES => self.max_message_bytes = bytes_in(name, value, MAX_MESSAGE_RANGE)?,
            _ => unreachable!("checked by is_str_option"),
        }
        Ok(())
    }

    /// Checks the options as a whole, when a client is made from them.
    pub fn validate(&self) -> Result<()> {
        if self.is_network() && self.host.is_none() {
            return Err(Error::invalid(format!(
                "a {} client needs HOST",
                self.protocol.name()
            )));
        }
        if self.protocol == Protocol::Pickup {
            let Some(dir) = &self.pickup_dir else {
                return Err(Error::invalid("a PICKUP client needs PICKUP_DIR"));
            };
            if !dir.is_dir() {
                return Err(Error::invalid(format!(
                    "PICKUP_DIR {} does not exist or is not a directory",
                    dir.display()
                )));
            }
        }
        if self.throttle_messages > 0 && self.throttle_interval.is_zero() {
            return Err(Error::invalid("THROTTLE_MESSAGES needs THROTTLE_INTERVAL_MS > 0"));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(Error::invalid("PASSWORD is set but USERNAME is not"));
        }
        Ok(())
    }

    /// The port to connect to: PORT, or the protocol's usual one for the security mode.
    pub fn port(&self) -> u16 {
        if let Some(p) = self.port {
            return p;
        }
        let implicit = self.security == Security::ImplicitTls;
        match (self.protocol, implicit) {
            (Protocol::Smtp, true) => 465,
            (Protocol::Smtp, false) if self.security == Security::None => 25,
            (Protocol::Smtp, false) => 587,
            (Protocol::Imap, true) => 993,
            (Protocol::Imap, false) => 143,
            (Protocol::Pop3, true) => 995,
            (Protocol::Pop3, false) => 110,
            (Protocol::Pickup, _) => 0,
        }
    }

    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or("")
    }

    /// Is the throttle on?
    pub fn throttle(&self) -> Option<(u32, Duration)> {
        (self.throttle_messages > 0).then_some((self.throttle_messages, self.throttle_interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_fail_at_set_time() {
        let mut o = Options::new(Protocol::Smtp);
        assert!(o.set_int(id::PORT, 0).is_err());
        assert!(o.set_int(id::PORT, 70000).is_err());
        assert!(o.set_int(id::MAX_CONNECTIONS, 0).is_err());
        assert!(o.set_int(id::SECURITY, 9).is_err());
        assert!(o.set_int(999, 1).is_err());
        assert!(o.set_str(999, "x").is_err());
        assert!(o.set_str(id::PORT, "25").is_err());
        assert!(o.set_int(id::HOST, 1).is_err());
        assert!(
            o.set_str(id::PICKUP_DIR, "/tmp").is_err(),
            "PICKUP_DIR is not an SMTP option"
        );
        assert!(o.set_str(id::HOST, "bad host").is_err());
        assert!(o.set_str(id::USERNAME, "a\r\nRSET").is_err());
        assert!(o.set_int(id::CONNECT_TIMEOUT_MS, 0).is_err());
        assert!(o.set_str(id::CA_FILE, "/nonexistent/ca.pem").is_err());
        o.set_int(id::PORT, 2525).unwrap();
        assert_eq!(o.port(), 2525);
    }

    #[test]
    fn validate_needs_host_and_pickup_dir() {
        let o = Options::new(Protocol::Smtp);
        assert!(o.validate().is_err());
        let mut p = Options::new(Protocol::Pickup);
        assert!(p.validate().is_err());
        p.set_str(id::PICKUP_DIR, "/nonexistent-herald-dir").unwrap();
        assert!(p.validate().is_err());
        p.set_str(id::PICKUP_DIR, &std::env::temp_dir().to_string_lossy())
            .unwrap();
        p.validate().unwrap();
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut o = Options::new(Protocol::Imap);
        o.set_str(id::PASSWORD, "hunter2").unwrap();
        o.set_str(id::OAUTH2_TOKEN, "ya29.secret").unwrap();
        let s = format!("{o:?}");
        assert!(!s.contains("hunter2") && !s.contains("ya29"), "{s}");
    }

    #[test]
    fn default_ports_follow_security() {
        let mut o = Options::new(Protocol::Imap);
        assert_eq!(o.port(), 143);
        o.set_int(id::SECURITY, 2).unwrap();
        assert_eq!(o.port(), 993);
        assert_eq!(Options::new(Protocol::Pop3).max_connections, 1);
    }

    #[test]
    fn pem_bundle_is_split() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let two = format!("junk\n{one}{one}");
        assert_eq!(pem_certificates(two.as_bytes()).len(), 2);
        assert!(pem_certificates(b"nothing").is_empty());
    }
}
