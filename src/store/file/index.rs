//! What the file store keeps in memory so that the hot paths never read the
//! disk: the epochs of the log as runs, and a bounded cache of its tail.

use std::collections::VecDeque;

use crate::types::{Epoch, Index, Term};

/// The epoch of every index, stored as the first index of each run of equal
/// epochs. A log holds few epochs, so this stays small however long it grows.
#[derive(Debug, Default)]
pub(crate) struct EpochRuns {
    /// `(first index of the run, epoch)`, by increasing index.
    runs: Vec<(Index, Epoch)>,
}

impl EpochRuns {
    /// Records that `index`, the index after the last one recorded, has
    /// `epoch`.
    pub(crate) fn push(&mut self, index: Index, epoch: Epoch) {
        match self.runs.last() {
            Some(&(_, last)) if last == epoch => {}
            _ => self.runs.push((index, epoch)),
        }
    }

    /// The epoch of `index`, which the caller knows is held.
    pub(crate) fn get(&self, index: Index) -> Option<Epoch> {
        let after = self.runs.partition_point(|&(start, _)| start <= index);
        after.checked_sub(1).map(|i| self.runs[i].1)
    }

    /// Forgets `index` and every index after it.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        while matches!(self.runs.last(), Some(&(start, _)) if start >= index) {
            self.runs.pop();
        }
    }

    /// Forgets the runs that end before `index`.
    pub(crate) fn remove_before(&mut self, index: Index) {
        let after = self.runs.partition_point(|&(start, _)| start <= index);
        if after > 1 {
            self.runs.drain(..after - 1);
        }
    }
}

/// The most recent terms, so that a leader sending what it just wrote reads
/// memory. It always ends at the last index of the log.
#[derive(Debug)]
pub(crate) struct TailCache {
    terms: VecDeque<Term>,
    capacity: usize,
}

impl TailCache {
    /// An empty cache of at most `capacity` terms.
    pub(crate) fn new(capacity: usize) -> Self {
        TailCache { terms: VecDeque::with_capacity(capacity.min(4096)), capacity }
    }

    /// Adds the term after the last one, evicting the oldest if full.
    pub(crate) fn push(&mut self, term: Term) {
        if self.capacity == 0 {
            return;
        }
        if self.terms.len() == self.capacity {
            self.terms.pop_front();
        }
        self.terms.push_back(term);
    }

    /// The first index held, if any.
    pub(crate) fn first_index(&self) -> Option<Index> {
        self.terms.front().map(|t| t.index)
    }

    /// The term at `index`, if cached.
    pub(crate) fn get(&self, index: Index) -> Option<&Term> {
        let first = self.first_index()?;
        let offset = index.checked_sub(first)?;
        self.terms.get(usize::try_from(offset).ok()?)
    }

    /// Forgets `index` and every index after it.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        while matches!(self.terms.back(), Some(t) if t.index >= index) {
            self.terms.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TermKind;

    #[test]
    fn runs_answer_every_index() {
        let mut runs = EpochRuns::default();
        for (i, e) in [1, 1, 2, 2, 2, 5].into_iter().enumerate() {
            runs.push(i as Index + 1, e);
        }
        let got: Vec<_> = (1..=6).map(|i| runs.get(i).unwrap()).collect();
        assert_eq!(got, [1, 1, 2, 2, 2, 5]);
        assert_eq!(runs.runs.len(), 3);

        runs.truncate_from(4);
        assert_eq!(runs.get(3), Some(2));
        runs.push(4, 3);
        assert_eq!(runs.get(4), Some(3));

        runs.remove_before(3);
        assert_eq!(runs.get(3), Some(2));
        assert_eq!(runs.get(4), Some(3));
        assert_eq!(runs.runs.len(), 2);
    }

    #[test]
    fn cache_keeps_the_tail() {
        let mut cache = TailCache::new(3);
        for index in 1..=5 {
            cache.push(Term { index, epoch: 1, kind: TermKind::Empty });
        }
        assert_eq!(cache.first_index(), Some(3));
        assert!(cache.get(2).is_none());
        assert_eq!(cache.get(5).unwrap().index, 5);

        cache.truncate_from(4);
        assert!(cache.get(4).is_none());
        assert_eq!(cache.get(3).unwrap().index, 3);
    }
}
