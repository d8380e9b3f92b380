//! Mailbox names on the wire: modified UTF-7 (RFC 3501 section 5.1.3).
//! herald's API speaks UTF-8; printable ASCII other than `&` stands for
//! itself, `&` is `&-`, and every other run of characters is UTF-16,
//! base64-encoded with `,` for `/`, between `&` and `-`.

use base64::alphabet::Alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use std::sync::LazyLock;

static ENGINE: LazyLock<GeneralPurpose> = LazyLock::new(|| {
    let alphabet = Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
        .expect("64 distinct printable characters");
    GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    )
});

fn direct(c: char) -> bool {
    ('\x20'..='\x7e').contains(&c)
}

/// Encodes a UTF-8 mailbox name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&ENGINE.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if direct(c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a name from the wire. A name that is not valid modified UTF-7
/// (some servers send raw UTF-8) is returned as it came.
pub fn decode(wire: &str) -> String {
    try_decode(wire).unwrap_or_else(|| wire.to_string())
}

fn try_decode(wire: &str) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let b64 = &after[..end];
        if b64.is_empty() {
            out.push('&');
        } else {
            let bytes = ENGINE.decode(b64).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            let s = String::from_utf16(&units).ok()?;
            // An encoded run must not hold characters that stand for themselves.
            if s.chars().any(direct) {
                return None;
            }
            out.push_str(&s);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples() {
        assert_eq!(encode("INBOX"), "INBOX");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(
            encode("~peter/mail/\u{65e5}\u{672c}\u{8a9e}/\u{53f0}\u{5317}"),
            "~peter/mail/&ZeVnLIqe-/&U,BTFw-"
        );
        assert_eq!(
            decode("~peter/mail/&ZeVnLIqe-/&U,BTFw-"),
            "~peter/mail/\u{65e5}\u{672c}\u{8a9e}/\u{53f0}\u{5317}"
        );
        assert_eq!(decode("Tom &- Jerry"), "Tom & Jerry");
    }

    #[test]
    fn round_trips() {
        for name in [
            "Entw\u{fc}rfe",
            "Gesendete Objekte",
            "\u{1F4E8} emoji",
            "a&b&&c",
            "\u{e9}",
            "Ma\u{f1}ana/\u{41f}\u{440}\u{438}\u{432}\u{435}\u{442}",
        ] {
            let w = encode(name);
            assert!(w.is_ascii(), "{w}");
            assert_eq!(decode(&w), name, "{w}");
        }
    }

    #[test]
    fn invalid_input_is_kept_as_is() {
        assert_eq!(decode("broken&abc"), "broken&abc");
        assert_eq!(decode("caf\u{e9}"), "caf\u{e9}");
    }
}
