//! Fuzz target: herald::fuzzing::imap_response (see src/fuzzing.rs): every
//! byte a server could send, framed into lines and literals under herald's
//! limits, then parsed (lists iterative and depth-limited) and decoded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::imap_response(data));
