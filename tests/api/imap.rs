//! Wrappers of the herald_imap_* calls for the Rust integration tests.

use std::ffi::{c_char, CString};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub use herald::ffi::imap::*;

use super::*;

/// IDLE notifications seen: (user token, op, EXISTS), from every client.
static CHANGES: Mutex<Vec<(usize, u64, u64)>> = Mutex::new(Vec::new());
static CHANGED: Condvar = Condvar::new();
/// Every IDLE notification seen: (user token, the notification).
static NOTES: Mutex<Vec<(usize, Record)>> = Mutex::new(Vec::new());

/// The on_change callback of test IDLE ops.
pub unsafe extern "C" fn record_change(c: *const herald_completion) {
    let r = record_of(c);
    assert_eq!(r.status, HERALD_STATUS_OK, "a change notification is OK");
    assert!(
        !r.items.is_empty(),
        "a change notification has the mailbox's state first"
    );
    assert_eq!(r.items[0].uid, 0, "the first item is the mailbox's state");
    let exists = r.items[0].ints.get(&HERALD_FIELD_EXISTS).copied().unwrap_or(0);
    let token = (*c).user_token as usize;
    NOTES.lock().unwrap().push((token, r.clone()));
    CHANGES.lock().unwrap().push((token, r.op, exists));
    CHANGED.notify_all();
}

fn cs(s: &str) -> CString {
    CString::new(s).expect("no NUL in test strings")
}

impl TestClient {
    /// An IMAP client of a test Dovecot's plain port (alice), SECURITY NONE.
    pub fn imap_plain(port: u16, extra: &[(u32, Val)]) -> TestClient {
        Self::imap_as(port, "alice", "alicepass", extra)
    }

    pub fn imap_as(port: u16, user: &str, pass: &str, extra: &[(u32, Val)]) -> TestClient {
        let mut opts = vec![
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(port as i64)),
            (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)),
            (HERALD_OPT_USERNAME, Val::S(user)),
            (HERALD_OPT_PASSWORD, Val::S(pass)),
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
        TestClient::new(HERALD_PROTOCOL_IMAP, &opts).expect("IMAP client")
    }

    /// Waits for `op` and returns its completion.
    pub fn result(&self, op: u64) -> Record {
        assert_eq!(
            self.wait(op, Duration::from_secs(120)),
            HERALD_STATUS_OK,
            "op {op} did not complete"
        );
        let found: Vec<Record> = self.records().into_iter().filter(|r| r.op == op).collect();
        assert_eq!(found.len(), 1, "op {op} completed {} times", found.len());
        found.into_iter().next().unwrap()
    }

    /// Submits and waits; panics if the call is refused.
    pub fn done(&self, submitted: Result<u64, u32>) -> Record {
        let op = submitted.unwrap_or_else(|s| panic!("refused at the call: {s} {}", last_error()));
        self.result(op)
    }

    pub fn imap_list(&self, pattern: &str) -> Result<u64, u32> {
        let p = cs(pattern);
        self.submit(|cb, t, op| herald_imap_list_async(self.c, p.as_ptr(), cb, t, op))
    }

    pub fn imap_create(&self, mailbox: &str) -> Result<u64, u32> {
        let m = cs(mailbox);
        self.submit(|cb, t, op| herald_imap_create_async(self.c, m.as_ptr(), cb, t, op))
    }

    pub fn imap_delete(&self, mailbox: &str) -> Result<u64, u32> {
        let m = cs(mailbox);
        self.submit(|cb, t, op| herald_imap_delete_async(self.c, m.as_ptr(), cb, t, op))
    }

    pub fn imap_search(&self, mailbox: &str, criteria: &str) -> Result<u64, u32> {
        let (m, q) = (cs(mailbox), cs(criteria));
        self.submit(|cb, t, op| herald_imap_search_async(self.c, m.as_ptr(), q.as_ptr(), cb, t, op))
    }

    pub fn imap_fetch(&self, mailbox: &str, uids: &str, parts: u32) -> Result<u64, u32> {
        let (m, u) = (cs(mailbox), cs(uids));
        self.submit(|cb, t, op| herald_imap_fetch_async(self.c, m.as_ptr(), u.as_ptr(), parts, cb, t, op))
    }

    pub fn imap_append(&self, mailbox: &str, messages: &[&[u8]], flags: Option<&str>) -> Result<u64, u32> {
        let m = cs(mailbox);
        let f = flags.map(cs);
        let ptrs: Vec<*const u8> = messages.iter().map(|x| x.as_ptr()).collect();
        let lens: Vec<usize> = messages.iter().map(|x| x.len()).collect();
        self.submit(|cb, t, op| {
            herald_imap_append_async(
                self.c,
                m.as_ptr(),
                ptrs.as_ptr(),
                lens.as_ptr(),
                ptrs.len(),
                f.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                cb,
                t,
                op,
            )
        })
    }

    pub fn imap_store(&self, mailbox: &str, uids: &str, mode: i32, flags: &str) -> Result<u64, u32> {
        let (m, u, f) = (cs(mailbox), cs(uids), cs(flags));
        self.submit(|cb, t, op| {
            herald_imap_store_async(self.c, m.as_ptr(), u.as_ptr(), mode, f.as_ptr(), cb, t, op)
        })
    }

    pub fn imap_copy(&self, mailbox: &str, uids: &str, target: &str) -> Result<u64, u32> {
        let (m, u, x) = (cs(mailbox), cs(uids), cs(target));
        self.submit(|cb, t, op| herald_imap_copy_async(self.c, m.as_ptr(), u.as_ptr(), x.as_ptr(), cb, t, op))
    }

    pub fn imap_move(&self, mailbox: &str, uids: &str, target: &str) -> Result<u64, u32> {
        let (m, u, x) = (cs(mailbox), cs(uids), cs(target));
        self.submit(|cb, t, op| herald_imap_move_async(self.c, m.as_ptr(), u.as_ptr(), x.as_ptr(), cb, t, op))
    }

    pub fn imap_expunge(&self, mailbox: &str) -> Result<u64, u32> {
        let m = cs(mailbox);
        self.submit(|cb, t, op| herald_imap_expunge_async(self.c, m.as_ptr(), cb, t, op))
    }

    /// IDLE with notifications recorded (see [`TestClient::changes`]).
    pub fn imap_idle(&self, mailbox: &str) -> Result<u64, u32> {
        let m = cs(mailbox);
        self.submit(|cb, t, op| herald_imap_idle_async(self.c, m.as_ptr(), Some(record_change), cb, t, op))
    }

    /// The notifications `op` (an IDLE of this client) delivered so far.
    pub fn notes(&self, op: u64) -> Vec<Record> {
        let me = self.token() as usize;
        NOTES
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, r)| *t == me && r.op == op)
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub fn imap_status(&self, mailbox: &str) -> Result<u64, u32> {
        let m = cs(mailbox);
        self.submit(|cb, t, op| herald_imap_status_async(self.c, m.as_ptr(), cb, t, op))
    }

    pub fn imap_status_list(&self, mailboxes: &[&str]) -> Result<u64, u32> {
        let ms: Vec<CString> = mailboxes.iter().map(|m| cs(m)).collect();
        let ptrs: Vec<*const c_char> = ms.iter().map(|m| m.as_ptr()).collect();
        self.submit(|cb, t, op| herald_imap_status_list_async(self.c, ptrs.as_ptr(), ptrs.len(), cb, t, op))
    }

    pub fn imap_fetch_changed(&self, mailbox: &str, uids: &str, parts: u32, since: u64) -> Result<u64, u32> {
        let (m, u) = (cs(mailbox), cs(uids));
        self.submit(|cb, t, op| {
            herald_imap_fetch_changed_async(self.c, m.as_ptr(), u.as_ptr(), parts, since, cb, t, op)
        })
    }

    /// The EXISTS counts `op` (an IDLE of this client) reported so far.
    pub fn changes(&self, op: u64) -> Vec<u64> {
        let me = self.token() as usize;
        CHANGES
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, o, _)| *t == me && *o == op)
            .map(|(_, _, n)| *n)
            .collect()
    }

    /// Waits until `op` reports EXISTS `n`; the counts seen.
    pub fn wait_change(&self, op: u64, n: u64, timeout: Duration) -> Vec<u64> {
        let deadline = Instant::now() + timeout;
        let mut g = CHANGES.lock().unwrap();
        loop {
            let me = self.token() as usize;
            let seen: Vec<u64> = g
                .iter()
                .filter(|(t, o, _)| *t == me && *o == op)
                .map(|(_, _, x)| *x)
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            if seen.contains(&n) || left.is_zero() {
                return seen;
            }
            g = CHANGED.wait_timeout(g, left).unwrap().0;
        }
    }
}

/// The UIDs of a search or append result.
pub fn uids(r: &Record) -> Vec<u64> {
    r.items.iter().map(|i| i.uid).collect()
}

/// A NUL-free C string pointer that lives as long as `s`.
pub fn ptr(s: &CString) -> *const c_char {
    s.as_ptr()
}
