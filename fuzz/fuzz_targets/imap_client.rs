//! Fuzz target: herald::fuzzing::imap_client (see src/fuzzing.rs): a whole
//! IMAP session against a server that sends these bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::imap_client(data));
