//! A message's outcome over one or more transactions: which recipients
//! were finally accepted, refused or deferred, and what the op reports.
//!
//! A recipient refused with 452 (too many recipients, RFC 5321
//! §4.5.3.1.10; or any 4xx with enhanced code 4.5.3) goes into a later transaction of the same message, as long
//! as each transaction gets the message accepted for someone. The op is OK
//! only when every recipient was finally accepted or refused permanently
//! (and at least one accepted); a recipient still deferred makes it
//! TRANSIENT, with every recipient's final answer in its result.

use super::pipeline::Replies;
use super::reply::Reply;
use crate::envelope::Envelope;
use crate::result::{field, ResultData, ResultItem, Success};
use crate::status::{Error, Status};

/// Most transactions one message may take.
pub(crate) const MAX_ROUNDS: u32 = 100;

/// The recipients of one message and their answers so far.
#[derive(Clone, Debug)]
pub struct Recipients {
    /// The final answer of each recipient, once it has one. Empty until
    /// the first transaction is settled: its RCPT replies' own vector
    /// becomes this one (no allocation of its own per message).
    pub answers: Vec<Option<Reply>>,
    /// The recipients in the current transaction.
    round: Round,
    /// Transactions finished so far.
    pub rounds: u32,
    /// Recipients the last transaction's RCPT replies accepted.
    last_accepted: usize,
}

/// Which recipients a transaction is for: at first all of them (without
/// a list of their indexes to allocate), later those deferred.
#[derive(Clone, Debug)]
enum Round {
    All(usize),
    These(Vec<usize>),
}

impl Recipients {
    /// How many recipients the current transaction is for.
    pub fn round_len(&self) -> usize {
        match &self.round {
            Round::All(n) => *n,
            Round::These(v) => v.len(),
        }
    }

    /// The index (among all recipients) of the current transaction's `k`th.
    pub fn round_at(&self, k: usize) -> usize {
        match &self.round {
            Round::All(_) => k,
            Round::These(v) => v[k],
        }
    }

    pub fn new(n: usize) -> Self {
        Recipients {
            answers: Vec::new(),
            round: Round::All(n),
            rounds: 0,
            last_accepted: 0,
        }
    }

    /// Recipients the server took the message for.
    pub fn delivered(&self) -> usize {
        self.answers
            .iter()
            .filter(|a| a.as_ref().is_some_and(Reply::is_positive))
            .count()
    }

    /// Files a finished transaction's replies, taking its RCPT replies
    /// (not copying them). True when recipients deferred with 452 are due
    /// in another transaction (now `round`).
    pub fn settle(&mut self, r: &mut Replies) -> bool {
        self.rounds += 1;
        self.last_accepted = r.accepted_rcpts();
        let content_ok = r.delivered();
        let mut rcpts = std::mem::take(&mut r.rcpts);
        // The first transaction is for every recipient, in order: its
        // replies' vector is taken as the answers, each filed in place.
        let first = self.answers.is_empty();
        if first {
            rcpts.resize(self.round_len(), None);
            self.answers = std::mem::take(&mut rcpts);
        }
        let mail = r.mail.as_ref().filter(|m| !m.is_positive());
        let decisive = r.decisive();
        let mut again = Vec::new();
        let mut progress = false;
        for k in 0..self.round_len() {
            let i = self.round_at(k);
            let rcpt = if first {
                self.answers[i].take()
            } else {
                rcpts.get_mut(k).and_then(Option::take)
            };
            self.answers[i] = Some(match (mail, rcpt) {
                (Some(m), _) => m.clone(),
                (None, Some(x)) if x.is_positive() => match decisive {
                    Some(d) if !content_ok => d.clone(),
                    _ => {
                        progress = true;
                        x
                    }
                },
                (None, Some(x)) => {
                    if x.is_too_many_recipients() {
                        again.push(i);
                    }
                    x
                }
                (None, None) => Reply::new(0, "no reply"),
            });
        }
        if progress && !again.is_empty() && self.rounds < MAX_ROUNDS {
            for &i in &again {
                self.answers[i] = None;
            }
            self.round = Round::These(again);
            true
        } else {
            false
        }
    }

    /// One result item per recipient: the address and its final answer.
    pub fn items(&self, env: &Envelope) -> ResultData {
        ResultData::new(
            env.rcpts()
                .enumerate()
                .map(|(i, a)| {
                    let r = self.answers.get(i).and_then(Option::as_ref);
                    let text = r.map_or(0, |r| r.text().len() + 1);
                    let mut item = ResultItem::with_capacity(0, 3, a.len() + 1 + text);
                    item.set_str(field::NAME, a);
                    if let Some(r) = r {
                        item.set_int(field::REPLY_CODE, r.code as u64);
                        item.set_str(field::REPLY_TEXT, r.text());
                    }
                    item
                })
                .collect(),
        )
    }

    /// One transaction's refusal of the message as a whole (MAIL, DATA or
    /// its content), reported as the server put it.
    fn refused_whole(&self, last: &Replies) -> Option<Error> {
        if let Some(m) = last.mail.as_ref().filter(|m| !m.is_positive()) {
            return Some(m.error("MAIL FROM refused"));
        }
        if self.last_accepted > 0 {
            match (&last.data, &last.last) {
                (Some(d), _) if d.code != 354 => return Some(d.error("DATA refused")),
                (_, Some(f)) if !f.is_positive() => return Some(f.error("the message was refused")),
                (_, None) => return Some(Error::protocol("no final reply")),
                _ => {}
            }
        }
        None
    }

    /// The op's outcome once no transaction is due; `last` is the last
    /// transaction's replies, as [`settle`](Self::settle) left them.
    pub fn outcome(&self, env: &Envelope, last: &Replies) -> std::result::Result<Success, Error> {
        let single = self.rounds <= 1;
        if let Some(e) = single.then(|| self.refused_whole(last)).flatten() {
            return Err(e);
        }
        let answer = |i: usize| self.answers.get(i).and_then(Option::as_ref);
        let n = env.rcpt_count();
        let accepted = self.delivered();
        if single && accepted == n {
            // The common case, every recipient accepted at once: the detail
            // is the final reply, and no recipient needs naming.
            let decisive = last.decisive();
            let detail = decisive
                .filter(|r| r.is_positive())
                .map(reply_line)
                .unwrap_or_default();
            let code = decisive.map_or(250, |r| r.code as i32);
            return Ok(Success::new(code, detail).with_result(self.items(env)));
        }
        let deferred: Vec<usize> = (0..n)
            .filter(|&i| answer(i).is_none_or(|r| !(200..300).contains(&r.code) && r.code < 500))
            .collect();
        let refused: Vec<usize> = (0..n)
            .filter(|&i| answer(i).is_some_and(|r| r.code >= 500))
            .collect();
        let show = |i: usize| match answer(i) {
            Some(r) => format!("{} ({r})", env.rcpt(i)),
            None => format!("{} (no answer)", env.rcpt(i)),
        };
        if accepted == 0 {
            let list: Vec<String> = (0..n)
                .map(|i| match answer(i) {
                    Some(r) => format!("{}: {r}", env.rcpt(i)),
                    None => format!("{}: no answer", env.rcpt(i)),
                })
                .collect();
            let first = answer(0).cloned().unwrap_or(Reply::new(0, ""));
            let mut e = first.error("");
            // Permanent only if every recipient was refused permanently.
            if !deferred.is_empty() {
                e.status = Status::Transient;
            }
            e.detail = format!("every recipient was refused: {}", list.join("; "));
            return Err(e.with_partial(self.items(env)));
        }
        let mut detail = last
            .decisive()
            .filter(|r| r.is_positive())
            .map(reply_line)
            .unwrap_or_default();
        if accepted < n {
            detail.push_str(&format!("; accepted for {accepted} of {n} recipients"));
        }
        if self.rounds > 1 {
            detail.push_str(&format!(" in {} transactions", self.rounds));
        }
        if !deferred.is_empty() {
            let list: Vec<String> = deferred.iter().map(|&i| show(i)).collect();
            detail.push_str(&format!(", still deferred: {}", list.join(", ")));
        }
        if !refused.is_empty() {
            let list: Vec<String> = refused.iter().map(|&i| show(i)).collect();
            detail.push_str(&format!(", refused: {}", list.join(", ")));
        }
        if let Some(&i) = deferred.first() {
            let code = answer(i).map_or(0, |r| r.code as i32);
            return Err(Error::with_code(Status::Transient, code, detail).with_partial(self.items(env)));
        }
        let code = last.decisive().map_or(250, |r| r.code as i32);
        Ok(Success::new(code, detail).with_result(self.items(env)))
    }
}

/// A reply as its `Display` puts it ("250 2.0.0 text"), built directly.
fn reply_line(r: &Reply) -> String {
    let mut s = String::with_capacity(6 + r.text().len());
    let mut started = false;
    for div in [10_000, 1_000, 100, 10, 1] {
        let d = r.code / div % 10;
        if started || d > 0 || div == 1 {
            started = true;
            s.push(char::from(b'0' + d as u8));
        }
    }
    s.push(' ');
    s.push_str(r.text());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16) -> Option<Reply> {
        Some(Reply::new(code, &format!("text {code}")))
    }

    fn bdat(mail: u16, rcpts: &[u16], last: u16) -> Replies {
        Replies {
            mail: r(mail),
            rcpts: rcpts.iter().map(|&c| r(c)).collect(),
            last: r(last),
            content_sent: true,
            ..Replies::default()
        }
    }

    fn addrs(n: usize) -> Envelope {
        let rcpts: Vec<String> = (1..=n).map(|i| format!("r{i}@example.org")).collect();
        Envelope::of("a@example.org", &rcpts)
    }

    #[test]
    fn reply_lines_read_as_display_puts_them() {
        for r in [
            Reply::new(250, "2.0.0 Ok: queued"),
            Reply::from_lines(250, ["a", "b c"]),
            Reply::new(0, ""),
            Reply::new(5, ""),
            Reply::new(250, &"long ".repeat(20)),
        ] {
            assert_eq!(reply_line(&r), r.to_string());
        }
    }

    #[test]
    fn too_many_recipients_go_in_later_transactions() {
        let a = addrs(8);
        let mut rc = Recipients::new(8);
        assert!(rc.settle(&mut bdat(250, &[250, 250, 250, 250, 250, 452, 452, 452], 250)));
        assert_eq!(
            (0..rc.round_len()).map(|k| rc.round_at(k)).collect::<Vec<_>>(),
            [5, 6, 7]
        );
        assert!(!rc.settle(&mut bdat(250, &[250, 250, 250], 250)));
        let ok = rc.outcome(&a, &bdat(250, &[250, 250, 250], 250)).unwrap();
        assert_eq!(ok.reply_code, 250);
        assert!(ok.detail.contains("in 2 transactions"), "{}", ok.detail);
        let items = ok.result.unwrap();
        assert_eq!(items.items.len(), 8);
        assert!(items
            .items
            .iter()
            .all(|i| i.int_field(field::REPLY_CODE) == Some(250)));
    }

    #[test]
    fn a_recipient_still_deferred_is_transient_with_its_reply() {
        let a = addrs(3);
        let mut rc = Recipients::new(3);
        // 450 (mailbox busy) is not retried at once; 452 without progress neither.
        assert!(!rc.settle(&mut bdat(250, &[250, 450, 554], 250)));
        let e = rc.outcome(&a, &bdat(250, &[250, 450, 554], 250)).unwrap_err();
        assert_eq!((e.status, e.reply_code), (Status::Transient, 450));
        assert!(
            e.detail.contains("still deferred: r2@example.org (450"),
            "{}",
            e.detail
        );
        assert!(e.detail.contains("refused: r3@example.org (554"), "{}", e.detail);
        assert_eq!(e.partial().unwrap().items.len(), 3);

        let mut rc = Recipients::new(2);
        assert!(rc.settle(&mut bdat(250, &[250, 452], 250)));
        assert!(!rc.settle(&mut bdat(250, &[452], 503)));
        let e = rc.outcome(&addrs(2), &bdat(250, &[452], 503)).unwrap_err();
        assert_eq!((e.status, e.reply_code), (Status::Transient, 452));
    }

    #[test]
    fn accepted_or_permanently_refused_is_ok() {
        let a = addrs(2);
        let mut rc = Recipients::new(2);
        assert!(!rc.settle(&mut bdat(250, &[250, 550], 250)));
        let ok = rc.outcome(&a, &bdat(250, &[250, 550], 250)).unwrap();
        assert!(ok.detail.contains("accepted for 1 of 2"), "{}", ok.detail);
    }

    #[test]
    fn single_transaction_refusals_keep_their_status() {
        let a = addrs(2);
        let cases = [
            (
                bdat(550, &[503, 503], 503),
                Status::Rejected,
                550,
                "MAIL FROM refused",
            ),
            (
                bdat(451, &[503, 503], 503),
                Status::Transient,
                451,
                "MAIL FROM refused",
            ),
            (
                bdat(250, &[250, 250], 554),
                Status::Rejected,
                554,
                "the message was refused",
            ),
            (
                bdat(250, &[550, 450], 554),
                Status::Transient,
                550,
                "every recipient was refused",
            ),
            (
                bdat(250, &[550, 551], 554),
                Status::Rejected,
                550,
                "every recipient was refused",
            ),
        ];
        for (mut rep, status, code, text) in cases {
            let mut rc = Recipients::new(2);
            assert!(!rc.settle(&mut rep));
            let e = rc.outcome(&a, &rep).unwrap_err();
            assert_eq!((e.status, e.reply_code), (status, code), "{rep:?}");
            assert!(e.detail.contains(text), "{}", e.detail);
        }
        // DATA refused.
        let mut rep = Replies {
            mail: r(250),
            rcpts: vec![r(250)],
            data: r(554),
            ..Replies::default()
        };
        let mut rc = Recipients::new(1);
        rc.settle(&mut rep);
        let e = rc.outcome(&addrs(1), &rep).unwrap_err();
        assert!(e.detail.starts_with("DATA refused"), "{}", e.detail);
    }
}
