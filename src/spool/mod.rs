//! The durable outbox (`HERALD_OPT_SPOOL_DIR`): every message an SMTP
//! client accepts is written to a journal in the spool directory before
//! the submit returns, marked before any of it goes out on a connection,
//! and forgotten once its completion was delivered. A client opened on the
//! directory after a crash finds what was never completed.
//!
//! What is on disk when (with SPOOL_SYNC 1, the default; with 0, "written"
//! means handed to the operating system, which survives the process being
//! killed but not the machine losing power):
//! - the message (envelope, bytes, id): synced before the submit returns
//!   (a batch's messages with one sync: `append` each, then `settle`);
//! - its SENDING mark: synced before its first command goes to a server,
//!   so a message that may have reached one is reported as "outcome
//!   unknown" after a crash, never as untouched (a connection appends the
//!   marks of every message it is about to send, then waits once:
//!   `begin_sending`, `wait_sending`);
//! - its DONE record: written after its completion was delivered; synced
//!   with the next sync (or before that delivery for a failure, which the
//!   caller may act on). A lost DONE makes a message reappear after a crash
//!   as "outcome unknown" (it was marked), never as untouched.
//!
//! Foundation-only: the composition root (`outbox`) wires it to a client.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::log::{self, LogFn};
use crate::status::{Error, Result, Status};

pub mod journal;
pub mod record;
mod scan;
#[cfg(test)]
mod tests;

use journal::{Journal, State};
pub use record::Spooled;

/// The lock file's name and the quarantine folder's.
pub const LOCK_FILE: &str = "lock";
pub const QUARANTINE: &str = "quarantine";

/// A message found in the spool when it was opened.
#[derive(Clone, Debug)]
pub struct Found {
    pub msg: Spooled,
    /// It was marked SENDING: it may have reached the server.
    pub unknown: bool,
}

/// The spool of one client: the directory, locked for as long as it lives.
pub struct Spool {
    dir: PathBuf,
    sync: bool,
    max_messages: usize,
    max_bytes: u64,
    _lock: File,
    st: Mutex<State>,
    cond: Condvar,
    log: RwLock<Option<(u32, LogFn)>>,
    /// What the scan at open found, until `take_found`.
    found: Mutex<Option<Vec<Found>>>,
    /// What the scan at open had to say (quarantined files), logged at `take_found`.
    notes: Mutex<Vec<(u32, String)>>,
    seed: String,
    counter: AtomicU64,
    /// The client is being freed: ops cancelled now stay in the spool.
    pub closing: AtomicBool,
}

/// How a spool is opened.
#[derive(Clone, Debug)]
pub struct Config {
    pub dir: PathBuf,
    pub sync: bool,
    pub max_messages: usize,
    pub max_bytes: u64,
}

impl Spool {
    /// Opens (creating it if missing) and locks the spool directory, and
    /// reads what it holds. Files that are not the spool's, and segments
    /// with corrupt records, are moved to `quarantine/`: the messages
    /// before the corruption are kept.
    pub fn open(cfg: &Config) -> Result<Spool> {
        let lock = scan::lock(&cfg.dir)?;
        let scanned = scan::scan(&cfg.dir, cfg.sync)
            .map_err(|e| Error::new(Status::Io, format!("spool {}: {e}", cfg.dir.display())))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let spool = Spool {
            dir: cfg.dir.clone(),
            sync: cfg.sync,
            max_messages: cfg.max_messages,
            max_bytes: cfg.max_bytes,
            _lock: lock,
            st: Mutex::new(scanned.state),
            cond: Condvar::new(),
            log: RwLock::new(None),
            found: Mutex::new(None),
            notes: Mutex::new(scanned.notes),
            seed: format!("{:x}{:x}", nanos, std::process::id()),
            counter: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        };
        spool.carry(&scanned.carry)?;
        for q in &scanned.quarantine {
            let note = scan::quarantine(&cfg.dir, q);
            spool.notes.lock().push((log::WARN, note));
        }
        *spool.found.lock() = Some(scanned.found);
        Ok(spool)
    }

    fn journal(&self) -> Journal<'_> {
        Journal {
            dir: &self.dir,
            sync: self.sync,
            cond: &self.cond,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new id, unique in this spool (for messages sent without one).
    pub fn new_id(&self) -> String {
        format!("{}-{}", self.seed, self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Writes `m` to the spool (it gets its key here) and returns once it is
    /// durable. LIMIT beyond the spool's limits; INVALID_ARGUMENT when a
    /// message with the same id is still in it.
    pub fn add(&self, m: &mut Spooled) -> Result<u64> {
        let ticket = self.append(m)?;
        self.settle(&[m.key], ticket)?;
        Ok(m.key)
    }

    /// Waits until the ADDs of `keys` (up to `ticket`) are durable; on a
    /// write error, forgets them and fails.
    pub fn settle(&self, keys: &[u64], ticket: u64) -> Result<()> {
        let mut st = self.st.lock();
        self.journal().commit(&mut st, ticket, true).map_err(|e| {
            for &k in keys {
                st.remove(k);
            }
            Error::new(Status::Io, e)
        })
    }

    /// `add` without the wait: `m` gets its key, and the ticket to
    /// `settle` (for several messages, once, with the last one's ticket).
    pub fn append(&self, m: &mut Spooled) -> Result<u64> {
        record::check_lengths(m).map_err(Error::invalid)?;
        let need = (record::add_len(m) + 2 * record::MARK_LEN) as u64;
        let mut st = self.st.lock();
        if let Some(e) = &st.failed {
            return Err(Error::new(Status::Io, e.clone()));
        }
        if st.ids.contains_key(&m.id) {
            return Err(Error::invalid(format!(
                "a message with spool id {:?} is already in the spool",
                m.id
            )));
        }
        if st.entries.len() >= self.max_messages {
            return Err(Error::new(
                Status::Limit,
                format!(
                    "spool full: {} messages in it (SPOOL_MAX_MESSAGES)",
                    st.entries.len()
                ),
            ));
        }
        if st.used + need > self.max_bytes {
            return Err(Error::new(
                Status::Limit,
                format!(
                    "spool full: {} of {} bytes used, the message needs {need} (SPOOL_MAX_BYTES)",
                    st.used, self.max_bytes
                ),
            ));
        }
        m.key = st.next_key;
        st.next_key += 1;
        Ok(st.append_add(m, false))
    }

    /// Marks the message: from here on it may reach the server. Returns once
    /// the mark is durable. Marking twice is harmless.
    pub fn mark_sending(&self, key: u64) -> Result<()> {
        let ticket = self.begin_sending(key)?;
        self.wait_sending(ticket)
    }

    /// Appends the message's SENDING mark (once) without waiting for it:
    /// the ticket for `wait_sending`. So a connection about to send several
    /// messages marks them all, then waits for one write (and sync).
    pub fn begin_sending(&self, key: u64) -> Result<u64> {
        let mut st = self.st.lock();
        if let Some(e) = &st.failed {
            return Err(Error::new(Status::Io, e.clone()));
        }
        let at = match st.entries.get(&key) {
            Some(e) if !e.sending => st.append_mark(key, true),
            Some(e) => return Ok(e.sending_at),
            None => return Ok(0),
        };
        let e = st.entries.get_mut(&key).expect("present");
        e.sending = true;
        e.sending_at = at;
        Ok(at)
    }

    /// Returns once the marks up to `ticket` are durable (see `begin_sending`).
    pub fn wait_sending(&self, ticket: u64) -> Result<()> {
        let mut st = self.st.lock();
        self.journal()
            .commit(&mut st, ticket, true)
            .map_err(|e| Error::new(Status::Io, e))
    }

    /// Forgets a message whose completion was (or is being) delivered:
    /// `durable` waits until that is on disk.
    pub fn done(&self, key: u64, durable: bool) {
        let mut st = self.st.lock();
        let Some(ticket) = st.remove(key) else { return };
        self.journal().gc(&mut st);
        if !durable && st.leader {
            // The writer under way writes it before it lets go.
            st.lazy = true;
            return;
        }
        if let Err(e) = self.journal().commit(&mut st, ticket, durable) {
            drop(st);
            self.log(log::ERROR, || e);
        }
    }

    /// Writes and syncs everything appended so far.
    pub fn sync(&self) -> Result<()> {
        let mut st = self.st.lock();
        let ticket = st.appended;
        self.journal()
            .commit(&mut st, ticket, true)
            .map_err(|e| Error::new(Status::Io, e))
    }

    /// Writes copies of `msgs` (found at open in files being set aside, or
    /// kept by the caller) to the active segment, durably.
    fn carry(&self, msgs: &[Found]) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let mut st = self.st.lock();
        let mut ticket = 0;
        for f in msgs {
            ticket = st.append_add(&f.msg, f.unknown);
        }
        self.journal()
            .commit(&mut st, ticket, true)
            .map_err(|e| Error::new(Status::Io, e))
    }

    /// Leaves a found message in the spool for a later client: copied into
    /// this client's segment so the old one can go.
    pub fn keep(&self, f: &Found) -> Result<()> {
        self.carry(std::slice::from_ref(f))
    }

    /// The messages found at open (once; later calls get none), after
    /// logging what the scan had to say.
    pub fn take_found(&self) -> Vec<Found> {
        let notes = std::mem::take(&mut *self.notes.lock());
        for (level, n) in notes {
            self.log(level, || n);
        }
        self.found.lock().take().unwrap_or_default()
    }

    /// Messages in the spool and bytes it uses (for tests and the log).
    pub fn usage(&self) -> (usize, u64) {
        let st = self.st.lock();
        (st.entries.len(), st.used)
    }

    pub fn set_log(&self, max_level: u32, f: Option<LogFn>) {
        *self.log.write() = f.map(|f| (max_level, f));
    }

    pub fn log(&self, level: u32, line: impl FnOnce() -> String) {
        let f = match &*self.log.read() {
            Some((max, f)) if level <= *max => f.clone(),
            _ => return,
        };
        let text = format!("spool {}: {}", self.dir.display(), line());
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(level, &text)));
    }
}

/// Replays a segment's bytes as opening a spool does (for the fuzz target).
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_replay(data: &[u8]) {
    scan::fuzz_replay(data);
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

/// The value of the message's Message-ID header (unfolded, trimmed), if
/// its header block has one.
pub fn message_id_of(data: &[u8]) -> Option<String> {
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        let Some(rest) = line
            .get(..11)
            .filter(|h| h.eq_ignore_ascii_case(b"message-id:"))
            .map(|_| &line[11..])
        else {
            continue;
        };
        let mut v = String::from_utf8_lossy(rest).into_owned();
        while let Some(next) = lines
            .peek()
            .filter(|l| l.first().is_some_and(|&b| b == b' ' || b == b'\t'))
        {
            let next = next.strip_suffix(b"\r").unwrap_or(next);
            v.push_str(&String::from_utf8_lossy(next));
            lines.next();
        }
        return Some(v.trim().to_string());
    }
    None
}

/// `data` with a Message-ID header first when it has none; and the id.
pub fn ensure_message_id(data: Vec<u8>, unique: &str) -> (Vec<u8>, String) {
    if let Some(id) = message_id_of(&data) {
        return (data, id);
    }
    let local: String = unique
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = format!("<{local}@herald.spool>");
    let mut out = format!("Message-ID: {id}\r\n").into_bytes();
    out.extend_from_slice(&data);
    (out, id)
}
