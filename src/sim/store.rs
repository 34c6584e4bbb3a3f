//! [`SimStore`], the log store of a simulated node: it can be told to keep
//! writes volatile until a sync, so that a crash loses what was not synced.
//!
//! By default every write is durable once it returns, like [`MemStore`], and
//! a crash loses nothing, except terms appended with
//! [`LogStore::append_deferred`] and not yet synced, as on a real disk. The volatile mode exists to model a store that
//! acknowledges before its data reaches the disk; only the crate's own
//! tests can turn it on (it breaks the contract of [`LogStore`] on purpose).

use crate::store::{LogStore, MemStore, StoreError};
use crate::types::{Epoch, HardState, Index, Term};

/// A log store that survives simulated crashes.
#[derive(Clone, Debug, Default)]
pub struct SimStore {
    /// What the node reads and writes.
    current: MemStore,
    /// In volatile mode, what a crash leaves; `None` when every write is
    /// durable at once.
    durable: Option<MemStore>,
    /// Writes made to `current` since the last sync, oldest first.
    unsynced: Vec<Write>,
    /// The first index appended with `append_deferred` and not yet synced:
    /// a crash loses it and everything after it.
    deferred_from: Option<Index>,
}

/// A write not yet made durable.
#[derive(Clone, Debug)]
enum Write {
    Hard(HardState),
    Append(Vec<Term>),
    Truncate(Index),
}

impl SimStore {
    /// An empty store whose writes are durable once they return.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store, from now on holding its writes in a volatile part
    /// until [`SimStore::sync`]: it acknowledges before it is durable.
    #[cfg(test)]
    pub(crate) fn into_volatile(self) -> Self {
        SimStore {
            durable: Some(self.current.clone()),
            current: self.current,
            unsynced: Vec::new(),
            deferred_from: self.deferred_from,
        }
    }

    /// Whether writes wait for [`SimStore::sync`] to become durable.
    pub fn is_volatile(&self) -> bool {
        self.durable.is_some()
    }

    /// Whether some writes would be lost by a crash now.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || self.deferred_from.is_some()
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) {
        self.deferred_from = None;
        let Some(durable) = self.durable.as_mut() else {
            return;
        };
        for w in self.unsynced.drain(..) {
            // Each write succeeded on `current`, which held the same log.
            let done = match w {
                Write::Hard(h) => durable.save_hard_state(h),
                Write::Append(t) => durable.append(&t),
                Write::Truncate(i) => durable.truncate_from(i),
            };
            done.expect("a write that succeeded once succeeds again on the same log");
        }
    }

    /// What a crash leaves: the volatile writes are lost.
    pub fn crash(&mut self) {
        if let Some(durable) = &self.durable {
            self.current = durable.clone();
            self.unsynced.clear();
        } else if let Some(from) = self.deferred_from {
            self.current.truncate_from(from).expect("a memory store truncates");
        }
        self.deferred_from = None;
    }

    /// Every term held, in order.
    pub fn all_terms(&self) -> &[Term] {
        self.current.all_terms()
    }

    fn remember(&mut self, w: Write) {
        if self.durable.is_some() {
            self.unsynced.push(w);
        }
    }
}

impl LogStore for SimStore {
    fn hard_state(&self) -> HardState {
        self.current.hard_state()
    }

    fn save_hard_state(&mut self, state: HardState) -> Result<(), StoreError> {
        self.current.save_hard_state(state)?;
        self.remember(Write::Hard(state));
        Ok(())
    }

    fn append(&mut self, terms: &[Term]) -> Result<(), StoreError> {
        self.current.append(terms)?;
        self.remember(Write::Append(terms.to_vec()));
        Ok(())
    }

    fn append_deferred(&mut self, terms: &[Term]) -> Result<bool, StoreError> {
        let Some(first) = terms.first().map(|t| t.index) else {
            return Ok(self.deferred_from.is_some());
        };
        self.append(terms)?;
        self.deferred_from.get_or_insert(first);
        Ok(true)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        SimStore::sync(self);
        Ok(())
    }

    fn truncate_from(&mut self, index: Index) -> Result<(), StoreError> {
        self.current.truncate_from(index)?;
        self.deferred_from = self.deferred_from.filter(|from| *from < index);
        self.remember(Write::Truncate(index));
        Ok(())
    }

    fn first_index(&self) -> Index {
        self.current.first_index()
    }

    fn last_index(&self) -> Index {
        self.current.last_index()
    }

    fn epoch_of(&self, index: Index) -> Option<Epoch> {
        self.current.epoch_of(index)
    }

    fn terms(&self, from: Index, to: Index, max_bytes: usize) -> Result<Vec<Term>, StoreError> {
        self.current.terms(from, to, max_bytes)
    }
}
