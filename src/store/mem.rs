//! An in-memory [`LogStore`]: every write is "durable" at once, and everything
//! is lost with the process. For tests, examples and nodes that rebuild from
//! their peers.

use crate::store::{LogStore, StoreError};
use crate::types::{Epoch, HardState, Index, Term};

/// A log kept in a `Vec`.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    hard: HardState,
    terms: Vec<Term>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every term held, in order.
    pub fn all_terms(&self) -> &[Term] {
        &self.terms
    }
}

impl LogStore for MemStore {
    fn hard_state(&self) -> HardState {
        self.hard
    }

    fn save_hard_state(&mut self, state: HardState) -> Result<(), StoreError> {
        self.hard = state;
        Ok(())
    }

    fn append(&mut self, terms: &[Term]) -> Result<(), StoreError> {
        let next = self.last_index() + 1;
        if let Some((k, t)) = terms.iter().enumerate().find(|(k, t)| t.index != next + *k as u64) {
            return Err(StoreError::Invalid(format!(
                "term {} at position {k} of an append after last index {}",
                t.index,
                self.last_index()
            )));
        }
        self.terms.extend_from_slice(terms);
        Ok(())
    }

    fn truncate_from(&mut self, index: Index) -> Result<(), StoreError> {
        self.terms.truncate(index.saturating_sub(1) as usize);
        Ok(())
    }

    fn first_index(&self) -> Index {
        1
    }

    fn last_index(&self) -> Index {
        self.terms.len() as Index
    }

    fn epoch_of(&self, index: Index) -> Option<Epoch> {
        if index == 0 {
            return Some(0);
        }
        self.terms.get(index as usize - 1).map(|t| t.epoch)
    }

    fn terms(&self, from: Index, to: Index, max_bytes: usize) -> Result<Vec<Term>, StoreError> {
        if from == 0 || from > to || to > self.last_index() {
            return Err(StoreError::Invalid(format!(
                "read of {from}..={to} outside 1..={}",
                self.last_index()
            )));
        }
        let slice = &self.terms[from as usize - 1..to as usize];
        let mut bytes = 0;
        let mut out = Vec::with_capacity(slice.len());
        for t in slice {
            bytes += t.size_hint();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(t.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TermKind;

    fn term(index: Index) -> Term {
        Term { index, epoch: 1, kind: TermKind::Empty }
    }

    #[test]
    fn an_append_with_a_gap_is_refused_whole() {
        let mut s = MemStore::new();
        s.append(&[term(1), term(2)]).unwrap();
        assert!(s.append(&[term(4)]).is_err());
        assert!(s.append(&[term(3), term(5)]).is_err());
        assert_eq!(s.last_index(), 2);
    }
}
