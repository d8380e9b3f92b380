//! herald's benchmark harness: a TCP delay proxy to emulate a round trip,
//! and (via `support`) the same private smtp-sink and Dovecot servers the
//! tests use.

pub mod delay_proxy;

#[path = "../../tests/support/mod.rs"]
pub mod support;
