//! Invariants of the core that can be checked at run time, after every input,
//! in debug builds. A broken one is a bug in this crate, never bad input, and
//! panics with the node, epoch and index involved.

use crate::core::Core;
use crate::store::LogStore;
#[cfg(debug_assertions)]
use crate::types::{Epoch, NodeId};

/// What the checks remember from one input to the next.
#[cfg(debug_assertions)]
#[derive(Clone, Copy, Debug)]
pub(super) struct Watch {
    epoch: Epoch,
    vote: Option<NodeId>,
}

#[cfg(debug_assertions)]
impl Watch {
    pub(super) fn new(epoch: Epoch, vote: Option<NodeId>) -> Self {
        Watch { epoch, vote }
    }
}

impl<S: LogStore> Core<S> {
    /// Checks `applied <= commit <= last index`, that the epoch never goes
    /// back, and that the vote never changes within an epoch. Free in
    /// release builds.
    pub(super) fn check_invariants(&mut self) {
        #[cfg(debug_assertions)]
        {
            let (id, epoch, last) = (self.id, self.epoch, self.store.last_index());
            assert!(
                self.applied <= self.commit && self.commit <= last,
                "invariant broken on node {id} epoch {epoch}: applied {} commit {} last {last}",
                self.applied,
                self.commit
            );
            assert!(
                self.synced <= last,
                "invariant broken on node {id} epoch {epoch}: synced {} past last {last}",
                self.synced
            );
            assert!(
                self.status == crate::types::Status::Leader || self.synced == last,
                "invariant broken on node {id} epoch {epoch}: a non-leader with unsynced terms \
                 (synced {}, last {last})",
                self.synced
            );
            assert!(
                epoch >= self.watch.epoch,
                "invariant broken on node {id}: epoch went back from {} to {epoch}",
                self.watch.epoch
            );
            // The double-vote mutant skips this check, so that the
            // simulator's own election-safety check is what catches it.
            #[cfg(not(test))]
            let check_vote = true;
            #[cfg(test)]
            let check_vote = self.mutation != Some(super::Mutation::DoubleVote);
            if check_vote && epoch == self.watch.epoch && self.watch.vote.is_some() {
                assert!(
                    self.vote == self.watch.vote,
                    "invariant broken on node {id} epoch {epoch}: vote changed from {:?} to {:?}",
                    self.watch.vote,
                    self.vote
                );
            }
            self.watch = Watch { epoch, vote: self.vote };
        }
    }
}
