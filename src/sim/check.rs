//! The safety properties, checked as the run goes: what every node's log,
//! commit index and applied terms have shown so far, remembered over the
//! whole run (across crashes), and compared with what each step reveals.

use std::collections::BTreeMap;

use crate::sim::report::Check;
use crate::sim::store::SimStore;
use crate::store::LogStore;
use crate::types::{Epoch, Index, NodeId, Term, TermKind};

/// A failed check, before the simulation adds the seed and the step.
#[derive(Clone, Debug)]
pub(crate) struct Fail {
    pub(crate) check: Check,
    pub(crate) node: Option<NodeId>,
    pub(crate) epoch: Option<Epoch>,
    pub(crate) index: Option<Index>,
    pub(crate) detail: String,
}

impl Fail {
    pub(crate) fn new(check: Check, node: NodeId, detail: String) -> Self {
        Fail { check, node: Some(node), epoch: None, index: None, detail }
    }

    pub(crate) fn at(mut self, epoch: Option<Epoch>, index: Option<Index>) -> Self {
        self.epoch = epoch;
        self.index = index;
        self
    }
}

/// A term known to be committed.
#[derive(Clone, Debug)]
struct Committed {
    epoch: Epoch,
    kind: TermKind,
    /// The lowest epoch of a node that saw it committed: every leader of a
    /// later epoch must hold it.
    commit_epoch: Epoch,
}

/// A term that became known as committed in this step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewCommit {
    pub(crate) index: Index,
    pub(crate) epoch: Epoch,
    pub(crate) commit_epoch: Epoch,
}

/// What the run has shown so far.
#[derive(Default)]
pub(crate) struct Checker {
    /// The leader of each epoch that had one.
    leaders: BTreeMap<Epoch, NodeId>,
    /// Each term seen in any log, by index and epoch: the epoch of the term
    /// before it, and its content.
    registry: BTreeMap<(Index, Epoch), (Epoch, TermKind)>,
    committed: BTreeMap<Index, Committed>,
    /// The term applied at each index by any node, and the first node.
    applied: BTreeMap<Index, (Epoch, TermKind, NodeId)>,
    /// Proposals acknowledged as committed: index, epoch and proposal id.
    pub(crate) acked: BTreeMap<Index, (Epoch, u64)>,
}

impl Checker {
    /// Epochs that had a leader.
    pub(crate) fn leader_count(&self) -> u64 {
        self.leaders.len() as u64
    }

    /// Node `id` leads `epoch`: no other node may have, and its log must
    /// hold every term committed in an earlier epoch.
    pub(crate) fn leader(
        &mut self,
        id: NodeId,
        epoch: Epoch,
        store: &SimStore,
    ) -> Result<(), Fail> {
        if let Some(first) = self.leaders.get(&epoch) {
            if *first == id {
                return Ok(());
            }
            let detail = format!("{first} and {id} both lead epoch {epoch}");
            return Err(Fail::new(Check::ElectionSafety, id, detail).at(Some(epoch), None));
        }
        self.leaders.insert(epoch, id);
        let earlier = self.committed.iter().filter(|(_, c)| c.commit_epoch < epoch);
        for (index, c) in earlier {
            check_holds(id, epoch, store, *index, c.epoch)?;
        }
        Ok(())
    }

    /// The leaders of epochs after `commit_epoch`, for a new commit.
    pub(crate) fn leaders_after(&self, commit_epoch: Epoch) -> Vec<(Epoch, NodeId)> {
        let after = self.leaders.range(commit_epoch + 1..);
        after.map(|(e, id)| (*e, *id)).collect()
    }

    /// Term `t` sits in the log of `id` after a term of `prev_epoch`: every
    /// log holding a term with its index and epoch must agree on both.
    /// True when no log held that term before.
    pub(crate) fn log_term(
        &mut self,
        id: NodeId,
        t: &Term,
        prev_epoch: Epoch,
    ) -> Result<bool, Fail> {
        let key = (t.index, t.epoch);
        let Some((prev, kind)) = self.registry.get(&key) else {
            self.registry.insert(key, (prev_epoch, t.kind.clone()));
            return Ok(true);
        };
        if *prev == prev_epoch && *kind == t.kind {
            return Ok(false);
        }
        let detail = format!(
            "holds a term of index {} epoch {} after epoch {prev_epoch} with {:?}; another log \
             has it after epoch {prev} with {kind:?}",
            t.index, t.epoch, t.kind
        );
        Err(Fail::new(Check::LogMatching, id, detail).at(Some(t.epoch), Some(t.index)))
    }

    /// Node `id`, in `epoch`, knows `t` to be committed.
    pub(crate) fn commit(
        &mut self,
        id: NodeId,
        epoch: Epoch,
        t: &Term,
    ) -> Result<Option<NewCommit>, Fail> {
        let new = NewCommit { index: t.index, epoch: t.epoch, commit_epoch: epoch };
        let Some(c) = self.committed.get_mut(&t.index) else {
            let kind = t.kind.clone();
            let c = Committed { epoch: t.epoch, kind, commit_epoch: epoch };
            self.committed.insert(t.index, c);
            return Ok(Some(new));
        };
        if c.epoch != t.epoch || c.kind != t.kind {
            let detail = format!(
                "committed {:?} of epoch {}, but {:?} of epoch {} was committed there before",
                t.kind, t.epoch, c.kind, c.epoch
            );
            return Err(
                Fail::new(Check::StateMachineSafety, id, detail).at(Some(epoch), Some(t.index))
            );
        }
        if epoch < c.commit_epoch {
            c.commit_epoch = epoch;
            return Ok(Some(new));
        }
        Ok(None)
    }

    /// Whether the term of `epoch` at `index` is known to be committed.
    pub(crate) fn is_committed(&self, index: Index, epoch: Epoch) -> bool {
        self.committed.get(&index).is_some_and(|c| c.epoch == epoch)
    }

    /// Configuration terms known to be committed.
    pub(crate) fn committed_configs(&self) -> u64 {
        let configs = self.committed.values().filter(|c| matches!(c.kind, TermKind::Config(_)));
        configs.count() as u64
    }

    /// Node `id` applied `t`: every node applies the same term there.
    pub(crate) fn apply(&mut self, id: NodeId, t: &Term) -> Result<(), Fail> {
        let Some((epoch, kind, first)) = self.applied.get(&t.index) else {
            self.applied.insert(t.index, (t.epoch, t.kind.clone(), id));
            return Ok(());
        };
        if *epoch == t.epoch && *kind == t.kind {
            return Ok(());
        }
        let detail = format!(
            "applied {:?} of epoch {}, but {first} applied {kind:?} of epoch {epoch} there",
            t.kind, t.epoch
        );
        Err(Fail::new(Check::StateMachineSafety, id, detail).at(Some(t.epoch), Some(t.index)))
    }

    /// The term every node applied at `index`, if any did.
    pub(crate) fn applied_at(&self, index: Index) -> Option<(Epoch, &TermKind)> {
        self.applied.get(&index).map(|(e, k, _)| (*e, k))
    }
}

/// Checks that the log of leader `id` of `epoch` holds the committed term
/// of epoch `term_epoch` at `index`.
pub(crate) fn check_holds(
    id: NodeId,
    epoch: Epoch,
    store: &SimStore,
    index: Index,
    term_epoch: Epoch,
) -> Result<(), Fail> {
    let held = store.epoch_of(index);
    if held == Some(term_epoch) {
        return Ok(());
    }
    let detail = format!(
        "leads epoch {epoch} but holds {held:?} at index {index}, where a term of epoch \
         {term_epoch} is committed"
    );
    Err(Fail::new(Check::LeaderCompleteness, id, detail).at(Some(epoch), Some(index)))
}
