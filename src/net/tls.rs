//! TLS a user can trust: the connector the options ask for (extra roots,
//! lowest version, client certificate), certificate pins, and what a
//! verification failure tells the caller about the certificate (its
//! SHA-256, subject, issuer and validity), so that a program can ask its
//! user "trust this certificate?" and retry with the pin.
//!
//! With TLS_PIN_SHA256 the TLS library's own verification is off and the
//! peer certificate is checked against the pin right after the handshake,
//! before anything else is sent: exactly that certificate (or one with
//! that public key) is accepted, whatever its chain, name or dates.
//!
//! The TLS library does not hand out a certificate it refused, so after a
//! failed handshake the connection is opened once more with verification
//! off (`Options::tls_probe`), only to read the certificate: that probe
//! stops right after its handshake, before any credential is sent.

use std::net::TcpStream;

use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};

use super::Stream;
use crate::data::ResultItem;
use crate::options::{hex, Options, TlsVersion};
use crate::result::{field, ResultData};
use crate::status::{Error, Result, Status};

/// The detail of the probe's error (never seen by a caller).
const PROBE: &str = "certificate probe";

/// What the caller learns about a server certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the certificate (DER).
    pub sha256: [u8; 32],
    /// SHA-256 of its SubjectPublicKeyInfo (DER), when it parses.
    pub spki_sha256: Option<[u8; 32]>,
    pub subject: String,
    pub issuer: String,
    /// Validity, Unix seconds (0 when the certificate does not parse).
    pub not_before: u64,
    pub not_after: u64,
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl CertInfo {
    /// From a certificate in DER. A certificate that does not parse still
    /// has its fingerprint (pins match on it).
    pub fn from_der(der: &[u8]) -> CertInfo {
        let mut info = CertInfo {
            sha256: sha256(der),
            spki_sha256: None,
            subject: String::new(),
            issuer: String::new(),
            not_before: 0,
            not_after: 0,
        };
        if let Ok(c) = x509_cert::Certificate::from_der(der) {
            let tbs = &c.tbs_certificate;
            info.subject = tbs.subject.to_string();
            info.issuer = tbs.issuer.to_string();
            info.not_before = tbs.validity.not_before.to_unix_duration().as_secs();
            info.not_after = tbs.validity.not_after.to_unix_duration().as_secs();
            info.spki_sha256 = tbs.subject_public_key_info.to_der().ok().map(|d| sha256(&d));
        }
        info
    }

    /// Is `pin` this certificate's SHA-256, or its public key's?
    pub fn matches(&self, pin: &[u8; 32]) -> bool {
        &self.sha256 == pin || self.spki_sha256.as_ref() == Some(pin)
    }

    /// The completion's result: one item with the HERALD_FIELD_CERT_* fields.
    pub fn result(&self) -> ResultData {
        let item = ResultItem::new(0)
            .with_str(field::CERT_SHA256, &hex(&self.sha256))
            .with_str(field::CERT_SUBJECT, &self.subject)
            .with_str(field::CERT_ISSUER, &self.issuer)
            .with_int(field::CERT_NOT_BEFORE, self.not_before)
            .with_int(field::CERT_NOT_AFTER, self.not_after);
        ResultData::new(vec![item])
    }

    /// For error texts: who it is for and its fingerprint.
    fn describe(&self) -> String {
        let mut s = format!("certificate SHA-256 {}", hex(&self.sha256));
        if !self.subject.is_empty() {
            s = format!("{s}, subject \"{}\", issuer \"{}\"", self.subject, self.issuer);
        }
        s
    }
}

/// A TLS connector for the options: system roots plus CA_FILE, the lowest
/// version, the client certificate; verification off with
/// ACCEPT_INVALID_CERTS, with a pin (checked after the handshake), and for
/// the probe.
pub fn connector(o: &Options) -> Result<native_tls::TlsConnector> {
    let mut b = native_tls::TlsConnector::builder();
    for pem in &o.extra_roots_pem {
        let cert = native_tls::Certificate::from_pem(pem)
            .map_err(|e| Error::new(Status::Tls, format!("CA_FILE: {e}")).with_source(e))?;
        b.add_root_certificate(cert);
    }
    if o.accept_invalid_certs || o.tls.pin.is_some() || o.tls_probe {
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    b.min_protocol_version(Some(match o.tls.min_version {
        Some(TlsVersion::Tls13) => native_tls::Protocol::Tlsv13,
        _ => native_tls::Protocol::Tlsv12,
    }));
    if let Some(id) = o.tls.identity()? {
        b.identity(id);
    }
    b.build()
        .map_err(|e| Error::new(Status::Tls, format!("TLS setup: {e}")).with_source(e))
}

/// The server certificate of an open TLS stream.
fn peer(stream: &Stream, host: &str) -> Result<CertInfo> {
    let Stream::Tls(s) = stream else {
        return Err(Error::new(Status::Tls, "not a TLS connection"));
    };
    let cert = s
        .peer_certificate()
        .map_err(|e| {
            Error::new(Status::Tls, format!("{host}: the server's certificate: {e}")).with_source(e)
        })?
        .ok_or_else(|| Error::new(Status::Tls, format!("{host} sent no certificate")))?;
    let der = cert.to_der().map_err(|e| {
        Error::new(Status::Tls, format!("{host}: the server's certificate: {e}")).with_source(e)
    })?;
    Ok(CertInfo::from_der(&der))
}

/// The TLS handshake over `tcp` as the options say: verified, or checked
/// against the pin, or (the probe) only to read the certificate.
pub fn handshake(
    o: &Options,
    cache: &mut Option<native_tls::TlsConnector>,
    host: &str,
    tcp: TcpStream,
) -> Result<Stream> {
    if o.tls_probe {
        let stream = super::tls_handshake(&connector(o)?, host, tcp)?;
        let info = peer(&stream, host)?;
        return Err(Error::new(Status::Tls, PROBE).with_partial(info.result()));
    }
    let stream = super::tls_handshake(super::connector(o, cache)?, host, tcp)?;
    if let Some(pin) = &o.tls.pin {
        let info = peer(&stream, host)?;
        if !info.matches(pin) {
            return Err(Error::new(
                Status::Tls,
                format!(
                    "the certificate of {host} does not match TLS_PIN_SHA256 ({})",
                    info.describe()
                ),
            )
            .with_partial(info.result()));
        }
    }
    Ok(stream)
}

/// Was `e` a failed TLS handshake (as opposed to a pin mismatch or setup)?
fn is_handshake_failure(e: &Error) -> bool {
    e.status == Status::Tls
        && e.partial().is_none()
        && e.detail.starts_with("TLS handshake with")
        && std::error::Error::source(e).is_some_and(|s| s.downcast_ref::<native_tls::Error>().is_some())
}

/// Runs `open` (a protocol's whole connection setup). When it fails in the
/// TLS handshake, runs it once more as a probe to read the server's
/// certificate: if that handshake, without verification, succeeds, the
/// failure was the certificate's, and the error gets it as its result item
/// and in its detail.
pub fn with_cert_info<T>(o: &Options, mut open: impl FnMut(&Options) -> Result<T>) -> Result<T> {
    let e = match open(o) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    if !is_handshake_failure(&e) || o.accept_invalid_certs || o.tls.pin.is_some() {
        return Err(e);
    }
    let mut probe = o.clone();
    probe.tls_probe = true;
    match open(&probe) {
        Err(mut p) if p.status == Status::Tls && p.detail == PROBE => {
            let Some(cert) = p.take_partial() else {
                return Err(e);
            };
            let fp = cert.items[0]
                .str_field(field::CERT_SHA256)
                .map(|c| c.to_string_lossy().into_owned());
            let detail = format!(
                "{} (certificate SHA-256 {}: set TLS_PIN_SHA256 to it to trust this certificate)",
                e.detail,
                fp.unwrap_or_default()
            );
            let mut e = e;
            e.detail = detail;
            Err(e.with_partial(cert))
        }
        // Cancelled (or past the deadline) while probing: that is the outcome.
        Err(p) if p.status == Status::Cancelled => Err(p),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_still_has_a_fingerprint_and_no_fields() {
        let info = CertInfo::from_der(b"not a certificate");
        assert_eq!(info.sha256, sha256(b"not a certificate"));
        assert!(info.spki_sha256.is_none() && info.subject.is_empty());
        assert!(info.matches(&sha256(b"not a certificate")));
        assert!(!info.matches(&[0; 32]));
        let r = info.result();
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].int_field(field::CERT_NOT_AFTER), Some(0));
    }
}
