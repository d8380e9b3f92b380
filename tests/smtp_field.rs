//! SMTP against the servers users meet: a private full Postfix smtpd
//! (PIPELINING, CHUNKING, SMTPUTF8, SIZE, STARTTLS, a recipient limit,
//! delivery to a maildir) and Dovecot's submission service (relaying to an
//! smtp-sink). Every test checks that each op completed exactly once and
//! that what the server delivered is exactly what herald reported sent, byte
//! for byte.

mod api;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use api::*;
use support::postfix::{maildir_form, Delivery, Postfix};
use support::*;

const LONG: Duration = Duration::from_secs(120);
const FROM: &str = "sender@example.org";

/// Sends every message (to `rcpts`) and waits for all; returns the ops and
/// their completions, in submission order.
fn send_all(c: &TestClient, rcpts: &[&str], msgs: &[Vec<u8>]) -> Vec<Record> {
    let ops: Vec<u64> = msgs
        .iter()
        .map(|m| c.send_raw(FROM, rcpts, m).expect("accepted"))
        .collect();
    assert_eq!(c.flush(LONG), HERALD_STATUS_OK, "flush");
    let records = c.records();
    assert_exactly_once(&records, &ops);
    ops.iter()
        .map(|op| records.iter().find(|r| r.op == *op).unwrap().clone())
        .collect()
}

/// A plain client (no TLS) of a test server, with at most `conns` connections.
fn client(port: u16, conns: i64) -> TestClient {
    TestClient::smtp_plain(port, &[(HERALD_OPT_MAX_CONNECTIONS, Val::I(conns))])
}

/// Asserts that the maildir holds exactly one copy of each message for
/// `rcpt`, byte for byte, and nothing else.
fn assert_delivered_exactly(pf: &Postfix, rcpt: &str, msgs: &[&[u8]]) {
    let got: Vec<Delivery> = pf
        .settled_deliveries(LONG)
        .into_iter()
        .filter(|d| d.delivered_to == rcpt)
        .collect();
    assert_eq!(got.len(), msgs.len(), "copies delivered to {rcpt}: {got:?}");
    let mut left = got.clone();
    for m in msgs {
        let want = maildir_form(m);
        let i = left.iter().position(|d| d.body == want).unwrap_or_else(|| {
            panic!(
                "no delivery to {rcpt} equals the message starting {:?}",
                String::from_utf8_lossy(&m[..m.len().min(60)])
            )
        });
        left.remove(i);
    }
}

/// The EHLO keywords of a server, read by hand.
fn ehlo_keywords(port: u16) -> Vec<String> {
    let s = TcpStream::connect((HOST, port)).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line}");
    (&s).write_all(b"EHLO client.example\r\n").unwrap();
    let mut words = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        words.push(line[4..].split_whitespace().next().unwrap_or("").to_string());
        if line.as_bytes()[3] == b' ' {
            break;
        }
    }
    (&s).write_all(b"QUIT\r\n").unwrap();
    words
}

#[test]
fn the_private_postfix_offers_what_the_tests_need() {
    let pf = Postfix::start();
    let kw = ehlo_keywords(pf.port);
    for k in [
        "PIPELINING",
        "CHUNKING",
        "SMTPUTF8",
        "SIZE",
        "STARTTLS",
        "8BITMIME",
    ] {
        assert!(kw.iter().any(|w| w == k), "{k} not in {kw:?}");
    }
    let c = client(pf.port, 1);
    let m = raw_message("hello postfix", 2000);
    let r = send_all(&c, &["one@example.org"], std::slice::from_ref(&m));
    assert!(r[0].ok(), "{r:?}");
    assert_delivered_exactly(&pf, "one@example.org", &[&m]);
}
