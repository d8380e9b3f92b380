//! herald's IMAP client against a second real server, a private Cyrus IMAP
//! 3.6 (testservers/src/cyrus.rs): login, list and create, append and fetch
//! byte for byte, IDLE, streaming fetch, and a bulk append whose
//! MULTIAPPEND batch Cyrus refuses whole for one bad message.

mod api;

use std::ffi::{c_void, CString};
use std::sync::Mutex;
use std::time::Duration;

use api::imap::*;
use api::*;
use herald::ffi::stream::*;
use herald_testservers::Cyrus;

fn client(cy: &Cyrus, extra: &[(u32, Val)]) -> TestClient {
    TestClient::imap_plain(cy.imap_port, extra)
}

#[test]
fn login_list_create_append_fetch_and_idle() {
    let cy = Cyrus::start();
    // Login over STARTTLS and implicit TLS, trusting the test certificate; a bad password is AUTH.
    let ca = cy.ca_file.to_str().unwrap().to_string();
    for (port, sec) in [
        (cy.imap_port, HERALD_SECURITY_STARTTLS),
        (cy.imaps_port, HERALD_SECURITY_IMPLICIT_TLS),
    ] {
        let c = TestClient::imap_plain(
            port,
            &[
                (HERALD_OPT_SECURITY, Val::I(sec)),
                (HERALD_OPT_CA_FILE, Val::S(&ca)),
            ],
        );
        let r = c.done(c.imap_list("*"));
        assert!(r.ok(), "security {sec}: {r:?}");
        assert!(
            r.items.iter().any(|i| i.strs[&HERALD_FIELD_NAME] == "INBOX"),
            "{r:?}"
        );
    }
    let bad = TestClient::imap_as(cy.imap_port, "alice", "wrong", &[]);
    let r = bad.done(bad.imap_list("*"));
    assert_eq!(r.status, HERALD_STATUS_AUTH, "{r:?}");

    let c = client(&cy, &[]);
    let r = c.done(c.imap_create("Work/Été"));
    assert!(r.ok(), "{r:?}");
    let r = c.done(c.imap_list("*"));
    let names: Vec<&str> = r
        .items
        .iter()
        .map(|i| i.strs[&HERALD_FIELD_NAME].as_str())
        .collect();
    assert!(names.contains(&"Work/Été"), "{names:?}");

    // Byte-exact round trip, 8-bit header bytes included (munge8bit: no).
    let msgs = [
        raw_message("small", 200),
        b"From: a@example.org\r\nSubject: caf\xc3\xa9 8-bit\r\n\r\nbody\r\n".to_vec(),
        raw_message("large", 300_000),
    ];
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let r = c.done(c.imap_append("Work/Été", &refs, Some("\\Seen")));
    assert!(r.ok(), "{r:?}");
    let appended = uids(&r);
    assert_eq!(appended.len(), 3);
    assert!(
        appended.iter().all(|&u| u > 0),
        "UIDPLUS gives UIDs: {appended:?}"
    );
    let r = c.done(c.imap_fetch(
        "Work/Été",
        "1:*",
        HERALD_FETCH_BODY | HERALD_FETCH_FLAGS | HERALD_FETCH_ENVELOPE,
    ));
    assert!(r.ok(), "{r:?}");
    assert_eq!(uids(&r), appended);
    for (it, m) in r.items.iter().zip(&msgs) {
        assert_eq!(it.bytes.as_ref(), Some(m), "UID {} byte-exact", it.uid);
        assert!(it.strs[&HERALD_FIELD_FLAGS].contains("\\Seen"));
    }
    assert_eq!(r.items[0].strs[&HERALD_FIELD_SUBJECT], "small");

    // IDLE sees a message another client appends.
    let idle = c.imap_idle("INBOX").unwrap();
    let other = client(&cy, &[]);
    // Let the IDLE start (a change before it is reported too, by the SELECT).
    let first = c.wait_change(idle, 0, Duration::from_secs(1));
    let r = other.done(other.imap_append("INBOX", &[b"Subject: new\r\n\r\nx\r\n"], None));
    assert!(r.ok(), "{r:?}");
    let seen = c.wait_change(idle, 1, Duration::from_secs(20));
    assert!(seen.contains(&1), "IDLE reported {seen:?} (before: {first:?})");
    assert_eq!(c.cancel(idle), HERALD_STATUS_OK);
    assert_eq!(c.wait(idle, Duration::from_secs(10)), HERALD_STATUS_OK);
}

/// What a streaming fetch's items said: (INDEX, uid, bytes).
static STREAMED: Mutex<Vec<(u64, u64, Vec<u8>)>> = Mutex::new(Vec::new());

unsafe extern "C" fn keep_item(c: *const herald_completion) {
    let r = (*c).result;
    let mut len = 0;
    let p = herald_result_bytes(r, 0, &mut len);
    let bytes = std::slice::from_raw_parts(p, len).to_vec();
    STREAMED.lock().unwrap().push((
        herald_result_int(r, 0, HERALD_FIELD_INDEX),
        herald_result_uid(r, 0),
        bytes,
    ));
}

#[test]
fn streaming_fetch_delivers_every_message() {
    let cy = Cyrus::start();
    let c = client(&cy, &[]);
    let msgs: Vec<Vec<u8>> = (0..50)
        .map(|i| raw_message(&format!("s{i}"), 5000 + i * 100))
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let r = c.done(c.imap_append("INBOX", &refs, None));
    assert!(r.ok(), "{r:?}");
    let (m, u) = (CString::new("INBOX").unwrap(), CString::new("1:*").unwrap());
    let r = c.done(c.submit(|cb, t, op| {
        herald_imap_fetch_stream_async(
            c.c,
            m.as_ptr(),
            u.as_ptr(),
            HERALD_FETCH_BODY,
            Some(keep_item),
            cb,
            t,
            op,
        )
    }));
    assert!(r.ok(), "{r:?}");
    let got = STREAMED.lock().unwrap().clone();
    assert_eq!(got.len(), 50);
    for (k, (index, uid, bytes)) in got.iter().enumerate() {
        assert_eq!(*index, k as u64 + 1);
        assert_eq!(*uid, k as u64 + 1);
        assert_eq!(bytes, &msgs[k]);
    }
    let _: *mut c_void = c.token();
}

#[test]
fn a_multiappend_batch_refused_for_one_bad_message_is_retried_one_by_one() {
    let cy = Cyrus::start();
    let c = client(&cy, &[]);
    // 30 messages of 300 KB: MULTIAPPEND batches of 13, 13 and 4 (at most
    // 4 MiB each). Cyrus refuses message 5 (bare LF) and message 20 (a
    // header line without a name),
    // and with each the whole batch it is in. (herald itself refuses NUL
    // bytes at the call.)
    let mut msgs: Vec<Vec<u8>> = (0..30).map(|i| raw_message(&format!("m{i}"), 300_000)).collect();
    msgs[4] = b"Subject: bare\nX: y\n\nbody\n".to_vec();
    msgs[19] = b"Subject: x\r\nno header name here\r\n\r\nbody\r\n".to_vec();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let r = c.done(c.imap_append("INBOX", &refs, None));
    assert_eq!(r.status, HERALD_STATUS_REJECTED, "{r:?}");
    assert!(r.detail.contains("APPEND of message 5:"), "{}", r.detail);
    assert!(
        r.detail.contains("28 of 30 messages were appended"),
        "{}",
        r.detail
    );
    assert_eq!(r.items.len(), 30, "one item per message tried");
    let index = |it: &Item| herald_index(it);
    for (k, it) in r.items.iter().enumerate() {
        assert_eq!(index(it), k as u64 + 1);
        match k {
            4 | 19 => {
                assert_eq!(it.uid, 0);
                let text = &it.strs[&HERALD_FIELD_REPLY_TEXT];
                let want = if k == 4 { "bare newlines" } else { "header" };
                assert!(text.contains(want), "message {}: {text}", k + 1);
            }
            _ => assert!(it.uid > 0, "message {} was stored: {it:?}", k + 1),
        }
    }
    // The mailbox holds exactly the good ones, byte for byte.
    let f = c.done(c.imap_fetch("INBOX", "1:*", HERALD_FETCH_BODY));
    assert_eq!(f.items.len(), 28);
    for it in &r.items {
        if it.uid == 0 {
            continue;
        }
        let stored = f.items.iter().find(|x| x.uid == it.uid).expect("stored");
        assert_eq!(stored.bytes.as_ref(), Some(&msgs[index(it) as usize - 1]));
    }
}

/// HERALD_FIELD_INDEX of an append result item (record_of does not copy it).
fn herald_index(it: &Item) -> u64 {
    it.ints.get(&HERALD_FIELD_INDEX).copied().unwrap_or(0)
}

#[test]
fn flags_search_copy_move_and_expunge() {
    let cy = Cyrus::start();
    let c = client(&cy, &[]);
    assert!(c.done(c.imap_create("Archive")).ok());
    let msgs: Vec<Vec<u8>> = (0..4).map(|i| raw_message(&format!("m{i}"), 500)).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let u = uids(&c.done(c.imap_append("INBOX", &refs, Some("\\Seen"))));
    assert_eq!(u.len(), 4);
    assert!(c
        .done(c.imap_store("INBOX", &u[0].to_string(), 1, "\\Flagged $Work"))
        .ok());
    assert!(c
        .done(c.imap_store("INBOX", &u[1].to_string(), -1, "\\Seen"))
        .ok());
    assert!(c.done(c.imap_copy("INBOX", &u[0].to_string(), "Archive")).ok());
    let r = c.done(c.imap_move("INBOX", &u[1].to_string(), "Archive"));
    assert!(r.ok(), "{r:?}");
    assert!(c
        .done(c.imap_store("INBOX", &u[3].to_string(), 1, "\\Deleted"))
        .ok());
    assert!(c.done(c.imap_expunge("INBOX")).ok());

    // Another client sees it all.
    let other = client(&cy, &[]);
    let r = other.done(other.imap_search("INBOX", "ALL"));
    assert_eq!(uids(&r), [u[0], u[2]], "{r:?}");
    let r = other.done(other.imap_search("Archive", "FLAGGED"));
    assert_eq!(r.items.len(), 1, "{r:?}");
    let r = other.done(other.imap_search("Archive", "UNSEEN"));
    assert_eq!(r.items.len(), 1, "the moved message kept its flags: {r:?}");
    let r = other.done(other.imap_fetch("INBOX", "1:*", HERALD_FETCH_FLAGS));
    let flags = &r.items[0].strs[&HERALD_FIELD_FLAGS];
    assert!(flags.contains("\\Flagged") && flags.contains("$Work"), "{flags}");
    let r = other.done(other.imap_search("INBOX", "NOT SUBJECT \"caf\u{e9}\""));
    assert_eq!(uids(&r), [u[0], u[2]], "non-ASCII search text: {r:?}");
}
