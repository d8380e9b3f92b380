//! `herald_message`: composing a message to send with `herald_send_async`
//! or to render with `herald_message_to_bytes`.

use std::ffi::c_char;

use super::boundary::ffi_boundary;
use super::handle::{self, Castable, Owned};
use super::{arg_bytes, arg_opt_str, arg_out, arg_str, herald_status};
use crate::message::MessageDraft;

/// An email message being composed: sender, recipients, subject, bodies,
/// headers and attachments. Each setter checks its input at once and
/// refuses bad input (CR/LF in an address or header, a malformed mailbox)
/// with `HERALD_STATUS_INVALID_ARGUMENT`, leaving the message unchanged;
/// `herald_last_error()` says why. Strings are UTF-8 and copied.
///
/// Not synchronized: don't change one message from two threads at once.
/// `herald_send_async` copies the message, so it may be changed, reused or
/// freed as soon as that call returns.
pub struct herald_message {
    _private: [u8; 0],
}

impl Castable for herald_message {
    type Ownership = Owned;
    type Rust = MessageDraft;
    const NAME: &'static str = "message";
}

/// CONSTRUCTOR. A new, empty message; the caller owns it and frees it with
/// `herald_message_free`. NULL only on an internal error.
#[no_mangle]
pub extern "C" fn herald_message_new() -> *mut herald_message {
    ffi_boundary! { Ok(handle::into_handle::<herald_message>(MessageDraft::default())) }
}

/// METHOD. Sets the sender, replacing an earlier one: `"Name <user@example.com>"`
/// or `"user@example.com"`; the display name may be UTF-8. Its address is
/// also the envelope sender (MAIL FROM).
#[no_mangle]
pub extern "C" fn herald_message_set_from(m: *mut herald_message, mailbox: *const c_char) -> herald_status {
    ffi_boundary! { handle::arg_mut(m)?.set_from(arg_str(mailbox, "mailbox")?) }
}

/// METHOD. Adds a To recipient, in the same syntax as `herald_message_set_from`.
/// One mailbox per call.
#[no_mangle]
pub extern "C" fn herald_message_add_to(m: *mut herald_message, mailbox: *const c_char) -> herald_status {
    ffi_boundary! { handle::arg_mut(m)?.add_to(arg_str(mailbox, "mailbox")?) }
}

/// METHOD. Adds a Cc recipient, in the same syntax as `herald_message_set_from`.
#[no_mangle]
pub extern "C" fn herald_message_add_cc(m: *mut herald_message, mailbox: *const c_char) -> herald_status {
    ffi_boundary! { handle::arg_mut(m)?.add_cc(arg_str(mailbox, "mailbox")?) }
}

/// METHOD. Adds a blind copy recipient: it gets the message, but its address
/// never appears in the message's bytes (only in the SMTP envelope).
#[no_mangle]
pub extern "C" fn herald_message_add_bcc(m: *mut herald_message, mailbox: *const c_char) -> herald_status {
    ffi_boundary! { handle::arg_mut(m)?.add_bcc(arg_str(mailbox, "mailbox")?) }
}

/// METHOD. Sets the subject (UTF-8; encoded as RFC 2047 when not ASCII).
/// Control characters other than TAB are refused.
#[no_mangle]
pub extern "C" fn herald_message_set_subject(m: *mut herald_message, utf8: *const c_char) -> herald_status {
    ffi_boundary! { handle::arg_mut(m)?.set_subject(arg_str(utf8, "subject")?) }
}

/// METHOD. Sets the plain text body (UTF-8; any line ends, sent as CRLF).
/// With an HTML body too, the message is multipart/alternative.
#[no_mangle]
pub extern "C" fn herald_message_set_text(m: *mut herald_message, utf8: *const c_char) -> herald_status {
    ffi_boundary! { handle::arg_mut(m)?.set_text(arg_str(utf8, "text")?) }
}

/// METHOD. Sets the HTML body (UTF-8). With a text body too, the message is
/// multipart/alternative.
#[no_mangle]
pub extern "C" fn herald_message_set_html(m: *mut herald_message, utf8: *const c_char) -> herald_status {
    ffi_boundary! { handle::arg_mut(m)?.set_html(arg_str(utf8, "html")?) }
}

/// METHOD. Adds a header such as Reply-To, In-Reply-To, References, Date,
/// Message-ID or any X- header; a second header of the same name replaces
/// the first. A given Date or Message-ID replaces the one herald adds.
/// `name`: printable ASCII without ':' or spaces; `value`: UTF-8 (encoded as
/// RFC 2047 when not ASCII) without CR, LF or other control characters
/// except TAB. From, To, Cc, Bcc, Subject, Content-Type,
/// Content-Transfer-Encoding and MIME-Version are refused: use their setters.
#[no_mangle]
pub extern "C" fn herald_message_add_header(
    m: *mut herald_message,
    name: *const c_char,
    value: *const c_char,
) -> herald_status {
    ffi_boundary! {
        handle::arg_mut(m)?.add_header(arg_str(name, "name")?, arg_str(value, "value")?)
    }
}

/// METHOD. Attaches the file at `path`, read during this call (the file may
/// be changed or deleted afterwards); it is named by the path's last
/// component. `content_type` ("application/pdf"): NULL guesses it from the
/// extension (application/octet-stream when unknown). An unreadable file
/// gives `HERALD_STATUS_IO`.
#[no_mangle]
pub extern "C" fn herald_message_attach_file(
    m: *mut herald_message,
    path: *const c_char,
    content_type: *const c_char,
) -> herald_status {
    ffi_boundary! {
        let m = handle::arg_mut(m)?;
        m.attach_file(arg_str(path, "path")?, arg_opt_str(content_type, "content_type")?)
    }
}

/// METHOD. Attaches `len` bytes at `data` (copied) as a file named
/// `filename` (UTF-8) with the MIME type `content_type` ("text/csv").
/// `data` may be NULL only when `len` is 0 (an empty attachment).
#[no_mangle]
pub extern "C" fn herald_message_attach_bytes(
    m: *mut herald_message,
    filename: *const c_char,
    content_type: *const c_char,
    data: *const u8,
    len: usize,
) -> herald_status {
    ffi_boundary! {
        let m = handle::arg_mut(m)?;
        let filename = arg_str(filename, "filename")?;
        let content_type = arg_str(content_type, "content_type")?;
        m.attach_bytes(filename, Some(content_type), arg_bytes(data, len, "data")?)
    }
}

/// METHOD. Renders the message as RFC 5322 bytes (CRLF line ends), as
/// `herald_send_async` would send them: Bcc left out, Date and Message-ID
/// added when not given (new ones on each call). Needs a From and at least
/// one recipient. On success `*out` and `*len` receive a new buffer that the
/// caller frees with `herald_bytes_free(*out, *len)`; on error they are not
/// written.
#[no_mangle]
pub extern "C" fn herald_message_to_bytes(
    m: *const herald_message,
    out: *mut *mut u8,
    len: *mut usize,
) -> herald_status {
    ffi_boundary! {
        let m = handle::arg(m)?;
        let out = arg_out(out, "out")?;
        let len = arg_out(len, "len")?;
        let bytes = m.to_bytes()?.into_boxed_slice();
        *len = bytes.len();
        *out = Box::into_raw(bytes) as *mut u8;
        Ok(())
    }
}

/// DESTRUCTOR. Frees a buffer from `herald_message_to_bytes`; `len` must be
/// the length it returned. NULL is a no-op.
#[no_mangle]
pub extern "C" fn herald_bytes_free(p: *mut u8, len: usize) {
    ffi_boundary! { void; free_bytes(p, len) }
}

fn free_bytes(p: *mut u8, len: usize) {
    if !p.is_null() {
        // SAFETY: `p` and `len` came from `herald_message_to_bytes`, which
        // leaked a `Box<[u8]>` of exactly `len` bytes; it is freed once (API contract).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) });
    }
}

/// DESTRUCTOR. Frees a message; NULL is a no-op.
#[no_mangle]
pub extern "C" fn herald_message_free(m: *mut herald_message) {
    ffi_boundary! { void; handle::free(m) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{HERALD_STATUS_INVALID_ARGUMENT, HERALD_STATUS_IO, HERALD_STATUS_OK};

    #[test]
    fn compose_render_and_free() {
        let m = herald_message_new();
        assert!(!m.is_null());
        assert_eq!(
            herald_message_set_from(m, c"Alice <alice@example.com>".as_ptr()),
            HERALD_STATUS_OK
        );
        assert_eq!(
            herald_message_add_to(m, c"bob@example.org".as_ptr()),
            HERALD_STATUS_OK
        );
        assert_eq!(
            herald_message_add_bcc(m, c"hidden@example.org".as_ptr()),
            HERALD_STATUS_OK
        );
        assert_eq!(herald_message_set_subject(m, c"Hi".as_ptr()), HERALD_STATUS_OK);
        assert_eq!(herald_message_set_text(m, c"Hello".as_ptr()), HERALD_STATUS_OK);
        assert_eq!(
            herald_message_attach_bytes(
                m,
                c"e.bin".as_ptr(),
                c"application/octet-stream".as_ptr(),
                std::ptr::null(),
                0
            ),
            HERALD_STATUS_OK
        );
        let (mut out, mut len) = (std::ptr::null_mut(), 0usize);
        assert_eq!(herald_message_to_bytes(m, &mut out, &mut len), HERALD_STATUS_OK);
        assert!(!out.is_null() && len > 0);
        // SAFETY: herald_message_to_bytes returned `len` bytes at `out`.
        let bytes = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
        herald_bytes_free(out, len);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Subject: Hi") && !text.contains("hidden"), "{text}");
        herald_message_free(m);
        herald_message_free(std::ptr::null_mut());
        herald_bytes_free(std::ptr::null_mut(), 0);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let m = herald_message_new();
        assert_eq!(
            herald_message_set_from(std::ptr::null_mut(), c"a@b.c".as_ptr()),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            herald_message_set_from(m, std::ptr::null()),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            herald_message_add_to(m, c"a@b.c\r\nRCPT TO:<x@y>".as_ptr()),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            herald_message_add_header(m, c"X-A".as_ptr(), c"v\r\nBcc: x".as_ptr()),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        let not_utf8 = [b'a', 0xff, 0];
        assert_eq!(
            herald_message_set_subject(m, not_utf8.as_ptr().cast()),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            herald_message_attach_bytes(m, c"a.bin".as_ptr(), c"text/plain".as_ptr(), std::ptr::null(), 3),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            herald_message_attach_bytes(m, c"a.bin".as_ptr(), std::ptr::null(), b"x".as_ptr(), 1),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            herald_message_attach_file(m, c"/nonexistent/x.pdf".as_ptr(), std::ptr::null()),
            HERALD_STATUS_IO
        );
        // No From yet: out-params stay untouched.
        let (mut out, mut len) = (std::ptr::null_mut(), 7usize);
        assert_eq!(
            herald_message_to_bytes(m, &mut out, &mut len),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert!(out.is_null() && len == 7);
        assert_eq!(
            herald_message_set_from(m, c"a@b.example".as_ptr()),
            HERALD_STATUS_OK
        );
        assert_eq!(
            herald_message_add_to(m, c"c@d.example".as_ptr()),
            HERALD_STATUS_OK
        );
        assert_eq!(
            herald_message_to_bytes(m, std::ptr::null_mut(), &mut len),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            herald_message_to_bytes(std::ptr::null(), &mut out, &mut len),
            HERALD_STATUS_INVALID_ARGUMENT
        );
        herald_message_free(m);
    }
}
