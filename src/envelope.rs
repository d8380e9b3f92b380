//! The SMTP envelope's limits and checks that belong to no one protocol
//! call: what a send may carry, whichever way it was submitted, and the
//! envelope itself.

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

/// Addresses one envelope keeps inline (the sender and five recipients)
/// before its ends go to the heap.
const INLINE_ENDS: usize = 6;

/// Bytes of addresses one envelope keeps inline (a sender and a recipient
/// of about 30 bytes each) before they go to the heap.
const INLINE_TEXT: usize = 62;

/// A message's envelope: its sender and recipients, their addresses back
/// to back in one buffer. A send's envelope is made on the calling thread
/// and freed on a worker, where every small allocation goes through the
/// allocator's shared bins: a sender and a recipient of up to
/// `INLINE_TEXT` bytes together take no allocation, and more take one,
/// not one per address plus the list.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's address, then each recipient's.
    text: Text,
    /// Where the sender's address ends in `text`, then each recipient's.
    ends: Ends,
}

#[derive(Clone, PartialEq, Eq)]
enum Ends {
    Inline { n: u8, at: [u32; INLINE_ENDS] },
    Heap(Vec<u32>),
}

/// A string kept inline up to `INLINE_TEXT` bytes.
#[derive(Clone)]
enum Text {
    Inline { len: u8, buf: [u8; INLINE_TEXT] },
    Heap(String),
}

impl Text {
    fn with_capacity(n: usize) -> Text {
        if n <= INLINE_TEXT {
            Text::Inline {
                len: 0,
                buf: [0; INLINE_TEXT],
            }
        } else {
            Text::Heap(String::with_capacity(n))
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // SAFETY: buf[..len] is whole strs pushed one after another
            // (`push_str`), which is UTF-8.
            Text::Inline { len, buf } => unsafe { std::str::from_utf8_unchecked(&buf[..usize::from(*len)]) },
            Text::Heap(s) => s,
        }
    }

    fn push_str(&mut self, s: &str) {
        match self {
            Text::Inline { len, buf } if usize::from(*len) + s.len() <= INLINE_TEXT => {
                let at = usize::from(*len);
                buf[at..at + s.len()].copy_from_slice(s.as_bytes());
                *len += s.len() as u8;
            }
            Text::Inline { .. } => {
                let mut h = String::with_capacity((self.as_str().len() + s.len()).max(2 * INLINE_TEXT));
                h.push_str(self.as_str());
                h.push_str(s);
                *self = Text::Heap(h);
            }
            Text::Heap(h) => h.push_str(s),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl Default for Ends {
    fn default() -> Self {
        Ends::Inline {
            n: 0,
            at: [0; INLINE_ENDS],
        }
    }
}

impl Ends {
    fn as_slice(&self) -> &[u32] {
        match self {
            Ends::Inline { n, at } => &at[..usize::from(*n)],
            Ends::Heap(v) => v,
        }
    }

    fn push(&mut self, end: u32) {
        match self {
            Ends::Inline { n, at } if usize::from(*n) < INLINE_ENDS => {
                at[usize::from(*n)] = end;
                *n += 1;
            }
            Ends::Inline { at, .. } => {
                let mut v = Vec::with_capacity(2 * INLINE_ENDS);
                v.extend_from_slice(at);
                v.push(end);
                *self = Ends::Heap(v);
            }
            Ends::Heap(v) => v.push(end),
        }
    }
}

impl Envelope {
    /// An envelope from `from` ("" for the null sender), with room for
    /// `room` more bytes of recipients' addresses.
    pub fn new(from: &str, room: usize) -> Envelope {
        let mut text = Text::with_capacity(from.len() + room);
        text.push_str(from);
        let mut ends = Ends::default();
        ends.push(from.len() as u32);
        Envelope { text, ends }
    }

    /// An envelope of `from` and `rcpts`.
    pub fn of<S: AsRef<str>>(from: &str, rcpts: &[S]) -> Envelope {
        let room = rcpts.iter().map(|r| r.as_ref().len()).sum();
        let mut e = Envelope::new(from, room);
        for r in rcpts {
            e.push_rcpt(r.as_ref());
        }
        e
    }

    /// Adds a recipient.
    pub fn push_rcpt(&mut self, rcpt: &str) {
        self.text.push_str(rcpt);
        self.ends.push(self.text.as_str().len() as u32);
    }

    /// The sender's address ("" for the null sender).
    pub fn from(&self) -> &str {
        let end = self.ends.as_slice().first().map_or(0, |&e| e as usize);
        &self.text.as_str()[..end]
    }

    /// How many recipients.
    pub fn rcpt_count(&self) -> usize {
        self.ends.as_slice().len().saturating_sub(1)
    }

    /// Recipient `k`'s address (`k < rcpt_count()`).
    pub fn rcpt(&self, k: usize) -> &str {
        let ends = self.ends.as_slice();
        &self.text.as_str()[ends[k] as usize..ends[k + 1] as usize]
    }

    /// Whether every address is ASCII.
    pub fn is_ascii(&self) -> bool {
        self.text.as_str().is_ascii()
    }

    /// The recipients' addresses, in order.
    pub fn rcpts(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        let text = self.text.as_str();
        self.ends
            .as_slice()
            .windows(2)
            .map(move |w| &text[w[0] as usize..w[1] as usize])
    }
}

impl Default for Envelope {
    /// The null sender and no recipient.
    fn default() -> Self {
        Envelope::new("", 0)
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("from", &self.from())
            .field("rcpts", &self.rcpts().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_keeps_its_addresses_in_order() {
        let empty = Envelope::default();
        assert_eq!((empty.from(), empty.rcpt_count()), ("", 0));
        for n in [0, 1, 5, 6, 40] {
            let rcpts: Vec<String> = (0..n)
                .map(|i| format!("r{i}@x{}.example", "y".repeat(i)))
                .collect();
            let long = format!("{}@example.org", "l".repeat(70));
            for from in ["", "a@example.org", &long] {
                let e = Envelope::of(from, &rcpts);
                let mut by_one = Envelope::new(from, 0);
                for r in &rcpts {
                    by_one.push_rcpt(r);
                }
                assert_eq!(by_one, e);
                assert_eq!(e.from(), from);
                assert_eq!(e.rcpt_count(), n);
                assert_eq!(e.rcpts().len(), n);
                assert!(e.rcpts().eq(rcpts.iter().map(String::as_str)));
                for (k, r) in rcpts.iter().enumerate() {
                    assert_eq!(e.rcpt(k), r);
                }
                // Empty addresses are kept too.
                let mut e2 = e.clone();
                e2.push_rcpt("");
                assert_eq!((e2.rcpt_count(), e2.rcpt(n)), (n + 1, ""));
                assert_eq!(e2.from(), from);
            }
        }
    }

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
