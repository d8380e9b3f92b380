//! Fuzz target: herald::fuzzing::imap_bodystructure (see src/fuzzing.rs): a FETCH
//! BODYSTRUCTURE walked into its node list (iterative, bounded), and the envelope extras.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::imap_bodystructure(data));
