//! The PICKUP protocol: each message is written as an `.eml` file into
//! PICKUP_DIR, for a local MTA's pickup directory (IIS, Exchange, Postfix
//! with a watcher) or for tests. No server, no connection.
//!
//! A file appears complete or not at all: it is written under a temporary
//! name that does not end in `.eml` (so pickup services ignore it) and
//! renamed into place.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::Driver;
use crate::options::Options;
use crate::result::{field, Outcome, ResultData, ResultItem, Success};
use crate::smtp::SendJob;
use crate::status::{Error, Result, Status};

/// A send op a worker holds.
type Ticket = crate::engine::Ticket<SendJob>;
/// What the PICKUP driver sees of its worker.
type WorkerCtx = crate::engine::WorkerCtx<SendJob>;

/// Prefix of the temporary files; they never end in `.eml`.
const TMP_PREFIX: &str = ".tmp-";

/// Runs a PICKUP client's ops.
pub struct PickupDriver {
    options: Arc<Options>,
}

impl PickupDriver {
    pub fn new(options: Arc<Options>) -> Self {
        PickupDriver { options }
    }

    fn send(&self, ticket: &Ticket) -> Outcome {
        let Some(dir) = self.options.pickup_dir.as_deref() else {
            return Err(Error::invalid("a PICKUP client needs PICKUP_DIR"));
        };
        let job = &ticket.job;
        let path = write_eml(dir, job.content()?)?;
        let len = job.len() as u64;
        ticket.progress(len, len);
        let path = path.to_string_lossy();
        let item = ResultItem::new(0)
            .with_str(field::NAME, &path)
            .with_int(field::SIZE, len);
        Ok(Success::new(0, path.as_ref()).with_result(ResultData::new(vec![item])))
    }
}

impl Driver for PickupDriver {
    type Job = SendJob;

    fn run(&mut self, first: Ticket, _w: &mut WorkerCtx) {
        // A cancelled op must not leave a file behind.
        let outcome = if first.is_live() {
            self.send(&first)
        } else {
            Err(Error::cancelled())
        };
        first.complete(outcome);
    }

    fn close_idle(&mut self, _w: &mut WorkerCtx) {}
}

/// A file name unique across threads, processes and hosts writing into one
/// directory: time, process id, a process-wide counter and a random part
/// (process ids repeat across containers sharing a volume).
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = crate::message::unique_u64() as u32;
    format!("{nanos:020}-{}-{n}-{random:08x}", std::process::id())
}

/// Writes `data` byte-exact as a new `<unique>.eml` in `dir` and returns its
/// path. On failure (missing or unwritable directory, disk full) nothing is
/// left behind and the error is `Status::Io`, naming the directory.
pub fn write_eml(dir: &Path, data: &[u8]) -> Result<PathBuf> {
    let name = unique_name();
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let path = dir.join(format!("{name}.eml"));
    let io_error = |e: std::io::Error| Error::new(Status::Io, format!("PICKUP_DIR {}: {e}", dir.display()));
    // create_new: never truncate a file that is not ours.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_error)?;
    let written = file.write_all(data).and_then(|()| {
        drop(file);
        fs::rename(&tmp, &path)
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(e));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("herald-pickup-{tag}-{}", unique_name()));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        fn names(&self) -> Vec<String> {
            fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn writes_byte_exact() {
        let dir = TempDir::new("exact");
        let data: Vec<u8> = (0..=255u8)
            .cycle()
            .take(100_000)
            .chain(b"\r\n.\r\n\n\r".iter().copied())
            .collect();
        let path = write_eml(&dir.0, &data).unwrap();
        assert_eq!(path.parent(), Some(dir.0.as_path()));
        assert!(path.to_string_lossy().ends_with(".eml"));
        assert_eq!(fs::read(&path).unwrap(), data);
        let empty = write_eml(&dir.0, b"").unwrap();
        assert_eq!(fs::read(&empty).unwrap(), b"");
        assert_eq!(dir.names().len(), 2);
    }

    #[test]
    fn names_are_unique_across_threads() {
        let dir = TempDir::new("unique");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let d = dir.0.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        write_eml(&d, format!("{t}-{i}").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let names = dir.names();
        assert_eq!(names.len(), 8 * 500, "no file overwrote another");
        assert!(
            names
                .iter()
                .all(|n| n.ends_with(".eml") && !n.starts_with(TMP_PREFIX)),
            "no temp files left"
        );
        let mut contents: Vec<_> = names.iter().map(|n| fs::read(dir.0.join(n)).unwrap()).collect();
        contents.sort();
        contents.dedup();
        assert_eq!(contents.len(), 8 * 500);
    }

    #[test]
    fn a_client_writes_each_message_and_says_where() {
        use crate::engine::{Engine, Notify, Submit};
        use crate::options::{id, Protocol};

        let dir = TempDir::new("client");
        let mut o = Options::new(Protocol::Pickup);
        o.set_str(id::PICKUP_DIR, &dir.0.to_string_lossy()).unwrap();
        let client = Engine::new(
            o,
            Box::new(|o: &Arc<Options>| Box::new(PickupDriver::new(o.clone())) as _),
        )
        .unwrap();
        let data = b"From: a@example.com\r\nTo: b@example.com\r\n\r\n.hi\r\n".to_vec();
        let job = SendJob::new(
            crate::envelope::Envelope::of("a@example.com", &["b@example.com"]),
            data.clone(),
        );
        let op = client
            .submit(
                job,
                Submit {
                    notify: Notify::Queue,
                    on_change: None,
                    token: 7,
                },
            )
            .unwrap();
        let c = client
            .next_completion(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        assert_eq!((c.op, c.status, c.token), (op, Status::Ok, 7), "{}", c.detail);
        let item = &c.result.as_ref().unwrap().items[0];
        let name = item.str_field(field::NAME).unwrap().to_str().unwrap();
        assert_eq!(name, c.detail);
        assert!(name.ends_with(".eml") && name.starts_with(&*dir.0.to_string_lossy()));
        assert_eq!(fs::read(name).unwrap(), data);
        assert_eq!(dir.names().len(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let dir = TempDir::new("missing");
        let gone = dir.0.join("not-there");
        let e = write_eml(&gone, b"x").unwrap_err();
        assert_eq!(e.status, Status::Io);
        assert!(e.detail.contains("not-there"), "{}", e.detail);
        assert!(dir.names().is_empty());
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_an_io_error() {
        let dir = TempDir::new("notdir");
        let file = dir.0.join("plain-file");
        fs::write(&file, b"").unwrap();
        assert_eq!(write_eml(&file, b"x").unwrap_err().status, Status::Io);
        assert_eq!(dir.names(), ["plain-file"]);
    }
}
