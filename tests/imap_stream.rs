//! Streaming fetch against a private Dovecot: items one by one then one
//! final completion (to callbacks and to the completion queue), the bound
//! on what herald holds for a slow caller, cancel, and fetch-to-directory.

mod api;

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use api::imap::*;
use api::*;
use herald::ffi::stream::*;
use herald_testservers::Dovecot;

/// What a stream op's callbacks saw, in order: items and the final completion.
#[derive(Default)]
struct Seen {
    log: Mutex<Vec<Record>>,
    cond: Condvar,
    /// While set, the item callback blocks (a slow caller).
    hold: Mutex<bool>,
    hold_cond: Condvar,
}

impl Seen {
    fn wait_final(&self, timeout: Duration) -> Vec<Record> {
        let g = self.log.lock().unwrap();
        let (g, _) = self
            .cond
            .wait_timeout_while(g, timeout, |l| !l.iter().any(|r| !is_item(r)))
            .unwrap();
        g.clone()
    }

    fn release(&self) {
        *self.hold.lock().unwrap() = false;
        self.hold_cond.notify_all();
    }
}

fn is_item(r: &Record) -> bool {
    r.ok()
        && r.items
            .first()
            .is_some_and(|i| i.ints.contains_key(&HERALD_FIELD_INDEX))
}

/// A completion or item copied out, checking that herald_completion_is_item
/// agrees with its fields.
unsafe fn copy(c: *const herald_completion) -> Record {
    let mut r = record_of(c);
    let res = (*c).result;
    for (i, it) in r.items.iter_mut().enumerate() {
        for f in [HERALD_FIELD_INDEX, HERALD_FIELD_COUNT] {
            let v = herald_result_int(res, i, f);
            if v != 0 {
                it.ints.insert(f, v);
            }
        }
    }
    assert_eq!(
        herald_completion_is_item(c) == 1,
        is_item(&r),
        "is_item agrees with the fields"
    );
    r
}

unsafe extern "C" fn on_item(c: *const herald_completion) {
    let seen = &*((*c).user_token as *const Seen);
    let r = copy(c);
    assert!(is_item(&r), "on_item gets items only: {r:?}");
    seen.log.lock().unwrap().push(r);
    seen.cond.notify_all();
    let g = seen.hold.lock().unwrap();
    drop(seen.hold_cond.wait_while(g, |h| *h).unwrap());
}

unsafe extern "C" fn on_final(c: *const herald_completion) {
    let seen = &*((*c).user_token as *const Seen);
    let r = copy(c);
    assert!(!is_item(&r), "the final completion is no item");
    seen.log.lock().unwrap().push(r);
    seen.cond.notify_all();
}

fn stream(c: &TestClient, mailbox: &str, uids: &str, parts: u32, seen: Option<&Arc<Seen>>) -> u64 {
    let (m, u) = (CString::new(mailbox).unwrap(), CString::new(uids).unwrap());
    let mut op = 0;
    let (item_cb, cb, token): (herald_callback, herald_callback, *mut c_void) = match seen {
        Some(s) => (Some(on_item), Some(on_final), Arc::as_ptr(s) as *mut c_void),
        None => (None, None, std::ptr::null_mut()),
    };
    let s = herald_imap_fetch_stream_async(c.c, m.as_ptr(), u.as_ptr(), parts, item_cb, cb, token, &mut op);
    assert_eq!(s, HERALD_STATUS_OK, "{}", last_error());
    op
}

/// Appends `n` messages of about `size` bytes ("message i" subjects); their bytes by UID.
fn fill(c: &TestClient, mailbox: &str, n: usize, size: usize) -> HashMap<u64, Vec<u8>> {
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| raw_message(&format!("message {i}"), size + i))
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let r = c.done(c.imap_append(mailbox, &refs, None));
    assert!(r.ok(), "{r:?}");
    uids(&r).into_iter().zip(msgs).collect()
}

fn check_items(items: &[Record], stored: &HashMap<u64, Vec<u8>>) {
    for (k, r) in items.iter().enumerate() {
        assert_eq!(r.items.len(), 1, "an item holds one message");
        let it = &r.items[0];
        assert_eq!(
            it.ints[&HERALD_FIELD_INDEX],
            k as u64 + 1,
            "INDEX counts arrivals"
        );
        assert_eq!(
            it.bytes.as_ref(),
            stored.get(&it.uid),
            "UID {} byte-exact",
            it.uid
        );
        assert!(it.strs.contains_key(&HERALD_FIELD_FLAGS));
    }
}

#[test]
fn items_come_one_by_one_then_one_final_completion_to_callbacks_and_the_queue() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    let stored = fill(&c, "INBOX", 40, 3000);

    // Callbacks: 40 items in order, then exactly one final completion with the count.
    let seen = Arc::new(Seen::default());
    let op = stream(
        &c,
        "INBOX",
        "1:*",
        HERALD_FETCH_BODY | HERALD_FETCH_FLAGS,
        Some(&seen),
    );
    let log = seen.wait_final(Duration::from_secs(60));
    assert_eq!(c.wait(op, Duration::from_secs(10)), HERALD_STATUS_OK);
    let (last, items) = log.split_last().expect("a final completion");
    assert!(last.ok(), "{last:?}");
    assert_eq!(last.items.len(), 1);
    assert_eq!(last.items[0].ints[&HERALD_FIELD_COUNT], 40);
    assert_eq!(
        items.len(),
        40,
        "one item per message, all before the final completion"
    );
    assert!(log.iter().all(|r| r.op == op));
    check_items(items, &stored);

    // The queue: items (is_item) then the final completion, nothing after it.
    let op = stream(&c, "INBOX", "5:14", HERALD_FETCH_BODY | HERALD_FETCH_FLAGS, None);
    let mut got = Vec::new();
    loop {
        let p = herald_client_next(c.c, 30_000);
        assert!(!p.is_null(), "the stream's final completion came");
        // SAFETY: a completion from herald_client_next, freed once below.
        let r = unsafe { copy(p) };
        herald_completion_free(p);
        assert_eq!(r.op, op);
        let fin = !is_item(&r);
        got.push(r);
        if fin {
            break;
        }
    }
    let (last, items) = got.split_last().unwrap();
    assert_eq!(last.items[0].ints[&HERALD_FIELD_COUNT], 10);
    check_items(items, &stored);
    assert_eq!(
        items.iter().map(|r| r.items[0].uid).collect::<Vec<_>>(),
        (5..15).collect::<Vec<_>>()
    );
    assert!(
        herald_client_next(c.c, 200).is_null(),
        "nothing after the final completion"
    );

    // An unknown mailbox: no item, one failed completion with a count of 0.
    let seen = Arc::new(Seen::default());
    stream(&c, "Nope", "1:*", HERALD_FETCH_BODY, Some(&seen));
    let log = seen.wait_final(Duration::from_secs(30));
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].status, HERALD_STATUS_NOT_FOUND, "{log:?}");
    assert_eq!(
        log[0].items[0].ints.get(&HERALD_FIELD_COUNT),
        None,
        "a count of 0"
    );
}

#[test]
fn a_slow_item_callback_pauses_the_fetch_and_cancel_ends_it_after_the_items() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    let n = 200;
    fill(&c, "INBOX", n, 1000);
    let seen = Arc::new(Seen::default());
    *seen.hold.lock().unwrap() = true;
    let op = stream(
        &c,
        "INBOX",
        "1:*",
        HERALD_FETCH_BODY | HERALD_FETCH_FLAGS,
        Some(&seen),
    );
    // The first item's callback blocks. Unbounded, all 200 small messages
    // would be read and queued within this second.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.cancel(op), HERALD_STATUS_OK);
    seen.release();
    let log = seen.wait_final(Duration::from_secs(30));
    assert_eq!(c.wait(op, Duration::from_secs(10)), HERALD_STATUS_OK);
    let (last, items) = log.split_last().unwrap();
    assert!(last.cancelled, "{last:?}");
    assert!(!items.is_empty());
    assert!(
        items.len() <= HERALD_STREAM_MAX_HELD_ITEMS as usize,
        "{} items were handed on while the caller held the first one",
        items.len()
    );
    assert_eq!(last.items[0].ints[&HERALD_FIELD_COUNT], items.len() as u64);
    // Nothing comes later, and the client goes on working.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        seen.log.lock().unwrap().len(),
        log.len(),
        "no item after the final completion"
    );
    let r = c.done(c.imap_fetch("INBOX", "1", HERALD_FETCH_FLAGS));
    assert!(r.ok(), "{r:?}");
}

#[test]
fn fetch_to_dir_writes_one_file_per_message_and_lists_them() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    let stored = fill(&c, "INBOX", 30, 20_000);
    let dir = std::env::temp_dir().join(format!("herald-to-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let to_dir = |uids: &str, dir: &std::path::Path| {
        let (m, u) = (CString::new("INBOX").unwrap(), CString::new(uids).unwrap());
        let p = CString::new(dir.to_str().unwrap()).unwrap();
        c.done(c.submit(|cb, t, op| {
            herald_imap_fetch_to_dir_async(c.c, m.as_ptr(), u.as_ptr(), p.as_ptr(), cb, t, op)
        }))
    };
    let r = to_dir("1:*", &dir);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.items.len(), 30);
    for it in &r.items {
        let path = dir.join(format!("{}.eml", it.uid));
        assert_eq!(it.strs[&HERALD_FIELD_NAME], path.to_str().unwrap());
        let data = std::fs::read(&path).unwrap();
        assert_eq!(Some(&data), stored.get(&it.uid), "{} byte-exact", path.display());
        assert_eq!(it.ints[&HERALD_FIELD_SIZE], data.len() as u64);
    }
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 30, "only the messages, no temp files: {names:?}");
    assert!(names.iter().all(|n| n.ends_with(".eml") && !n.starts_with('.')));

    // A missing directory: IO, nothing written.
    let r = to_dir("1:*", &dir.join("missing"));
    assert_eq!(r.status, HERALD_STATUS_IO, "{r:?}");
    assert!(r.detail.contains("missing"), "{}", r.detail);
    std::fs::remove_dir_all(&dir).unwrap();

    // Bad input is refused at the call.
    let (m, u) = (CString::new("INBOX").unwrap(), CString::new("1:*").unwrap());
    let mut op = 0;
    let s = herald_imap_fetch_to_dir_async(
        c.c,
        m.as_ptr(),
        u.as_ptr(),
        std::ptr::null(),
        None,
        std::ptr::null_mut(),
        &mut op,
    );
    assert_eq!(s, HERALD_STATUS_INVALID_ARGUMENT);
    let s = herald_imap_fetch_stream_async(
        c.c,
        m.as_ptr(),
        u.as_ptr(),
        1 << 20,
        None,
        None,
        std::ptr::null_mut(),
        &mut op,
    );
    assert_eq!(s, HERALD_STATUS_INVALID_ARGUMENT);
}

/// The client the item callback frees (set before the stream starts).
static FREE_ME: std::sync::atomic::AtomicPtr<herald_client> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

unsafe extern "C" fn free_client_on_third_item(c: *const herald_completion) {
    let seen = &*((*c).user_token as *const Seen);
    let r = copy(c);
    let third = r.items[0].ints[&HERALD_FIELD_INDEX] == 3;
    seen.log.lock().unwrap().push(r);
    if third {
        herald_client_free(FREE_ME.swap(std::ptr::null_mut(), std::sync::atomic::Ordering::SeqCst));
    }
}

#[test]
fn a_stalled_stream_ends_on_free_from_its_callback_on_free_and_at_its_deadline() {
    let d = Dovecot::start();
    let c = TestClient::imap_plain(d.imap_port, &[]);
    fill(&c, "INBOX", 100, 1000);
    let (m, u) = (CString::new("INBOX").unwrap(), CString::new("1:*").unwrap());

    // Freed from inside an item callback: the free returns, the final completion came.
    let o = options(
        HERALD_PROTOCOL_IMAP,
        &[
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(d.imap_port as i64)),
            (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)),
            (HERALD_OPT_USERNAME, Val::S("alice")),
            (HERALD_OPT_PASSWORD, Val::S("alicepass")),
        ],
    )
    .unwrap();
    let mut raw = std::ptr::null_mut();
    assert_eq!(herald_client_new(o, &mut raw), HERALD_STATUS_OK);
    herald_options_free(o);
    FREE_ME.store(raw, std::sync::atomic::Ordering::SeqCst);
    let seen = Arc::new(Seen::default());
    let mut op = 0;
    let token = Arc::as_ptr(&seen) as *mut c_void;
    let s = herald_imap_fetch_stream_async(
        raw,
        m.as_ptr(),
        u.as_ptr(),
        HERALD_FETCH_BODY,
        Some(free_client_on_third_item),
        Some(on_final),
        token,
        &mut op,
    );
    assert_eq!(s, HERALD_STATUS_OK);
    let log = seen.wait_final(Duration::from_secs(30));
    let (last, items) = log.split_last().expect("a final completion");
    assert!(!is_item(last), "{last:?}");
    assert!(last.cancelled, "{last:?}");
    assert!(
        items.len() >= 3 && items.len() <= 3 + HERALD_STREAM_MAX_HELD_ITEMS as usize,
        "{}",
        items.len()
    );
    assert!(
        FREE_ME.load(std::sync::atomic::Ordering::SeqCst).is_null(),
        "the callback freed the client"
    );

    // Through the queue, nobody taking: the deadline ends it (TIMEOUT, with the count).
    let t = TestClient::imap_plain(d.imap_port, &[(HERALD_OPT_OP_TIMEOUT_MS, Val::I(1500))]);
    let op = stream(&t, "INBOX", "1:*", HERALD_FETCH_BODY, None);
    std::thread::sleep(Duration::from_secs(3));
    let mut items = 0;
    let last = loop {
        let p = herald_client_next(t.c, 10_000);
        assert!(!p.is_null());
        // SAFETY: from herald_client_next, freed at once.
        let r = unsafe { copy(p) };
        herald_completion_free(p);
        assert_eq!(r.op, op);
        if !is_item(&r) {
            break r;
        }
        items += 1;
    };
    assert_eq!(last.status, HERALD_STATUS_TIMEOUT, "{last:?}");
    assert!(
        items <= HERALD_STREAM_MAX_HELD_ITEMS as usize,
        "{items} items were queued"
    );
    assert_eq!(
        last.items[0].ints.get(&HERALD_FIELD_COUNT).copied().unwrap_or(0),
        items as u64
    );

    // Freed with items waiting untaken in the queue: the free returns.
    let q = TestClient::imap_plain(d.imap_port, &[]);
    stream(&q, "INBOX", "1:*", HERALD_FETCH_BODY, None);
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    drop(q);
    eprintln!("freed a client with a stalled stream in {:?}", started.elapsed());
}
