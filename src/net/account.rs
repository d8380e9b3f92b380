//! What the test-account op (`herald_client_test_async`) reports of a
//! session it opened (connected, secured, logged in) before logging out:
//! the server's capabilities and the security in use, the same for every
//! protocol.

use crate::data::{field, ResultData, ResultItem};
use crate::options::{Options, Security};

/// How the session is secured: "TLS (implicit)", "STARTTLS" or "none".
pub fn security(o: &Options, is_tls: bool) -> &'static str {
    match (is_tls, o.security) {
        (false, _) => "none",
        (true, Security::ImplicitTls) => "TLS (implicit)",
        (true, _) => "STARTTLS",
    }
}

/// One capability as one word: its name, then its parameters after `=`,
/// separated by `,` ("AUTH PLAIN LOGIN" is "AUTH=PLAIN,LOGIN").
pub fn one_word(line: &str) -> String {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or("");
    let params: Vec<&str> = words.collect();
    if params.is_empty() {
        name.to_string()
    } else {
        format!("{name}={}", params.join(","))
    }
}

/// The op's result: one item with the capabilities (space separated),
/// the security and the login's mechanism (when it logged in); and its detail.
pub fn report(
    o: &Options,
    is_tls: bool,
    capabilities: &[String],
    mechanism: Option<&str>,
) -> (ResultData, String) {
    let sec = security(o, is_tls);
    let mut item = ResultItem::new(0)
        .with_str(field::CAPABILITIES, &capabilities.join(" "))
        .with_str(field::SECURITY, sec);
    let who = match (&o.username, mechanism) {
        (Some(user), Some(m)) => {
            item.set_str(field::AUTH_MECHANISM, m);
            format!("logged in as {user} with {m}")
        }
        (Some(user), None) => format!("logged in as {user}"),
        (None, _) => "no login (no USERNAME)".to_string(),
    };
    let detail = format!(
        "{} {}:{}: connected, security {sec}, {who}, {} capabilities",
        o.protocol.name(),
        o.host(),
        o.port(),
        capabilities.len()
    );
    (ResultData::new(vec![item]), detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{id, Protocol};

    #[test]
    fn security_and_report() {
        let mut o = Options::new(Protocol::Imap);
        o.set_str(id::HOST, "h").unwrap();
        o.set_str(id::USERNAME, "u").unwrap();
        assert_eq!(security(&o, true), "STARTTLS");
        assert_eq!(security(&o, false), "none");
        o.set_int(id::SECURITY, 2).unwrap();
        assert_eq!(security(&o, true), "TLS (implicit)");
        let (r, detail) = report(&o, true, &["IMAP4rev1".into(), "IDLE".into()], Some("PLAIN"));
        assert_eq!(
            r.items[0]
                .str_field(field::CAPABILITIES)
                .unwrap()
                .to_str()
                .unwrap(),
            "IMAP4rev1 IDLE"
        );
        assert_eq!(
            r.items[0].str_field(field::SECURITY).unwrap().to_str().unwrap(),
            "TLS (implicit)"
        );
        assert_eq!(one_word("SASL PLAIN  LOGIN"), "SASL=PLAIN,LOGIN");
        assert_eq!(one_word("TOP"), "TOP");
        assert_eq!(
            detail,
            "IMAP h:993: connected, security TLS (implicit), logged in as u with PLAIN, 2 capabilities"
        );
        let mech = r.items[0].str_field(field::AUTH_MECHANISM).unwrap();
        assert_eq!(mech.to_str().unwrap(), "PLAIN");
    }
}
