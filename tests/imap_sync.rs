//! IMAP sync state against a private Dovecot (which has CONDSTORE, QRESYNC
//! and SPECIAL-USE): UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ on every op
//! that selects, STATUS, a changed UIDVALIDITY refusing cached UIDs, fetch
//! of what changed (CHANGEDSINCE, VANISHED), folder roles, and IDLE
//! notifications that say what changed. Python's imaplib is the other
//! client where another client's changes are needed.

mod api;

use std::process::Command;
use std::time::{Duration, Instant};

use api::imap::*;
use api::*;
use herald_testservers::*;

/// Runs `body` in Python with imaplib logged in as alice (`m`); its output.
fn py(d: &Dovecot, body: &str) -> String {
    let script = format!(
        "import imaplib\nm = imaplib.IMAP4('127.0.0.1', {})\nm.login('alice', 'alicepass')\n{body}\nm.logout()\n",
        d.imap_port
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn int(i: &Item, f: u32) -> u64 {
    i.ints.get(&f).copied().unwrap_or(0)
}

fn append_n(c: &TestClient, mailbox: &str, n: usize) -> Record {
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| raw_message(&format!("m{i}"), 300)).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let r = c.done(c.imap_append(mailbox, &refs, None));
    assert!(r.ok() && r.items.len() == n, "{r:?}");
    r
}

#[test]
fn sync_state_status_and_a_changed_uidvalidity() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    for m in ["Sync", "Copies", "Entw\u{fc}rfe"] {
        assert!(c.done(c.imap_create(m)).ok());
    }
    // A fetch goes in the same write as the EXAMINE it needs; when the
    // EXAMINE fails, the server refuses the fetch too, and the connection
    // stays in step for the next op.
    let r = c.done(c.imap_fetch("Nowhere", "1:*", HERALD_FETCH_FLAGS));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    let appended = append_n(&c, "Sync", 3);
    let v = int(&appended.items[0], HERALD_FIELD_UIDVALIDITY);
    assert!(v > 0, "APPENDUID's uidvalidity: {appended:?}");
    assert!(appended
        .items
        .iter()
        .all(|i| int(i, HERALD_FIELD_UIDVALIDITY) == v));
    let last = appended.items[2].uid;

    // STATUS, without selecting.
    let r = c.done(c.imap_status("Sync"));
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.items.len(), 1);
    let st = &r.items[0];
    assert_eq!(st.strs[&HERALD_FIELD_NAME], "Sync");
    assert_eq!(int(st, HERALD_FIELD_MESSAGES), 3);
    assert_eq!(int(st, HERALD_FIELD_UNSEEN), 3);
    assert_eq!(int(st, HERALD_FIELD_UIDNEXT), last + 1);
    assert_eq!(int(st, HERALD_FIELD_UIDVALIDITY), v);
    assert!(int(st, HERALD_FIELD_HIGHESTMODSEQ) > 0, "{st:?}");
    let r = c.done(c.imap_status_list(&["INBOX", "Entw\u{fc}rfe", "Sync"]));
    let names: Vec<&str> = r
        .items
        .iter()
        .map(|i| i.strs[&HERALD_FIELD_NAME].as_str())
        .collect();
    assert_eq!(names, ["INBOX", "Entw\u{fc}rfe", "Sync"], "{r:?}");
    assert_eq!(int(&r.items[2], HERALD_FIELD_MESSAGES), 3);
    assert!(int(&r.items[1], HERALD_FIELD_UIDVALIDITY) > 0);
    let r = c.done(c.imap_status_list(&["Sync", "Sync"]));
    assert_eq!(r.items.len(), 2, "a name may repeat");
    assert!(
        r.items.iter().all(|i| int(i, HERALD_FIELD_MESSAGES) == 3),
        "{r:?}"
    );
    let r = c.done(c.imap_status_list(&["Sync", "Nowhere", "INBOX"]));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    assert_eq!(r.items.len(), 1, "the mailboxes before the refused one: {r:?}");
    assert_eq!(c.done(c.imap_status("Nowhere")).status, HERALD_STATUS_NOT_FOUND);

    // Every op that selects reports the mailbox's state; fetch and search items carry UIDVALIDITY.
    let r = c.done(c.imap_fetch("Sync", "1:*", HERALD_FETCH_FLAGS | HERALD_FETCH_MODSEQ));
    assert_eq!(r.items.len(), 3);
    assert!(r
        .items
        .iter()
        .all(|i| int(i, HERALD_FIELD_UIDVALIDITY) == v && int(i, HERALD_FIELD_MODSEQ) > 0));
    assert_eq!(r.mailbox[&HERALD_FIELD_UIDVALIDITY], v);
    assert_eq!(r.mailbox[&HERALD_FIELD_UIDNEXT], last + 1);
    assert_eq!(r.mailbox[&HERALD_FIELD_EXISTS], 3);
    assert!(r.mailbox[&HERALD_FIELD_HIGHESTMODSEQ] > 0);
    let r = c.done(c.imap_search("Sync", "SUBJECT \"no such subject\""));
    assert!(r.ok() && r.items.is_empty() && r.has_result, "{r:?}");
    assert_eq!(
        r.mailbox[&HERALD_FIELD_UIDVALIDITY], v,
        "also when nothing matched"
    );
    let r = c.done(c.imap_store("Sync", &last.to_string(), 1, "\\Flagged"));
    assert_eq!(r.mailbox[&HERALD_FIELD_UIDVALIDITY], v, "{r:?}");

    // COPYUID: the copies' UIDs, their source UIDs and the target's UIDVALIDITY.
    let target_v = int(
        &c.done(c.imap_status("Copies")).items[0],
        HERALD_FIELD_UIDVALIDITY,
    );
    let r = c.done(c.imap_copy("Sync", "1:2", "Copies"));
    assert!(r.ok(), "{r:?}");
    let pairs: Vec<(u64, u64)> = r
        .items
        .iter()
        .map(|i| (int(i, HERALD_FIELD_SOURCE_UID), i.uid))
        .collect();
    assert_eq!(pairs.len(), 2, "{r:?}");
    assert_eq!(pairs[0].0, appended.items[0].uid);
    assert!(r
        .items
        .iter()
        .all(|i| int(i, HERALD_FIELD_UIDVALIDITY) == target_v));
    let r = c.done(c.imap_move("Copies", &pairs[0].1.to_string(), "Sync"));
    assert!(r.ok() && r.items.len() == 1, "{r:?}");
    assert_eq!(int(&r.items[0], HERALD_FIELD_UIDVALIDITY), v);
    assert_eq!(int(&r.items[0], HERALD_FIELD_SOURCE_UID), pairs[0].1);

    // UIDs bound to their UIDVALIDITY: applied while it holds, refused after it changed.
    let bound = format!("1:*;UIDVALIDITY={v}");
    let r = c.done(c.imap_fetch("Sync", &bound, HERALD_FETCH_FLAGS));
    assert!(r.ok() && r.items.len() == 4, "{r:?}");
    let r = c.done(c.imap_fetch("Sync", &format!("1:*;UIDVALIDITY={}", v + 1), HERALD_FETCH_FLAGS));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    assert!(r.items.is_empty() && r.detail.contains("UIDVALIDITY"), "{r:?}");
    assert_eq!(r.mailbox[&HERALD_FIELD_UIDVALIDITY], v);
    assert_eq!(
        c.imap_fetch("Sync", "1;UIDVALIDITY=x", 0),
        Err(HERALD_STATUS_INVALID_ARGUMENT)
    );

    // The mailbox is deleted and made again (by this client): same name, new UIDVALIDITY.
    assert!(c.done(c.imap_delete("Sync")).ok());
    assert!(c.done(c.imap_create("Sync")).ok());
    append_n(&c, "Sync", 2);
    let r = c.done(c.imap_store("Sync", &format!("1:*;UIDVALIDITY={v}"), 1, "\\Deleted"));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    let new_v = r.mailbox[&HERALD_FIELD_UIDVALIDITY];
    assert_ne!(new_v, v);
    assert!(
        r.detail.contains(&v.to_string()) && r.detail.contains(&new_v.to_string()),
        "{}",
        r.detail
    );
    let flags = py(
        &d,
        "m.select('Sync', readonly=True)\ntyp, data = m.uid('FETCH', '1:*', '(FLAGS)')\nprint(b' '.join(data).decode())",
    );
    assert!(!flags.contains("Deleted"), "nothing was stored: {flags}");
    let r = c.done(c.imap_fetch("Sync", "1:*", 0));
    assert!(r.items.iter().all(|i| int(i, HERALD_FIELD_UIDVALIDITY) == new_v));

    // And by another client, while herald has the mailbox selected: herald
    // never applies the old UIDs (the op after the change may fail while the
    // server closes the stale selection; then it is refused).
    let r = c.done(c.imap_fetch("Sync", &format!("1:*;UIDVALIDITY={new_v}"), 0));
    assert!(r.ok(), "{r:?}");
    py(
        &d,
        "m.delete('Sync')\nm.create('Sync')\nm.append('Sync', None, None, b'Subject: x\\r\\n\\r\\nx\\r\\n')",
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = c.done(c.imap_store("Sync", &format!("1:*;UIDVALIDITY={new_v}"), 1, "\\Seen"));
        statuses.push((r.status, r.detail.clone()));
        assert_ne!(r.status, HERALD_STATUS_OK, "{r:?}");
        if r.status == HERALD_STATUS_NOT_FOUND && r.mailbox.contains_key(&HERALD_FIELD_UIDVALIDITY) {
            assert_ne!(r.mailbox[&HERALD_FIELD_UIDVALIDITY], new_v);
            break;
        }
    }
    assert_eq!(
        statuses.last().map(|s| s.0),
        Some(HERALD_STATUS_NOT_FOUND),
        "{statuses:?}"
    );
    let seen = py(
        &d,
        "m.select('Sync', readonly=True)\ntyp, data = m.uid('FETCH', '1:*', '(FLAGS)')\nprint(b' '.join(data).decode())",
    );
    assert!(!seen.contains("Seen"), "{seen}");
    let records = c.free();
    assert!(
        records.iter().all(|r| r.status != HERALD_STATUS_PANIC),
        "{records:?}"
    );
}

#[test]
fn changedsince_fetches_only_what_changed_and_vanished_uids() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    assert!(c.done(c.imap_create("Many")).ok());
    let uids: Vec<u64> = append_n(&c, "Many", 60).items.iter().map(|i| i.uid).collect();
    let r = c.done(c.imap_fetch("Many", "1:*", HERALD_FETCH_FLAGS));
    let since = r.mailbox[&HERALD_FIELD_HIGHESTMODSEQ];
    // Another client flags 10 messages and expunges 2.
    let flagged: Vec<u64> = uids.iter().copied().step_by(6).collect();
    let set: Vec<String> = flagged.iter().map(u64::to_string).collect();
    py(
        &d,
        &format!(
            "m.select('Many')\nm.uid('STORE', '{}', '+FLAGS', '(\\\\Flagged)')\nm.uid('STORE', '{},{}', '+FLAGS', '(\\\\Deleted)')\nm.expunge()",
            set.join(","),
            uids[1],
            uids[2]
        ),
    );
    let r = c.done(c.imap_fetch_changed("Many", "1:*", HERALD_FETCH_FLAGS, since));
    assert!(r.ok(), "{r:?}");
    let changed: Vec<u64> = r
        .items
        .iter()
        .filter(|i| int(i, HERALD_FIELD_VANISHED) == 0)
        .map(|i| i.uid)
        .collect();
    let vanished: Vec<u64> = r
        .items
        .iter()
        .filter(|i| int(i, HERALD_FIELD_VANISHED) == 1)
        .map(|i| i.uid)
        .collect();
    assert_eq!(changed, flagged, "{r:?}");
    assert_eq!(vanished, [uids[1], uids[2]], "QRESYNC's VANISHED");
    for i in r.items.iter().filter(|i| int(i, HERALD_FIELD_VANISHED) == 0) {
        assert!(int(i, HERALD_FIELD_MODSEQ) > since);
        assert!(i.strs[&HERALD_FIELD_FLAGS].contains("\\Flagged"));
        assert!(int(i, HERALD_FIELD_UIDVALIDITY) > 0);
    }
    let uids_sorted: Vec<u64> = r.items.iter().map(|i| i.uid).collect();
    assert!(uids_sorted.windows(2).all(|w| w[0] < w[1]), "UID order");
    let now = r.mailbox[&HERALD_FIELD_HIGHESTMODSEQ];
    assert!(now > since);
    // Nothing changed since: nothing fetched.
    let r = c.done(c.imap_fetch_changed("Many", "1:*", HERALD_FETCH_FLAGS, now));
    assert!(r.ok() && r.items.is_empty(), "{r:?}");
    // A wrong UIDVALIDITY is refused here too.
    let r = c.done(c.imap_fetch_changed("Many", "1:*;UIDVALIDITY=1", 0, now));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    assert_eq!(
        c.imap_fetch_changed("Many", "1:*", 1 << 12, 0),
        Err(HERALD_STATUS_INVALID_ARGUMENT)
    );
    c.free();
}

#[test]
fn changedsince_without_condstore_is_unsupported() {
    let d = Dovecot::start_with("imap_capability = IMAP4rev1 SASL-IR LITERAL+ ENABLE IDLE UIDPLUS\n");
    let c = TestClient::imap_plain(d.imap_port, &[]);
    let r = c.done(c.imap_fetch_changed("INBOX", "1:*", 0, 1));
    assert_eq!(r.status, HERALD_STATUS_UNSUPPORTED, "{r:?}");
    let r = c.done(c.imap_status("INBOX"));
    assert!(r.ok(), "{r:?}");
    assert!(!r.items[0].ints.contains_key(&HERALD_FIELD_HIGHESTMODSEQ));
    c.free();
}

#[test]
fn folder_roles_from_special_use() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    for m in ["Sent", "Trash", "Drafts", "Junk", "Archive", "Plain"] {
        assert!(c.done(c.imap_create(m)).ok());
    }
    let r = c.done(c.imap_list("*"));
    let role = |name: &str| {
        r.items
            .iter()
            .find(|i| i.strs[&HERALD_FIELD_NAME] == name)
            .and_then(|i| i.strs.get(&HERALD_FIELD_SPECIAL_USE).cloned())
    };
    assert_eq!(role("Sent").as_deref(), Some("\\Sent"), "{r:?}");
    assert_eq!(role("Trash").as_deref(), Some("\\Trash"));
    assert_eq!(role("Drafts").as_deref(), Some("\\Drafts"));
    assert_eq!(role("Junk").as_deref(), Some("\\Junk"));
    assert_eq!(role("Archive").as_deref(), Some("\\Archive"));
    assert_eq!(role("Plain"), None);
    assert_eq!(role("INBOX"), None);
    c.free();
}

/// Waits until the notifications of `idle` satisfy `done`; all of them.
fn wait_notes(c: &TestClient, idle: u64, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let notes = c.notes(idle);
        if done(&notes) || Instant::now() > deadline {
            return notes;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn change_items(notes: &[Record]) -> Vec<Item> {
    notes.iter().flat_map(|n| n.items[1..].to_vec()).collect()
}

#[test]
fn idle_notifications_say_what_changed_coalesced() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    assert!(c.done(c.imap_create("Watch")).ok());
    let uids: Vec<u64> = append_n(&c, "Watch", 3).items.iter().map(|i| i.uid).collect();
    let idle = c.imap_idle("Watch").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    py(
        &d,
        "m.append('Watch', None, None, b'Subject: new\\r\\n\\r\\nx\\r\\n')",
    );
    let notes = wait_notes(&c, idle, |n| {
        n.iter().any(|r| int(&r.items[0], HERALD_FIELD_EXISTS) == 4)
    });
    let last = notes.last().expect("a notification");
    assert_eq!(int(&last.items[0], HERALD_FIELD_EXISTS), 4, "{notes:?}");
    assert!(int(&last.items[0], HERALD_FIELD_UIDVALIDITY) > 0);
    // A flag change: its UID and flags; an expunge: the VANISHED UID (QRESYNC is on).
    py(
        &d,
        &format!(
            "m.select('Watch')\nm.uid('STORE', '{}', '+FLAGS', '(\\\\Flagged)')\nm.uid('STORE', '{}', '+FLAGS', '(\\\\Deleted)')\nm.expunge()",
            uids[1], uids[0]
        ),
    );
    let notes = wait_notes(&c, idle, |n| {
        let ch = change_items(n);
        ch.iter().any(|i| int(i, HERALD_FIELD_VANISHED) == 1)
            && ch.iter().any(|i| {
                i.uid == uids[1]
                    && i.strs
                        .get(&HERALD_FIELD_FLAGS)
                        .is_some_and(|f| f.contains("\\Flagged"))
            })
    });
    let ch = change_items(&notes);
    let flag = ch.iter().find(|i| {
        i.uid == uids[1]
            && i.strs
                .get(&HERALD_FIELD_FLAGS)
                .is_some_and(|f| f.contains("\\Flagged"))
    });
    assert!(flag.is_some_and(|i| int(i, HERALD_FIELD_MODSEQ) > 0), "{notes:?}");
    assert!(
        flag.is_some_and(|i| int(i, herald::ffi::stream::HERALD_FIELD_INDEX) == 2),
        "its sequence number: {notes:?}"
    );
    let gone: Vec<u64> = ch
        .iter()
        .filter(|i| int(i, HERALD_FIELD_VANISHED) == 1)
        .map(|i| i.uid)
        .collect();
    assert_eq!(gone, [uids[0]], "{notes:?}");
    assert_eq!(int(&notes.last().unwrap().items[0], HERALD_FIELD_EXISTS), 3);

    // 300 flag changes at once: a few notifications, not 300, and none lost.
    append_n(&c, "Watch", 297);
    wait_notes(&c, idle, |n| {
        n.last()
            .is_some_and(|r| int(&r.items[0], HERALD_FIELD_EXISTS) == 300)
    });
    let before = c.notes(idle).len();
    py(
        &d,
        "m.select('Watch')\nm.store('1:*', '+FLAGS', '(\\\\Answered)')",
    );
    let notes = wait_notes(&c, idle, |n| {
        change_items(&n[before..])
            .iter()
            .filter(|i| {
                i.strs
                    .get(&HERALD_FIELD_FLAGS)
                    .is_some_and(|f| f.contains("\\Answered"))
            })
            .count()
            >= 300
    });
    let answered: std::collections::HashSet<u64> = change_items(&notes[before..])
        .iter()
        .filter(|i| {
            i.strs
                .get(&HERALD_FIELD_FLAGS)
                .is_some_and(|f| f.contains("\\Answered"))
        })
        .map(|i| i.uid)
        .collect();
    assert_eq!(answered.len(), 300, "every flag change is reported");
    let delivered = notes.len() - before;
    assert!(
        delivered <= 30,
        "{delivered} notifications for one STORE of 300 messages"
    );
    assert_eq!(c.cancel(idle), HERALD_STATUS_OK);
    assert!(c.result(idle).cancelled);
    c.free();
}

#[test]
fn idle_without_qresync_reports_expunged_sequence_numbers() {
    let d =
        Dovecot::start_with("imap_capability = IMAP4rev1 SASL-IR LITERAL+ ENABLE IDLE UIDPLUS CONDSTORE\n");
    let c = TestClient::imap_plain(d.imap_port, &[]);
    assert!(c.done(c.imap_create("Old")).ok());
    let uids: Vec<u64> = append_n(&c, "Old", 4).items.iter().map(|i| i.uid).collect();
    let idle = c.imap_idle("Old").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Another client expunges the 2nd and 4th message.
    py(
        &d,
        &format!(
            "m.select('Old')\nm.uid('STORE', '{},{}', '+FLAGS', '(\\\\Deleted)')\nm.expunge()",
            uids[1], uids[3]
        ),
    );
    let notes = wait_notes(&c, idle, |n| {
        n.last()
            .is_some_and(|r| int(&r.items[0], HERALD_FIELD_EXISTS) == 2)
    });
    let expunged: Vec<u64> = change_items(&notes)
        .iter()
        .filter_map(|i| i.ints.get(&HERALD_FIELD_EXPUNGED).copied())
        .collect();
    // In the server's order, each relative to the mailbox the ones before
    // left: Dovecot sends 4 then 2; 2 then 3 would say the same.
    assert!(expunged == [4, 2] || expunged == [2, 3], "{notes:?}");
    assert!(change_items(&notes)
        .iter()
        .all(|i| int(i, HERALD_FIELD_VANISHED) == 0));
    assert_eq!(c.cancel(idle), HERALD_STATUS_OK);
    assert!(c.result(idle).cancelled);
    c.free();
}
