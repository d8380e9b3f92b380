//! IMAP against a private Dovecot started here, through the C ABI. Where
//! the issue asks for an independent check, Python's imaplib is the second
//! client. Every test checks that each op completed exactly once.

mod api;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::imap::*;
use api::*;
use herald_testservers::*;

/// The hidden IMAP option that sets how often IDLE is renewed, in ms (not in the C API; see src/ffi/options.rs).
const IDLE_RENEW_MS_FOR_TESTS: u32 = 0x7fff_0001;
const LONG: Duration = Duration::from_secs(120);

/// Runs a Python script with imaplib logged in as alice on the plain port
/// (`m`); returns what it printed. The script sees `m` and `sys`.
fn py(d: &Dovecot, body: &str) -> String {
    py_as(d, "alice", "alicepass", body)
}

fn py_as(d: &Dovecot, user: &str, pass: &str, body: &str) -> String {
    let script = format!(
        "import imaplib, sys\nm = imaplib.IMAP4('127.0.0.1', {})\nm.login('{user}', '{pass}')\n{body}\nm.logout()\n",
        d.imap_port
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How many messages `mailbox` holds, as imaplib sees it.
fn py_count(d: &Dovecot, mailbox: &str) -> usize {
    py(
        d,
        &format!("typ, data = m.select('\"{mailbox}\"', readonly=True)\nprint(int(data[0]))"),
    )
    .parse()
    .unwrap()
}

/// A message of about `size` bytes with CRLF line ends.
fn message(subject: &str, size: usize) -> Vec<u8> {
    raw_message(subject, size)
}

/// The mixed corpus of the round trip.
fn corpus() -> Vec<Vec<u8>> {
    let multipart = b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: multipart\r\n\
Message-ID: <multi@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--b1--\r\n"
        .to_vec();
    let eight_bit: Vec<u8> =
        "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\u{e9} \u{2603} \u{1F600}\r\n"
            .bytes()
            .chain([0xff, 0xfe, b'\r', b'\n'])
            .collect();
    let dots = b"Subject: dots\r\n\r\n.\r\n..\r\n.hidden\r\nmid.dle\r\n. space\r\n".to_vec();
    let no_final_crlf = b"Subject: no final newline\r\n\r\nlast line without CRLF".to_vec();
    let mut big = message("five megabytes", 5 * 1024 * 1024);
    big.extend_from_slice(b"{5}\r\n)\r\n* 1 FETCH (UID 1)\r\nh9 OK end\r\n");
    vec![multipart, eight_bit, dots, no_final_crlf, big]
}

#[test]
fn round_trip_of_a_mixed_corpus_is_byte_exact() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    assert!(c.done(c.imap_create("Corpus")).ok());
    let msgs = corpus();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let r = c.done(c.imap_append("Corpus", &refs, None));
    assert!(r.ok(), "{r:?}");
    let appended = uids(&r);
    assert_eq!(appended.len(), msgs.len());
    assert!(
        appended.iter().all(|&u| u > 0),
        "UIDPLUS gives every UID: {appended:?}"
    );

    let r = c.done(c.imap_search("Corpus", "ALL"));
    assert_eq!(uids(&r), appended);
    let r = c.done(c.imap_search("Corpus", "SUBJECT \"dots\""));
    assert_eq!(uids(&r), [appended[2]]);

    let r = c.done(c.imap_fetch(
        "Corpus",
        "1:*",
        HERALD_FETCH_BODY | HERALD_FETCH_FLAGS | HERALD_FETCH_SIZE | HERALD_FETCH_ENVELOPE,
    ));
    assert!(r.ok(), "{r:?}");
    assert_eq!(uids(&r), appended, "one item per message, in UID order");
    for (item, m) in r.items.iter().zip(&msgs) {
        assert!(
            item.bytes.as_deref() == Some(m.as_slice()),
            "fetched bytes differ (uid {})",
            item.uid
        );
        assert_eq!(item.ints[&HERALD_FIELD_SIZE], m.len() as u64);
        assert!(
            !item.strs[&HERALD_FIELD_FLAGS].contains("\\Seen"),
            "BODY.PEEK never sets \\Seen"
        );
    }
    let multi = &r.items[0];
    assert_eq!(multi.strs[&HERALD_FIELD_SUBJECT], "multipart");
    assert_eq!(multi.strs[&HERALD_FIELD_FROM], "Alice <alice@example.org>");
    assert_eq!(multi.strs[&HERALD_FIELD_TO], "Bob <bob@example.org>");
    assert_eq!(multi.strs[&HERALD_FIELD_MESSAGE_ID], "<multi@example.org>");
    assert_eq!(multi.strs[&HERALD_FIELD_DATE], "Mon, 1 Jan 2024 10:00:00 +0000");

    // Headers only: the header block, blank line included.
    let r = c.done(c.imap_fetch("Corpus", &appended[0].to_string(), HERALD_FETCH_HEADERS));
    let head_end = msgs[0].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(r.items[0].bytes.as_deref(), Some(&msgs[0][..head_end]));

    // Encoded words in the envelope come decoded.
    let m =
        b"From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n\r\nx\r\n";
    let r = c.done(c.imap_append("INBOX", &[m], None));
    let r = c.done(c.imap_fetch("INBOX", &r.items[0].uid.to_string(), HERALD_FETCH_ENVELOPE));
    assert_eq!(r.items[0].strs[&HERALD_FIELD_SUBJECT], "Gr\u{fc}\u{df}e");
    assert_eq!(r.items[0].strs[&HERALD_FIELD_FROM], "J\u{fc}rgen <j@example.org>");

    // The second client agrees: 5 messages, none \Seen.
    let out = py(
        &d,
        "m.select('Corpus', readonly=True)\ntyp, data = m.search(None, 'UNSEEN')\nprint(len(data[0].split()))",
    );
    assert_eq!(out, "5");
    let records = c.free();
    assert!(records.iter().all(|r| r.ok()), "{records:?}");
}

#[test]
fn flags_copy_move_and_expunge_are_seen_by_another_client() {
    for with_move in [true, false] {
        // Without MOVE in the capabilities herald copies, flags \Deleted and
        // UID EXPUNGEs; without LITERAL+ and MULTIAPPEND each literal waits for
        // "+"; without ESEARCH the search results come as a list.
        let d = if with_move {
            Dovecot::start()
        } else {
            Dovecot::start_with(
                "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UIDPLUS\n",
            )
        };
        // Declared before the client: it must outlive it.
        let log: Log = Mutex::new(Vec::new());
        let c = TestClient::imap_plain(d.imap_port, &[]);
        trace_into(&c, &log);
        assert!(c.done(c.imap_create("Archive")).ok());
        let msgs: Vec<Vec<u8>> = (0..4).map(|i| message(&format!("m{i}"), 500)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let r = c.done(c.imap_append("INBOX", &refs, Some("\\Seen")));
        let u = uids(&r);
        assert_eq!(u.len(), 4, "{r:?}");

        assert!(c
            .done(c.imap_store("INBOX", &u[0].to_string(), 1, "\\Flagged $Work"))
            .ok());
        assert!(c
            .done(c.imap_store("INBOX", &u[1].to_string(), -1, "\\Seen"))
            .ok());
        assert!(c
            .done(c.imap_store("INBOX", &u[2].to_string(), 0, "\\Answered"))
            .ok());
        let flags = py(
            &d,
            "m.select('INBOX', readonly=True)\ntyp, data = m.uid('FETCH', '1:*', '(FLAGS)')\nprint(' | '.join(x.decode() for x in data))",
        );
        let per: Vec<&str> = flags.split(" | ").collect();
        assert!(
            per[0].contains("\\Flagged") && per[0].contains("$Work") && per[0].contains("\\Seen"),
            "{flags}"
        );
        assert!(!per[1].contains("\\Seen"), "{flags}");
        assert!(
            per[2].contains("\\Answered") && !per[2].contains("\\Seen"),
            "{flags}"
        );

        assert!(c.done(c.imap_copy("INBOX", &u[0].to_string(), "Archive")).ok());
        let r = c.done(c.imap_move("INBOX", &u[1].to_string(), "Archive"));
        assert!(r.ok(), "{r:?}");
        assert!(c
            .done(c.imap_store("INBOX", &u[3].to_string(), 1, "\\Deleted"))
            .ok());
        assert!(c.done(c.imap_expunge("INBOX")).ok());

        assert_eq!(
            py_count(&d, "INBOX"),
            2,
            "moved and expunged ones are gone (MOVE offered: {with_move})"
        );
        assert_eq!(py_count(&d, "Archive"), 2);
        let subjects = py(
            &d,
            "m.select('INBOX', readonly=True)\ntyp, data = m.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')\nprint(b''.join(x[1] for x in data if isinstance(x, tuple)).decode())",
        );
        assert!(subjects.contains("m0") && subjects.contains("m2"), "{subjects}");
        // herald's own view after another client's changes.
        let r = c.done(c.imap_search("INBOX", "ALL"));
        assert_eq!(uids(&r), [u[0], u[2]]);
        let r = c.done(c.imap_search("Archive", "FLAGGED"));
        assert_eq!(r.items.len(), 1);
        // Non-ASCII search text goes as a literal (synchronizing without LITERAL+).
        let r = c.done(c.imap_search("INBOX", "NOT SUBJECT \"caf\u{e9}\""));
        assert_eq!(uids(&r), [u[0], u[2]], "{r:?}");
        let log = log.lock().unwrap().join("\n");
        // Dovecot offers ESEARCH unless the capabilities are cut down: the
        // UIDs then come as a compact set; else as a list.
        assert_eq!(
            log.contains("UID SEARCH RETURN (ALL)"),
            with_move,
            "ESEARCH when offered"
        );
        assert_eq!(log.contains("S: * ESEARCH"), with_move);
        let appends: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("APPEND \"INBOX\" (\\Seen) {"))
            .collect();
        if with_move {
            assert!(appends.iter().any(|l| l.ends_with("+}")), "LITERAL+: {appends:?}");
            assert!(
                log.contains("C:  (\\Seen) {"),
                "MULTIAPPEND: the next message in the same command"
            );
        } else {
            assert!(
                appends.iter().all(|l| !l.ends_with("+}")),
                "synchronizing literals: {appends:?}"
            );
            assert!(
                log.contains("UID COPY") && log.contains("UID EXPUNGE"),
                "MOVE by hand"
            );
        }
        let records = c.free();
        assert!(records.iter().all(|r| r.ok()), "{records:?}");
    }
}

#[test]
fn mailboxes_list_create_delete_and_utf8_names() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    for name in [
        "Projekte/Entw\u{fc}rfe",
        "Tom & Jerry",
        "\u{65e5}\u{672c}\u{8a9e}",
    ] {
        let r = c.done(c.imap_create(name));
        assert!(r.ok(), "{name}: {r:?}");
    }
    let r = c.done(c.imap_list("*"));
    let names: HashSet<String> = r
        .items
        .iter()
        .map(|i| i.strs[&HERALD_FIELD_NAME].clone())
        .collect();
    for name in [
        "INBOX",
        "Projekte",
        "Projekte/Entw\u{fc}rfe",
        "Tom & Jerry",
        "\u{65e5}\u{672c}\u{8a9e}",
    ] {
        assert!(names.contains(name), "{name} not in {names:?}");
    }
    let inbox = r
        .items
        .iter()
        .find(|i| i.strs[&HERALD_FIELD_NAME] == "INBOX")
        .unwrap();
    assert!(
        inbox.strs[&HERALD_FIELD_FLAGS].contains("\\HasNoChildren"),
        "{inbox:?}"
    );
    // The wire form is modified UTF-7, as imaplib sees it.
    let listed = py(&d, "print(m.list()[1])");
    assert!(
        listed.contains("Entw&APw-rfe") && listed.contains("Tom &- Jerry"),
        "{listed}"
    );
    let r = c.done(c.imap_list("Projekte/%"));
    assert_eq!(r.items.len(), 1);
    assert!(c.done(c.imap_delete("Tom & Jerry")).ok());
    let r = c.done(c.imap_list("Tom*"));
    assert_eq!(r.items.len(), 0);
    // Unknown mailboxes: NOT_FOUND.
    for r in [
        c.done(c.imap_search("Nowhere", "ALL")),
        c.done(c.imap_fetch("Nowhere", "1:*", HERALD_FETCH_FLAGS)),
        c.done(c.imap_append("Nowhere", &[b"Subject: x\r\n\r\nx\r\n"], None)),
        c.done(c.imap_delete("Nowhere")),
    ] {
        assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
        assert_eq!(r.reply_code, 0);
    }
    // A refusal that is not about a missing mailbox: REJECTED, with the server's text.
    let r = c.done(c.imap_create("INBOX"));
    assert_eq!(r.status, HERALD_STATUS_REJECTED, "{r:?}");
    assert!(!r.detail.is_empty());
}

#[test]
fn concurrent_threads_never_mix_mailboxes_or_exceed_the_cap() {
    let d = Dovecot::start();
    let boxes: Vec<String> = (0..6).map(|i| format!("box{i}")).collect();
    for b in &boxes {
        d.create_mailbox("alice", b);
        for j in 0..3 {
            d.append("alice", b, &message(&format!("{b} message {j}"), 2000));
        }
    }
    let c = Arc::new(TestClient::imap_plain(
        d.imap_port,
        &[(HERALD_OPT_MAX_CONNECTIONS, Val::I(3))],
    ));
    let done = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, max_seen, port) = (done.clone(), max_seen.clone(), d.imap_port);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                max_seen.fetch_max(established_connections(port), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let ops = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (c, boxes, ops) = (c.clone(), boxes.clone(), ops.clone());
            std::thread::spawn(move || {
                for k in 0..12 {
                    let b = &boxes[(t * 7 + k * 5) % boxes.len()];
                    let op = c
                        .imap_fetch(b, "1:*", HERALD_FETCH_BODY | HERALD_FETCH_ENVELOPE)
                        .unwrap();
                    ops.lock().unwrap().push((op, b.clone()));
                    if k % 3 == 0 {
                        let r = c.result(op);
                        assert!(r.ok(), "{r:?}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.flush(LONG), HERALD_STATUS_OK);
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let records = c.records();
    let ops = ops.lock().unwrap().clone();
    assert_exactly_once(&records, &ops.iter().map(|(o, _)| *o).collect::<Vec<_>>());
    for (op, b) in &ops {
        let r = records.iter().find(|r| r.op == *op).unwrap();
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.items.len(), 3, "{b}");
        for it in &r.items {
            let subject = &it.strs[&HERALD_FIELD_SUBJECT];
            assert!(subject.starts_with(&format!("{b} message")), "{b} got {subject}");
            let body = String::from_utf8_lossy(it.bytes.as_deref().unwrap()).into_owned();
            assert!(
                body.contains(&format!("Subject: {b} message")),
                "op {op} for {b} got another mailbox's mail"
            );
        }
    }
    let max = max_seen.load(Ordering::Relaxed);
    assert!(max <= 3, "saw {max} connections with MAX_CONNECTIONS 3");
    assert!(
        max >= 2,
        "8 threads should use more than one connection (saw {max})"
    );
}

/// Cancels op `CANCEL_OP` of client `CANCEL_CLIENT` once a third of its bytes went out.
static CANCEL_AT: Mutex<Option<(usize, u64)>> = Mutex::new(None);
unsafe extern "C" fn cancel_at_a_third(op: u64, token: *mut std::ffi::c_void, done: u64, total: u64) {
    let target = *CANCEL_AT.lock().unwrap();
    if let Some((client, target_op)) = target {
        if op == target_op && done * 3 >= total && token as usize != 0 {
            *CANCEL_AT.lock().unwrap() = None;
            herald_cancel(client as *mut herald_client, op);
        }
    }
}

#[test]
fn cancel_of_a_3000_message_append_keeps_exact_uids() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    assert!(c.done(c.imap_create("Bulk")).ok());
    let msgs: Vec<Vec<u8>> = (0..3000).map(|i| message(&format!("bulk {i}"), 1500)).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    assert_eq!(
        herald_client_set_progress(c.c, Some(cancel_at_a_third)),
        HERALD_STATUS_OK
    );
    // Armed before the op can start: the op id is the client's next one.
    *CANCEL_AT.lock().unwrap() = Some((c.c as usize, 2));
    let op = c.imap_append("Bulk", &refs, None).unwrap();
    assert_eq!(op, 2);
    let r = c.result(op);
    assert!(r.cancelled && r.status == HERALD_STATUS_CANCELLED, "{r:?}");
    let got = uids(&r);
    assert!(
        !got.is_empty() && got.len() < 3000,
        "cancelled after {} messages",
        got.len()
    );
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "distinct UIDs"
    );
    assert_eq!(
        py_count(&d, "Bulk"),
        got.len(),
        "the result lists exactly what the mailbox gained"
    );
    // herald agrees, and the connection is still usable.
    let r = c.done(c.imap_search("Bulk", "ALL"));
    assert_eq!(uids(&r), got);
}

#[test]
fn idle_sees_mail_from_another_client_and_shares_the_only_connection() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(
        d.imap_port,
        &[
            (HERALD_OPT_MAX_CONNECTIONS, Val::I(1)),
            // IDLE renewed every second (not every 25 minutes), for this client only.
            (IDLE_RENEW_MS_FOR_TESTS, Val::I(1000)),
        ],
    );
    let idle = c.imap_idle("INBOX").unwrap();
    // Other ops still run: the IDLE lends its connection.
    let r = c.done(c.imap_append("INBOX", &[&message("first", 300)], None));
    assert!(r.ok(), "{r:?}");
    let seen = c.wait_change(idle, 1, Duration::from_secs(20));
    assert!(seen.contains(&1), "IDLE reported {seen:?}");
    // Mail delivered by another client.
    py(
        &d,
        "m.append('INBOX', None, None, b'Subject: from imaplib\\r\\n\\r\\nhi\\r\\n')",
    );
    let seen = c.wait_change(idle, 2, Duration::from_secs(20));
    assert!(seen.contains(&2), "IDLE reported {seen:?}");
    // Renewed (every second here) and still watching; never a second connection.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(established_connections(d.imap_port), 1);
    let r = c.done(c.imap_search("INBOX", "ALL"));
    assert_eq!(r.items.len(), 2);
    // The server drops the connection: herald reconnects and keeps watching.
    d.doveadm(&["kick", "alice"], b"");
    std::thread::sleep(Duration::from_millis(500));
    d.append("alice", "INBOX", b"Subject: after the kick\r\n\r\nx\r\n");
    let seen = c.wait_change(idle, 3, Duration::from_secs(20));
    assert!(seen.contains(&3), "IDLE reported {seen:?}");
    assert_eq!(
        herald_client_flush(c.c, 10_000),
        HERALD_STATUS_OK,
        "flush does not wait for IDLE"
    );
    assert_eq!(c.cancel(idle), HERALD_STATUS_OK);
    let r = c.result(idle);
    assert!(r.cancelled, "{r:?}");
    let finals = c.free();
    let ops: HashSet<u64> = finals.iter().map(|r| r.op).collect();
    assert_eq!(ops.len(), finals.len(), "one completion per op");
}

#[test]
fn idle_on_a_missing_mailbox_completes_with_not_found() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    let r = c.done(c.imap_idle("Nowhere"));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
}

#[test]
fn injection_and_bad_input_are_refused_at_the_call() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    let inval = Err(HERALD_STATUS_INVALID_ARGUMENT);
    assert_eq!(c.imap_create("x\r\nA1 LOGOUT"), inval);
    assert_eq!(c.imap_create(""), inval);
    assert_eq!(c.imap_list("*\r\nA1 LOGOUT"), inval);
    assert_eq!(c.imap_search("INBOX", "ALL\r\nA1 DELETE INBOX"), inval);
    assert_eq!(c.imap_search("INBOX", "SUBJECT {5}"), inval);
    assert_eq!(c.imap_search("INBOX", "SUBJECT \"unbalanced"), inval);
    assert_eq!(c.imap_search("INBOX", "(UNSEEN"), inval);
    assert_eq!(c.imap_fetch("INBOX", "1:*\r\nA1 LOGOUT", 1), inval);
    assert_eq!(c.imap_fetch("INBOX", "1 2", 1), inval);
    assert_eq!(c.imap_fetch("INBOX", "0", 1), inval);
    assert_eq!(c.imap_fetch("INBOX", "1", 1 << 30), inval);
    assert_eq!(c.imap_store("INBOX", "1", 1, "\\Seen)\r\nA1 LOGOUT"), inval);
    assert_eq!(c.imap_store("INBOX", "1", 2, "\\Seen"), inval);
    assert_eq!(c.imap_copy("INBOX", "1", "a\nb"), inval);
    assert_eq!(c.imap_move("INBOX", "1", ""), inval);
    assert_eq!(c.imap_append("INBOX", &[b"x\0y"], None), inval);
    assert_eq!(c.imap_append("INBOX", &[b""], None), inval);
    assert_eq!(c.imap_append("INBOX", &[], None), inval);
    assert_eq!(c.imap_append("INBOX", &[b"x"], Some("\\Seen\r\n")), inval);
    assert_eq!(
        herald_imap_list_async(c.c, std::ptr::null(), None, std::ptr::null_mut(), &mut 0),
        HERALD_STATUS_INVALID_ARGUMENT
    );
    // A quoted string may hold what would be special outside it; non-ASCII goes as UTF-8.
    let r = c.done(c.imap_search("INBOX", "SUBJECT \"{5} (\" OR SEEN UNSEEN"));
    assert!(r.ok(), "{r:?}");
    let r = c.done(c.imap_search("INBOX", "SUBJECT \"caf\u{e9}\""));
    assert!(r.ok(), "{r:?}");
    c.flush(LONG);
    assert!(c
        .records()
        .iter()
        .all(|r| r.ok() || r.status == HERALD_STATUS_NOT_FOUND || r.status == HERALD_STATUS_REJECTED));
}

#[test]
fn login_over_starttls_and_implicit_tls_and_bad_passwords() {
    let d = Dovecot::start();
    let ca = d.ca_file.to_string_lossy().into_owned();
    let log: Log = Mutex::new(Vec::new());
    for (port, security) in [
        (d.imap_port, HERALD_SECURITY_STARTTLS),
        (d.imaps_port, HERALD_SECURITY_IMPLICIT_TLS),
    ] {
        let c = TestClient::new(
            HERALD_PROTOCOL_IMAP,
            &[
                (HERALD_OPT_HOST, Val::S("127.0.0.1")),
                (HERALD_OPT_PORT, Val::I(port as i64)),
                (HERALD_OPT_SECURITY, Val::I(security)),
                (HERALD_OPT_USERNAME, Val::S("bob")),
                (HERALD_OPT_PASSWORD, Val::S("bobpass")),
                (HERALD_OPT_CA_FILE, Val::S(&ca)),
            ],
        )
        .unwrap();
        trace_into(&c, &log);
        let r = c.done(c.imap_append("INBOX", &[b"Subject: tls\r\n\r\nover TLS\r\n"], Some("\\Seen")));
        assert!(r.ok(), "{r:?}");
        let r = c.done(c.imap_fetch("INBOX", "1:*", HERALD_FETCH_BODY | HERALD_FETCH_FLAGS));
        assert_eq!(
            r.items.last().unwrap().bytes.as_deref(),
            Some(&b"Subject: tls\r\n\r\nover TLS\r\n"[..])
        );
        assert!(r.items.last().unwrap().strs[&HERALD_FIELD_FLAGS].contains("\\Seen"));
    }
    let log = log.lock().unwrap().join("\n");
    assert_eq!(
        log.matches("connected to 127.0.0.1").count(),
        2,
        "each client reuses its TLS connection: {log}"
    );
    assert!(log.contains("STARTTLS"), "{log}");
    assert!(log.contains("AUTHENTICATE PLAIN <credentials hidden>"), "{log}");
    assert!(!log.contains("bobpass"), "the password must never be logged");
    assert!(
        !log.contains("AGJvYgBib2JwYXNz"),
        "credentials must never be logged"
    );
    assert!(!log.contains("over TLS"), "message contents are not logged");

    // Wrong password, and an unknown user: AUTH.
    for (user, pass) in [("alice", "wrong"), ("nobody", "x")] {
        let c = TestClient::imap_as(d.imap_port, user, pass, &[]);
        let r = c.done(c.imap_list("*"));
        assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?}");
        assert_eq!(r.reply_code, 0);
    }
    // The default (STARTTLS, required) with an untrusted certificate: TLS.
    let c = TestClient::new(
        HERALD_PROTOCOL_IMAP,
        &[
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(d.imap_port as i64)),
            (HERALD_OPT_USERNAME, Val::S("bob")),
            (HERALD_OPT_PASSWORD, Val::S("bobpass")),
        ],
    )
    .unwrap();
    let r = c.done(c.imap_list("*"));
    assert_eq!(r.status, HERALD_STATUS_TLS, "{r:?}");
}

/// Blocks the first fetch progress report until the test says go.
static GATE: Mutex<(bool, bool)> = Mutex::new((false, false));
static GATE_CV: std::sync::Condvar = std::sync::Condvar::new();
unsafe extern "C" fn hold_first_progress(_op: u64, _token: *mut std::ffi::c_void, _done: u64, _total: u64) {
    let mut g = GATE.lock().unwrap();
    if !g.0 {
        g.0 = true;
        GATE_CV.notify_all();
        while !g.1 {
            g = GATE_CV.wait(g).unwrap();
        }
    }
}

/// Pids of the instance's post-login imap processes.
fn imap_processes(d: &Dovecot) -> Vec<u32> {
    let needle = format!("dovecot-{}/imap", d.instance);
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains(&needle) && !c.contains("imap-login")
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn server_killed_mid_fetch_gives_an_error_and_the_next_op_reconnects() {
    let d = Dovecot::start();
    d.create_mailbox("alice", "Big");
    for i in 0..6 {
        d.append("alice", "Big", &message(&format!("big {i}"), 5 * 1024 * 1024));
    }
    let c = TestClient::imap_plain(d.imap_port, &[(HERALD_OPT_MAX_CONNECTIONS, Val::I(1))]);
    assert!(c.done(c.imap_search("Big", "ALL")).ok());
    assert_eq!(
        herald_client_set_progress(c.c, Some(hold_first_progress)),
        HERALD_STATUS_OK
    );
    let op = c.imap_fetch("Big", "1:*", HERALD_FETCH_BODY).unwrap();
    {
        let mut g = GATE.lock().unwrap();
        let deadline = Instant::now() + LONG;
        while !g.0 && Instant::now() < deadline {
            g = GATE_CV.wait_timeout(g, Duration::from_secs(1)).unwrap().0;
        }
        assert!(g.0, "the fetch never reported progress");
        // The fetch is under way (1 MB of 30 read): kill the server's process.
        let pids = imap_processes(&d);
        assert!(!pids.is_empty(), "no imap process found");
        for pid in pids {
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
        }
        g.1 = true;
        GATE_CV.notify_all();
    }
    let r = c.result(op);
    assert!(
        r.status == HERALD_STATUS_IO || r.status == HERALD_STATUS_TIMEOUT,
        "{r:?}"
    );
    assert!(r.items.is_empty());
    // The next op opens a new connection.
    let r = c.done(c.imap_search("Big", "ALL"));
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.items.len(), 6);
}

#[test]
fn cancel_of_a_running_fetch_and_free_with_pending_ops() {
    let d = Dovecot::start();
    d.create_mailbox("alice", "Some");
    d.append("alice", "Some", &message("one", 1000));
    let c = TestClient::imap_plain(d.imap_port, &[(HERALD_OPT_MAX_CONNECTIONS, Val::I(2))]);
    let ops: Vec<u64> = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                c.imap_fetch("Some", "1:*", HERALD_FETCH_BODY).unwrap()
            } else {
                c.imap_search("Some", "ALL").unwrap()
            }
        })
        .collect();
    for op in ops.iter().skip(50).step_by(3) {
        assert_eq!(c.cancel(*op), HERALD_STATUS_OK);
    }
    let idle = c.imap_idle("Some").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let records = c.free();
    let mut all = ops.clone();
    all.push(idle);
    assert_exactly_once(&records, &all);
    assert!(records.iter().all(|r| r.ok() || r.cancelled), "{records:?}");
}

/// A scripted IMAP server for what Dovecot here can't show: XOAUTH2, and
/// LOGIN (Dovecot always offers AUTH=PLAIN). Accepts `carol` with password
/// `carolpass` or token `tok123`; records every line it receives.
fn scripted_imap(caps: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    use base64::Engine as _;
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(4) {
            let Ok(mut w) = conn else { return };
            let mut r = BufReader::new(w.try_clone().unwrap());
            let _ = write!(w, "* OK [CAPABILITY {caps}] scripted\r\n");
            let good_xoauth =
                base64::engine::general_purpose::STANDARD.encode("user=carol\x01auth=Bearer tok123\x01\x01");
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let l = line.trim_end().to_string();
                line.clear();
                seen.lock().unwrap().push(l.clone());
                let words: Vec<&str> = l.split(' ').collect();
                let (tag, cmd) = (
                    words[0],
                    words.get(1).map(|c| c.to_ascii_uppercase()).unwrap_or_default(),
                );
                let reply = match cmd.as_str() {
                    "CAPABILITY" => format!("* CAPABILITY {caps}\r\n{tag} OK done\r\n"),
                    "LOGIN" if l.ends_with("\"carol\" \"carolpass\"") => format!("{tag} OK logged in\r\n"),
                    "LOGIN" => format!("{tag} NO [AUTHENTICATIONFAILED] bad\r\n"),
                    "AUTHENTICATE" => {
                        let ir = match words.get(3) {
                            Some(ir) => ir.to_string(),
                            None => {
                                let _ = write!(w, "+ \r\n");
                                r.read_line(&mut line).unwrap();
                                let x = line.trim_end().to_string();
                                line.clear();
                                seen.lock().unwrap().push(x.clone());
                                x
                            }
                        };
                        if ir == good_xoauth {
                            format!("{tag} OK authenticated\r\n")
                        } else {
                            let _ = write!(w, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
                            r.read_line(&mut line).unwrap();
                            seen.lock()
                                .unwrap()
                                .push(format!("after challenge: {:?}", line.trim_end()));
                            line.clear();
                            format!("{tag} NO [AUTHENTICATIONFAILED] bad token\r\n")
                        }
                    }
                    "LIST" => format!("* LIST (\\HasNoChildren) \"/\" INBOX\r\n{tag} OK listed\r\n"),
                    "LOGOUT" => format!("* BYE bye\r\n{tag} OK\r\n"),
                    _ => format!("{tag} BAD unknown\r\n"),
                };
                if w.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (port, lines)
}

fn scripted_client(port: u16, secret: (u32, &str)) -> TestClient {
    TestClient::new(
        HERALD_PROTOCOL_IMAP,
        &[
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(port as i64)),
            (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)),
            (HERALD_OPT_USERNAME, Val::S("carol")),
            (secret.0, Val::S(secret.1)),
        ],
    )
    .unwrap()
}

#[test]
fn xoauth2_and_login_against_a_scripted_server() {
    // XOAUTH2 with SASL-IR: the token goes with the command.
    let (port, lines) = scripted_imap("IMAP4rev1 AUTH=XOAUTH2 SASL-IR");
    let c = scripted_client(port, (HERALD_OPT_OAUTH2_TOKEN, "tok123"));
    let r = c.done(c.imap_list("*"));
    assert!(r.ok(), "{r:?} {:?}", lines.lock().unwrap());
    assert_eq!(r.items[0].strs[&HERALD_FIELD_NAME], "INBOX");
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("AUTHENTICATE XOAUTH2 ")));
    // Without SASL-IR, and a refused token: the error challenge gets an empty response, and AUTH.
    let (port, lines) = scripted_imap("IMAP4rev1 AUTH=XOAUTH2");
    let c = scripted_client(port, (HERALD_OPT_OAUTH2_TOKEN, "expired"));
    let r = c.done(c.imap_list("*"));
    assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?} {:?}", lines.lock().unwrap());
    assert!(
        lines.lock().unwrap().iter().any(|l| l == "after challenge: \"\""),
        "{:?}",
        lines.lock().unwrap()
    );
    // No AUTH=PLAIN offered: LOGIN.
    let (port, lines) = scripted_imap("IMAP4rev1");
    let c = scripted_client(port, (HERALD_OPT_PASSWORD, "carolpass"));
    let r = c.done(c.imap_list("*"));
    assert!(r.ok(), "{r:?}");
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("LOGIN \"carol\"")));
    drop(c); // the scripted server serves one connection at a time
    let c = scripted_client(port, (HERALD_OPT_PASSWORD, "wrong"));
    let r = c.done(c.imap_list("*"));
    assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?}");
}
