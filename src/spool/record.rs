//! The spool's on-disk format: a segment file is a header followed by
//! records, each framed with its length and a CRC-32, so a torn tail (a
//! crash in the middle of a write) and corruption are told apart. Pure
//! functions over bytes: what the fuzz target and the tests feed.
//!
//! ```text
//! segment := MAGIC record*
//! record  := len:u32le crc:u32le kind:u8 payload[len]     crc = CRC-32 of kind and payload
//! ADD     := key:u64le id:str16 message_id:str16 from:str16 n:u32le rcpt:str16{n} data:u32le-length bytes
//! SENDING := key:u64le          (the message may go out from here on: its outcome is unknown)
//! DONE    := key:u64le          (completed and reported: forget it)
//! str16   := len:u16le utf8[len]
//! ```

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"HRLDSPL1";
/// Bytes of a record's frame before its payload.
pub const FRAME: usize = 9;
/// Size of a SENDING or DONE record.
pub const MARK_LEN: usize = FRAME + 8;
/// The largest payload a record may declare: anything larger is corrupt.
pub const MAX_PAYLOAD: u64 = 1 << 32;

const ADD: u8 = 1;
const SENDING: u8 = 2;
const DONE: u8 = 3;

/// A message as the spool keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    /// The spool's own key, unique in the directory.
    pub key: u64,
    /// The caller's stable id (or one herald assigned).
    pub id: String,
    /// The message's Message-ID header value, "" when it has none.
    pub message_id: String,
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Add(Spooled),
    Sending(u64),
    Done(u64),
}

/// Why decoding stopped before the end of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The last record is incomplete: a write cut short by a crash. It was
    /// never reported durable, so nothing is lost.
    Torn { at: usize },
    /// Bytes that are not a record (or not this format) at `at`.
    Corrupt { at: usize, why: String },
}

/// CRC-32 (IEEE), slicing by 8 (eight bytes per step: the spool
/// checksums every byte it writes, so this is most of a submit's CPU).
pub fn crc32(parts: &[&[u8]]) -> u32 {
    static TABLES: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let t = TABLES.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for (i, slot) in t[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        for k in 1..8 {
            let (done, rest) = t.split_at_mut(k);
            for (slot, &prev) in rest[0].iter_mut().zip(done[k - 1].iter()) {
                *slot = done[0][(prev & 0xff) as usize] ^ (prev >> 8);
            }
        }
        t
    });
    let mut c = !0u32;
    for p in parts {
        let mut chunks = p.chunks_exact(8);
        for b in &mut chunks {
            let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            c = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            c = t[0][((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&[&[kind], payload]).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Appends the ADD record of `m` to `out`, encoded in place (the bytes
/// are copied once). Strings longer than 65535 bytes are refused before
/// this (see `check_lengths`).
pub fn encode_add(out: &mut Vec<u8>, m: &Spooled) {
    let start = out.len();
    out.reserve(add_len(m));
    out.extend_from_slice(&[0; 8]);
    out.push(ADD);
    out.extend_from_slice(&m.key.to_le_bytes());
    put_str(out, &m.id);
    put_str(out, &m.message_id);
    put_str(out, &m.from);
    out.extend_from_slice(&(m.rcpts.len() as u32).to_le_bytes());
    for r in &m.rcpts {
        put_str(out, r);
    }
    out.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&m.data);
    let len = (out.len() - start - FRAME) as u32;
    let crc = crc32(&[&out[start + 8..]]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The size of `m`'s ADD record.
pub fn add_len(m: &Spooled) -> usize {
    FRAME
        + 8
        + 2 * 3
        + m.id.len()
        + m.message_id.len()
        + m.from.len()
        + 4
        + m.rcpts.iter().map(|r| 2 + r.len()).sum::<usize>()
        + 4
        + m.data.len()
}

/// Can `m` be written as a record? (Field lengths fit their prefixes.)
pub fn check_lengths(m: &Spooled) -> Result<(), String> {
    let long = [&m.id, &m.message_id, &m.from]
        .into_iter()
        .chain(m.rcpts.iter())
        .any(|s| s.len() > u16::MAX as usize);
    if long {
        return Err("an address or id is longer than 65535 bytes".into());
    }
    if (add_len(m) - FRAME) as u64 >= MAX_PAYLOAD || m.rcpts.len() > u32::MAX as usize {
        return Err("the message is too large for the spool (4 GiB)".into());
    }
    Ok(())
}

/// Appends a SENDING (`sending`) or DONE record for `key`.
pub fn encode_mark(out: &mut Vec<u8>, key: u64, sending: bool) {
    frame(out, if sending { SENDING } else { DONE }, &key.to_le_bytes());
}

/// Reads fields off a payload; every read is bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err("a field runs past the end of its record".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a string field is not UTF-8".into())
    }
}

fn decode_payload(kind: u8, p: &[u8]) -> Result<Record, String> {
    let mut c = Cursor { b: p };
    let r = match kind {
        ADD => {
            let key = c.u64()?;
            let (id, message_id, from) = (c.str()?, c.str()?, c.str()?);
            let n = c.u32()? as usize;
            // Each recipient takes at least 2 bytes: a count beyond that is corrupt.
            if n > c.b.len() / 2 {
                return Err("the recipient count exceeds the record".into());
            }
            let rcpts = (0..n).map(|_| c.str()).collect::<Result<Vec<_>, _>>()?;
            let len = c.u32()? as usize;
            let data = c.take(len)?.to_vec();
            if id.is_empty() {
                return Err("a message without an id".into());
            }
            Record::Add(Spooled {
                key,
                id,
                message_id,
                from,
                rcpts,
                data,
            })
        }
        SENDING => Record::Sending(c.u64()?),
        DONE => Record::Done(c.u64()?),
        k => return Err(format!("unknown record kind {k}")),
    };
    if !c.b.is_empty() {
        return Err("bytes left over after the record's fields".into());
    }
    Ok(r)
}

/// Decodes a whole segment: its records with their offsets and lengths,
/// and why it stopped early, if it did.
pub fn decode_segment(b: &[u8]) -> (Vec<(usize, usize, Record)>, Option<Stop>) {
    let mut out = Vec::new();
    if b.len() < MAGIC.len() {
        let stop = if MAGIC.starts_with(b) {
            Stop::Torn { at: 0 }
        } else {
            Stop::Corrupt {
                at: 0,
                why: "not a herald spool file".into(),
            }
        };
        return (out, Some(stop));
    }
    if &b[..MAGIC.len()] != MAGIC {
        let why = "not a herald spool file (bad magic)".into();
        return (out, Some(Stop::Corrupt { at: 0, why }));
    }
    let mut at = MAGIC.len();
    while at < b.len() {
        let rest = &b[at..];
        if rest.len() < FRAME {
            return (out, Some(Stop::Torn { at }));
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4"));
        let kind = rest[8];
        if rest.len() < FRAME + len {
            return (out, Some(Stop::Torn { at }));
        }
        let payload = &rest[FRAME..FRAME + len];
        if crc32(&[&[kind], payload]) != crc {
            let why = "checksum mismatch".into();
            return (out, Some(Stop::Corrupt { at, why }));
        }
        match decode_payload(kind, payload) {
            Ok(r) => out.push((at, FRAME + len, r)),
            Err(why) => return (out, Some(Stop::Corrupt { at, why })),
        }
        at += FRAME + len;
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(key: u64) -> Spooled {
        Spooled {
            key,
            id: format!("id-{key}"),
            message_id: format!("<{key}@example.org>"),
            from: "a@example.org".into(),
            rcpts: vec!["b@example.org".into(), "c@example.org".into()],
            data: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        }
    }

    fn segment() -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        encode_add(&mut b, &msg(1));
        encode_mark(&mut b, 1, true);
        encode_add(&mut b, &msg(2));
        encode_mark(&mut b, 1, false);
        b
    }

    #[test]
    fn records_round_trip() {
        let b = segment();
        let (recs, stop) = decode_segment(&b);
        assert_eq!(stop, None);
        let kinds: Vec<Record> = recs.into_iter().map(|r| r.2).collect();
        assert_eq!(
            kinds,
            vec![
                Record::Add(msg(1)),
                Record::Sending(1),
                Record::Add(msg(2)),
                Record::Done(1)
            ]
        );
        let mut one = Vec::new();
        encode_add(&mut one, &msg(7));
        assert_eq!(one.len(), add_len(&msg(7)));
    }

    #[test]
    fn every_truncation_is_a_torn_tail_and_keeps_the_whole_records() {
        let b = segment();
        let (full, _) = decode_segment(&b);
        for cut in 0..b.len() {
            let (recs, stop) = decode_segment(&b[..cut]);
            let whole = full.iter().filter(|r| r.0 + r.1 <= cut).count();
            assert_eq!(recs.len(), whole, "cut at {cut}");
            let boundary = cut == MAGIC.len() || full.iter().any(|r| r.0 + r.1 == cut);
            if boundary {
                assert_eq!(stop, None, "cut at {cut}");
            } else {
                assert!(matches!(stop, Some(Stop::Torn { .. })), "cut at {cut}: {stop:?}");
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_detected_or_harmless() {
        let b = segment();
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x41;
            let (recs, stop) = decode_segment(&c);
            // Never a record that was not written.
            let (orig, _) = decode_segment(&b);
            for r in &recs {
                assert!(orig.contains(r), "byte {i}: invented {r:?}");
            }
            assert!(stop.is_some(), "byte {i}: a flipped byte goes unnoticed");
        }
    }

    #[test]
    fn foreign_bytes_are_corrupt() {
        let (r, s) = decode_segment(b"From: someone\r\n\r\nhello");
        assert!(r.is_empty());
        assert!(matches!(s, Some(Stop::Corrupt { at: 0, .. })));
    }

    #[test]
    fn the_fuzz_corpus_seed_is_a_whole_segment() {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/spool_segment/valid");
        let (recs, stop) = decode_segment(&std::fs::read(p).unwrap());
        assert_eq!((recs.len(), stop), (4, None));
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    /// The CRC bit by bit, as the standard defines it.
    fn crc_bitwise(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn crc_by_eight_bytes_matches_the_bitwise_one_over_any_split() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1000] {
            let want = crc_bitwise(&data[..len]);
            for cut in [0, 1, 3, len / 2, len] {
                let cut = cut.min(len);
                assert_eq!(
                    crc32(&[&data[..cut], &data[cut..len]]),
                    want,
                    "len {len} cut {cut}"
                );
            }
        }
    }
}
