//! The crafted messages of the parsed-message and parts tests, and the
//! checks that every IMAP server must pass with them (tests/imap_parts.rs
//! against Dovecot, tests/imap_cyrus_sync.rs against Cyrus).

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

pub use herald::ffi::imap_parts::*;
pub use herald::ffi::parsed::*;

use super::imap::*;
use super::*;

/// Every byte value, twice: base64 in the message, so decoding is exact or visibly wrong.
pub fn attachment_bytes() -> Vec<u8> {
    (0..512u32).map(|i| (i * 7 % 256) as u8).collect()
}

pub fn b64(data: &[u8]) -> String {
    use std::fmt::Write;
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for (n, c) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            s.push_str("\r\n");
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= c.len() {
                s.push(T[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    let _ = write!(s, "\r\n");
    s
}

pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

pub fn nested_message() -> Vec<u8> {
    format!(
        "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n\
Sender: secretary@example.org\r\n\
Reply-To: replies@example.org\r\n\
To: Bob <bob@example.org>\r\n\
Cc: =?ISO-8859-1?Q?Ren=E9?= <rene@example.org>, carol@example.org\r\n\
Bcc: hidden@example.org\r\n\
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n\
Date: Tue, 2 Jan 2024 10:30:00 +0100\r\n\
Message-ID: <nested@example.org>\r\n\
In-Reply-To: <parent@example.org>\r\n\
References: <root@example.org>\r\n <parent@example.org>\r\n\
X-Label: =?UTF-8?Q?wichtig_=E2=9C=93?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Gr=FC=DFe, caf=E9 =3D coffee\r\n\
--alt\r\n\
Content-Type: multipart/related; boundary=\"rel\"\r\n\
\r\n\
--rel\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Gr\u{fc}\u{df}e <img src=\"cid:logo@example.org\"></p>\r\n\
--rel\r\n\
Content-Type: image/png; name=\"logo.png\"\r\n\
Content-ID: <logo@example.org>\r\n\
Content-Disposition: inline; filename=\"logo.png\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
{}--rel--\r\n\
--alt--\r\n\
--outer\r\n\
Content-Type: application/octet-stream\r\n\
Content-Disposition: attachment;\r\n filename*0*=UTF-8''%E2%82%AC%20Kurs;\r\n filename*1*=%C3%BCbersicht.bin\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
{}--outer--\r\n",
        b64(PNG),
        b64(&attachment_bytes())
    )
    .into_bytes()
}

pub const BROKEN: &[u8] = b"From: a@example.org\r\nSubject: broken\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"never\"\r\n\r\n--never\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\n\
cut short, no closing boundary anywhere\r\n--inn\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@not base64\r\n";

pub const HTML_ONLY: &[u8] =
    b"From: a@example.org\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>world</b> &amp; more</p>\r\n";

/// A completion taken from the client's queue, freed on drop.
pub struct Done(pub *mut herald_completion);

impl Drop for Done {
    fn drop(&mut self) {
        herald_completion_free(self.0);
    }
}

impl Done {
    pub fn status(&self) -> u32 {
        // SAFETY: a completion from herald_client_next, not yet freed.
        unsafe { (*self.0).status }
    }
    pub fn detail(&self) -> String {
        // SAFETY: as above; detail is never NULL.
        unsafe { CStr::from_ptr((*self.0).detail) }
            .to_string_lossy()
            .into_owned()
    }
    pub fn result(&self) -> *const herald_result {
        // SAFETY: as above.
        unsafe { (*self.0).result }
    }
    pub fn bytes(&self, i: usize) -> Vec<u8> {
        let mut len = 0;
        let p = herald_result_bytes(self.result(), i, &mut len);
        assert!(!p.is_null(), "item {i} has bytes: {}", last_error());
        // SAFETY: herald gives `len` readable bytes, valid as long as the result.
        unsafe { std::slice::from_raw_parts(p, len) }.to_vec()
    }
    pub fn str(&self, i: usize, f: u32) -> Option<String> {
        let p = herald_result_str(self.result(), i, f);
        (!p.is_null()).then(|| text(p))
    }
}

/// Submits an op whose completion goes to the client's queue, and takes it.
pub fn queued(c: &TestClient, f: impl FnOnce(*mut herald_op) -> u32) -> Done {
    let mut op = 0;
    assert_eq!(f(&mut op), HERALD_STATUS_OK, "{}", last_error());
    let d = Done(herald_client_next(c.c, 120_000));
    assert!(!d.0.is_null(), "op {op} completed");
    // SAFETY: a completion from herald_client_next.
    assert_eq!(unsafe { (*d.0).op }, op);
    d
}

pub fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub fn text(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: herald returns NUL-terminated UTF-8 that outlives this call.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

pub fn fetch(c: &TestClient, mailbox: &str, uids: &str, parts: u32) -> Done {
    let (m, u) = (cs(mailbox), cs(uids));
    queued(c, |op| {
        herald_imap_fetch_async(c.c, m.as_ptr(), u.as_ptr(), parts, None, null_mut(), op)
    })
}

pub fn section(c: &TestClient, mailbox: &str, uid: u64, sec: &str, offset: u64, max_len: u64) -> Done {
    let (m, s) = (cs(mailbox), cs(sec));
    queued(c, |op| {
        herald_imap_fetch_section_async(
            c.c,
            m.as_ptr(),
            uid,
            s.as_ptr(),
            offset,
            max_len,
            None,
            null_mut(),
            op,
        )
    })
}

/// Appends the crafted messages to a new mailbox; their UIDs.
pub fn store(c: &TestClient, mailbox: &str) -> Vec<u64> {
    assert!(c.done(c.imap_create(mailbox)).ok());
    let nested = nested_message();
    let r = c.done(c.imap_append(mailbox, &[&nested, BROKEN, HTML_ONLY], None));
    assert!(r.ok(), "{r:?}");
    uids(&r)
}

pub fn attachment(p: *const herald_parsed, i: usize) -> (String, String, String, bool, Vec<u8>) {
    let mut a = std::mem::MaybeUninit::<herald_attachment>::uninit();
    assert_eq!(herald_parsed_attachment(p, i, a.as_mut_ptr()), HERALD_STATUS_OK);
    // SAFETY: filled in on OK.
    let a = unsafe { a.assume_init() };
    // SAFETY: `len` bytes owned by the parsed message.
    let data = unsafe { std::slice::from_raw_parts(a.data, a.len) }.to_vec();
    (
        text(a.filename),
        text(a.content_type),
        text(a.content_id),
        a.is_inline != 0,
        data,
    )
}

pub fn check_nested_parsed(p: *const herald_parsed) {
    assert!(!p.is_null(), "{}", last_error());
    assert_eq!(text(herald_parsed_subject(p)), "Gr\u{fc}\u{df}e aus K\u{f6}ln");
    assert_eq!(
        text(herald_parsed_text(p)).trim(),
        "Gr\u{fc}\u{df}e, caf\u{e9} = coffee"
    );
    assert!(text(herald_parsed_html(p)).contains("<p>Gr\u{fc}\u{df}e <img"));
    assert_eq!(
        text(herald_parsed_header(p, cs("x-label").as_ptr(), 0)),
        "wichtig \u{2713}"
    );
    assert_eq!(herald_parsed_date(p), 1_704_187_800);
    let mut name = null();
    assert_eq!(
        text(herald_parsed_address(p, HERALD_ADDR_FROM, 0, &mut name)),
        "joerg@example.org"
    );
    assert_eq!(text(name), "J\u{f6}rg M\u{fc}ller");
    assert_eq!(herald_parsed_address_count(p, HERALD_ADDR_CC), 2);
    assert_eq!(
        text(herald_parsed_address(p, HERALD_ADDR_CC, 0, &mut name)),
        "rene@example.org"
    );
    assert_eq!(text(name), "Ren\u{e9}");
    assert_eq!(
        text(herald_parsed_address(p, HERALD_ADDR_CC, 1, &mut name)),
        "carol@example.org"
    );
    assert_eq!(text(name), "");
    for (role, addr) in [
        (HERALD_ADDR_TO, "bob@example.org"),
        (HERALD_ADDR_BCC, "hidden@example.org"),
        (HERALD_ADDR_REPLY_TO, "replies@example.org"),
        (HERALD_ADDR_SENDER, "secretary@example.org"),
    ] {
        assert_eq!(herald_parsed_address_count(p, role), 1);
        assert_eq!(text(herald_parsed_address(p, role, 0, null_mut())), addr);
    }
    assert_eq!(herald_parsed_attachment_count(p), 2);
    let (f, ct, cid, inline, data) = attachment(p, 0);
    assert_eq!(
        (f.as_str(), ct.as_str(), cid.as_str(), inline),
        ("logo.png", "image/png", "logo@example.org", true)
    );
    assert_eq!(data, PNG);
    let (f, ct, cid, inline, data) = attachment(p, 1);
    assert_eq!(
        f, "\u{20ac} Kurs\u{fc}bersicht.bin",
        "RFC 2231 continuations, UTF-8"
    );
    assert_eq!(
        (ct.as_str(), cid.as_str(), inline),
        ("application/octet-stream", "", false)
    );
    assert_eq!(data, attachment_bytes());
}

/// Appends the crafted messages to a new mailbox "Parts" and checks what a
/// fetch with PARSED, ENVELOPE and BODYSTRUCTURE gives of them: the same on
/// every server.
pub fn check_crafted_fetch(c: &TestClient) {
    let uids = store(c, "Parts");
    let all = HERALD_FETCH_ENVELOPE | HERALD_FETCH_BODY | HERALD_FETCH_PARSED | HERALD_FETCH_BODYSTRUCTURE;
    let r = fetch(c, "Parts", "1:*", all);
    assert_eq!(r.status(), HERALD_STATUS_OK, "{}", r.detail());
    let res = r.result();
    assert_eq!(herald_result_count(res), 3);
    assert_eq!(r.bytes(0), nested_message(), "the bytes are still the message");
    check_nested_parsed(herald_result_parsed(res, 0));

    // More envelope, from the server's ENVELOPE.
    assert_eq!(
        r.str(0, HERALD_FIELD_CC).unwrap(),
        "Ren\u{e9} <rene@example.org>, carol@example.org"
    );
    assert_eq!(r.str(0, HERALD_FIELD_BCC).unwrap(), "hidden@example.org");
    assert_eq!(r.str(0, HERALD_FIELD_REPLY_TO).unwrap(), "replies@example.org");
    assert_eq!(r.str(0, HERALD_FIELD_SENDER).unwrap(), "secretary@example.org");
    assert_eq!(
        r.str(0, HERALD_FIELD_IN_REPLY_TO).unwrap(),
        "<parent@example.org>"
    );
    assert_eq!(
        r.str(0, HERALD_FIELD_REFERENCES).unwrap(),
        "<root@example.org> <parent@example.org>"
    );
    assert_eq!(herald_result_int(res, 0, HERALD_FIELD_DATE_UNIX), 1_704_187_800);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let internal = herald_result_int(res, 0, HERALD_FIELD_INTERNALDATE);
    assert!(
        internal.abs_diff(now) < 3600,
        "INTERNALDATE {internal} is the append time ({now})"
    );
    // No Reply-To or Sender header: the server reports From there (RFC 3501).
    assert_eq!(r.str(2, HERALD_FIELD_REPLY_TO).unwrap(), "a@example.org");
    assert_eq!(r.str(2, HERALD_FIELD_REFERENCES), None);
    assert_eq!(r.str(2, HERALD_FIELD_CC), None);

    // The structure, walked as a tree.
    let n = herald_result_part_count(res, 0);
    let mut nodes = Vec::new();
    for k in 0..n {
        let mut p = std::mem::MaybeUninit::<herald_part>::uninit();
        assert_eq!(herald_result_part(res, 0, k, p.as_mut_ptr()), HERALD_STATUS_OK);
        // SAFETY: filled in on OK.
        let p = unsafe { p.assume_init() };
        let params: Vec<(String, String)> = (0..p.param_count)
            .map(|j| {
                let mut name = null();
                let v = text(herald_result_part_param(res, 0, k, j, &mut name));
                (text(name), v)
            })
            .collect();
        nodes.push((
            text(p.section),
            format!("{}/{}", text(p.media_type), text(p.subtype)),
            text(p.filename),
            text(p.disposition),
            text(p.encoding),
            p.depth,
            p.parent,
            p.children,
            p.size,
            params,
        ));
    }
    let brief: Vec<(&str, &str, u32, usize)> = nodes
        .iter()
        .map(|x| (x.0.as_str(), x.1.as_str(), x.5, x.7))
        .collect();
    assert_eq!(
        brief,
        [
            ("TEXT", "multipart/mixed", 0, 2),
            ("1", "multipart/alternative", 1, 2),
            ("1.1", "text/plain", 2, 0),
            ("1.2", "multipart/related", 2, 2),
            ("1.2.1", "text/html", 3, 0),
            ("1.2.2", "image/png", 3, 0),
            ("2", "application/octet-stream", 1, 0),
        ]
    );
    assert_eq!(nodes[0].6, usize::MAX);
    assert_eq!(nodes[5].6, 3, "the image's parent is the related part");
    assert_eq!(
        (nodes[2].4.as_str(), nodes[6].4.as_str()),
        ("quoted-printable", "base64")
    );
    assert!(nodes[2]
        .9
        .contains(&("charset".to_string(), "iso-8859-1".to_string())));
    assert_eq!((nodes[5].2.as_str(), nodes[5].3.as_str()), ("logo.png", "inline"));
    assert_eq!(nodes[6].2, "\u{20ac} Kurs\u{fc}bersicht.bin");
    assert_eq!(nodes[6].3, "attachment");
    // As stored, without the CRLF that belongs to the boundary after it.
    assert_eq!(
        nodes[6].8,
        b64(&attachment_bytes()).len() as u64 - 2,
        "size is as stored"
    );

    // The broken multipart: parsed, never a panic; so is its structure.
    let p = herald_result_parsed(res, 1);
    assert_eq!(text(herald_parsed_subject(p)), "broken");
    assert!(herald_result_part_count(res, 1) >= 1);
    // HTML only: text is the HTML rendered.
    let p = herald_result_parsed(res, 2);
    assert!(text(herald_parsed_html(p)).contains("<b>world</b>"));
    assert!(text(herald_parsed_text(p)).contains("Hello world & more"));

    // PARSED without BODY parses the header block only.
    let r = fetch(c, "Parts", &uids[0].to_string(), HERALD_FETCH_PARSED);
    assert_eq!(r.status(), HERALD_STATUS_OK, "{}", r.detail());
    let p = herald_result_parsed(r.result(), 0);
    assert_eq!(text(herald_parsed_subject(p)), "Gr\u{fc}\u{df}e aus K\u{f6}ln");
    assert_eq!(herald_parsed_address_count(p, HERALD_ADDR_CC), 2);
    assert_eq!(herald_parsed_attachment_count(p), 0);
    // Without PARSED there is none, and the reason says so.
    let r = fetch(c, "Parts", "1:*", HERALD_FETCH_FLAGS);
    assert!(herald_result_parsed(r.result(), 0).is_null());
    assert!(last_error().contains("HERALD_FETCH_PARSED"), "{}", last_error());
    assert_eq!(herald_result_part_count(r.result(), 0), 0);
    // Unknown bits are refused at the call.
    let (m, u) = (cs("Parts"), cs("1"));
    let mut op = 0;
    let s = herald_imap_fetch_async(c.c, m.as_ptr(), u.as_ptr(), 1 << 20, None, null_mut(), &mut op);
    assert_eq!(s, HERALD_STATUS_INVALID_ARGUMENT);
}

/// Protocol lines a client logged (its log's user pointer is one of these).
#[derive(Default)]
pub struct Lines(pub std::sync::Mutex<Vec<String>>);

pub unsafe extern "C" fn log_line(user: *mut std::ffi::c_void, _level: u32, line: *const c_char) {
    let lines = &*(user as *const Lines);
    lines
        .0
        .lock()
        .unwrap()
        .push(CStr::from_ptr(line).to_string_lossy().into_owned());
}

pub fn logged(c: &TestClient) -> Box<Lines> {
    let lines = Box::<Lines>::default();
    let user = &*lines as *const Lines as *mut std::ffi::c_void;
    assert_eq!(
        herald_client_set_log(c.c, HERALD_LOG_TRACE, Some(log_line), user),
        HERALD_STATUS_OK
    );
    lines
}

/// Sections by number, decoded, whole and in ranges; TEXT as stored.
pub fn check_sections(c: &TestClient, uid: u64) {
    let want = attachment_bytes();
    let r = section(c, "Parts", uid, "2", 0, 0);
    assert_eq!(r.status(), HERALD_STATUS_OK, "{}", r.detail());
    assert_eq!(r.bytes(0), want, "base64 decoded");
    assert_eq!(
        herald_result_int(r.result(), 0, HERALD_FIELD_SIZE),
        want.len() as u64
    );
    assert_eq!(r.str(0, HERALD_FIELD_NAME).unwrap(), "2");
    for (off, len) in [(0u64, 100u64), (100, 250), (500, 100), (512, 10), (9999, 5)] {
        let r = section(c, "Parts", uid, "2", off, len);
        assert_eq!(r.status(), HERALD_STATUS_OK, "{}", r.detail());
        let (a, b) = (
            (off as usize).min(want.len()),
            ((off + len) as usize).min(want.len()),
        );
        assert_eq!(r.bytes(0), &want[a..b], "range {off}+{len} of the decoded bytes");
    }
    let r = section(c, "Parts", uid, "1.1", 0, 0);
    assert_eq!(
        r.bytes(0),
        b"Gr\xfc\xdfe, caf\xe9 = coffee",
        "quoted-printable decoded"
    );
    let r = section(c, "Parts", uid, "1.2.2", 0, 0);
    assert_eq!(r.bytes(0), PNG);
    let r = section(c, "Parts", uid, "1.2.2.MIME", 0, 0);
    assert!(String::from_utf8_lossy(&r.bytes(0)).contains("Content-ID: <logo@example.org>"));
    let r = section(c, "Parts", uid, "TEXT", 0, 9);
    assert_eq!(r.bytes(0), b"--outer\r\n", "TEXT as stored, ranged");
    let r = section(c, "Parts", uid, "HEADER", 0, 0);
    assert!(nested_message().starts_with(&r.bytes(0)));
    let r = section(c, "Parts", 999_999, "1", 0, 0);
    assert_eq!(r.status(), HERALD_STATUS_NOT_FOUND, "{}", r.detail());
    // Bad arguments are refused at the call.
    let m = cs("Parts");
    let mut op = 0;
    for (sec, uid, off) in [
        ("1 BODY[]", uid, 0u64),
        ("", uid, 0),
        ("1", 0, 0),
        ("1", uid, 1 << 40),
    ] {
        let s = cs(sec);
        let st = herald_imap_fetch_section_async(
            c.c,
            m.as_ptr(),
            uid,
            s.as_ptr(),
            off,
            0,
            None,
            null_mut(),
            &mut op,
        );
        assert_eq!(st, HERALD_STATUS_INVALID_ARGUMENT, "{sec:?} {uid} {off}");
    }
    let st = herald_imap_fetch_section_async(c.c, m.as_ptr(), uid, null(), 0, 0, None, null_mut(), &mut op);
    assert_eq!(st, HERALD_STATUS_INVALID_ARGUMENT);
}
