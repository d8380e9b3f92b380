//! Streaming fetch: each message is handed on as it arrives instead of
//! being gathered into one result.
//!
//! - [`fetch_stream`] delivers one item per message (through the engine's
//!   non-final items, to the op's `on_change` route: a callback on the
//!   delivery thread, or the completion queue), then the op's one final
//!   completion with the count.
//! - [`fetch_to_dir`] writes each message to `<dir>/<UID>.eml` (through a
//!   temp name and a rename), and the final completion lists the files.
//!
//! Memory: the worker reads one response at a time (one message, at most
//! MAX_MESSAGE_BYTES). Items handed on but not yet let go by the caller
//! (the callback has not returned, or the item waits in the queue) are
//! counted by a [`Gate`]: at most [`MAX_HELD_ITEMS`] of them, and at most
//! [`MAX_HELD_BYTES`] of message bytes (one item always passes, however
//! large). When the gate is full the worker stops reading until the caller
//! catches up; the server then waits on TCP's flow control. So what herald
//! holds for a streaming fetch is at most MAX_HELD_BYTES plus the message
//! being read, plus the connection's read buffer, whatever the mailbox's
//! size and however slow the caller.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::command::Command;
use super::fetched::Fetched;
use super::parse::{Cond, Response};
use super::session::{self, Session};
use super::{fetch_ext, fetched, Ticket, FETCH_BODY, FETCH_MODSEQ};
use crate::engine::CancelMode;
use crate::result::{field, Outcome, Release, ResultData, ResultItem, Success};
use crate::status::{Error, Result, Status};

/// Most items of one streaming op handed on and not yet let go.
pub const MAX_HELD_ITEMS: usize = 16;
/// Most message bytes in those items (an item larger than this passes alone).
pub const MAX_HELD_BYTES: usize = 2 * 1024 * 1024;
/// How often a worker waiting for room looks whether its op was cancelled.
const GATE_POLL: Duration = Duration::from_millis(50);
/// Fetched bytes between progress reports.
const PROGRESS_STEP: u64 = 1024 * 1024;

/// What a streaming op has handed on and the caller still holds.
#[derive(Default)]
pub struct Gate {
    held: Mutex<(usize, usize)>,
    room: Condvar,
}

impl Gate {
    /// Waits until an item of `bytes` fits, then counts it. Err when
    /// `live` says the op was cancelled or timed out meanwhile.
    fn enter(&self, bytes: usize, live: &dyn Fn() -> bool) -> Result<()> {
        let mut held = self.held.lock();
        while held.0 > 0 && (held.0 >= MAX_HELD_ITEMS || held.1 + bytes > MAX_HELD_BYTES) {
            if !live() {
                return Err(Error::cancelled());
            }
            self.room.wait_for(&mut held, GATE_POLL);
        }
        held.0 += 1;
        held.1 += bytes;
        Ok(())
    }

    fn leave(&self, bytes: usize) {
        let mut held = self.held.lock();
        held.0 -= 1;
        held.1 -= bytes;
        self.room.notify_all();
    }

    /// Items and bytes held right now.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        *self.held.lock()
    }
}

/// One message's item from its FETCH response, with the fields a plain
/// fetch gives; None for a response that is not (all of) an answer: no UID
/// (news about flags), or without the bytes that were asked for.
fn item_of(f: Fetched, parts: u32) -> Option<ResultItem> {
    let uid = f.uid?;
    if !f.has_bytes(parts) {
        return None;
    }
    let mut item = ResultItem::new(u64::from(uid));
    f.apply(&mut item, parts);
    fetch_ext::finish(std::slice::from_mut(&mut item), parts, FETCH_BODY);
    Some(item)
}

/// Runs UID FETCH and hands each message's item to `each` as its response
/// arrives; nothing is gathered here.
fn read_fetch(
    s: &mut Session,
    t: &Ticket,
    mailbox: &str,
    uids: &str,
    parts: u32,
    each: &mut dyn FnMut(ResultItem) -> Result<()>,
) -> Result<()> {
    s.select(mailbox, false)?;
    let items = fetched::items(parts, parts & FETCH_MODSEQ != 0);
    let tag = s.conn().next_tag();
    s.send(Command::UidFetch { uids, items: &items }.line(&tag).as_bytes())?;
    let (mut received, mut reported) = (0u64, 0u64);
    loop {
        let base = received;
        match s.read_response(&mut |n| t.progress(base + n as u64, 0))? {
            Response::Tagged { tag: tg, status } if tg == tag => {
                if status.cond != Cond::Ok {
                    return Err(status.error(&format!("UID FETCH {uids} in {mailbox}")));
                }
                return Ok(());
            }
            Response::Tagged { tag: tg, .. } => {
                return Err(Error::protocol(format!("a reply with tag {tg} to UID FETCH")))
            }
            Response::Fetch { atts, .. } => {
                let Some(mut item) = item_of(Fetched::decode(atts)?, parts) else {
                    continue;
                };
                received += item.bytes.as_ref().map_or(0, |b| b.len() as u64);
                if let Some(sel) = &s.selected {
                    item.set_int(field::UIDVALIDITY, u64::from(sel.state.uidvalidity));
                }
                each(item)?;
                if received - reported >= PROGRESS_STEP {
                    reported = received;
                    t.progress(received, 0);
                }
            }
            r => session::track(&mut s.selected, &r),
        }
    }
}

/// A stream's count, as its final completion carries it.
fn count_result(n: u64) -> ResultData {
    ResultData::new(vec![ResultItem::new(0).with_int(field::COUNT, n)])
}

/// Streams a fetch: one item per message to the op's item route, at most
/// [`MAX_HELD_ITEMS`] / [`MAX_HELD_BYTES`] held at a time; the outcome's
/// result is one item with the count (also on failure or cancel).
pub fn fetch_stream(s: &mut Session, t: &Ticket, mailbox: &str, uids: &str, parts: u32) -> Outcome {
    // A cancel shuts the socket down and the worker completes the op, with the count.
    t.set_cancel_mode(CancelMode::Interrupt);
    let gate = Arc::new(Gate::default());
    let mut n = 0u64;
    let r = read_fetch(s, t, mailbox, uids, parts, &mut |mut item| {
        let bytes = item.bytes.as_ref().map_or(0, Vec::len);
        gate.enter(bytes, &|| t.is_live())?;
        let g = gate.clone();
        let release = Release::new(move || g.leave(bytes));
        item.set_int(field::INDEX, n + 1);
        let uid = item.uid;
        let one = Success::new(0, format!("message {} (UID {uid})", n + 1))
            .with_result(ResultData::new(vec![item]));
        if !t.notify_item(one, release) {
            return Err(Error::cancelled());
        }
        n += 1;
        Ok(())
    });
    match r {
        Ok(()) => {
            Ok(Success::new(0, format!("{n} messages streamed from {mailbox}")).with_result(count_result(n)))
        }
        Err(mut e) => {
            e.detail = format!("{}; {n} messages were delivered", e.detail);
            Err(e.with_partial(count_result(n)))
        }
    }
}

/// The file a message of `uid` is stored in, and its temp name while
/// being written (hidden, and unique to the op, so neither a reader of
/// `*.eml` nor a concurrent fetch into the same directory sees it).
fn message_paths(dir: &Path, uid: u64, op: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{uid}.eml")),
        dir.join(format!(".{uid}.eml.{op}.part")),
    )
}

/// Writes one message: to its temp name, then renamed over `<uid>.eml`.
fn write_message(dir: &Path, uid: u64, op: u64, data: &[u8]) -> Result<PathBuf> {
    let (path, tmp) = message_paths(dir, uid, op);
    let io =
        |e: std::io::Error, what: &Path| Error::new(Status::Io, format!("writing {}: {e}", what.display()));
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| io(e, &tmp));
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, &path).map_err(|e| io(e, &path))) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(path)
}

/// Fetches the whole messages of `uids` into `dir`, one file each, written
/// as they arrive; the result lists the files (uid, NAME = path, SIZE).
pub fn fetch_to_dir(s: &mut Session, t: &Ticket, mailbox: &str, uids: &str, dir: &str) -> Outcome {
    t.set_cancel_mode(CancelMode::Interrupt);
    let d = Path::new(dir);
    match fs::metadata(d) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::invalid(format!("{dir} is not a directory"))),
        Err(e) => return Err(Error::new(Status::Io, format!("directory {dir}: {e}"))),
    }
    let mut files = Vec::new();
    let r = read_fetch(s, t, mailbox, uids, FETCH_BODY, &mut |item| {
        let data = item.bytes.as_deref().unwrap_or_default();
        let path = write_message(d, item.uid, t.id, data)?;
        files.push(
            ResultItem::new(item.uid)
                .with_str(field::NAME, &path.to_string_lossy())
                .with_int(field::SIZE, data.len() as u64),
        );
        Ok(())
    });
    let n = files.len();
    let listed = ResultData::new(files);
    match r {
        Ok(()) => Ok(Success::new(0, format!("{n} messages written to {dir}")).with_result(listed)),
        Err(mut e) => {
            e.detail = format!("{}; {n} messages were written to {dir}", e.detail);
            Err(e.with_partial(listed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::parse::FetchData;
    use crate::imap::FETCH_FLAGS;

    #[test]
    fn a_response_without_the_asked_bytes_is_no_item() {
        let d = FetchData {
            uid: Some(4),
            flags: Some("\\Seen".into()),
            ..Default::default()
        };
        assert!(item_of(Fetched::from_data(d), FETCH_BODY).is_none());
        let d = FetchData {
            uid: Some(4),
            flags: Some("\\Seen".into()),
            ..Default::default()
        };
        let item = item_of(Fetched::from_data(d), FETCH_FLAGS).expect("an item");
        assert_eq!(item.uid, 4);
        let d = FetchData {
            body: Some(b"x".to_vec()),
            ..Default::default()
        };
        assert!(
            item_of(Fetched::from_data(d), FETCH_BODY).is_none(),
            "no UID: not an answer"
        );
    }

    #[test]
    fn messages_are_written_whole_under_their_uid() {
        let dir = std::env::temp_dir().join(format!("herald-stream-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = write_message(&dir, 42, 7, b"Subject: x\r\n\r\nhi\r\n").unwrap();
        assert_eq!(path, dir.join("42.eml"));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("42.eml")],
            "no temp file is left"
        );
        let e = write_message(&dir.join("missing"), 1, 7, b"x").unwrap_err();
        assert_eq!(e.status, Status::Io);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_gate_holds_the_worker_until_the_caller_lets_go() {
        let g = Arc::new(Gate::default());
        let live = || true;
        for _ in 0..MAX_HELD_ITEMS {
            g.enter(10, &live).unwrap();
        }
        assert_eq!(g.held(), (MAX_HELD_ITEMS, 10 * MAX_HELD_ITEMS));
        let g2 = g.clone();
        let waiter = std::thread::spawn(move || g2.enter(10, &|| true).map(|()| g2.held()));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "a full gate lets nothing in");
        g.leave(10);
        assert_eq!(
            waiter.join().unwrap().unwrap(),
            (MAX_HELD_ITEMS, 10 * MAX_HELD_ITEMS)
        );
        // Bytes bound too, but one item always passes, however large.
        let b = Gate::default();
        b.enter(MAX_HELD_BYTES * 3, &live).unwrap();
        assert_eq!(b.enter(1, &|| false).unwrap_err().status, Status::Cancelled);
        b.leave(MAX_HELD_BYTES * 3);
        b.enter(MAX_HELD_BYTES - 1, &live).unwrap();
        assert_eq!(b.held(), (1, MAX_HELD_BYTES - 1));
    }
}
