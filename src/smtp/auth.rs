//! SMTP AUTH (RFC 4954): the best SASL mechanism both sides have (see
//! `crate::sasl` for the order), challenges as 334 replies, success as 235
//! and nothing else.

use std::io::{Read, Write};

use super::command::Command;
use super::reply::Reply;
use super::session::Session;
use crate::sasl::{self, Exchange, Mech};
use crate::status::{Error, Result, Status};

/// Most challenges one exchange may take (SCRAM needs two).
const MAX_CHALLENGES: usize = 8;

impl<S: Read + Write> Session<S> {
    /// Authenticates with the best mechanism both sides support: with a
    /// token OAUTHBEARER or XOAUTH2, else SCRAM-SHA-256, SCRAM-SHA-1,
    /// PLAIN, LOGIN. Only 235 is success.
    pub fn authenticate(&mut self, user: &str, password: Option<&str>, token: Option<&str>) -> Result<()> {
        let (order, secret): (&[Mech], &str) = match (token, password) {
            (Some(t), _) => (&sasl::TOKEN_ORDER, t),
            (None, Some(p)) => (&sasl::PASSWORD_ORDER, p),
            (None, None) => return Err(Error::invalid("USERNAME is set without PASSWORD or OAUTH2_TOKEN")),
        };
        let offered = |m: &str| self.ext.auth.iter().any(|a| a == m);
        let Some(mech) = sasl::choose(order, offered) else {
            return Err(self.no_mechanism(&sasl::names(order)));
        };
        self.mechanism = Some(mech.name());
        let mut x = Exchange::new(mech, user, secret);
        let mut r = match x.initial()? {
            Some(ir) => {
                self.conn
                    .transmit_secret(&format!("AUTH {} ", mech.name()), &sasl::b64(&ir))?;
                self.reply()?
            }
            None => self.command(Command::Auth {
                mechanism: mech.name(),
            })?,
        };
        for _ in 0..MAX_CHALLENGES {
            if r.code != 334 {
                break;
            }
            let answer = sasl::unb64(r.first_line().as_bytes()).and_then(|ch| x.respond(&ch));
            match answer {
                Ok(a) => self.conn.transmit_secret("", &sasl::b64(&a))?,
                Err(e) => {
                    // Cancel the exchange (RFC 4954 §4), then fail with our reason.
                    self.send(b"*\r\n")?;
                    let _ = self.reply()?;
                    return Err(e);
                }
            }
            r = self.reply()?;
        }
        match r.code {
            235 => x.finish(),
            334 => Err(Error::protocol(format!(
                "the server sent more than {MAX_CHALLENGES} challenges to AUTH {}",
                mech.name()
            ))),
            _ => Err(x.with_server_error(auth_error(&r, mech))),
        }
    }

    fn no_mechanism(&self, wanted: &str) -> Error {
        if self.ext.auth.is_empty() {
            Error::new(Status::Unsupported, "the server does not offer AUTH")
        } else {
            Error::new(
                Status::Unsupported,
                format!("the server offers AUTH {}, not {wanted}", self.ext.auth.join(" ")),
            )
        }
    }
}

fn auth_error(r: &Reply, mech: Mech) -> Error {
    let m = mech.name();
    match r.code {
        400..=499 => r.error(&format!("authentication ({m})")),
        500..=599 => Error::with_code(
            Status::Auth,
            r.code as i32,
            format!("authentication ({m}) failed: {r}"),
        ),
        200..=299 => Error::with_code(
            Status::Protocol,
            r.code as i32,
            format!(
                "the server answered AUTH {m} with {} instead of 235 (RFC 4954), so no \
                 authentication took place: {r}",
                r.code
            ),
        ),
        _ => Error::with_code(
            Status::Protocol,
            r.code as i32,
            format!("unexpected reply to AUTH {m}: {r}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Tracer;
    use crate::net::mem::MemStream;
    use base64::Engine as _;

    fn session(replies: &str, auth: &[&str]) -> Session<MemStream> {
        let mut s = Session::new(MemStream::new(replies), Tracer::default());
        s.ext.auth = auth.iter().map(|m| m.to_string()).collect();
        s
    }

    fn written(s: &Session<MemStream>) -> String {
        s.conn.get_ref().written()
    }

    #[test]
    fn auth_plain_is_preferred_over_login_and_encoded() {
        let mut s = session("235 ok\r\n", &["LOGIN", "PLAIN"]);
        s.authenticate("user", Some("pass"), None).unwrap();
        // base64("\0user\0pass")
        assert_eq!(written(&s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    }

    #[test]
    fn auth_login_when_plain_is_not_offered() {
        let mut s = session("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n", &["LOGIN"]);
        s.authenticate("user", Some("pass"), None).unwrap();
        assert_eq!(written(&s), "AUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\n");
    }

    #[test]
    fn auth_xoauth2_and_its_error_challenge() {
        let mut s = session("235 ok\r\n", &["PLAIN", "XOAUTH2"]);
        s.authenticate("me@example.org", None, Some("tok")).unwrap();
        let ir = base64::engine::general_purpose::STANDARD
            .encode("user=me@example.org\x01auth=Bearer tok\x01\x01");
        assert_eq!(written(&s), format!("AUTH XOAUTH2 {ir}\r\n"));

        // A rejected token: the server sends its error as a 334 challenge, the client answers empty.
        let mut s = session(
            "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n535 5.7.8 bad token\r\n",
            &["XOAUTH2"],
        );
        let e = s.authenticate("me@example.org", None, Some("tok")).unwrap_err();
        assert_eq!((e.status, e.reply_code), (Status::Auth, 535));
        assert!(e.detail.contains(r#"{"status":"401"}"#), "{e}");
        assert!(written(&s).ends_with("\r\n\r\n"));
    }

    #[test]
    fn oauthbearer_is_preferred_and_answers_its_error_with_0x01() {
        let mut s = session(
            "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n535 5.7.8 expired\r\n",
            &["XOAUTH2", "OAUTHBEARER"],
        );
        let e = s.authenticate("u", None, Some("tok")).unwrap_err();
        assert_eq!(e.status, Status::Auth);
        assert!(e.detail.contains("invalid_token"), "{e}");
        let ir = sasl::b64(b"n,a=u,\x01auth=Bearer tok\x01\x01");
        assert_eq!(written(&s), format!("AUTH OAUTHBEARER {ir}\r\nAQ==\r\n"));
    }

    #[test]
    fn auth_failures_map_to_statuses() {
        let e = session("535 5.7.8 no\r\n", &["PLAIN"])
            .authenticate("u", Some("p"), None)
            .unwrap_err();
        assert_eq!((e.status, e.reply_code), (Status::Auth, 535));
        let e = session("454 4.7.0 later\r\n", &["PLAIN"])
            .authenticate("u", Some("p"), None)
            .unwrap_err();
        assert_eq!(e.status, Status::Transient);
        let e = session("", &["CRAM-MD5"])
            .authenticate("u", Some("p"), None)
            .unwrap_err();
        assert_eq!(e.status, Status::Unsupported);
        let e = session("", &[]).authenticate("u", None, Some("t")).unwrap_err();
        assert_eq!(e.status, Status::Unsupported);
    }

    /// smtp-sink answers AUTH with 250: that is not a success (RFC 4954 says 235).
    #[test]
    fn only_235_is_success() {
        for reply in ["250 ok\r\n", "220 hm\r\n", "270 odd\r\n"] {
            let e = session(reply, &["PLAIN"])
                .authenticate("u", Some("p"), None)
                .unwrap_err();
            assert_eq!(e.status, Status::Protocol, "{reply}: {e}");
            assert!(e.detail.contains("instead of 235"), "{e}");
        }
    }

    #[test]
    fn scram_is_preferred_and_a_bad_server_signature_cancels() {
        // The nonce is random: a server that answers with a nonce not ours
        // makes the client cancel with "*".
        let first = sasl::b64(b"r=not-our-nonce,s=QSXCR+Q6sek8bf92,i=4096");
        let mut s = session(
            &format!("334 {first}\r\n501 5.5.0 cancelled\r\n"),
            &["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"],
        );
        let e = s.authenticate("u", Some("p"), None).unwrap_err();
        assert_eq!(e.status, Status::Protocol, "{e}");
        let w = written(&s);
        assert!(w.starts_with("AUTH SCRAM-SHA-256 "), "{w}");
        assert!(w.ends_with("\r\n*\r\n"), "{w}");
    }

    #[test]
    fn scram_success_without_the_server_signature_is_a_failure() {
        let mut s = session("235 ok\r\n", &["SCRAM-SHA-256"]);
        let e = s.authenticate("u", Some("p"), None).unwrap_err();
        assert_eq!(e.status, Status::Auth);
        assert!(e.detail.contains("without proving"), "{e}");
    }
}
