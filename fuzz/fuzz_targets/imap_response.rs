//! Fuzz target: IMAP responses through the IMAP client
//! (herald::fuzzing::imap_response, see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::imap_response(data));
