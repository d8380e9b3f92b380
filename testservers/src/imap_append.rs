//! A minimal IMAP client (standard library only, nothing from herald) that
//! stores messages with APPEND: an independent way to put mail into a
//! [`Dovecot`](super::Dovecot) maildrop, byte for byte as given, for tests
//! and benchmarks of herald's readers.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Reads lines until one starts with `tag` (a tagged reply); panics unless
/// it is OK. Returns the untagged lines before it.
fn until_tagged(r: &mut BufReader<TcpStream>, tag: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read from the IMAP server");
        assert!(n > 0, "the IMAP server closed the connection; saw {seen:?}");
        if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
            assert!(rest.starts_with("OK"), "{tag}: {line:?} (after {seen:?})");
            return seen;
        }
        seen.push(line);
    }
}

/// Stores each of `messages` in `user`'s `mailbox` over plain IMAP on
/// 127.0.0.1:`port` (LOGIN, one APPEND with a synchronizing literal per
/// message, LOGOUT). Panics on any refusal.
pub fn imap_append(port: u16, user: &str, pass: &str, mailbox: &str, messages: &[Vec<u8>]) {
    let s = TcpStream::connect((crate::HOST, port)).expect("connect to IMAP");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting:?}");
    write!(w, "a0 LOGIN \"{user}\" \"{pass}\"\r\n").unwrap();
    until_tagged(&mut r, "a0");
    for (i, m) in messages.iter().enumerate() {
        let tag = format!("a{}", i + 1);
        write!(w, "{tag} APPEND \"{mailbox}\" {{{}}}\r\n", m.len()).unwrap();
        let mut cont = String::new();
        r.read_line(&mut cont).unwrap();
        assert!(cont.starts_with('+'), "APPEND: {cont:?}");
        w.write_all(m).unwrap();
        w.write_all(b"\r\n").unwrap();
        until_tagged(&mut r, &tag);
    }
    write!(w, "z LOGOUT\r\n").unwrap();
    until_tagged(&mut r, "z");
}
