//! The two sides of a throughput run: Postfix's `smtp-source` and herald
//! through its C ABI, sending the same number of 10 KB messages over the
//! same number of connections.

use std::ffi::{c_void, CStr, CString};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::ffi::client::{herald_client, herald_client_flush, herald_client_free, herald_client_new};
use herald::ffi::completion::{herald_completion, herald_op};
use herald::ffi::options::{
    herald_options_free, herald_options_new, herald_options_set_int, herald_options_set_str,
    HERALD_OPT_HELO_NAME, HERALD_OPT_HOST, HERALD_OPT_MAX_CONNECTIONS, HERALD_OPT_PORT,
    HERALD_OPT_QUEUE_LIMIT, HERALD_OPT_SECURITY, HERALD_PROTOCOL_SMTP, HERALD_SECURITY_NONE,
};
use herald::ffi::smtp::herald_send_raw_async;
use herald::ffi::{herald_last_error, HERALD_STATUS_CANCELLED, HERALD_STATUS_OK};

pub const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";
pub const FROM: &str = "a@x";
pub const TO: &str = "b@y";
pub const HELO: &str = "bench.test";
/// smtp-source's `-l`: the body's bytes, line ends included.
pub const BODY_BYTES: usize = 10240;

/// RFC 5322 date of `t` in UTC, e.g. `Mon, 23 Nov 2026 08:01:41 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// A raw RFC 5322 message shaped like smtp-source's `-l 10240` one: the
/// same four header lines in the same form (From, To, Date, Message-Id), a
/// blank line, and a body of exactly [`BODY_BYTES`] bytes on the wire (128
/// lines of 78 characters + CRLF). CRLF line ends, ASCII, no line starts
/// with a dot. 10,356 bytes in all; smtp-source's are 10,354 to 10,358
/// (its Message-Id varies in length).
pub fn bench_message(seq: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{FROM}>\r\nTo: <{TO}>\r\nDate: {} (UTC)\r\nMessage-Id: <{seq:08x}.{:04x}.0000@{HELO}>\r\n\r\n",
        rfc5322_date(SystemTime::now()),
        std::process::id() & 0xffff
    )
    .into_bytes();
    let line = 78;
    for i in 0..BODY_BYTES / (line + 2) {
        let tag = format!("{i}");
        m.extend_from_slice(tag.as_bytes());
        m.extend(std::iter::repeat_n(b'X', line - tag.len()));
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// The CPU time in a `/proc/.../schedstat` file (its first field, ns).
pub fn schedstat_runtime(path: &str) -> Duration {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// CPU time of this process's waited-for children (user + system).
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of this process's threads named `herald-*` (herald's workers
/// and delivery thread), while they exist.
fn herald_threads_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("herald-")))
        .map(|t| schedstat_runtime(&t.path().join("schedstat").to_string_lossy()))
        .sum()
}

/// A sender's run: wall time and the CPU time it used.
pub struct Timed {
    pub wall: Duration,
    pub cpu: Duration,
}

/// Runs `smtp-source -s CONNS -d -m N -l 10240 -M bench.test -f a@x -t b@y
/// 127.0.0.1:PORT` and returns how long it ran (spawn to exit) and its CPU time.
pub fn smtp_source(port: u16, conns: usize, n: usize) -> Result<Timed, String> {
    let cpu0 = children_cpu();
    let t = Instant::now();
    let out = Command::new(SMTP_SOURCE)
        .args(["-s", &conns.to_string(), "-d", "-m", &n.to_string()])
        .args(["-l", &BODY_BYTES.to_string(), "-M", HELO, "-f", FROM, "-t", TO])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("run {SMTP_SOURCE}: {e}"))?;
    let took = t.elapsed();
    let cpu = children_cpu() - cpu0;
    if !out.status.success() {
        return Err(format!(
            "smtp-source failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Timed { wall: took, cpu })
}

/// What the completion callback saw.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicUsize,
    pub failed: AtomicUsize,
    /// Of the failed: completed cancelled (`cancelled == 1`, CANCELLED).
    pub cancelled: AtomicUsize,
    pub first_error: Mutex<Option<String>>,
    /// When the first and the last completion came.
    pub times: Mutex<Option<(Instant, Instant)>>,
}

/// The completion callback: counts outcomes into the `Tally` the user token
/// points at.
///
/// # Safety
/// Only for herald to call, for ops whose user token is a `*const Tally`
/// that outlives them.
pub unsafe extern "C" fn tally_callback(c: *const herald_completion) {
    // SAFETY: herald passes a completion valid for this call; its token is a
    // `&Tally` that outlives the client (the caller flushes, then frees it).
    let c = unsafe { &*c };
    let tally = unsafe { &*(c.user_token as *const Tally) };
    let now = Instant::now();
    {
        let mut t = tally.times.lock().unwrap();
        let first = t.map_or(now, |(f, _)| f);
        *t = Some((first, now));
    }
    if c.status == HERALD_STATUS_OK && c.reply_code == 250 {
        tally.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.failed.fetch_add(1, Ordering::Relaxed);
        if c.cancelled == 1 && c.status == HERALD_STATUS_CANCELLED {
            tally.cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut e = tally.first_error.lock().unwrap();
        if e.is_none() {
            // SAFETY: never NULL, valid during the callback.
            let detail = unsafe { CStr::from_ptr(c.detail) }.to_string_lossy();
            *e = Some(format!("status {} reply {}: {detail}", c.status, c.reply_code));
        }
    }
}

pub fn last_error() -> String {
    // SAFETY: herald returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(herald_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// An SMTP client through the C ABI: SECURITY NONE, MAX_CONNECTIONS `conns`,
/// `extra` more integer options.
pub fn new_client(port: u16, conns: usize, extra: &[(u32, i64)]) -> *mut herald_client {
    let o = herald_options_new(HERALD_PROTOCOL_SMTP);
    assert!(!o.is_null());
    let host = CString::new("127.0.0.1").unwrap();
    let helo = CString::new(HELO).unwrap();
    let mut st = herald_options_set_str(o, HERALD_OPT_HOST, host.as_ptr());
    st |= herald_options_set_str(o, HERALD_OPT_HELO_NAME, helo.as_ptr());
    st |= herald_options_set_int(o, HERALD_OPT_PORT, port as i64);
    st |= herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE);
    st |= herald_options_set_int(o, HERALD_OPT_MAX_CONNECTIONS, conns as i64);
    for &(k, v) in extra {
        st |= herald_options_set_int(o, k, v);
    }
    assert_eq!(st, HERALD_STATUS_OK, "options: {}", last_error());
    let mut c: *mut herald_client = std::ptr::null_mut();
    let st = herald_client_new(o, &mut c);
    herald_options_free(o);
    assert_eq!(st, HERALD_STATUS_OK, "herald_client_new: {}", last_error());
    c
}

/// The envelope as C sees it.
pub struct Envelope {
    pub from: CString,
    pub rcpt: CString,
}

impl Default for Envelope {
    fn default() -> Self {
        Envelope {
            from: CString::new(FROM).unwrap(),
            rcpt: CString::new(TO).unwrap(),
        }
    }
}

impl Envelope {
    /// One `herald_send_raw_async` call, as a C program makes it.
    pub fn send(&self, c: *mut herald_client, msg: &[u8], tally: &Tally) -> herald_op {
        let rcpts = [self.rcpt.as_ptr()];
        let mut op: herald_op = 0;
        let st = herald_send_raw_async(
            c,
            self.from.as_ptr(),
            rcpts.as_ptr(),
            1,
            msg.as_ptr(),
            msg.len(),
            Some(tally_callback),
            tally as *const Tally as *mut c_void,
            &mut op,
        );
        assert_eq!(st, HERALD_STATUS_OK, "herald_send_raw_async: {}", last_error());
        op
    }
}

/// Reads one SMTP reply (all its lines); returns its code.
fn read_code(r: &mut impl BufRead) -> Result<u16, String> {
    let mut line = String::new();
    loop {
        line.clear();
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

/// A minimal pipelining SMTP client, no library: raw sockets and the
/// exchange herald makes (EHLO; then MAIL, RCPT, DATA in one write; on
/// 354 the content, its dot and the next message's MAIL, RCPT, DATA in one
/// write), one thread per connection, messages dealt out in turn. It
/// checks every reply and does nothing else: what the network and the
/// sink allow a pipelining client on these connections.
/// Returns the wall time and the CPU time its threads used.
pub fn reference_pipelined(port: u16, conns: usize, msgs: &[Vec<u8>]) -> Result<Timed, String> {
    let t = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|k| {
            let mine: Vec<Vec<u8>> = msgs.iter().skip(k).step_by(conns).cloned().collect();
            std::thread::spawn(move || -> Result<Duration, String> {
                let cpu0 = schedstat_runtime("/proc/thread-self/schedstat");
                let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
                let mut w = s;
                let expect = |r: &mut BufReader<TcpStream>, want: u16| match read_code(r)? {
                    c if c == want => Ok(()),
                    c => Err(format!("got {c}, wanted {want}")),
                };
                let io = |e: std::io::Error| e.to_string();
                expect(&mut r, 220)?;
                w.write_all(format!("EHLO {HELO}\r\n").as_bytes()).map_err(io)?;
                expect(&mut r, 250)?;
                let env = format!("MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\n");
                if !mine.is_empty() {
                    w.write_all(env.as_bytes()).map_err(io)?;
                }
                let mut out = Vec::new();
                for (i, m) in mine.iter().enumerate() {
                    expect(&mut r, 250)?;
                    expect(&mut r, 250)?;
                    expect(&mut r, 354)?;
                    // The bench messages need no dot-stuffing (checked in tests).
                    out.clear();
                    out.extend_from_slice(m);
                    out.extend_from_slice(b".\r\n");
                    if i + 1 < mine.len() {
                        out.extend_from_slice(env.as_bytes());
                    }
                    w.write_all(&out).map_err(io)?;
                    expect(&mut r, 250)?;
                }
                w.write_all(b"QUIT\r\n").map_err(io)?;
                Ok(schedstat_runtime("/proc/thread-self/schedstat") - cpu0)
            })
        })
        .collect();
    let mut cpu = Duration::ZERO;
    for h in threads {
        cpu += h
            .join()
            .map_err(|_| "a reference client thread panicked".to_string())??;
    }
    Ok(Timed {
        wall: t.elapsed(),
        cpu,
    })
}

/// A herald run's outcome.
pub struct HeraldRun {
    pub elapsed: Duration,
    /// From the start to the first and to the last completion.
    pub first_done: Duration,
    pub last_done: Duration,
    /// CPU time of herald's threads plus the calling thread's from
    /// `herald_client_new` to the flush's return.
    pub cpu: Duration,
    pub ok: usize,
    pub failed: usize,
    pub first_error: Option<String>,
}

/// Sends every message in `msgs` through one client with `conns`
/// connections, the way a C program would: `herald_client_new`, one
/// `herald_send_raw_async` per message with a completion callback, then
/// `herald_client_flush`. Timed from before `herald_client_new` (which
/// connects lazily) to the return of the flush, i.e. until every
/// completion callback has run. `herald_client_free` comes after.
pub fn herald_send(port: u16, conns: usize, msgs: &[Vec<u8>]) -> HeraldRun {
    let tally = Tally::default();
    let env = Envelope::default();
    let limit = (msgs.len() as i64).max(100_000);
    let own0 = schedstat_runtime("/proc/thread-self/schedstat");
    let t = Instant::now();
    let c = new_client(port, conns, &[(HERALD_OPT_QUEUE_LIMIT, limit)]);
    for m in msgs {
        env.send(c, m, &tally);
    }
    let st = herald_client_flush(c, 600_000);
    let elapsed = t.elapsed();
    let cpu = schedstat_runtime("/proc/thread-self/schedstat") - own0 + herald_threads_cpu();
    assert_eq!(st, HERALD_STATUS_OK, "herald_client_flush: {}", last_error());
    herald_client_free(c);
    let first_error = tally.first_error.lock().unwrap().take();
    let (first, last) = tally.times.lock().unwrap().unwrap_or((t, t));
    HeraldRun {
        elapsed,
        first_done: first - t,
        last_done: last - t,
        cpu,
        ok: tally.ok.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
        first_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_422_101);
        assert_eq!(rfc5322_date(t), "Mon, 23 Nov 2026 08:21:41 +0000");
    }

    #[test]
    fn message_shape() {
        let m = bench_message(7);
        let text = String::from_utf8(m.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(head.lines().count(), 4);
        assert_eq!(body.len(), BODY_BYTES);
        assert_eq!(m.len(), 10_356);
        assert!(body.split("\r\n").all(|l| l.len() == 78 || l.is_empty()));
        assert!(!m.windows(3).any(|w| w == b"\n.."));
    }
}
