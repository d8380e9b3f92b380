//! A fault-injecting TCP proxy between herald and real servers (smtp-sink,
//! Dovecot): each connection gets, at a random but seeded offset, a drop
//! (FIN), a reset, a stall, a truncation, or replies split into 1-byte
//! writes. Thousands of SMTP sends and hundreds of IMAP and POP3 ops run
//! through it; every op must complete exactly once, and every OK must match
//! what the server stored. `HERALD_FAULT_SEED=n` replays a run's faults.

mod api;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use api::imap::*;
use api::*;
use herald_testservers::*;

/// A small seeded generator (xorshift64*), for reproducible faults.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What happens to one proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Both directions closed (FIN) once `after` bytes went one way.
    Drop { after: u64, upstream: bool },
    /// Reset once `after` bytes went one way.
    Reset { after: u64, upstream: bool },
    /// Forwarding stops for `ms` once `after` bytes went one way (and the
    /// connection drops well after).
    Stall { after: u64, upstream: bool, ms: u64 },
    /// The chunk that crosses `after` is cut there, then both sides close.
    Truncate { after: u64, upstream: bool },
}

/// One connection's faults: one of the above, and maybe every byte from the
/// server in a write of its own (replies split into 1-byte writes).
#[derive(Clone, Copy, Debug)]
struct Faults {
    fault: Fault,
    split: bool,
}

impl Fault {
    /// A fault for one connection at an offset below `span.0` of what the
    /// client sends or below `span.1` of what the server sends.
    fn pick(rng: &mut Rng, span: (u64, u64)) -> Faults {
        let upstream = rng.below(2) == 0;
        let after = rng.below(if upstream { span.0 } else { span.1 });
        let fault = match rng.below(10) {
            // A clean connection lives on (until a fault further along).
            0 => Fault::Drop {
                after: after * 8,
                upstream,
            },
            1..=3 => Fault::Drop { after, upstream },
            4 | 5 => Fault::Reset { after, upstream },
            6 | 7 => Fault::Stall {
                after,
                upstream,
                ms: 100 + rng.below(1400),
            },
            _ => Fault::Truncate { after, upstream },
        };
        Faults {
            fault,
            split: rng.below(4) == 0,
        }
    }
}

fn reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        on: i32,
        secs: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const Linger, len: u32) -> i32;
    }
    let l = Linger { on: 1, secs: 0 };
    // SAFETY: a valid socket and a correctly sized option value (SOL_SOCKET, SO_LINGER).
    unsafe { setsockopt(s.as_raw_fd(), 1, 13, &l, 8) };
    let _ = s.shutdown(Shutdown::Both);
}

/// The proxy: 127.0.0.1:port forwards to 127.0.0.1:upstream with faults.
struct FaultProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Mutex<HashMap<&'static str, u64>>>,
}

impl FaultProxy {
    fn start(upstream: u16, seed: u64, span: (u64, u64)) -> FaultProxy {
        let l = TcpListener::bind((HOST, 0)).unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let (stop2, counts2) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let mut rng = Rng::new(seed ^ (n << 20) ^ n);
                        n += 1;
                        let faults = Fault::pick(&mut rng, span);
                        let name = match faults.fault {
                            Fault::Drop { .. } => "drop",
                            Fault::Reset { .. } => "reset",
                            Fault::Stall { .. } => "stall",
                            Fault::Truncate { .. } => "truncate",
                        };
                        let mut counts = counts2.lock().unwrap();
                        *counts.entry(name).or_default() += 1;
                        if faults.split {
                            *counts.entry("split").or_default() += 1;
                        }
                        drop(counts);
                        let Ok(server) = TcpStream::connect((HOST, upstream)) else {
                            continue;
                        };
                        proxy_pair(client, server, faults, stop2.clone());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
        });
        FaultProxy {
            port,
            stop,
            thread: Some(thread),
            counts,
        }
    }

    fn counts(&self) -> HashMap<&'static str, u64> {
        self.counts.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forwards both directions of one connection on two threads.
fn proxy_pair(client: TcpStream, server: TcpStream, faults: Faults, stop: Arc<AtomicBool>) {
    let fault = faults.fault;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let dead = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    for upstream in [true, false] {
        let (mut from, mut to) = if upstream {
            (client.try_clone().unwrap(), server.try_clone().unwrap())
        } else {
            (server.try_clone().unwrap(), client.try_clone().unwrap())
        };
        let (client, server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (dead, stop, _sent) = (dead.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 16 * 1024];
            let mut done = 0u64;
            let close = |rst: bool| {
                dead.store(true, Ordering::SeqCst);
                if rst {
                    reset(&client);
                } else {
                    let _ = client.shutdown(Shutdown::Both);
                }
                let _ = server.shutdown(Shutdown::Both);
            };
            let mut stalled = false;
            loop {
                if dead.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
                    close(false);
                    return;
                }
                let n = match from.read(&mut buf) {
                    Ok(0) => {
                        let _ = to.shutdown(Shutdown::Write);
                        return;
                    }
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(_) => {
                        close(false);
                        return;
                    }
                };
                let chunk = &buf[..n];
                let (after, this_way) = match fault {
                    Fault::Drop { after, upstream: u }
                    | Fault::Reset { after, upstream: u }
                    | Fault::Stall {
                        after, upstream: u, ..
                    }
                    | Fault::Truncate { after, upstream: u } => (after, u == upstream),
                };
                let crosses = this_way && done + n as u64 > after;
                let ok = match fault {
                    Fault::Drop { .. } if crosses => {
                        let keep = (after - done) as usize;
                        let _ = to.write_all(&chunk[..keep.min(n)]);
                        close(false);
                        return;
                    }
                    Fault::Truncate { .. } if crosses => {
                        // Half of what is left of the chunk, then gone.
                        let keep = ((after - done) as usize).min(n) / 2;
                        let _ = to.write_all(&chunk[..keep]);
                        close(false);
                        return;
                    }
                    Fault::Reset { .. } if crosses => {
                        let keep = (after - done) as usize;
                        let _ = to.write_all(&chunk[..keep.min(n)]);
                        close(true);
                        return;
                    }
                    Fault::Stall { .. } if stalled && this_way && done > after.saturating_mul(4) + 4096 => {
                        // A stalled connection does not live for ever either.
                        close(false);
                        return;
                    }
                    Fault::Stall { ms, .. } if crosses && !stalled => {
                        stalled = true;
                        let keep = ((after - done) as usize).min(n);
                        let a = to.write_all(&chunk[..keep]).is_ok();
                        std::thread::sleep(Duration::from_millis(ms));
                        a && to.write_all(&chunk[keep..]).is_ok()
                    }
                    _ if faults.split && !upstream => chunk
                        .iter()
                        .all(|b| to.write_all(std::slice::from_ref(b)).is_ok()),
                    _ => to.write_all(chunk).is_ok(),
                };
                done += n as u64;
                if !ok {
                    close(false);
                    return;
                }
            }
        });
    }
}

fn seed() -> u64 {
    let s = std::env::var("HERALD_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0009);
    eprintln!("fault seed {s} (HERALD_FAULT_SEED={s} replays these faults)");
    s
}

/// Timeouts short enough that stalls cost little, long enough for a loaded machine.
fn fault_opts(port: u16) -> Vec<(u32, Val<'static>)> {
    vec![
        (HERALD_OPT_IO_TIMEOUT_MS, Val::I(1000)),
        (HERALD_OPT_CONNECT_TIMEOUT_MS, Val::I(3000)),
        (HERALD_OPT_OP_TIMEOUT_MS, Val::I(10_000)),
        (HERALD_OPT_PORT, Val::I(port as i64)),
    ]
}

fn tally(records: &[Record]) -> String {
    let mut c: Vec<(u32, usize)> = status_counts(records).into_iter().collect();
    c.sort();
    c.iter()
        .map(|(s, n)| format!("{}: {n}", herald_status_name(*s)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn herald_status_name(s: u32) -> String {
    // SAFETY: herald_status_str returns a static C string for any code.
    unsafe { std::ffi::CStr::from_ptr(herald_status_str(s)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn smtp_sends_through_faults_are_ok_only_when_stored() {
    const N: usize = 5000;
    let sink = SmtpSink::start(&[]);
    let seed = seed();
    let proxy = FaultProxy::start(sink.port, seed, (60_000, 3_000));
    let c = TestClient::smtp_plain(
        proxy.port,
        &[
            (HERALD_OPT_MAX_CONNECTIONS, Val::I(6)),
            (HERALD_OPT_IO_TIMEOUT_MS, Val::I(1000)),
            (HERALD_OPT_CONNECT_TIMEOUT_MS, Val::I(3000)),
            (HERALD_OPT_OP_TIMEOUT_MS, Val::I(10_000)),
        ],
    );
    let started = Instant::now();
    let mut ids = HashMap::new();
    for i in 0..N {
        let body = format!(
            "Subject: fault {i}\r\nX-Fault-Id: {i}\r\n\r\n{}.leading dot\r\nend {i}\r\n",
            "line of the message body\r\n".repeat(20)
        );
        let op = c
            .send_raw("a@fault.test", &["b@fault.test"], body.as_bytes())
            .unwrap();
        ids.insert(op, i);
    }
    assert_eq!(
        c.flush(Duration::from_secs(150)),
        HERALD_STATUS_OK,
        "every send completes"
    );
    let took = started.elapsed();
    let recs = c.free();
    let ops: Vec<u64> = ids.keys().copied().collect();
    assert_exactly_once(&recs, &ops);

    let dumps = sink.wait_for_dumps(recs.iter().filter(|r| r.ok()).count(), Duration::from_secs(10));
    let mut stored: HashMap<usize, usize> = HashMap::new();
    for d in &dumps {
        let id: usize = d
            .header("X-Fault-Id")
            .expect("every dump is ours")
            .trim()
            .parse()
            .unwrap();
        let want = format!(
            "Subject: fault {id}\nX-Fault-Id: {id}\n\n{}.leading dot\nend {id}\n",
            "line of the message body\n".repeat(20)
        );
        assert_eq!(d.body_str(), want, "stored byte for byte");
        *stored.entry(id).or_default() += 1;
    }
    let mut ok_not_stored = Vec::new();
    for r in recs.iter().filter(|r| r.ok()) {
        let id = ids[&r.op];
        if !stored.contains_key(&id) {
            ok_not_stored.push(id);
        }
    }
    let failed_but_stored = recs
        .iter()
        .filter(|r| !r.ok() && stored.contains_key(&ids[&r.op]))
        .count();
    let duplicates = stored.values().filter(|n| **n > 1).count();
    eprintln!(
        "SMTP through faults: {N} sends in {took:?}; {}; faults {:?}; stored {}, failed but stored {failed_but_stored} \
         (the content went out, the reply was lost), duplicates {duplicates}",
        tally(&recs),
        proxy.counts(),
        stored.len(),
    );
    assert!(ok_not_stored.is_empty(), "OK but not stored: {ok_not_stored:?}");
    for r in recs
        .iter()
        .filter(|r| !r.ok() && stored.contains_key(&ids[&r.op]))
    {
        assert!(
            r.detail.contains("may or may not") || r.status == HERALD_STATUS_TIMEOUT,
            "a message the server stored was reported failed without saying it may have been sent: {r:?}"
        );
    }
    assert!(
        recs.iter().filter(|r| r.ok()).count() > N / 2,
        "most sends get through: {}",
        tally(&recs)
    );
}

#[test]
fn pop3_and_imap_ops_through_faults_match_the_mailbox() {
    let d = Dovecot::start();
    let seed = seed();
    // POP3: bob's maildrop, the truth read without the proxy.
    for i in 0..40 {
        d.append(
            "bob",
            "INBOX",
            format!(
                "Subject: pop {i}\r\nMessage-ID: <pop{i}@fault.test>\r\n\r\n{}end {i}\r\n",
                "pop body line\r\n".repeat(i * 7)
            )
            .as_bytes(),
        );
    }
    let direct = TestClient::pop3(d.pop3_port, HERALD_SECURITY_NONE, "bob", "bobpass", &[]);
    let list = direct.pop3_list_now(Duration::from_secs(20));
    let mut truth = HashMap::new();
    for (uidl, _, _) in &list {
        let op = direct.pop3_retrieve(uidl).unwrap();
        let r = direct.record_of_op(op, Duration::from_secs(20));
        assert!(r.ok(), "{r:?}");
        truth.insert(uidl.clone(), r.items[0].bytes.clone().unwrap());
    }
    drop(direct);

    let proxy = FaultProxy::start(d.pop3_port, seed, (300, 20_000));
    let mut opts = fault_opts(proxy.port);
    opts.push((HERALD_OPT_IO_TIMEOUT_MS, Val::I(1500)));
    let c = TestClient::pop3(proxy.port, HERALD_SECURITY_NONE, "bob", "bobpass", &opts);
    let started = Instant::now();
    let mut asked = HashMap::new();
    for k in 0..300 {
        let uidl = &list[k % list.len()].0;
        asked.insert(c.pop3_retrieve(uidl).unwrap(), uidl.clone());
        if k % 10 == 9 {
            // In waves: ops queued together are pipelined on one session and share its fate.
            assert_eq!(c.flush(Duration::from_secs(30)), HERALD_STATUS_OK);
        }
    }
    assert_eq!(c.flush(Duration::from_secs(90)), HERALD_STATUS_OK);
    let recs = c.free();
    let ops: Vec<u64> = asked.keys().copied().collect();
    assert_exactly_once(&recs, &ops);
    for r in recs.iter().filter(|r| r.ok()) {
        let uidl = &asked[&r.op];
        assert_eq!(
            r.items[0].bytes.as_ref(),
            Some(&truth[uidl]),
            "POP3 retrieve of {uidl}"
        );
    }
    eprintln!(
        "POP3 through faults: 300 retrieves in {:?}; {}; faults {:?}",
        started.elapsed(),
        tally(&recs),
        proxy.counts()
    );
    if std::env::var_os("HERALD_FAULT_VERBOSE").is_some() {
        let mut details: HashMap<&str, usize> = HashMap::new();
        for r in recs.iter().filter(|r| !r.ok()) {
            *details.entry(r.detail.as_str()).or_default() += 1;
        }
        eprintln!("POP3 failures: {details:#?}");
    }
    assert!(recs.iter().any(|r| r.ok()), "some retrieves get through");
    drop(proxy);

    // IMAP: appends through the proxy, then fetches through it; the truth
    // is a fetch without it.
    let proxy = FaultProxy::start(d.imap_port, seed ^ 0x1111, (5_000, 5_000));
    let c = TestClient::imap_plain(proxy.port, &fault_opts(proxy.port));
    let started = Instant::now();
    let mut appended = HashMap::new();
    for i in 0..150 {
        let m = format!(
            "Subject: imap {i}\r\nMessage-ID: <imap{i}@fault.test>\r\n\r\n{}end {i}\r\n",
            "imap body line\r\n".repeat(i * 3)
        );
        appended.insert(c.imap_append("INBOX", &[m.as_bytes()], None).unwrap(), m);
        if i % 10 == 9 {
            assert_eq!(c.flush(Duration::from_secs(30)), HERALD_STATUS_OK);
        }
    }
    assert_eq!(c.flush(Duration::from_secs(90)), HERALD_STATUS_OK);
    let append_recs = c.records();
    let ops: Vec<u64> = appended.keys().copied().collect();
    assert_exactly_once(&append_recs, &ops);

    let direct = TestClient::imap_plain(d.imap_port, &[]);
    let op = direct.imap_fetch("INBOX", "1:*", HERALD_FETCH_BODY).unwrap();
    let all = direct.result(op);
    assert!(all.ok(), "{all:?}");
    let by_uid: HashMap<u64, Vec<u8>> = all
        .items
        .iter()
        .map(|it| (it.uid, it.bytes.clone().unwrap_or_default()))
        .collect();
    let stored: HashSet<&[u8]> = by_uid.values().map(|v| v.as_slice()).collect();
    for r in append_recs.iter().filter(|r| r.ok()) {
        let m = &appended[&r.op];
        assert!(
            stored.contains(m.as_bytes()),
            "IMAP append OK but not stored: {r:?}"
        );
    }
    let mut fetches = HashMap::new();
    let uids: Vec<u64> = by_uid.keys().copied().collect();
    for k in 0..150 {
        let uid = uids[k % uids.len()];
        fetches.insert(
            c.imap_fetch("INBOX", &uid.to_string(), HERALD_FETCH_BODY)
                .unwrap(),
            uid,
        );
        if k % 10 == 9 {
            assert_eq!(c.flush(Duration::from_secs(30)), HERALD_STATUS_OK);
        }
    }
    assert_eq!(c.flush(Duration::from_secs(90)), HERALD_STATUS_OK);
    let recs: Vec<Record> = c
        .free()
        .into_iter()
        .filter(|r| fetches.contains_key(&r.op))
        .collect();
    let ops: Vec<u64> = fetches.keys().copied().collect();
    assert_exactly_once(&recs, &ops);
    for r in recs.iter().filter(|r| r.ok()) {
        let uid = fetches[&r.op];
        assert_eq!(r.items.len(), 1, "{r:?}");
        assert_eq!(r.items[0].uid, uid);
        assert_eq!(
            r.items[0].bytes.as_ref(),
            Some(&by_uid[&uid]),
            "IMAP fetch of UID {uid}"
        );
    }
    eprintln!(
        "IMAP through faults: 150 appends ({}) and 150 fetches ({}) in {:?}; faults {:?}",
        tally(&append_recs),
        tally(&recs),
        started.elapsed(),
        proxy.counts()
    );
}
