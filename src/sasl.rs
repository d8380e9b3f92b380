//! SASL mechanisms, the same for SMTP AUTH, IMAP AUTHENTICATE and POP3
//! AUTH: which one to use, and the client's side of each exchange, as raw
//! bytes (each protocol does its own base64 and framing).
//!
//! The order, best first, among those the server offers:
//! - with an OAuth2 token: OAUTHBEARER (RFC 7628), then XOAUTH2;
//! - with a password: SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1 (RFC 5802),
//!   PLAIN, LOGIN. SCRAM never sends the password and checks that the
//!   server knows it (its signature): a wrong one fails with AUTH.
//!
//! SCRAM uses the password as given (no SASLprep): an ASCII password is
//! the same either way.

use base64::Engine as _;
use hmac::{Mac, SimpleHmac};

use crate::status::{Error, Result, Status};

/// A SASL mechanism herald speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mech {
    OAuthBearer,
    XOAuth2,
    ScramSha256,
    ScramSha1,
    Plain,
    Login,
}

/// Mechanisms for a token, best first.
pub const TOKEN_ORDER: [Mech; 2] = [Mech::OAuthBearer, Mech::XOAuth2];
/// Mechanisms for a password, best first.
pub const PASSWORD_ORDER: [Mech; 4] = [Mech::ScramSha256, Mech::ScramSha1, Mech::Plain, Mech::Login];

/// Most SCRAM iterations accepted from a server: more is a denial of service.
const MAX_ITERATIONS: u32 = 1_000_000;

impl Mech {
    pub fn name(self) -> &'static str {
        match self {
            Mech::OAuthBearer => "OAUTHBEARER",
            Mech::XOAuth2 => "XOAUTH2",
            Mech::ScramSha256 => "SCRAM-SHA-256",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::Plain => "PLAIN",
            Mech::Login => "LOGIN",
        }
    }
}

/// The best of `order` that `offered` says the server has.
pub fn choose(order: &[Mech], offered: impl Fn(&str) -> bool) -> Option<Mech> {
    order.iter().copied().find(|m| offered(m.name()))
}

/// The names of `order`, for error texts ("OAUTHBEARER or XOAUTH2").
pub fn names(order: &[Mech]) -> String {
    order.iter().map(|m| m.name()).collect::<Vec<_>>().join(" or ")
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes a server's base64 challenge; whitespace around it is ignored.
pub fn unb64(text: &[u8]) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim_ascii())
        .map_err(|e| Error::protocol(format!("the server's SASL challenge is not base64: {e}")))
}

/// RFC 5802 saslname: ',' and '=' escaped.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// Where a SCRAM exchange stands.
enum Scram {
    /// client-first sent (its bare part kept).
    First { bare: String, nonce: String },
    /// client-final sent; the signature the server must show.
    Final { server_signature: Vec<u8> },
    /// The server proved it knows the password.
    Verified,
}

/// The client's side of one SASL exchange.
pub struct Exchange {
    mech: Mech,
    user: String,
    secret: String,
    /// Has the initial response gone (with the command, or after the first "+")?
    initial_sent: bool,
    /// LOGIN: how many prompts answered.
    prompts: u8,
    scram: Option<Scram>,
    /// What an OAuth2 server said in its error challenge (JSON).
    server_error: Option<String>,
}

impl Exchange {
    /// `secret` is the token for OAUTHBEARER/XOAUTH2, else the password.
    pub fn new(mech: Mech, user: &str, secret: &str) -> Exchange {
        Exchange {
            mech,
            user: user.to_string(),
            secret: secret.to_string(),
            initial_sent: false,
            prompts: 0,
            scram: None,
            server_error: None,
        }
    }

    pub fn mech(&self) -> Mech {
        self.mech
    }

    /// The initial response, to go with the command when the protocol
    /// allows (None for LOGIN, which waits for prompts). Call it only when
    /// it is sent.
    pub fn initial(&mut self) -> Result<Option<Vec<u8>>> {
        if self.mech == Mech::Login {
            return Ok(None);
        }
        self.initial_sent = true;
        Ok(Some(match self.mech {
            Mech::OAuthBearer => format!(
                "n,a={},\x01auth=Bearer {}\x01\x01",
                saslname(&self.user),
                self.secret
            )
            .into_bytes(),
            Mech::XOAuth2 => {
                format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.secret).into_bytes()
            }
            Mech::Plain => format!("\0{}\0{}", self.user, self.secret).into_bytes(),
            Mech::ScramSha256 | Mech::ScramSha1 => self.scram_first()?,
            Mech::Login => unreachable!("returned above"),
        }))
    }

    fn scram_first(&mut self) -> Result<Vec<u8>> {
        let mut raw = [0u8; 18];
        getrandom::fill(&mut raw)
            .map_err(|e| Error::new(Status::Auth, format!("no random nonce for SCRAM: {e}")))?;
        self.scram_first_with(&b64(&raw))
    }

    fn scram_first_with(&mut self, nonce: &str) -> Result<Vec<u8>> {
        let bare = format!("n={},r={nonce}", saslname(&self.user));
        let msg = format!("n,,{bare}");
        self.scram = Some(Scram::First {
            bare,
            nonce: nonce.to_string(),
        });
        Ok(msg.into_bytes())
    }

    /// The answer to a server challenge (decoded). An error means the
    /// exchange cannot go on: cancel it ("*") and fail with that error.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>> {
        if !self.initial_sent && self.mech != Mech::Login {
            // No initial response with the command: the first (empty)
            // challenge asks for it.
            return Ok(self.initial()?.unwrap_or_default());
        }
        match self.mech {
            Mech::OAuthBearer | Mech::XOAuth2 => {
                // A challenge after the token is the server's error (JSON):
                // kept for the detail; the mechanism wants a dummy answer.
                self.server_error = Some(String::from_utf8_lossy(challenge).into_owned());
                Ok(if self.mech == Mech::OAuthBearer {
                    b"\x01".to_vec()
                } else {
                    Vec::new()
                })
            }
            Mech::Login => {
                self.prompts += 1;
                match self.prompts {
                    1 => Ok(self.user.clone().into_bytes()),
                    2 => Ok(self.secret.clone().into_bytes()),
                    _ => Err(Error::protocol(
                        "the server asked for more than a user name and password (LOGIN)",
                    )),
                }
            }
            Mech::Plain => Err(Error::protocol(
                "the server sent a challenge after AUTH PLAIN's credentials",
            )),
            Mech::ScramSha256 | Mech::ScramSha1 => self.scram_step(challenge),
        }
    }

    fn scram_step(&mut self, challenge: &[u8]) -> Result<Vec<u8>> {
        let text = std::str::from_utf8(challenge)
            .map_err(|_| Error::protocol("the server's SCRAM message is not UTF-8"))?;
        match self.scram.take() {
            Some(Scram::First { bare, nonce }) => {
                let (final_msg, server_signature) =
                    scram_final(self.mech, &self.secret, &bare, &nonce, text)?;
                self.scram = Some(Scram::Final { server_signature });
                Ok(final_msg.into_bytes())
            }
            Some(Scram::Final { server_signature }) => {
                let attr = |k: &str| text.split(',').find_map(|a| a.strip_prefix(k));
                if let Some(e) = attr("e=") {
                    return Err(Error::new(
                        Status::Auth,
                        format!("SCRAM: the server refused: {e}"),
                    ));
                }
                let v = attr("v=")
                    .ok_or_else(|| Error::protocol("the server's final SCRAM message has no v="))?;
                let v = unb64(v.as_bytes())?;
                if !constant_time_eq(&v, &server_signature) {
                    return Err(Error::new(
                        Status::Auth,
                        format!(
                            "{}: the server's signature is wrong: it does not know the password \
                             (or something in between answered for it)",
                            self.mech.name()
                        ),
                    ));
                }
                self.scram = Some(Scram::Verified);
                Ok(Vec::new())
            }
            _ => Err(Error::protocol(
                "the server sent a challenge after SCRAM was done",
            )),
        }
    }

    /// The server said the exchange succeeded: for SCRAM, only when it
    /// proved it knows the password.
    pub fn finish(&self) -> Result<()> {
        match (&self.mech, &self.scram) {
            (Mech::ScramSha256 | Mech::ScramSha1, Some(Scram::Verified)) => Ok(()),
            (Mech::ScramSha256 | Mech::ScramSha1, _) => Err(Error::new(
                Status::Auth,
                format!(
                    "{}: the server reported success without proving it knows the password",
                    self.mech.name()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The OAuth2 server's error details (JSON), when it sent them.
    pub fn server_error(&self) -> Option<&str> {
        self.server_error.as_deref()
    }

    /// `detail`, with the OAuth2 server's error details after it.
    pub fn with_server_error(&self, mut e: Error) -> Error {
        if let Some(s) = self.server_error() {
            e.detail = format!("{} (server: {})", e.detail, s.trim());
        }
        e
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The digest functions SCRAM needs, for one hash.
struct Hash {
    hmac: fn(&[u8], &[u8]) -> Vec<u8>,
    h: fn(&[u8]) -> Vec<u8>,
    hi: fn(&[u8], &[u8], u32) -> Vec<u8>,
}

macro_rules! scram_hash {
    ($name:ident, $d:ty) => {
        fn $name() -> Hash {
            fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
                let mut m =
                    <SimpleHmac<$d> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            fn h(data: &[u8]) -> Vec<u8> {
                use sha2::Digest as _;
                <$d>::digest(data).to_vec()
            }
            fn hi(pass: &[u8], salt: &[u8], i: u32) -> Vec<u8> {
                let mut out = vec![0u8; <$d as sha2::Digest>::output_size()];
                pbkdf2::pbkdf2::<SimpleHmac<$d>>(pass, salt, i, &mut out)
                    .expect("HMAC takes a key of any length");
                out
            }
            Hash { hmac, h, hi }
        }
    };
}

scram_hash!(sha256, sha2::Sha256);
scram_hash!(sha1, sha1::Sha1);

/// From the server-first message: client-final, and the server signature
/// to expect.
fn scram_final(
    mech: Mech,
    password: &str,
    bare: &str,
    nonce: &str,
    server_first: &str,
) -> Result<(String, Vec<u8>)> {
    let attr = |k: &str| server_first.split(',').find_map(|a| a.strip_prefix(k));
    if let Some(e) = attr("e=") {
        return Err(Error::new(
            Status::Auth,
            format!("SCRAM: the server refused: {e}"),
        ));
    }
    let bad =
        |what: &str| Error::protocol(format!("the server's first SCRAM message {what}: {server_first}"));
    let r = attr("r=").ok_or_else(|| bad("has no nonce"))?;
    if !r.starts_with(nonce) || r.len() == nonce.len() {
        return Err(bad("does not extend our nonce"));
    }
    let salt = unb64(attr("s=").ok_or_else(|| bad("has no salt"))?.as_bytes())?;
    let i: u32 = attr("i=")
        .and_then(|i| i.parse().ok())
        .filter(|i| (1..=MAX_ITERATIONS).contains(i))
        .ok_or_else(|| bad(&format!("has no iteration count in 1..{MAX_ITERATIONS}")))?;
    let hash = if mech == Mech::ScramSha1 { sha1() } else { sha256() };
    let salted = (hash.hi)(password.as_bytes(), &salt, i);
    let client_key = (hash.hmac)(&salted, b"Client Key");
    let stored_key = (hash.h)(&client_key);
    // c=biws: base64 of the GS2 header "n,," (no channel binding).
    let without_proof = format!("c=biws,r={r}");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let client_signature = (hash.hmac)(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&client_signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = (hash.hmac)(&salted, b"Server Key");
    let server_signature = (hash.hmac)(&server_key, auth_message.as_bytes());
    Ok((format!("{without_proof},p={}", b64(&proof)), server_signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scram(mech: Mech, nonce: &str, server_first: &str) -> (Exchange, String) {
        let mut x = Exchange::new(mech, "user", "pencil");
        x.initial_sent = true;
        let first = x.scram_first_with(nonce).unwrap();
        assert_eq!(first, format!("n,,n=user,r={nonce}").into_bytes());
        let fin = x.respond(server_first.as_bytes()).unwrap();
        (x, String::from_utf8(fin).unwrap())
    }

    /// RFC 7677's example exchange.
    #[test]
    fn scram_sha256_matches_rfc7677() {
        let (mut x, fin) = scram(
            Mech::ScramSha256,
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        );
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(x.finish().is_err(), "not before the server's signature");
        let last = x
            .respond(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(last.is_empty());
        x.finish().unwrap();
    }

    /// RFC 5802's example exchange.
    #[test]
    fn scram_sha1_matches_rfc5802() {
        let (mut x, fin) = scram(
            Mech::ScramSha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        );
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        x.respond(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").unwrap();
        x.finish().unwrap();
    }

    #[test]
    fn a_wrong_server_signature_fails_auth() {
        let (mut x, _) = scram(
            Mech::ScramSha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        );
        let e = x.respond(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap_err();
        assert_eq!(e.status, Status::Auth, "{e}");
        assert!(e.detail.contains("signature is wrong"), "{e}");
        assert!(x.finish().is_err());
    }

    #[test]
    fn hostile_server_first_messages_are_refused() {
        for bad in [
            "r=someone-elses-nonce,s=QSXCR+Q6sek8bf92,i=4096",
            "r=abc,s=QSXCR+Q6sek8bf92,i=4096",
            "r=abcdef,s=QSXCR+Q6sek8bf92,i=0",
            "r=abcdef,s=QSXCR+Q6sek8bf92,i=99999999",
            "r=abcdef,s=!!!,i=4096",
            "r=abcdef,i=4096",
        ] {
            let mut x = Exchange::new(Mech::ScramSha256, "u", "p");
            x.initial_sent = true;
            x.scram_first_with("abc").unwrap();
            let e = x.respond(bad.as_bytes()).unwrap_err();
            assert_eq!(e.status, Status::Protocol, "{bad}: {e}");
        }
    }

    #[test]
    fn order_prefers_scram_and_oauthbearer() {
        let offered = |list: &'static [&'static str]| move |m: &str| list.contains(&m);
        assert_eq!(
            choose(
                &PASSWORD_ORDER,
                offered(&["PLAIN", "LOGIN", "SCRAM-SHA-1", "SCRAM-SHA-256"])
            ),
            Some(Mech::ScramSha256)
        );
        assert_eq!(
            choose(&PASSWORD_ORDER, offered(&["LOGIN", "PLAIN"])),
            Some(Mech::Plain)
        );
        assert_eq!(
            choose(&TOKEN_ORDER, offered(&["XOAUTH2", "OAUTHBEARER"])),
            Some(Mech::OAuthBearer)
        );
        assert_eq!(choose(&TOKEN_ORDER, offered(&["PLAIN"])), None);
    }

    #[test]
    fn oauth_initial_responses_and_error_challenges() {
        let mut x = Exchange::new(Mech::OAuthBearer, "a,b=c", "tok");
        assert_eq!(
            x.initial().unwrap().unwrap(),
            b"n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01".to_vec()
        );
        assert_eq!(x.respond(br#"{"status":"invalid_token"}"#).unwrap(), b"\x01");
        assert_eq!(x.server_error(), Some(r#"{"status":"invalid_token"}"#));
        let mut x = Exchange::new(Mech::XOAuth2, "u", "tok");
        assert_eq!(
            x.initial().unwrap().unwrap(),
            b"user=u\x01auth=Bearer tok\x01\x01".to_vec()
        );
        assert_eq!(x.respond(b"{}").unwrap(), b"");
    }

    #[test]
    fn without_an_initial_response_the_first_challenge_gets_it() {
        let mut x = Exchange::new(Mech::Plain, "u", "p");
        assert_eq!(x.respond(b"").unwrap(), b"\0u\0p");
        assert!(x.respond(b"").is_err());
        let mut x = Exchange::new(Mech::Login, "u", "p");
        assert_eq!(x.initial().unwrap(), None);
        assert_eq!(x.respond(b"Username:").unwrap(), b"u");
        assert_eq!(x.respond(b"Password:").unwrap(), b"p");
        assert!(x.respond(b"More:").is_err());
    }
}
