//! DATA framing (RFC 5321 §4.5.2): dot-stuffing, CRLF line endings, the
//! terminating ".\r\n"; and what a message needs from the server.

use crate::envelope::Envelope;

/// Encodes message bytes for DATA, chunk by chunk: a '.' at the start of a
/// line is doubled, a bare LF becomes CRLF, and `finish` adds a final CRLF
/// when the message lacks one, then the terminating ".\r\n".
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    prev_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            prev_cr: false,
        }
    }
}

impl DotStuffer {
    /// Appends the encoding of `input` to `out`. Only the line feeds are
    /// visited (found with `memchr`); the bytes between them are copied in
    /// as few spans as possible, split only where a CR or a '.' goes in.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = input.last() else { return };
        out.reserve(input.len() + input.len() / 64 + 8);
        if self.at_line_start && input[0] == b'.' {
            out.push(b'.');
        }
        // input[start..] is not yet in `out`.
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', input) {
            let cr_before = if i == 0 {
                self.prev_cr
            } else {
                input[i - 1] == b'\r'
            };
            if !cr_before {
                out.extend_from_slice(&input[start..i]);
                out.push(b'\r');
                start = i;
            }
            if input.get(i + 1) == Some(&b'.') {
                out.extend_from_slice(&input[start..=i]);
                out.push(b'.');
                start = i + 1;
            }
        }
        out.extend_from_slice(&input[start..]);
        self.at_line_start = last == b'\n';
        self.prev_cr = last == b'\r';
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if self.prev_cr {
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b".\r\n");
        *self = DotStuffer::default();
    }
}

/// What a message's bytes and envelope need from the server. Computed once,
/// when the message is submitted (`SendJob::new`), and carried with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Bytes >= 0x80: BODY=8BITMIME.
    pub eight_bit: bool,
    /// NUL bytes or bare CR/LF: only BDAT carries them unchanged.
    pub binary: bool,
    /// Non-ASCII addresses: SMTPUTF8.
    pub smtputf8: bool,
    /// A line starts with '.': DATA doubles it.
    pub dot_lines: bool,
}

impl Needs {
    pub fn of(env: &Envelope, data: &[u8]) -> Needs {
        Needs::from_scan(env, scan(data))
    }

    /// A copy of `data` and `Needs::of` it, in one pass over the bytes.
    pub fn of_copied(env: &Envelope, data: &[u8]) -> (Needs, Vec<u8>) {
        let (copy, found) = copy_scanned(data);
        (Needs::from_scan(env, found), copy)
    }

    fn from_scan(env: &Envelope, scan: Scan) -> Needs {
        Needs {
            // One buffer holds every address of the envelope.
            smtputf8: !env.is_ascii(),
            eight_bit: scan.high,
            binary: scan.binary,
            dot_lines: scan.dot_lines,
        }
    }

    /// Does DATA carry the message byte for byte, with no dot doubled and
    /// no CR added, so that only the terminator follows it?
    pub fn verbatim(&self) -> bool {
        !self.binary && !self.dot_lines
    }
}

/// What one pass over a message's bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// A NUL, a bare CR or a bare LF (what DATA can't carry unchanged).
    binary: bool,
    /// A line that starts with '.'.
    dot_lines: bool,
    /// A byte >= 0x80.
    high: bool,
}

/// Scans every byte of every message once, at submit. Past the first byte,
/// the data is free of NULs and bare CR/LF iff every byte is non-NUL and is
/// an LF exactly when the byte before it is a CR; a line starts with a dot
/// where a '.' follows an LF. Both tests and the high-bit test run
/// branch-free over 16 or 32 bytes at a time (SSE2, or AVX2 when the CPU
/// has it), comparing each block with the same block shifted by one byte.
fn scan(data: &[u8]) -> Scan {
    // SAFETY: a null `out`: nothing is written.
    unsafe { scan_with(data, std::ptr::null_mut(), blocks) }
}

/// A copy of `data` and what `scan` finds in it, made in the same pass.
fn copy_scanned(data: &[u8]) -> (Vec<u8>, Scan) {
    let mut v = crate::buffer::buffer(data.len());
    // SAFETY: `v` has room for data.len() bytes, and scan_with writes every
    // one of them before the length is set.
    unsafe {
        let found = scan_with(data, v.as_mut_ptr(), blocks);
        v.set_len(data.len());
        (v, found)
    }
}

/// Blocks of `data` from index 1 on, scanned (and copied to `out` unless it
/// is null): what they hold and where the first byte after them is.
type BlockFn = fn(&[u8], *mut u8) -> (Acc, usize);

/// # Safety
/// `out` is null or points to `data.len()` writable bytes, all of which
/// this writes.
unsafe fn scan_with(data: &[u8], out: *mut u8, blocks: BlockFn) -> Scan {
    let (Some(&first), Some(&last)) = (data.first(), data.last()) else {
        return Scan::default();
    };
    let (mut acc, i) = blocks(data, out);
    let i = i.max(1);
    for k in i..data.len() {
        acc.add(data[k - 1], data[k]);
    }
    if !out.is_null() {
        // SAFETY: the blocks wrote out[1..i]; this writes out[0] and out[i..].
        unsafe {
            *out = first;
            std::ptr::copy_nonoverlapping(data.as_ptr().add(i), out.add(i), data.len() - i);
        }
    }
    Scan {
        binary: acc.bad != 0 || first == 0 || first == b'\n' || last == b'\r',
        dot_lines: acc.dot != 0 || first == b'.',
        high: (acc.high | first) >= 0x80,
    }
}

/// What `scan` collects, byte by byte where no block is left.
#[derive(Default)]
struct Acc {
    bad: u8,
    dot: u8,
    high: u8,
}

impl Acc {
    fn add(&mut self, prev: u8, cur: u8) {
        self.bad |= u8::from((cur == b'\n') != (prev == b'\r')) | u8::from(cur == 0);
        self.dot |= u8::from(cur == b'.' && prev == b'\n');
        self.high |= cur;
    }
}

/// The block part of `scan`: data[1..i] scanned (and copied to out[1..i]
/// unless `out` is null), returns (what, i).
#[cfg(target_arch = "x86_64")]
fn blocks(data: &[u8], out: *mut u8) -> (Acc, usize) {
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); `out` as `scan_with` got it.
        unsafe { blocks_avx2(data, out) }
    } else {
        // SAFETY: SSE2 is part of x86_64; `out` as `scan_with` got it.
        unsafe { blocks_sse2(data, out) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn blocks(_data: &[u8], _out: *mut u8) -> (Acc, usize) {
    (Acc::default(), 1)
}

macro_rules! simd_blocks {
    ($name:ident, $feature:literal, $vec:ty, $width:literal, $load:ident, $set1:ident, $cmpeq:ident,
     $or:ident, $and:ident, $xor:ident, $zero:ident, $movemask:ident, $store:ident, $reg:ident,
     $bytes:ident) => {
        /// # Safety
        /// The CPU must have the target feature; `out` is null or has room
        /// for `data.len()` bytes.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(data: &[u8], out: *mut u8) -> (Acc, usize) {
            use std::arch::x86_64::*;
            let p = data.as_ptr();
            let (lf, cr, dot) = ($set1(b'\n' as i8), $set1(b'\r' as i8), $set1(b'.' as i8));
            let zero = $zero();
            let (mut bad, mut dots) = (zero, zero);
            // What the bytes seen say of NULs and 8-bit bytes (`$bytes`).
            let mut bytes = $bytes::new();
            let mut i = 1;
            // One block at `i`: tested, and copied when `$copy`.
            macro_rules! block {
                ($copy:expr) => {{
                    // SAFETY: i - 1 >= 0 and i + width <= len: both loads are in bounds.
                    let (cur, prev) = unsafe {
                        (
                            $load(p.add(i) as *const $vec),
                            $load(p.add(i - 1) as *const $vec),
                        )
                    };
                    if $copy {
                        let mut v = cur;
                        // An empty asm the compiler can't see through: otherwise
                        // it splits the copy back out into a memcpy call, a second
                        // pass over the bytes.
                        // SAFETY: the asm is empty; it leaves `v` as it is.
                        unsafe { std::arch::asm!("/* {0} */", inout($reg) v, options(pure, nomem, nostack)) };
                        // SAFETY: i + width <= len, and `out` has room for len bytes.
                        unsafe { $store(out.add(i) as *mut $vec, v) };
                    }
                    let lone = $xor($cmpeq(cur, lf), $cmpeq(prev, cr));
                    bad = $or(bad, lone);
                    bytes.add(cur);
                    dots = $or(dots, $and($cmpeq(cur, dot), $cmpeq(prev, lf)));
                    i += $width;
                }};
            }
            // Four blocks per turn, with the copy decided outside the loop:
            // fewer instructions per byte for the loop's own bookkeeping.
            if out.is_null() {
                while i + 4 * $width <= data.len() {
                    block!(false);
                    block!(false);
                    block!(false);
                    block!(false);
                }
                while i + $width <= data.len() {
                    block!(false);
                }
                if i < data.len() && data.len() > $width {
                    // The rest as one block ending at the end, overlapping
                    // the last: its bytes tested (and copied) again, alike.
                    i = data.len() - $width;
                    block!(false);
                }
            } else {
                while i + 4 * $width <= data.len() {
                    block!(true);
                    block!(true);
                    block!(true);
                    block!(true);
                }
                while i + $width <= data.len() {
                    block!(true);
                }
                if i < data.len() && data.len() > $width {
                    // The rest as one block ending at the end, overlapping
                    // the last: its bytes tested (and copied) again, alike.
                    i = data.len() - $width;
                    block!(true);
                }
            }
            // data[1..i] were the blocks.
            let (nul, high) = bytes.finish(&data[1..i]);
            let acc = Acc {
                bad: u8::from($movemask(bad) != 0 || nul),
                dot: u8::from($movemask(dots) != 0),
                high: if high { 0x80 } else { 0 },
            };
            (acc, i)
        }
    };
}

/// NULs and 8-bit bytes over SSE2 blocks: the least byte (a NUL is there
/// iff it is 0) and the OR of all (an 8-bit byte iff its top bit is set).
#[cfg(target_arch = "x86_64")]
struct BytesSse2 {
    low: std::arch::x86_64::__m128i,
    high: std::arch::x86_64::__m128i,
}

#[cfg(target_arch = "x86_64")]
impl BytesSse2 {
    #[inline]
    #[target_feature(enable = "sse2")]
    fn new() -> Self {
        use std::arch::x86_64::*;
        BytesSse2 {
            low: _mm_set1_epi8(-1),
            high: _mm_setzero_si128(),
        }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn add(&mut self, cur: std::arch::x86_64::__m128i) {
        use std::arch::x86_64::*;
        self.low = _mm_min_epu8(self.low, cur);
        self.high = _mm_or_si128(self.high, cur);
    }

    /// (a NUL, an 8-bit byte) in the blocks added.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn finish(self, _blocks: &[u8]) -> (bool, bool) {
        use std::arch::x86_64::*;
        (
            _mm_movemask_epi8(_mm_cmpeq_epi8(self.low, _mm_setzero_si128())) != 0,
            _mm_movemask_epi8(self.high) != 0,
        )
    }
}

/// NULs and 8-bit bytes over AVX2 blocks, one instruction a block: the
/// least byte as a signed number is positive iff no byte is NUL or 8-bit,
/// the common case (7bit text). Otherwise the blocks are scanned again
/// for each, as `BytesSse2` does.
#[cfg(target_arch = "x86_64")]
struct BytesAvx2 {
    low: std::arch::x86_64::__m256i,
}

#[cfg(target_arch = "x86_64")]
impl BytesAvx2 {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new() -> Self {
        BytesAvx2 {
            low: std::arch::x86_64::_mm256_set1_epi8(i8::MAX),
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn add(&mut self, cur: std::arch::x86_64::__m256i) {
        self.low = std::arch::x86_64::_mm256_min_epi8(self.low, cur);
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn finish(self, blocks: &[u8]) -> (bool, bool) {
        use std::arch::x86_64::*;
        if _mm256_movemask_epi8(_mm256_cmpgt_epi8(_mm256_set1_epi8(1), self.low)) == 0 {
            return (false, false);
        }
        (memchr::memchr(0, blocks).is_some(), !blocks.is_ascii())
    }
}

simd_blocks!(
    blocks_sse2,
    "sse2",
    __m128i,
    16,
    _mm_loadu_si128,
    _mm_set1_epi8,
    _mm_cmpeq_epi8,
    _mm_or_si128,
    _mm_and_si128,
    _mm_xor_si128,
    _mm_setzero_si128,
    _mm_movemask_epi8,
    _mm_storeu_si128,
    xmm_reg,
    BytesSse2
);
simd_blocks!(
    blocks_avx2,
    "avx2",
    __m256i,
    32,
    _mm256_loadu_si256,
    _mm256_set1_epi8,
    _mm256_cmpeq_epi8,
    _mm256_or_si256,
    _mm256_and_si256,
    _mm256_xor_si256,
    _mm256_setzero_si256,
    _mm256_movemask_epi8,
    _mm256_storeu_si256,
    ymm_reg,
    BytesAvx2
);

/// Does `data` hold a NUL, a bare CR or a bare LF?
#[cfg(test)]
fn has_binary(data: &[u8]) -> bool {
    scan(data).binary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff_in_chunks(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut d = DotStuffer::default();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            d.encode(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn dots_are_doubled_at_line_starts_only() {
        let out = stuff_in_chunks(b".a\r\nb.c\r\n..\r\n.\r\n", 1000);
        assert_eq!(out, b"..a\r\nb.c\r\n...\r\n..\r\n.\r\n");
    }

    #[test]
    fn missing_final_crlf_is_added_and_bare_lf_fixed() {
        assert_eq!(stuff_in_chunks(b"a\nb", 1000), b"a\r\nb\r\n.\r\n");
        assert_eq!(stuff_in_chunks(b"", 1000), b".\r\n");
        assert_eq!(stuff_in_chunks(b"x\r", 1000), b"x\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let msg = b"Subject: x\r\n\r\n.start\r\nmid.dle\r\n\r\n.\r\n..two\nbare\r\n.end";
        let whole = stuff_in_chunks(msg, 10_000);
        for chunk in 1..msg.len() {
            assert_eq!(stuff_in_chunks(msg, chunk), whole, "chunk size {chunk}");
        }
    }

    /// The byte-by-byte encoder `DotStuffer` replaced: the definition the
    /// scanning one must match, chunk by chunk, state included.
    #[derive(Default)]
    struct Reference {
        started: bool,
        at_line_start: bool,
        prev_cr: bool,
    }

    impl Reference {
        fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
            if !self.started {
                self.started = true;
                self.at_line_start = true;
            }
            for &b in input {
                if self.at_line_start && b == b'.' {
                    out.push(b'.');
                }
                if b == b'\n' && !self.prev_cr {
                    out.push(b'\r');
                }
                out.push(b);
                self.at_line_start = b == b'\n';
                self.prev_cr = b == b'\r';
            }
        }

        fn finish(&mut self, out: &mut Vec<u8>) {
            let at_line_start = !self.started || self.at_line_start;
            if !at_line_start {
                out.extend_from_slice(if self.prev_cr { b"\n" } else { b"\r\n" });
            }
            out.extend_from_slice(b".\r\n");
            *self = Reference::default();
        }
    }

    fn reference(chunks: &[&[u8]]) -> Vec<u8> {
        let mut r = Reference::default();
        let mut out = Vec::new();
        for c in chunks {
            r.encode(c, &mut out);
        }
        r.finish(&mut out);
        out
    }

    /// xorshift64*: reproducible pseudo-random numbers for the tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn tricky_inputs() {
        let cases: &[(&[&[u8]], &[u8])] = &[
            // A dot right after a chunk that ends a line.
            (&[b"a\r\n", b".b\r\n"], b"a\r\n..b\r\n.\r\n"),
            (&[b"a\n", b".b"], b"a\r\n..b\r\n.\r\n"),
            // CR and LF split across chunks: no CR added.
            (&[b"a\r", b"\nb\r\n"], b"a\r\nb\r\n.\r\n"),
            (&[b"a\r", b"\n.b"], b"a\r\n..b\r\n.\r\n"),
            // A bare LF at a chunk start after a chunk not ending in CR.
            (&[b"a", b"\nb"], b"a\r\nb\r\n.\r\n"),
            // Bare CR is kept, bare LF gets its CR; a dot after either.
            (&[b"a\rb\nc\r\n"], b"a\rb\r\nc\r\n.\r\n"),
            (&[b"\n.\n."], b"\r\n..\r\n..\r\n.\r\n"),
            (&[b"a\r.b\r\n"], b"a\r.b\r\n.\r\n"),
            // Final line without CRLF; a final lone CR gets its LF.
            (&[b"last"], b"last\r\n.\r\n"),
            (&[b"x\r"], b"x\r\n.\r\n"),
            (&[b"x", b"\r"], b"x\r\n.\r\n"),
            // Empty chunks change nothing, anywhere.
            (&[b"", b".", b"", b"\n", b""], b"..\r\n.\r\n"),
            (&[b""], b".\r\n"),
            (&[b"."], b"..\r\n.\r\n"),
            (&[b"..\r\n"], b"...\r\n.\r\n"),
        ];
        for (chunks, want) in cases {
            let mut d = DotStuffer::default();
            let mut out = Vec::new();
            for c in *chunks {
                d.encode(c, &mut out);
            }
            d.finish(&mut out);
            assert_eq!(out, *want, "{chunks:?}");
            assert_eq!(reference(chunks), *want, "reference, {chunks:?}");
        }
    }

    #[test]
    fn matches_the_byte_by_byte_encoder_on_random_inputs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Mostly the bytes that matter, in runs, so that dots follow line
        // ends and CR/LF pairs straddle chunk edges often.
        let alphabet: &[u8] = b"..\r\n\r\n\naZ\0\xff";
        let mut d = DotStuffer::default();
        for round in 0..4000 {
            let len = match round % 4 {
                0 => rng.below(8),
                1 => rng.below(64),
                2 => rng.below(600),
                _ => rng.below(5000),
            };
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(4) == 0 {
                        b'x'
                    } else {
                        alphabet[rng.below(alphabet.len())]
                    }
                })
                .collect();
            // Random chunk edges, empty chunks included.
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < input.len() {
                let most = if rng.below(3) == 0 { 4 } else { 300 };
                let n = rng.below(most);
                let end = (at + n).min(input.len());
                chunks.push(&input[at..end]);
                at = end;
            }
            let want = reference(&chunks);
            let mut out = Vec::new();
            for c in &chunks {
                d.encode(c, &mut out);
            }
            d.finish(&mut out);
            assert_eq!(out, want, "round {round}: {input:?} in {} chunks", chunks.len());
            // The same bytes in one chunk encode the same.
            assert_eq!(stuff_in_chunks(&input, input.len().max(1)), want);
        }
    }

    #[test]
    fn needs_detection() {
        let n = Needs::of(&Envelope::of("a@b", &["c@d"]), b"plain\r\n");
        assert_eq!(n, Needs::default());
        assert!(Needs::of(&Envelope::new("a@b", 0), "caf\u{e9}\r\n".as_bytes()).eight_bit);
        assert!(Needs::of(&Envelope::new("a@b", 0), b"a\nb").binary);
        assert!(Needs::of(&Envelope::new("a@b", 0), b"a\rb").binary);
        assert!(Needs::of(&Envelope::new("a@b", 0), b"a\0b").binary);
        assert!(Needs::of(&Envelope::new("\u{e9}@b", 0), b"").smtputf8);
        assert!(Needs::of(&Envelope::of("a@b", &["x@\u{e9}.fr"]), b"").smtputf8);
    }

    /// The byte-by-byte definition `has_binary` must agree with.
    fn has_binary_slow(data: &[u8]) -> bool {
        data.iter().enumerate().any(|(i, &b)| match b {
            0 => true,
            b'\r' => data.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || data[i - 1] != b'\r',
            _ => false,
        })
    }

    /// The byte-by-byte definitions of what `scan` finds.
    fn scan_slow(data: &[u8]) -> Scan {
        Scan {
            binary: has_binary_slow(data),
            dot_lines: data.first() == Some(&b'.') || data.windows(2).any(|w| w == b"\n."),
            high: !data.is_ascii(),
        }
    }

    #[test]
    fn scan_matches_its_definition_on_random_inputs() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let alphabet: &[u8] = b".\r\n\0\x80\xffab";
        for round in 0..3000 {
            let len = rng.below(if round % 2 == 0 { 70 } else { 700 });
            // Mostly clean CRLF text, a few special bytes at random places.
            let mut d: Vec<u8> = b"abc def\r\n".iter().copied().cycle().take(len).collect();
            for _ in 0..rng.below(3) {
                if !d.is_empty() {
                    let at = rng.below(d.len());
                    d[at] = alphabet[rng.below(alphabet.len())];
                }
            }
            assert_eq!(scan(&d), scan_slow(&d), "{d:?}");
            let (copy, found) = copy_scanned(&d);
            assert_eq!((&copy[..], found), (&d[..], scan_slow(&d)), "copied");
            // Each way of scanning: AVX2 if this CPU has it, SSE2, byte by byte.
            #[allow(unused_mut)]
            let mut ways: Vec<BlockFn> = vec![blocks, |_, _| (Acc::default(), 1)];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of x86_64; `out` as scan_with passes it.
            ways.push(|d, out| unsafe { blocks_sse2(d, out) });
            for way in ways {
                let mut out = vec![0xaau8; d.len()];
                // SAFETY: `out` has d.len() bytes; a null out is not written.
                let (plain, copied) = unsafe {
                    (
                        scan_with(&d, std::ptr::null_mut(), way),
                        scan_with(&d, out.as_mut_ptr(), way),
                    )
                };
                assert_eq!(plain, scan_slow(&d), "{d:?}");
                assert_eq!(copied, scan_slow(&d), "{d:?}");
                assert_eq!(out, d, "copied whole");
            }
            let n = Needs::of(&Envelope::new("a@b", 0), &d);
            // Verbatim exactly when the encoding is the bytes plus the terminator.
            let plain = [with_crlf(&d), b".\r\n".to_vec()].concat();
            if n.verbatim() {
                assert_eq!(stuff_in_chunks(&d, 100), plain, "{d:?}");
            } else if !n.binary {
                assert_ne!(stuff_in_chunks(&d, 100), plain, "{d:?}");
            }
        }
    }

    #[test]
    fn a_large_message_is_copied_whole() {
        // Past 1 MiB the copy's pages are made present first (Linux).
        let mut d: Vec<u8> = b"line of text\r\n"
            .iter()
            .copied()
            .cycle()
            .take(3 << 20)
            .collect();
        let (copy, found) = copy_scanned(&d);
        assert!(copy == d && found == scan_slow(&d));
        d[2 << 20] = b'\n';
        let n = Needs::of_copied(&Envelope::new("a@b", 0), &d);
        assert!(n.0.binary && n.1 == d);
    }

    /// `d` with a CRLF added unless it is empty or ends in one.
    fn with_crlf(d: &[u8]) -> Vec<u8> {
        let mut v = d.to_vec();
        if !v.is_empty() && !v.ends_with(b"\r\n") {
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn binary_detection_at_every_position() {
        // Each special byte (and CRLF, LFCR) at every offset, across the
        // 64-byte block boundaries, in clean CRLF text.
        let base: Vec<u8> = b"abcdefghijklmnopqrstuvwxyz0123\r\n".repeat(7);
        for len in [0, 1, 2, 31, 32, 33, 63, 64, 65, 66, 127, 128, 129, base.len()] {
            let text = &base[..len];
            assert_eq!(has_binary(text), has_binary_slow(text), "{text:?}");
            for pos in 0..=len {
                for insert in [
                    &b"\0"[..],
                    b"\r",
                    b"\n",
                    b"\r\n",
                    b"\n\r",
                    b".",
                    b"\r\n.",
                    b"\xc3",
                ] {
                    let mut d = text.to_vec();
                    d.splice(pos..pos, insert.iter().copied());
                    assert_eq!(scan(&d), scan_slow(&d), "{d:?}");
                }
            }
        }
        assert!(!has_binary(b""));
        assert!(!has_binary(b"a\r\nb\r\n"));
        assert!(has_binary(b"\r"));
        assert!(has_binary(b"\n"));
        assert!(has_binary(b"x\r"));
    }
}
