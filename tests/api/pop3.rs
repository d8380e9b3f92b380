//! POP3 wrappers: submit `herald_pop3_*_async` through the C ABI.

use std::ffi::{c_char, CString};
use std::time::Duration;

use super::*;
pub use herald::ffi::pop3::*;

impl TestClient {
    /// A POP3 client for 127.0.0.1:`port` as `user`/`pass` with `security`
    /// (and `extra` options).
    pub fn pop3(port: u16, security: i64, user: &str, pass: &str, extra: &[(u32, Val)]) -> TestClient {
        let mut opts = vec![
            (HERALD_OPT_HOST, Val::S("127.0.0.1")),
            (HERALD_OPT_PORT, Val::I(port as i64)),
            (HERALD_OPT_SECURITY, Val::I(security)),
            (HERALD_OPT_USERNAME, Val::S(user)),
            (HERALD_OPT_PASSWORD, Val::S(pass)),
        ];
        for (id, v) in extra {
            opts.push((
                *id,
                match v {
                    Val::S(s) => Val::S(s),
                    Val::I(i) => Val::I(*i),
                },
            ));
        }
        TestClient::new(HERALD_PROTOCOL_POP3, &opts).expect("POP3 client")
    }

    pub fn pop3_list(&self) -> Result<u64, u32> {
        self.submit(|cb, token, op| herald_pop3_list_async(self.c, cb, token, op))
    }

    pub fn pop3_retrieve(&self, uidl: &str) -> Result<u64, u32> {
        let u = CString::new(uidl).expect("no NUL");
        self.submit(|cb, token, op| herald_pop3_retrieve_async(self.c, u.as_ptr(), cb, token, op))
    }

    pub fn pop3_top(&self, uidl: &str, lines: u32) -> Result<u64, u32> {
        let u = CString::new(uidl).expect("no NUL");
        self.submit(|cb, token, op| herald_pop3_top_async(self.c, u.as_ptr(), lines, cb, token, op))
    }

    pub fn pop3_delete(&self, uidls: &[&str]) -> Result<u64, u32> {
        let owned: Vec<CString> = uidls.iter().map(|u| CString::new(*u).expect("no NUL")).collect();
        let ptrs: Vec<*const c_char> = owned.iter().map(|u| u.as_ptr()).collect();
        self.submit(|cb, token, op| {
            herald_pop3_delete_async(self.c, ptrs.as_ptr(), ptrs.len(), cb, token, op)
        })
    }

    /// Waits for `op` and returns its completion.
    pub fn record_of_op(&self, op: u64, timeout: Duration) -> Record {
        assert_eq!(
            self.wait(op, timeout),
            HERALD_STATUS_OK,
            "op {op} did not complete in time"
        );
        self.records()
            .into_iter()
            .find(|r| r.op == op)
            .expect("a completed op has a record")
    }

    /// Lists the maildrop and waits: (UIDL, size, message number) per message.
    pub fn pop3_list_now(&self, timeout: Duration) -> Vec<(String, u64, u64)> {
        let op = self.pop3_list().expect("list accepted");
        let r = self.record_of_op(op, timeout);
        assert!(r.ok(), "list: {r:?}");
        r.items
            .iter()
            .map(|it| {
                (
                    it.strs[&HERALD_FIELD_NAME].clone(),
                    it.ints.get(&HERALD_FIELD_SIZE).copied().unwrap_or(0),
                    it.uid,
                )
            })
            .collect()
    }
}
