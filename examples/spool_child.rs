//! A sender for the spool's crash test (tests/spool.rs), killed at random
//! points by it: sends messages `m<START>`..`m<END-1>` through an SMTP
//! server with a spool, from THREADS threads, and prints `ok m<i>` on
//! stdout (unbuffered) right after `herald_send_spooled_async` returned OK
//! for it (or `herald_send_batch_async` accepted it, with BATCH > 1
//! messages a call): what the test counts as accepted.
//!
//! Usage: spool_child PORT SPOOL_DIR START END THREADS SYNC [BATCH]

use std::ffi::{c_void, CString};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use herald::ffi::client::*;
use herald::ffi::completion::*;
use herald::ffi::message::*;
use herald::ffi::options::*;
use herald::ffi::spool::*;
use herald::ffi::*;

extern "C" fn ignore(_: *const herald_completion) {}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

struct Client(*mut herald_client);
// SAFETY: herald clients may be used from any thread.
unsafe impl Send for Client {}
unsafe impl Sync for Client {}

fn client(port: i64, spool: &str, sync: i64) -> Client {
    let o = herald_options_new(HERALD_PROTOCOL_SMTP);
    assert_eq!(
        herald_options_set_str(o, HERALD_OPT_HOST, c("127.0.0.1").as_ptr()),
        0
    );
    assert_eq!(herald_options_set_int(o, HERALD_OPT_PORT, port), 0);
    assert_eq!(
        herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE),
        0
    );
    assert_eq!(
        herald_options_set_str(o, HERALD_OPT_SPOOL_DIR, c(spool).as_ptr()),
        0
    );
    assert_eq!(herald_options_set_int(o, HERALD_OPT_SPOOL_SYNC, sync), 0);
    let mut cl = std::ptr::null_mut();
    let s = herald_client_new(o, &mut cl);
    herald_options_free(o);
    assert_eq!(s, 0, "client");
    Client(cl)
}

/// Sends messages `from..to` in one `herald_send_batch_async`: how many
/// were accepted (the first ones).
fn send_batch(cl: &Client, from: usize, to: usize) -> usize {
    let msgs: Vec<*mut herald_message> = (from..to).map(message).collect();
    let ptrs: Vec<*const herald_message> = msgs.iter().map(|&m| m as *const _).collect();
    let mut ops = vec![0; ptrs.len()];
    let mut n = 0;
    herald_send_batch_async(
        cl.0,
        ptrs.as_ptr(),
        ptrs.len(),
        Some(ignore),
        std::ptr::null(),
        ops.as_mut_ptr(),
        &mut n,
    );
    for m in msgs {
        herald_message_free(m);
    }
    n
}

/// Message `i`, its Message-ID `<m<i>@spool.test>`.
fn message(i: usize) -> *mut herald_message {
    let m = herald_message_new();
    herald_message_set_from(m, c("sender@example.org").as_ptr());
    herald_message_add_to(m, c("rcpt@example.org").as_ptr());
    herald_message_set_subject(m, c(&format!("spooled {i}")).as_ptr());
    let mid = format!("<m{i}@spool.test>");
    herald_message_add_header(m, c("Message-ID").as_ptr(), c(&mid).as_ptr());
    herald_message_set_text(m, c(&"crash test line\n".repeat(64)).as_ptr());
    m
}

/// Sends message `i`: true when accepted.
fn send(cl: &Client, i: usize) -> bool {
    let m = message(i);
    let id = c(&format!("m{i}"));
    let mut op = 0;
    let s = herald_send_spooled_async(
        cl.0,
        m,
        id.as_ptr(),
        Some(ignore),
        std::ptr::null_mut::<c_void>(),
        &mut op,
    );
    herald_message_free(m);
    s == HERALD_STATUS_OK
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let port: i64 = a[1].parse().unwrap();
    let (start, end): (usize, usize) = (a[3].parse().unwrap(), a[4].parse().unwrap());
    let threads: usize = a[5].parse().unwrap();
    let cl = Arc::new(client(port, &a[2], a[6].parse().unwrap()));
    let batch: usize = a.get(7).map_or(1, |b| b.parse().unwrap());
    let next = Arc::new(AtomicUsize::new(start));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (cl, next) = (cl.clone(), next.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(batch, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let to = (i + batch).min(end);
                let accepted = if batch > 1 {
                    i..i + send_batch(&cl, i, to)
                } else {
                    i..i + send(&cl, i) as usize
                };
                for k in accepted {
                    // One write(2) per line, straight to the pipe.
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ok m{k}");
                    let _ = out.flush();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    herald_client_flush(cl.0, -1);
    herald_client_free(cl.0);
}
