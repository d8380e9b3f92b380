//! The SMTP envelope's limits and checks that belong to no one protocol
//! call: what a send may carry, whichever way it was submitted.

use crate::status::{Error, Result};

/// Most recipients one message may have.
pub const MAX_RCPTS: usize = 100_000;

/// A raw send's recipient count: at least one, at most [`MAX_RCPTS`].
pub fn check_rcpt_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "a message needs at least one recipient (n_rcpt is 0)",
        ));
    }
    if n > MAX_RCPTS {
        return Err(Error::invalid(format!(
            "too many recipients ({n}; at most {MAX_RCPTS})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_count_is_bounded() {
        assert!(check_rcpt_count(0).unwrap_err().detail.contains("at least one"));
        check_rcpt_count(1).unwrap();
        check_rcpt_count(MAX_RCPTS).unwrap();
        assert!(check_rcpt_count(MAX_RCPTS + 1)
            .unwrap_err()
            .detail
            .contains("too many recipients"));
    }
}
