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
const FROM: &str = "alice@example.org";

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

/// A 10 KB plain message, then `second`, on one connection: the first goes
/// by DATA, the second by BDAT with its envelope pipelined behind the dot.
fn bdat_behind_data(port: u16, second: Vec<u8>) -> (Vec<Vec<u8>>, Vec<Record>) {
    let c = client(port, 1);
    let msgs = vec![raw_message("first, by DATA", 10 * 1024), second];
    let records = send_all(&c, &["rcpt@example.org"], &msgs);
    (msgs, records)
}

/// 50 bytes with one bare LF: only BDAT carries it unchanged.
fn bare_lf_message() -> Vec<u8> {
    let mut m = b"Subject: bare LF\r\n\r\none bare\nLF in here\r\n".to_vec();
    while m.len() < 50 {
        m.insert(m.len() - 2, b'.');
    }
    m
}

#[test]
fn a_bdat_message_queued_behind_a_data_message_is_sent_postfix() {
    let pf = Postfix::start();
    for second in [raw_message("second, 70 KB by BDAT", 70 * 1024), bare_lf_message()] {
        pf.clear_deliveries();
        let (msgs, records) = bdat_behind_data(pf.port, second);
        for r in &records {
            assert!(r.ok(), "{records:?}");
            assert_eq!(r.reply_code, 250);
        }
        assert_delivered_exactly(&pf, "rcpt@example.org", &[&msgs[0], &msgs[1]]);
    }
}

/// Dovecot's submission relays to an smtp-sink: its dumps drop every CR.
#[test]
fn a_bdat_message_queued_behind_a_data_message_is_sent_dovecot() {
    let d = Dovecot::start();
    for second in [raw_message("second, 70 KB by BDAT", 70 * 1024), bare_lf_message()] {
        d.sink.clear_dumps();
        let c = submission_client(&d);
        let msgs = vec![raw_message("first, by DATA", 10 * 1024), second];
        let records = send_all(&c, &["rcpt@example.org"], &msgs);
        assert!(records.iter().all(Record::ok), "{records:?}\n{}", d.log());
        let dumps = d.sink.wait_for_dumps(2, LONG);
        assert_eq!(dumps.len(), 2);
        for m in &msgs {
            let want = sink_form(m);
            assert!(
                dumps.iter().any(|x| x.body.ends_with(&want)),
                "relayed message differs"
            );
        }
    }
}

/// A client of Dovecot's submission service, as alice, over STARTTLS, one connection.
fn submission_client(d: &Dovecot) -> TestClient {
    let ca = d.ca_file.to_string_lossy().into_owned();
    TestClient::new(
        HERALD_PROTOCOL_SMTP,
        &[
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(d.submission_port as i64)),
            (HERALD_OPT_USERNAME, Val::S("alice")),
            (HERALD_OPT_PASSWORD, Val::S("alicepass")),
            (HERALD_OPT_CA_FILE, Val::S(&ca)),
            (HERALD_OPT_MAX_CONNECTIONS, Val::I(1)),
        ],
    )
    .expect("client")
}
