//! Client options: typed, validated when set, copied into the client.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::status::{Error, Result};

mod tls;
pub use tls::{hex, LiveToken, TlsOptions, TlsVersion, TokenProvider};
pub mod proxy;
pub use proxy::{Proxy, ProxyKind};

/// The protocol a client speaks (`HERALD_PROTOCOL_*`: `ffi::options` maps
/// the numbers onto these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Imap,
    Pop3,
    Pickup,
}

impl Protocol {
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

/// A client option. The C numbers (`HERALD_OPT_*`) are the C layer's:
/// `ffi::options` is the only place that maps them onto these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opt {
    Host,
    Port,
    Security,
    Username,
    Password,
    OAuth2Token,
    MaxConnections,
    ConnectTimeoutMs,
    IoTimeoutMs,
    IdleTimeoutMs,
    AcceptInvalidCerts,
    CaFile,
    HeloName,
    PickupDir,
    ThrottleMessages,
    ThrottleIntervalMs,
    QueueLimit,
    OpTimeoutMs,
    MaxLineBytes,
    MaxMessageBytes,
    TlsPinSha256,
    TlsMinVersion,
    ClientCertFile,
    ClientKeyFile,
    Proxy,
    KeepaliveS,
    SpoolDir,
    SpoolSync,
    SpoolMaxMessages,
    SpoolMaxBytes,
    /// Not part of the C API: how often an IMAP IDLE is renewed, in ms
    /// (default 25 minutes), so that tests can see a renewal happen.
    IdleRenewMsForTests,
}

/// Short names for the options, as their C names spell them (`id::HOST` is
/// `HERALD_OPT_HOST`), for the tests and the fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
// The fuzz targets name only some of them.
#[cfg_attr(not(test), allow(dead_code))]
pub mod id {
    use super::Opt;
    pub const HOST: Opt = Opt::Host;
    pub const PORT: Opt = Opt::Port;
    pub const SECURITY: Opt = Opt::Security;
    pub const USERNAME: Opt = Opt::Username;
    pub const PASSWORD: Opt = Opt::Password;
    pub const OAUTH2_TOKEN: Opt = Opt::OAuth2Token;
    pub const MAX_CONNECTIONS: Opt = Opt::MaxConnections;
    pub const CONNECT_TIMEOUT_MS: Opt = Opt::ConnectTimeoutMs;
    pub const IO_TIMEOUT_MS: Opt = Opt::IoTimeoutMs;
    pub const CA_FILE: Opt = Opt::CaFile;
    pub const PICKUP_DIR: Opt = Opt::PickupDir;
    pub const OP_TIMEOUT_MS: Opt = Opt::OpTimeoutMs;
    pub const MAX_LINE_BYTES: Opt = Opt::MaxLineBytes;
    pub const MAX_MESSAGE_BYTES: Opt = Opt::MaxMessageBytes;
    pub const TLS_PIN_SHA256: Opt = Opt::TlsPinSha256;
    pub const TLS_MIN_VERSION: Opt = Opt::TlsMinVersion;
    pub const CLIENT_CERT_FILE: Opt = Opt::ClientCertFile;
    pub const CLIENT_KEY_FILE: Opt = Opt::ClientKeyFile;
    pub const PROXY: Opt = Opt::Proxy;
    pub const KEEPALIVE_S: Opt = Opt::KeepaliveS;
}

/// What an option's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
}

impl Opt {
    /// Every option of the C API (not the hidden test-only ones).
    pub const ALL: [Opt; 30] = [
        Opt::Host,
        Opt::Port,
        Opt::Security,
        Opt::Username,
        Opt::Password,
        Opt::OAuth2Token,
        Opt::MaxConnections,
        Opt::ConnectTimeoutMs,
        Opt::IoTimeoutMs,
        Opt::IdleTimeoutMs,
        Opt::AcceptInvalidCerts,
        Opt::CaFile,
        Opt::HeloName,
        Opt::PickupDir,
        Opt::ThrottleMessages,
        Opt::ThrottleIntervalMs,
        Opt::QueueLimit,
        Opt::OpTimeoutMs,
        Opt::MaxLineBytes,
        Opt::MaxMessageBytes,
        Opt::TlsPinSha256,
        Opt::TlsMinVersion,
        Opt::ClientCertFile,
        Opt::ClientKeyFile,
        Opt::Proxy,
        Opt::KeepaliveS,
        Opt::SpoolDir,
        Opt::SpoolSync,
        Opt::SpoolMaxMessages,
        Opt::SpoolMaxBytes,
    ];

    /// The option's name, as in `HERALD_OPT_<name>` and error details.
    pub fn name(self) -> &'static str {
        match self {
            Opt::Host => "HOST",
            Opt::Port => "PORT",
            Opt::Security => "SECURITY",
            Opt::Username => "USERNAME",
            Opt::Password => "PASSWORD",
            Opt::OAuth2Token => "OAUTH2_TOKEN",
            Opt::MaxConnections => "MAX_CONNECTIONS",
            Opt::ConnectTimeoutMs => "CONNECT_TIMEOUT_MS",
            Opt::IoTimeoutMs => "IO_TIMEOUT_MS",
            Opt::IdleTimeoutMs => "IDLE_TIMEOUT_MS",
            Opt::AcceptInvalidCerts => "ACCEPT_INVALID_CERTS",
            Opt::CaFile => "CA_FILE",
            Opt::HeloName => "HELO_NAME",
            Opt::PickupDir => "PICKUP_DIR",
            Opt::ThrottleMessages => "THROTTLE_MESSAGES",
            Opt::ThrottleIntervalMs => "THROTTLE_INTERVAL_MS",
            Opt::QueueLimit => "QUEUE_LIMIT",
            Opt::OpTimeoutMs => "OP_TIMEOUT_MS",
            Opt::MaxLineBytes => "MAX_LINE_BYTES",
            Opt::MaxMessageBytes => "MAX_MESSAGE_BYTES",
            Opt::TlsPinSha256 => "TLS_PIN_SHA256",
            Opt::TlsMinVersion => "TLS_MIN_VERSION",
            Opt::ClientCertFile => "CLIENT_CERT_FILE",
            Opt::ClientKeyFile => "CLIENT_KEY_FILE",
            Opt::Proxy => "PROXY",
            Opt::KeepaliveS => "KEEPALIVE_S",
            Opt::SpoolDir => "SPOOL_DIR",
            Opt::SpoolSync => "SPOOL_SYNC",
            Opt::SpoolMaxMessages => "SPOOL_MAX_MESSAGES",
            Opt::SpoolMaxBytes => "SPOOL_MAX_BYTES",
            Opt::IdleRenewMsForTests => "IDLE_RENEW_MS_FOR_TESTS",
        }
    }

    /// Whether it takes a string or an integer.
    pub fn kind(self) -> Kind {
        match self {
            Opt::Host
            | Opt::Username
            | Opt::Password
            | Opt::OAuth2Token
            | Opt::CaFile
            | Opt::HeloName
            | Opt::PickupDir
            | Opt::TlsPinSha256
            | Opt::ClientCertFile
            | Opt::ClientKeyFile => Kind::Str,
            Opt::Proxy => Kind::Str,
            Opt::SpoolDir => Kind::Str,
            _ => Kind::Int,
        }
    }

    /// Whether it applies to a client of `protocol`.
    pub fn applies_to(self, protocol: Protocol) -> bool {
        let network = protocol != Protocol::Pickup;
        match self {
            Opt::Host
            | Opt::Port
            | Opt::Security
            | Opt::Username
            | Opt::Password
            | Opt::OAuth2Token
            | Opt::ConnectTimeoutMs
            | Opt::IoTimeoutMs
            | Opt::AcceptInvalidCerts
            | Opt::CaFile
            | Opt::MaxLineBytes
            | Opt::MaxMessageBytes
            | Opt::TlsPinSha256
            | Opt::TlsMinVersion
            | Opt::ClientCertFile
            | Opt::ClientKeyFile => network,
            Opt::Proxy | Opt::KeepaliveS => network,
            Opt::MaxConnections
            | Opt::IdleTimeoutMs
            | Opt::ThrottleMessages
            | Opt::ThrottleIntervalMs
            | Opt::QueueLimit
            | Opt::OpTimeoutMs => true,
            Opt::HeloName | Opt::SpoolDir | Opt::SpoolSync | Opt::SpoolMaxMessages | Opt::SpoolMaxBytes => {
                protocol == Protocol::Smtp
            }
            Opt::PickupDir => protocol == Protocol::Pickup,
            Opt::IdleRenewMsForTests => protocol == Protocol::Imap,
        }
    }
}

/// Default TCP keepalive idle time (KEEPALIVE_S), seconds.
pub(crate) const DEFAULT_KEEPALIVE_S: u64 = 60;
/// Longest KEEPALIVE_S: 2 hours, the usual system default.
const MAX_KEEPALIVE_S: i64 = 7200;
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

/// A client's configuration. `Debug` never shows the password or token.
#[derive(Clone)]
pub struct Options {
    pub protocol: Protocol,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
    /// OAUTH2_TOKEN, replaced on a live client by `herald_client_set_oauth2_token`.
    pub oauth2_token: LiveToken,
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
    /// TLS_PIN_SHA256, TLS_MIN_VERSION, CLIENT_CERT_FILE, CLIENT_KEY_FILE.
    pub tls: TlsOptions,
    /// Not an option: this connection only fetches the server's certificate
    /// (verification off) to describe a verification failure; it never
    /// gets past the TLS handshake.
    pub tls_probe: bool,
    /// PROXY: every connection goes through it.
    pub proxy: Option<Proxy>,
    /// KEEPALIVE_S: TCP keepalive idle time; `None` = off.
    pub keepalive: Option<Duration>,
    /// The durable outbox (`crate::spool`), when set.
    pub spool_dir: Option<PathBuf>,
    /// Sync the spool to disk (1) or only hand it to the OS (0).
    pub spool_sync: bool,
    pub spool_max_messages: usize,
    pub spool_max_bytes: u64,
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
            .field("oauth2_token", &self.oauth2_token.get().map(|_| "<redacted>"))
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
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .field("keepalive", &self.keepalive)
            .field("spool_dir", &self.spool_dir)
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
            oauth2_token: LiveToken::default(),
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
            tls: TlsOptions::default(),
            tls_probe: false,
            proxy: None,
            keepalive: Some(Duration::from_secs(DEFAULT_KEEPALIVE_S)),
            spool_dir: None,
            spool_sync: true,
            spool_max_messages: 100_000,
            spool_max_bytes: 1 << 30,
        }
    }

    fn is_network(&self) -> bool {
        self.protocol != Protocol::Pickup
    }

    /// Checks that `option` applies to this client's protocol and takes a `kind` value.
    fn check_applies(&self, option: Opt, kind: Kind) -> Result<()> {
        if !option.applies_to(self.protocol) {
            return Err(Error::invalid(format!(
                "option {} does not apply to a {} client",
                option.name(),
                self.protocol.name()
            )));
        }
        match (option.kind(), kind) {
            (Kind::Int, Kind::Str) => Err(Error::invalid(format!(
                "option {} takes an integer: use herald_options_set_int",
                option.name()
            ))),
            (Kind::Str, Kind::Int) => Err(Error::invalid(format!(
                "option {} takes a string: use herald_options_set_str",
                option.name()
            ))),
            _ => Ok(()),
        }
    }

    /// Sets a string option. The value is checked now, not at send time.
    pub fn set_str(&mut self, option: Opt, value: &str) -> Result<()> {
        self.check_applies(option, Kind::Str)?;
        let name = option.name();
        match option {
            Opt::Host => {
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::invalid(
                        "HOST must be a non-empty name or address without spaces",
                    ));
                }
                self.host = Some(value.to_string());
            }
            Opt::Username => {
                no_controls(name, value)?;
                self.username = Some(value.to_string());
            }
            Opt::Password => {
                no_controls(name, value)?;
                self.password = Some(value.to_string());
            }
            Opt::OAuth2Token => self.oauth2_token.set(value)?,
            Opt::TlsPinSha256 | Opt::ClientCertFile | Opt::ClientKeyFile => {
                self.tls.set_str(option, value)?
            }
            Opt::CaFile => {
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
            Opt::HeloName => {
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::invalid(
                        "HELO_NAME must be a non-empty name without spaces",
                    ));
                }
                self.helo_name = Some(value.to_string());
            }
            Opt::Proxy => self.proxy = proxy::parse(value)?,
            Opt::PickupDir => {
                if value.is_empty() {
                    return Err(Error::invalid("PICKUP_DIR must not be empty"));
                }
                self.pickup_dir = Some(PathBuf::from(value));
            }
            Opt::SpoolDir => {
                if value.is_empty() {
                    return Err(Error::invalid("SPOOL_DIR must not be empty"));
                }
                self.spool_dir = Some(PathBuf::from(value));
            }
            _ => unreachable!("checked by check_applies: {} takes {:?}", name, option.kind()),
        }
        Ok(())
    }

    /// Sets an integer option. The value is checked now, not at send time.
    pub fn set_int(&mut self, option: Opt, value: i64) -> Result<()> {
        self.check_applies(option, Kind::Int)?;
        let name = option.name();
        match option {
            Opt::Port => {
                if !(1..=65535).contains(&value) {
                    return Err(Error::invalid(format!("PORT must be 1..65535, got {value}")));
                }
                self.port = Some(value as u16);
            }
            Opt::Security => {
                self.security = Security::from_i64(value).ok_or_else(|| {
                    Error::invalid(format!("SECURITY must be 0 (none), 1 (STARTTLS), 2 (implicit TLS) or 3 (STARTTLS if available), got {value}"))
                })?;
            }
            Opt::MaxConnections => {
                if !(1..=MAX_CONNECTIONS_LIMIT).contains(&value) {
                    return Err(Error::invalid(format!(
                        "MAX_CONNECTIONS must be 1..{MAX_CONNECTIONS_LIMIT}, got {value}"
                    )));
                }
                self.max_connections = value as usize;
            }
            Opt::ConnectTimeoutMs => self.connect_timeout = timeout(name, value, 1)?,
            Opt::IoTimeoutMs => self.io_timeout = timeout(name, value, 1)?,
            Opt::IdleTimeoutMs => self.idle_timeout = timeout(name, value, 0)?,
            Opt::IdleRenewMsForTests => self.idle_renew = timeout(name, value, 1)?,
            Opt::AcceptInvalidCerts => {
                if value != 0 && value != 1 {
                    return Err(Error::invalid(format!(
                        "ACCEPT_INVALID_CERTS must be 0 or 1, got {value}"
                    )));
                }
                self.accept_invalid_certs = value == 1;
            }
            Opt::ThrottleMessages => {
                if !(0..=u32::MAX as i64).contains(&value) {
                    return Err(Error::invalid(format!(
                        "THROTTLE_MESSAGES must be >= 0, got {value}"
                    )));
                }
                self.throttle_messages = value as u32;
            }
            Opt::ThrottleIntervalMs => self.throttle_interval = timeout(name, value, 0)?,
            Opt::QueueLimit => {
                if !(1..=100_000_000).contains(&value) {
                    return Err(Error::invalid(format!(
                        "QUEUE_LIMIT must be 1..100000000, got {value}"
                    )));
                }
                self.queue_limit = value as usize;
            }
            Opt::OpTimeoutMs => {
                self.op_timeout = match value {
                    0 => None,
                    v => Some(timeout(name, v, 1)?),
                }
            }
            Opt::MaxLineBytes => self.max_line_bytes = bytes_in(name, value, MAX_LINE_RANGE)?,
            Opt::MaxMessageBytes => self.max_message_bytes = bytes_in(name, value, MAX_MESSAGE_RANGE)?,
            Opt::TlsMinVersion => self.tls.set_min_version(value)?,
            Opt::KeepaliveS => {
                if !(0..=MAX_KEEPALIVE_S).contains(&value) {
                    return Err(Error::invalid(format!(
                        "KEEPALIVE_S must be 0 (off) or 1..{MAX_KEEPALIVE_S} seconds, got {value}"
                    )));
                }
                self.keepalive = (value > 0).then(|| Duration::from_secs(value as u64));
            }
            Opt::SpoolSync | Opt::SpoolMaxMessages | Opt::SpoolMaxBytes => {
                self.set_spool_int(option, value)?
            }
            _ => unreachable!("checked by check_applies: {} takes {:?}", name, option.kind()),
        }
        Ok(())
    }

    /// The spool's integer options (SPOOL_SYNC, SPOOL_MAX_MESSAGES, SPOOL_MAX_BYTES).
    fn set_spool_int(&mut self, option: Opt, value: i64) -> Result<()> {
        match option {
            Opt::SpoolSync => {
                if value != 0 && value != 1 {
                    return Err(Error::invalid(format!("SPOOL_SYNC must be 0 or 1, got {value}")));
                }
                self.spool_sync = value == 1;
            }
            Opt::SpoolMaxMessages => {
                if !(1..=100_000_000).contains(&value) {
                    return Err(Error::invalid(format!(
                        "SPOOL_MAX_MESSAGES must be 1..100000000, got {value}"
                    )));
                }
                self.spool_max_messages = value as usize;
            }
            Opt::SpoolMaxBytes => {
                if !(65536..=1 << 50).contains(&value) {
                    return Err(Error::invalid(format!(
                        "SPOOL_MAX_BYTES must be 65536..{}, got {value}",
                        1i64 << 50
                    )));
                }
                self.spool_max_bytes = value as u64;
            }
            _ => unreachable!("only the spool's options come here"),
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
        self.tls.identity()?;
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

    /// Each option is refused with the other setter, and refused by the
    /// protocols it does not apply to, with the texts C callers see.
    #[test]
    fn kind_and_protocol_are_checked_for_every_option() {
        for opt in Opt::ALL {
            let p = [Protocol::Smtp, Protocol::Pickup]
                .into_iter()
                .find(|p| opt.applies_to(*p))
                .expect("every option applies to SMTP or PICKUP");
            let mut o = Options::new(p);
            let e = match opt.kind() {
                Kind::Str => o.set_int(opt, 1).unwrap_err(),
                Kind::Int => o.set_str(opt, "1").unwrap_err(),
            };
            assert!(
                e.detail.starts_with(&format!("option {} takes ", opt.name())),
                "{}",
                e.detail
            );
            for other in [Protocol::Smtp, Protocol::Imap, Protocol::Pop3, Protocol::Pickup] {
                if !opt.applies_to(other) {
                    let mut o = Options::new(other);
                    let e = match opt.kind() {
                        Kind::Str => o.set_str(opt, "x").unwrap_err(),
                        Kind::Int => o.set_int(opt, 1).unwrap_err(),
                    };
                    assert_eq!(
                        e.detail,
                        format!(
                            "option {} does not apply to a {} client",
                            opt.name(),
                            other.name()
                        )
                    );
                }
            }
        }
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
