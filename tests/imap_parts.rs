//! Parsed messages, more envelope, BODYSTRUCTURE and section fetches
//! against a private Dovecot started here, through the C ABI. Crafted
//! messages are appended (RFC 2047 subject, RFC 2231 filename, nested
//! multipart/mixed + alternative + related with an inline image, a broken
//! multipart), then fetched with HERALD_FETCH_PARSED and _BODYSTRUCTURE,
//! and by section, whole and in ranges, with and without BINARY.

mod api;

use std::ptr::{null, null_mut};

use api::imap::*;
use api::parts::*;
use api::pop3::*;
use api::*;
use herald_testservers::*;

#[test]
fn fetch_parsed_envelope_and_bodystructure_of_crafted_messages() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    check_crafted_fetch(&c);
}

#[test]
fn sections_by_number_are_decoded_and_ranges_count_decoded_bytes() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    let uids = store(&c, "Parts");
    let lines = logged(&c);
    check_sections(&c, uids[0]);
    let lines = lines.0.lock().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("BINARY.PEEK[2]<100.250>")),
        "the server decodes and cuts the range"
    );
    drop(lines);
    herald_client_set_log(c.c, 0, None, null_mut());
}

#[test]
fn without_binary_herald_decodes_and_cuts_the_range_itself() {
    // Dovecot without BINARY in its capabilities: herald's own decoding.
    let d =
        Dovecot::start_with("protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ UIDPLUS IDLE MOVE\n}\n");
    let c = TestClient::imap_plain(d.imap_port, &[]);
    let uids = store(&c, "Parts");
    let lines = logged(&c);
    check_sections(&c, uids[0]);
    let lines = lines.0.lock().unwrap();
    assert!(lines.iter().any(|l| l.contains("BODY.PEEK[2.MIME] BODY.PEEK[2]")));
    assert!(!lines.iter().any(|l| l.contains("BINARY")));
    drop(lines);
    herald_client_set_log(c.c, 0, None, null_mut());
}

#[test]
fn herald_parse_reads_messages_without_a_server_and_saves_attachments() {
    let m = nested_message();
    let mut p = null_mut();
    assert_eq!(herald_parse(m.as_ptr(), m.len(), &mut p), HERALD_STATUS_OK);
    check_nested_parsed(p);
    let dir = std::env::temp_dir().join(format!("herald-parts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("saved.bin");
    let cpath = cs(path.to_str().unwrap());
    assert_eq!(
        herald_parsed_attachment_save(p, 1, cpath.as_ptr()),
        HERALD_STATUS_OK
    );
    assert_eq!(std::fs::read(&path).unwrap(), attachment_bytes());
    let nowhere = cs(dir.join("no/such/dir/x").to_str().unwrap());
    assert_eq!(
        herald_parsed_attachment_save(p, 1, nowhere.as_ptr()),
        HERALD_STATUS_IO
    );
    assert_eq!(
        herald_parsed_attachment_save(p, 2, cpath.as_ptr()),
        HERALD_STATUS_INVALID_ARGUMENT
    );
    herald_parsed_free(p);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pop3_retrieve_parsed_holds_the_parsed_message() {
    let d = Dovecot::start();
    d.append("alice", "INBOX", &nested_message());
    d.append("alice", "INBOX", HTML_ONLY);
    let c = TestClient::pop3(d.pop3_port, HERALD_SECURITY_NONE, "alice", "alicepass", &[]);
    let r = c.done(c.pop3_list());
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.items.len(), 2);
    let uidl = cs(&r.items[0].strs[&HERALD_FIELD_NAME]);
    let got = queued(&c, |op| {
        herald_pop3_retrieve_parsed_async(c.c, uidl.as_ptr(), None, null_mut(), op)
    });
    assert_eq!(got.status(), HERALD_STATUS_OK, "{}", got.detail());
    assert_eq!(got.bytes(0), nested_message(), "the bytes are the raw message");
    check_nested_parsed(herald_result_parsed(got.result(), 0));
    // A plain retrieve holds none.
    let plain = queued(&c, |op| {
        herald_pop3_retrieve_async(c.c, uidl.as_ptr(), None, null_mut(), op)
    });
    assert_eq!(plain.status(), HERALD_STATUS_OK);
    assert!(herald_result_parsed(plain.result(), 0).is_null());
    let mut op = 0;
    let st = herald_pop3_retrieve_parsed_async(c.c, null(), None, null_mut(), &mut op);
    assert_eq!(st, HERALD_STATUS_INVALID_ARGUMENT);
}

/// A scripted IMAP server: logs in, selects, and answers UID FETCH with
/// `fetch(items)` (the response lines before the tagged OK; `None` for a
/// NO [UNKNOWN-CTE]). It records every UID FETCH's items.
fn scripted(
    fetch: fn(&str) -> Option<Vec<u8>>,
) -> (
    herald_testservers::scripted::Scripted,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let server = herald_testservers::scripted::Scripted::start(move |mut p| {
        p.send("* OK [CAPABILITY IMAP4rev1 BINARY] ready\r\n")?;
        loop {
            let line = p.line()?;
            if line.is_empty() {
                return Ok(());
            }
            let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let upper = rest.to_ascii_uppercase();
            let reply = if upper.starts_with("LOGIN") {
                format!("{tag} OK [CAPABILITY IMAP4rev1 BINARY] in\r\n").into_bytes()
            } else if upper.starts_with("CAPABILITY") {
                format!("* CAPABILITY IMAP4rev1 BINARY\r\n{tag} OK\r\n").into_bytes()
            } else if upper.starts_with("SELECT") || upper.starts_with("EXAMINE") {
                format!("* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n{tag} OK [READ-ONLY] selected\r\n")
                    .into_bytes()
            } else if let Some(items) = upper.strip_prefix("UID FETCH ") {
                seen2.lock().unwrap().push(items.to_string());
                match fetch(items) {
                    Some(mut r) => {
                        r.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
                        r
                    }
                    None => format!("{tag} NO [UNKNOWN-CTE] cannot decode\r\n").into_bytes(),
                }
            } else if upper.starts_with("LOGOUT") {
                p.send(format!("* BYE\r\n{tag} OK\r\n"))?;
                return Ok(());
            } else {
                format!("{tag} OK\r\n").into_bytes()
            };
            p.send(reply)?;
        }
    });
    (server, seen)
}

fn scripted_client(port: u16) -> TestClient {
    TestClient::imap_plain(port, &[(HERALD_OPT_IO_TIMEOUT_MS, Val::I(5000))])
}

#[test]
fn an_unknown_cte_falls_back_to_herald_s_decoding_and_literal8_is_read() {
    let (server, seen) = scripted(|items| {
        if items.contains("BINARY.PEEK[2]") {
            return None;
        }
        if items.contains("BINARY.PEEK[3]") {
            // A literal8 (RFC 3516), NULs and all, with its partial's origin.
            return Some(b"* 1 FETCH (UID 5 BINARY[3]<2> ~{4}\r\n\0\x01\r\n)\r\n".to_vec());
        }
        if items.contains("BODY.PEEK[2.MIME]") {
            let mime = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n";
            let mut r = format!("* 1 FETCH (UID 5 BODY[2.MIME] {{{}}}\r\n", mime.len()).into_bytes();
            r.extend_from_slice(mime);
            r.extend_from_slice(b" BODY[2] {14}\r\naGVsbG8g\r\nd29y)\r\n");
            return Some(r);
        }
        Some(Vec::new())
    });
    let c = scripted_client(server.port());
    let r = section(&c, "INBOX", 5, "2", 1, 6);
    assert_eq!(r.status(), HERALD_STATUS_OK, "{}", r.detail());
    // "aGVsbG8gd29y" is "hello wor": bytes 1..7 of the decoded part.
    assert_eq!(r.bytes(0), b"ello w");
    let r = section(&c, "INBOX", 5, "3", 2, 4);
    assert_eq!(r.status(), HERALD_STATUS_OK, "{}", r.detail());
    assert_eq!(r.bytes(0), b"\0\x01\r\n");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0].contains("BINARY.PEEK[2]<1.6>"), "{seen:?}");
    assert!(seen[1].contains("BODY.PEEK[2.MIME] BODY.PEEK[2]"), "{seen:?}");
    assert!(seen[2].contains("BINARY.PEEK[3]<2.4>"), "{seen:?}");
}

#[test]
fn a_hostile_bodystructure_is_a_protocol_error_and_the_next_op_works() {
    let (server, _) = scripted(|items| {
        if items.contains("BODYSTRUCTURE") {
            // Not a list, then too many parts for one message.
            if items.starts_with("1 ") {
                return Some(b"* 1 FETCH (UID 1 BODYSTRUCTURE \"text\")\r\n".to_vec());
            }
            let mut r = b"* 1 FETCH (UID 2 BODYSTRUCTURE (".to_vec();
            for _ in 0..5000 {
                r.extend_from_slice(b"(\"a\" \"b\" NIL NIL NIL \"7bit\" 1 1)");
            }
            r.extend_from_slice(b" \"mixed\"))\r\n");
            return Some(r);
        }
        Some(b"* 1 FETCH (UID 3 FLAGS (\\Seen))\r\n".to_vec())
    });
    let c = scripted_client(server.port());
    let r = fetch(&c, "INBOX", "1", HERALD_FETCH_BODYSTRUCTURE);
    assert_eq!(r.status(), HERALD_STATUS_PROTOCOL, "{}", r.detail());
    assert!(r.detail().contains("BODYSTRUCTURE"), "{}", r.detail());
    // 5000 parts fit herald's node cap (10 000) and the line limit: walked.
    let r = fetch(&c, "INBOX", "2", HERALD_FETCH_BODYSTRUCTURE);
    assert_eq!(r.status(), HERALD_STATUS_OK, "{}", r.detail());
    assert_eq!(herald_result_part_count(r.result(), 0), 5001);
    let r = fetch(&c, "INBOX", "3", HERALD_FETCH_FLAGS);
    assert_eq!(r.status(), HERALD_STATUS_OK, "{}", r.detail());
    assert_eq!(r.str(0, HERALD_FIELD_FLAGS).unwrap(), "\\Seen");
}
