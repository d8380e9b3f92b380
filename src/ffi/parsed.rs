//! `herald_parsed`: a parsed message (`herald_parse`, or borrowed from a
//! fetch or retrieve result with `herald_result_parsed`), its accessors and
//! `herald_attachment`.
//!
//! Every string is UTF-8, owned by the `herald_parsed` and valid as long as
//! it is; the accessors allocate nothing.

use std::ffi::{c_char, CString};

use super::boundary::ffi_boundary;
use super::handle::{self, Castable, Owned};
use super::result::herald_result;
use super::{arg_bytes, arg_out, arg_str, herald_status, opt_out};
use crate::parsed::{Attachment, Parsed};
use crate::status::{Error, Result};

/// A parsed message (MIME, RFC 2047 words and RFC 2231 parameters decoded,
/// bodies converted to UTF-8). Made by `herald_parse` (the caller frees it
/// with `herald_parsed_free`) or borrowed from a result item with
/// `herald_result_parsed` (owned by the result: never freed by the caller).
/// Read-only: any thread may read one concurrently.
pub struct herald_parsed {
    _private: [u8; 0],
}

/// Owned when `herald_parse` made it; a result's is borrowed through a
/// plain cast in `herald_result_parsed`, never through `handle::free`.
impl Castable for herald_parsed {
    type Ownership = Owned;
    type Rust = Parsed;
    const NAME: &'static str = "parsed";
}

/// Address role: the From addresses.
pub const HERALD_ADDR_FROM: u32 = 1;
/// Address role: To.
pub const HERALD_ADDR_TO: u32 = 2;
/// Address role: Cc.
pub const HERALD_ADDR_CC: u32 = 3;
/// Address role: Bcc (present only in messages that kept it, such as drafts or sent copies).
pub const HERALD_ADDR_BCC: u32 = 4;
/// Address role: Reply-To.
pub const HERALD_ADDR_REPLY_TO: u32 = 5;
/// Address role: Sender.
pub const HERALD_ADDR_SENDER: u32 = 6;

/// An attachment or inline part of a parsed message, filled in by
/// `herald_parsed_attachment`. Every pointer is owned by the
/// `herald_parsed` and valid as long as it is; none is ever NULL.
#[repr(C)]
pub struct herald_attachment {
    /// The file name, decoded (RFC 2047 / RFC 2231) to UTF-8, from
    /// Content-Disposition's filename or Content-Type's name; "" when none.
    /// As the sender wrote it: check it before using it as a path.
    pub filename: *const c_char,
    /// "type/subtype", lower case ("image/png"); parameters left out.
    pub content_type: *const c_char,
    /// The Content-ID without angle brackets ("img1@example.org"); "" when none.
    pub content_id: *const c_char,
    /// 1 for an inline part (Content-Disposition: inline, or no disposition
    /// and a Content-ID: an image an HTML body shows), else 0.
    pub is_inline: i32,
    /// The bytes, decoded from the part's Content-Transfer-Encoding.
    /// A nested message (message/rfc822) is its raw bytes.
    pub data: *const u8,
    /// Length of `data`.
    pub len: usize,
}

/// CONSTRUCTOR. Parses `len` bytes of an RFC 5322 message into `*out`;
/// free it with `herald_parsed_free`. The bytes are copied into what the
/// parse keeps: free them whenever you like. Any message with a header
/// parses, however broken its MIME structure: a multipart without its
/// boundary, bad base64, unknown charsets (kept as well as can be); nesting
/// is bounded. INVALID_ARGUMENT when `data` is NULL with `len` > 0, `out`
/// is NULL, or the bytes are empty (no message at all).
#[no_mangle]
pub extern "C" fn herald_parse(data: *const u8, len: usize, out: *mut *mut herald_parsed) -> herald_status {
    ffi_boundary! {
        let data = arg_bytes(data, len, "data")?;
        let out = arg_out(out, "out")?;
        let p = Parsed::parse(data).ok_or_else(no_header)?;
        *out = handle::into_handle::<herald_parsed>(p);
        Ok(())
    }
}

pub(crate) fn no_header() -> Error {
    Error::invalid("the bytes hold no header: not an RFC 5322 message")
}

/// DESTRUCTOR. Frees a message made by `herald_parse`; NULL is a no-op.
/// Never pass one from `herald_result_parsed`: its result owns it.
#[no_mangle]
pub extern "C" fn herald_parsed_free(p: *mut herald_parsed) {
    ffi_boundary! { void; handle::free::<herald_parsed>(p) }
}

/// METHOD. The parsed message of result item `i` (a fetch with
/// HERALD_FETCH_PARSED, or `herald_pop3_retrieve_parsed_async`), owned by
/// the result: valid as long as it is, never freed by the caller. NULL
/// (the reason in `herald_last_error()`) when `r` is NULL, `i` is out of
/// range, the op was not asked to parse, or the item's bytes held no header.
#[no_mangle]
pub extern "C" fn herald_result_parsed(r: *const herald_result, i: usize) -> *const herald_parsed {
    ffi_boundary! {
        let item = super::result::item(r, i)?;
        let p = item.parsed.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "item {i} holds no parsed message (ask with HERALD_FETCH_PARSED; or its bytes are not a message)"
            ))
        })?;
        Ok(std::sync::Arc::as_ptr(p) as *const herald_parsed)
    }
}

/// METHOD. The Subject, RFC 2047 words decoded to UTF-8; "" when absent
/// (and for a NULL `p`, the reason in `herald_last_error()`). Never NULL.
#[no_mangle]
pub extern "C" fn herald_parsed_subject(p: *const herald_parsed) -> *const c_char {
    ffi_boundary! { fallback = c"".as_ptr(); Ok(handle::arg(p)?.subject.as_ptr()) }
}

/// METHOD. The text body as UTF-8 (converted from its charset): the
/// message's text/plain body parts, joined by "\n". A message whose only
/// body is HTML gets that HTML rendered as plain text (tags removed,
/// entities decoded), so a viewer always has text to show. NULL when the
/// message has no body text at all, or `p` is NULL.
#[no_mangle]
pub extern "C" fn herald_parsed_text(p: *const herald_parsed) -> *const c_char {
    ffi_boundary! { body(handle::arg(p)?.text.as_ref(), "text") }
}

/// METHOD. The HTML body as UTF-8: the message's text/html body parts,
/// joined by "\n". Never made up from plain text: NULL when the message has
/// no HTML body, or `p` is NULL.
#[no_mangle]
pub extern "C" fn herald_parsed_html(p: *const herald_parsed) -> *const c_char {
    ffi_boundary! { body(handle::arg(p)?.html.as_ref(), "HTML") }
}

fn body(b: Option<&CString>, what: &str) -> Result<*const c_char> {
    b.map(|s| s.as_ptr())
        .ok_or_else(|| Error::invalid(format!("the message has no {what} body")))
}

/// METHOD. The `i`-th (from 0) top-level header called `name` (any case),
/// unfolded, RFC 2047 words decoded, surrounding space trimmed; NULL when
/// there is no such header or an argument is NULL or not UTF-8.
#[no_mangle]
pub extern "C" fn herald_parsed_header(
    p: *const herald_parsed,
    name: *const c_char,
    i: usize,
) -> *const c_char {
    ffi_boundary! {
        let p = handle::arg(p)?;
        let name = arg_str(name, "name")?;
        p.header(name, i)
            .map(|v| v.as_ptr())
            .ok_or_else(|| Error::invalid(format!("the message has no header {name:?} number {i}")))
    }
}

fn role_arg(p: &Parsed, role: u32) -> Result<&[crate::parsed::Addr]> {
    p.addresses(role)
        .ok_or_else(|| Error::invalid(format!("role {role} is not a HERALD_ADDR_* role")))
}

/// METHOD. How many addresses the message has in `role` (HERALD_ADDR_FROM,
/// _TO, _CC, _BCC, _REPLY_TO, _SENDER), groups flattened; 0 for none, an
/// unknown role or a NULL `p` (the last two set `herald_last_error()`).
#[no_mangle]
pub extern "C" fn herald_parsed_address_count(p: *const herald_parsed, role: u32) -> usize {
    ffi_boundary! { Ok(role_arg(handle::arg(p)?, role)?.len()) }
}

/// METHOD. The `i`-th address of `role` ("user@example.org"); its display
/// name, RFC 2047 decoded, goes to `*name_out` ("" when it has none;
/// `name_out` may be NULL). NULL when `i` is out of range, the role unknown
/// or `p` NULL (then `*name_out` is left alone).
#[no_mangle]
pub extern "C" fn herald_parsed_address(
    p: *const herald_parsed,
    role: u32,
    i: usize,
    name_out: *mut *const c_char,
) -> *const c_char {
    ffi_boundary! {
        let list = role_arg(handle::arg(p)?, role)?;
        let a = list.get(i).ok_or_else(|| {
            Error::invalid(format!("index {i} is out of range: role {role} has {} addresses", list.len()))
        })?;
        if let Some(n) = opt_out(name_out) {
            *n = a.name.as_ref().map_or(c"".as_ptr(), |s| s.as_ptr());
        }
        Ok(a.address.as_ptr())
    }
}

/// METHOD. The Date header as Unix seconds (its zone applied); 0 when it
/// is absent or not a valid date, or `p` is NULL.
#[no_mangle]
pub extern "C" fn herald_parsed_date(p: *const herald_parsed) -> i64 {
    ffi_boundary! { fallback = 0; Ok(handle::arg(p)?.date) }
}

/// METHOD. How many attachments and inline parts (images an HTML body
/// shows, nested messages) the message has, in message order; the text and
/// HTML bodies are not counted. 0 for a NULL `p`.
#[no_mangle]
pub extern "C" fn herald_parsed_attachment_count(p: *const herald_parsed) -> usize {
    ffi_boundary! { Ok(handle::arg(p)?.attachments.len()) }
}

fn attachment_arg<'a>(p: *const herald_parsed, i: usize) -> Result<&'a Attachment> {
    let p: &'a Parsed = handle::arg(p)?;
    p.attachments.get(i).ok_or_else(|| {
        Error::invalid(format!(
            "index {i} is out of range: the message has {} attachments",
            p.attachments.len()
        ))
    })
}

/// METHOD. Fills `*out` with attachment `i` (from 0). Its pointers are
/// owned by `p` and valid as long as it is. INVALID_ARGUMENT when `p` or
/// `out` is NULL or `i` is out of range (`*out` then left alone).
#[no_mangle]
pub extern "C" fn herald_parsed_attachment(
    p: *const herald_parsed,
    i: usize,
    out: *mut herald_attachment,
) -> herald_status {
    ffi_boundary! {
        let a = attachment_arg(p, i)?;
        let out = arg_out(out, "out")?;
        *out = herald_attachment {
            filename: a.filename.as_ptr(),
            content_type: a.content_type.as_ptr(),
            content_id: a.content_id.as_ptr(),
            is_inline: i32::from(a.inline),
            data: a.data.as_ptr(),
            len: a.data.len(),
        };
        Ok(())
    }
}

/// METHOD. Writes attachment `i`'s decoded bytes to the file `path`
/// (UTF-8), created or truncated; the name is the caller's choice, never
/// the attachment's own. INVALID_ARGUMENT for NULL arguments or an index
/// out of range, HERALD_STATUS_IO when the file cannot be written (the
/// reason in `herald_last_error()`; a partly written file is removed).
#[no_mangle]
pub extern "C" fn herald_parsed_attachment_save(
    p: *const herald_parsed,
    i: usize,
    path: *const c_char,
) -> herald_status {
    ffi_boundary! {
        let a = attachment_arg(p, i)?;
        let path = arg_str(path, "path")?;
        if path.is_empty() {
            return Err(Error::invalid("path is empty"));
        }
        std::fs::write(path, &a.data).map_err(|e| {
            let _ = std::fs::remove_file(path);
            Error::io(e, &format!("writing attachment {i} to {path}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsed::role;
    use std::ffi::CStr;

    #[test]
    fn roles_agree_with_the_parser() {
        assert_eq!(
            [
                HERALD_ADDR_FROM,
                HERALD_ADDR_TO,
                HERALD_ADDR_CC,
                HERALD_ADDR_BCC,
                HERALD_ADDR_REPLY_TO,
                HERALD_ADDR_SENDER
            ],
            [
                role::FROM,
                role::TO,
                role::CC,
                role::BCC,
                role::REPLY_TO,
                role::SENDER
            ]
        );
    }

    fn text(p: *const c_char) -> String {
        // SAFETY: the accessors return NUL-terminated strings owned by the parsed message.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
    }

    #[test]
    fn null_and_bad_arguments_get_a_status_or_a_documented_fallback() {
        let mut out = std::ptr::null_mut();
        assert_eq!(herald_parse(std::ptr::null(), 3, &mut out), 1);
        assert_eq!(herald_parse(b"x".as_ptr(), 1, std::ptr::null_mut()), 1);
        assert_eq!(herald_parse(b"".as_ptr(), 0, &mut out), 1);
        assert!(out.is_null());
        herald_parsed_free(std::ptr::null_mut());
        let null = std::ptr::null();
        assert_eq!(text(herald_parsed_subject(null)), "");
        assert!(herald_parsed_text(null).is_null() && herald_parsed_html(null).is_null());
        assert_eq!(herald_parsed_date(null), 0);
        assert_eq!(herald_parsed_address_count(null, 1), 0);
        assert_eq!(herald_parsed_attachment_count(null), 0);
        assert!(herald_result_parsed(std::ptr::null(), 0).is_null());

        let m = b"Subject: s\r\nFrom: A <a@x>\r\n\r\nbody\r\n";
        assert_eq!(herald_parse(m.as_ptr(), m.len(), &mut out), 0);
        let p = out as *const herald_parsed;
        assert_eq!(text(herald_parsed_subject(p)), "s");
        assert_eq!(herald_parsed_address_count(p, 9), 0);
        assert!(text(super::super::herald_last_error()).contains("not a HERALD_ADDR_"));
        let mut name = std::ptr::null();
        assert_eq!(
            text(herald_parsed_address(p, HERALD_ADDR_FROM, 0, &mut name)),
            "a@x"
        );
        assert_eq!(text(name), "A");
        assert!(herald_parsed_address(p, HERALD_ADDR_FROM, 1, &mut name).is_null());
        assert!(herald_parsed_header(p, std::ptr::null(), 0).is_null());
        assert_eq!(text(herald_parsed_header(p, c"SUBJECT".as_ptr(), 0)), "s");
        let mut a = std::mem::MaybeUninit::<herald_attachment>::uninit();
        assert_eq!(herald_parsed_attachment(p, 0, a.as_mut_ptr()), 1);
        assert_eq!(herald_parsed_attachment_save(p, 0, c"/tmp/x".as_ptr()), 1);
        herald_parsed_free(out);
    }
}
