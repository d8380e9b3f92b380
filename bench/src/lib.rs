//! herald's benchmark harness: a TCP delay proxy to emulate a round trip,
//! a counting smtp-sink for throughput runs, the two senders compared
//! (`smtp-source` and herald through its C ABI), and a minimal BDAT streamer
//! as the yardstick for CHUNKING servers. The private smtp-sink, Dovecot and
//! Postfix servers the tests use come from `herald_testservers`.

pub mod delay_proxy;
pub mod imap;
pub mod load;
pub mod sink;
pub mod streamer;
