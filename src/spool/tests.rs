//! The spool on its own: what survives a reopen, limits, the lock,
//! quarantine, group commit and segment clean-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::journal::{segment_name, SEGMENT_BYTES};
use super::record::{self, Spooled};
use super::{Config, Spool};
use crate::status::Status;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("herald-spool-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn cfg(d: &Path) -> Config {
    Config {
        dir: d.to_path_buf(),
        sync: true,
        max_messages: 1000,
        max_bytes: 64 << 20,
    }
}

fn msg(id: &str, size: usize) -> Spooled {
    Spooled {
        key: 0,
        id: id.into(),
        message_id: format!("<{id}@example.org>"),
        from: "a@example.org".into(),
        rcpts: vec!["b@example.org".into()],
        data: vec![b'x'; size],
    }
}

fn ids(sp: &Spool) -> Vec<(String, bool)> {
    sp.take_found()
        .into_iter()
        .map(|f| (f.msg.id, f.unknown))
        .collect()
}

#[test]
fn what_was_added_marked_and_done_is_found_after_a_reopen() {
    let d = dir("reopen");
    {
        let sp = Spool::open(&cfg(&d)).unwrap();
        assert!(sp.take_found().is_empty());
        let a = sp.add(&mut msg("a", 100)).unwrap();
        let b = sp.add(&mut msg("b", 100)).unwrap();
        let c = sp.add(&mut msg("c", 100)).unwrap();
        sp.mark_sending(b).unwrap();
        sp.mark_sending(c).unwrap();
        sp.done(c, false);
        let _ = a;
        // Dropped without DONE for a and b: as a crash would leave them.
    }
    let sp = Spool::open(&cfg(&d)).unwrap();
    let found = sp.take_found();
    assert_eq!(
        found
            .iter()
            .map(|f| (f.msg.id.as_str(), f.unknown))
            .collect::<Vec<_>>(),
        vec![("a", false), ("b", true)]
    );
    assert_eq!(
        found[0].msg,
        Spooled {
            key: found[0].msg.key,
            ..msg("a", 100)
        }
    );
    assert!(sp.take_found().is_empty(), "found once");
    let e = sp.add(&mut msg("a", 1)).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument, "{}", e.detail);
    let fresh = sp.add(&mut msg("d", 1)).unwrap();
    assert!(found.iter().all(|f| f.msg.key < fresh), "keys keep growing");
    for f in &found {
        sp.done(f.msg.key, true);
    }
    drop(sp);
    let sp = Spool::open(&cfg(&d)).unwrap();
    assert_eq!(ids(&sp), vec![("d".to_string(), false)]);
    drop(sp);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn limits_refuse_with_limit() {
    let d = dir("limits");
    let mut c = cfg(&d);
    c.max_messages = 3;
    let sp = Spool::open(&c).unwrap();
    let keys: Vec<u64> = (0..3)
        .map(|i| sp.add(&mut msg(&format!("m{i}"), 10)).unwrap())
        .collect();
    let e = sp.add(&mut msg("m3", 10)).unwrap_err();
    assert_eq!(e.status, Status::Limit);
    assert!(e.detail.contains("SPOOL_MAX_MESSAGES"), "{}", e.detail);
    sp.done(keys[0], false);
    sp.add(&mut msg("m3", 10)).unwrap();
    drop(sp);
    std::fs::remove_dir_all(&d).unwrap();

    let d = dir("bytes");
    let mut c = cfg(&d);
    c.max_bytes = 100_000;
    let sp = Spool::open(&c).unwrap();
    let mut n = 0;
    let e = loop {
        match sp.add(&mut msg(&format!("m{n}"), 10_000)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(e.status, Status::Limit);
    assert!(e.detail.contains("SPOOL_MAX_BYTES"), "{}", e.detail);
    assert_eq!(n, 9, "nine 10 kB messages fit in 100 kB");
    let on_disk: u64 = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= c.max_bytes, "{on_disk} bytes on disk");
    assert!(sp.usage().1 <= c.max_bytes);
    drop(sp);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_second_spool_on_the_directory_is_refused() {
    let d = dir("lock");
    let sp = Spool::open(&cfg(&d)).unwrap();
    let e = Spool::open(&cfg(&d)).err().expect("locked");
    assert_eq!(e.status, Status::Io);
    assert!(
        e.detail.contains("in use by another herald client"),
        "{}",
        e.detail
    );
    drop(sp);
    let again = Spool::open(&cfg(&d)).unwrap();
    drop(again);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn foreign_and_corrupt_files_are_set_aside_and_good_records_kept() {
    let d = dir("quarantine");
    {
        let sp = Spool::open(&cfg(&d)).unwrap();
        for i in 0..3 {
            sp.add(&mut msg(&format!("m{i}"), 50)).unwrap();
        }
    }
    // Corrupt the third message's record; add a foreign file, a torn one.
    let seg = d.join(segment_name(1));
    let mut b = std::fs::read(&seg).unwrap();
    let n = b.len();
    b[n - 5] ^= 0xff;
    std::fs::write(&seg, &b).unwrap();
    std::fs::write(d.join("notes.txt"), b"hello").unwrap();
    let mut torn = record::MAGIC.to_vec();
    record::encode_add(
        &mut torn,
        &Spooled {
            key: 99,
            ..msg("torn", 10)
        },
    );
    torn.truncate(torn.len() - 3);
    std::fs::write(d.join(segment_name(2)), &torn).unwrap();
    let lines = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sp = Spool::open(&cfg(&d)).unwrap();
    let l = lines.clone();
    sp.set_log(5, Some(Arc::new(move |_, s: &str| l.lock().push(s.to_string()))));
    let found = ids(&sp);
    assert_eq!(found, vec![("m0".to_string(), false), ("m1".to_string(), false)]);
    let lines = lines.lock().join("\n");
    assert!(
        lines.contains("notes.txt") && lines.contains("not a file of the spool"),
        "{lines}"
    );
    assert!(
        lines.contains("checksum mismatch") && lines.contains("set"),
        "{lines}"
    );
    assert!(lines.contains("cut short"), "{lines}");
    let q: Vec<String> = std::fs::read_dir(d.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(!seg.exists() && !d.join("notes.txt").exists());
    drop(sp);
    // The good messages were copied before the corrupt file went: still there.
    let sp = Spool::open(&cfg(&d)).unwrap();
    assert_eq!(ids(&sp).len(), 2);
    drop(sp);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn concurrent_adds_share_syncs_and_all_survive() {
    let d = dir("group");
    let sp = Arc::new(Spool::open(&cfg(&d)).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let sp = sp.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    sp.add(&mut msg(&format!("t{t}-{i}"), 1000)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(sp);
    let sp = Spool::open(&cfg(&d)).unwrap();
    assert_eq!(sp.take_found().len(), 400);
    drop(sp);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn completed_segments_are_deleted_oldest_first() {
    let d = dir("gc");
    let sp = Spool::open(&cfg(&d)).unwrap();
    let size = 256 * 1024;
    let n = (3 * SEGMENT_BYTES as usize) / size + 2;
    let keys: Vec<u64> = (0..n)
        .map(|i| sp.add(&mut msg(&format!("m{i}"), size)).unwrap())
        .collect();
    let segs = || {
        std::fs::read_dir(&d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("seg-")
            })
            .count()
    };
    assert!(segs() >= 3, "{} segments", segs());
    for k in &keys[1..] {
        sp.done(*k, false);
    }
    assert!(
        segs() >= 3,
        "the first message keeps its segment and those after it"
    );
    sp.done(keys[0], false);
    sp.add(&mut msg("last", 10)).unwrap();
    assert!(segs() <= 2, "{} segments left", segs());
    let (count, used) = sp.usage();
    assert_eq!(count, 1);
    assert!(used < SEGMENT_BYTES + 4096, "{used}");
    drop(sp);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn message_ids_are_found_or_added() {
    use super::{ensure_message_id, message_id_of};
    let m = b"Subject: x\r\nMessage-ID:\r\n <a@b>\r\n\r\nMessage-ID: <body@x>\r\n";
    assert_eq!(message_id_of(m).as_deref(), Some("<a@b>"));
    assert_eq!(message_id_of(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"), None);
    let (data, id) = ensure_message_id(b"Subject: x\r\n\r\nhi\r\n".to_vec(), "id 1/2");
    assert_eq!(id, "<id_1_2@herald.spool>");
    assert!(data.starts_with(b"Message-ID: <id_1_2@herald.spool>\r\nSubject: x\r\n"));
    assert_eq!(message_id_of(&data), Some(id));
}
