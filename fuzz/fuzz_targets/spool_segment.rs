//! Fuzz target: herald::fuzzing::spool_segment (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::spool_segment(data));
