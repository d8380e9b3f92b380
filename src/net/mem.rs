//! An in-memory stream standing in for a server: canned server bytes
//! handed out in reads of at most `chunk` bytes (so framing meets every
//! split), what the client wrote kept. With exchanges, a server reply is
//! released only once the client has written what precedes it.
//! Used by the unit tests of every protocol and by the fuzz entry points.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Duration;

/// A scripted peer over memory.
#[derive(Debug, Default)]
pub struct MemStream {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    /// What the client wrote.
    pub output: Vec<u8>,
    /// Writes fail (broken pipe) once the output would pass this many bytes.
    pub write_limit: Option<usize>,
    /// Scripted exchanges still to come: (what the client writes, what the server answers).
    exchanges: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Where in `output` the next exchange's client bytes start.
    matched: usize,
    /// Reads never end: each waits `.1` and yields the byte `.0`.
    endless: Option<(u8, Duration)>,
}

impl MemStream {
    /// A server that sends `input`, whole reads at a time.
    pub fn new(input: impl AsRef<[u8]>) -> MemStream {
        MemStream {
            input: input.as_ref().to_vec(),
            chunk: usize::MAX,
            ..Default::default()
        }
    }

    /// The same, handing out at most `chunk` bytes per read (at least 1).
    pub fn chunked(input: impl AsRef<[u8]>, chunk: usize) -> MemStream {
        MemStream {
            chunk: chunk.max(1),
            ..MemStream::new(input)
        }
    }

    /// A server that sends `greeting`, then answers each client write
    /// listed in `exchanges` (client bytes, server bytes) in turn; a client
    /// writing something else reads an `InvalidInput` error.
    pub fn scripted(greeting: impl AsRef<[u8]>, exchanges: &[(&str, &str)]) -> MemStream {
        MemStream {
            exchanges: exchanges
                .iter()
                .map(|(c, s)| (c.as_bytes().to_vec(), s.as_bytes().to_vec()))
                .collect(),
            ..MemStream::new(greeting)
        }
    }

    /// A server that trickles `byte` every `every`, forever.
    pub fn endless(byte: u8, every: Duration) -> MemStream {
        MemStream {
            chunk: 1,
            endless: Some((byte, every)),
            ..Default::default()
        }
    }

    /// The fuzz targets' replay: the first byte of `data` picks the read
    /// size (1..=256), the rest is what the server sends.
    pub fn replay(data: &[u8]) -> MemStream {
        match data.split_first() {
            Some((c, rest)) => MemStream::chunked(rest, *c as usize + 1),
            None => MemStream::chunked(data, 1),
        }
    }

    /// What the client wrote, as text (lossy).
    pub fn written(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// How many of the server's bytes the client has read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Are server bytes waiting (a read would not block)?
    pub fn readable_now(&self) -> bool {
        self.pos < self.input.len()
    }

    /// Releases the next scripted reply once the client wrote its cue.
    fn advance_script(&mut self) -> io::Result<()> {
        let Some((cue, _)) = self.exchanges.front() else {
            return Ok(());
        };
        let written = &self.output[self.matched..];
        if written.len() < cue.len() {
            if cue.starts_with(written) {
                return Ok(());
            }
        } else if written.starts_with(cue) {
            let (cue, reply) = self.exchanges.pop_front().expect("front exists");
            self.matched += cue.len();
            self.input.extend_from_slice(&reply);
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the script expected {:?}, the client wrote {:?}",
                String::from_utf8_lossy(cue),
                String::from_utf8_lossy(written)
            ),
        ))
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((byte, every)) = self.endless {
            std::thread::sleep(every);
            return match buf.first_mut() {
                Some(b) => {
                    *b = byte;
                    Ok(1)
                }
                None => Ok(0),
            };
        }
        if self.pos == self.input.len() {
            self.advance_script()?;
        }
        let n = buf.len().min(self.chunk).min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self
            .write_limit
            .is_some_and(|max| self.output.len() + buf.len() > max)
        {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "broken pipe"));
        }
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_output() {
        let mut m = MemStream::chunked("abcdef", 4);
        let mut b = [0u8; 10];
        assert_eq!(m.read(&mut b).unwrap(), 4);
        assert_eq!(m.read(&mut b).unwrap(), 2);
        assert_eq!(m.read(&mut b).unwrap(), 0);
        m.write_all(b"hi").unwrap();
        assert_eq!(m.written(), "hi");
        m.write_limit = Some(3);
        assert_eq!(m.write(b"xy").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn exchanges_answer_in_turn() {
        let mut m = MemStream::scripted("220 hi\r\n", &[("EHLO x\r\n", "250 ok\r\n")]);
        let mut b = [0u8; 64];
        let n = m.read(&mut b).unwrap();
        assert_eq!(&b[..n], b"220 hi\r\n");
        m.write_all(b"EHLO").unwrap();
        assert_eq!(m.read(&mut b).unwrap(), 0, "no reply before the whole cue");
        m.write_all(b" x\r\n").unwrap();
        let n = m.read(&mut b).unwrap();
        assert_eq!(&b[..n], b"250 ok\r\n");
        let mut m = MemStream::scripted("", &[("QUIT\r\n", "221 bye\r\n")]);
        m.write_all(b"RSET\r\n").unwrap();
        assert_eq!(m.read(&mut b).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
