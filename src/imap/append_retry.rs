//! Bulk append on servers that refuse a whole MULTIAPPEND batch for one
//! bad message (Cyrus does, for a NUL byte or a bare LF: RFC 3502 makes a
//! MULTIAPPEND all or nothing). Such a batch is sent again one message at
//! a time, after the rest of the op, so the good messages are stored; the
//! result then names each refused message (HERALD_FIELD_INDEX, its place
//! in the call) with the server's reply (HERALD_FIELD_REPLY_TEXT).
//!
//! Not retried: a refusal whose response code says the mailbox itself is
//! the problem (TRYCREATE, OVERQUOTA ...), which one message at a time
//! would only repeat; and when every message of a retried batch is refused
//! alone too, the others are not tried either.

use super::parse::StatusLine;
use super::{AppendRun, AppendState, Session};
use crate::result::{field, ResultItem};
use crate::status::{Error, Result};

/// Response codes (RFC 3501, 5530) that refuse the mailbox, not a message.
const MAILBOX_CODES: [&str; 8] = [
    "TRYCREATE",
    "NONEXISTENT",
    "OVERQUOTA",
    "NOPERM",
    "LIMIT",
    "UNAVAILABLE",
    "INUSE",
    "ALREADYEXISTS",
];

/// What a bulk append keeps for the retry.
#[derive(Default)]
pub(super) struct Retry {
    /// Batches refused whole, to send again one by one: (first, count).
    batches: Vec<(usize, usize)>,
    /// Messages refused on their own: (index, the server's reply).
    refusals: Vec<(usize, String)>,
    /// The first of those refusals, for the op's status and detail.
    pub(super) first_refusal: Option<Error>,
    /// The one-by-one pass is running: a refusal names one message and the others go on.
    retrying: bool,
}

impl AppendState {
    /// A NO or BAD to the APPEND of messages `first .. first + count`.
    pub(super) fn on_refusal(&mut self, first: usize, count: usize, status: &StatusLine) {
        let whole_mailbox = status
            .code_name()
            .is_some_and(|c| MAILBOX_CODES.contains(&c.as_str()));
        let what = if count == 1 {
            format!("APPEND of message {}", first + 1)
        } else {
            format!("APPEND of messages {} to {}", first + 1, first + count)
        };
        if count > 1 && !whole_mailbox && !self.retry.retrying {
            self.retry.batches.push((first, count));
            return;
        }
        if count == 1 {
            self.retry.refusals.push((first, status.detail()));
            if self.retry.retrying && !whole_mailbox {
                self.retry
                    .first_refusal
                    .get_or_insert_with(|| status.error(&what));
                return;
            }
        }
        if self.refused.is_none() {
            self.refused = Some(status.error(&what));
        }
    }

    /// The op's result: the UIDs appended, in order; once a message was
    /// refused, one item per message tried (INDEX), refused ones with uid 0
    /// and REPLY_TEXT.
    pub(super) fn result_items(&self) -> Vec<ResultItem> {
        let mut items = self.placed_items();
        if let Some(v) = self.uidvalidity {
            for it in items.iter_mut().filter(|it| it.uid > 0) {
                it.set_int(field::UIDVALIDITY, u64::from(v));
            }
        }
        items
    }

    /// One item per message appended (UIDs only when the server took all).
    fn placed_items(&self) -> Vec<ResultItem> {
        if self.retry.refusals.is_empty() {
            return self.uids.iter().flatten().map(|&u| ResultItem::new(u)).collect();
        }
        let place = |i: usize| ResultItem::new(0).with_int(field::INDEX, i as u64 + 1);
        (0..self.uids.len())
            .filter_map(|i| match self.uids[i] {
                Some(uid) => {
                    let mut item = place(i);
                    item.uid = uid;
                    Some(item)
                }
                None => self
                    .retry
                    .refusals
                    .iter()
                    .find(|(k, _)| *k == i)
                    .map(|(_, reply)| place(i).with_str(field::REPLY_TEXT, reply)),
            })
            .collect()
    }
}

/// Sends the batches refused whole again, one message per APPEND.
pub(super) fn retry_batches(s: &mut Session, run: &mut AppendRun, st: &mut AppendState) -> Result<()> {
    let batches = std::mem::take(&mut st.retry.batches);
    if batches.is_empty() || st.refused.is_some() {
        return Ok(());
    }
    run.multi = false;
    st.retry.retrying = true;
    for (first, count) in batches {
        if run.t.cancel_requested() {
            break;
        }
        run.total += run.messages[first..first + count]
            .iter()
            .map(|m| m.len() as u64)
            .sum::<u64>();
        let before = st.retry.refusals.len();
        run.send_range(s, st, first..first + count)?;
        if st.refused.is_some() || st.retry.refusals.len() - before == count {
            // Refused alone too, every one: not one bad message. Stop here.
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::parse::Cond;
    use std::collections::VecDeque;

    fn state(n: usize) -> AppendState {
        AppendState {
            uids: vec![None; n],
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            refused: None,
            give_up: None,
            retry: Retry::default(),
            uidvalidity: None,
        }
    }

    fn no(code: Option<&str>, text: &str) -> StatusLine {
        StatusLine {
            cond: Cond::No,
            code: code.map(str::to_string),
            text: text.to_string(),
        }
    }

    #[test]
    fn a_batch_refused_whole_is_kept_for_the_retry_unless_the_mailbox_is_refused() {
        let mut st = state(10);
        st.on_refusal(0, 5, &no(None, "Message contains NUL characters"));
        assert!(st.refused.is_none());
        assert_eq!(st.retry.batches, vec![(0, 5)]);
        st.on_refusal(5, 5, &no(Some("TRYCREATE"), "Mailbox does not exist"));
        assert!(st.refused.is_some(), "a mailbox-level refusal ends the op");
        assert_eq!(st.retry.batches.len(), 1);
    }

    #[test]
    fn in_the_retry_a_refusal_names_its_message_and_the_others_go_on() {
        let mut st = state(3);
        st.retry.retrying = true;
        st.uids[0] = Some(7);
        st.on_refusal(1, 1, &no(None, "Message contains bare newlines"));
        st.uids[2] = Some(8);
        assert!(st.refused.is_none());
        let e = st.retry.first_refusal.as_ref().unwrap();
        assert!(
            e.detail
                .contains("APPEND of message 2: Message contains bare newlines"),
            "{}",
            e.detail
        );
        let items = st.result_items();
        let view: Vec<_> = items
            .iter()
            .map(|i| {
                (
                    i.uid,
                    i.int_field(field::INDEX),
                    i.str_field(field::REPLY_TEXT)
                        .map(|s| s.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(
            view,
            vec![
                (7, Some(1), None),
                (0, Some(2), Some("Message contains bare newlines".to_string())),
                (8, Some(3), None)
            ]
        );
    }

    #[test]
    fn without_refusals_the_result_is_the_uids_as_before() {
        let mut st = state(2);
        st.uids = vec![Some(1), Some(2)];
        let items = st.result_items();
        assert_eq!(items, vec![ResultItem::new(1), ResultItem::new(2)]);
    }
}
