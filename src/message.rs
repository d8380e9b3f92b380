//! The message builder behind `herald_message`.
//!
//! Every input is checked by its setter, so bad input is refused at the call
//! that brought it (and the draft stays as it was), never sent. The bytes are
//! rendered by lettre, which encodes UTF-8 headers (RFC 2047), chooses the
//! bodies' transfer encodings and adds `Date`; herald adds `Message-ID` and
//! keeps `Bcc` out of the headers: Bcc recipients live only in the envelope.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lettre::address::Envelope;
use lettre::message::header::{self, ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, Mailboxes, MultiPart, MultiPartBuilder, SinglePart};
use lettre::{Address, Message};

use crate::buffer::{buffer, Filler, Growing};
use crate::envelope::Envelope as SendEnvelope;
use crate::smtp::codec::Needs;
use crate::status::{Error, Result, Status};

/// Longest header name lettre accepts (and a sane limit anyway).
const MAX_HEADER_NAME: usize = 76;
/// RFC 5321: a path is at most 256 octets including the angle brackets.
const MAX_ADDRESS: usize = 254;

/// A file or buffer attached to a draft, read when it was attached.
#[derive(Clone, Debug)]
struct AttachedFile {
    filename: String,
    content_type: ContentType,
    /// Shared with a send still encoding it after the draft is freed.
    data: Arc<Vec<u8>>,
}

/// A message being composed: what a `herald_message` holds.
#[derive(Clone, Debug, Default)]
pub struct MessageDraft {
    from: Option<Mailbox>,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    /// Extra headers in the order given; one per name (case-insensitive).
    headers: Vec<(HeaderName, String)>,
    attachments: Vec<AttachedFile>,
}

/// Headers herald writes itself, with the setter to use instead.
const MANAGED_HEADERS: &[(&str, &str)] = &[
    ("From", "herald_message_set_from"),
    ("To", "herald_message_add_to"),
    ("Cc", "herald_message_add_cc"),
    ("Bcc", "herald_message_add_bcc"),
    ("Subject", "herald_message_set_subject"),
    ("Content-Type", "herald_message_set_text, _set_html or _attach_*"),
    (
        "Content-Transfer-Encoding",
        "herald_message_set_text, _set_html or _attach_*",
    ),
    ("MIME-Version", "herald_message_set_text, _set_html or _attach_*"),
];

/// Refuses control characters; `allow_tab` lets TAB through (header text).
fn no_controls(value: &str, what: &str, allow_tab: bool) -> Result<()> {
    match value
        .chars()
        .find(|&c| c.is_control() && !(allow_tab && c == '\t'))
    {
        Some(c) => Err(Error::invalid(format!(
            "{what} must not contain control characters such as CR or LF (found U+{:04X})",
            c as u32
        ))),
        None => Ok(()),
    }
}

/// Checks an address for an SMTP envelope (`MAIL FROM`, `RCPT TO`): a bare
/// `local@domain`, optionally in `<>` (stripped), UTF-8 allowed (SMTPUTF8).
/// `allow_empty` (the sender only): "" or "<>" is the null reverse-path of
/// bounces, returned as "". `what` names the argument in the error detail.
/// Returns the address itself: `s` without its `<>`.
pub fn check_envelope_address<'a>(s: &'a str, what: &str, allow_empty: bool) -> Result<&'a str> {
    let bare = s.strip_prefix('<').and_then(|a| a.strip_suffix('>')).unwrap_or(s);
    if plain_ascii_address(bare.as_bytes()) {
        // What every check below would pass, found in one pass.
        return Ok(bare);
    }
    no_controls(s, what, false)?;
    let addr = s.strip_prefix('<').and_then(|a| a.strip_suffix('>')).unwrap_or(s);
    if addr.is_empty() {
        if allow_empty {
            return Ok("");
        }
        return Err(Error::invalid(format!(
            "{what} is empty: it needs an address user@domain"
        )));
    }
    check_addr_spec(addr, what)?;
    Ok(addr)
}

fn check_addr_spec(addr: &str, what: &str) -> Result<()> {
    if addr.chars().any(|c| c.is_whitespace() || c == '<' || c == '>') {
        return Err(Error::invalid(format!(
            "{what} {addr:?} must be a bare address user@domain, without spaces or '<' '>' inside"
        )));
    }
    if addr.len() > MAX_ADDRESS {
        return Err(Error::invalid(format!(
            "{what} is longer than {MAX_ADDRESS} bytes"
        )));
    }
    if plain_address(addr) {
        return Ok(());
    }
    addr.parse::<Address>()
        .map_err(|e| Error::invalid(format!("{what} {addr:?} is not a valid address user@domain: {e}")))?;
    Ok(())
}

/// `plain_address` of an address with no control character, space, '<'
/// or '>' and at most `MAX_ADDRESS` bytes, in one pass over its bytes: the
/// envelope's common case (it runs for the sender and every recipient of
/// every message). False means only "check it the long way".
fn plain_ascii_address(a: &[u8]) -> bool {
    const fn atext(b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'/'
                    | b'='
                    | b'?'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'{'
                    | b'|'
                    | b'}'
                    | b'~'
            )
    }
    let Some(at) = a.iter().rposition(|&b| b == b'@') else {
        return false;
    };
    let (user, domain) = (&a[..at], &a[at + 1..]);
    if a.len() > MAX_ADDRESS || !(1..=64).contains(&user.len()) || domain.is_empty() {
        return false;
    }
    // Dot-separated atoms, none empty.
    let mut prev = b'.';
    for &b in user {
        if !(atext(b) || (b == b'.' && prev != b'.')) {
            return false;
        }
        prev = b;
    }
    if prev == b'.' {
        return false;
    }
    // Labels of 1 to 63 letters, digits and '-', starting and ending with a letter or digit.
    let (mut prev, mut len) = (b'.', 0usize);
    for &b in domain {
        if b == b'.' {
            if !prev.is_ascii_alphanumeric() {
                return false;
            }
            len = 0;
        } else {
            let ok = b.is_ascii_alphanumeric() || (b == b'-' && prev != b'.');
            len += 1;
            if !ok || len > 63 {
                return false;
            }
        }
        prev = b;
    }
    prev.is_ascii_alphanumeric()
}

/// The common case that lettre's `Address` parser accepts, checked without
/// it (it runs for every recipient of every message, and allocates): an
/// ASCII dot-atom of at most 64 characters, '@', and a domain of at most
/// 254 characters whose labels have 1 to 63 letters, digits and '-', and
/// start and end with a letter or digit. These are sufficient conditions
/// of lettre's own (email_address's local-part and domain rules); anything
/// else goes to lettre.
fn plain_address(addr: &str) -> bool {
    let Some((user, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    let label = |l: &[u8]| {
        (1..=63).contains(&l.len())
            && l[0].is_ascii_alphanumeric()
            && l[l.len() - 1].is_ascii_alphanumeric()
            && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (1..=64).contains(&user.len())
        && user
            .as_bytes()
            .split(|&b| b == b'.')
            .all(|a| !a.is_empty() && a.iter().all(|&b| atext(b)))
        && (1..=254).contains(&domain.len())
        && domain.as_bytes().split(|&b| b == b'.').all(label)
}

/// Parses "Name <a@b>" or "a@b"; the address must also be usable in an envelope.
fn parse_mailbox(s: &str, what: &str) -> Result<Mailbox> {
    no_controls(s, what, false)?;
    let mut mailbox: Mailbox = s.parse().map_err(|e| {
        Error::invalid(format!(
            "{what} {s:?} is not a mailbox \"Name <user@example.com>\" or \"user@example.com\": {e}"
        ))
    })?;
    check_addr_spec(mailbox.email.as_ref(), what)?;
    // `"" <a@b>` would be written as an empty display name.
    mailbox.name = mailbox
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    Ok(mailbox)
}

fn parse_content_type(s: &str) -> Result<ContentType> {
    no_controls(s, "content type", false)?;
    ContentType::parse(s).map_err(|e| {
        Error::invalid(format!(
            "content type {s:?} is not a MIME type like text/plain: {e}"
        ))
    })
}

/// The content type for a file name's extension; application/octet-stream
/// when unknown.
pub fn guess_content_type(filename: &str) -> &'static str {
    let ext = Path::new(filename)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "text" | "log" => "text/plain",
        "htm" | "html" => "text/html",
        "csv" => "text/csv",
        "ics" => "text/calendar",
        "md" => "text/markdown",
        "xml" => "application/xml",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "rtf" => "application/rtf",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "odt" => "application/vnd.oasis.opendocument.text",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "eml" => "message/rfc822",
        _ => "application/octet-stream",
    }
}

/// Line breaks as CRLF (a lone CR or LF is not allowed in a message), so
/// lettre's 7bit/quoted-printable choice is made on well-formed text. Only
/// the CRs and LFs are visited (`memchr2`); the text between them is copied
/// in spans, and a text already in CRLF is copied once.
fn crlf_lines(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
    let mut start = 0;
    let mut breaks = memchr::memchr2_iter(b'\r', b'\n', b);
    while let Some(i) = breaks.next() {
        if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
            breaks.next(); // the LF of this CRLF
            continue;
        }
        // A lone CR or LF (both ASCII, so `i` is a char boundary).
        out.push_str(&text[start..i]);
        out.push_str("\r\n");
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out
}

/// Does `text` hold a control character other than TAB, CR and LF (what
/// `char::is_control` calls control: U+0000-U+001F, U+007F-U+009F)? On
/// the UTF-8 bytes: a byte below 0x20 or 0x7F, or C2 80-C2 9F.
fn has_controls(text: &str) -> bool {
    let b = text.as_bytes();
    let c0 = |c: u8| (c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n')) || c == 0x7f;
    // Blocks without a branch per byte, so that it vectorizes.
    let mut chunks = b.chunks_exact(32);
    let any_c0 = chunks
        .by_ref()
        .any(|blk| blk.iter().fold(false, |a, &c| a | c0(c)))
        || chunks.remainder().iter().any(|&c| c0(c));
    any_c0
        || (!text.is_ascii()
            && memchr::memchr_iter(0xc2, b).any(|i| matches!(b.get(i + 1), Some(0x80..=0x9f))))
}

/// lettre's test for a line too long for 7bit (email-encoding's
/// `line_too_long`, to the byte), so `text_part` chooses as lettre would.
fn line_too_long(b: &[u8]) -> bool {
    let mut last = 0;
    memchr::memchr_iter(b'\n', b).any(|i| {
        let prev = std::mem::replace(&mut last, i);
        (i - prev) >= 76
    }) || (b.len() - last) >= 76
}

/// A text or HTML body part. lettre picks 7bit, quoted-printable or base64;
/// other control characters (possible from Rust, not from C) force
/// quoted-printable, which escapes them. ASCII text with short lines is
/// 7bit, as lettre would choose, and is handed over as it is: lettre's own
/// choice and CRLF pass walk the text char by char.
fn text_part(content_type: ContentType, text: &str) -> SinglePart {
    let text = crlf_lines(text);
    let builder = SinglePart::builder().header(content_type);
    if has_controls(&text) {
        builder
            .header(ContentTransferEncoding::QuotedPrintable)
            .body(text)
    } else if text.is_ascii() && !line_too_long(text.as_bytes()) {
        builder.body(Body::dangerous_pre_encoded(
            text.into_bytes(),
            ContentTransferEncoding::SevenBit,
        ))
    } else {
        builder.body(text)
    }
}

/// Is `data` text lettre may send as it is: printable ASCII, TAB and CRLF
/// line breaks only? Anything else (NUL, a lone CR or LF, 8-bit bytes) is
/// sent as base64, because lettre would pass ASCII control bytes through
/// as 7bit.
fn is_clean_text(data: &[u8]) -> bool {
    let mut prev_cr = false;
    for (i, &b) in data.iter().enumerate() {
        let ok = match b {
            b'\r' => data.get(i + 1) == Some(&b'\n'),
            b'\n' => prev_cr,
            b'\t' | b' '..=b'~' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
        prev_cr = b == b'\r';
    }
    true
}

/// Where `to_bytes` puts an attachment's base64 lines: the rendered
/// message holds `marker` in their place until then.
struct Base64Hole {
    marker: String,
    data: Arc<Vec<u8>>,
}

fn attachment_part(a: &AttachedFile, holes: &mut Vec<Base64Hole>) -> SinglePart {
    let body = if is_clean_text(&a.data) {
        Body::new(a.data.to_vec())
    } else {
        // Encoded straight into the message's buffer by `to_bytes`, not
        // into a copy of its own: a large attachment is held once as bytes
        // (the draft's) and once encoded (the message's).
        let marker = format!("herald-base64-{:016x}{:016x}", unique_u64(), unique_u64());
        let body = Body::dangerous_pre_encoded(marker.clone().into_bytes(), ContentTransferEncoding::Base64);
        holes.push(Base64Hole {
            marker,
            data: a.data.clone(),
        });
        body
    };
    Attachment::new(a.filename.clone()).body(body, a.content_type.clone())
}

/// Bytes in 57-byte chunks, each as a 76-character base64 line, lines
/// separated by CRLF, none after the last: what lettre writes for a base64
/// body (email-encoding's `base64::encode`).
const BASE64_LINE_BYTES: usize = 57;

fn base64_lines_len(n: usize) -> usize {
    let lines = n.div_ceil(BASE64_LINE_BYTES);
    n.div_ceil(3) * 4 + 2 * lines.saturating_sub(1)
}

/// The base64 alphabet's characters for every 12 bits, two at a time.
const BASE64_PAIRS: [[u8; 2]; 4096] = {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [ALPHABET[i >> 6], ALPHABET[i & 63]];
        i += 1;
    }
    t
};

/// `BASE64_PAIRS` as little-endian u16s, to assemble 8 characters in a u64.
const BASE64_PAIRS16: [u16; 4096] = {
    let mut t = [0u16; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = u16::from_le_bytes(BASE64_PAIRS[i]);
        i += 1;
    }
    t
};

/// Encodes whole 3-byte groups of `input` into `out` (4 bytes per group),
/// two characters per table look-up: two groups at a time from one 8-byte
/// load where 8 bytes are left, then group by group. Returns the bytes written.
fn base64_groups(input: &[u8], out: &mut [MaybeUninit<u8>]) -> usize {
    let (mut i, mut o) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if input.len() >= 28 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        (i, o) = unsafe { base64_avx2(input, out) };
    }
    while i + 8 <= input.len() && i + 6 <= input.len() / 3 * 3 {
        let n = u64::from_be_bytes(input[i..i + 8].try_into().expect("8 bytes"));
        let pair = |shift: u32| u64::from(BASE64_PAIRS16[(n >> shift) as usize & 0xfff]);
        let w = pair(52) | (pair(40) << 16) | (pair(28) << 32) | (pair(16) << 48);
        put(out, o, &w.to_le_bytes());
        i += 6;
        o += 8;
    }
    for g in input[i..].chunks_exact(3) {
        let n = (usize::from(g[0]) << 16) | (usize::from(g[1]) << 8) | usize::from(g[2]);
        put(out, o, &BASE64_PAIRS[n >> 12]);
        put(out, o + 2, &BASE64_PAIRS[n & 0xfff]);
        o += 4;
    }
    o
}

/// 24 bytes to 32 base64 characters at a time (W. Muła and D. Lemire,
/// "Faster Base64 Encoding and Decoding using AVX2 Instructions", 2018):
/// each 128-bit lane takes 12 bytes, spreads each 3 of them over 4 bytes,
/// moves the 6-bit fields into place with two multiplies, and maps them to
/// the alphabet with a 16-entry offset table. Reads 4 bytes past each
/// 24, so it stops 28 bytes before the end. Returns (bytes read, written).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn base64_avx2(input: &[u8], out: &mut [MaybeUninit<u8>]) -> (usize, usize) {
    use std::arch::x86_64::*;
    #[rustfmt::skip]
    let spread = _mm256_set_epi8(
        10, 11, 9, 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1,
        10, 11, 9, 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1,
    );
    #[rustfmt::skip]
    let offsets = _mm256_setr_epi8(
        65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0,
        65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0,
    );
    let (mut i, mut o) = (0, 0);
    while i + 28 <= input.len() && o + 32 <= out.len() {
        // SAFETY: i + 28 <= len: both 16-byte loads are in bounds.
        let (lo, hi) = unsafe {
            (
                _mm_loadu_si128(input.as_ptr().add(i) as *const __m128i),
                _mm_loadu_si128(input.as_ptr().add(i + 12) as *const __m128i),
            )
        };
        let v = _mm256_shuffle_epi8(
            _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi),
            spread,
        );
        let t1 = _mm256_mulhi_epu16(
            _mm256_and_si256(v, _mm256_set1_epi32(0x0FC0_FC00)),
            _mm256_set1_epi32(0x0400_0040),
        );
        let t3 = _mm256_mullo_epi16(
            _mm256_and_si256(v, _mm256_set1_epi32(0x003F_03F0)),
            _mm256_set1_epi32(0x0100_0010),
        );
        let six = _mm256_or_si256(t1, t3);
        // Offset-table index: 0 for 0..=25, 1 for 26..=51, 2..=13 above.
        let index = _mm256_sub_epi8(
            _mm256_subs_epu8(six, _mm256_set1_epi8(51)),
            _mm256_cmpgt_epi8(six, _mm256_set1_epi8(25)),
        );
        let chars = _mm256_add_epi8(six, _mm256_shuffle_epi8(offsets, index));
        // SAFETY: o + 32 <= out.len().
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(o) as *mut __m256i, chars) };
        i += 24;
        o += 32;
    }
    (i, o)
}

/// Writes `bytes` into `out` at `at`.
#[inline(always)]
fn put(out: &mut [MaybeUninit<u8>], at: usize, bytes: &[u8]) {
    for (d, &b) in out[at..at + bytes.len()].iter_mut().zip(bytes) {
        d.write(b);
    }
}

/// Appends `data`'s base64 lines to `out`, written straight into its spare
/// capacity (not zeroed first: for tens of MB that was a pass of its own).
fn push_base64_lines(data: &[u8], out: &mut Vec<u8>) {
    let len = base64_lines_len(data.len());
    out.reserve(len);
    let start = out.len();
    write_base64_lines(data, &mut out.spare_capacity_mut()[..len]);
    // SAFETY: `write_base64_lines` wrote every one of the `len` bytes after
    // `start`, within the reserved capacity.
    unsafe { out.set_len(start + len) };
}

/// Writes `data`'s base64 lines into `spare`, exactly
/// `base64_lines_len(data.len())` bytes long, every byte of it.
fn write_base64_lines(data: &[u8], spare: &mut [MaybeUninit<u8>]) {
    use base64::Engine as _;
    let len = base64_lines_len(data.len());
    assert_eq!(spare.len(), len, "room for the lines");
    let mut at = 0;
    for (k, chunk) in data.chunks(BASE64_LINE_BYTES).enumerate() {
        if k > 0 {
            put(spare, at, b"\r\n");
            at += 2;
        }
        let whole = chunk.len() / 3 * 3;
        at += base64_groups(&chunk[..whole], &mut spare[at..]);
        if whole < chunk.len() {
            // The last 1 or 2 bytes, with their '=' padding.
            let mut last = [0u8; 4];
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(&chunk[whole..], &mut last)
                .expect("4 bytes take 1 or 2 bytes' encoding");
            put(spare, at, &last[..n]);
            at += n;
        }
    }
    // Every byte is written (each write goes through `put` or an AVX2
    // store of its count, and `at` counts them contiguously from 0): the
    // lines fill the length they were sized for.
    assert_eq!(at, len, "base64 lines of the computed length");
}

/// 64 unpredictable bits, unique within the process: time, a counter and
/// the process id hashed with an OS-seeded key. No extra crate, and no
/// thread-local state that would outlive a caller's thread (lettre's own
/// boundaries use fastrand, whose per-thread seed leaks under valgrind).
pub(crate) fn unique_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// A multipart builder with a boundary of our own (see `unique_u64`):
/// lettre's `MultiPart::mixed()` would draw one from fastrand first.
fn multipart(subtype: &str) -> MultiPartBuilder {
    let mime = format!(
        "multipart/{subtype}; boundary=\"herald-{:016x}{:016x}\"",
        unique_u64(),
        unique_u64()
    );
    let ct = ContentType::parse(&mime).expect("a well-formed multipart content type");
    MultiPart::builder().header(ct)
}

/// A fresh Message-ID on the sender's domain (not the machine's host name,
/// which may be internal or "localhost").
fn new_message_id(from: &Address) -> String {
    let domain = from.domain();
    // A non-ASCII domain would be RFC 2047-encoded, which breaks the id.
    let domain = if domain.is_ascii() { domain } else { "localhost" };
    format!("<{:016x}{:016x}@{domain}>", unique_u64(), unique_u64())
}

impl MessageDraft {
    /// Sets the sender ("Name <a@b>" or "a@b"), replacing an earlier one.
    pub fn set_from(&mut self, mailbox: &str) -> Result<()> {
        self.from = Some(parse_mailbox(mailbox, "From")?);
        Ok(())
    }

    pub fn add_to(&mut self, mailbox: &str) -> Result<()> {
        self.to.push(parse_mailbox(mailbox, "To")?);
        Ok(())
    }

    pub fn add_cc(&mut self, mailbox: &str) -> Result<()> {
        self.cc.push(parse_mailbox(mailbox, "Cc")?);
        Ok(())
    }

    /// Adds a blind copy: in the envelope, never in the message's bytes.
    pub fn add_bcc(&mut self, mailbox: &str) -> Result<()> {
        self.bcc.push(parse_mailbox(mailbox, "Bcc")?);
        Ok(())
    }

    pub fn set_subject(&mut self, subject: &str) -> Result<()> {
        no_controls(subject, "the subject", true)?;
        self.subject = Some(subject.to_string());
        Ok(())
    }

    /// The plain text body; with an HTML body too, the message is multipart/alternative.
    pub fn set_text(&mut self, text: &str) -> Result<()> {
        self.text = Some(text.to_string());
        Ok(())
    }

    /// The HTML body; with a text body too, the message is multipart/alternative.
    pub fn set_html(&mut self, html: &str) -> Result<()> {
        self.html = Some(html.to_string());
        Ok(())
    }

    /// Adds a header (Date, Message-ID, Reply-To, In-Reply-To, References,
    /// X-...), replacing an earlier one of the same name. A user-given Date
    /// or Message-ID replaces the one herald would add.
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<()> {
        if name.is_empty()
            || name.len() > MAX_HEADER_NAME
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(Error::invalid(format!(
                "header name {name:?} must be 1 to {MAX_HEADER_NAME} printable ASCII characters without ':' or spaces"
            )));
        }
        if let Some((managed, setter)) = MANAGED_HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(name)) {
            return Err(Error::invalid(format!(
                "the {managed} header is set by herald: use {setter}"
            )));
        }
        no_controls(value, &format!("the value of header {name}"), true)?;
        let name = HeaderName::new_from_ascii(name.to_string())
            .map_err(|e| Error::invalid(format!("header name {name:?}: {e}")))?;
        match self.headers.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.headers.push((name, value.to_string())),
        }
        Ok(())
    }

    /// Attaches the file at `path`, read now (the caller may delete it
    /// afterwards). `content_type` None: guessed from the extension.
    pub fn attach_file(&mut self, path: &str, content_type: Option<&str>) -> Result<()> {
        no_controls(path, "the attachment path", false)?;
        let filename = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::invalid(format!("attachment path {path:?} does not name a file")))?
            .to_string();
        let content_type = parse_content_type(content_type.unwrap_or_else(|| guess_content_type(&filename)))?;
        let data = std::fs::read(path)
            .map_err(|e| Error::new(Status::Io, format!("cannot read attachment {path}: {e}")))?;
        self.attachments.push(AttachedFile {
            filename,
            content_type,
            data: Arc::new(data),
        });
        Ok(())
    }

    /// Attaches `data` as a file named `filename`. `content_type` None:
    /// guessed from the filename's extension.
    pub fn attach_bytes(&mut self, filename: &str, content_type: Option<&str>, data: &[u8]) -> Result<()> {
        if filename.is_empty() {
            return Err(Error::invalid("the attachment's filename must not be empty"));
        }
        no_controls(filename, "the attachment's filename", false)?;
        let content_type = parse_content_type(content_type.unwrap_or_else(|| guess_content_type(filename)))?;
        let mut copy = buffer(data.len());
        copy.extend_from_slice(data);
        self.attachments.push(AttachedFile {
            filename: filename.to_string(),
            content_type,
            data: Arc::new(copy),
        });
        Ok(())
    }

    /// The envelope recipients: To, Cc, then Bcc, each address once (the
    /// domain compared without case), in the order given.
    fn recipients(&self) -> Vec<&Address> {
        let mut seen = std::collections::HashSet::new();
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|m| &m.email)
            .filter(|a| seen.insert((a.user().to_string(), a.domain().to_ascii_lowercase())))
            .collect()
    }

    fn check_complete(&self) -> Result<(&Mailbox, Vec<&Address>)> {
        let from = self.from.as_ref().ok_or_else(|| {
            Error::invalid("the message has no sender: set one with herald_message_set_from")
        })?;
        let rcpts = self.recipients();
        if rcpts.is_empty() {
            return Err(Error::invalid(
                "the message has no recipient: add one with herald_message_add_to, _add_cc or _add_bcc",
            ));
        }
        Ok((from, rcpts))
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The message as lettre renders it, with a marker in place of each
    /// base64 attachment's lines (see `to_bytes`).
    fn build(&self) -> Result<(Message, Vec<Base64Hole>)> {
        let (from, rcpts) = self.check_complete()?;
        let envelope = Envelope::new(Some(from.email.clone()), rcpts.into_iter().cloned().collect())
            .map_err(|e| Error::invalid(format!("cannot build the envelope: {e}")))?;
        // The envelope is given explicitly, so lettre never needs Bcc in the
        // headers: it is left out rather than added and removed.
        let mut b = Message::builder().envelope(envelope).from(from.clone());
        if !self.to.is_empty() {
            b = b.header(header::To::from(Mailboxes::from(self.to.clone())));
        }
        if !self.cc.is_empty() {
            b = b.header(header::Cc::from(Mailboxes::from(self.cc.clone())));
        }
        if let Some(s) = &self.subject {
            b = b.subject(s.clone());
        }
        if !self.has_header("Message-ID") {
            b = b.message_id(Some(new_message_id(&from.email)));
        }

        enum Main {
            Single(SinglePart),
            Multi(MultiPart),
        }
        let main = match (&self.text, &self.html) {
            (Some(t), Some(h)) => Some(Main::Multi(
                multipart("alternative")
                    .singlepart(text_part(ContentType::TEXT_PLAIN, t))
                    .singlepart(text_part(ContentType::TEXT_HTML, h)),
            )),
            (Some(t), None) => Some(Main::Single(text_part(ContentType::TEXT_PLAIN, t))),
            (None, Some(h)) => Some(Main::Single(text_part(ContentType::TEXT_HTML, h))),
            (None, None) => None,
        };
        let mut holes = Vec::new();
        let built = if self.attachments.is_empty() {
            match main {
                Some(Main::Single(p)) => b.singlepart(p),
                Some(Main::Multi(m)) => b.multipart(m),
                None => b.singlepart(text_part(ContentType::TEXT_PLAIN, "")),
            }
        } else {
            let mut mixed = multipart("mixed").build();
            match main {
                Some(Main::Single(p)) => mixed = mixed.singlepart(p),
                Some(Main::Multi(m)) => mixed = mixed.multipart(m),
                None => {}
            }
            for a in &self.attachments {
                mixed = mixed.singlepart(attachment_part(a, &mut holes));
            }
            b.multipart(mixed)
        };
        let mut msg = built.map_err(|e| Error::invalid(format!("cannot build the message: {e}")))?;
        // Extra headers go in after lettre's build: a user Date then replaces
        // the one lettre added (lettre drops a Date it can't parse, such as
        // one with a "+0100" offset).
        for (name, value) in &self.headers {
            msg.headers_mut()
                .insert_raw(HeaderValue::new(name.clone(), value.clone()));
        }
        Ok((msg, holes))
    }

    /// The message as RFC 5322 bytes (CRLF line ends). Needs a From and at
    /// least one recipient. Each call makes a new Date (unless given) and
    /// Message-ID (unless given).
    ///
    /// The bytes are made at their exact size: lettre renders the message
    /// (with a marker for each base64 attachment), then each attachment is
    /// encoded straight into the result.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.render(None)?.0)
    }

    /// [`Self::to_bytes`], and with `envelope`, what the bytes need from an
    /// SMTP server ([`Needs::of`] them), found without a pass over the
    /// encoded attachments: base64 lines (ASCII letters, digits, '+', '/',
    /// '=', CRLF between them, none first or last) in place of a marker
    /// line ('h' ... hex digits) change none of the scan's findings (no
    /// NUL, no bare CR or LF, no 8-bit byte, no line led by a dot), so the
    /// rendering with its markers, a few KB, is scanned instead. An empty
    /// attachment (no lines in place of its marker) is scanned in place.
    fn render(&self, envelope: Option<&SendEnvelope>) -> Result<(Vec<u8>, Option<Needs>)> {
        let (msg, holes) = self.build()?;
        let rendered = msg.formatted();
        drop(msg);
        render_parts(rendered, holes, envelope)
    }

    /// The envelope and bytes to send: from = From's address, rcpts = To,
    /// Cc and Bcc addresses (each once, in order), data = [`Self::to_bytes`].
    pub fn to_envelope(&self) -> Result<Built> {
        self.envelope_and(false)
    }

    /// [`Self::to_envelope`], where a message with at least
    /// `GROWING_MIN` bytes of base64 attachments is encoded on a thread of
    /// its own while it is sent: the bytes come as a [`Growing`] buffer.
    pub fn to_envelope_growing(&self) -> Result<Built> {
        self.envelope_and(true)
    }

    fn envelope_and(&self, grow: bool) -> Result<Built> {
        let (from, rcpts) = self.check_complete()?;
        let room = rcpts.iter().map(|a| AsRef::<str>::as_ref(a).len()).sum();
        let mut env = SendEnvelope::new(from.email.as_ref(), room);
        for r in &rcpts {
            env.push_rcpt(r.as_ref());
        }
        let (msg, holes) = self.build()?;
        let rendered = msg.formatted();
        drop(msg);
        if grow && !holes.is_empty() {
            let layout = Layout::new(rendered, holes)?;
            if layout.can_grow() {
                let needs = layout.needs(&env);
                return Ok(Built {
                    env,
                    data: Vec::new(),
                    growing: Some(layout.grow()),
                    needs,
                });
            }
            let (data, needs) = layout.render(Some(&env));
            return Ok(Built {
                needs: needs.expect("asked for"),
                env,
                data,
                growing: None,
            });
        }
        let (data, needs) = render_parts(rendered, holes, Some(&env))?;
        Ok(Built {
            needs: needs.expect("asked for"),
            env,
            data,
            growing: None,
        })
    }
}

/// `MessageDraft::render` of lettre's rendering and its base64 holes.
fn render_parts(
    mut rendered: Vec<u8>,
    holes: Vec<Base64Hole>,
    envelope: Option<&SendEnvelope>,
) -> Result<(Vec<u8>, Option<Needs>)> {
    if holes.is_empty() {
        // lettre's buffer grew by doubling: give the spare capacity back.
        rendered.shrink_to_fit();
        let needs = envelope.map(|e| Needs::of(e, &rendered));
        return Ok((rendered, needs));
    }
    Ok(Layout::new(rendered, holes)?.render(envelope))
}

/// The least base64 a message's attachments make for it to be encoded
/// while it is sent (`to_envelope_growing`): below it a thread costs more
/// than the encoding.
const GROWING_MIN: usize = 4 << 20;

/// A built message's layout: lettre's rendering with a marker in each
/// base64 attachment's place, and those attachments, found in it.
struct Layout {
    rendered: Vec<u8>,
    /// Each base64 attachment: where its marker is in `rendered`, the
    /// marker's length, its bytes.
    holes: Vec<(usize, usize, Arc<Vec<u8>>)>,
    /// The message's length.
    size: usize,
}

/// Where `Layout::fill` writes.
trait Out {
    fn text(&mut self, bytes: &[u8]);
    fn lines(&mut self, data: &[u8]);
}

impl Out for Vec<u8> {
    fn text(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn lines(&mut self, data: &[u8]) {
        push_base64_lines(data, self);
    }
}

/// Base64 input bytes encoded before readers are let have them: 4,096
/// lines, 312 KB of output.
const GROW_CHUNK: usize = BASE64_LINE_BYTES * 4096;

impl Out for Filler {
    fn text(&mut self, bytes: &[u8]) {
        self.put(bytes);
    }
    fn lines(&mut self, data: &[u8]) {
        // In whole lines: the lines of each chunk, CRLF between chunks, are
        // the lines of the whole.
        for (k, chunk) in data.chunks(GROW_CHUNK).enumerate() {
            if k > 0 {
                self.put(b"\r\n");
            }
            let n = base64_lines_len(chunk.len());
            self.populate_next(n);
            write_base64_lines(chunk, self.room(n));
            // SAFETY: `write_base64_lines` wrote all `n` bytes of the room.
            unsafe { self.commit(n) };
            self.publish();
        }
    }
}

impl Layout {
    fn new(rendered: Vec<u8>, holes: Vec<Base64Hole>) -> Result<Layout> {
        let mut at = 0;
        let mut size = rendered.len();
        let mut found = Vec::with_capacity(holes.len());
        for h in holes {
            let k = memchr::memmem::find(&rendered[at..], h.marker.as_bytes()).ok_or_else(|| {
                Error::new(
                    Status::Panic,
                    "internal error: an attachment's place in the message was lost",
                )
            })?;
            size = size - h.marker.len() + base64_lines_len(h.data.len());
            found.push((at + k, h.marker.len(), h.data));
            at += k + h.marker.len();
        }
        Ok(Layout {
            rendered,
            holes: found,
            size,
        })
    }

    fn no_empty_hole(&self) -> bool {
        self.holes.iter().all(|(_, _, d)| !d.is_empty())
    }

    /// What the bytes need, found from the rendering (see `render`).
    fn needs(&self, env: &SendEnvelope) -> Needs {
        debug_assert!(self.no_empty_hole());
        Needs::of(env, &self.rendered)
    }

    /// Large enough to encode while sending, with its last 2 bytes in the
    /// rendering after the last attachment.
    fn can_grow(&self) -> bool {
        let base64 = self.size - (self.rendered.len() - self.holes.iter().map(|h| h.1).sum::<usize>());
        let tail_from = self.holes.last().map_or(0, |&(at, m, _)| at + m);
        base64 >= GROWING_MIN && self.no_empty_hole() && self.rendered.len() - tail_from >= 2
    }

    fn fill(&self, out: &mut impl Out) {
        let mut at = 0;
        for (k, m, data) in &self.holes {
            out.text(&self.rendered[at..*k]);
            out.lines(data);
            at = k + m;
        }
        out.text(&self.rendered[at..]);
    }

    /// The message's bytes made at once, and with `envelope` what they
    /// need (from the rendering where no attachment is empty).
    fn render(&self, envelope: Option<&SendEnvelope>) -> (Vec<u8>, Option<Needs>) {
        let early = envelope.filter(|_| self.no_empty_hole()).map(|e| self.needs(e));
        let out = self.to_vec();
        let needs = match (early, envelope) {
            (Some(n), _) => Some(n),
            (None, Some(e)) => Some(Needs::of(e, &out)),
            (None, None) => None,
        };
        debug_assert!(envelope.is_none_or(|e| needs == Some(Needs::of(e, &out))));
        (out, needs)
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut out = buffer(self.size);
        self.fill(&mut out);
        debug_assert_eq!(out.len(), self.size);
        out
    }

    /// The message's bytes, encoded on a thread of their own while readers
    /// take what is done; here instead (before this returns) when
    /// `MAX_ENCODERS_PER_CPU` threads per CPU already encode, or no thread
    /// starts, so a burst of large sends does not start a thread each.
    fn grow(self) -> Arc<Growing> {
        let tail = &self.rendered[self.rendered.len() - 2..];
        let g = Arc::new(Growing::new(self.size, tail));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let layout = Arc::new(self);
        // Counted while it is held: dropped when its thread ends (or does
        // not start), however it ends.
        let slot = EncoderSlot::take();
        if slot.0 <= MAX_ENCODERS_PER_CPU * cpus {
            let (g2, l2) = (g.clone(), layout.clone());
            let spawned = std::thread::Builder::new()
                .name("herald-encode".into())
                .spawn(move || {
                    let _slot = slot;
                    let mut f = g2.filler();
                    l2.fill(&mut f);
                    f.finish();
                });
            if spawned.is_ok() {
                return g;
            }
        } else {
            drop(slot);
        }
        let mut f = g.filler();
        layout.fill(&mut f);
        f.finish();
        g
    }
}

/// Encoder threads running, across clients.
static ENCODERS: AtomicUsize = AtomicUsize::new(0);

/// One of `ENCODERS`, with how many there are with it.
struct EncoderSlot(usize);

impl EncoderSlot {
    fn take() -> EncoderSlot {
        EncoderSlot(ENCODERS.fetch_add(1, Ordering::AcqRel) + 1)
    }
}

impl Drop for EncoderSlot {
    fn drop(&mut self) {
        ENCODERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Encoder threads (`Layout::grow`) per CPU at most, across clients.
const MAX_ENCODERS_PER_CPU: usize = 2;

/// A built message with its envelope, ready to be made a send job.
#[derive(Clone, Debug)]
pub struct Built {
    /// The envelope: sender and recipients.
    pub env: SendEnvelope,
    /// The message's bytes (empty while `growing` makes them).
    pub data: Vec<u8>,
    /// The message's bytes while they are encoded (`to_envelope_growing`).
    pub growing: Option<Arc<Growing>>,
    /// What the message needs from an SMTP server, found while building it.
    pub needs: Needs,
}

impl From<Built> for crate::smtp::SendJob {
    /// The send job of a built message (`herald_send_async` and the like).
    fn from(b: Built) -> crate::smtp::SendJob {
        crate::smtp::SendJob {
            env: b.env,
            data: b.data,
            growing: b.growing,
            needs: b.needs,
            account_test: false,
            before_send: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_address_check_accepts_only_what_the_long_way_accepts() {
        let long = "l".repeat(63);
        let cases: Vec<(String, bool)> = [
            ("a@x", true),
            ("first.last+tag@mail.example.org", true),
            ("!#$%&'*+-/=?^_`{|}~@x-1.y", true),
            ("", false),
            ("@x", false),
            ("a@", false),
            (".a@x", false),
            ("a.@x", false),
            ("a..b@x", false),
            ("a@-x", false),
            ("a@x-", false),
            ("a@x..y", false),
            ("a@.x", false),
            ("a@x.", false),
            ("a b@x", false),
            ("a@x y", false),
            ("a\r@x", false),
            ("a@x\n", false),
            ("\"a\"@x", false),
            ("a@b@x", false),
            ("<a@x>", false),
            ("ü@x", false),
            ("a@[127.0.0.1]", false),
        ]
        .into_iter()
        .map(|(a, ok)| (a.to_string(), ok))
        .chain([
            (format!("{}@x", "u".repeat(64)), true),
            (format!("{}@x", "u".repeat(65)), false),
            (format!("a@{long}.x"), true),
            (format!("a@{long}l.x"), false),
            (format!("a@{}", [long.as_str(); 4].join(".")), false),
        ])
        .collect();
        for (a, ok) in cases {
            let fast = plain_ascii_address(a.as_bytes());
            assert_eq!(fast, ok, "{a:?}");
            if fast {
                // The long way takes it too, as the same string.
                assert!(
                    no_controls(&a, "x", false).is_ok()
                        && check_addr_spec(&a, "x").is_ok()
                        && plain_address(&a)
                );
            }
            // Either way the result is the long way's.
            let got = check_envelope_address(&a, "x", false).map_err(|e| e.detail);
            let long_way = no_controls(&a, "x", false)
                .and_then(|()| {
                    let bare = a
                        .strip_prefix('<')
                        .and_then(|b| b.strip_suffix('>'))
                        .unwrap_or(&a);
                    if bare.is_empty() {
                        return Err(Error::invalid("x is empty: it needs an address user@domain"));
                    }
                    check_addr_spec(bare, "x").map(|()| bare)
                })
                .map_err(|e| e.detail);
            assert_eq!(got, long_way, "{a:?}");
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).expect("messages are ASCII")
    }

    fn headers(bytes: &[u8]) -> String {
        let t = text(bytes);
        t.split("\r\n\r\n").next().unwrap_or_default().to_string()
    }

    fn count_header(bytes: &[u8], name: &str) -> usize {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        headers(bytes)
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .count()
    }

    fn minimal() -> MessageDraft {
        let mut m = MessageDraft::default();
        m.set_from("Alice <alice@example.com>").unwrap();
        m.add_to("bob@example.org").unwrap();
        m.set_text("Hello").unwrap();
        m
    }

    /// Every line ends in CRLF, with no lone CR or LF, and is at most 998 bytes.
    fn assert_well_formed(bytes: &[u8]) {
        assert!(
            is_clean_text(bytes),
            "lone CR/LF or control byte in:\n{}",
            text(bytes)
        );
        for line in text(bytes).split("\r\n") {
            assert!(line.len() <= 998, "line too long: {line}");
        }
    }

    #[test]
    fn injection_in_addresses_is_refused() {
        let mut m = MessageDraft::default();
        for bad in [
            "a@b\r\nRCPT TO:<x@y>",
            "a@b\nRCPT TO:<x@y>",
            "Eve\r\nBcc: x@y <a@b>",
            "a@b\0",
            "Tab\tName <a@b>",
        ] {
            let e = m.add_to(bad).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad:?}");
            assert!(e.detail.contains("control"), "{}", e.detail);
            assert!(m.set_from(bad).is_err());
            assert!(m.add_bcc(bad).is_err());
        }
        assert!(m.add_to("not an address").is_err());
        assert!(m.add_to("").is_err());
        assert!(m.add_to("a@b, c@d").is_err(), "one mailbox per call");
        assert!(
            m.to.is_empty() && m.from.is_none() && m.bcc.is_empty(),
            "draft unchanged on error"
        );
    }

    #[test]
    fn injection_in_headers_is_refused() {
        let mut m = minimal();
        let e = m.add_header("X-Test", "ok\r\nBcc: x@y").unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(m.add_header("X-Test", "ok\nBcc: x@y").is_err());
        assert!(m.add_header("X-Test: evil", "v").is_err());
        assert!(m.add_header("X-Test:", "v").is_err());
        assert!(m.add_header("X Test", "v").is_err());
        assert!(m.add_header("", "v").is_err());
        assert!(m.add_header("X-Tëst", "v").is_err());
        assert!(m.add_header("X-Test\r\nBcc", "v").is_err());
        assert!(m.set_subject("Hi\r\nBcc: x@y").is_err());
        assert!(m.set_subject("Hi\nthere").is_err());
        m.set_subject("tab\tis fine").unwrap();
        assert!(m.headers.is_empty(), "draft unchanged on error");
        let b = m.to_bytes().unwrap();
        assert_eq!(count_header(&b, "Bcc"), 0);
    }

    #[test]
    fn managed_headers_point_to_their_setter() {
        let mut m = minimal();
        for name in [
            "From",
            "to",
            "CC",
            "Bcc",
            "Subject",
            "Content-Type",
            "content-transfer-encoding",
            "MIME-Version",
        ] {
            let e = m.add_header(name, "x").unwrap_err();
            assert!(e.detail.contains("use herald_message_"), "{name}: {}", e.detail);
        }
        for name in [
            "Date",
            "Message-ID",
            "Reply-To",
            "In-Reply-To",
            "References",
            "X-Mailer",
        ] {
            m.add_header(name, "<x@y>").unwrap();
        }
    }

    #[test]
    fn missing_from_or_recipient_is_invalid() {
        let mut m = MessageDraft::default();
        m.add_to("bob@example.org").unwrap();
        let e = m.to_bytes().unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.detail.contains("set_from"), "{}", e.detail);
        let mut m = MessageDraft::default();
        m.set_from("alice@example.com").unwrap();
        let e = m.to_envelope().unwrap_err();
        assert!(e.detail.contains("recipient"), "{}", e.detail);
    }

    #[test]
    fn bcc_is_in_the_envelope_only() {
        let mut m = minimal();
        m.add_cc("Carol <carol@example.net>").unwrap();
        m.add_bcc("Secret <hidden@example.net>").unwrap();
        m.add_bcc("bob@EXAMPLE.org").unwrap();
        let job = m.to_envelope().unwrap();
        assert_eq!(job.env.from(), "alice@example.com");
        assert_eq!(
            job.env.rcpts().collect::<Vec<_>>(),
            ["bob@example.org", "carol@example.net", "hidden@example.net"]
        );
        let t = text(&job.data);
        assert!(!t.contains("hidden"), "{t}");
        assert_eq!(count_header(&job.data, "Bcc"), 0);
        assert_eq!(count_header(&job.data, "Cc"), 1);
    }

    #[test]
    fn an_empty_display_name_is_dropped() {
        let mut m = minimal();
        m.set_from("\"\" <alice@example.com>").unwrap();
        assert!(headers(&m.to_bytes().unwrap()).starts_with("From: alice@example.com\r\n"));
    }

    #[test]
    fn only_bcc_recipients_is_enough() {
        let mut m = MessageDraft::default();
        m.set_from("alice@example.com").unwrap();
        m.add_bcc("hidden@example.net").unwrap();
        let job = m.to_envelope().unwrap();
        assert_eq!(job.env.rcpts().collect::<Vec<_>>(), ["hidden@example.net"]);
        assert!(!text(&job.data).contains("hidden"));
    }

    #[test]
    fn utf8_subject_and_names_are_encoded() {
        let mut m = minimal();
        m.set_from("Jörg Müller <joerg@example.com>").unwrap();
        m.add_to("\"Doe, John\" <john@example.org>").unwrap();
        m.add_to("Zoë 🦀 <zoe@example.org>").unwrap();
        m.set_subject("Grüße aus Köln — 東京").unwrap();
        m.add_header("X-Note", "naïve").unwrap();
        let b = m.to_bytes().unwrap();
        assert!(b.is_ascii(), "headers are RFC 2047-encoded");
        assert_well_formed(&b);
        let h = headers(&b);
        assert!(h.contains("=?utf-8?"), "{h}");
        assert!(
            h.contains("<joerg@example.com>") && h.contains("<zoe@example.org>"),
            "{h}"
        );
        // The comma is quoted or encoded, never a bare list separator.
        assert!(!h.contains("Doe, John <"), "{h}");
        assert!(h.contains("<john@example.org>"), "{h}");
        assert_eq!(m.to_envelope().unwrap().env.from(), "joerg@example.com");
    }

    /// Base64 attachments of 4 MiB and more are encoded on a thread of
    /// their own (`to_envelope_growing`): the bytes are those `to_vec`
    /// makes of the same layout, and what the message needs is the same
    /// as a scan of them finds. Smaller ones are built at once.
    #[test]
    fn large_attachments_are_encoded_while_being_read() {
        let big: Vec<u8> = (0..(3u32 << 20) + 12_345)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut m = MessageDraft::default();
        m.set_from("a@example.org").unwrap();
        m.add_to("b@example.org").unwrap();
        m.set_text("see the attachments").unwrap();
        m.attach_bytes("small.bin", None, &big[..1000]).unwrap();
        m.attach_bytes("big.bin", None, &big).unwrap();
        let b = m.to_envelope_growing().unwrap();
        let g = b.growing.clone().expect("encoded while read");
        assert!(b.data.is_empty());
        // Read while it is filled, in growing prefixes.
        let mut to = 0;
        while to < g.len() {
            to = (to + 1_000_003).min(g.len());
            assert_eq!(g.upto(to).unwrap().len(), to);
        }
        let bytes = g.all().unwrap().to_vec();
        assert_eq!(b.needs, Needs::of(&b.env, &bytes));
        assert_eq!(g.tail(), &bytes[bytes.len() - 2..]);
        let parsed = mail_parser::MessageParser::default().parse(&bytes[..]).unwrap();
        let atts: Vec<&[u8]> = parsed.attachments().map(|a| a.contents()).collect();
        assert_eq!(atts, [&big[..1000], &big[..]]);
        // The same layout built at once: the same bytes.
        let (msg, holes) = m.build().unwrap();
        let layout = Layout::new(msg.formatted(), holes).unwrap();
        assert!(layout.can_grow());
        let at_once = layout.to_vec();
        let grown = layout.grow();
        assert_eq!(grown.all().unwrap(), &at_once[..]);
        // The draft can go before the encoding ends: it shares its bytes.
        drop(m);
        assert_eq!(b.growing.unwrap().all().unwrap(), &bytes[..]);
        // A burst: past two encoder threads per CPU the rest are encoded at
        // once, on the calling thread; every one is whole.
        let mut m = MessageDraft::default();
        m.set_from("a@example.org").unwrap();
        m.add_to("b@example.org").unwrap();
        m.attach_bytes("big.bin", None, &big).unwrap();
        let burst: Vec<Built> = (0..8).map(|_| m.to_envelope_growing().unwrap()).collect();
        for b in burst {
            let bytes = b.growing.expect("grown").all().unwrap().to_vec();
            let parsed = mail_parser::MessageParser::default().parse(&bytes[..]).unwrap();
            assert_eq!(
                parsed.attachments().map(|a| a.contents()).collect::<Vec<_>>(),
                [&big[..]]
            );
        }
        // Below 4 MiB of base64: built at once.
        let mut m = MessageDraft::default();
        m.set_from("a@example.org").unwrap();
        m.add_to("b@example.org").unwrap();
        m.attach_bytes("small.bin", None, &big[..100_000]).unwrap();
        let b = m.to_envelope_growing().unwrap();
        assert!(b.growing.is_none() && !b.data.is_empty());
        assert_eq!(b.needs, Needs::of(&b.env, &b.data));
    }

    #[test]
    fn utf8_addresses_are_accepted() {
        let mut m = MessageDraft::default();
        m.set_from("josé@exämple.com").unwrap();
        m.add_to("用户@例子.广告").unwrap();
        let job = m.to_envelope().unwrap();
        assert_eq!(job.env.from(), "josé@exämple.com");
        assert_eq!(job.env.rcpts().collect::<Vec<_>>(), ["用户@例子.广告"]);
    }

    #[test]
    fn date_and_message_id_appear_once() {
        let b = minimal().to_bytes().unwrap();
        assert_eq!(count_header(&b, "Date"), 1);
        assert_eq!(count_header(&b, "Message-ID"), 1);
        assert_eq!(count_header(&b, "MIME-Version"), 1);
        assert!(headers(&b).contains("@example.com>"), "id on the sender's domain");
        let again = minimal().to_bytes().unwrap();
        let id = |b: &[u8]| {
            headers(b)
                .lines()
                .find(|l| l.starts_with("Message-ID"))
                .map(str::to_string)
        };
        assert_ne!(id(&b), id(&again));
    }

    #[test]
    fn user_message_id_and_date_are_kept() {
        let mut m = minimal();
        m.add_header("message-id", "<mine@example.com>").unwrap();
        m.add_header("Date", "Tue, 15 Nov 1994 08:12:31 +0100").unwrap();
        let b = m.to_bytes().unwrap();
        assert_eq!(count_header(&b, "Message-ID"), 1);
        assert_eq!(count_header(&b, "Date"), 1);
        let h = headers(&b);
        assert!(h.contains("<mine@example.com>"), "{h}");
        assert!(h.contains("Date: Tue, 15 Nov 1994 08:12:31 +0100"), "{h}");
    }

    #[test]
    fn a_header_added_twice_is_replaced() {
        let mut m = minimal();
        m.add_header("X-Tag", "one").unwrap();
        m.add_header("x-tag", "two").unwrap();
        let b = m.to_bytes().unwrap();
        assert_eq!(count_header(&b, "X-Tag"), 1);
        assert!(headers(&b).contains(": two"));
    }

    #[test]
    fn text_and_html_make_an_alternative() {
        let mut m = minimal();
        m.set_html("<p>Hello</p>").unwrap();
        let t = text(&m.to_bytes().unwrap());
        assert!(t.contains("multipart/alternative"), "{t}");
        let plain = t.find("text/plain").unwrap();
        let html = t.find("text/html").unwrap();
        assert!(plain < html, "text first, the preferred html last");

        let mut only = MessageDraft::default();
        only.set_from("a@example.com").unwrap();
        only.add_to("b@example.com").unwrap();
        only.set_html("<p>x</p>").unwrap();
        let t = text(&only.to_bytes().unwrap());
        assert!(!t.contains("multipart"), "{t}");
        assert!(t.contains("Content-Type: text/html; charset=utf-8"), "{t}");
    }

    #[test]
    fn bodies_end_in_crlf_and_utf8_is_encoded() {
        let mut m = minimal();
        m.set_text("no newline at the end").unwrap();
        let b = m.to_bytes().unwrap();
        assert!(b.ends_with(b"no newline at the end\r\n"), "{}", text(&b));
        assert_well_formed(&b);

        m.set_text("line one\nline two\rline three\r\nÜmlaut ✓").unwrap();
        m.set_html("<p>Ünïcödé</p>\n").unwrap();
        let b = m.to_bytes().unwrap();
        assert!(b.is_ascii(), "8-bit text is transfer-encoded");
        assert_well_formed(&b);
        assert!(text(&b).contains("quoted-printable") || text(&b).contains("base64"));
    }

    #[test]
    fn control_characters_in_bodies_are_escaped() {
        let mut m = minimal();
        m.set_text("bell\x07 vt\x0b nul\0 del\x7f").unwrap();
        m.set_html("<p>\x0c</p>").unwrap();
        let b = m.to_bytes().unwrap();
        assert_well_formed(&b);
        assert!(text(&b).contains("quoted-printable"));
    }

    #[test]
    fn a_long_line_is_wrapped() {
        let mut m = minimal();
        m.set_text(&"x".repeat(5000)).unwrap();
        m.set_subject(&"word ".repeat(100)).unwrap();
        assert_well_formed(&m.to_bytes().unwrap());
    }

    #[test]
    fn attachments_carry_their_content_type() {
        let dir = std::env::temp_dir().join(format!("herald-msg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pdf = dir.join("report.PDF");
        std::fs::write(&pdf, b"%PDF-1.4\x00\xff binary").unwrap();
        let mut m = minimal();
        m.attach_file(pdf.to_str().unwrap(), None).unwrap();
        std::fs::remove_file(&pdf).unwrap();
        m.attach_bytes("data.csv", Some("text/csv; charset=utf-8"), b"a,b\r\n1,2\r\n")
            .unwrap();
        m.attach_bytes("empty.bin", None, b"").unwrap();
        m.attach_bytes("lf.txt", None, b"unix\nlines\n").unwrap();
        let b = m.to_bytes().unwrap();
        assert_well_formed(&b);
        let t = text(&b);
        assert!(t.contains("multipart/mixed"), "{t}");
        assert!(t.contains("Content-Type: application/pdf"), "{t}");
        assert!(t.contains("filename=\"report.PDF\""), "{t}");
        assert!(t.contains("Content-Type: text/csv; charset=utf-8"), "{t}");
        assert!(t.contains("a,b\r\n1,2\r\n"), "clean text stays readable: {t}");
        assert!(t.contains("Content-Type: application/octet-stream"), "{t}");
        assert!(t.contains("Content-Type: text/plain\r\n"), "{t}");
        assert!(t.contains("Hello"), "the body is kept");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn attachment_errors() {
        let mut m = minimal();
        let e = m.attach_file("/nonexistent/herald/file.txt", None).unwrap_err();
        assert_eq!(e.status, Status::Io);
        assert!(e.detail.contains("/nonexistent/herald/file.txt"), "{}", e.detail);
        let e = m.attach_bytes("a.bin", Some("not a type"), b"x").unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(m.attach_bytes("a.bin", Some("text/plain\r\nX: y"), b"x").is_err());
        assert!(m.attach_bytes("a\r\n.bin", None, b"x").is_err());
        assert!(m.attach_bytes("", None, b"x").is_err());
        assert!(m.attachments.is_empty());
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

        /// Text from `alphabet`, up to `max` chars.
        fn text(&mut self, alphabet: &[char], max: usize) -> String {
            (0..self.below(max + 1))
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }
    }

    /// The char-by-char `crlf_lines` the scanning one replaced.
    fn crlf_lines_slow(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    chars.next_if_eq(&'\n');
                    out.push_str("\r\n");
                }
                '\n' => out.push_str("\r\n"),
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn line_ends_and_controls_match_their_definitions() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let alphabet = [
            'a', ' ', '\r', '\n', '\r', '\n', '\t', '\0', '\x07', '\x7f', '\u{80}', '\u{9f}', '\u{a0}',
            '\u{c2}', 'é', '€', '🦀', '.',
        ];
        for case in [
            "",
            "\r",
            "\n",
            "\r\n",
            "\n\r",
            "a\r\r\nb",
            "\r\n\n\r\r",
            "x\u{85}y",
        ] {
            assert_eq!(crlf_lines(case), crlf_lines_slow(case), "{case:?}");
        }
        for _ in 0..5000 {
            let t = rng.text(&alphabet, 40);
            assert_eq!(crlf_lines(&t), crlf_lines_slow(&t), "{t:?}");
            let slow = t
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'));
            assert_eq!(has_controls(&t), slow, "{t:?}");
        }
        // Past the 32-byte blocks, too.
        let long = "abc ".repeat(40);
        for (i, c) in [
            (0, '\x01'),
            (31, '\x1f'),
            (32, '\x7f'),
            (100, '\u{9b}'),
            (159, '\x0b'),
        ] {
            let mut t = long.clone();
            t.insert(i, c);
            assert!(has_controls(&t), "{c:?} at {i}");
        }
        assert!(!has_controls(&long) && !has_controls("tab\tcr\rlf\n é €"));
    }

    #[test]
    fn text_parts_are_what_lettre_makes() {
        let mut rng = Rng(7);
        let mut texts: Vec<String> = ["", "Hello", "a\nb\r\nc\rd", "no end", "tab\there\n"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for n in [74, 75, 76, 77, 78, 200] {
            texts.push(format!("{}\n{}\n", "x".repeat(n), "y".repeat(10)));
            texts.push(format!("short\n{}", "z".repeat(n)));
        }
        for _ in 0..300 {
            texts.push(rng.text(&['w', 'o', ' ', '\n', '\r', 'é', '.', '='], 300));
        }
        for t in &texts {
            let ours = text_part(ContentType::TEXT_PLAIN, t).formatted();
            let lettres = SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(crlf_lines_slow(t))
                .formatted();
            assert_eq!(text(&ours), text(&lettres), "{t:?}");
        }
    }

    #[test]
    fn base64_lines_are_lettres() {
        let mut rng = Rng(11);
        for n in (0..300).chain([570, 571, 5700, 100_000]) {
            let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let lettres = Body::new_with_encoding(data.clone(), ContentTransferEncoding::Base64).unwrap();
            let mut ours = b"head".to_vec();
            push_base64_lines(&data, &mut ours);
            assert_eq!(&ours[4..], lettres.as_ref(), "{n} bytes");
            assert_eq!(base64_lines_len(n), lettres.len(), "{n} bytes");
        }
    }

    #[test]
    fn attachments_are_encoded_in_place() {
        let mut rng = Rng(3);
        // Past 1 MiB: the buffers are made present in one call.
        let big: Vec<u8> = (0..1_200_000).map(|_| rng.next() as u8).collect();
        let mut m = minimal();
        m.attach_bytes("a.bin", None, &big).unwrap();
        m.attach_bytes("b.txt", None, b"plain\r\ntext\r\n").unwrap();
        m.attach_bytes("c.bin", None, &big[..1000]).unwrap();
        let b = m.to_bytes().unwrap();
        assert_eq!(b.len(), b.capacity(), "made at its exact size");
        assert_well_formed(&b);
        let t = text(&b);
        assert!(!t.contains("herald-base64-"), "every marker was replaced");
        for data in [&big[..], &big[..1000]] {
            let lines = Body::new_with_encoding(data.to_vec(), ContentTransferEncoding::Base64).unwrap();
            let lines = text(lines.as_ref());
            assert_eq!(
                t.matches(&*lines).count(),
                1,
                "the attachment's base64 lines, whole"
            );
        }
        assert!(t.contains("plain\r\ntext\r\n"));
        // Without attachments: no spare capacity either.
        let b = minimal().to_bytes().unwrap();
        assert_eq!(b.len(), b.capacity());
    }

    #[test]
    fn plain_addresses_are_a_subset_of_lettres() {
        let mut rng = Rng(11);
        let alphabet = b"aZ09.-@_+!\"[]:\\ \x7f";
        let mut plain = 0;
        for round in 0..20_000 {
            let len = 1 + rng.next() as usize % if round % 2 == 0 { 12 } else { 80 };
            let mut a: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.next() as usize % alphabet.len()])
                .collect();
            if round % 3 == 0 {
                // Mostly well-formed: a word, '@', labels.
                a = format!("u{}@d{}.example", round % 97, round % 13).into_bytes();
                let at = rng.next() as usize % a.len();
                a[at] = alphabet[rng.next() as usize % alphabet.len()];
            }
            let a = String::from_utf8(a).unwrap();
            if plain_address(&a) {
                plain += 1;
                assert!(a.parse::<Address>().is_ok(), "{a:?} passed the fast check only");
            }
        }
        assert!(plain > 1000, "the fast check took {plain}");
        for long in [
            format!("{}@example.org", "u".repeat(64)),
            format!("u@{}.org", "d".repeat(63)),
            format!("u@{}x", "d.".repeat(126)),
        ] {
            assert!(plain_address(&long) && long.parse::<Address>().is_ok(), "{long}");
        }
        for bad in [
            format!("{}@example.org", "u".repeat(65)),
            format!("u@{}.org", "d".repeat(64)),
            "u@-d.org".into(),
            "u@d-.org".into(),
            "u..v@d.org".into(),
            ".u@d.org".into(),
            "u@d..org".into(),
            "u@".into(),
            "@d".into(),
            "u@[127.0.0.1]".into(),
        ] {
            assert!(!plain_address(&bad), "{bad}");
        }
    }

    #[test]
    fn a_send_job_needs_what_a_scan_of_its_bytes_finds() {
        let mut rng = Rng(5);
        let bin: Vec<u8> = (0..5000).map(|_| rng.next() as u8).collect();
        let cases: [&[(&str, &[u8])]; 4] = [
            &[("a.bin", &bin)],
            &[("a.bin", &bin), ("e.bin", b"")],
            &[("e.bin", b"\0")],
            &[("x.bin", &bin[..1]), ("y.txt", b".dot\r\nline\r\n")],
        ];
        for (k, files) in cases.iter().enumerate() {
            for body in ["plain\n", ".a dot-led line\nnon-ASCII: \u{e9}\n"] {
                let mut m = minimal();
                m.set_text(body).unwrap();
                for (name, data) in files.iter() {
                    m.attach_bytes(name, None, data).unwrap();
                }
                let job = m.to_envelope().unwrap();
                assert!(!text(&job.data).contains("herald-base64-"), "case {k}");
                assert_eq!(job.needs, Needs::of(&job.env, &job.data), "case {k}, {body:?}");
            }
        }
    }

    #[test]
    fn content_types_are_guessed() {
        assert_eq!(guess_content_type("a.txt"), "text/plain");
        assert_eq!(guess_content_type("A.JPEG"), "image/jpeg");
        assert_eq!(guess_content_type("mail.eml"), "message/rfc822");
        assert_eq!(guess_content_type("x.json"), "application/json");
        assert_eq!(guess_content_type("noext"), "application/octet-stream");
        assert_eq!(guess_content_type("weird.qqq"), "application/octet-stream");
    }

    #[test]
    fn envelope_addresses() {
        assert_eq!(
            check_envelope_address("a@b.example", "rcpt", false).unwrap(),
            "a@b.example"
        );
        assert_eq!(
            check_envelope_address("<a@b.example>", "rcpt", false).unwrap(),
            "a@b.example"
        );
        assert_eq!(
            check_envelope_address("jörg@bücher.example", "rcpt", false).unwrap(),
            "jörg@bücher.example"
        );
        for bad in [
            "",
            "<>",
            "a@b\r\nRCPT TO:<x@y>",
            "a@b>\r\nDATA",
            "a@b> SIZE=1",
            "<a@b",
            "a b@c",
            "<<a@b>>",
            "a@b\t",
            "nobody",
            "@a,@b:c@d",
        ] {
            let e = check_envelope_address(bad, "rcpt_to[0]", false).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad:?}");
            assert!(e.detail.contains("rcpt_to[0]"), "{}", e.detail);
        }
        assert_eq!(check_envelope_address("", "mail_from", true).unwrap(), "");
        assert_eq!(check_envelope_address("<>", "mail_from", true).unwrap(), "");
        assert_eq!(
            check_envelope_address("<a@b.example>", "mail_from", true).unwrap(),
            "a@b.example"
        );
        assert!(check_envelope_address("a@b\r\n", "mail_from", true).is_err());
        assert!(check_envelope_address(" ", "mail_from", true).is_err());
    }
}
