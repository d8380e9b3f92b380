//! Parts on demand: a message's MIME structure (HERALD_FETCH_BODYSTRUCTURE,
//! walked with `herald_result_part_*`) and one section fetched by its
//! number (`herald_imap_fetch_section_async`), so a program shows a 20 MB
//! attachment's name and size without downloading it, then downloads it
//! (in ranges, with progress) when asked.

use std::ffi::{c_char, c_void};

use super::boundary::ffi_boundary;
use super::client::{herald_client, submit};
use super::completion::{herald_callback, herald_op};
use super::result::{herald_result, item};
use super::{arg_out, arg_str, herald_status, opt_out};
use crate::imap::section::{check_range, check_section};
use crate::imap::{args, ImapJob, ImapOp};
use crate::parsed::BodyPart;
use crate::status::{Error, Result};

/// `parts` bit of `herald_imap_fetch_async`: each item also holds the
/// parsed message (`herald_result_parsed`), parsed on herald's worker
/// thread before the completion comes. It parses the item's bytes: the
/// whole message with HERALD_FETCH_BODY; without it, herald fetches the
/// header block (as HERALD_FETCH_HEADERS) and parses that (headers,
/// addresses, date; no bodies or attachments).
pub const HERALD_FETCH_PARSED: u32 = 32;
/// `parts` bit: each item also holds the message's MIME structure
/// (IMAP BODYSTRUCTURE), walked with `herald_result_part_count` and
/// `herald_result_part`; nothing of the bodies is downloaded for it.
pub const HERALD_FETCH_BODYSTRUCTURE: u32 = 64;

/// One node of a message's MIME structure, filled in by
/// `herald_result_part`. Nodes come in pre-order (a node, then its
/// children, each subtree whole): node 0 is the root; `parent` and
/// `children` give the tree. Every string is owned by the result, valid as
/// long as it is, never NULL.
#[repr(C)]
pub struct herald_part {
    /// The IMAP section to fetch this part with (`herald_imap_fetch_section_async`):
    /// "1", "1.2", "3.1". A multipart's own bytes are "TEXT" for the root
    /// (and "N.TEXT" for one inside a message/rfc822 part N); the root of a
    /// single-part message is "1".
    pub section: *const c_char,
    /// Lower case: "text", "image", "multipart", "message".
    pub media_type: *const c_char,
    /// Lower case: "plain", "png", "mixed", "rfc822".
    pub subtype: *const c_char,
    /// Lower case: "attachment", "inline", or "" when the part has none.
    pub disposition: *const c_char,
    /// The file name, decoded (RFC 2231 continuations and charsets, RFC
    /// 2047 words) to UTF-8, from the disposition's filename or the type's
    /// name parameter; "" when none.
    pub filename: *const c_char,
    /// Content-Transfer-Encoding, lower case ("base64", "7bit"); "" for a multipart.
    pub encoding: *const c_char,
    /// Content-ID without angle brackets; "" when none.
    pub content_id: *const c_char,
    /// The part's size in octets as stored (before decoding); 0 for a multipart.
    pub size: u64,
    /// 0 for the root, 1 for its children ...
    pub depth: u32,
    /// The index of the parent node; SIZE_MAX for the root.
    pub parent: usize,
    /// How many children the node has (parts of a multipart; a message/rfc822 part has one).
    pub children: usize,
    /// How many Content-Type parameters `herald_result_part_param` gives.
    pub param_count: usize,
}

fn parts_of<'a>(r: *const herald_result, i: usize) -> Result<&'a [BodyPart]> {
    Ok(&item(r, i)?.parts)
}

fn node<'a>(r: *const herald_result, i: usize, k: usize) -> Result<&'a BodyPart> {
    let parts = parts_of(r, i)?;
    parts.get(k).ok_or_else(|| {
        Error::invalid(format!(
            "node {k} is out of range: item {i} has {} MIME parts (fetched with HERALD_FETCH_BODYSTRUCTURE?)",
            parts.len()
        ))
    })
}

/// METHOD. How many MIME structure nodes item `i` holds (HERALD_FETCH_BODYSTRUCTURE);
/// 0 when it has none, `i` is out of range or `r` NULL (the last two set
/// `herald_last_error()`).
#[no_mangle]
pub extern "C" fn herald_result_part_count(r: *const herald_result, i: usize) -> usize {
    ffi_boundary! { Ok(parts_of(r, i)?.len()) }
}

/// METHOD. Fills `*out` with node `k` (from 0, pre-order) of item `i`'s MIME
/// structure. INVALID_ARGUMENT for NULL arguments or an index out of range
/// (`*out` then left alone).
#[no_mangle]
pub extern "C" fn herald_result_part(
    r: *const herald_result,
    i: usize,
    k: usize,
    out: *mut herald_part,
) -> herald_status {
    ffi_boundary! {
        let n = node(r, i, k)?;
        let out = arg_out(out, "out")?;
        *out = herald_part {
            section: n.section.as_ptr(),
            media_type: n.media_type.as_ptr(),
            subtype: n.subtype.as_ptr(),
            disposition: n.disposition.as_ptr(),
            filename: n.filename.as_ptr(),
            encoding: n.encoding.as_ptr(),
            content_id: n.content_id.as_ptr(),
            size: n.size,
            depth: n.depth,
            parent: n.parent.unwrap_or(usize::MAX),
            children: n.children,
            param_count: n.params.len(),
        };
        Ok(())
    }
}

/// METHOD. Content-Type parameter `j` of node `k` of item `i`: returns its
/// value (decoded: RFC 2231, RFC 2047) and puts its lower-case name
/// ("charset", "name", "boundary") in `*name_out` (may be NULL). NULL when
/// an index is out of range or `r` is NULL (then `*name_out` is left alone).
#[no_mangle]
pub extern "C" fn herald_result_part_param(
    r: *const herald_result,
    i: usize,
    k: usize,
    j: usize,
    name_out: *mut *const c_char,
) -> *const c_char {
    ffi_boundary! {
        let n = node(r, i, k)?;
        let (name, value) = n.params.get(j).ok_or_else(|| {
            Error::invalid(format!("parameter {j} is out of range: node {k} has {}", n.params.len()))
        })?;
        if let Some(o) = opt_out(name_out) {
            *o = name.as_ptr();
        }
        Ok(value.as_ptr())
    }
}

/// METHOD (IMAP client). Fetches one body section of message `uid` in
/// `mailbox`, without marking it \Seen. `section`: a part number as
/// `herald_part.section` gives it ("2", "1.2"), "TEXT", "HEADER", or a part
/// number with ".TEXT", ".HEADER" or ".MIME"; anything else is
/// INVALID_ARGUMENT. Result: one item (uid = `uid`, HERALD_FIELD_NAME = the
/// section, HERALD_FIELD_SIZE = the bytes' length) whose bytes are:
/// - for a part number: the part decoded from its Content-Transfer-Encoding
///   (base64, quoted-printable; other encodings as stored);
/// - for TEXT, HEADER and MIME sections: the bytes as stored.
///
/// `offset` and `max_len` (0 = to the end) select a byte range of those
/// same bytes: for a part number, of the DECODED bytes. With the server's
/// BINARY extension (RFC 3516) the server decodes and sends only the range
/// (`BINARY.PEEK[2]<0.65536>`); without it herald fetches the whole part,
/// decodes it and cuts the range out, so the result is the same. A range
/// past the end gives fewer bytes (or none). Both are at most 4294967295.
/// `HERALD_STATUS_NOT_FOUND` when the mailbox has no such UID or the
/// message no such section. Progress reports the bytes received so far.
///
/// Completion, as for every `*_async` call: on OK `*op_out` (required: NULL
/// is INVALID_ARGUMENT) is set and exactly one completion comes, to `cb` on
/// the client's delivery thread, or to the completion queue when `cb` is
/// NULL; on an error status none comes and `herald_last_error()` says why.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn herald_imap_fetch_section_async(
    c: *mut herald_client,
    mailbox: *const c_char,
    uid: u64,
    section: *const c_char,
    offset: u64,
    max_len: u64,
    cb: herald_callback,
    user_token: *mut c_void,
    op_out: *mut herald_op,
) -> herald_status {
    submit(
        c,
        |_| {
            let mb = args::mailbox("mailbox", arg_str(mailbox, "mailbox")?)?;
            let section = check_section(arg_str(section, "section")?)?;
            if uid == 0 || uid > u64::from(u32::MAX) {
                return Err(Error::invalid(format!(
                    "uid {uid} is not an IMAP UID (1 to 4294967295)"
                )));
            }
            check_range(offset, max_len)?;
            Ok(ImapJob {
                mailbox: mb,
                uidvalidity: None,
                op: ImapOp::FetchSection {
                    uid,
                    section,
                    offset,
                    max_len,
                },
            })
        },
        None,
        cb,
        user_token,
        op_out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::fetch_ext::{FETCH_BODYSTRUCTURE, FETCH_PARSED};

    #[test]
    fn fetch_bits_agree_with_the_engine() {
        assert_eq!(
            [HERALD_FETCH_PARSED, HERALD_FETCH_BODYSTRUCTURE],
            [FETCH_PARSED, FETCH_BODYSTRUCTURE]
        );
    }

    #[test]
    fn part_accessors_refuse_null_and_out_of_range() {
        let r = crate::result::ResultData::new(vec![crate::result::ResultItem::new(1)]);
        let rp = &r as *const _ as *const herald_result;
        assert_eq!(herald_result_part_count(rp, 0), 0);
        assert_eq!(herald_result_part_count(std::ptr::null(), 0), 0);
        let mut p = std::mem::MaybeUninit::<herald_part>::uninit();
        assert_eq!(herald_result_part(rp, 0, 0, p.as_mut_ptr()), 1);
        assert_eq!(herald_result_part(rp, 1, 0, p.as_mut_ptr()), 1);
        assert!(herald_result_part_param(rp, 0, 0, 0, std::ptr::null_mut()).is_null());
    }
}
