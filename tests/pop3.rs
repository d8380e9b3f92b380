//! POP3 against a private Dovecot (plain, STLS, implicit TLS), with mail put
//! in by an independent IMAP client and checked byte for byte; plus small
//! scripted servers for what Dovecot never does (garbage, endless lines, no
//! STLS) and a proxy that cuts the connection before QUIT. Every run checks
//! that each op completed exactly once.

mod api;

use std::ffi::{c_char, c_void, CStr};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use api::pop3::*;
use api::*;
use herald_testservers::*;

const LONG: Duration = Duration::from_secs(60);

/// A message of `lines` body lines, CRLF throughout (how Dovecot serves it).
fn message(i: usize, lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender@example.org\r\nTo: bob@example.org\r\nSubject: message {i}\r\nMessage-ID: <{i}@herald.test>\r\n\r\n"
    )
    .into_bytes();
    for l in 0..lines {
        m.extend_from_slice(format!("message {i} line {l:05}: the quick brown fox\r\n").as_bytes());
    }
    m
}

/// Messages that test the framing: dot lines, 8-bit bytes, a long line, a big one.
fn tricky_messages() -> Vec<Vec<u8>> {
    let mut dots =
        b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.hidden\r\n. space\r\nmid.dle\r\n.\r\nend\r\n".to_vec();
    dots.extend_from_slice(b"..\r\n");
    let mut eight =
        "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\u{e9} \u{2603} \u{1F600}\r\n"
            .as_bytes()
            .to_vec();
    eight.extend_from_slice(&[0xff, 0xfe, 0x80, b' ', b'x', b'\r', b'\n']);
    let mut long = b"Subject: long line\r\n\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'L', 100_000));
    long.extend_from_slice(b"\r\n.after the long line\r\n");
    let mut big = b"Subject: two megabytes\r\n\r\n".to_vec();
    let mut i = 0;
    while big.len() < 2 * 1024 * 1024 {
        big.extend_from_slice(format!("{i:08} {}\r\n", if i % 7 == 0 { "." } else { "line" }).as_bytes());
        if i % 1000 == 0 {
            big.extend_from_slice(b".\r\n");
        }
        i += 1;
    }
    vec![dots, eight, long, big, message(0, 3)]
}

/// What TOP n should give: the header block, the blank line and n lines.
fn top_of(m: &[u8], n: usize) -> Vec<u8> {
    let split = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block")
        + 4;
    let mut out = m[..split].to_vec();
    let mut rest = &m[split..];
    for _ in 0..n {
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(p) => {
                out.extend_from_slice(&rest[..p + 2]);
                rest = &rest[p + 2..];
            }
            None => break,
        }
    }
    out
}

fn ca(d: &Dovecot) -> String {
    d.ca_file.to_str().expect("UTF-8 path").to_string()
}

/// A client for `d`'s POP3 port with STLS (required) as `user`.
fn stls_client(d: &Dovecot, user: &str, pass: &str, extra: &[(u32, Val)]) -> TestClient {
    let ca = ca(d);
    let mut opts = vec![(HERALD_OPT_CA_FILE, Val::S(&ca))];
    for (id, v) in extra {
        opts.push((
            *id,
            match v {
                Val::S(s) => Val::S(s),
                Val::I(i) => Val::I(*i),
            },
        ));
    }
    TestClient::pop3(d.pop3_port, HERALD_SECURITY_STARTTLS, user, pass, &opts)
}

/// The messages in `user`'s INBOX, counted by Dovecot itself.
fn stored_count(d: &Dovecot, user: &str) -> usize {
    d.doveadm(&["search", "-u", user, "mailbox", "INBOX", "ALL"], b"")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Submits `f` for each UIDL, waits for all, checks each completed once.
fn run_all(c: &TestClient, uidls: &[String], f: impl Fn(&str) -> u64) -> Vec<Record> {
    let before = c.records().len();
    let ops: Vec<u64> = uidls.iter().map(|u| f(u)).collect();
    assert_eq!(c.flush(LONG), HERALD_STATUS_OK, "flush");
    let records: Vec<Record> = c
        .records()
        .split_off(before)
        .into_iter()
        .filter(|r| ops.contains(&r.op))
        .collect();
    assert_exactly_once(&records, &ops);
    ops.iter()
        .map(|op| records.iter().find(|r| r.op == *op).cloned().expect("record"))
        .collect()
}

#[test]
fn list_retrieve_top_delete_round_trip_byte_exact() {
    let d = Dovecot::start();
    let msgs = tricky_messages();
    imap_append(d.imap_port, "bob", "bobpass", "INBOX", &msgs);
    let c = stls_client(&d, "bob", "bobpass", &[]);
    let log = LogRecorder::attach(&c);

    let list = c.pop3_list_now(LONG);
    assert_eq!(list.len(), msgs.len());
    for (i, (uidl, size, num)) in list.iter().enumerate() {
        assert_eq!(*num, i as u64 + 1, "message numbers in order");
        assert_eq!(*size, msgs[i].len() as u64, "LIST size of {uidl}");
    }
    let uidls: Vec<String> = list.iter().map(|(u, _, _)| u.clone()).collect();

    // All retrieves submitted at once, behind a list that opens a new
    // session (the open one is older than the list): when the list is done
    // they are all queued, and go out pipelined.
    let before = c.records().len();
    let list_op = c.pop3_list().unwrap();
    let got = run_all(&c, &uidls, |u| c.pop3_retrieve(u).unwrap());
    let listed = c.records()[before..]
        .iter()
        .find(|r| r.op == list_op)
        .cloned()
        .unwrap();
    assert!(listed.ok() && listed.items.len() == msgs.len(), "{listed:?}");
    for (i, r) in got.iter().enumerate() {
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.items.len(), 1);
        let it = &r.items[0];
        assert_eq!(it.strs[&HERALD_FIELD_NAME], uidls[i]);
        assert_eq!(it.uid, i as u64 + 1);
        assert_eq!(it.ints[&HERALD_FIELD_SIZE], msgs[i].len() as u64);
        let bytes = it.bytes.as_ref().expect("the message");
        assert!(
            *bytes == msgs[i],
            "message {i} differs ({} vs {} bytes)",
            bytes.len(),
            msgs[i].len()
        );
    }
    // Dovecot offers PIPELINING: the RETRs went out before the first message came back.
    let lines = log.lines();
    let first_body = lines
        .iter()
        .position(|l| l.starts_with("S: <message"))
        .expect("traced");
    let last_retr = lines
        .iter()
        .position(|l| l == &format!("C: RETR {}", msgs.len()))
        .expect("traced");
    assert!(last_retr < first_body, "not pipelined: {lines:#?}");

    // TOP with 0, 1 and 3 lines, mixed with retrieves in one pipeline.
    for n in [0u32, 1, 3] {
        let got = run_all(&c, &uidls, |u| c.pop3_top(u, n).unwrap());
        for (i, r) in got.iter().enumerate() {
            assert!(r.ok(), "{r:?}");
            let bytes = r.items[0].bytes.as_ref().unwrap();
            let want = top_of(&msgs[i], n as usize);
            assert!(
                *bytes == want,
                "TOP {n} of message {i}: {:?}\nwant {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)]),
                String::from_utf8_lossy(&want[..want.len().min(300)])
            );
        }
    }

    // Delete two; the others stay, the deleted are gone for good.
    let gone = [uidls[0].as_str(), uidls[3].as_str()];
    let op = c.pop3_delete(&gone).unwrap();
    let r = c.record_of_op(op, LONG);
    assert!(r.ok(), "{r:?}");
    let deleted: Vec<&str> = r
        .items
        .iter()
        .map(|it| it.strs[&HERALD_FIELD_NAME].as_str())
        .collect();
    assert_eq!(deleted, gone);
    assert_eq!(stored_count(&d, "bob"), msgs.len() - 2);
    let after: Vec<String> = c.pop3_list_now(LONG).into_iter().map(|(u, _, _)| u).collect();
    let want: Vec<String> = uidls
        .iter()
        .filter(|u| !gone.contains(&u.as_str()))
        .cloned()
        .collect();
    assert_eq!(after, want, "UIDLs are stable across sessions");
    let op = c.pop3_retrieve(gone[0]).unwrap();
    assert_eq!(c.record_of_op(op, LONG).status, HERALD_STATUS_NOT_FOUND);
    // The survivors are still byte-exact in the new session.
    let op = c.pop3_retrieve(&uidls[2]).unwrap();
    assert!(c.record_of_op(op, LONG).items[0].bytes.as_deref() == Some(&msgs[2][..]));
    let ops: Vec<u64> = c.records().iter().map(|r| r.op).collect();
    assert_exactly_once(&c.free(), &ops);
}

#[test]
fn implicit_tls_and_stls_and_certificates() {
    let d = Dovecot::start();
    let m = message(1, 20);
    imap_append(
        d.imap_port,
        "alice",
        "alicepass",
        "INBOX",
        std::slice::from_ref(&m),
    );
    let ca = ca(&d);

    for (port, security) in [
        (d.pop3s_port, HERALD_SECURITY_IMPLICIT_TLS),
        (d.pop3_port, HERALD_SECURITY_STARTTLS),
        (d.pop3_port, HERALD_SECURITY_STARTTLS_IF_AVAILABLE),
    ] {
        let c = TestClient::pop3(
            port,
            security,
            "alice",
            "alicepass",
            &[(HERALD_OPT_CA_FILE, Val::S(&ca))],
        );
        let log = LogRecorder::attach(&c);
        let list = c.pop3_list_now(LONG);
        assert_eq!(list.len(), 1);
        let op = c.pop3_retrieve(&list[0].0).unwrap();
        let r = c.record_of_op(op, LONG);
        assert!(r.ok(), "security {security}: {r:?}");
        assert!(r.items[0].bytes.as_deref() == Some(&m[..]));
        let lines = log.lines();
        let text = lines.join("\n");
        assert!(
            !text.contains("alicepass"),
            "the password is never logged:\n{text}"
        );
        assert!(
            !text.contains("the quick brown fox"),
            "message contents are never logged"
        );
        if security != HERALD_SECURITY_IMPLICIT_TLS {
            assert!(text.contains("C: STLS"), "{text}");
        }
        assert!(text.contains("<credentials hidden>"), "{text}");
    }

    // Without the CA the self-signed certificate is refused, on both paths.
    for (port, security) in [
        (d.pop3s_port, HERALD_SECURITY_IMPLICIT_TLS),
        (d.pop3_port, HERALD_SECURITY_STARTTLS),
    ] {
        let c = TestClient::pop3(port, security, "alice", "alicepass", &[]);
        let op = c.pop3_list().unwrap();
        let r = c.record_of_op(op, LONG);
        assert_eq!(r.status, HERALD_STATUS_TLS, "{r:?}");
    }
    // Unless told to accept it.
    let c = TestClient::pop3(
        d.pop3s_port,
        HERALD_SECURITY_IMPLICIT_TLS,
        "alice",
        "alicepass",
        &[(HERALD_OPT_ACCEPT_INVALID_CERTS, Val::I(1))],
    );
    assert_eq!(c.pop3_list_now(LONG).len(), 1);
}

#[test]
fn bad_password_is_auth_for_every_waiting_op() {
    let d = Dovecot::start();
    imap_append(d.imap_port, "carol", "carolpass", "INBOX", &[message(1, 1)]);
    let c = stls_client(&d, "carol", "wrong", &[]);
    let started = Instant::now();
    let ops = vec![
        c.pop3_list().unwrap(),
        c.pop3_retrieve("x").unwrap(),
        c.pop3_top("y", 1).unwrap(),
        c.pop3_delete(&["z"]).unwrap(),
    ];
    assert_eq!(c.flush(LONG), HERALD_STATUS_OK);
    let records = c.records();
    assert_exactly_once(&records, &ops);
    for r in &records {
        assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?}");
        assert!(r.detail.contains("-ERR"), "the server's text: {}", r.detail);
    }
    // One failed login for all of them, not one each (~0.5 s each with Dovecot).
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(stored_count(&d, "carol"), 1);
}

#[test]
fn unknown_uidls() {
    let d = Dovecot::start();
    let msgs = vec![message(1, 2), message(2, 2)];
    imap_append(d.imap_port, "bob", "bobpass", "INBOX", &msgs);
    let c = stls_client(&d, "bob", "bobpass", &[]);
    let list = c.pop3_list_now(LONG);
    let known = list[0].0.clone();

    let op = c.pop3_retrieve("no-such-uidl").unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    assert!(r.detail.contains("no-such-uidl"), "{}", r.detail);
    let op = c.pop3_top("no-such-uidl", 3).unwrap();
    assert_eq!(c.record_of_op(op, LONG).status, HERALD_STATUS_NOT_FOUND);

    // A delete naming only unknown UIDLs does nothing and says so.
    let op = c.pop3_delete(&["gone-1", "gone-2"]).unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    assert_eq!(stored_count(&d, "bob"), 2);

    // Mixed: the known one is deleted, the unknown ones are named.
    let op = c.pop3_delete(&["gone-1", &known, "gone-2", &known]).unwrap();
    let r = c.record_of_op(op, LONG);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.items.len(), 1, "duplicates count once");
    assert_eq!(r.items[0].strs[&HERALD_FIELD_NAME], known);
    assert!(
        r.detail.contains("gone-1") && r.detail.contains("gone-2"),
        "{}",
        r.detail
    );
    assert_eq!(stored_count(&d, "bob"), 1);

    // Invalid UIDLs and empty deletes are refused at submit: no completion.
    assert_eq!(c.pop3_retrieve("has space"), Err(HERALD_STATUS_INVALID_ARGUMENT));
    assert_eq!(c.pop3_retrieve(""), Err(HERALD_STATUS_INVALID_ARGUMENT));
    assert_eq!(c.pop3_delete(&[]), Err(HERALD_STATUS_INVALID_ARGUMENT));
    assert_eq!(
        c.pop3_delete(&["ok", "bad\u{e9}"]),
        Err(HERALD_STATUS_INVALID_ARGUMENT)
    );
    let ops: Vec<u64> = c.records().iter().map(|r| r.op).collect();
    assert_exactly_once(&c.free(), &ops);
}

#[test]
fn submit_checks_the_client_and_arguments() {
    // A POP3 op on an SMTP client, NULLs, a POP3 client without USERNAME.
    let smtp = TestClient::smtp_plain(25, &[]);
    assert_eq!(smtp.pop3_list(), Err(HERALD_STATUS_INVALID_ARGUMENT));
    let pop = TestClient::pop3(110, HERALD_SECURITY_NONE, "u", "p", &[]);
    let mut op = 0;
    assert_eq!(
        herald_pop3_retrieve_async(pop.c, std::ptr::null(), None, std::ptr::null_mut(), &mut op),
        HERALD_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(
        herald_pop3_delete_async(pop.c, std::ptr::null(), 2, None, std::ptr::null_mut(), &mut op),
        HERALD_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(
        herald_pop3_list_async(std::ptr::null_mut(), None, std::ptr::null_mut(), &mut op),
        HERALD_STATUS_INVALID_ARGUMENT
    );
    assert_eq!(
        herald_pop3_list_async(pop.c, None, std::ptr::null_mut(), std::ptr::null_mut()),
        HERALD_STATUS_INVALID_ARGUMENT
    );
    let anon = TestClient::new(HERALD_PROTOCOL_POP3, &[(HERALD_OPT_HOST, Val::S("127.0.0.1"))]).unwrap();
    assert_eq!(anon.pop3_list(), Err(HERALD_STATUS_INVALID_ARGUMENT));
    assert!(last_error().contains("USERNAME"), "{}", last_error());
    assert!(smtp.free().is_empty() && pop.free().is_empty() && anon.free().is_empty());
}

#[test]
fn new_mail_is_seen_while_a_session_is_open() {
    let d = Dovecot::start();
    imap_append(d.imap_port, "alice", "alicepass", "INBOX", &[message(1, 1)]);
    // Sessions stay open for a minute of idleness here.
    let c = stls_client(
        &d,
        "alice",
        "alicepass",
        &[(HERALD_OPT_IDLE_TIMEOUT_MS, Val::I(60_000))],
    );
    assert_eq!(c.pop3_list_now(LONG).len(), 1);
    assert_eq!(
        wait_for_connections(d.pop3_port, 1, LONG),
        1,
        "the session stays open"
    );

    let new = message(2, 5);
    imap_append(
        d.imap_port,
        "alice",
        "alicepass",
        "INBOX",
        std::slice::from_ref(&new),
    );
    // A list reports the maildrop as it is now, not as the open session saw it.
    let list = c.pop3_list_now(LONG);
    assert_eq!(list.len(), 2);

    // A UIDL the open session does not know is looked for in a new one.
    let newer = message(3, 5);
    imap_append(
        d.imap_port,
        "alice",
        "alicepass",
        "INBOX",
        std::slice::from_ref(&newer),
    );
    let uidl3 = {
        let probe = stls_client(&d, "alice", "alicepass", &[]);
        let l = probe.pop3_list_now(LONG);
        assert_eq!(l.len(), 3);
        l[2].0.clone()
    };
    let op = c.pop3_retrieve(&uidl3).unwrap();
    let r = c.record_of_op(op, LONG);
    assert!(r.ok(), "{r:?}");
    assert!(r.items[0].bytes.as_deref() == Some(&newer[..]));
}

#[test]
fn one_session_at_a_time_closed_when_idle() {
    let d = Dovecot::start();
    let msgs: Vec<Vec<u8>> = (0..60).map(|i| message(i, 40)).collect();
    imap_append(d.imap_port, "bob", "bobpass", "INBOX", &msgs);
    let c = stls_client(&d, "bob", "bobpass", &[(HERALD_OPT_IDLE_TIMEOUT_MS, Val::I(300))]);
    let uidls: Vec<String> = c.pop3_list_now(LONG).into_iter().map(|(u, _, _)| u).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (port, stop2) = (d.pop3_port, stop.clone());
    let watcher = std::thread::spawn(move || {
        let mut most = 0;
        while !stop2.load(Ordering::Relaxed) {
            most = most.max(established_connections(port));
            std::thread::sleep(Duration::from_millis(5));
        }
        most
    });
    for _ in 0..5 {
        let got = run_all(&c, &uidls, |u| c.pop3_retrieve(u).unwrap());
        assert!(got.iter().all(|r| r.ok()));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(
        watcher.join().unwrap() <= 1,
        "MAX_CONNECTIONS is 1 for POP3 by default"
    );
    // Idle: the main session is closed too (it locks the maildrop).
    assert_eq!(wait_for_connections(d.pop3_port, 0, Duration::from_secs(10)), 0);

    // MAX_CONNECTIONS 2, which Dovecot allows: never more, all byte-exact.
    let c = stls_client(&d, "bob", "bobpass", &[(HERALD_OPT_MAX_CONNECTIONS, Val::I(2))]);
    let stop = Arc::new(AtomicBool::new(false));
    let (port, stop2) = (d.pop3_port, stop.clone());
    let watcher = std::thread::spawn(move || {
        let mut most = 0;
        while !stop2.load(Ordering::Relaxed) {
            most = most.max(established_connections(port));
            std::thread::sleep(Duration::from_millis(5));
        }
        most
    });
    for _ in 0..3 {
        let got = run_all(&c, &uidls, |u| c.pop3_retrieve(u).unwrap());
        for (i, r) in got.iter().enumerate() {
            assert!(r.ok(), "{r:?}");
            assert!(r.items[0].bytes.as_deref() == Some(&msgs[i][..]), "message {i}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.join().unwrap() <= 2);
}

#[test]
fn cancel_and_free_amid_a_pipeline() {
    let d = Dovecot::start();
    let msgs: Vec<Vec<u8>> = (0..200).map(|i| message(i, 400)).collect();
    imap_append(d.imap_port, "carol", "carolpass", "INBOX", &msgs);
    let c = stls_client(&d, "carol", "carolpass", &[]);
    let uidls: Vec<String> = c.pop3_list_now(LONG).into_iter().map(|(u, _, _)| u).collect();
    let before = c.records().len();
    let ops: Vec<u64> = uidls.iter().map(|u| c.pop3_retrieve(u).unwrap()).collect();
    for op in ops.iter().step_by(3) {
        assert_eq!(c.cancel(*op), HERALD_STATUS_OK);
    }
    assert_eq!(c.flush(LONG), HERALD_STATUS_OK);
    let records = c.records().split_off(before);
    assert_exactly_once(&records, &ops);
    for (i, op) in ops.iter().enumerate() {
        let r = records.iter().find(|r| r.op == *op).unwrap();
        if r.cancelled {
            continue;
        }
        assert!(r.ok(), "{r:?}");
        assert!(r.items[0].bytes.as_deref() == Some(&msgs[i][..]), "message {i}");
    }
    // Everything still works after the cancels.
    let op = c.pop3_retrieve(&uidls[0]).unwrap();
    assert!(c.record_of_op(op, LONG).ok());

    // Freeing the client amid a pipeline: every op completes, exactly once.
    let before = c.records().len();
    let ops: Vec<u64> = uidls.iter().map(|u| c.pop3_retrieve(u).unwrap()).collect();
    c.rec.wait_for(before + 5, LONG);
    let records = c.free().split_off(before);
    assert_exactly_once(&records, &ops);
    assert!(records.iter().all(|r| r.ok() || r.cancelled), "{records:?}");
    assert_eq!(stored_count(&d, "carol"), 200, "reading deletes nothing");
}

#[test]
fn apop_and_user_pass_logins() {
    // APOP, offered when the passdb has plain passwords: used first on a
    // plain connection (the password never crosses the wire).
    let d = Dovecot::start_with("auth_mechanisms = plain login apop\n");
    imap_append(d.imap_port, "bob", "bobpass", "INBOX", &[message(1, 1)]);
    let c = TestClient::pop3(d.pop3_port, HERALD_SECURITY_NONE, "bob", "bobpass", &[]);
    let log = LogRecorder::attach(&c);
    assert_eq!(c.pop3_list_now(LONG).len(), 1);
    let text = log.lines().join("\n");
    assert!(text.contains("C: APOP bob <credentials hidden>"), "{text}");
    assert!(!text.contains("bobpass"));
    let c = TestClient::pop3(d.pop3_port, HERALD_SECURITY_NONE, "bob", "wrong", &[]);
    let op = c.pop3_list().unwrap();
    assert_eq!(c.record_of_op(op, LONG).status, HERALD_STATUS_AUTH);
    drop(d);

    // USER/PASS when SASL PLAIN is not offered. (Dovecot runs USER/PASS
    // through its PLAIN mechanism, so it can't be made to offer one without
    // the other: a scripted server checks what arrives.)
    static LOGIN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("USER") || cmd.starts_with("PASS") {
            LOGIN.lock().unwrap().push(cmd.to_string());
        }
        standard(cmd)
    });
    let c = TestClient::pop3(s.port, HERALD_SECURITY_NONE, "bob", "bobpass", &[]);
    let log = LogRecorder::attach(&c);
    assert_eq!(c.pop3_list_now(LONG).len(), 1);
    assert_eq!(*LOGIN.lock().unwrap(), ["USER bob", "PASS bobpass"]);
    let text = log.lines().join("\n");
    assert!(
        text.contains("C: USER bob") && text.contains("C: PASS <credentials hidden>"),
        "{text}"
    );
    assert!(!text.contains("bobpass"));
}

// ---------------------------------------------------------------------------
// A connection lost before QUIT
// ---------------------------------------------------------------------------

/// Forwards 127.0.0.1:`port` to `upstream`; when the client sends a chunk
/// containing `trigger`, stops forwarding the server's replies, forwards the
/// chunk (or not), waits a moment so the server has acted on it, and cuts
/// the connection both ways.
struct CutProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CutProxy {
    fn start(upstream: u16, trigger: &'static [u8], forward: bool) -> CutProxy {
        let l = TcpListener::bind((HOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect((HOST, upstream)).unwrap();
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                let cut = Arc::new(AtomicBool::new(false));
                let cut2 = cut.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = s_read.read(&mut buf) {
                        if cut2.load(Ordering::SeqCst) || c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    loop {
                        let n = match c_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        if chunk.windows(trigger.len()).any(|w| w == trigger) {
                            cut.store(true, Ordering::SeqCst);
                            if forward {
                                let _ = s_write.write_all(chunk);
                                std::thread::sleep(Duration::from_millis(300));
                            }
                            break;
                        }
                        if s_write.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(Shutdown::Both);
                    let _ = c_read.shutdown(Shutdown::Both);
                });
            }
        });
        CutProxy {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn connection_lost_before_quit_deletes_nothing() {
    let d = Dovecot::start();
    let msgs: Vec<Vec<u8>> = (0..5).map(|i| message(i, 3)).collect();
    imap_append(d.imap_port, "bob", "bobpass", "INBOX", &msgs);
    let direct = TestClient::pop3(d.pop3_port, HERALD_SECURITY_NONE, "bob", "bobpass", &[]);
    let uidls: Vec<String> = direct
        .pop3_list_now(LONG)
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    let all: Vec<&str> = uidls.iter().map(String::as_str).collect();

    // Cut after the server marked them (DELE) and before herald sent QUIT.
    let proxy = CutProxy::start(d.pop3_port, b"DELE ", true);
    let c = TestClient::pop3(proxy.port, HERALD_SECURITY_NONE, "bob", "bobpass", &[]);
    let op = c.pop3_delete(&all).unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_IO, "{r:?}");
    assert!(r.detail.contains("nothing was deleted"), "{}", r.detail);
    assert!(!r.has_result);
    assert_eq!(stored_count(&d, "bob"), 5);
    assert_eq!(direct.pop3_list_now(LONG).len(), 5);
    drop(proxy);

    // Cut when QUIT is sent, before the server sees it: herald cannot know
    // whether the server committed, and says so; the server did not.
    let proxy = CutProxy::start(d.pop3_port, b"QUIT", false);
    let c = TestClient::pop3(proxy.port, HERALD_SECURITY_NONE, "bob", "bobpass", &[]);
    let op = c.pop3_delete(&all).unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_IO, "{r:?}");
    assert!(r.detail.contains("may or may not"), "{}", r.detail);
    assert_eq!(stored_count(&d, "bob"), 5);
    let after: Vec<String> = direct
        .pop3_list_now(LONG)
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    assert_eq!(after, uidls, "every message is still there");

    // Without the proxy the same delete commits.
    let op = direct.pop3_delete(&all).unwrap();
    let r = direct.record_of_op(op, LONG);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.items.len(), 5);
    assert_eq!(stored_count(&d, "bob"), 0);
}

// ---------------------------------------------------------------------------
// Scripted servers: what a real server never sends
// ---------------------------------------------------------------------------

/// What the scripted server answers to a command.
enum Answer {
    Send(String),
    /// `prefix`, then `fill` over and over until the client goes away (at most 256 MB).
    Endless(&'static str, &'static [u8]),
    /// Send this, then close the connection.
    SendClose(String),
    Close,
}

/// The answers of a small, well-behaved maildrop of one 100-byte message.
fn standard(cmd: &str) -> Answer {
    let word = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
    Answer::Send(
        match word.as_str() {
            "CAPA" => "+OK\r\nUSER\r\nUIDL\r\nTOP\r\nPIPELINING\r\n.\r\n",
            "USER" | "PASS" | "NOOP" | "RSET" | "DELE" => "+OK\r\n",
            "STAT" => "+OK 1 100\r\n",
            "UIDL" => "+OK\r\n1 uid-1\r\n.\r\n",
            "LIST" => "+OK\r\n1 100\r\n.\r\n",
            "QUIT" => return Answer::Close,
            _ => "-ERR unknown command\r\n",
        }
        .to_string(),
    )
}

struct Scripted {
    port: u16,
    /// Commands that arrived before the one before them was answered
    /// (what a client that pipelines does).
    ahead: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    fn start(greeting: &'static str, answer: fn(&str) -> Answer) -> Scripted {
        let l = TcpListener::bind((HOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let ahead = Arc::new(AtomicUsize::new(0));
        let ahead2 = ahead.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let ahead = ahead2.clone();
                std::thread::spawn(move || serve(s, greeting, answer, &ahead));
            }
        });
        Scripted {
            port,
            ahead,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(s: TcpStream, greeting: &str, answer: fn(&str) -> Answer, ahead: &AtomicUsize) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    if w.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !r.buffer().is_empty() {
            ahead.fetch_add(1, Ordering::SeqCst);
        }
        match answer(line.trim_end()) {
            Answer::Send(text) => {
                if w.write_all(text.as_bytes()).is_err() {
                    return;
                }
            }
            Answer::Endless(prefix, fill) => {
                let _ = w.write_all(prefix.as_bytes());
                let mut sent = 0;
                while sent < 256 << 20 && w.write_all(fill).is_ok() {
                    sent += fill.len();
                }
                return;
            }
            Answer::SendClose(text) => {
                let _ = w.write_all(text.as_bytes());
                return;
            }
            Answer::Close => {
                let _ = w.write_all(b"+OK bye\r\n");
                return;
            }
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A plain client of a scripted server, with a 10 s I/O timeout: a hang
/// would show as TIMEOUT, not as the PROTOCOL the tests expect.
fn scripted_client(port: u16, security: i64) -> TestClient {
    TestClient::pop3(
        port,
        security,
        "u",
        "p",
        &[(HERALD_OPT_IO_TIMEOUT_MS, Val::I(10_000))],
    )
}

/// Retrieves uid-1 from a scripted server: the completion and how long it took.
fn retrieve_from(server: &Scripted) -> (Record, Duration) {
    let c = scripted_client(server.port, HERALD_SECURITY_NONE);
    let started = Instant::now();
    let op = c.pop3_retrieve("uid-1").unwrap();
    let r = c.record_of_op(op, LONG);
    let took = started.elapsed();
    assert_exactly_once(&c.free(), &[op]);
    (r, took)
}

#[test]
fn garbage_and_endless_responses_are_errors_not_hangs() {
    // Garbage instead of a greeting.
    let s = Scripted::start("HELLO THERE\r\n", standard);
    let (r, took) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_PROTOCOL, "{r:?}");
    assert!(took < Duration::from_secs(5));

    // Garbage instead of a RETR response.
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("RETR") {
            Answer::Send("250 OK this is SMTP\r\n".into())
        } else {
            standard(cmd)
        }
    });
    let (r, _) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_PROTOCOL, "{r:?}");

    // An endless status line.
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("RETR") {
            Answer::Endless(
                "+OK ",
                b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            )
        } else {
            standard(cmd)
        }
    });
    let (r, took) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_PROTOCOL, "{r:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // An endless body: lines forever, never the final dot.
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("RETR") {
            Answer::Endless("+OK 100 octets\r\n", b"an endless body line\r\n")
        } else {
            standard(cmd)
        }
    });
    let (r, took) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_PROTOCOL, "{r:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // An endless line inside the body.
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("RETR") {
            Answer::Endless("+OK\r\nSubject: x\r\n\r\n", b"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy")
        } else {
            standard(cmd)
        }
    });
    let (r, _) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_PROTOCOL, "{r:?}");

    // An endless UIDL listing (more lines than STAT announced).
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd == "UIDL" {
            Answer::Endless("+OK\r\n", b"1 uid-1\r\n")
        } else {
            standard(cmd)
        }
    });
    let (r, _) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_PROTOCOL, "{r:?}");

    // A server that closes mid-body: IO, after one retry on a new session.
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("RETR") {
            Answer::SendClose("+OK\r\npartial\r\n".into())
        } else {
            standard(cmd)
        }
    });
    let (r, _) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_IO, "{r:?}");

    // Nobody listening: CONNECT.
    let port = TcpListener::bind((HOST, 0)).unwrap().local_addr().unwrap().port();
    let c = scripted_client(port, HERALD_SECURITY_NONE);
    let op = c.pop3_list().unwrap();
    assert_eq!(c.record_of_op(op, LONG).status, HERALD_STATUS_CONNECT);
}

#[test]
fn scripted_refusals_map_to_statuses() {
    // No STLS offered: required STLS is UNSUPPORTED; "if available" still
    // refuses to send the password in the clear.
    let s = Scripted::start("+OK ready\r\n", standard);
    let c = scripted_client(s.port, HERALD_SECURITY_STARTTLS);
    let op = c.pop3_list().unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_UNSUPPORTED, "{r:?}");
    let c = scripted_client(s.port, HERALD_SECURITY_STARTTLS_IF_AVAILABLE);
    let op = c.pop3_list().unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_TLS, "{r:?}");
    assert!(r.detail.contains("unencrypted"), "{}", r.detail);

    // A locked maildrop is TRANSIENT.
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("PASS") {
            Answer::Send("-ERR [IN-USE] Mailbox is locked by another session\r\n".into())
        } else {
            standard(cmd)
        }
    });
    let c = scripted_client(s.port, HERALD_SECURITY_NONE);
    let op = c.pop3_list().unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_TRANSIENT, "{r:?}");
    assert!(r.detail.contains("IN-USE"), "{}", r.detail);

    // -ERR to RETR of a listed message: REJECTED with the server's text.
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("RETR") {
            Answer::Send("-ERR message is on fire\r\n".into())
        } else {
            standard(cmd)
        }
    });
    let (r, _) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_REJECTED, "{r:?}");
    assert!(r.detail.contains("message is on fire"), "{}", r.detail);

    // A message too big to hold in memory is not even asked for.
    let s = Scripted::start("+OK ready\r\n", |cmd| match cmd {
        "STAT" => Answer::Send("+OK 1 5000000000\r\n".into()),
        "LIST" => Answer::Send("+OK\r\n1 5000000000\r\n.\r\n".into()),
        c if c.starts_with("RETR") => Answer::Endless("+OK\r\n", b"must not be asked for\r\n"),
        _ => standard(cmd),
    });
    let (r, _) = retrieve_from(&s);
    assert_eq!(r.status, HERALD_STATUS_LIMIT, "{r:?}");

    // A refused DELE: all or nothing (RSET), REJECTED.
    static RSET_SENT: AtomicBool = AtomicBool::new(false);
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd.starts_with("DELE") {
            Answer::Send("-ERR not today\r\n".into())
        } else {
            if cmd == "RSET" {
                RSET_SENT.store(true, Ordering::SeqCst);
            }
            standard(cmd)
        }
    });
    let c = scripted_client(s.port, HERALD_SECURITY_NONE);
    let op = c.pop3_delete(&["uid-1"]).unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_REJECTED, "{r:?}");
    assert!(r.detail.contains("nothing was deleted"), "{}", r.detail);
    assert!(RSET_SENT.load(Ordering::SeqCst), "the marks were reset");
}

// ---------------------------------------------------------------------------
// The log, through the C ABI
// ---------------------------------------------------------------------------

/// Collects a client's log lines (TRACE).
struct LogRecorder {
    lines: Arc<Mutex<Vec<String>>>,
}

unsafe extern "C" fn record_log(user: *mut c_void, _level: u32, line: *const c_char) {
    let lines = &*(user as *const Mutex<Vec<String>>);
    let text = CStr::from_ptr(line).to_string_lossy().into_owned();
    lines.lock().unwrap().push(text);
}

impl LogRecorder {
    fn attach(c: &TestClient) -> LogRecorder {
        let lines = Arc::new(Mutex::new(Vec::new()));
        // Leaked on purpose: log lines may come until the client is freed.
        let user = Arc::into_raw(lines.clone()) as *mut c_void;
        assert_eq!(
            herald_client_set_log(c.c, HERALD_LOG_TRACE, Some(record_log), user),
            HERALD_STATUS_OK
        );
        LogRecorder { lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

#[test]
fn one_command_at_a_time_without_pipelining() {
    // An RFC 1939 server: no CAPA, so no PIPELINING; three messages.
    fn rfc1939(cmd: &str) -> Answer {
        let mut words = cmd.split(' ');
        let word = words.next().unwrap_or("").to_ascii_uppercase();
        let n: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let body = |n: usize| format!("Subject: {n}\r\n\r\nline\r\n..dotted\r\n");
        Answer::Send(match word.as_str() {
            "CAPA" => "-ERR unknown command\r\n".into(),
            "STAT" => "+OK 3 90\r\n".into(),
            "UIDL" => "+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n.\r\n".into(),
            "LIST" => format!("+OK\r\n1 {0}\r\n2 {0}\r\n3 {0}\r\n.\r\n", body(1).len() - 1),
            "RETR" if (1..=3).contains(&n) => format!("+OK\r\n{}.\r\n", body(n)),
            "TOP" if (1..=3).contains(&n) => format!("+OK\r\nSubject: {n}\r\n\r\n.\r\n"),
            _ => return standard(cmd),
        })
    }
    let s = Scripted::start("+OK POP3 server ready\r\n", rfc1939);
    let c = scripted_client(s.port, HERALD_SECURITY_NONE);
    let ops: Vec<u64> = ["u1", "u2", "u3"]
        .iter()
        .flat_map(|u| [c.pop3_retrieve(u).unwrap(), c.pop3_top(u, 0).unwrap()])
        .collect();
    assert_eq!(c.flush(LONG), HERALD_STATUS_OK);
    let records = c.records();
    assert_exactly_once(&records, &ops);
    for (i, op) in ops.iter().enumerate() {
        let r = records.iter().find(|r| r.op == *op).unwrap();
        assert!(r.ok(), "{r:?}");
        let n = i / 2 + 1;
        let want = if i % 2 == 0 {
            format!("Subject: {n}\r\n\r\nline\r\n.dotted\r\n")
        } else {
            format!("Subject: {n}\r\n\r\n")
        };
        assert_eq!(String::from_utf8_lossy(r.items[0].bytes.as_ref().unwrap()), want);
    }
    assert_eq!(
        s.ahead.load(Ordering::SeqCst),
        0,
        "a command was sent before the last was answered"
    );

    // A server whose CAPA lacks TOP: top is UNSUPPORTED, nothing sent.
    let s = Scripted::start("+OK ready\r\n", |cmd| {
        if cmd == "CAPA" {
            Answer::Send("+OK\r\nUSER\r\nUIDL\r\n.\r\n".into())
        } else {
            standard(cmd)
        }
    });
    let c = scripted_client(s.port, HERALD_SECURITY_NONE);
    let op = c.pop3_top("uid-1", 5).unwrap();
    let r = c.record_of_op(op, LONG);
    assert_eq!(r.status, HERALD_STATUS_UNSUPPORTED, "{r:?}");
}

#[test]
fn cancel_the_op_being_read_and_one_behind_it() {
    // Three messages; the reply to RETR 1 takes 3 s.
    fn slow_first(cmd: &str) -> Answer {
        let mut words = cmd.split(' ');
        let word = words.next().unwrap_or("").to_ascii_uppercase();
        let n: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        Answer::Send(match word.as_str() {
            "STAT" => "+OK 3 60\r\n".into(),
            "UIDL" => "+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n.\r\n".into(),
            "LIST" => "+OK\r\n1 20\r\n2 20\r\n3 20\r\n.\r\n".into(),
            "RETR" if (1..=3).contains(&n) => {
                if n == 1 {
                    std::thread::sleep(Duration::from_secs(3));
                }
                format!("+OK\r\nSubject: {n}\r\n\r\nbody\r\n.\r\n")
            }
            _ => return standard(cmd),
        })
    }
    let s = Scripted::start("+OK ready\r\n", slow_first);
    let c = scripted_client(s.port, HERALD_SECURITY_NONE);
    let started = Instant::now();
    let ops: Vec<u64> = ["u1", "u2", "u3"]
        .iter()
        .map(|u| c.pop3_retrieve(u).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // u3 is pipelined behind u1: it completes at once.
    assert_eq!(c.cancel(ops[2]), HERALD_STATUS_OK);
    assert_eq!(c.wait(ops[2], Duration::from_millis(500)), HERALD_STATUS_OK);
    // u1 is being read: its connection is shut down; u2 goes again on a new one.
    assert_eq!(c.cancel(ops[0]), HERALD_STATUS_OK);
    assert_eq!(c.flush(LONG), HERALD_STATUS_OK);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let records = c.records();
    assert_exactly_once(&records, &ops);
    let by_op = |op| records.iter().find(|r| r.op == op).unwrap();
    assert!(by_op(ops[0]).cancelled && by_op(ops[2]).cancelled);
    let r = by_op(ops[1]);
    assert!(r.ok(), "{r:?}");
    assert_eq!(
        r.items[0].bytes.as_deref(),
        Some(&b"Subject: 2\r\n\r\nbody\r\n"[..])
    );
}
