//! The checks run after each step on the node the step drove: its commit
//! and applied indexes, what it newly knows as committed, whether it leads,
//! and the part of its log not checked yet.

use crate::sim::check::{check_holds, Fail, NewCommit};
use crate::sim::membership::{last_config, one_voter_apart};
use crate::sim::report::Check;
use crate::sim::store::SimStore;
use crate::sim::Simulation;
use crate::store::LogStore;
use crate::types::{NodeId, Term, TermKind};

impl Simulation {
    /// Checks node `i` after a step that drove it.
    pub(crate) fn check_node(&mut self, i: usize) -> Result<(), Fail> {
        if self.nodes[i].is_up() {
            self.check_indexes(i)?;
            self.record_commits(i)?;
            let node = &self.nodes[i];
            if let Some(epoch) = node.leads() {
                self.checker.leader(node.id, epoch, node.store())?;
            }
        }
        self.verify_log(i)
    }

    /// The commit index never goes back within a core's life, and the
    /// applied index is what was handed out.
    fn check_indexes(&mut self, i: usize) -> Result<(), Fail> {
        let node = &mut self.nodes[i];
        let core = node.core.as_ref().expect("checked by the caller");
        let (commit, applied, epoch) = (core.commit_index(), core.applied_index(), core.epoch());
        let detail = if commit < node.seen_commit {
            format!("commit index went back from {} to {commit}", node.seen_commit)
        } else if applied != node.seen_applied {
            format!("applied index {applied}, but handed out up to {}", node.seen_applied)
        } else {
            return Ok(());
        };
        Err(Fail::new(Check::Monotonic, node.id, detail).at(Some(epoch), Some(commit)))
    }

    /// Records the terms node `i` newly knows as committed, and checks that
    /// every leader of a later epoch holds them.
    fn record_commits(&mut self, i: usize) -> Result<(), Fail> {
        let node = &self.nodes[i];
        let core = node.core.as_ref().expect("checked by the caller");
        let (commit, epoch) = (core.commit_index(), core.epoch());
        if commit <= node.seen_commit {
            return Ok(());
        }
        let terms = core
            .store()
            .terms(node.seen_commit + 1, commit, usize::MAX)
            .map_err(|e| self.store_failed(i, &e.to_string()))?;
        let id = node.id;
        self.nodes[i].seen_commit = commit;
        let mut news: Vec<NewCommit> = Vec::new();
        for t in &terms {
            news.extend(self.checker.commit(id, epoch, t)?);
        }
        if let Some(last) = terms.last() {
            self.report.commit_index = self.report.commit_index.max(last.index);
        }
        news.iter().try_for_each(|n| self.check_later_leaders(*n))
    }

    /// A term committed in some epoch is in the log of every node that led
    /// a later epoch, from then on.
    fn check_later_leaders(&self, n: NewCommit) -> Result<(), Fail> {
        for (epoch, id) in self.checker.leaders_after(n.commit_epoch) {
            let store = self.nodes[id.0 as usize - 1].store();
            check_holds(id, epoch, store, n.index, n.epoch)?;
        }
        Ok(())
    }

    /// Checks the terms of node `i`'s log not checked yet against every
    /// other log seen (log matching, by induction on the index).
    pub(crate) fn verify_log(&mut self, i: usize) -> Result<(), Fail> {
        let node = &mut self.nodes[i];
        let store = match (&node.core, &node.parked) {
            (Some(c), _) => c.store(),
            (None, Some(s)) => s,
            (None, None) => return Ok(()),
        };
        let last = store.last_index();
        // The last checked term must still be there; if not, the log
        // changed silently and is checked again from the start.
        let mut keep = (node.mirror.len() as u64).min(last);
        if keep > 0 && store.epoch_of(keep) != node.mirror.get(keep as usize - 1).copied() {
            keep = 0;
        }
        node.mirror.truncate(keep as usize);
        if keep == last {
            return Ok(());
        }
        let terms = store.terms(keep + 1, last, usize::MAX);
        let terms = terms.map_err(|e| self.store_failed(i, &e.to_string()))?;
        let node = &mut self.nodes[i];
        let mut new_configs = Vec::new();
        for t in &terms {
            let prev = node.mirror.last().copied().unwrap_or(0);
            let new = self.checker.log_term(node.id, t, prev)?;
            node.mirror.push(t.epoch);
            if new && matches!(t.kind, TermKind::Config(_)) {
                new_configs.push(t);
            }
        }
        let node = &self.nodes[i];
        new_configs.into_iter().try_for_each(|t| check_config_step(node.id, node.store(), t))
    }

    /// Checks every log from the start, running or not.
    pub(crate) fn full_check(&mut self) -> Result<(), Fail> {
        for i in 0..self.nodes.len() {
            self.nodes[i].mirror.clear();
            self.verify_log(i)?;
        }
        Ok(())
    }
}

/// A configuration term seen for the first time moves at most one voter
/// from the configuration before it in the log (the same in every log that
/// holds the term, by log matching).
fn check_config_step(id: NodeId, store: &SimStore, t: &Term) -> Result<(), Fail> {
    let TermKind::Config(config) = &t.kind else {
        return Ok(());
    };
    let Some((index, _, before)) = last_config(store, t.index) else {
        return Ok(());
    };
    if one_voter_apart(before, config) {
        return Ok(());
    }
    let (a, b): (Vec<u64>, Vec<u64>) =
        (before.voter_ids().map(|v| v.0).collect(), config.voter_ids().map(|v| v.0).collect());
    let detail = format!("the configuration has voters {b:?}, the one at {index} before it {a:?}");
    Err(Fail::new(Check::OneChangeAtATime, id, detail).at(Some(t.epoch), Some(t.index)))
}
