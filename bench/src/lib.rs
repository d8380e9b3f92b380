//! herald's benchmark harness: a TCP delay proxy to emulate a round trip,
//! a counting smtp-sink for throughput runs, the two senders compared
//! (`smtp-source` and herald through its C ABI). The private smtp-sink and
//! Dovecot servers the tests use come from `herald_testservers`.

pub mod delay_proxy;
pub mod load;
pub mod sink;
