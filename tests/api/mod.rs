//! Rust integration tests drive herald through its C ABI, exactly as C,
//! Delphi or Python programs do: these are thin safe wrappers that record
//! every completion, so tests can check that each op completed exactly once.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use herald::ffi::client::*;
pub use herald::ffi::completion::*;
pub use herald::ffi::imap_sync::*;
pub use herald::ffi::message::*;
pub use herald::ffi::options::*;
pub use herald::ffi::result::*;
pub use herald::ffi::smtp::*;
pub use herald::ffi::*;

pub mod imap;
pub mod parts;
pub mod smtp;

/// A value for an option.
pub enum Val<'a> {
    S(&'a str),
    I(i64),
}

/// One result item, copied out of a completion.
#[derive(Clone, Debug, Default)]
pub struct Item {
    pub uid: u64,
    pub strs: HashMap<u32, String>,
    pub ints: HashMap<u32, u64>,
    pub bytes: Option<Vec<u8>>,
}

/// One completion, copied out during the callback.
#[derive(Clone, Debug)]
pub struct Record {
    pub op: u64,
    pub status: u32,
    pub cancelled: bool,
    pub reply_code: i32,
    pub detail: String,
    pub items: Vec<Item>,
    pub has_result: bool,
    /// The result's mailbox fields (`herald_result_mailbox_int`), those not 0.
    pub mailbox: HashMap<u32, u64>,
}

impl Record {
    pub fn ok(&self) -> bool {
        self.status == HERALD_STATUS_OK
    }
}

const FIELDS: [u32; 32] = [
    HERALD_FIELD_NAME,
    HERALD_FIELD_SUBJECT,
    HERALD_FIELD_FROM,
    HERALD_FIELD_TO,
    HERALD_FIELD_DATE,
    HERALD_FIELD_MESSAGE_ID,
    HERALD_FIELD_FLAGS,
    HERALD_FIELD_SIZE,
    HERALD_FIELD_EXISTS,
    HERALD_FIELD_REPLY_CODE,
    HERALD_FIELD_REPLY_TEXT,
    herald::ffi::stream::HERALD_FIELD_INDEX,
    herald::ffi::stream::HERALD_FIELD_COUNT,
    HERALD_FIELD_CERT_SHA256,
    HERALD_FIELD_CERT_SUBJECT,
    HERALD_FIELD_CERT_ISSUER,
    HERALD_FIELD_CERT_NOT_BEFORE,
    HERALD_FIELD_CERT_NOT_AFTER,
    HERALD_FIELD_CAPABILITIES,
    HERALD_FIELD_SECURITY,
    HERALD_FIELD_AUTH_MECHANISM,
    HERALD_FIELD_UIDVALIDITY,
    HERALD_FIELD_UIDNEXT,
    HERALD_FIELD_HIGHESTMODSEQ,
    HERALD_FIELD_MESSAGES,
    HERALD_FIELD_UNSEEN,
    HERALD_FIELD_VANISHED,
    HERALD_FIELD_MODSEQ,
    HERALD_FIELD_SPECIAL_USE,
    HERALD_FIELD_EXPUNGED,
    HERALD_FIELD_SOURCE_UID,
    HERALD_FIELD_TRUNCATED,
];

/// Copies a completion (valid only during the callback) into a Record.
///
/// # Safety
/// `c` must be a completion herald passed to a callback, or one from herald_client_next.
pub unsafe fn record_of(c: *const herald_completion) -> Record {
    let c = &*c;
    assert!(!c.detail.is_null(), "detail must never be NULL");
    let r = c.result;
    let n = herald_result_count(r);
    let items = (0..n)
        .map(|i| {
            let mut it = Item {
                uid: herald_result_uid(r, i),
                ..Default::default()
            };
            for f in FIELDS {
                let s = herald_result_str(r, i, f);
                if !s.is_null() {
                    it.strs
                        .insert(f, CStr::from_ptr(s).to_string_lossy().into_owned());
                }
                let v = herald_result_int(r, i, f);
                if v != 0 {
                    it.ints.insert(f, v);
                }
            }
            let mut len = 0usize;
            let p = herald_result_bytes(r, i, &mut len);
            if !p.is_null() {
                it.bytes = Some(std::slice::from_raw_parts(p, len).to_vec());
            }
            it
        })
        .collect();
    assert_eq!(
        c.cancelled != 0,
        c.status == HERALD_STATUS_CANCELLED,
        "cancelled iff status CANCELLED"
    );
    Record {
        op: c.op,
        status: c.status,
        cancelled: c.cancelled != 0,
        reply_code: c.reply_code,
        detail: CStr::from_ptr(c.detail).to_string_lossy().into_owned(),
        items,
        has_result: !r.is_null(),
        mailbox: FIELDS
            .iter()
            .map(|&f| (f, herald_result_mailbox_int(r, f)))
            .filter(|(_, v)| *v != 0)
            .collect(),
    }
}

/// Collects completions; the user token of every op points at it.
#[derive(Default)]
pub struct Recorder {
    records: Mutex<Vec<Record>>,
    cond: Condvar,
}

impl Recorder {
    fn push(&self, r: Record) {
        self.records.lock().unwrap().push(r);
        self.cond.notify_all();
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until at least `n` completions arrived (or the timeout passed).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        let mut g = self.records.lock().unwrap();
        while g.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = self.cond.wait_timeout(g, left).unwrap().0;
        }
        g.clone()
    }
}

/// The completion callback every test op uses.
pub unsafe extern "C" fn record_completion(c: *const herald_completion) {
    record_completion_into(&*((*c).user_token as *const Recorder), c);
}

/// Records a completion into `rec` (for callbacks with a token of their own).
///
/// # Safety
/// As for [`record_of`].
pub unsafe fn record_completion_into(rec: &Recorder, c: *const herald_completion) {
    rec.push(record_of(c));
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("test strings have no NUL")
}

pub fn last_error() -> String {
    // SAFETY: herald_last_error returns a valid C string.
    unsafe { CStr::from_ptr(herald_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Makes options, or the failing status and detail.
pub fn options(protocol: u32, opts: &[(u32, Val)]) -> Result<*mut herald_options, (u32, String)> {
    let o = herald_options_new(protocol);
    assert!(!o.is_null());
    for (id, v) in opts {
        let s = match v {
            Val::S(s) => herald_options_set_str(o, *id, cstr(s).as_ptr()),
            Val::I(i) => herald_options_set_int(o, *id, *i),
        };
        if s != HERALD_STATUS_OK {
            let e = (s, last_error());
            herald_options_free(o);
            return Err(e);
        }
    }
    Ok(o)
}

/// A client's log lines: the log callback's `user` points at one.
pub type Log = Mutex<Vec<String>>;

unsafe extern "C" fn log_into(user: *mut c_void, _level: u32, line: *const std::ffi::c_char) {
    let s = CStr::from_ptr(line).to_string_lossy().into_owned();
    (*(user as *const Log)).lock().unwrap().push(s);
}

/// Logs `c` at TRACE into `log` (which must outlive `c`'s logging).
pub fn trace_into(c: &TestClient, log: &Log) {
    let user = log as *const Log as *mut c_void;
    assert_eq!(
        herald_client_set_log(c.c, HERALD_LOG_TRACE, Some(log_into), user),
        HERALD_STATUS_OK
    );
}

/// A herald client and the recorder its ops report to.
pub struct TestClient {
    pub c: *mut herald_client,
    pub rec: Arc<Recorder>,
}

// SAFETY: herald clients may be used from any thread.
unsafe impl Send for TestClient {}
unsafe impl Sync for TestClient {}

impl TestClient {
    pub fn new(protocol: u32, opts: &[(u32, Val)]) -> Result<TestClient, (u32, String)> {
        let o = options(protocol, opts)?;
        let mut c = std::ptr::null_mut();
        let s = herald_client_new(o, &mut c);
        herald_options_free(o);
        if s != HERALD_STATUS_OK {
            return Err((s, last_error()));
        }
        Ok(TestClient {
            c,
            rec: Arc::new(Recorder::default()),
        })
    }

    /// An SMTP client without TLS for a local test server.
    pub fn smtp_plain(port: u16, extra: &[(u32, Val)]) -> TestClient {
        let mut opts = vec![
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(port as i64)),
            (HERALD_OPT_SECURITY, Val::I(HERALD_SECURITY_NONE)),
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
        TestClient::new(HERALD_PROTOCOL_SMTP, &opts).expect("client")
    }

    pub fn token(&self) -> *mut c_void {
        Arc::as_ptr(&self.rec) as *mut c_void
    }

    /// Submits through any *_async function that takes (cb, token, op_out).
    pub fn submit(
        &self,
        f: impl FnOnce(herald_callback, *mut c_void, *mut herald_op) -> herald_status,
    ) -> Result<u64, u32> {
        let mut op = 0;
        let s = f(Some(record_completion), self.token(), &mut op);
        if s == HERALD_STATUS_OK {
            assert_ne!(op, 0);
            Ok(op)
        } else {
            Err(s)
        }
    }

    pub fn send_raw(&self, from: &str, rcpts: &[&str], data: &[u8]) -> Result<u64, u32> {
        let from = cstr(from);
        let rcpts: Vec<CString> = rcpts.iter().map(|r| cstr(r)).collect();
        let ptrs: Vec<*const std::ffi::c_char> = rcpts.iter().map(|r| r.as_ptr()).collect();
        self.submit(|cb, token, op| {
            herald_send_raw_async(
                self.c,
                from.as_ptr(),
                ptrs.as_ptr(),
                ptrs.len(),
                data.as_ptr(),
                data.len(),
                cb,
                token,
                op,
            )
        })
    }

    /// Sends `n` tiny messages from `from` to `to`, the i-th with subject
    /// `i`, and returns their ops (each call must be accepted).
    pub fn send_numbered(&self, from: &str, to: &str, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                self.send_raw(from, &[to], format!("Subject: {i}\r\n\r\nx\r\n").as_bytes())
                    .unwrap()
            })
            .collect()
    }

    pub fn send_message(&self, m: *const herald_message) -> Result<u64, u32> {
        self.submit(|cb, token, op| herald_send_async(self.c, m, cb, token, op))
    }

    pub fn flush(&self, timeout: Duration) -> u32 {
        herald_client_flush(self.c, timeout.as_millis() as i32)
    }

    pub fn wait(&self, op: u64, timeout: Duration) -> u32 {
        herald_wait(self.c, op, timeout.as_millis() as i32)
    }

    pub fn cancel(&self, op: u64) -> u32 {
        herald_cancel(self.c, op)
    }

    pub fn records(&self) -> Vec<Record> {
        self.rec.records()
    }

    /// Frees the client (every pending op completes before this returns)
    /// and gives back what was recorded.
    pub fn free(mut self) -> Vec<Record> {
        herald_client_free(self.c);
        self.c = std::ptr::null_mut();
        self.rec.records()
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        herald_client_free(self.c);
    }
}

/// Asserts every op in `ops` completed exactly once, and nothing else did.
pub fn assert_exactly_once(records: &[Record], ops: &[u64]) {
    let mut count: HashMap<u64, usize> = HashMap::new();
    for r in records {
        *count.entry(r.op).or_default() += 1;
    }
    for op in ops {
        assert_eq!(
            count.get(op).copied().unwrap_or(0),
            1,
            "op {op} must complete exactly once"
        );
    }
    assert_eq!(
        count.len(),
        ops.len(),
        "completions for ops that were never accepted"
    );
}

/// Statuses of `records`, counted.
pub fn status_counts(records: &[Record]) -> HashMap<u32, usize> {
    let mut m = HashMap::new();
    for r in records {
        *m.entry(r.status).or_default() += 1;
    }
    m
}

/// A message built through herald_message_*.
pub struct Message(pub *mut herald_message);

impl Message {
    pub fn new() -> Message {
        Message(herald_message_new())
    }

    pub fn from(self, a: &str) -> Self {
        assert_eq!(
            herald_message_set_from(self.0, cstr(a).as_ptr()),
            HERALD_STATUS_OK
        );
        self
    }

    pub fn to(self, a: &str) -> Self {
        assert_eq!(herald_message_add_to(self.0, cstr(a).as_ptr()), HERALD_STATUS_OK);
        self
    }

    pub fn bcc(self, a: &str) -> Self {
        assert_eq!(herald_message_add_bcc(self.0, cstr(a).as_ptr()), HERALD_STATUS_OK);
        self
    }

    pub fn subject(self, s: &str) -> Self {
        assert_eq!(
            herald_message_set_subject(self.0, cstr(s).as_ptr()),
            HERALD_STATUS_OK
        );
        self
    }

    pub fn text(self, s: &str) -> Self {
        assert_eq!(
            herald_message_set_text(self.0, cstr(s).as_ptr()),
            HERALD_STATUS_OK
        );
        self
    }

    pub fn attach(self, name: &str, data: &[u8]) -> Self {
        let (name, ct) = (cstr(name), cstr("application/octet-stream"));
        let st = herald_message_attach_bytes(self.0, name.as_ptr(), ct.as_ptr(), data.as_ptr(), data.len());
        assert_eq!(st, HERALD_STATUS_OK, "{}", last_error());
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut p = std::ptr::null_mut();
        let mut len = 0;
        assert_eq!(
            herald_message_to_bytes(self.0, &mut p, &mut len),
            HERALD_STATUS_OK
        );
        // SAFETY: herald gave us len bytes at p.
        let v = unsafe { std::slice::from_raw_parts(p, len) }.to_vec();
        herald_bytes_free(p, len);
        v
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        herald_message_free(self.0);
    }
}

/// A raw RFC 5322 message of about `size` bytes, CRLF line endings.
pub fn raw_message(subject: &str, size: usize) -> Vec<u8> {
    let mut m = format!("From: sender@example.org\r\nTo: rcpt@example.org\r\nSubject: {subject}\r\n\r\n")
        .into_bytes();
    let mut i = 0;
    while m.len() < size {
        m.extend_from_slice(
            format!("line {i:06} of the message body, padded to a fixed width........\r\n").as_bytes(),
        );
        i += 1;
    }
    m
}

pub mod pop3;

/// `n` bytes that look random (a fixed xorshift stream).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// The attachments of a delivered message (as mail-parser decodes them),
/// by file name.
pub fn attachments_of(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    use mail_parser::MimeHeaders as _;
    let m = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a message mail-parser reads");
    m.attachments()
        .map(|a| {
            (
                a.attachment_name().unwrap_or_default().to_string(),
                a.contents().to_vec(),
            )
        })
        .collect()
}
