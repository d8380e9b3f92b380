//! Parsed messages (`herald_parse`, `HERALD_FETCH_PARSED`) and the MIME
//! structure of a fetched message (`HERALD_FETCH_BODYSTRUCTURE`).
//!
//! A message is parsed once, with mail-parser (MIME, RFC 2047 words, RFC
//! 2231 parameters, charsets), into owned, C-ready values: every accessor
//! then returns a pointer into the `Parsed` and allocates nothing. mail-parser
//! never panics on broken or nested multiparts and bounds its own nesting;
//! herald's fuzz target (fuzz/fuzz_targets/parse.rs) holds it to that.
//!
//! Foundation, and a leaf: imports nothing of the crate (`data` holds its values).

use std::ffi::CString;

use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

/// Text for C: interior NULs (which C can't carry) become U+FFFD.
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

/// Address roles (`HERALD_ADDR_*`; `ffi::parsed` checks the two agree).
#[allow(dead_code)] // named by the C layer's constants and tests
pub mod role {
    pub const FROM: u32 = 1;
    pub const TO: u32 = 2;
    pub const CC: u32 = 3;
    pub const BCC: u32 = 4;
    pub const REPLY_TO: u32 = 5;
    pub const SENDER: u32 = 6;
}

/// One address: the mailbox, and the display name (decoded) if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub address: CString,
    pub name: Option<CString>,
}

/// An attachment or inline part, decoded from its transfer encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Decoded (RFC 2047 / RFC 2231); empty when the part names none.
    pub filename: CString,
    /// `type/subtype`, lower case.
    pub content_type: CString,
    /// Without the angle brackets; empty when none.
    pub content_id: CString,
    /// Content-Disposition: inline, or no disposition and a Content-ID
    /// (an image an HTML body refers to).
    pub inline: bool,
    pub data: Vec<u8>,
}

/// A message, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub subject: CString,
    pub text: Option<CString>,
    pub html: Option<CString>,
    /// Top-level headers in message order: lower-case name, decoded value.
    pub headers: Vec<(String, CString)>,
    /// Per role 1..=6 (index role - 1).
    pub addresses: [Vec<Addr>; 6],
    /// Unix seconds; 0 when absent or invalid.
    pub date: i64,
    pub attachments: Vec<Attachment>,
}

impl Parsed {
    /// Parses a message. `None` when `data` has no header at all (it is
    /// not an RFC 5322 message); anything else parses, however broken.
    ///
    /// mail-parser's release code handles every input, but some of its
    /// `debug_assert!`s fire on odd nestings (debug builds only; fuzzing
    /// found one): such a panic is caught here, and the message is then
    /// parsed as a header block only, so it still has its headers.
    pub fn parse(data: &[u8]) -> Option<Parsed> {
        guarded(|| Some(Self::of(&MessageParser::default().parse(data)?)))
            .or_else(|| Self::parse_headers(data))
    }

    /// Parses a header block only (a fetch without the body): headers,
    /// subject, addresses, date; no bodies, no attachments.
    pub fn parse_headers(data: &[u8]) -> Option<Parsed> {
        guarded(|| Some(Self::of(&MessageParser::default().parse_headers(data)?)))
    }

    fn of(m: &Message) -> Parsed {
        let join = |parts: Vec<String>| (!parts.is_empty()).then(|| c_string(&parts.join("\n")));
        Parsed {
            subject: c_string(m.subject().unwrap_or("")),
            text: join(m.text_body.iter().filter_map(|&i| text_of(m, i)).collect()),
            html: join(m.html_body.iter().filter_map(|&i| html_of(m, i)).collect()),
            headers: headers_of(m),
            addresses: [
                HeaderName::From,
                HeaderName::To,
                HeaderName::Cc,
                HeaderName::Bcc,
                HeaderName::ReplyTo,
                HeaderName::Sender,
            ]
            .map(|h| addresses_of(m, h)),
            date: m.date().filter(|d| d.is_valid()).map_or(0, |d| d.to_timestamp()),
            attachments: m.attachments().map(attachment_of).collect(),
        }
    }

    /// The addresses of a role (`role::*`); `None` for an unknown role.
    pub fn addresses(&self, role: u32) -> Option<&[Addr]> {
        let i = usize::try_from(role).ok()?.checked_sub(1)?;
        self.addresses.get(i).map(Vec::as_slice)
    }

    /// The i-th header called `name` (any case), decoded.
    pub fn header(&self, name: &str, i: usize) -> Option<&CString> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .nth(i)
            .map(|(_, v)| v)
    }
}

/// `f`'s value, or `None` if it panicked.
fn guarded(f: impl FnOnce() -> Option<Parsed>) -> Option<Parsed> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .ok()
        .flatten()
}

/// A text body part as text; an HTML one (a message with no plain text)
/// rendered as text.
fn text_of(m: &Message, i: u32) -> Option<String> {
    match &m.parts.get(i as usize)?.body {
        PartType::Text(t) => Some(t.to_string()),
        PartType::Html(_) => m
            .text_body
            .iter()
            .position(|&x| x == i)
            .and_then(|pos| m.body_text(pos))
            .map(|t| t.into_owned()),
        _ => None,
    }
}

/// An HTML body part; plain text is not turned into HTML.
fn html_of(m: &Message, i: u32) -> Option<String> {
    match &m.parts.get(i as usize)?.body {
        PartType::Html(h) => Some(h.to_string()),
        _ => None,
    }
}

/// The top-level headers, each value unfolded and its RFC 2047 words decoded.
fn headers_of(m: &Message) -> Vec<(String, CString)> {
    let raw = m.raw_message();
    m.headers()
        .iter()
        .map(|h| {
            let (a, b) = (h.offset_start as usize, h.offset_end as usize);
            let value = raw.get(a..b.max(a)).map_or(String::new(), unstructured);
            (h.name().to_ascii_lowercase(), c_string(&value))
        })
        .collect()
}

/// A raw header value as unstructured text: unfolded, encoded words decoded.
pub fn unstructured(raw: &[u8]) -> String {
    let mut v = raw.to_vec();
    if !v.ends_with(b"\n") {
        v.push(b'\n');
    }
    match mail_parser::parsers::MessageStream::new(&v).parse_unstructured() {
        HeaderValue::Text(t) => t.trim().to_string(),
        _ => String::new(),
    }
}

fn addresses_of(m: &Message, h: HeaderName) -> Vec<Addr> {
    m.header_values(h)
        .filter_map(HeaderValue::as_address)
        .flat_map(Address::iter)
        .filter_map(|a| {
            Some(Addr {
                address: c_string(a.address.as_deref()?),
                name: a.name.as_deref().filter(|n| !n.is_empty()).map(c_string),
            })
        })
        .collect()
}

fn attachment_of(p: &MessagePart) -> Attachment {
    let content_type = match p.content_type() {
        Some(ct) => match &ct.c_subtype {
            Some(sub) => format!("{}/{}", ct.c_type, sub),
            None => ct.c_type.to_string(),
        },
        None => match p.body {
            PartType::Text(_) => "text/plain".into(),
            PartType::Html(_) => "text/html".into(),
            PartType::Message(_) => "message/rfc822".into(),
            _ => "application/octet-stream".into(),
        },
    };
    let content_id = p.content_id().unwrap_or("").trim();
    let content_id = content_id.trim_start_matches('<').trim_end_matches('>');
    let inline = match p.content_disposition() {
        Some(d) => d.is_inline(),
        None => !content_id.is_empty(),
    };
    Attachment {
        filename: c_string(p.attachment_name().unwrap_or("")),
        content_type: c_string(&content_type.to_ascii_lowercase()),
        content_id: c_string(content_id),
        inline,
        data: p.contents().to_vec(),
    }
}

/// An RFC 5322 date (`Mon, 7 Feb 1994 21:52:25 -0800`) as Unix seconds.
pub fn date_unix(s: &str) -> Option<i64> {
    let mut v = s.as_bytes().to_vec();
    v.push(b'\n');
    match mail_parser::parsers::MessageStream::new(&v).parse_date() {
        HeaderValue::DateTime(d) if d.is_valid() => Some(d.to_timestamp()),
        _ => None,
    }
}

/// Bytes decoded from a Content-Transfer-Encoding: base64 and
/// quoted-printable are decoded, anything else (7bit, 8bit, binary, an
/// unknown one) is returned as it is. Undecodable input also stays as it is.
pub fn decode_transfer(encoding: &str, data: Vec<u8>) -> Vec<u8> {
    let decoded = match encoding.trim().to_ascii_lowercase().as_str() {
        "base64" => mail_parser::decoders::base64::base64_decode(&data),
        "quoted-printable" => mail_parser::decoders::quoted_printable::quoted_printable_decode(&data),
        _ => None,
    };
    decoded.unwrap_or(data)
}

/// MIME parameters as a server lists them (IMAP BODYSTRUCTURE: names and
/// raw values), decoded: RFC 2231 continuations (`name*0*`, `name*1*`)
/// joined, `name*=charset'lang'%XX` and RFC 2047 words decoded to UTF-8.
/// Names come back lower case, in order.
pub fn decode_params(params: &[(String, String)]) -> Vec<(String, String)> {
    // mail-parser decodes parameters of a Content-Type field: hand it one.
    let mut line = b"Content-Type: x/y".to_vec();
    for (name, value) in params {
        let clean = |s: &str| s.replace(['\r', '\n', '\0'], " ");
        let name: String = clean(name)
            .chars()
            .filter(|c| !matches!(c, ';' | '=' | '"' | ' '))
            .collect();
        if name.is_empty() {
            continue;
        }
        let value = clean(value);
        line.extend_from_slice(b";\r\n ");
        line.extend_from_slice(name.as_bytes());
        line.push(b'=');
        if name.ends_with('*') && !value.contains([' ', ';', '"']) {
            line.extend_from_slice(value.as_bytes());
        } else {
            line.push(b'"');
            line.extend_from_slice(value.replace('\\', "\\\\").replace('"', "\\\"").as_bytes());
            line.push(b'"');
        }
    }
    line.extend_from_slice(b"\r\n\r\n");
    let Some(m) = MessageParser::default().parse_headers(&line) else {
        return Vec::new();
    };
    let attrs = m
        .content_type()
        .and_then(|ct| ct.attributes.clone())
        .unwrap_or_default();
    attrs
        .into_iter()
        .map(|a| (a.name.to_ascii_lowercase(), unstructured(a.value.as_bytes())))
        .collect()
}

/// One node of a message's MIME structure (IMAP BODYSTRUCTURE), in a
/// pre-order list: a node's children follow it, each `depth` one deeper.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyPart {
    /// IMAP section number: "1", "1.2"; the root of a multipart is "".
    pub section: CString,
    /// Lower case: "text", "multipart".
    pub media_type: CString,
    pub subtype: CString,
    /// Content-Type parameters (names lower case, values RFC 2231/2047 decoded).
    pub params: Vec<(CString, CString)>,
    /// "attachment", "inline" or "" (lower case).
    pub disposition: CString,
    /// Decoded (RFC 2231 / RFC 2047) from the disposition's filename or the type's name; "" when none.
    pub filename: CString,
    /// Lower case: "base64", "7bit"; "" for a multipart.
    pub encoding: CString,
    pub content_id: CString,
    /// Octets of the encoded body (0 for a multipart).
    pub size: u64,
    pub depth: u32,
    /// Index of the parent node; `None` for the root.
    pub parent: Option<usize>,
    pub children: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NESTED: &[u8] = b"From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.org>\r\n\
To: a@example.org, \"B\" <b@example.org>\r\n\
Cc: c@example.org\r\n\
Subject: =?UTF-8?B?R3LDvMOfZQ==?= und mehr\r\n\
Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
X-Thing: =?ISO-8859-1?Q?caf=E9?=\r\n\
\x20folded\r\n\
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
Gr=FC=DFe\r\n\
--alt\r\n\
Content-Type: multipart/related; boundary=\"rel\"\r\n\
\r\n\
--rel\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Hi <img src=\"cid:img1@x\"></p>\r\n\
--rel\r\n\
Content-Type: image/png\r\n\
Content-ID: <img1@x>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgo=\r\n\
--rel--\r\n\
--alt--\r\n\
--outer\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0=\r\n\
--outer--\r\n";

    #[test]
    fn a_nested_multipart_parses_into_bodies_attachments_and_headers() {
        let p = Parsed::parse(NESTED).unwrap();
        assert_eq!(p.subject.to_str().unwrap(), "Gr\u{fc}\u{df}e und mehr");
        assert_eq!(
            p.text.as_ref().unwrap().to_str().unwrap().trim(),
            "Gr\u{fc}\u{df}e"
        );
        assert!(p.html.as_ref().unwrap().to_str().unwrap().contains("<p>Hi"));
        assert_eq!(p.date, 760_686_745);
        let from = p.addresses(role::FROM).unwrap();
        assert_eq!(from[0].address.to_str().unwrap(), "joerg@example.org");
        assert_eq!(from[0].name.as_ref().unwrap().to_str().unwrap(), "J\u{f6}rg");
        let to = p.addresses(role::TO).unwrap();
        assert_eq!(to.len(), 2);
        assert_eq!(to[1].name.as_ref().unwrap().to_str().unwrap(), "B");
        assert_eq!(p.addresses(role::CC).unwrap().len(), 1);
        assert!(p.addresses(role::BCC).unwrap().is_empty());
        assert!(p.addresses(0).is_none() && p.addresses(7).is_none());
        assert_eq!(
            p.header("x-thing", 0).unwrap().to_str().unwrap(),
            "caf\u{e9} folded"
        );
        assert_eq!(p.header("X-THING", 1), None);
        assert_eq!(p.attachments.len(), 2);
        let img = &p.attachments[0];
        assert_eq!(img.content_type.to_str().unwrap(), "image/png");
        assert_eq!(img.content_id.to_str().unwrap(), "img1@x");
        assert!(img.inline);
        assert_eq!(&img.data[..4], b"\x89PNG");
        let pdf = &p.attachments[1];
        assert_eq!(pdf.filename.to_str().unwrap(), "\u{20ac} rates.pdf");
        assert!(!pdf.inline);
        assert_eq!(pdf.data, b"%PDF-");
    }

    #[test]
    fn an_html_only_message_gets_its_text_rendered() {
        let m = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>there</b></p>\r\n";
        let p = Parsed::parse(m).unwrap();
        assert!(p.html.is_some());
        assert!(p.text.unwrap().to_str().unwrap().contains("Hello there"));
        let p = Parsed::parse_headers(b"Subject: y\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n")
            .unwrap();
        assert_eq!(
            (p.subject.to_str().unwrap(), p.text.is_none(), p.attachments.len()),
            ("y", true, 0)
        );
        let p = Parsed::parse(b"Subject: y\r\n\r\nplain\r\n").unwrap();
        assert_eq!(p.html, None);
        assert_eq!(p.text.unwrap().to_str().unwrap().trim(), "plain");
    }

    #[test]
    fn broken_messages_parse_or_are_refused_never_panic() {
        assert!(Parsed::parse(b"").is_none());
        for m in [
            &b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x"[..],
            b"Content-Type: multipart/mixed\r\n\r\nno boundary at all",
            b"Subject: =?utf-8?B?!!!?=\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@@",
            b"Date: yesterday\r\n\r\n",
        ] {
            let p = Parsed::parse(m).unwrap();
            assert_eq!(p.date, 0);
        }
        let mut deep = Vec::new();
        for i in 0..2000 {
            deep.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
            );
        }
        let _ = Parsed::parse(&deep);
        // Fires a debug assertion inside mail-parser (found by fuzzing): caught,
        // and the headers are still there.
        let odd = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/parse/mail_parser_debug_assert"
        ))
        .unwrap();
        assert_eq!(Parsed::parse(&odd).unwrap().subject.to_str().unwrap(), "fwd");
    }

    #[test]
    fn dates_and_transfer_encodings() {
        assert_eq!(date_unix("Mon, 7 Feb 1994 21:52:25 -0800"), Some(760_686_745));
        assert_eq!(date_unix("not a date"), None);
        assert_eq!(decode_transfer("BASE64", b"aGk=\r\nIQ==".to_vec()), b"hi!");
        assert_eq!(
            decode_transfer("quoted-printable", b"a=3Db=\r\nc".to_vec()),
            b"a=bc"
        );
        assert_eq!(decode_transfer("7bit", b"as is".to_vec()), b"as is");
    }

    #[test]
    fn parameters_are_joined_and_decoded() {
        let p = |v: &[(&str, &str)]| {
            decode_params(
                &v.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        let got = p(&[
            ("CHARSET", "us-ascii"),
            ("filename*0*", "UTF-8''%E2%82%AC%20"),
            ("filename*1*", "rates.pdf"),
        ]);
        assert_eq!(got[0], ("charset".into(), "us-ascii".into()));
        assert_eq!(got[1], ("filename".into(), "\u{20ac} rates.pdf".into()));
        assert_eq!(p(&[("name", "=?UTF-8?Q?J=C3=B6rg.txt?=")])[0].1, "J\u{f6}rg.txt");
        assert_eq!(
            p(&[("name", "a \"quoted\" \\ one; x=y")])[0].1,
            "a \"quoted\" \\ one; x=y"
        );
        assert!(p(&[("\r\n", "x")]).is_empty());
    }
}
