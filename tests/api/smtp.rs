//! What the SMTP tests against full servers (Postfix, Exim) share.

use std::time::Duration;

use herald_testservers::postfix::{maildir_form, Delivery};

use super::*;

/// How long a batch may take to send.
const LONG: Duration = Duration::from_secs(120);

/// The envelope sender of these tests' messages.
pub const FROM: &str = "alice@example.org";

/// Sends every message (to `rcpts`) and waits for all; returns the
/// completions in submission order.
pub fn send_all(c: &TestClient, rcpts: &[&str], msgs: &[Vec<u8>]) -> Vec<Record> {
    let before = c.records().len();
    let ops: Vec<u64> = msgs
        .iter()
        .map(|m| c.send_raw(FROM, rcpts, m).expect("accepted"))
        .collect();
    assert_eq!(c.flush(LONG), HERALD_STATUS_OK, "flush");
    let records = c.records().split_off(before);
    assert_exactly_once(&records, &ops);
    ops.iter()
        .map(|op| records.iter().find(|r| r.op == *op).unwrap().clone())
        .collect()
}

/// A plain client (no TLS) of a test server, with at most `conns` connections.
pub fn client(port: u16, conns: i64) -> TestClient {
    TestClient::smtp_plain(port, &[(HERALD_OPT_MAX_CONNECTIONS, Val::I(conns))])
}

/// Of the server's deliveries `got`, those to `rcpt` are exactly one copy
/// of each message, byte for byte, and nothing else.
pub fn assert_delivered_exactly(got: Vec<Delivery>, rcpt: &str, msgs: &[&[u8]]) {
    let got: Vec<Delivery> = got.into_iter().filter(|d| d.delivered_to == rcpt).collect();
    assert_eq!(got.len(), msgs.len(), "copies delivered to {rcpt}: {got:?}");
    let mut left = got;
    for m in msgs {
        let want = maildir_form(m);
        let i = left.iter().position(|d| d.body == want).unwrap_or_else(|| {
            panic!(
                "no delivery to {rcpt} equals the message starting {:?}; got {left:?}",
                String::from_utf8_lossy(&m[..m.len().min(60)])
            )
        });
        left.remove(i);
    }
}

/// 50 bytes with one bare LF: only BDAT carries it unchanged.
pub fn bare_lf_message() -> Vec<u8> {
    let mut m = b"Subject: bare LF\r\n\r\none bare\nLF in here\r\n".to_vec();
    while m.len() < 50 {
        m.insert(m.len() - 2, b'.');
    }
    m
}

/// Messages of every kind: small and large, text and 8-bit, one with a
/// bare LF, one with dots at line starts, one without a final newline.
pub fn mixed_messages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let subject = format!("mixed {i}");
            match i % 7 {
                0 => raw_message(&subject, 300),
                1 => raw_message(&subject, 10 * 1024),
                2 => raw_message(&subject, 70 * 1024),
                3 => {
                    let mut m = raw_message(&subject, 150 * 1024);
                    m.extend_from_slice(b".\r\n..\r\n.leading dot\r\n");
                    m
                }
                4 => format!("Subject: {subject}\r\n\r\none bare\nLF, then caf\u{e9}\r\n").into_bytes(),
                5 => format!("Subject: {subject}\r\n\r\ncaf\u{e9} \u{2603}\r\n.\r\n").into_bytes(),
                _ => format!("Subject: {subject}\r\n\r\nno final newline").into_bytes(),
            }
        })
        .collect()
}

/// The protocol lines a client logged at TRACE (`trace_into`) after
/// EHLO's reply: ("C" or "S", text).
pub fn exchange(log: &Log) -> Vec<(String, String)> {
    let lines = log.lock().unwrap().clone();
    let mut out: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| {
            let (who, text) = l.split_once(": ")?;
            matches!(who, "C" | "S").then(|| (who.to_string(), text.to_string()))
        })
        .collect();
    let start = out
        .iter()
        .rposition(|(w, t)| w == "C" && t.starts_with("EHLO"))
        .unwrap()
        + 2;
    out.drain(..start);
    out
}
