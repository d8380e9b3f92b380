//! `herald_result`: an op's items (UIDs, messages, mailboxes, recipients).
//! A result lives as long as its completion. An index out of range gives 0 / NULL,
//! with the reason in `herald_last_error()`.

use std::ffi::c_char;

use super::boundary::ffi_boundary;
use super::handle::{self, Borrowed, Castable};
use super::opt_out;
use crate::result::{ResultData, ResultItem};
use crate::status::{Error, Result};

/// An op-specific result, reached through `herald_completion.result`: a
/// list of items (UIDs, messages, mailboxes, recipients), each with a uid,
/// `HERALD_FIELD_*` fields and maybe bytes. Owned by its completion: valid
/// during the callback, or until `herald_completion_free`.
pub struct herald_result {
    _private: [u8; 0],
}

/// Borrowed from its completion, which owns it: there is no `herald_result_free`.
impl Castable for herald_result {
    type Ownership = Borrowed;
    type Rust = ResultData;
    const NAME: &'static str = "result";
}

/// str: a mailbox name (IMAP list); a UIDL (POP3); a recipient's address
/// (SMTP send); the .eml file's path (PICKUP send).
pub const HERALD_FIELD_NAME: u32 = 1;
/// str: the Subject (IMAP ENVELOPE), RFC 2047 words decoded to UTF-8.
pub const HERALD_FIELD_SUBJECT: u32 = 2;
/// str: the From addresses (IMAP ENVELOPE): `Name <a@b>` or `a@b`, joined by ", ".
pub const HERALD_FIELD_FROM: u32 = 3;
/// str: the To addresses (IMAP ENVELOPE), as HERALD_FIELD_FROM.
pub const HERALD_FIELD_TO: u32 = 4;
/// str: the Date header (IMAP ENVELOPE), as sent.
pub const HERALD_FIELD_DATE: u32 = 5;
/// str: the Message-ID (IMAP ENVELOPE).
pub const HERALD_FIELD_MESSAGE_ID: u32 = 6;
/// str: IMAP flags (fetch) or mailbox attributes (list), space separated.
pub const HERALD_FIELD_FLAGS: u32 = 7;
/// int: a message's size in bytes (IMAP RFC822.SIZE, POP3 octets).
pub const HERALD_FIELD_SIZE: u32 = 8;
/// int: messages in the mailbox (IMAP IDLE changes).
pub const HERALD_FIELD_EXISTS: u32 = 9;
/// int: the server's reply code for this item (an SMTP recipient's RCPT reply).
pub const HERALD_FIELD_REPLY_CODE: u32 = 10;
/// str: the server's reply text for this item.
pub const HERALD_FIELD_REPLY_TEXT: u32 = 11;
/// str: the Cc addresses (IMAP fetch ENVELOPE), as HERALD_FIELD_FROM.
pub const HERALD_FIELD_CC: u32 = 21;
/// str: the Reply-To addresses (IMAP fetch ENVELOPE), as HERALD_FIELD_FROM. Servers
/// report the From addresses here when the message has no Reply-To (RFC 3501).
pub const HERALD_FIELD_REPLY_TO: u32 = 22;
/// str: the In-Reply-To message id(s) (IMAP fetch ENVELOPE), as sent ("<id@host>").
pub const HERALD_FIELD_IN_REPLY_TO: u32 = 23;
/// str: the References header (IMAP fetch ENVELOPE; fetched with it as
/// BODY.PEEK[HEADER.FIELDS (REFERENCES)]): message ids separated by single spaces.
pub const HERALD_FIELD_REFERENCES: u32 = 24;
/// int: the server's INTERNALDATE (IMAP fetch ENVELOPE), Unix seconds.
pub const HERALD_FIELD_INTERNALDATE: u32 = 25;
/// str: the Bcc addresses (IMAP fetch ENVELOPE; only in messages that kept them, such as drafts).
pub const HERALD_FIELD_BCC: u32 = 26;
/// str: the Sender addresses (IMAP fetch ENVELOPE). Servers report the From
/// addresses here when the message has no Sender (RFC 3501).
pub const HERALD_FIELD_SENDER: u32 = 27;
/// int: the Date header decoded to Unix seconds (IMAP fetch ENVELOPE); absent
/// when the date is missing, invalid or before 1970.
pub const HERALD_FIELD_DATE_UNIX: u32 = 28;
/// str: a completion with HERALD_STATUS_TLS caused by the server's
/// certificate (verification failed, or it does not match
/// HERALD_OPT_TLS_PIN_SHA256) has one result item with the certificate's
/// SHA-256 here (64 lower-case hex digits, of the DER: pass it to
/// HERALD_OPT_TLS_PIN_SHA256 to trust it), HERALD_FIELD_CERT_SUBJECT,
/// _CERT_ISSUER, _CERT_NOT_BEFORE and _CERT_NOT_AFTER. Other TLS failures
/// (no common version, the server refused the client certificate) have no
/// result.
pub const HERALD_FIELD_CERT_SHA256: u32 = 40;
/// str: the certificate's subject, as RFC 4514 writes it ("CN=mail.example.org,O=Example").
pub const HERALD_FIELD_CERT_SUBJECT: u32 = 41;
/// str: the certificate's issuer, as HERALD_FIELD_CERT_SUBJECT.
pub const HERALD_FIELD_CERT_ISSUER: u32 = 42;
/// int: the start of the certificate's validity, Unix seconds.
pub const HERALD_FIELD_CERT_NOT_BEFORE: u32 = 43;
/// int: the end of the certificate's validity, Unix seconds.
pub const HERALD_FIELD_CERT_NOT_AFTER: u32 = 44;
/// str (herald_client_test_async): the server's capabilities, space
/// separated, one word each (parameters after `=`, joined by `,`): IMAP
/// CAPABILITY after login, POP3's last CAPA, SMTP's EHLO reply after
/// STARTTLS (e.g. `PIPELINING SIZE=10240000 AUTH=PLAIN,LOGIN`).
pub const HERALD_FIELD_CAPABILITIES: u32 = 45;
/// str (herald_client_test_async): the connection's security:
/// "TLS (implicit)", "STARTTLS" or "none".
pub const HERALD_FIELD_SECURITY: u32 = 46;
/// str (herald_client_test_async): how it logged in: the SASL mechanism
/// ("PLAIN", "LOGIN", "XOAUTH2" ...), IMAP "LOGIN", POP3 "APOP" or "USER"
/// (USER/PASS); absent when it did not log in (an SMTP client without
/// USERNAME).
pub const HERALD_FIELD_AUTH_MECHANISM: u32 = 47;

pub(crate) fn item<'a>(r: *const herald_result, i: usize) -> Result<&'a ResultItem> {
    let r = handle::arg(r)?;
    r.items.get(i).ok_or_else(|| {
        Error::invalid(format!(
            "index {i} is out of range: the result has {} items",
            r.items.len()
        ))
    })
}

fn missing(i: usize, field: u32) -> Error {
    Error::invalid(format!("item {i} has no field {field}"))
}

/// METHOD. Number of items: UIDs, messages, mailboxes, recipients. 0 for NULL
/// (the reason in `herald_last_error()`).
#[no_mangle]
pub extern "C" fn herald_result_count(r: *const herald_result) -> usize {
    ffi_boundary! { Ok(handle::arg(r)?.items.len()) }
}

/// METHOD. Item i's IMAP UID, or POP3 message number; 0 if it has none, if
/// `i` is out of range or `r` is NULL (the last two set `herald_last_error()`).
#[no_mangle]
pub extern "C" fn herald_result_uid(r: *const herald_result, i: usize) -> u64 {
    ffi_boundary! { Ok(item(r, i)?.uid) }
}

/// METHOD. A text field (`HERALD_FIELD_*`, UTF-8) of item i; NULL if the
/// item lacks it, `i` is out of range or `r` is NULL (the reason in
/// `herald_last_error()`). Owned by the result: valid as long as it is.
#[no_mangle]
pub extern "C" fn herald_result_str(r: *const herald_result, i: usize, field: u32) -> *const c_char {
    ffi_boundary! {
        let s = item(r, i)?.str_field(field).ok_or_else(|| missing(i, field))?;
        Ok(s.as_ptr())
    }
}

/// METHOD. A number field (`HERALD_FIELD_SIZE`, `_EXISTS`, `_REPLY_CODE`) of
/// item i; 0 if absent, out of range or `r` NULL (the reason in
/// `herald_last_error()`).
#[no_mangle]
pub extern "C" fn herald_result_int(r: *const herald_result, i: usize, field: u32) -> u64 {
    ffi_boundary! { item(r, i)?.int_field(field).ok_or_else(|| missing(i, field)) }
}

/// METHOD. A field of the result as a whole, not of one item: for an IMAP
/// op that selects its mailbox (search, fetch, fetch_changed, store, copy,
/// move, expunge), that mailbox's state when the op ended:
/// HERALD_FIELD_UIDVALIDITY, _UIDNEXT (as of the SELECT), _EXISTS and,
/// with CONDSTORE, _HIGHESTMODSEQ. Such ops always have a result (maybe
/// with no items), so the state is there also when nothing matched. 0 if
/// absent or `r` NULL (the reason in `herald_last_error()`).
#[no_mangle]
pub extern "C" fn herald_result_mailbox_int(r: *const herald_result, field: u32) -> u64 {
    ffi_boundary! {
        handle::arg(r)?
            .mailbox_int(field)
            .ok_or_else(|| Error::invalid(format!("the result has no mailbox field {field}")))
    }
}

/// METHOD. Item i's bytes (a message or its header block) and their length
/// in `*len`; NULL (and `*len` = 0) if absent, out of range or `r` NULL (the
/// reason in `herald_last_error()`). `len` may be NULL. Owned by the result:
/// valid as long as it is. Not NUL-terminated.
#[no_mangle]
pub extern "C" fn herald_result_bytes(r: *const herald_result, i: usize, len: *mut usize) -> *const u8 {
    ffi_boundary! {
        let len = opt_out(len);
        let bytes = item(r, i).and_then(|it| {
            it.bytes.as_deref().ok_or_else(|| Error::invalid(format!("item {i} has no bytes")))
        });
        if let Some(l) = len {
            *l = bytes.as_ref().map_or(0, |b| b.len());
        }
        Ok(bytes?.as_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::field;

    #[test]
    fn field_ids_agree_with_the_engine() {
        let pairs = [
            (HERALD_FIELD_NAME, field::NAME),
            (HERALD_FIELD_SUBJECT, field::SUBJECT),
            (HERALD_FIELD_FROM, field::FROM),
            (HERALD_FIELD_TO, field::TO),
            (HERALD_FIELD_DATE, field::DATE),
            (HERALD_FIELD_MESSAGE_ID, field::MESSAGE_ID),
            (HERALD_FIELD_FLAGS, field::FLAGS),
            (HERALD_FIELD_SIZE, field::SIZE),
            (HERALD_FIELD_EXISTS, field::EXISTS),
            (HERALD_FIELD_REPLY_CODE, field::REPLY_CODE),
            (HERALD_FIELD_REPLY_TEXT, field::REPLY_TEXT),
            (HERALD_FIELD_CC, field::CC),
            (HERALD_FIELD_REPLY_TO, field::REPLY_TO),
            (HERALD_FIELD_IN_REPLY_TO, field::IN_REPLY_TO),
            (HERALD_FIELD_REFERENCES, field::REFERENCES),
            (HERALD_FIELD_INTERNALDATE, field::INTERNALDATE),
            (HERALD_FIELD_BCC, field::BCC),
            (HERALD_FIELD_SENDER, field::SENDER),
            (HERALD_FIELD_DATE_UNIX, field::DATE_UNIX),
            (HERALD_FIELD_CERT_SHA256, field::CERT_SHA256),
            (HERALD_FIELD_CERT_SUBJECT, field::CERT_SUBJECT),
            (HERALD_FIELD_CERT_ISSUER, field::CERT_ISSUER),
            (HERALD_FIELD_CERT_NOT_BEFORE, field::CERT_NOT_BEFORE),
            (HERALD_FIELD_CERT_NOT_AFTER, field::CERT_NOT_AFTER),
            (HERALD_FIELD_CAPABILITIES, field::CAPABILITIES),
            (HERALD_FIELD_SECURITY, field::SECURITY),
            (HERALD_FIELD_AUTH_MECHANISM, field::AUTH_MECHANISM),
        ];
        for (c, r) in pairs {
            assert_eq!(c, r);
        }
    }
}
