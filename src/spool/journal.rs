//! The spool's journal: append-only segment files written with group
//! commit. Whoever needs its records on disk while no write is under way
//! becomes the leader and writes everything appended so far in one
//! `write`, then one `fdatasync`; the others wait for it. So concurrent
//! submitters and connections share one disk sync, however many they are.
//!
//! Segments are deleted oldest first, once every message whose ADD record
//! is in them has completed (a DONE or SENDING record in a newer segment
//! may refer to a message of an older one, so a newer segment never goes
//! before an older one).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, MutexGuard};

use super::record::{self, MARK_LEN};

/// A segment is closed and a new one started once it is this large.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// A live message of the spool.
pub struct Entry {
    pub id: String,
    /// Where its ADD record is, once written: (segment, offset, length).
    pub at: Option<(u64, u64, usize)>,
    /// A SENDING record was appended for it: its outcome is unknown.
    pub sending: bool,
    /// The ticket of its SENDING record (0 when none was appended here).
    pub sending_at: u64,
    /// Bytes of marks (SENDING, DONE) not yet written but reserved in `State::used`.
    pub reserved: usize,
}

/// One segment file.
pub struct Segment {
    pub size: u64,
    /// Live messages whose ADD is in it.
    pub live: usize,
}

/// Everything under the spool's lock.
pub struct State {
    pub buf: Vec<u8>,
    /// ADD records in `buf`: (key, start in buf).
    pub buf_adds: Vec<(u64, usize, usize)>,
    pub appended: u64,
    pub written: u64,
    pub synced: u64,
    pub leader: bool,
    /// Records were appended during a leader's write that no one waits for.
    pub lazy: bool,
    pub failed: Option<String>,
    pub active: u64,
    pub active_file: Option<Arc<File>>,
    pub segments: BTreeMap<u64, Segment>,
    pub entries: HashMap<u64, Entry>,
    pub ids: HashMap<String, u64>,
    pub next_key: u64,
    /// Bytes of the segment files (written or about to be) plus the marks
    /// reserved for live messages: what the byte limit bounds.
    pub used: u64,
}

/// The file name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("seg-{seq:016x}.hsp")
}

/// The segment number a file name names, if it is a segment's.
pub fn segment_seq(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".hsp")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

/// Makes the directory entry of a new or removed file durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates segment `seq` with its header.
pub fn create_segment(dir: &Path, seq: u64, sync: bool) -> std::io::Result<File> {
    let path = dir.join(segment_name(seq));
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    f.write_all(record::MAGIC)?;
    if sync {
        f.sync_data()?;
        sync_dir(dir)?;
    }
    Ok(f)
}

/// The journal's writing side, over the state behind `lock`.
pub struct Journal<'a> {
    pub dir: &'a PathBuf,
    pub sync: bool,
    pub cond: &'a Condvar,
}

impl Journal<'_> {
    /// Waits until the records up to `ticket` are written (and synced to
    /// disk when `durable` and the spool syncs), writing them itself if no
    /// one else is. An earlier write error fails every later commit.
    pub fn commit(&self, st: &mut MutexGuard<'_, State>, ticket: u64, durable: bool) -> Result<(), String> {
        let durable = durable && self.sync;
        loop {
            if let Some(e) = &st.failed {
                return Err(e.clone());
            }
            let done = if durable { st.synced } else { st.written };
            if done >= ticket {
                return Ok(());
            }
            if st.leader {
                self.cond.wait(st);
                continue;
            }
            st.leader = true;
            let r = self.lead(st, durable);
            st.leader = false;
            if let Err(e) = r {
                st.failed = Some(format!("the spool could not be written: {e}"));
            }
            self.cond.notify_all();
        }
    }

    /// As leader: writes every appended record, then syncs once if asked.
    /// Records appended meanwhile that no one waits for (lazy DONEs) are
    /// written before it lets go.
    fn lead(&self, st: &mut MutexGuard<'_, State>, durable: bool) -> std::io::Result<()> {
        self.write_pending(st)?;
        if durable && st.synced < st.written {
            let upto = st.written;
            let file = st.active_file.clone().expect("an active segment");
            MutexGuard::unlocked(st, || file.sync_data())?;
            st.synced = st.synced.max(upto);
        }
        if std::mem::take(&mut st.lazy) {
            self.write_pending(st)?;
        }
        Ok(())
    }

    /// Writes what is appended now, in one write (followers write what
    /// comes in meanwhile, so no leader is held up by a steady stream).
    fn write_pending(&self, st: &mut MutexGuard<'_, State>) -> std::io::Result<()> {
        if !st.buf.is_empty() {
            if st
                .segments
                .get(&st.active)
                .is_some_and(|s| s.size >= SEGMENT_BYTES)
            {
                self.rotate(st)?;
            }
            let buf = std::mem::take(&mut st.buf);
            let adds = std::mem::take(&mut st.buf_adds);
            let upto = st.appended;
            let seq = st.active;
            let base = st.segments.get(&seq).map_or(0, |s| s.size);
            let file = st.active_file.clone().expect("an active segment");
            MutexGuard::unlocked(st, || (&*file).write_all(&buf))?;
            let seg = st.segments.get_mut(&seq).expect("the active segment");
            seg.size += buf.len() as u64;
            for (key, start, len) in adds {
                if let Some(e) = st.entries.get_mut(&key) {
                    e.at = Some((seq, base + start as u64, len));
                    st.segments.get_mut(&seq).expect("active").live += 1;
                }
            }
            st.written = upto;
            self.cond.notify_all();
        }
        Ok(())
    }

    /// Starts a new segment (the leader's, under the lock: rare).
    fn rotate(&self, st: &mut MutexGuard<'_, State>) -> std::io::Result<()> {
        let old = st.active_file.clone().expect("an active segment");
        if self.sync {
            // Records written to the old segment so far reach the disk with it.
            old.sync_data()?;
        }
        let seq = st.active + 1;
        let f = create_segment(self.dir, seq, self.sync)?;
        st.used += record::MAGIC.len() as u64;
        st.segments.insert(
            seq,
            Segment {
                size: record::MAGIC.len() as u64,
                live: 0,
            },
        );
        st.active = seq;
        st.active_file = Some(Arc::new(f));
        self.gc(st);
        Ok(())
    }

    /// Deletes segments, oldest first, while the oldest has no live message
    /// and is not the active one.
    pub fn gc(&self, st: &mut State) {
        let mut removed = false;
        while let Some((&seq, seg)) = st.segments.first_key_value() {
            if seq == st.active || seg.live > 0 {
                break;
            }
            let size = seg.size;
            match std::fs::remove_file(self.dir.join(segment_name(seq))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => break,
            }
            st.segments.remove(&seq);
            st.used = st.used.saturating_sub(size);
            removed = true;
        }
        if removed && self.sync {
            let _ = sync_dir(self.dir);
        }
    }
}

impl State {
    /// Appends a SENDING or DONE record for `key` (its reservation pays
    /// for it); the ticket to commit.
    pub fn append_mark(&mut self, key: u64, sending: bool) -> u64 {
        record::encode_mark(&mut self.buf, key, sending);
        if let Some(e) = self.entries.get_mut(&key) {
            if e.reserved >= MARK_LEN {
                e.reserved -= MARK_LEN;
            } else {
                self.used += MARK_LEN as u64;
            }
        } else {
            self.used += MARK_LEN as u64;
        }
        self.appended += 1;
        self.appended
    }

    /// Appends an ADD record for `m`, registered as live under its id.
    pub fn append_add(&mut self, m: &record::Spooled, sending: bool) -> u64 {
        let start = self.buf.len();
        record::encode_add(&mut self.buf, m);
        let len = self.buf.len() - start;
        self.buf_adds.push((m.key, start, len));
        self.used += (len + 2 * MARK_LEN) as u64;
        let old = self.entries.insert(
            m.key,
            Entry {
                id: m.id.clone(),
                at: None,
                sending: false,
                sending_at: 0,
                reserved: 2 * MARK_LEN,
            },
        );
        if let Some(old) = old {
            // A copy of a message carried forward: the old copy no longer counts.
            self.forget_copy(old);
        }
        self.ids.insert(m.id.clone(), m.key);
        self.appended += 1;
        if sending {
            let at = self.append_mark(m.key, true);
            let e = self.entries.get_mut(&m.key).expect("just added");
            e.sending = true;
            e.sending_at = at;
        }
        self.appended
    }

    fn forget_copy(&mut self, old: Entry) {
        self.used = self.used.saturating_sub(old.reserved as u64);
        if let Some((seq, _, _)) = old.at {
            if let Some(s) = self.segments.get_mut(&seq) {
                s.live = s.live.saturating_sub(1);
            }
        }
    }

    /// Forgets a live message (its DONE is appended): the ticket.
    pub fn remove(&mut self, key: u64) -> Option<u64> {
        if !self.entries.contains_key(&key) {
            return None;
        }
        let ticket = self.append_mark(key, false);
        let e = self.entries.remove(&key)?;
        if self.ids.get(&e.id) == Some(&key) {
            self.ids.remove(&e.id);
        }
        self.forget_copy(e);
        Some(ticket)
    }
}
