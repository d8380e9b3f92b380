//! Opening a spool directory: its lock, and what the files in it hold.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::journal::{self, Entry, Segment, State};
use super::record::{self, Record, Stop, MARK_LEN};
use super::{Found, LOCK_FILE, QUARANTINE};
use crate::log;
use crate::status::{Error, Result, Status};

/// Creates the directory if needed and takes its lock (flock on Unix,
/// LockFileEx on Windows), held as long as the file is open.
pub fn lock(dir: &Path) -> Result<File> {
    let io = |e: std::io::Error| Error::new(Status::Io, format!("spool {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            Status::Io,
            format!(
                "spool {} is in use by another herald client (its lock is held): one client per spool directory",
                dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// What a scan found.
pub struct Scanned {
    pub state: State,
    /// Live messages, in the order they were submitted.
    pub found: Vec<Found>,
    /// Live messages in segments being set aside: copied before they go.
    pub carry: Vec<Found>,
    /// Files to set aside, with why.
    pub quarantine: Vec<(PathBuf, String)>,
    pub notes: Vec<(u32, String)>,
}

/// A live message while segments are replayed.
struct Live {
    found: Found,
    at: (u64, u64, usize),
}

/// Replays one segment's records into `live`; what stopped it, if anything.
fn replay(seq: u64, bytes: &[u8], live: &mut BTreeMap<u64, Live>) -> Option<Stop> {
    let (recs, stop) = record::decode_segment(bytes);
    for (off, len, r) in recs {
        match r {
            Record::Add(msg) => {
                let unknown = live.get(&msg.key).is_some_and(|l| l.found.unknown);
                let at = (seq, off as u64, len);
                live.insert(
                    msg.key,
                    Live {
                        found: Found { msg, unknown },
                        at,
                    },
                );
            }
            Record::Sending(k) => {
                if let Some(l) = live.get_mut(&k) {
                    l.found.unknown = true;
                }
            }
            Record::Done(k) => {
                live.remove(&k);
            }
        }
    }
    stop
}

/// [`replay`] alone, for the fuzz target: the live set stays consistent.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_replay(data: &[u8]) {
    let mut live = BTreeMap::new();
    let _ = replay(1, data, &mut live);
    for (k, l) in &live {
        assert_eq!(*k, l.found.msg.key);
        assert!(l.at.1 as usize + l.at.2 <= data.len());
    }
}

/// The spool's files: segments by number, and everything else.
fn list(dir: &Path) -> std::io::Result<(BTreeMap<u64, PathBuf>, Vec<PathBuf>)> {
    let mut segments = BTreeMap::new();
    let mut foreign = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == LOCK_FILE || name == QUARANTINE {
            continue;
        }
        match journal::segment_seq(&name) {
            Some(seq) if e.file_type()?.is_file() => {
                segments.insert(seq, e.path());
            }
            _ => foreign.push(e.path()),
        }
    }
    Ok((segments, foreign))
}

/// Reads every segment, sets foreign and corrupt files aside (after
/// copying the messages found before the corruption), and starts a new
/// active segment after the last.
pub fn scan(dir: &Path, sync: bool) -> std::io::Result<Scanned> {
    let (paths, foreign) = list(dir)?;
    let mut notes = Vec::new();
    let mut quarantine: Vec<(PathBuf, String)> = foreign
        .into_iter()
        .map(|p| (p, "not a file of the spool".to_string()))
        .collect();
    let mut live = BTreeMap::new();
    let mut segments = BTreeMap::new();
    let mut corrupt = Vec::new();
    for (&seq, path) in &paths {
        let bytes = std::fs::read(path)?;
        match replay(seq, &bytes, &mut live) {
            None => {}
            Some(Stop::Torn { at }) => notes.push((
                log::INFO,
                format!(
                    "{}: ignored {} bytes of a write cut short at its end (never reported durable)",
                    path.display(),
                    bytes.len() - at
                ),
            )),
            Some(Stop::Corrupt { at, why }) => {
                corrupt.push(seq);
                quarantine.push((path.clone(), format!("corrupt at byte {at}: {why}")));
                continue;
            }
        }
        segments.insert(
            seq,
            Segment {
                size: bytes.len() as u64,
                live: 0,
            },
        );
    }
    let active = paths.keys().next_back().map_or(1, |s| s + 1);
    let file = journal::create_segment(dir, active, sync)?;
    let state = state_of(active, file, segments, &live, &corrupt);
    let (carry, found): (Vec<Live>, Vec<Live>) = live.into_values().partition(|l| corrupt.contains(&l.at.0));
    let mut all: Vec<Found> = found.iter().chain(&carry).map(|l| l.found.clone()).collect();
    all.sort_by_key(|f| f.msg.key);
    Ok(Scanned {
        state,
        found: all,
        carry: carry.into_iter().map(|l| l.found).collect(),
        quarantine,
        notes,
    })
}

/// The spool's state after a scan: the live messages outside corrupt
/// segments registered, the active segment `active` open.
fn state_of(
    active: u64,
    file: File,
    mut segments: BTreeMap<u64, Segment>,
    live: &BTreeMap<u64, Live>,
    corrupt: &[u64],
) -> State {
    segments.insert(
        active,
        Segment {
            size: record::MAGIC.len() as u64,
            live: 0,
        },
    );
    let mut entries = HashMap::new();
    let mut ids = HashMap::new();
    let mut used: u64 = segments.values().map(|s| s.size).sum();
    for (&key, l) in live {
        if corrupt.contains(&l.at.0) {
            continue;
        }
        let reserved = if l.found.unknown { MARK_LEN } else { 2 * MARK_LEN };
        used += reserved as u64;
        if let Some(s) = segments.get_mut(&l.at.0) {
            s.live += 1;
        }
        ids.insert(l.found.msg.id.clone(), key);
        entries.insert(
            key,
            Entry {
                id: l.found.msg.id.clone(),
                at: Some(l.at),
                sending: l.found.unknown,
                sending_at: 0,
                reserved,
            },
        );
    }
    State {
        buf: Vec::new(),
        buf_adds: Vec::new(),
        appended: 0,
        written: 0,
        synced: 0,
        leader: false,
        lazy: false,
        failed: None,
        active,
        active_file: Some(Arc::new(file)),
        segments,
        entries,
        ids,
        next_key: live.keys().next_back().map_or(1, |k| k + 1),
        used,
    }
}

/// Moves `path` into the quarantine folder; the log line saying so.
pub fn quarantine(dir: &Path, (path, why): &(PathBuf, String)) -> String {
    let qdir = dir.join(QUARANTINE);
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let target = qdir.join(format!("{name}.{nanos}"));
    let moved = std::fs::create_dir_all(&qdir).and_then(|()| std::fs::rename(path, &target));
    match moved {
        Ok(()) => format!(
            "set {} aside as {} ({why}); nothing in it is sent",
            path.display(),
            target.display()
        ),
        Err(e) => format!(
            "{} ({why}) could not be moved to {}: {e}; it is ignored, nothing in it is sent",
            path.display(),
            qdir.display()
        ),
    }
}
