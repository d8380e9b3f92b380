//! What an operation hands back: the completion and its op-specific result.

pub use crate::data::{c_string, field, OpId, ResultData, ResultItem};
use crate::status::{Error, Status};

/// A successful outcome: the server's last reply and an optional result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Success {
    pub reply_code: i32,
    pub detail: String,
    pub result: Option<ResultData>,
}

impl Success {
    pub fn new(reply_code: i32, detail: impl Into<String>) -> Self {
        Success {
            reply_code,
            detail: detail.into(),
            result: None,
        }
    }

    pub fn with_result(mut self, result: ResultData) -> Self {
        self.result = Some(result);
        self
    }
}

/// How an op ended.
pub type Outcome = Result<Success, Error>;

/// An op's completion as herald keeps it; the C layer turns it into a
/// `herald_completion`.
#[derive(Debug)]
pub struct Completion {
    pub op: OpId,
    pub status: Status,
    pub cancelled: bool,
    /// The caller's user token, carried opaquely.
    pub token: usize,
    pub reply_code: i32,
    pub detail: String,
    pub result: Option<ResultData>,
    /// Runs when herald lets go of the completion: after its callback
    /// returned, or when it was taken from the completion queue. A
    /// streaming op counts what it has handed out with it.
    pub on_release: Option<Release>,
}

/// A hook run once, when the completion that holds it is dropped.
pub struct Release(Option<Box<dyn FnOnce() + Send>>);

impl Release {
    pub fn new(f: impl FnOnce() + Send + 'static) -> Release {
        Release(Some(Box::new(f)))
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Release")
    }
}

impl Completion {
    pub fn from_outcome(op: OpId, token: usize, outcome: Outcome) -> Completion {
        match outcome {
            Ok(s) => Completion {
                op,
                status: Status::Ok,
                cancelled: false,
                token,
                reply_code: s.reply_code,
                detail: s.detail,
                result: s.result,
                on_release: None,
            },
            Err(mut e) => Completion {
                op,
                status: e.status,
                cancelled: e.status == Status::Cancelled,
                token,
                reply_code: e.reply_code,
                result: e.take_partial(),
                detail: e.detail,
                on_release: None,
            },
        }
    }

    /// A cancelled completion; `partial` carries what was done before the cancel
    /// took effect (for example the UIDs of messages already appended).
    pub fn cancelled(op: OpId, token: usize, detail: &str, partial: Option<ResultData>) -> Completion {
        Completion {
            op,
            status: Status::Cancelled,
            cancelled: true,
            token,
            reply_code: 0,
            detail: detail.to_string(),
            result: partial,
            on_release: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_what_was_done_before_it() {
        let done = ResultData::new(vec![ResultItem::new(7), ResultItem::new(8)]);
        let e = Error::new(Status::Io, "lost").with_partial(done.clone());
        let c = Completion::from_outcome(1, 0, Err(e));
        assert_eq!((c.status, c.cancelled), (Status::Io, false));
        assert_eq!(c.result, Some(done));
        let c = Completion::from_outcome(2, 0, Err(Error::new(Status::Io, "lost")));
        assert_eq!(c.result, None);
    }
}
