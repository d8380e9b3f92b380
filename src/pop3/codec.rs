//! The framing of POP3 multi-line responses (RFC 1939 §3): lines end in
//! CRLF, a line starting with "." has that dot stripped ("byte-stuffing"),
//! and a line that is just "." ends the response.
//!
//! [`DotDecoder`] is a small state machine over raw bytes: it copies whole
//! line runs at a time, keeps every line ending as it arrived (so a message
//! comes back byte-exact), and works on any split of its input, so it can be
//! fed straight from the socket buffer.

use crate::status::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// Inside a line: copy up to and including the next LF.
    Mid,
    /// The line began with a dot (already dropped).
    Dot,
    /// The line began with ".\r".
    DotCr,
    /// The terminating ".\r\n" was seen.
    Done,
}

/// Decodes one dot-terminated multi-line response body.
#[derive(Debug)]
pub struct DotDecoder {
    state: State,
    /// Most body bytes accepted; more is a protocol error (an endless body).
    limit: usize,
    produced: usize,
}

impl DotDecoder {
    /// A decoder for a body of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        DotDecoder {
            state: State::LineStart,
            limit,
            produced: 0,
        }
    }

    /// Has the terminating line been seen?
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes produced so far.
    pub fn produced(&self) -> usize {
        self.produced
    }

    /// Decodes as much of `input` as belongs to the body into `out`.
    /// Returns how many bytes of `input` were consumed: all of it, or, once
    /// the terminator was seen ([`is_done`](Self::is_done)), up to and
    /// including the terminator (what follows is the next response).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let before = out.len();
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            match self.state {
                State::LineStart => {
                    if input[i] == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Mid => {
                    let rest = &input[i..];
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(p) => {
                            out.extend_from_slice(&rest[..=p]);
                            i += p + 1;
                            self.state = State::LineStart;
                        }
                        None => {
                            out.extend_from_slice(rest);
                            i = input.len();
                        }
                    }
                }
                State::Dot => match input[i] {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    // A bare LF after the dot: lenient, also the end.
                    b'\n' => {
                        self.state = State::Done;
                        i += 1;
                    }
                    // A stuffed line: the dot is gone, the rest is content.
                    _ => self.state = State::Mid,
                },
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::Done;
                        i += 1;
                    } else {
                        // ".\r" then more: a stuffed line whose content starts with CR.
                        out.push(b'\r');
                        self.state = State::Mid;
                    }
                }
                State::Done => break,
            }
        }
        self.produced += out.len() - before;
        if self.produced > self.limit {
            return Err(Error::protocol(format!(
                "the server sent more than {} bytes without ending the response",
                self.limit
            )));
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the body and
    /// how many input bytes were consumed.
    fn decode(input: &[u8], step: usize) -> (Vec<u8>, usize, bool) {
        let mut d = DotDecoder::new(1 << 20);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            let end = (pos + step).min(input.len());
            let n = d.feed(&input[pos..end], &mut out).unwrap();
            assert!(n <= end - pos);
            if !d.is_done() {
                assert_eq!(n, end - pos, "consumes all input until the end");
            }
            pos += n;
        }
        (out, pos, d.is_done())
    }

    fn all_splits(input: &[u8], want_body: &[u8], want_consumed: usize) {
        for step in [1, 2, 3, 5, 7, 64, input.len().max(1)] {
            let (body, consumed, done) = decode(input, step);
            assert!(done, "step {step}");
            assert_eq!(
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(want_body),
                "step {step}"
            );
            assert_eq!(body, want_body, "step {step}");
            assert_eq!(consumed, want_consumed, "step {step}");
        }
    }

    #[test]
    fn plain_body_keeps_crlf() {
        let wire = b"Subject: x\r\n\r\nhello\r\n.\r\n";
        all_splits(wire, b"Subject: x\r\n\r\nhello\r\n", wire.len());
    }

    #[test]
    fn stuffed_dots_are_removed() {
        let wire = b"..\r\n...\r\n..hidden\r\nmid.dle\r\n.. space\r\n.\r\n";
        all_splits(wire, b".\r\n..\r\n.hidden\r\nmid.dle\r\n. space\r\n", wire.len());
    }

    #[test]
    fn unstuffed_leading_dot_is_stripped_as_rfc_1939_says() {
        all_splits(b".x\r\n.\r\n", b"x\r\n", 7);
        // ".\r" followed by more than LF: the dot goes, the CR stays.
        all_splits(b".\rx\r\n.\r\n", b"\rx\r\n", 8);
    }

    #[test]
    fn stops_at_the_terminator_and_leaves_the_next_response() {
        let wire = b"a\r\n.\r\n+OK next\r\n";
        all_splits(wire, b"a\r\n", 6);
    }

    #[test]
    fn empty_body_and_bare_lf_terminator() {
        all_splits(b".\r\n", b"", 3);
        all_splits(b"a\n.\n+OK", b"a\n", 4);
    }

    #[test]
    fn eight_bit_and_nul_bytes_pass_unchanged() {
        let mut wire = b"caf\xc3\xa9 \xff\xfe\x00\x01\r\n".to_vec();
        let body = wire.clone();
        wire.extend_from_slice(b".\r\n");
        all_splits(&wire, &body, wire.len());
    }

    #[test]
    fn lines_of_any_length_within_the_limit() {
        let mut wire = vec![b'x'; 200_000];
        wire.extend_from_slice(b"\r\n.\r\n");
        let (body, _, done) = decode(&wire, 4096);
        assert!(done);
        assert_eq!(body.len(), 200_002);
    }

    #[test]
    fn endless_body_is_a_protocol_error() {
        let mut d = DotDecoder::new(1000);
        let mut out = Vec::new();
        let chunk = [b'x'; 300];
        let mut err = None;
        for _ in 0..10 {
            match d.feed(&chunk, &mut out) {
                Ok(_) => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let e = err.expect("the limit stops an endless body");
        assert_eq!(e.status, crate::status::Status::Protocol);
        assert!(out.len() < 2000);
    }

    #[test]
    fn unfinished_body_is_not_done() {
        let (body, consumed, done) = decode(b"abc\r\n.", 1);
        assert!(!done);
        assert_eq!(body, b"abc\r\n");
        assert_eq!(consumed, 6);
    }
}
