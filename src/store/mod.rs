//! Where terms and the hard state live. The core reads and writes its log only
//! through [`LogStore`], and treats every write as durable once the call
//! returns `Ok`.

mod file;
mod mem;

pub use file::{FileStore, FileStoreOptions, SyncPolicy};
pub use mem::MemStore;

use std::path::PathBuf;

use crate::types::{Epoch, HardState, Index, Term};

/// A failure of the store. Every variant stops the node from taking writes:
/// a consensus node that cannot trust its disk must not answer anyone.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system error, with what the store was doing.
    #[error("storage i/o failed while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The error the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// Data read back does not match what was written.
    #[error("corrupt log in {path} at offset {offset}: {detail}")]
    Corrupt {
        /// The file holding the bad record.
        path: PathBuf,
        /// Byte offset of the bad record in that file.
        offset: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// Another store, in this process or another, has the directory open.
    /// Stop the other one first; the lock goes with it.
    #[error("store directory is locked by another open store (lock file {path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An earlier write failed part way, so the files may no longer match
    /// what the store holds in memory: it refuses every write. Reopening the
    /// store recovers from what is on disk.
    #[error("store refuses writes after an earlier failure: {cause}")]
    Poisoned {
        /// The failure that stopped the store.
        cause: String,
    },
    /// The caller broke the store's contract (for example a gap between the
    /// last term and the first appended one).
    #[error("invalid store operation: {0}")]
    Invalid(String),
}

/// The log and the hard state of one node.
///
/// Every method that writes returns only once what it wrote is durable: the
/// core answers a leader or grants a vote right after the call returns.
/// Indexes are contiguous from [`first_index`](LogStore::first_index) to
/// [`last_index`](LogStore::last_index); index 0 stands for the empty log and
/// has epoch 0.
pub trait LogStore: Send + 'static {
    /// The hard state last saved (the default state for a new store).
    fn hard_state(&self) -> HardState;

    /// Saves the hard state durably.
    ///
    /// # Errors
    /// Any failure to make it durable.
    fn save_hard_state(&mut self, state: HardState) -> Result<(), StoreError>;

    /// Appends terms that follow the last index without a gap, durably.
    ///
    /// # Errors
    /// A gap, or any failure to make the terms durable.
    fn append(&mut self, terms: &[Term]) -> Result<(), StoreError>;

    /// Appends like [`append`](LogStore::append), but may return before the
    /// terms are durable; [`sync`](LogStore::sync) makes them durable. Returns
    /// whether a sync is still needed. A leader uses it to send a round while
    /// its own disk writes (Raft allows the leader to write in parallel with
    /// its followers); it counts the terms as its own only after the sync.
    /// The default appends durably and needs no sync.
    ///
    /// # Errors
    /// As `append`.
    fn append_deferred(&mut self, terms: &[Term]) -> Result<bool, StoreError> {
        self.append(terms)?;
        Ok(false)
    }

    /// Makes every term appended so far durable.
    ///
    /// # Errors
    /// Any failure to make them durable.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes every term at `index` and after. Terms before `index` stay.
    ///
    /// # Errors
    /// Any failure to make the removal durable.
    fn truncate_from(&mut self, index: Index) -> Result<(), StoreError>;

    /// The first index still held (1 for a log never compacted).
    fn first_index(&self) -> Index;

    /// The last index held, 0 for an empty log.
    fn last_index(&self) -> Index;

    /// The epoch of the term at `index`; `Some(0)` for index 0, `None` when the
    /// store does not hold that index.
    fn epoch_of(&self, index: Index) -> Option<Epoch>;

    /// The terms from `from` to `to` inclusive, stopping early (but never
    /// before the first one) once `max_bytes` of [`Term::size_hint`] is
    /// reached.
    ///
    /// # Errors
    /// A range the store does not hold, or a failure to read it.
    fn terms(&self, from: Index, to: Index, max_bytes: usize) -> Result<Vec<Term>, StoreError>;
}

impl<T: LogStore + ?Sized> LogStore for Box<T> {
    fn hard_state(&self) -> HardState {
        (**self).hard_state()
    }

    fn save_hard_state(&mut self, state: HardState) -> Result<(), StoreError> {
        (**self).save_hard_state(state)
    }

    fn append(&mut self, terms: &[Term]) -> Result<(), StoreError> {
        (**self).append(terms)
    }

    fn append_deferred(&mut self, terms: &[Term]) -> Result<bool, StoreError> {
        (**self).append_deferred(terms)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        (**self).sync()
    }

    fn truncate_from(&mut self, index: Index) -> Result<(), StoreError> {
        (**self).truncate_from(index)
    }

    fn first_index(&self) -> Index {
        (**self).first_index()
    }

    fn last_index(&self) -> Index {
        (**self).last_index()
    }

    fn epoch_of(&self, index: Index) -> Option<Epoch> {
        (**self).epoch_of(index)
    }

    fn terms(&self, from: Index, to: Index, max_bytes: usize) -> Result<Vec<Term>, StoreError> {
        (**self).terms(from, to, max_bytes)
    }
}
