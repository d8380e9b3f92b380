//! Authentication against real servers: SASL SCRAM-SHA-256 and SCRAM-SHA-1
//! (Dovecot with SCRAM credentials), OAuth2 tokens that expire (Dovecot's
//! oauth2 passdb asking a local token introspection endpoint) and a new
//! token on a live client, for IMAP (with IDLE's reconnect), POP3 and SMTP.

mod api;

use std::ffi::{c_void, CString};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use api::*;
use herald::ffi::credentials::{herald_client_set_oauth2_token, herald_client_set_oauth2_token_provider};
use herald_testservers::*;

const LONG: Duration = Duration::from_secs(120);

fn client(protocol: u32, port: u16, user: &str, secret: (u32, &str)) -> TestClient {
    TestClient::new(
        protocol,
        &[
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(port as i64)),
            (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)),
            (HERALD_OPT_USERNAME, Val::S(user)),
            (secret.0, Val::S(secret.1)),
        ],
    )
    .expect("client")
}

fn set_token(c: &TestClient, token: &str) -> u32 {
    let t = CString::new(token).unwrap();
    herald_client_set_oauth2_token(c.c, t.as_ptr())
}

/// A passwd-file of SCRAM credentials made by `doveadm pw`.
fn scram_passwd(dir: &Path, users: &[(&str, &str, &str)]) -> String {
    let mut text = String::new();
    for (user, pass, scheme) in users {
        let out = std::process::Command::new(DOVEADM)
            .args(["pw", "-s", scheme, "-p", pass])
            .output()
            .expect("doveadm pw");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        text.push_str(&format!(
            "{user}:{}\n",
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    let path = dir.join("scram-passwd");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Dovecot offering `mechanisms`, with `users`' SCRAM credentials in a
/// second passwd-file.
fn scram_dovecot(certs: &TestCerts, mechanisms: &str, users: &[(&str, &str, &str)]) -> Dovecot {
    let file = scram_passwd(&certs.dir, users);
    Dovecot::start_with(&format!(
        "auth_mechanisms = {mechanisms}\npassdb {{\n  driver = passwd-file\n  args = username_format=%u {file}\n}}\n"
    ))
}

/// One op on each protocol with `user`/`pass`; the trace lines of all three.
fn login_everywhere(d: &Dovecot, user: &str, pass: &str) -> (Vec<Record>, Vec<String>) {
    let log: Log = Mutex::new(Vec::new());
    let mut out = Vec::new();
    let imap = client(
        HERALD_PROTOCOL_IMAP,
        d.imap_port,
        user,
        (HERALD_OPT_PASSWORD, pass),
    );
    trace_into(&imap, &log);
    out.push(imap.done(imap.imap_list("*")));
    let pop = client(
        HERALD_PROTOCOL_POP3,
        d.pop3_port,
        user,
        (HERALD_OPT_PASSWORD, pass),
    );
    trace_into(&pop, &log);
    out.push(pop.record_of_op(pop.pop3_list().unwrap(), LONG));
    let smtp = client(
        HERALD_PROTOCOL_SMTP,
        d.submission_port,
        user,
        (HERALD_OPT_PASSWORD, pass),
    );
    trace_into(&smtp, &log);
    let op = smtp.send_raw(
        &format!("{user}@example.org"),
        &["x@example.org"],
        b"Subject: s\r\n\r\nx\r\n",
    );
    assert_eq!(smtp.wait(op.unwrap(), LONG), HERALD_STATUS_OK);
    out.push(smtp.records().remove(0));
    drop((imap.free(), pop.free(), smtp.free()));
    let lines = log.into_inner().unwrap();
    (out, lines)
}

#[test]
fn scram_sha256_is_chosen_over_plain_and_never_sends_the_password() {
    require_servers();
    let certs = TestCerts::make();
    let d = scram_dovecot(
        &certs,
        "plain login scram-sha-256 scram-sha-1",
        &[("dave", "davepass", "SCRAM-SHA-256")],
    );
    let (records, lines) = login_everywhere(&d, "dave", "davepass");
    for r in &records {
        assert!(r.ok(), "{records:?}\n{}", d.log());
    }
    for cmd in ["AUTHENTICATE SCRAM-SHA-256", "C: AUTH SCRAM-SHA-256 "] {
        assert!(lines.iter().any(|l| l.contains(cmd)), "no {cmd:?} in {lines:#?}");
    }
    assert_eq!(
        lines.iter().filter(|l| l.contains("AUTH SCRAM-SHA-256 ")).count(),
        2,
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("davepass")),
        "the password was logged"
    );
    // A wrong password: AUTH on every protocol.
    let (records, _) = {
        let imap = client(
            HERALD_PROTOCOL_IMAP,
            d.imap_port,
            "dave",
            (HERALD_OPT_PASSWORD, "wrong"),
        );
        let r = imap.done(imap.imap_list("*"));
        (vec![r], ())
    };
    assert_eq!(records[0].status, HERALD_STATUS_AUTH, "{records:?}");
}

#[test]
fn scram_sha1_where_it_is_the_only_mechanism() {
    require_servers();
    let certs = TestCerts::make();
    let d = scram_dovecot(&certs, "scram-sha-1", &[("erin", "erinpass", "SCRAM-SHA-1")]);
    let (records, lines) = login_everywhere(&d, "erin", "erinpass");
    for r in &records {
        assert!(r.ok(), "{records:?}\n{}", d.log());
    }
    assert!(
        lines.iter().any(|l| l.contains("AUTHENTICATE SCRAM-SHA-1")),
        "{lines:#?}"
    );
    let pop = client(
        HERALD_PROTOCOL_POP3,
        d.pop3_port,
        "erin",
        (HERALD_OPT_PASSWORD, "nope"),
    );
    let r = pop.record_of_op(pop.pop3_list().unwrap(), LONG);
    assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?}");
}

/// Dovecot whose oauth2 passdb asks `tokens` (introspection by POST).
fn oauth_dovecot(certs: &TestCerts, tokens: &TokenServer) -> Dovecot {
    let ext = certs.dir.join("dovecot-oauth2.conf.ext");
    std::fs::write(
        &ext,
        format!(
            "introspection_mode = post\nintrospection_url = {}\nusername_attribute = username\n\
             active_attribute = active\nactive_value = true\n",
            tokens.url()
        ),
    )
    .unwrap();
    Dovecot::start_with(&format!(
        "auth_mechanisms = plain login xoauth2 oauthbearer\npassdb {{\n  driver = oauth2\n  \
         mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
        ext.display()
    ))
}

#[test]
fn an_expired_token_fails_auth_and_a_new_one_keeps_the_client_working() {
    require_servers();
    let certs = TestCerts::make();
    let tokens = TokenServer::start();
    let d = oauth_dovecot(&certs, &tokens);
    tokens.issue("olivia", "tok-1", Duration::from_secs(3600));
    let log: Log = Mutex::new(Vec::new());
    let c = client(
        HERALD_PROTOCOL_IMAP,
        d.imap_port,
        "olivia",
        (HERALD_OPT_OAUTH2_TOKEN, "tok-1"),
    );
    trace_into(&c, &log);
    let r = c.done(c.imap_list("*"));
    assert!(r.ok(), "{r:?}\n{}", d.log());
    assert!(tokens.requests() >= 1, "Dovecot asked the introspection endpoint");
    let idle = c.imap_idle("INBOX").unwrap();
    // The hour passes: the token expires. The logged-in connection goes on
    // until the server drops it; then the next login fails AUTH.
    tokens.expire("tok-1");
    d.doveadm(&["kick", "olivia"], b"");
    std::thread::sleep(Duration::from_millis(500));
    let r = c.done(c.imap_list("*"));
    assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?}\n{}", d.log());
    // The server's words, and what it said in OAUTHBEARER's error challenge.
    assert!(r.detail.contains("AUTHENTICATIONFAILED"), "{r:?}");
    assert!(r.detail.contains(r#""status":"invalid_token""#), "{r:?}");
    // A bad token is refused at the call and changes nothing.
    assert_eq!(set_token(&c, "tok\r\nA1 LOGOUT"), HERALD_STATUS_INVALID_ARGUMENT);
    assert_eq!(set_token(&c, ""), HERALD_STATUS_INVALID_ARGUMENT);
    // A new token: the same client works again, IDLE's reconnect included.
    tokens.issue("olivia", "tok-2", Duration::from_secs(3600));
    assert_eq!(set_token(&c, "tok-2"), HERALD_STATUS_OK);
    let r = c.done(c.imap_list("*"));
    assert!(r.ok(), "{r:?}\n{}", d.log());
    let other = client(
        HERALD_PROTOCOL_IMAP,
        d.imap_port,
        "olivia",
        (HERALD_OPT_OAUTH2_TOKEN, "tok-2"),
    );
    let r = other.done(other.imap_append("INBOX", &[b"Subject: after the new token\r\n\r\nx\r\n"], None));
    assert!(r.ok(), "{r:?}");
    other.free();
    let seen = c.wait_change(idle, 1, Duration::from_secs(30));
    assert!(seen.contains(&1), "IDLE reported {seen:?}\n{}", d.log());
    assert_eq!(c.cancel(idle), HERALD_STATUS_OK);
    c.free();
    let lines = log.into_inner().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("AUTHENTICATE OAUTHBEARER")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("tok-1") || l.contains("tok-2")),
        "a token was logged"
    );
}

#[test]
fn tokens_on_pop3_and_smtp_and_their_renewal() {
    require_servers();
    let certs = TestCerts::make();
    let tokens = TokenServer::start();
    let d = oauth_dovecot(&certs, &tokens);
    tokens.issue("olivia", "p-1", Duration::from_secs(3600));
    let pop = client(
        HERALD_PROTOCOL_POP3,
        d.pop3_port,
        "olivia",
        (HERALD_OPT_OAUTH2_TOKEN, "p-1"),
    );
    let r = pop.record_of_op(pop.pop3_list().unwrap(), LONG);
    assert!(r.ok(), "{r:?}\n{}", d.log());
    tokens.expire("p-1");
    let r = pop.record_of_op(pop.pop3_list().unwrap(), LONG);
    assert_eq!(r.status, HERALD_STATUS_AUTH, "POP3 logs in per op: {r:?}");
    assert!(r.detail.contains("invalid_token"), "{r:?}");
    tokens.issue("olivia", "p-2", Duration::from_secs(3600));
    assert_eq!(set_token(&pop, "p-2"), HERALD_STATUS_OK);
    let r = pop.record_of_op(pop.pop3_list().unwrap(), LONG);
    assert!(r.ok(), "{r:?}\n{}", d.log());

    let smtp = client(
        HERALD_PROTOCOL_SMTP,
        d.submission_port,
        "olivia",
        (HERALD_OPT_OAUTH2_TOKEN, "p-1"),
    );
    let op = smtp.send_raw(
        "olivia@example.org",
        &["x@example.org"],
        b"Subject: t\r\n\r\nx\r\n",
    );
    assert_eq!(smtp.wait(op.unwrap(), LONG), HERALD_STATUS_OK);
    let r = smtp.records().remove(0);
    assert_eq!((r.status, r.reply_code / 100), (HERALD_STATUS_AUTH, 5), "{r:?}");
    assert!(r.detail.contains("invalid_token"), "{r:?}");
    assert_eq!(set_token(&smtp, "p-2"), HERALD_STATUS_OK);
    let op = smtp.send_raw(
        "olivia@example.org",
        &["x@example.org"],
        b"Subject: t\r\n\r\nx\r\n",
    );
    assert_eq!(smtp.wait(op.unwrap(), LONG), HERALD_STATUS_OK);
    let r = smtp.records().remove(1);
    assert!(r.ok(), "{r:?}\n{}", d.log());
    assert_eq!(d.sink.wait_for_dumps(1, LONG).len(), 1);
}

/// What the token provider of the test below works with.
struct Provider {
    tokens: *const TokenServer,
    issued: Mutex<Vec<String>>,
    fail: std::sync::atomic::AtomicBool,
}

/// A token provider as a program would write one: a fresh token, handed
/// over with herald_client_set_oauth2_token.
unsafe extern "C" fn provide(c: *mut herald_client, user: *mut c_void) -> u32 {
    let p = &*(user as *const Provider);
    if p.fail.load(std::sync::atomic::Ordering::SeqCst) {
        return HERALD_STATUS_AUTH;
    }
    let mut issued = p.issued.lock().unwrap();
    let token = format!("gen-{}", issued.len());
    (*p.tokens).issue("olivia", &token, Duration::from_secs(3600));
    issued.push(token.clone());
    let t = CString::new(token).unwrap();
    herald_client_set_oauth2_token(c, t.as_ptr())
}

#[test]
fn a_token_provider_is_asked_before_each_login() {
    require_servers();
    let certs = TestCerts::make();
    let tokens = TokenServer::start();
    let d = oauth_dovecot(&certs, &tokens);
    let p = Provider {
        tokens: &tokens,
        issued: Mutex::new(Vec::new()),
        fail: false.into(),
    };
    // No token in the options: the provider gives the first one too.
    let c = TestClient::new(
        HERALD_PROTOCOL_IMAP,
        &[
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(d.imap_port as i64)),
            (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)),
            (HERALD_OPT_USERNAME, Val::S("olivia")),
        ],
    )
    .unwrap();
    let user = &p as *const Provider as *mut c_void;
    assert_eq!(
        herald_client_set_oauth2_token_provider(c.c, Some(provide), user),
        0
    );
    let r = c.done(c.imap_list("*"));
    assert!(r.ok(), "{r:?}\n{}", d.log());
    // Each token is used once: expired after its login, and the next
    // connection still logs in, with the provider's next token.
    tokens.expire("gen-0");
    d.doveadm(&["kick", "olivia"], b"");
    std::thread::sleep(Duration::from_millis(500));
    let r = c.done(c.imap_list("*"));
    assert!(r.ok(), "{r:?}\n{}", d.log());
    assert_eq!(*p.issued.lock().unwrap(), ["gen-0", "gen-1"]);
    // A provider that fails: the login is not attempted, the op is AUTH.
    p.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    d.doveadm(&["kick", "olivia"], b"");
    std::thread::sleep(Duration::from_millis(500));
    let r = c.done(c.imap_list("*"));
    assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?}");
    assert!(r.detail.contains("token provider"), "{r:?}");
    c.free();
}
