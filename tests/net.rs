//! Connecting: through real proxies on loopback (microsocks for SOCKS5,
//! tinyproxy for HTTP CONNECT, each with and without a password) to
//! smtp-sink and Dovecot, TLS (implicit and STARTTLS) through the tunnel
//! with the certificate checked against HOST; wrong proxy passwords and
//! refused CONNECTs failing clearly; a cancel ending a connect to an
//! address that never answers at once; the test-account op.

mod api;

use std::time::{Duration, Instant};

use api::*;
use herald_testservers::*;

const LONG: Duration = Duration::from_secs(60);

/// Sends one message through `proxy` to the Dovecot's smtp-sink and
/// checks it arrived; lists INBOX over IMAP with implicit TLS and the
/// maildrop over POP3 with STLS, both with HOST "localhost" (which only
/// the proxy resolves) and the certificate verified against it.
fn every_protocol_through(d: &Dovecot, proxy: &str) {
    let ca = d.ca_file.to_string_lossy().into_owned();
    let before = d.sink.count_dumps();
    let smtp = TestClient::smtp_plain(d.sink.port, &[(HERALD_OPT_PROXY, Val::S(proxy))]);
    let op = smtp
        .send_raw(
            "a@herald.test",
            &["b@herald.test"],
            b"Subject: proxied\r\n\r\nthrough\r\n",
        )
        .unwrap();
    let r = smtp.record_of_op(op, LONG);
    assert!(r.ok(), "SMTP through {proxy}: {r:?}");
    assert_eq!(r.reply_code, 250);
    assert_eq!(d.sink.wait_for_dumps(before + 1, LONG).len(), before + 1);

    let tls = [
        (HERALD_OPT_HOST, Val::S("localhost")),
        (HERALD_OPT_CA_FILE, Val::S(&ca)),
        (HERALD_OPT_PROXY, Val::S(proxy)),
    ];
    // imap_plain sets SECURITY NONE first; implicit TLS overrides it.
    let mut with_tls = vec![(HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_IMPLICIT_TLS))];
    with_tls.extend(tls.iter().map(|(k, v)| (*k, copy(v))));
    let imap = TestClient::imap_plain(d.imaps_port, &with_tls);
    let r = imap.done(imap.imap_list("*"));
    assert!(r.ok(), "IMAP (implicit TLS) through {proxy}: {r:?}");
    assert!(r
        .items
        .iter()
        .any(|i| i.strs.get(&HERALD_FIELD_NAME).map(String::as_str) == Some("INBOX")));

    let pop3 = TestClient::pop3(d.pop3_port, HERALD_SECURITY_STARTTLS, "bob", "bobpass", &tls);
    let op = pop3.pop3_list().unwrap();
    let r = pop3.record_of_op(op, LONG);
    assert!(r.ok(), "POP3 (STLS) through {proxy}: {r:?}");
}

fn copy<'a>(v: &Val<'a>) -> Val<'a> {
    match v {
        Val::S(s) => Val::S(s),
        Val::I(i) => Val::I(*i),
    }
}

/// The first completion of a POP3 list through `proxy`: it must fail.
fn pop3_failure_through(d: &Dovecot, proxy: &str) -> Record {
    let pop3 = TestClient::pop3(
        d.pop3_port,
        HERALD_SECURITY_NONE,
        "bob",
        "bobpass",
        &[(HERALD_OPT_PROXY, Val::S(proxy))],
    );
    let op = pop3.pop3_list().unwrap();
    let r = pop3.record_of_op(op, LONG);
    assert!(!r.ok(), "{r:?}");
    r
}

/// The log lines of a client, at TRACE (every protocol line).
static LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn record_log(_user: *mut std::ffi::c_void, _level: u32, line: *const std::ffi::c_char) {
    let text = std::ffi::CStr::from_ptr(line).to_string_lossy().into_owned();
    LOG.lock().unwrap().push(text);
}

#[test]
fn proxy_credentials_never_reach_the_log() {
    let d = Dovecot::start();
    let locked = Socks5Proxy::start(Some(("proxyuser", "s3cret")));
    let proxy = format!("socks5://proxyuser:s3cret@127.0.0.1:{}", locked.port);
    let pop3 = TestClient::pop3(
        d.pop3_port,
        HERALD_SECURITY_NONE,
        "bob",
        "bobpass",
        &[(HERALD_OPT_PROXY, Val::S(&proxy))],
    );
    assert_eq!(
        herald_client_set_log(pop3.c, HERALD_LOG_TRACE, Some(record_log), std::ptr::null_mut()),
        HERALD_STATUS_OK
    );
    let op = pop3.pop3_list().unwrap();
    assert!(pop3.record_of_op(op, LONG).ok());
    drop(pop3);
    let log = LOG.lock().unwrap().join("\n");
    assert!(
        log.contains(&format!("through the SOCKS5 proxy 127.0.0.1:{}", locked.port)),
        "{log}"
    );
    assert!(log.contains("S: +OK"), "the protocol was traced: {log}");
    assert!(!log.contains("s3cret") && !log.contains("proxyuser"), "{log}");
}

#[test]
fn socks5_proxies_with_and_without_a_password() {
    let d = Dovecot::start();
    let open = Socks5Proxy::start(None);
    every_protocol_through(&d, &format!("socks5://127.0.0.1:{}", open.port));
    let locked = Socks5Proxy::start(Some(("proxyuser", "s3cret")));
    every_protocol_through(
        &d,
        &format!("socks5://proxyuser:s3cret@127.0.0.1:{}", locked.port),
    );

    let r = pop3_failure_through(
        &d,
        &format!("socks5://proxyuser:wrongpass@127.0.0.1:{}", locked.port),
    );
    assert_eq!(r.status, HERALD_STATUS_CONNECT, "{r:?}");
    assert!(r.detail.contains("SOCKS5 proxy 127.0.0.1:"), "{}", r.detail);
    assert!(
        r.detail.contains("rejected the user name or password"),
        "{}",
        r.detail
    );
    assert!(!r.detail.contains("wrongpass"), "{}", r.detail);
    let r = pop3_failure_through(&d, &format!("socks5://127.0.0.1:{}", locked.port));
    assert_eq!(r.status, HERALD_STATUS_CONNECT, "{r:?}");
    assert!(r.detail.contains("requires authentication"), "{}", r.detail);
}

#[test]
fn http_connect_proxies_with_and_without_a_password() {
    let d = Dovecot::start();
    let ports = [d.sink.port, d.imaps_port, d.pop3_port];
    let open = HttpProxy::start(&ports, None);
    every_protocol_through(&d, &format!("http://127.0.0.1:{}", open.port));
    let locked = HttpProxy::start(&ports, Some(("proxyuser", "s3cret")));
    every_protocol_through(&d, &format!("http://proxyuser:s3cret@127.0.0.1:{}", locked.port));

    let r = pop3_failure_through(
        &d,
        &format!("http://proxyuser:wrongpass@127.0.0.1:{}", locked.port),
    );
    assert_eq!(r.status, HERALD_STATUS_CONNECT, "{r:?}");
    assert!(r.detail.contains("HTTP proxy 127.0.0.1:"), "{}", r.detail);
    assert!(
        r.detail.contains("rejected the user name or password (HTTP/1."),
        "{}",
        r.detail
    );
    assert!(!r.detail.contains("wrongpass"), "{}", r.detail);
    // A port the proxy does not CONNECT to: its refusal, in its words.
    let only_smtp = HttpProxy::start(&[d.sink.port], None);
    let r = pop3_failure_through(&d, &format!("http://127.0.0.1:{}", only_smtp.port));
    assert_eq!(r.status, HERALD_STATUS_CONNECT, "{r:?}");
    assert!(
        r.detail.contains("refused: HTTP/1.1 403 Access violation"),
        "{}",
        r.detail
    );
}

#[test]
fn a_dead_proxy_and_bad_proxy_urls() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let proxy = format!("socks5://u:hunter2@127.0.0.1:{port}");
    let c = TestClient::smtp_plain(25, &[(HERALD_OPT_PROXY, Val::S(&proxy))]);
    let op = c
        .send_raw("a@b.test", &["c@d.test"], b"Subject: x\r\n\r\nx\r\n")
        .unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_CONNECT, "{r:?}");
    assert!(
        r.detail.starts_with(&format!("SOCKS5 proxy 127.0.0.1:{port}: ")),
        "{}",
        r.detail
    );
    assert!(r.detail.contains("refused"), "{}", r.detail);
    assert!(!r.detail.contains("hunter2"), "{}", r.detail);

    for bad in ["socks4://h:1", "socks5://h", "http://h:1/x", "http://h:0"] {
        let (s, detail) = options(HERALD_PROTOCOL_IMAP, &[(HERALD_OPT_PROXY, Val::S(bad))]).unwrap_err();
        assert_eq!(s, HERALD_STATUS_INVALID_ARGUMENT, "{bad}");
        assert!(detail.starts_with("PROXY must be"), "{bad}: {detail}");
    }
    let (s, _) = options(HERALD_PROTOCOL_IMAP, &[(HERALD_OPT_KEEPALIVE_S, Val::I(-1))]).unwrap_err();
    assert_eq!(s, HERALD_STATUS_INVALID_ARGUMENT);
}

/// A listener that takes no more connections (a full accept queue:
/// Linux then drops the SYNs), so connecting to it hangs as to a
/// blackholed address; and the connections that fill it.
fn blackhole() -> (socket2::Socket, Vec<std::net::TcpStream>, u16) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fill.push(s),
            Err(_) => break,
        }
    }
    (l, fill, addr.port())
}

#[test]
fn cancel_ends_a_connect_that_hangs_before_its_timeout() {
    let (_hole, _fill, port) = blackhole();
    for protocol in [HERALD_PROTOCOL_SMTP, HERALD_PROTOCOL_IMAP, HERALD_PROTOCOL_POP3] {
        let c = TestClient::new(
            protocol,
            &[
                (HERALD_OPT_HOST, Val::S("127.0.0.1")),
                (HERALD_OPT_PORT, Val::I(port as i64)),
                (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)),
                (HERALD_OPT_USERNAME, Val::S("u")),
                (HERALD_OPT_PASSWORD, Val::S("p")),
                (HERALD_OPT_CONNECT_TIMEOUT_MS, Val::I(30_000)),
            ],
        )
        .unwrap();
        let op = match protocol {
            HERALD_PROTOCOL_SMTP => c.send_raw("a@b.test", &["c@d.test"], b"Subject: x\r\n\r\nx\r\n"),
            HERALD_PROTOCOL_IMAP => c.imap_list("*"),
            _ => c.pop3_list(),
        }
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            c.records().is_empty(),
            "nothing completes while the connect hangs"
        );
        let cancelled_at = Instant::now();
        assert_eq!(c.cancel(op), HERALD_STATUS_OK);
        let r = c.record_of_op(op, LONG);
        // CANCELLED, not TIMEOUT: the cancel ended the connect, not its 30 s timeout.
        assert_eq!(r.status, HERALD_STATUS_CANCELLED, "{r:?}");
        assert!(r.cancelled);
        assert!(cancelled_at.elapsed() < Duration::from_secs(30));
        eprintln!(
            "protocol {protocol}: cancel to completion {:?}",
            cancelled_at.elapsed()
        );
        assert_exactly_once(&c.free(), &[op]);
    }
}

use herald::ffi::account::herald_client_test_async;

/// Runs the test-account op: (record, capabilities, "security/mechanism").
fn test_account(c: &TestClient) -> (Record, Vec<String>, String) {
    let op = c
        .submit(|cb, t, op| herald_client_test_async(c.c, cb, t, op))
        .expect("test accepted");
    let r = c.record_of_op(op, LONG);
    let item = r.items.first().cloned().unwrap_or_default();
    let caps = item
        .strs
        .get(&HERALD_FIELD_CAPABILITIES)
        .cloned()
        .unwrap_or_default();
    let caps = caps
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let security = item.strs.get(&HERALD_FIELD_SECURITY).cloned().unwrap_or_default();
    let security = match item.strs.get(&HERALD_FIELD_AUTH_MECHANISM) {
        Some(m) => format!("{security}/{m}"),
        None => security,
    };
    (r, caps, security)
}

#[test]
fn test_account_reports_capabilities_and_security() {
    let d = Dovecot::start();
    let ca = d.ca_file.to_string_lossy().into_owned();
    let tls = |security: i64| {
        vec![
            (HERALD_OPT_HOST, Val::S("localhost")),
            (HERALD_OPT_CA_FILE, Val::S(&ca)),
            (HERALD_OPT_SECURITY, Val::I(security)),
        ]
    };
    // IMAP, implicit TLS and STARTTLS.
    let imap = TestClient::imap_plain(d.imaps_port, &tls(HERALD_SECURITY_IMPLICIT_TLS));
    let (r, caps, sec) = test_account(&imap);
    assert!(r.ok(), "{r:?}");
    assert_eq!(sec, "TLS (implicit)/PLAIN");
    for cap in ["IMAP4REV1", "IDLE", "UIDPLUS", "MOVE"] {
        assert!(caps.iter().any(|c| c == cap), "{cap} in {caps:?}");
    }
    assert!(r.detail.contains("logged in as alice"), "{}", r.detail);
    let imap = TestClient::imap_plain(d.imap_port, &tls(HERALD_SECURITY_STARTTLS));
    let (r, _, sec) = test_account(&imap);
    assert!(r.ok(), "{r:?}");
    assert_eq!(sec, "STARTTLS/PLAIN");
    // POP3 with STLS: the last CAPA (after login: no STLS, USER or SASL).
    let pop3 = TestClient::pop3(
        d.pop3_port,
        HERALD_SECURITY_STARTTLS,
        "bob",
        "bobpass",
        &tls(HERALD_SECURITY_STARTTLS),
    );
    let (r, caps, sec) = test_account(&pop3);
    assert!(r.ok(), "{r:?}");
    assert_eq!(sec, "STARTTLS/PLAIN");
    for cap in ["TOP", "UIDL", "PIPELINING", "RESP-CODES"] {
        assert!(caps.iter().any(|c| c == cap), "{cap} in {caps:?}");
    }
    // Dovecot's submission: STARTTLS and AUTH.
    let mut o = tls(HERALD_SECURITY_STARTTLS);
    o.extend([
        (HERALD_OPT_PORT, Val::I(d.submission_port as i64)),
        (HERALD_OPT_USERNAME, Val::S("carol")),
        (HERALD_OPT_PASSWORD, Val::S("carolpass")),
    ]);
    let smtp = TestClient::new(HERALD_PROTOCOL_SMTP, &o).unwrap();
    let (r, caps, sec) = test_account(&smtp);
    assert!(r.ok(), "{r:?}");
    assert_eq!(sec, "STARTTLS/PLAIN");
    assert!(caps.iter().any(|c| c == "AUTH=PLAIN,LOGIN"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "PIPELINING"), "{caps:?}");
    assert!(
        !caps.iter().any(|c| c == "STARTTLS"),
        "after STARTTLS it is not offered again: {caps:?}"
    );
    // smtp-sink: no TLS, no login.
    let sink = TestClient::smtp_plain(d.sink.port, &[]);
    let (r, caps, sec) = test_account(&sink);
    assert!(r.ok(), "{r:?}");
    assert_eq!(sec, "none");
    assert!(caps.iter().any(|c| c == "PIPELINING"), "{caps:?}");
    assert!(r.detail.contains("no login"), "{}", r.detail);
    assert_eq!(d.sink.count_dumps(), 0, "the test sends no message");
    // Wrong password: AUTH, with the server's words.
    let bad = TestClient::imap_as(d.imaps_port, "alice", "wrong", &tls(HERALD_SECURITY_IMPLICIT_TLS));
    let (r, _, _) = test_account(&bad);
    assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?}");
    assert!(!r.detail.contains("wrong"), "{}", r.detail);
    // A PICKUP client has nothing to test.
    let dir = std::env::temp_dir();
    let pickup = TestClient::new(
        HERALD_PROTOCOL_PICKUP,
        &[(HERALD_OPT_PICKUP_DIR, Val::S(&dir.to_string_lossy()))],
    )
    .unwrap();
    assert_eq!(
        pickup.submit(|cb, t, op| herald_client_test_async(pickup.c, cb, t, op)),
        Err(HERALD_STATUS_INVALID_ARGUMENT)
    );
}
