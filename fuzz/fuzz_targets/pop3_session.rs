//! Fuzz target: herald::fuzzing::pop3_session (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::pop3_session(data));
