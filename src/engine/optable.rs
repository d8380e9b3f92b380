//! The op table, and the deadlines of running ops.
//!
//! The op table holds every op from its submit until its completion is
//! delivered, by id. Ids are handed out in increasing order and most ops
//! leave in about the order they came, so the table is a ring indexed by
//! `id - base`: finding, adding and removing an op is an index, with none of
//! a search tree's node splits and shifts (which moved whole entries at
//! every completion). An op that stays long (IDLE) while many come and go
//! after it would hold the ring open behind it; when the ring is mostly
//! holes, such ops move to a small ordered map of their own, so the ring
//! stays within a few times the live ops.

use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeToInclusive;
use std::time::Instant;

use crate::result::OpId;

/// A ring this long may be all holes before old ops move out of it.
const SLACK: usize = 1024;

pub(super) struct OpTable<E> {
    /// Ops older than `base` that were still there when the ring moved on.
    old: BTreeMap<OpId, E>,
    /// Slot k: op `base + k`, unless it left.
    ring: VecDeque<Option<(OpId, E)>>,
    base: OpId,
    /// Occupied slots of the ring.
    live: usize,
}

impl<E> OpTable<E> {
    pub(super) fn new() -> Self {
        OpTable {
            old: BTreeMap::new(),
            ring: VecDeque::new(),
            base: 0,
            live: 0,
        }
    }

    /// Adds op `id`, which is above every id added before.
    pub(super) fn insert(&mut self, id: OpId, e: E) {
        if self.ring.is_empty() {
            self.base = id;
        }
        let end = self.base + self.ring.len() as OpId;
        assert!(id >= end, "op ids are added in increasing order");
        for _ in end..id {
            self.ring.push_back(None);
        }
        self.ring.push_back(Some((id, e)));
        self.live += 1;
        self.trim();
    }

    fn slot(&self, id: OpId) -> Option<usize> {
        id.checked_sub(self.base)
            .map(|k| k as usize)
            .filter(|&k| k < self.ring.len())
    }

    pub(super) fn get(&self, id: &OpId) -> Option<&E> {
        match self.slot(*id) {
            Some(k) => self.ring[k].as_ref().map(|(_, e)| e),
            None => self.old.get(id),
        }
    }

    pub(super) fn get_mut(&mut self, id: &OpId) -> Option<&mut E> {
        match self.slot(*id) {
            Some(k) => self.ring[k].as_mut().map(|(_, e)| e),
            None => self.old.get_mut(id),
        }
    }

    pub(super) fn contains_key(&self, id: &OpId) -> bool {
        self.get(id).is_some()
    }

    /// The entry of op `id`, moved out (the tests' way; the engine drops
    /// entries in place, `discard`).
    #[cfg(test)]
    pub(super) fn remove(&mut self, id: &OpId) -> Option<E> {
        match self.slot(*id) {
            Some(k) => {
                let (_, e) = self.ring[k].take()?;
                self.live -= 1;
                self.trim();
                Some(e)
            }
            None => self.old.remove(id),
        }
    }

    /// Removes op `id`, dropping its entry where it is (no move out of
    /// the table, as `remove` makes). True when it was there.
    pub(super) fn discard(&mut self, id: &OpId) -> bool {
        match self.slot(*id) {
            Some(k) => {
                if self.ring[k].is_none() {
                    return false;
                }
                self.ring[k] = None;
                self.live -= 1;
                self.trim();
                true
            }
            None => self.old.remove(id).is_some(),
        }
    }

    /// Drops the holes at the front; while the ring is mostly holes, moves
    /// the ops at its front to `old`.
    fn trim(&mut self) {
        loop {
            let mostly_holes = self.ring.len() > 4 * self.live + SLACK;
            match self.ring.front_mut() {
                None => break,
                Some(None) => {}
                Some(front) if mostly_holes => {
                    let (id, e) = front.take().expect("the slot is occupied");
                    self.old.insert(id, e);
                    self.live -= 1;
                }
                Some(_) => break,
            }
            self.ring.pop_front();
            self.base += 1;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live == 0 && self.old.is_empty()
    }

    /// How many ops.
    pub(super) fn len(&self) -> usize {
        self.live + self.old.len()
    }

    /// Every op, by increasing id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&OpId, &E)> {
        self.old
            .iter()
            .chain(self.ring.iter().flatten().map(|(id, e)| (id, e)))
    }

    /// Every op, by increasing id.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&OpId, &mut E)> {
        self.old
            .iter_mut()
            .chain(self.ring.iter_mut().flatten().map(|(id, e)| (&*id, e)))
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &OpId> {
        self.iter().map(|(id, _)| id)
    }

    /// The ops with ids up to `r.end`, by increasing id.
    pub(super) fn range(&self, r: RangeToInclusive<OpId>) -> impl Iterator<Item = (&OpId, &E)> {
        self.iter().take_while(move |(id, _)| **id <= r.end)
    }
}

/// The deadlines of running ops, earliest first: a sorted ring. Ops are
/// taken one after another with the same timeout, so a new deadline nearly
/// always goes at the back, found by a binary search otherwise (a grace
/// period), where a search tree allocated and freed nodes as they filled
/// and emptied.
///
/// A deadline is taken out only from an end of the ring: one in the middle
/// (an op delivered before an older one) stays as a stale entry, which the
/// watchdog skips (its op is gone, or has another deadline), so delivering
/// an op costs two comparisons, not a search and a shift. The holder drops
/// the stale entries (`compact`) once the ring is longer than twice its
/// ops plus `SLACK` (`needs_compact`), which bounds the ring by the op
/// table and costs each removal a few lookups, spread out.
#[derive(Default)]
pub(super) struct Deadlines {
    q: VecDeque<(Instant, OpId)>,
}

impl Deadlines {
    pub(super) fn insert(&mut self, d: (Instant, OpId)) {
        if self.q.back().is_none_or(|b| *b < d) {
            self.q.push_back(d);
        } else if let Err(k) = self.q.binary_search(&d) {
            self.q.insert(k, d);
        }
    }

    /// Takes `d` out if it is at an end; elsewhere it stays, stale.
    pub(super) fn remove(&mut self, d: &(Instant, OpId)) {
        if self.q.front() == Some(d) {
            self.q.pop_front();
        } else if self.q.back() == Some(d) {
            self.q.pop_back();
        }
    }

    /// Is the ring, with `ops` ops in the table, long enough to compact?
    pub(super) fn needs_compact(&self, ops: usize) -> bool {
        self.q.len() > 2 * ops + SLACK
    }

    /// Keeps the entries `live` says are current.
    pub(super) fn compact(&mut self, live: impl FnMut(&(Instant, OpId)) -> bool) {
        self.q.retain(live);
    }

    /// The earliest entry, which may be stale.
    pub(super) fn first(&self) -> Option<&(Instant, OpId)> {
        self.q.front()
    }

    pub(super) fn pop_first(&mut self) -> Option<(Instant, OpId)> {
        self.q.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The table against a BTreeMap, through a long run of adds and removes
    /// in a scrambled order, with a few ops that stay for very long.
    #[test]
    fn agrees_with_an_ordered_map_and_stays_small() {
        let mut t = OpTable::new();
        let mut m = BTreeMap::new();
        let mut x = 7u64;
        let mut next = 1u64;
        for round in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t.insert(next, next * 10);
            m.insert(next, next * 10);
            next += 1;
            // Remove recent ops, slightly out of order, twice per round on
            // two rounds of three; leave ids that are 1 mod 5000 for long.
            for _ in 0..u64::from(round % 3 != 0) * 2 {
                let back = x % 8;
                let id = m
                    .range(..next.saturating_sub(back))
                    .rev()
                    .map(|(k, _)| *k)
                    .find(|k| k % 5000 != 1 || round > 19_000);
                if let Some(id) = id {
                    // Both ways out of the table: moved out, or dropped in place.
                    if x.is_multiple_of(2) {
                        assert_eq!(t.remove(&id), m.remove(&id));
                    } else {
                        assert_eq!(t.discard(&id), m.remove(&id).is_some());
                        assert!(!t.discard(&id));
                    }
                }
            }
            if round.is_multiple_of(997) {
                assert!(t
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .eq(m.iter().map(|(k, v)| (*k, *v))));
                assert!(
                    t.ring.len() <= 4 * t.live + SLACK + 1,
                    "{} slots, {} live",
                    t.ring.len(),
                    t.live
                );
                if (12_000..19_000).contains(&round) {
                    assert!(!t.old.is_empty(), "the long-lived ops moved out of the ring");
                }
                let last = next / 2;
                assert!(t
                    .range(..=last)
                    .map(|(k, _)| *k)
                    .eq(m.range(..=last).map(|(k, _)| *k)));
            }
            let probe = x % next;
            assert_eq!(t.get(&probe), m.get(&probe));
            assert_eq!(t.contains_key(&probe), m.contains_key(&probe));
        }
        for id in m.keys().copied().collect::<Vec<_>>() {
            *t.get_mut(&id).unwrap() += 1;
            assert_eq!(t.remove(&id), m.remove(&id).map(|v| v + 1));
        }
        assert!(t.is_empty() && t.remove(&3).is_none());
        assert!(t.iter_mut().next().is_none() && t.keys().next().is_none());
    }

    #[test]
    fn deadlines_agree_with_an_ordered_set() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let mut set = std::collections::BTreeSet::new();
        // The ops the holder has besides those with deadlines (queued ones).
        let others = 40;
        let mut x = 99u64;
        let mut most = 0;
        for op in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly later and later; now and then earlier (a grace period),
            // or the same instant twice.
            let at = t0 + Duration::from_millis(if x.is_multiple_of(10) { x % 500 } else { op });
            d.insert((at, op));
            set.insert((at, op));
            if !x.is_multiple_of(4) {
                // Mostly the oldest few, sometimes any.
                let k = if x.is_multiple_of(5) {
                    x % set.len() as u64
                } else {
                    x % 4
                };
                let victim = *set.iter().nth(k as usize % set.len()).unwrap();
                set.remove(&victim);
                d.remove(&victim);
                if d.needs_compact(set.len() + others) {
                    d.compact(|e| set.contains(e));
                }
            }
            if x.is_multiple_of(7) {
                // The watchdog's way: stale entries are skipped.
                let mut got = None;
                while let Some(e) = d.pop_first() {
                    if set.contains(&e) {
                        got = Some(e);
                        break;
                    }
                }
                assert_eq!(got, set.pop_first());
            }
            // The live entries, in order, are the set; the ring stays bounded.
            if op % 500 == 0 {
                let live: Vec<_> = d.q.iter().filter(|e| set.contains(e)).copied().collect();
                assert!(live.iter().eq(set.iter()));
            }
            assert!(d.q.len() <= 2 * (set.len() + others) + SLACK + 1);
            assert!(d.first().is_none_or(|f| set.first().is_none_or(|s| f <= s)));
            most = most.max(d.q.len());
        }
        assert!(most > SLACK, "stale entries were kept and compacted: {most}");
    }
}
