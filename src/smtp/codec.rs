//! DATA framing (RFC 5321 §4.5.2): dot-stuffing, CRLF line endings, the
//! terminating ".\r\n"; and what a message needs from the server.

/// Encodes message bytes for DATA, chunk by chunk: a '.' at the start of a
/// line is doubled, a bare LF becomes CRLF, and `finish` adds a final CRLF
/// when the message lacks one, then the terminating ".\r\n".
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    prev_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            prev_cr: false,
        }
    }
}

impl DotStuffer {
    pub fn encode(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 8);
        while !input.is_empty() {
            if self.at_line_start && input[0] == b'.' {
                out.push(b'.');
            }
            match input.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line = &input[..i];
                    out.extend_from_slice(line);
                    let cr_before = if i == 0 {
                        self.prev_cr
                    } else {
                        line[i - 1] == b'\r'
                    };
                    if !cr_before {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    self.at_line_start = true;
                    self.prev_cr = false;
                    input = &input[i + 1..];
                }
                None => {
                    out.extend_from_slice(input);
                    self.at_line_start = false;
                    self.prev_cr = input.last() == Some(&b'\r');
                    input = &[];
                }
            }
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if self.prev_cr {
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b".\r\n");
        *self = DotStuffer::default();
    }
}

/// What a message's bytes and envelope need from the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Bytes >= 0x80: BODY=8BITMIME.
    pub eight_bit: bool,
    /// NUL bytes or bare CR/LF: only BDAT carries them unchanged.
    pub binary: bool,
    /// Non-ASCII addresses: SMTPUTF8.
    pub smtputf8: bool,
}

impl Needs {
    pub fn of(from: &str, rcpts: &[String], data: &[u8]) -> Needs {
        let mut n = Needs {
            smtputf8: !from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii()),
            ..Needs::default()
        };
        n.eight_bit = !data.is_ascii();
        let mut prev = 0u8;
        for (i, &b) in data.iter().enumerate() {
            let bare_lf = b == b'\n' && prev != b'\r';
            let bare_cr = prev == b'\r' && b != b'\n';
            if b == 0 || bare_lf || bare_cr {
                n.binary = true;
                break;
            }
            prev = b;
            if i + 1 == data.len() && b == b'\r' {
                n.binary = true;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff_in_chunks(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut d = DotStuffer::default();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            d.encode(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn dots_are_doubled_at_line_starts_only() {
        let out = stuff_in_chunks(b".a\r\nb.c\r\n..\r\n.\r\n", 1000);
        assert_eq!(out, b"..a\r\nb.c\r\n...\r\n..\r\n.\r\n");
    }

    #[test]
    fn missing_final_crlf_is_added_and_bare_lf_fixed() {
        assert_eq!(stuff_in_chunks(b"a\nb", 1000), b"a\r\nb\r\n.\r\n");
        assert_eq!(stuff_in_chunks(b"", 1000), b".\r\n");
        assert_eq!(stuff_in_chunks(b"x\r", 1000), b"x\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let msg = b"Subject: x\r\n\r\n.start\r\nmid.dle\r\n\r\n.\r\n..two\nbare\r\n.end";
        let whole = stuff_in_chunks(msg, 10_000);
        for chunk in 1..msg.len() {
            assert_eq!(stuff_in_chunks(msg, chunk), whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn needs_detection() {
        let n = Needs::of("a@b", &["c@d".into()], b"plain\r\n");
        assert_eq!(n, Needs::default());
        assert!(Needs::of("a@b", &[], "caf\u{e9}\r\n".as_bytes()).eight_bit);
        assert!(Needs::of("a@b", &[], b"a\nb").binary);
        assert!(Needs::of("a@b", &[], b"a\rb").binary);
        assert!(Needs::of("a@b", &[], b"a\0b").binary);
        assert!(Needs::of("\u{e9}@b", &[], b"").smtputf8);
        assert!(Needs::of("a@b", &["x@\u{e9}.fr".into()], b"").smtputf8);
    }
}
