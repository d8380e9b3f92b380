//! Fuzz target: herald::fuzzing::smtp_session (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::smtp_session(data));
