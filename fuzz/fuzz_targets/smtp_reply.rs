//! Fuzz target: herald::fuzzing::smtp_reply (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::smtp_reply(data));
