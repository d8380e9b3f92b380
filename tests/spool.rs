//! The durable outbox (HERALD_OPT_SPOOL_DIR) against smtp-sink: a sender
//! killed with SIGKILL at random points, again and again, and a new client
//! on the spool after each kill that recovers what was left. Every message
//! herald_send_spooled_async (or, every other run, herald_send_batch_async)
//! accepted arrives at least once, the only duplicates are messages
//! reported as "outcome unknown", and nothing arrives that was never
//! submitted. Plus recovery's choices, the lock, the
//! limits and what the completions carry.

mod api;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_void, CStr, CString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use api::*;
use herald::ffi::spool::*;
use herald_testservers::*;

const MESSAGES: usize = 2000;
const KILLS: usize = 20;

/// The test sender, built by cargo as an example of this package.
fn child_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = examples.join("spool_child");
    if !path.exists() {
        // `cargo test --test spool` alone does not build examples.
        let st = Command::new(env!("CARGO"))
            .args(["build", "--example", "spool_child"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(st.success(), "building examples/spool_child.rs");
    }
    path
}

/// What one recovery saw: the messages found (spool id, state, `m<i>` of
/// its Message-ID), the completions (status, spool id, spool state).
#[derive(Default)]
struct Recovery {
    found: Mutex<Vec<(String, u32, String)>>,
    done: Mutex<Vec<(u32, String, u64)>>,
    decision: u32,
}

unsafe extern "C" fn decide(user: *mut c_void, e: *const herald_spool_entry) -> u32 {
    let r = &*(user as *const Recovery);
    let e = &*e;
    let id = CStr::from_ptr(e.spool_id).to_string_lossy().into_owned();
    let mid = CStr::from_ptr(e.message_id).to_string_lossy().into_owned();
    let name = mid
        .strip_prefix('<')
        .and_then(|m| m.strip_suffix("@spool.test>"))
        .unwrap_or_else(|| panic!("the Message-ID is kept: {mid}"))
        .to_string();
    if id.starts_with('m') {
        // The caller's id (a batch's messages get herald's).
        assert_eq!(id, name, "the Message-ID is kept");
    }
    assert_eq!(e.n_rcpt, 1);
    r.found.lock().unwrap().push((id, e.state, name));
    r.decision
}

unsafe extern "C" fn on_done(c: *const herald_completion) {
    let c = &*c;
    let r = &*(c.user_token as *const Recovery);
    let id = herald_result_str(c.result, 0, HERALD_FIELD_SPOOL_ID);
    let id = if id.is_null() {
        String::new()
    } else {
        CStr::from_ptr(id).to_string_lossy().into_owned()
    };
    let state = herald_result_int(c.result, 0, HERALD_FIELD_SPOOL_STATE);
    r.done.lock().unwrap().push((c.status, id, state));
}

fn spool_client(port: u16, dir: &Path, extra: &[(u32, Val)]) -> Result<TestClient, (u32, String)> {
    let d = dir.to_string_lossy().into_owned();
    let mut opts = vec![
        (HERALD_OPT_HOST, Val::S("127.0.0.1")),
        (HERALD_OPT_PORT, Val::I(port as i64)),
        (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)),
        (HERALD_OPT_SPOOL_DIR, Val::S(&d)),
    ];
    for (id, v) in extra {
        opts.push((
            *id,
            match v {
                Val::S(s) => Val::S(s),
                Val::I(i) => Val::I(*i),
            },
        ));
    }
    TestClient::new(HERALD_PROTOCOL_SMTP, &opts)
}

/// A new client on the spool recovers it with `decision` for every
/// message, waits for their completions and is freed.
fn recover(port: u16, dir: &Path, decision: u32) -> Recovery {
    let c = spool_client(port, dir, &[]).expect("a client on the spool");
    let r = Recovery {
        decision,
        ..Default::default()
    };
    let p = &r as *const Recovery as *mut c_void;
    let mut n = usize::MAX;
    assert_eq!(
        herald_spool_recover(c.c, Some(decide), p, Some(on_done), p, &mut n),
        0
    );
    assert_eq!(c.flush(Duration::from_secs(120)), HERALD_STATUS_OK);
    let mut again = usize::MAX;
    assert_eq!(
        herald_spool_recover(c.c, None, p, Some(on_done), p, &mut again),
        0
    );
    assert_eq!(again, 0, "only the first recovery finds anything");
    drop(c.free());
    let found = r.found.lock().unwrap().clone();
    let done = r.done.lock().unwrap().clone();
    let sent = found.iter().filter(|_| decision == HERALD_SPOOL_SEND).count();
    assert_eq!(n, sent);
    assert_eq!(done.len(), sent, "exactly one completion per recovered message");
    for (status, id, state) in &done {
        assert_eq!(*status, HERALD_STATUS_OK, "{id}");
        let f = found
            .iter()
            .find(|f| &f.0 == id)
            .expect("a completion names a found message");
        assert_eq!(*state, f.1 as u64, "{id}");
    }
    r
}

/// Message numbers of `m<i>@spool.test` Message-IDs in the sink's dumps, with their counts.
fn arrivals(dump_dir: &Path) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for e in std::fs::read_dir(dump_dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&data);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Message-ID: <m") {
                if let Some(n) = rest.strip_suffix("@spool.test>").and_then(|n| n.parse().ok()) {
                    *seen.entry(n).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}

fn number(id: &str) -> usize {
    id.trim_start_matches('m').parse().unwrap()
}

/// Runs the sender from `start`; kills it after `kill_after` (None: lets it
/// finish). The ids it reported accepted, and whether it was killed while
/// still running.
fn run_child(
    port: u16,
    dir: &Path,
    start: usize,
    kill_after: Option<Duration>,
    batch: usize,
) -> (Vec<usize>, bool) {
    let mut child = Command::new(child_exe())
        .args([
            port.to_string(),
            dir.to_string_lossy().into_owned(),
            start.to_string(),
            MESSAGES.to_string(),
            "4".into(),
            "1".into(),
            batch.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("ok ").map(number))
            .collect::<Vec<usize>>()
    });
    let killed = match kill_after {
        Some(t) => {
            std::thread::sleep(t);
            let running = child.try_wait().unwrap().is_none();
            let _ = child.kill(); // SIGKILL
            child.wait().unwrap();
            running
        }
        None => {
            assert!(child.wait().unwrap().success(), "the sender finishes");
            false
        }
    };
    (reader.join().unwrap(), killed)
}

#[test]
fn nothing_accepted_is_lost_when_the_sender_is_killed() {
    require_servers();
    let sink = SmtpSink::start(&[]);
    let tmp = TempDir::new("spool-kill");
    let dir = tmp.path().join("spool");
    let t0 = Instant::now();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let (mut accepted, mut recovered, mut unknown) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut start = 0;
    let (mut kills, mut tries) = (0, 0);
    while start < MESSAGES {
        let kill = (kills < KILLS && tries < 3 * KILLS).then(|| {
            tries += 1;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            Duration::from_millis(5 + seed % 60)
        });
        // Every other run submits with herald_send_batch_async, 8 a call.
        let batch = if tries % 2 == 0 { 1 } else { 8 };
        let (got, killed) = run_child(sink.port, &dir, start, kill, batch);
        kills += killed as usize;
        let n = got.len();
        accepted.extend(got);
        let r = recover(sink.port, &dir, HERALD_SPOOL_SEND);
        println!(
            "from m{start}, killed after {kill:?}: {n} accepted, {} recovered",
            r.found.lock().unwrap().len()
        );
        for (_, state, name) in r.found.lock().unwrap().iter() {
            recovered.insert(number(name));
            if *state == HERALD_SPOOL_UNKNOWN_OUTCOME {
                unknown.insert(number(name));
            }
        }
        let last = accepted.last().max(recovered.last()).copied();
        start = start.max(last.map_or(0, |n| n + 1));
    }
    let expected = accepted.union(&recovered).count();
    sink.wait_for_dumps(expected, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let got = arrivals(&sink.dump_dir);
    let lost: Vec<&usize> = accepted.iter().filter(|n| !got.contains_key(n)).collect();
    let lost_recovered: Vec<&usize> = recovered.iter().filter(|n| !got.contains_key(n)).collect();
    let dups: BTreeSet<usize> = got.iter().filter(|(_, c)| **c > 1).map(|(n, _)| *n).collect();
    let stray: Vec<&usize> = got
        .keys()
        .filter(|n| !accepted.contains(n) && !recovered.contains(n))
        .collect();
    println!(
        "{kills} kills in {:?}: {} accepted, {} recovered ({} outcome unknown), {} arrived, {} twice",
        t0.elapsed(),
        accepted.len(),
        recovered.len(),
        unknown.len(),
        got.len(),
        dups.len()
    );
    assert!(lost.is_empty(), "accepted but never arrived: {lost:?}");
    assert!(
        lost_recovered.is_empty(),
        "recovered and sent but never arrived: {lost_recovered:?}"
    );
    let unreported: Vec<&usize> = dups.difference(&unknown).collect();
    assert!(
        unreported.is_empty(),
        "arrived twice without being reported outcome unknown: {unreported:?}"
    );
    assert!(stray.is_empty(), "arrived but never submitted: {stray:?}");
    assert!(
        kills >= 10 && accepted.len() >= MESSAGES / 2,
        "the test did what it says"
    );
}

fn message(i: usize) -> Message {
    let m = Message::new()
        .from("sender@example.org")
        .to("rcpt@example.org")
        .subject("spooled")
        .text("hello\n");
    let mid = CString::new(format!("<m{i}@spool.test>")).unwrap();
    herald_message_add_header(m.0, c"Message-ID".as_ptr(), mid.as_ptr());
    m
}

fn send_spooled(c: &TestClient, m: &Message, id: Option<&str>) -> Result<u64, u32> {
    let id = id.map(|s| CString::new(s).unwrap());
    let p = id.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    c.submit(|cb, token, op| herald_send_spooled_async(c.c, m.0, p, cb, token, op))
}

#[test]
fn recovery_choices_the_lock_and_the_limit() {
    require_servers();
    // A server that never answers DATA in time: messages stay in the spool.
    let sink = SmtpSink::start(&["-w", "30"]);
    let tmp = TempDir::new("spool-choices");
    let dir = tmp.path().join("spool");
    let c = spool_client(sink.port, &dir, &[(HERALD_OPT_SPOOL_MAX_MESSAGES, Val::I(3))]).unwrap();
    let second = spool_client(sink.port, &dir, &[])
        .err()
        .expect("the spool is locked");
    assert_eq!(second.0, HERALD_STATUS_IO);
    assert!(
        second.1.contains("in use by another herald client"),
        "{}",
        second.1
    );
    for i in 0..3 {
        send_spooled(&c, &message(i), Some(&format!("m{i}"))).unwrap();
    }
    assert_eq!(
        send_spooled(&c, &message(3), Some("m3")),
        Err(HERALD_STATUS_LIMIT)
    );
    assert!(last_error().contains("SPOOL_MAX_MESSAGES"), "{}", last_error());
    // Freed with the three pending: cancelled, and kept in the spool.
    let records = c.free();
    assert_eq!(records.len(), 3);
    assert!(records
        .iter()
        .all(|r| r.cancelled && r.detail.contains("stays in the spool")));
    assert!(records
        .iter()
        .all(|r| r.items[0].strs[&HERALD_FIELD_MESSAGE_ID].ends_with("@spool.test>")));
    // Keep them all; then drop them all: nothing is sent either time.
    let r = recover(sink.port, &dir, HERALD_SPOOL_KEEP);
    assert_eq!(r.found.lock().unwrap().len(), 3);
    let r = recover(sink.port, &dir, HERALD_SPOOL_DROP);
    let found = r.found.lock().unwrap().clone();
    let ids: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "m2"], "in the order they were submitted");
    // Those a connection had started on may have reached the server (the
    // kill test sees those); the ones still queued had not.
    assert!(found
        .iter()
        .all(|f| [HERALD_SPOOL_PENDING, HERALD_SPOOL_UNKNOWN_OUTCOME].contains(&f.1)));
    let r = recover(sink.port, &dir, HERALD_SPOOL_SEND);
    assert!(r.found.lock().unwrap().is_empty(), "dropped ones are gone");
    assert_eq!(sink.count_dumps(), 0);
}

#[test]
fn completions_carry_the_spool_id_and_raw_messages_get_a_message_id() {
    require_servers();
    let sink = SmtpSink::start(&[]);
    let tmp = TempDir::new("spool-ids");
    let dir = tmp.path().join("spool");
    let c = spool_client(sink.port, &dir, &[(HERALD_OPT_SPOOL_SYNC, Val::I(0))]).unwrap();
    send_spooled(&c, &message(1), Some("caller-id")).unwrap();
    send_spooled(&c, &message(2), None).unwrap();
    c.send_raw(
        "sender@example.org",
        &["rcpt@example.org"],
        b"Subject: raw\r\n\r\nno id\r\n",
    )
    .unwrap();
    assert_eq!(c.flush(Duration::from_secs(60)), HERALD_STATUS_OK);
    let records = c.records();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(Record::ok));
    let mids: Vec<String> = records
        .iter()
        .map(|r| r.items[0].strs.get(&HERALD_FIELD_MESSAGE_ID).cloned().unwrap())
        .collect();
    assert!(mids.contains(&"<m1@spool.test>".to_string()), "{mids:?}");
    assert!(mids.contains(&"<m2@spool.test>".to_string()), "{mids:?}");
    assert!(mids.iter().any(|m| m.ends_with("@herald.spool>")), "{mids:?}");
    let dumps = sink.wait_for_dumps(3, Duration::from_secs(10));
    assert!(dumps.iter().any(|d| d
        .header("Message-ID")
        .is_some_and(|v| v.ends_with("@herald.spool>"))));
    drop(c.free());
    let r = recover(sink.port, &dir, HERALD_SPOOL_SEND);
    assert!(
        r.found.lock().unwrap().is_empty(),
        "completed messages leave the spool"
    );
    // A spool id on a client without a spool is refused.
    let plain = TestClient::smtp_plain(sink.port, &[]);
    assert_eq!(
        send_spooled(&plain, &message(3), Some("x")),
        Err(HERALD_STATUS_INVALID_ARGUMENT)
    );
}

/// `herald_send_batch_async` on `c`: (status, accepted, their ops).
fn send_batch(c: &TestClient, msgs: &[*const herald_message]) -> (u32, usize, Vec<u64>) {
    let tokens = vec![c.token(); msgs.len()];
    let mut ops = vec![0u64; msgs.len()];
    let mut n = usize::MAX;
    let st = herald_send_batch_async(
        c.c,
        msgs.as_ptr(),
        msgs.len(),
        Some(record_completion),
        tokens.as_ptr(),
        ops.as_mut_ptr(),
        &mut n,
    );
    ops.truncate(n.min(msgs.len()));
    (st, n, ops)
}

#[test]
fn a_batch_is_spooled_with_one_wait_and_stops_at_the_first_refused() {
    require_servers();
    let sink = SmtpSink::start(&[]);
    let tmp = TempDir::new("spool-batch");
    let dir = tmp.path().join("spool");
    let c = spool_client(sink.port, &dir, &[]).unwrap();
    let msgs: Vec<Message> = (0..45).map(message).collect();
    let ptrs: Vec<*const herald_message> = msgs.iter().map(|m| m.0 as *const herald_message).collect();
    let (st, n, ops) = send_batch(&c, &ptrs[..40]);
    assert_eq!((st, n), (HERALD_STATUS_OK, 40), "{}", last_error());
    assert!(ops.iter().all(|&op| op != 0));
    assert_eq!(ops.iter().collect::<BTreeSet<_>>().len(), 40, "an op each");
    // A NULL message at index 3: the three before it are accepted, the rest not.
    let bad = [ptrs[40], ptrs[41], ptrs[42], std::ptr::null(), ptrs[43]];
    let (st, n, ops) = send_batch(&c, &bad);
    assert_eq!((st, n, ops.len()), (HERALD_STATUS_INVALID_ARGUMENT, 3, 3));
    assert!(last_error().starts_with("msgs[3]: "), "{}", last_error());
    assert_eq!(c.flush(Duration::from_secs(60)), HERALD_STATUS_OK);
    let records = c.records();
    assert_eq!(records.len(), 43);
    assert!(records.iter().all(Record::ok));
    let mids: BTreeSet<String> = records
        .iter()
        .map(|r| r.items[0].strs[&HERALD_FIELD_MESSAGE_ID].clone())
        .collect();
    assert_eq!(mids, (0..43).map(|i| format!("<m{i}@spool.test>")).collect());
    sink.wait_for_dumps(43, Duration::from_secs(10));
    assert_eq!(sink.count_dumps(), 43);
    drop(c.free());
    let r = recover(sink.port, &dir, HERALD_SPOOL_SEND);
    assert!(
        r.found.lock().unwrap().is_empty(),
        "completed messages leave the spool"
    );
    // Without a spool it is the same calls, one by one.
    let plain = TestClient::smtp_plain(sink.port, &[]);
    let (st, n, _) = send_batch(&plain, &ptrs[43..45]);
    assert_eq!((st, n), (HERALD_STATUS_OK, 2));
    assert_eq!(plain.flush(Duration::from_secs(60)), HERALD_STATUS_OK);
    assert!(plain.records().iter().all(Record::ok));
    // n = 0 accepts nothing and needs no arrays.
    let mut n = 7;
    let st = herald_send_batch_async(
        plain.c,
        std::ptr::null(),
        0,
        None,
        std::ptr::null(),
        std::ptr::null_mut(),
        &mut n,
    );
    assert_eq!((st, n), (HERALD_STATUS_OK, 0));
}
