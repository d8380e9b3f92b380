//! HERALD_OPT_PROXY: the proxy a client's connections go through, parsed
//! and checked when the option is set.

use std::fmt;

use crate::status::{Error, Result};

/// The kind of proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5 (RFC 1928), user/password auth (RFC 1929).
    Socks5,
    /// An HTTP proxy's CONNECT method.
    HttpConnect,
}

impl ProxyKind {
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Socks5 => "SOCKS5",
            ProxyKind::HttpConnect => "HTTP",
        }
    }
}

/// A proxy: `socks5://[user:pass@]host:port` or `http://[user:pass@]host:port`.
/// `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    /// A name or an address (an IPv6 one without brackets).
    pub host: String,
    pub port: u16,
    /// User and password, percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl fmt::Display for Proxy {
    /// "SOCKS5 proxy host:port" (no credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{} proxy [{}]:{}", self.kind.name(), self.host, self.port)
        } else {
            write!(f, "{} proxy {}:{}", self.kind.name(), self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn bad(why: impl fmt::Display) -> Error {
    Error::invalid(format!(
        "PROXY must be \"socks5://[user:pass@]host:port\" or \"http://[user:pass@]host:port\": {why}"
    ))
}

/// `%XX` escapes decoded (user names and passwords with `:` or `@` in them).
fn percent_decode(s: &str, what: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(v) = hex else {
                return Err(bad(format!("bad %-escape in the {what}")));
            };
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("the {what} is not UTF-8")))
}

/// Parses a PROXY value (the empty string is no proxy).
pub fn parse(url: &str) -> Result<Option<Proxy>> {
    if url.is_empty() {
        return Ok(None);
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("no spaces or control characters"));
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let kind = match scheme.to_ascii_lowercase().as_str() {
        // socks5h ("the proxy resolves") is what herald always does.
        "socks5" | "socks5h" => ProxyKind::Socks5,
        "http" => ProxyKind::HttpConnect,
        other => return Err(bad(format!("unknown scheme {other:?}"))),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(bad("no path, query or fragment"));
    }
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let credentials = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let (user, pass) = (percent_decode(user, "user")?, percent_decode(pass, "password")?);
            if user.is_empty() {
                return Err(bad("an empty user name"));
            }
            if kind == ProxyKind::Socks5 && (user.len() > 255 || pass.len() > 255) {
                return Err(bad("SOCKS5 user names and passwords are at most 255 bytes"));
            }
            if user.chars().chain(pass.chars()).any(char::is_control) {
                return Err(bad("control characters in the credentials"));
            }
            Some((user, pass))
        }
    };
    let (host, port) = split_host_port(hostport)?;
    Ok(Some(Proxy {
        kind,
        host,
        port,
        credentials,
    }))
}

/// "host:port" or "[v6]:port"; the port is required.
fn split_host_port(hp: &str) -> Result<(String, u16)> {
    let (host, port) = if let Some(v6) = hp.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad(format!("{h:?} is not an IPv6 address")))?;
        (h, p.strip_prefix(':').ok_or_else(|| bad("no port"))?)
    } else {
        hp.rsplit_once(':').ok_or_else(|| bad("no port"))?
    };
    if host.is_empty() || host.len() > 255 {
        return Err(bad("no host, or a host name over 255 bytes"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| bad(format!("port {port:?} is not 1..65535")))?;
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls() {
        let p = parse("socks5://127.0.0.1:1080").unwrap().unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::Socks5, "127.0.0.1", 1080)
        );
        assert_eq!(p.credentials, None);
        let p = parse("http://me:p%40ss:w@proxy.example:3128/").unwrap().unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::HttpConnect, "proxy.example", 3128)
        );
        assert_eq!(p.credentials, Some(("me".into(), "p@ss:w".into())));
        let p = parse("SOCKS5h://u:p@[::1]:9").unwrap().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 9));
        assert_eq!(p.to_string(), "SOCKS5 proxy [::1]:9");
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn bad_urls_are_invalid_with_a_reason() {
        for (url, why) in [
            ("127.0.0.1:1080", "no scheme"),
            ("ftp://h:1", "unknown scheme"),
            ("socks5://h", "no port"),
            ("socks5://h:0", "not 1..65535"),
            ("socks5://h:99999", "not 1..65535"),
            ("http://h:80/path", "no path"),
            ("socks5://:pw@h:1", "empty user"),
            ("socks5://u:%zz@h:1", "bad %-escape"),
            ("socks5://[::1:1", "unclosed"),
            ("socks5://h :1", "no spaces"),
            ("http://u:p\r\n@h:1", "no spaces or control"),
            ("socks5://:1", "no host"),
        ] {
            let e = parse(url).unwrap_err();
            assert_eq!(e.status, crate::status::Status::InvalidArgument, "{url}");
            assert!(e.detail.contains(why), "{url}: {}", e.detail);
        }
        let long = format!("socks5://{}:p@h:1", "u".repeat(256));
        assert!(parse(&long).unwrap_err().detail.contains("255"));
    }

    #[test]
    fn password_never_shown() {
        let p = parse("socks5://user:hunter2@h:1").unwrap().unwrap();
        assert!(!format!("{p:?} {p}").contains("hunter2"));
    }

    #[test]
    fn set_as_an_option_of_network_clients() {
        use crate::options::{id, Options, Protocol};
        let mut o = Options::new(Protocol::Pop3);
        o.set_str(id::PROXY, "http://h:3128").unwrap();
        assert_eq!(o.proxy.as_ref().map(|p| p.kind), Some(ProxyKind::HttpConnect));
        let e = o.set_str(id::PROXY, "socks5://h").unwrap_err();
        assert!(e.detail.contains("no port"), "{e}");
        assert!(o.proxy.is_some(), "a bad value leaves the old one");
        o.set_str(id::PROXY, "").unwrap();
        assert!(o.proxy.is_none());
        let mut o = Options::new(Protocol::Pickup);
        assert!(o.set_str(id::PROXY, "socks5://h:1").is_err());
    }
}
