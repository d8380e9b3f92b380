//! The yardstick for streaming: a minimal SMTP client that streams BDAT
//! transactions (RFC 3030 CHUNKING + RFC 2920 PIPELINING), no library.
//!
//! Per connection, after EHLO, one thread writes `MAIL`, `RCPT`, `BDAT n
//! LAST` and the message, transaction after transaction, never waiting for
//! a reply while fewer than `window` transactions are unanswered; another
//! thread reads the three replies of each transaction, checks that they are
//! 250s, and frees its slot. TCP_NODELAY on, TCP_QUICKACK before each read.
//! It does nothing else: what the network and the server allow a streaming
//! client on these connections.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::load::{schedstat_runtime, Timed, FROM, HELO, TO};

/// Most transactions the streamer keeps unanswered per connection.
pub const WINDOW: usize = 32;

fn quickack(s: &TcpStream) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and an int option.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Reads one reply (all its lines); returns its code.
fn read_code(s: &TcpStream, r: &mut impl BufRead) -> Result<u16, String> {
    let mut line = String::new();
    loop {
        line.clear();
        quickack(s);
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or(format!("bad reply {line:?}"))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
}

/// Streams `msgs` over `conns` connections (dealt out in turn), at most
/// `window` transactions unanswered on each. Returns the wall time (from
/// before connecting to the last reply) and the CPU time of its threads.
pub fn reference_bdat_stream(
    port: u16,
    conns: usize,
    msgs: &[Vec<u8>],
    window: usize,
) -> Result<Timed, String> {
    let t = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|k| {
            let mine: Vec<Vec<u8>> = msgs.iter().skip(k).step_by(conns).cloned().collect();
            std::thread::spawn(move || -> Result<Duration, String> {
                let io = |e: std::io::Error| e.to_string();
                let cpu0 = schedstat_runtime("/proc/thread-self/schedstat");
                let s = TcpStream::connect(("127.0.0.1", port)).map_err(io)?;
                s.set_nodelay(true).map_err(io)?;
                let mut r = BufReader::new(s.try_clone().map_err(io)?);
                let expect = |r: &mut BufReader<TcpStream>, want: u16| match read_code(&s, r)? {
                    c if c == want => Ok(()),
                    c => Err(format!("got {c}, wanted {want}")),
                };
                expect(&mut r, 220)?;
                (&s).write_all(format!("EHLO {HELO}\r\n").as_bytes())
                    .map_err(io)?;
                expect(&mut r, 250)?;
                // Slots: the writer takes one per transaction, the reader gives it back.
                let (free_tx, free_rx) = mpsc::sync_channel::<()>(window);
                for _ in 0..window {
                    free_tx.send(()).unwrap();
                }
                let n = mine.len();
                let reader_sock = s.try_clone().map_err(io)?;
                let reader = std::thread::spawn(move || -> Result<Duration, String> {
                    let cpu0 = schedstat_runtime("/proc/thread-self/schedstat");
                    let mut r = r;
                    for _ in 0..n {
                        for _ in 0..3 {
                            match read_code(&reader_sock, &mut r)? {
                                250 => {}
                                c => return Err(format!("got {c}, wanted 250")),
                            }
                        }
                        let _ = free_tx.send(());
                    }
                    Ok(schedstat_runtime("/proc/thread-self/schedstat") - cpu0)
                });
                let mut w = &s;
                let mut out = Vec::new();
                for m in &mine {
                    free_rx.recv().map_err(|_| "the reader stopped".to_string())?;
                    out.clear();
                    out.extend_from_slice(
                        format!(
                            "MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nBDAT {} LAST\r\n",
                            m.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(m);
                    w.write_all(&out).map_err(io)?;
                }
                let reader_cpu = reader
                    .join()
                    .map_err(|_| "the reader thread panicked".to_string())??;
                w.write_all(b"QUIT\r\n").map_err(io)?;
                Ok(schedstat_runtime("/proc/thread-self/schedstat") - cpu0 + reader_cpu)
            })
        })
        .collect();
    let mut cpu = Duration::ZERO;
    for h in threads {
        cpu += h.join().map_err(|_| "a streamer thread panicked".to_string())??;
    }
    Ok(Timed {
        wall: t.elapsed(),
        cpu,
    })
}
