//! The reading-mail features against Cyrus IMAP 3.6 (testservers/src/cyrus.rs),
//! as tests/imap_parts.rs and tests/imap_sync.rs check them against Dovecot:
//! parsed messages, ENVELOPE and BODYSTRUCTURE of the crafted messages;
//! sections decoded by the server (BINARY) and by herald (BINARY
//! suppressed); mailbox state, STATUS, CHANGEDSINCE with QRESYNC's
//! VANISHED, UIDVALIDITY-bound UIDs, SPECIAL-USE roles; and IDLE
//! notifications of another client's flag changes and expunges. Python's
//! imaplib is the other client.

mod api;

use std::process::Command;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use api::imap::*;
use api::parts::*;
use api::*;
use herald::ffi::stream::HERALD_FIELD_INDEX;
use herald_testservers::Cyrus;

/// Runs `body` in Python with imaplib logged in as alice (`m`); its output.
fn py(cy: &Cyrus, body: &str) -> String {
    let script = format!(
        "import imaplib\nm = imaplib.IMAP4('127.0.0.1', {})\nm.login('alice', 'alicepass')\n{body}\nm.logout()\n",
        cy.imap_port
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

fn append_n(c: &TestClient, mailbox: &str, n: usize) -> Vec<u64> {
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| raw_message(&format!("m{i}"), 300)).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let r = c.done(c.imap_append(mailbox, &refs, None));
    assert!(r.ok() && r.items.len() == n, "{r:?}");
    uids(&r)
}

/// The UID FETCH lines a client sent while `f` ran.
fn fetches_sent(c: &TestClient, f: impl FnOnce()) -> Vec<String> {
    let lines = logged(c);
    f();
    herald_client_set_log(c.c, 0, None, null_mut());
    let lines = lines.0.lock().unwrap();
    lines
        .iter()
        .filter(|l| l.contains("UID FETCH"))
        .cloned()
        .collect()
}

#[test]
fn parsed_messages_structure_and_sections_as_on_dovecot() {
    let cy = Cyrus::start();
    let c = TestClient::imap_plain(cy.imap_port, &[]);
    check_crafted_fetch(&c);
    let uid = uids(&c.done(c.imap_search("Parts", "ALL")))[0];
    // Cyrus offers BINARY: the server decodes and cuts the range.
    let sent = fetches_sent(&c, || check_sections(&c, uid));
    assert!(
        sent.iter().any(|l| l.contains("BINARY.PEEK[2]<100.250>")),
        "{sent:?}"
    );
    drop(c);
    drop(cy);

    // Without BINARY, herald decodes and cuts the range itself.
    let cy = Cyrus::start_with("suppress_capabilities: BINARY");
    let c = TestClient::imap_plain(cy.imap_port, &[]);
    let uid = store(&c, "Parts")[0];
    let sent = fetches_sent(&c, || check_sections(&c, uid));
    assert!(
        sent.iter().any(|l| l.contains("BODY.PEEK[2.MIME] BODY.PEEK[2]")),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|l| l.contains("BINARY")), "{sent:?}");
}

#[test]
fn mailbox_state_status_changedsince_vanished_and_uidvalidity() {
    let cy = Cyrus::start();
    let c = TestClient::imap_plain(cy.imap_port, &[]);
    assert!(c.done(c.imap_create("Sync")).ok());
    let appended = append_n(&c, "Sync", 6);
    let last = appended[5];

    // Every op that selects reports the mailbox's state.
    let r = c.done(c.imap_fetch("Sync", "1:*", HERALD_FETCH_FLAGS | HERALD_FETCH_MODSEQ));
    assert!(r.ok() && r.items.len() == 6, "{r:?}");
    let v = r.mailbox[&HERALD_FIELD_UIDVALIDITY];
    assert!(v > 0);
    assert_eq!(r.mailbox[&HERALD_FIELD_UIDNEXT], last + 1, "{r:?}");
    assert_eq!(r.mailbox[&HERALD_FIELD_EXISTS], 6);
    let since = r.mailbox[&HERALD_FIELD_HIGHESTMODSEQ];
    assert!(since > 0, "{r:?}");
    assert!(r
        .items
        .iter()
        .all(|i| int(i, HERALD_FIELD_UIDVALIDITY) == v && int(i, HERALD_FIELD_MODSEQ) > 0));

    // STATUS, without selecting.
    let r = c.done(c.imap_status_list(&["Sync", "INBOX"]));
    assert!(r.ok() && r.items.len() == 2, "{r:?}");
    let st = &r.items[0];
    assert_eq!(st.strs[&HERALD_FIELD_NAME], "Sync");
    assert_eq!(int(st, HERALD_FIELD_MESSAGES), 6);
    assert_eq!(int(st, HERALD_FIELD_UNSEEN), 6);
    assert_eq!(int(st, HERALD_FIELD_UIDNEXT), last + 1);
    assert_eq!(int(st, HERALD_FIELD_UIDVALIDITY), v);
    assert_eq!(int(st, HERALD_FIELD_HIGHESTMODSEQ), since, "{st:?}");
    assert_eq!(r.items[1].strs[&HERALD_FIELD_NAME], "INBOX");
    assert_eq!(c.done(c.imap_status("Nowhere")).status, HERALD_STATUS_NOT_FOUND);

    // Another client flags two messages and expunges two.
    py(
        &cy,
        &format!(
            "m.select('Sync')\nm.uid('STORE', '{},{}', '+FLAGS', '(\\\\Flagged)')\nm.uid('STORE', '{},{}', '+FLAGS', '(\\\\Deleted)')\nm.expunge()",
            appended[0], appended[3], appended[1], appended[4]
        ),
    );
    let r = c.done(c.imap_fetch_changed("Sync", "1:*", HERALD_FETCH_FLAGS, since));
    assert!(r.ok(), "{r:?}");
    let of = |vanished: u64| -> Vec<u64> {
        r.items
            .iter()
            .filter(|i| int(i, HERALD_FIELD_VANISHED) == vanished)
            .map(|i| i.uid)
            .collect()
    };
    assert_eq!(of(0), [appended[0], appended[3]], "{r:?}");
    assert_eq!(of(1), [appended[1], appended[4]], "QRESYNC's VANISHED: {r:?}");
    for i in r.items.iter().filter(|i| int(i, HERALD_FIELD_VANISHED) == 0) {
        assert!(int(i, HERALD_FIELD_MODSEQ) > since, "{i:?}");
        assert!(i.strs[&HERALD_FIELD_FLAGS].contains("\\Flagged"), "{i:?}");
    }
    let now = r.mailbox[&HERALD_FIELD_HIGHESTMODSEQ];
    assert!(now > since, "{r:?}");
    assert_eq!(r.mailbox[&HERALD_FIELD_EXISTS], 4);
    // Nothing changed since. Cyrus tells a connection no HIGHESTMODSEQ
    // after another client's expunge (Dovecot does), so the highest MODSEQ
    // herald saw may be below the expunges' and Cyrus names the vanished
    // UIDs again: harmless, they are gone. (Each pooled connection knows
    // what it saw: never less than the flag changes' MODSEQs.)
    let r = c.done(c.imap_fetch_changed("Sync", "1:*", HERALD_FETCH_FLAGS, now));
    assert!(r.ok(), "{r:?}");
    assert!(
        r.items
            .iter()
            .all(|i| int(i, HERALD_FIELD_VANISHED) == 1 && [appended[1], appended[4]].contains(&i.uid)),
        "nothing changed since: {r:?}"
    );
    assert!(r.mailbox[&HERALD_FIELD_HIGHESTMODSEQ] > since, "{r:?}");
    let r = c.done(c.imap_status("Sync"));
    let highest = int(&r.items[0], HERALD_FIELD_HIGHESTMODSEQ);
    assert!(highest >= now, "STATUS knows the expunges' MODSEQs: {r:?}");
    let r = c.done(c.imap_fetch_changed("Sync", "1:*", HERALD_FETCH_FLAGS, highest));
    assert!(
        r.ok() && r.items.is_empty(),
        "nothing since STATUS's HIGHESTMODSEQ: {r:?}"
    );

    // UIDs bound to their UIDVALIDITY: applied while it holds, refused otherwise.
    let r = c.done(c.imap_fetch("Sync", &format!("1:*;UIDVALIDITY={v}"), HERALD_FETCH_FLAGS));
    assert!(r.ok() && r.items.len() == 4, "{r:?}");
    let wrong = format!("1:*;UIDVALIDITY={}", v + 1);
    let r = c.done(c.imap_fetch("Sync", &wrong, HERALD_FETCH_FLAGS));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    assert!(r.items.is_empty() && r.detail.contains("UIDVALIDITY"), "{r:?}");
    let r = c.done(c.imap_store("Sync", &wrong, 1, "\\Seen"));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    let r = c.done(c.imap_fetch_changed("Sync", &wrong, 0, now));
    assert_eq!(r.status, HERALD_STATUS_NOT_FOUND, "{r:?}");
    let r = c.done(c.imap_status("Sync"));
    assert_eq!(int(&r.items[0], HERALD_FIELD_UNSEEN), 4, "nothing was stored");
    assert!(c.free().iter().all(|r| r.status != HERALD_STATUS_PANIC));
}

#[test]
fn folder_roles_from_special_use() {
    let cy = Cyrus::start();
    // Cyrus gives roles to folders created with them (CREATE-SPECIAL-USE).
    py(
        &cy,
        "for name, role in [('Sent', 'Sent'), ('Trash', 'Trash'), ('Drafts', 'Drafts'), ('Junk', 'Junk'), ('Archive', 'Archive')]:\n    typ, data = m._simple_command('CREATE', name + ' (USE (\\\\' + role + '))')\n    assert typ == 'OK', (name, data)",
    );
    let c = TestClient::imap_plain(cy.imap_port, &[]);
    assert!(c.done(c.imap_create("Plain")).ok());
    let r = c.done(c.imap_list("*"));
    assert!(r.ok(), "{r:?}");
    let role = |name: &str| {
        r.items
            .iter()
            .find(|i| i.strs[&HERALD_FIELD_NAME] == name)
            .and_then(|i| i.strs.get(&HERALD_FIELD_SPECIAL_USE).cloned())
    };
    for name in ["Sent", "Trash", "Drafts", "Junk", "Archive"] {
        assert_eq!(role(name), Some(format!("\\{name}")), "{r:?}");
    }
    assert_eq!(role("Plain"), None);
    assert_eq!(role("INBOX"), None);
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

fn flagged(i: &Item) -> bool {
    i.strs
        .get(&HERALD_FIELD_FLAGS)
        .is_some_and(|f| f.contains("\\Flagged"))
}

/// IDLE on `Watch` (3 messages) while another client appends one, flags
/// the 2nd and expunges the 1st; the notifications once `seen` holds for
/// their change items, and the UIDs.
fn idle_sees_changes(
    cy: &Cyrus,
    c: &TestClient,
    seen: impl Fn(&[Item], &[u64]) -> bool,
) -> (Vec<Record>, Vec<u64>) {
    assert!(c.done(c.imap_create("Watch")).ok());
    let uids = append_n(c, "Watch", 3);
    let idle = c.imap_idle("Watch").unwrap();
    // Let the IDLE start (a change before it is reported too, by the SELECT).
    std::thread::sleep(Duration::from_millis(500));
    py(
        cy,
        "m.append('Watch', None, None, b'Subject: new\\r\\n\\r\\nx\\r\\n')",
    );
    let notes = wait_notes(c, idle, |n| {
        n.iter().any(|r| int(&r.items[0], HERALD_FIELD_EXISTS) == 4)
    });
    assert_eq!(
        int(&notes.last().unwrap().items[0], HERALD_FIELD_EXISTS),
        4,
        "{notes:?}"
    );
    py(
        cy,
        &format!(
            "m.select('Watch')\nm.uid('STORE', '{}', '+FLAGS', '(\\\\Flagged)')\nm.uid('STORE', '{}', '+FLAGS', '(\\\\Deleted)')\nm.expunge()",
            uids[1], uids[0]
        ),
    );
    let notes = wait_notes(c, idle, |n| {
        seen(&change_items(n), &uids)
            && n.last()
                .is_some_and(|r| int(&r.items[0], HERALD_FIELD_EXISTS) == 3)
    });
    assert!(seen(&change_items(&notes), &uids), "{notes:?}");
    assert_eq!(
        int(&notes.last().unwrap().items[0], HERALD_FIELD_EXISTS),
        3,
        "{notes:?}"
    );
    assert_eq!(c.cancel(idle), HERALD_STATUS_OK);
    assert!(c.result(idle).cancelled);
    (notes, uids)
}

#[test]
fn idle_notifications_say_what_changed() {
    // QRESYNC (on by default): the flag change by UID, with its MODSEQ; the
    // expunged message's UID, VANISHED.
    let cy = Cyrus::start();
    let c = TestClient::imap_plain(cy.imap_port, &[]);
    let (notes, uids) = idle_sees_changes(&cy, &c, |ch, uids| {
        ch.iter().any(|i| int(i, HERALD_FIELD_VANISHED) == 1)
            && ch.iter().any(|i| i.uid == uids[1] && flagged(i))
    });
    let ch = change_items(&notes);
    let gone: Vec<u64> = ch
        .iter()
        .filter(|i| int(i, HERALD_FIELD_VANISHED) == 1)
        .map(|i| i.uid)
        .collect();
    assert_eq!(gone, [uids[0]], "{notes:?}");
    let flag = ch.iter().find(|i| i.uid == uids[1] && flagged(i)).unwrap();
    assert!(int(flag, HERALD_FIELD_MODSEQ) > 0, "{flag:?}");
    assert_eq!(int(flag, HERALD_FIELD_INDEX), 2, "its sequence number: {flag:?}");
    assert!(ch.iter().all(|i| int(i, HERALD_FIELD_EXPUNGED) == 0));

    // Without QRESYNC Cyrus names changed messages by sequence number only
    // (no UID, no MODSEQ), and expunges by sequence number.
    let cy2 = Cyrus::start_with("suppress_capabilities: QRESYNC");
    let c2 = TestClient::imap_plain(cy2.imap_port, &[]);
    let (notes, _) = idle_sees_changes(&cy2, &c2, |ch, _| {
        ch.iter().any(|i| int(i, HERALD_FIELD_EXPUNGED) == 1)
            && ch.iter().any(|i| int(i, HERALD_FIELD_INDEX) == 2 && flagged(i))
    });
    let ch = change_items(&notes);
    assert!(ch.iter().all(|i| int(i, HERALD_FIELD_VANISHED) == 0), "{notes:?}");
    let expunged: Vec<u64> = ch
        .iter()
        .map(|i| int(i, HERALD_FIELD_EXPUNGED))
        .filter(|&n| n > 0)
        .collect();
    assert_eq!(expunged, [1], "{notes:?}");
    drop(c);
}
