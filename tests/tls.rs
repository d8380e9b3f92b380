//! TLS a user can trust, against real servers with certificates the suite
//! makes: what a verification failure tells about the certificate (so a
//! program can ask "trust this certificate?" and retry with the pin), pins
//! of the certificate and of its public key, wrong host and expired
//! certificates, the lowest TLS version, and client certificates.

mod api;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::*;
use herald_testservers::*;

/// An IMAP client over implicit TLS as alice, with `extra` options.
fn imaps(port: u16, extra: &[(u32, Val)]) -> TestClient {
    let mut opts = vec![
        (HERALD_OPT_HOST, Val::S("127.0.0.1")),
        (HERALD_OPT_PORT, Val::I(port as i64)),
        (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_IMPLICIT_TLS)),
        (HERALD_OPT_USERNAME, Val::S("alice")),
        (HERALD_OPT_PASSWORD, Val::S("alicepass")),
        (HERALD_OPT_IO_TIMEOUT_MS, Val::I(20_000)),
    ];
    for (id, v) in extra {
        opts.push((
            *id,
            match v {
                Val::S(s) => Val::S(s),
                Val::I(i) => Val::I(*i),
            },
        ));
    }
    TestClient::new(HERALD_PROTOCOL_IMAP, &opts).expect("client")
}

fn list(c: &TestClient) -> Record {
    c.done(c.imap_list("*"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A TLS failure with the certificate `cert` described in its one item.
fn assert_cert_failure(r: &Record, cert: &Path, subject: &str) -> Item {
    assert_eq!(r.status, HERALD_STATUS_TLS, "{r:?}");
    assert_eq!(r.items.len(), 1, "one item with the certificate: {r:?}");
    let it = r.items[0].clone();
    let fp = TestCerts::sha256(cert);
    assert_eq!(it.strs.get(&HERALD_FIELD_CERT_SHA256), Some(&fp), "{r:?}");
    assert!(
        r.detail.contains(&fp),
        "the detail names the fingerprint: {}",
        r.detail
    );
    let subj = it
        .strs
        .get(&HERALD_FIELD_CERT_SUBJECT)
        .cloned()
        .unwrap_or_default();
    assert!(subj.contains(subject), "subject {subj:?}");
    assert!(it.strs.contains_key(&HERALD_FIELD_CERT_ISSUER), "{r:?}");
    let (nb, na) = (
        it.ints.get(&HERALD_FIELD_CERT_NOT_BEFORE).copied().unwrap_or(0),
        it.ints.get(&HERALD_FIELD_CERT_NOT_AFTER).copied().unwrap_or(0),
    );
    assert!(nb > 1_700_000_000 && na > 1_700_000_000, "validity {nb}..{na}");
    it
}

/// Against `openssl s_server`, which speaks no IMAP: past the handshake
/// the greeting never comes (the server closes or stays silent).
fn assert_handshake_passed(r: &Record) {
    assert!(
        r.status == HERALD_STATUS_IO || r.status == HERALD_STATUS_TIMEOUT,
        "the TLS handshake should have passed: {r:?}"
    );
    assert!(r.detail.contains("reading from the IMAP server"), "{r:?}");
}

#[test]
fn self_signed_fails_with_the_certificate_then_its_pin_is_trusted() {
    require_servers();
    let d = Dovecot::start();
    let r = list(&imaps(d.imaps_port, &[]));
    let it = assert_cert_failure(&r, &d.ca_file, "CN=localhost");
    assert_eq!(
        it.strs[&HERALD_FIELD_CERT_SUBJECT], it.strs[&HERALD_FIELD_CERT_ISSUER],
        "self-signed"
    );
    let (nb, na) = (
        it.ints[&HERALD_FIELD_CERT_NOT_BEFORE],
        it.ints[&HERALD_FIELD_CERT_NOT_AFTER],
    );
    assert!(nb <= now() && now() < na && na - nb == 30 * 86_400, "{nb}..{na}");
    // "Trust this certificate?" Yes: retry with its pin.
    let pin = it.strs[&HERALD_FIELD_CERT_SHA256].clone();
    let r = list(&imaps(d.imaps_port, &[(HERALD_OPT_TLS_PIN_SHA256, Val::S(&pin))]));
    assert!(r.ok(), "{r:?}");
    // The public key's pin, upper case with colons, does too.
    let spki = TestCerts::spki_sha256(&d.ca_file).to_ascii_uppercase();
    let colons: Vec<String> = (0..32).map(|i| spki[2 * i..2 * i + 2].to_string()).collect();
    let r = list(&imaps(
        d.imaps_port,
        &[(HERALD_OPT_TLS_PIN_SHA256, Val::S(&colons.join(":")))],
    ));
    assert!(r.ok(), "{r:?}");
    // Over STARTTLS, and POP3 and SMTP, the same.
    let c = TestClient::new(
        HERALD_PROTOCOL_SMTP,
        &[
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(d.submission_port as i64)),
            (HERALD_OPT_USERNAME, Val::S("alice")),
            (HERALD_OPT_PASSWORD, Val::S("alicepass")),
        ],
    )
    .unwrap();
    let op = c
        .send_raw(
            "alice@example.org",
            &["b@example.org"],
            b"Subject: x\r\n\r\nx\r\n",
        )
        .unwrap();
    assert_eq!(c.wait(op, Duration::from_secs(120)), HERALD_STATUS_OK);
    assert_cert_failure(&c.records()[0], &d.ca_file, "CN=localhost");
    let p = TestClient::pop3(
        d.pop3s_port,
        HERALD_SECURITY_IMPLICIT_TLS,
        "alice",
        "alicepass",
        &[],
    );
    let r = p.record_of_op(p.pop3_list().unwrap(), Duration::from_secs(120));
    assert_cert_failure(&r, &d.ca_file, "CN=localhost");
    let p = TestClient::pop3(
        d.pop3_port,
        HERALD_SECURITY_STARTTLS,
        "alice",
        "alicepass",
        &[(HERALD_OPT_TLS_PIN_SHA256, Val::S(&pin))],
    );
    let r = p.record_of_op(p.pop3_list().unwrap(), Duration::from_secs(120));
    assert!(r.ok(), "{r:?}");
}

#[test]
fn a_wrong_pin_fails_even_for_a_trusted_certificate() {
    require_servers();
    let certs = TestCerts::make();
    let d = Dovecot::start_with(&format!(
        "ssl_cert = <{}\nssl_key = <{}\n",
        s(&certs.localhost.0),
        s(&certs.localhost.1)
    ));
    let ca = s(&certs.ca);
    let r = list(&imaps(d.imaps_port, &[(HERALD_OPT_CA_FILE, Val::S(&ca))]));
    assert!(r.ok(), "the CA-signed certificate is trusted with CA_FILE: {r:?}");
    let other = TestCerts::sha256(&certs.self_signed.0);
    let r = list(&imaps(
        d.imaps_port,
        &[
            (HERALD_OPT_CA_FILE, Val::S(&ca)),
            (HERALD_OPT_TLS_PIN_SHA256, Val::S(&other)),
        ],
    ));
    let it = assert_cert_failure(&r, &certs.localhost.0, "CN=localhost");
    assert!(
        it.strs[&HERALD_FIELD_CERT_ISSUER].contains("herald test CA"),
        "{it:?}"
    );
    assert!(r.detail.contains("does not match TLS_PIN_SHA256"), "{}", r.detail);
}

#[test]
fn wrong_host_and_expired_certificates_fail_with_the_certificate() {
    require_servers();
    let certs = TestCerts::make();
    let ca = s(&certs.ca);
    let (cert, key) = &certs.wrong_host;
    let srv = TlsServer::start(cert, key, &[]);
    let r = list(&imaps(srv.port, &[(HERALD_OPT_CA_FILE, Val::S(&ca))]));
    assert_cert_failure(&r, cert, "CN=wrong.example");
    let (cert, key) = &certs.expired;
    let srv = TlsServer::start(cert, key, &[]);
    let r = list(&imaps(srv.port, &[(HERALD_OPT_CA_FILE, Val::S(&ca))]));
    let it = assert_cert_failure(&r, cert, "CN=localhost");
    assert!(it.ints[&HERALD_FIELD_CERT_NOT_AFTER] < now(), "expired: {it:?}");
    // Pinned, the expired certificate is accepted: the handshake passes and
    // the server, which speaks no IMAP, closes the connection or stays silent.
    let pin = TestCerts::sha256(cert);
    let r = list(&imaps(
        srv.port,
        &[
            (HERALD_OPT_TLS_PIN_SHA256, Val::S(&pin)),
            (HERALD_OPT_IO_TIMEOUT_MS, Val::I(1000)),
        ],
    ));
    assert_handshake_passed(&r);
}

#[test]
fn tls_min_version_13_fails_against_a_server_capped_at_12() {
    require_servers();
    let certs = TestCerts::make();
    let ca = s(&certs.ca);
    let (cert, key) = &certs.localhost;
    let srv = TlsServer::start(cert, key, &["-tls1_2"]);
    let r = list(&imaps(
        srv.port,
        &[
            (HERALD_OPT_CA_FILE, Val::S(&ca)),
            (HERALD_OPT_TLS_MIN_VERSION, Val::I(13)),
        ],
    ));
    assert_eq!(r.status, HERALD_STATUS_TLS, "{r:?}");
    assert!(r.items.is_empty(), "not a certificate failure: {r:?}");
    // TLS 1.2 is enough by default: the handshake passes.
    let r = list(&imaps(
        srv.port,
        &[
            (HERALD_OPT_CA_FILE, Val::S(&ca)),
            (HERALD_OPT_IO_TIMEOUT_MS, Val::I(1000)),
        ],
    ));
    assert_handshake_passed(&r);
    let e = TestClient::new(HERALD_PROTOCOL_IMAP, &[(HERALD_OPT_TLS_MIN_VERSION, Val::I(11))]).err();
    assert_eq!(e.map(|e| e.0), Some(HERALD_STATUS_INVALID_ARGUMENT));
}

#[test]
fn a_server_requiring_a_client_certificate_gets_it_as_pem_or_pkcs12() {
    require_servers();
    let certs = TestCerts::make();
    let d = Dovecot::start_with(&format!(
        "ssl_cert = <{}\nssl_key = <{}\nssl_ca = <{}\nssl_verify_client_cert = yes\n\
         ssl_require_crl = no\nauth_ssl_require_client_cert = yes\n",
        s(&certs.localhost.0),
        s(&certs.localhost.1),
        s(&certs.ca)
    ));
    let ca = s(&certs.ca);
    let (cert, key) = (s(&certs.client.0), s(&certs.client.1));
    let r = list(&imaps(
        d.imaps_port,
        &[
            (HERALD_OPT_CA_FILE, Val::S(&ca)),
            (HERALD_OPT_CLIENT_CERT_FILE, Val::S(&cert)),
            (HERALD_OPT_CLIENT_KEY_FILE, Val::S(&key)),
        ],
    ));
    assert!(r.ok(), "{r:?}\n{}", d.log());
    let p12 = s(&certs.client_p12);
    let r = list(&imaps(
        d.imaps_port,
        &[
            (HERALD_OPT_CA_FILE, Val::S(&ca)),
            (HERALD_OPT_CLIENT_CERT_FILE, Val::S(&p12)),
        ],
    ));
    assert!(r.ok(), "{r:?}\n{}", d.log());
    let r = list(&imaps(d.imaps_port, &[(HERALD_OPT_CA_FILE, Val::S(&ca))]));
    assert_eq!(r.status, HERALD_STATUS_AUTH, "no client certificate: {r:?}");
    // A PEM certificate without its key does not make a client.
    let e = TestClient::new(
        HERALD_PROTOCOL_IMAP,
        &[
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_CLIENT_CERT_FILE, Val::S(&cert)),
        ],
    )
    .err();
    assert_eq!(e.map(|e| e.0), Some(HERALD_STATUS_INVALID_ARGUMENT));
}
