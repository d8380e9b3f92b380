//! Fuzz target: herald::fuzzing::parse (see src/fuzzing.rs): herald_parse and
//! every accessor of the C API on any bytes, broken or nested multiparts included.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::parse(data));
