//! Entry points for the fuzz targets (`fuzz/`) and for the replay of their
//! regression corpus in `cargo test`: each feeds bytes a server could send
//! to one of herald's readers or sessions. Whatever the bytes, it must
//! return without a panic, within bounded memory. Not part of the API.

use std::io::{Read, Write};

use crate::log::Tracer;
use crate::net::mem::MemStream;
use crate::net::LineConn;
use crate::options::{id, Options, Protocol};

// Server bytes are replayed by [`MemStream::replay`]: the first byte picks
// the read size (1..=256), so framing meets every split.

/// The line limit the targets run with: small, so overlong lines are cheap.
const MAX_LINE: usize = 4096;

/// SMTP replies, one after another, as `read_reply` frames them, and the
/// EHLO keywords of each.
pub fn smtp_reply(data: &[u8]) {
    use crate::smtp::reply::read_reply;
    use crate::smtp::session::Extensions;
    let mut c = LineConn::new(MemStream::replay(data));
    c.set_max_line(MAX_LINE);
    while let Ok(r) = read_reply(&mut c) {
        assert!((200..600).contains(&r.code), "a reply code is 2xx..5xx");
        assert!(r.line_count() >= 1 && r.line_count() <= crate::smtp::reply::MAX_REPLY_LINES);
        let _ = r.to_string();
        let _ = r.error("fuzz");
        let _ = Extensions::parse(&r);
    }
}

/// An SMTP session as far as the server's bytes take it: greeting, EHLO
/// (or HELO), then AUTH with a password and with a token.
pub fn smtp_session(data: &[u8]) {
    use crate::smtp::session::Session;
    let mut s = Session::new(MemStream::replay(data), Tracer::default());
    s.conn.set_max_line(MAX_LINE);
    if s.greeting().is_err() || s.hello("client.fuzz.test").is_err() {
        return;
    }
    if let Some(max) = s.ext.size {
        let _ = max.checked_add(1);
    }
    let _ = s.authenticate("user", Some("password"), None);
    let _ = s.authenticate("user", None, Some("token"));
}

/// POP3 responses: status lines, listings and bodies in an order the first
/// byte picks; and the dot-decoding of the input, which must not depend on
/// how the input is split.
pub fn pop3_response(data: &[u8]) {
    use crate::pop3::codec::DotDecoder;
    use crate::pop3::response::{read_body, read_listing, read_response, Response};
    let Some((&order, rest)) = data.split_first() else {
        return;
    };
    for line in rest.split(|&b| b == b'\n') {
        if let Ok(r) = Response::parse(line) {
            let _ = (
                r.code(),
                r.is_transient(),
                r.error("x"),
                r.auth_error(),
                r.to_string(),
            );
        }
    }
    let mut c = LineConn::new(MemStream::replay(rest));
    c.set_max_line(MAX_LINE);
    for i in 0..64 {
        let ok = match (order >> (i % 4 * 2)) & 3 {
            0 | 1 => read_response(&mut c).is_ok(),
            2 => read_listing(&mut c, 1000, 64 * 1024).is_ok(),
            _ => read_body(&mut c, 64 * 1024, &mut Vec::new(), &mut |_| {}).is_ok(),
        };
        if !ok {
            break;
        }
    }
    // Differential: one feed against the same bytes split at `order`.
    let limit = 1 << 20;
    let (mut whole, mut split) = (Vec::new(), Vec::new());
    let mut a = DotDecoder::new(limit);
    let used = a.feed(rest, &mut whole);
    let mut b = DotDecoder::new(limit);
    let cut = (order as usize).min(rest.len());
    let used_b = b.feed(&rest[..cut], &mut split).and_then(|n| {
        if b.is_done() {
            Ok(n)
        } else {
            b.feed(&rest[cut..], &mut split).map(|m| n + m)
        }
    });
    if let (Ok(x), Ok(y)) = (&used, &used_b) {
        assert_eq!(x, y, "the terminator is found wherever the input is split");
        assert_eq!(whole, split, "decoding does not depend on the split");
        assert_eq!(a.is_done(), b.is_done());
    }
}

/// A POP3 session as far as the server's bytes take it: greeting (APOP
/// timestamp), CAPA, login by whichever mechanism the capabilities pick,
/// the maildrop map (STAT, UIDL, LIST), and lookups in it.
pub fn pop3_session(data: &[u8]) {
    use crate::pop3::session::Session;
    let mut o = Options::new(Protocol::Pop3);
    let _ = o.set_int(id::MAX_LINE_BYTES, MAX_LINE as i64);
    let _ = o.set_int(id::MAX_MESSAGE_BYTES, 256 * 1024);
    let mut s = Session::new(MemStream::replay(data), Tracer::default());
    s.set_limits(&o);
    if s.greeting().is_err() || s.capa().is_err() {
        return;
    }
    if s.authenticate("user", Some("password"), None).is_err() {
        return;
    }
    if s.load_maildrop().is_ok() {
        for e in s.entries.clone() {
            assert_eq!(s.lookup(&e.uidl).map(|f| f.uidl.as_str()), Some(e.uidl.as_str()));
        }
    }
}

/// A spool segment file as it might be found after a crash, a disk fault
/// or a foreign program: decoded, every record it yields must re-encode to
/// exactly the bytes it came from (nothing invented), the stop must lie
/// inside the input, and replaying it must not panic.
pub fn spool_segment(data: &[u8]) {
    use crate::spool::record::{decode_segment, encode_add, encode_mark, Record, Stop};
    let (recs, stop) = decode_segment(data);
    let mut end = crate::spool::record::MAGIC.len().min(data.len());
    for (at, len, r) in &recs {
        assert_eq!(*at, end, "records are contiguous");
        let mut again = Vec::new();
        match r {
            Record::Add(m) => encode_add(&mut again, m),
            Record::Sending(k) => encode_mark(&mut again, *k, true),
            Record::Done(k) => encode_mark(&mut again, *k, false),
        }
        assert_eq!(
            &data[*at..*at + *len],
            &again[..],
            "a record re-encodes to its bytes"
        );
        end = at + len;
    }
    match stop {
        None => assert_eq!(end, data.len()),
        Some(Stop::Torn { at }) | Some(Stop::Corrupt { at, .. }) => {
            assert!(at <= data.len() && at >= end.min(at))
        }
    }
    crate::spool::fuzz_replay(data);
}

/// IMAP responses through herald's IMAP reader and parser, and what the
/// client makes of each kind (FETCH data, LIST items, ESEARCH sets, response
/// codes), in memory.
pub fn imap_response(data: &[u8]) {
    crate::imap::fuzz_responses(data);
}

/// A message through `herald_parse` and every accessor of the C API, as a
/// C program would call them (attachments, addresses of every role,
/// headers by name); then the MIME helpers of section fetches. mail-parser
/// must parse anything, broken or deeply nested, without a panic.
pub fn parse(data: &[u8]) {
    use crate::ffi::parsed::*;
    use std::ffi::CStr;
    let mut p = std::ptr::null_mut();
    if herald_parse(data.as_ptr(), data.len(), &mut p) == 0 {
        let q = p as *const herald_parsed;
        // SAFETY: the accessors return NUL-terminated strings owned by `p`.
        let read = |s: *const std::ffi::c_char| {
            (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_bytes().len())
        };
        assert!(
            read(herald_parsed_subject(q)).is_some(),
            "the subject is never NULL"
        );
        let _ = (
            read(herald_parsed_text(q)),
            read(herald_parsed_html(q)),
            herald_parsed_date(q),
        );
        for name in [c"subject", c"from", c"content-type", c"x-unknown"] {
            let _ = read(herald_parsed_header(q, name.as_ptr(), 0));
        }
        for role in 0..=7 {
            for i in 0..herald_parsed_address_count(q, role) {
                let mut name = std::ptr::null();
                assert!(read(herald_parsed_address(q, role, i, &mut name)).is_some());
                assert!(read(name).is_some(), "a name is \"\" when absent");
            }
        }
        for i in 0..herald_parsed_attachment_count(q) {
            let mut a = std::mem::MaybeUninit::<herald_attachment>::uninit();
            assert_eq!(herald_parsed_attachment(q, i, a.as_mut_ptr()), 0);
            // SAFETY: filled in on OK.
            let a = unsafe { a.assume_init() };
            assert!(
                read(a.filename).is_some() && read(a.content_type).is_some() && read(a.content_id).is_some()
            );
            // SAFETY: `len` bytes owned by `p`.
            let bytes = unsafe { std::slice::from_raw_parts(a.data, a.len) };
            let _ = bytes.iter().fold(0u8, |x, b| x ^ b);
        }
        herald_parsed_free(p);
    }
    let _ = crate::parsed::Parsed::parse_headers(data);
    let _ = crate::parsed::decode_transfer("base64", data.to_vec());
    let _ = crate::parsed::decode_transfer("quoted-printable", data.to_vec());
}

/// IMAP BODYSTRUCTURE (and the other FETCH items behind
/// HERALD_FETCH_ENVELOPE's extras) through herald's reader, parser and
/// structure walker.
pub fn imap_bodystructure(data: &[u8]) {
    crate::imap::fetch_ext::fuzz_fetch_items(data);
}

/// IMAP responses through the whole IMAP client, over loopback: a server that
/// sends `data` (greeting, login, SELECT and FETCH responses, with
/// literals), then closes; the client fetches a message. Reaches every
/// reader the IMAP engine uses, in the order a session meets them.
pub fn imap_client(data: &[u8]) {
    use crate::client::Client;
    use crate::engine::{Notify, Submit};
    use crate::imap::{ImapJob, ImapOp};
    use std::time::Duration;

    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
        return;
    };
    let Ok(port) = listener.local_addr().map(|a| a.port()) else {
        return;
    };
    let bytes = data.to_vec();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    let mut o = Options::new(Protocol::Imap);
    let set = |o: &mut Options| -> crate::status::Result<()> {
        o.set_str(id::HOST, "127.0.0.1")?;
        o.set_int(id::PORT, port as i64)?;
        o.set_int(id::SECURITY, 0)?;
        o.set_str(id::USERNAME, "user")?;
        o.set_str(id::PASSWORD, "password")?;
        o.set_int(id::IO_TIMEOUT_MS, 500)?;
        o.set_int(id::OP_TIMEOUT_MS, 2000)?;
        o.set_int(id::MAX_LINE_BYTES, MAX_LINE as i64)?;
        o.set_int(id::MAX_MESSAGE_BYTES, 256 * 1024)
    };
    if set(&mut o).is_ok() {
        if let Ok(c) = Client::new(o) {
            let work = ImapJob {
                mailbox: "INBOX".into(),
                op: ImapOp::Fetch {
                    uids: "1:*".into(),
                    parts: 0x1f,
                },
                uidvalidity: None,
            };
            let submitted = c.submit(
                work,
                Submit {
                    notify: Notify::Queue,
                    on_change: None,
                    token: 0,
                },
            );
            if submitted.is_ok() {
                let c = c.next_completion(Some(Duration::from_secs(10)));
                assert!(c.is_some(), "the op completes within its deadline");
            }
        }
    }
    let _ = server.join();
}

#[cfg(test)]
mod tests {
    //! The fuzz targets' regression corpus (`fuzz/corpus/<target>/`),
    //! replayed on every `cargo test`.
    use std::path::Path;

    fn replay(target: &str, f: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut n = 0;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let data = std::fs::read(&p).unwrap();
            let r = std::panic::catch_unwind(|| f(&data));
            assert!(r.is_ok(), "{target}: {} made it panic", p.display());
            n += 1;
        }
        assert!(n > 0, "{target}: no corpus in {}", dir.display());
    }

    #[test]
    fn corpus_smtp_reply() {
        replay("smtp_reply", super::smtp_reply);
    }

    #[test]
    fn corpus_smtp_session() {
        replay("smtp_session", super::smtp_session);
    }

    #[test]
    fn corpus_pop3_response() {
        replay("pop3_response", super::pop3_response);
    }

    #[test]
    fn corpus_pop3_session() {
        replay("pop3_session", super::pop3_session);
    }

    #[test]
    fn corpus_imap_response() {
        replay("imap_response", super::imap_response);
    }

    #[test]
    fn corpus_parse() {
        replay("parse", super::parse);
    }

    #[test]
    fn corpus_imap_bodystructure() {
        replay("imap_bodystructure", super::imap_bodystructure);
    }

    #[test]
    fn corpus_spool_segment() {
        replay("spool_segment", super::spool_segment);
    }

    #[test]
    fn corpus_imap_client() {
        replay("imap_client", super::imap_client);
    }
}
