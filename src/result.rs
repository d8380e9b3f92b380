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

/// Most change items one notification lists (IMAP IDLE: `imap::sync`);
/// beyond, its first item says HERALD_FIELD_TRUNCATED = 1.
pub const MAX_CHANGE_ITEMS: usize = 10_000;

/// A notification that replaces one not yet delivered (notifications are
/// coalesced): the newer's first item (the mailbox's state) stands, and
/// the change items of both are kept, oldest first, at most
/// [`MAX_CHANGE_ITEMS`] (beyond, the first item says TRUNCATED).
pub fn coalesce(older: Option<ResultData>, newer: &mut Option<ResultData>) {
    let (Some(old), Some(new)) = (older, newer.as_mut()) else {
        return;
    };
    if new.items.is_empty() {
        return;
    }
    let lost_before = old
        .items
        .first()
        .is_some_and(|i| i.int_field(field::TRUNCATED).is_some());
    let mut changes: Vec<ResultItem> = old.items.into_iter().skip(1).collect();
    if changes.is_empty() && !lost_before {
        return;
    }
    changes.extend(new.items.drain(1..));
    if changes.len() > MAX_CHANGE_ITEMS || lost_before {
        changes.truncate(MAX_CHANGE_ITEMS);
        new.items[0].set_int(field::TRUNCATED, 1);
    }
    new.items.extend(changes);
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

    /// Replaces this notification, not yet delivered, with a newer one
    /// (notifications are coalesced), keeping what both say changed ([`coalesce`]).
    pub fn replace_pending(&mut self, newer: Completion) {
        let older = std::mem::replace(self, newer);
        coalesce(older.result, &mut self.result);
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
    fn coalesced_notifications_keep_every_change_within_a_bound() {
        let note = |exists: u64, changes: std::ops::Range<u64>| {
            let mut items = vec![ResultItem::new(0).with_int(field::EXISTS, exists)];
            items.extend(changes.map(|u| ResultItem::new(u).with_int(field::VANISHED, 1)));
            Some(ResultData::new(items))
        };
        let mut newer = note(5, 3..5);
        coalesce(note(7, 1..3), &mut newer);
        let r = newer.unwrap();
        assert_eq!(r.items[0].int_field(field::EXISTS), Some(5));
        assert_eq!(
            r.items[1..].iter().map(|i| i.uid).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(r.items[0].int_field(field::TRUNCATED), None);
        let mut newer = note(1, 0..MAX_CHANGE_ITEMS as u64);
        coalesce(note(2, 0..5), &mut newer);
        let r = newer.unwrap();
        assert_eq!(r.items.len(), MAX_CHANGE_ITEMS + 1);
        assert_eq!(r.items[0].int_field(field::TRUNCATED), Some(1));
    }

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
