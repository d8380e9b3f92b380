//! What POP3 accepts as a UIDL (RFC 1939 §7) and how many one delete may
//! name: checked when an op is submitted, so a bad name never reaches the wire.

use crate::status::{Error, Result};

/// Most UIDLs one delete may name.
pub const MAX_DELETE: usize = 1_000_000;
/// Longest UIDL accepted (RFC 1939 says 70; leave servers some room).
pub const MAX_UIDL: usize = 512;

/// A UIDL: 1 to [`MAX_UIDL`] printable ASCII characters, no spaces.
/// `what` names the argument in the error detail.
pub fn check_uidl(u: &str, what: &str) -> Result<()> {
    if u.is_empty() || u.len() > MAX_UIDL {
        return Err(Error::invalid(format!(
            "{what} must be 1 to {MAX_UIDL} characters, got {}",
            u.len()
        )));
    }
    if let Some(b) = u.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
        return Err(Error::invalid(format!(
            "{what} must be printable ASCII without spaces (found byte 0x{b:02X})"
        )));
    }
    Ok(())
}

/// A delete's UIDL count: at least one, at most [`MAX_DELETE`].
pub fn check_delete_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid("nothing to delete (n is 0)"));
    }
    if n > MAX_DELETE {
        return Err(Error::invalid(format!(
            "too many UIDLs ({n}; at most {MAX_DELETE} per op)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidls_are_checked() {
        assert!(check_uidl("00000001509bc8a1", "uidl").is_ok());
        assert!(check_uidl("whqtswO00WBw418f9t5JxYwZ", "uidl").is_ok());
        for bad in ["", "a b", "a\r\nDELE 1", "caf\u{e9}", &"x".repeat(513)] {
            assert!(check_uidl(bad, "uidl").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn delete_counts_are_bounded() {
        assert!(check_delete_count(0).is_err());
        check_delete_count(1).unwrap();
        check_delete_count(MAX_DELETE).unwrap();
        assert!(check_delete_count(MAX_DELETE + 1).is_err());
    }
}
