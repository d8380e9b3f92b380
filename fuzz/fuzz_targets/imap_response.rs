//! The IMAP response reader and parser: every byte a server could send,
//! framed into lines and literals under herald's limits, then parsed
//! (lists iterative and depth-limited) and FETCH data decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = herald::imap::fuzz_responses(data);
});
