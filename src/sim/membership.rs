//! Membership under faults: new nodes that join through the protocol, and
//! removals, demotions and promotions asked of the leader, as an operator
//! would through `Node::remove_node` and `Node::update_node`; removed nodes
//! stopped for good after a while. And the checks that membership changes
//! keep to their rules: one voter at a time, one change in flight, and no
//! election started by a node its own log does not count as a voter.

use std::collections::BTreeSet;

use rand::seq::IndexedRandom;
use rand::Rng;

use crate::config::Config;
use crate::core::Draft;
use crate::hook::UpdateNode;
use crate::sim::check::Fail;
use crate::sim::report::Check;
use crate::sim::store::SimStore;
use crate::sim::Simulation;
use crate::store::LogStore;
use crate::types::{Configuration, Epoch, Index, MembershipChange, NodeId, Role, TermKind};

/// Most nodes not retired at once: new nodes stop starting beyond it.
pub(crate) const MAX_NODES: usize = 9;

impl Simulation {
    /// One random membership change.
    pub(crate) fn membership_fault(&mut self) -> Result<(), Fail> {
        match self.rng.random_range(0..100) {
            0..35 => self.start_joiner(),
            35..60 => self.ask_removal(),
            60..85 => self.ask_role_change(),
            _ => {
                self.retire_one();
                Ok(())
            }
        }
    }

    /// A new node with a fresh id starts and must join through the
    /// protocol, knowing the members that a running node knows.
    fn start_joiner(&mut self) -> Result<(), Fail> {
        if self.nodes.iter().filter(|n| !n.retired).count() >= MAX_NODES {
            self.retire_one();
            return Ok(());
        }
        // A node that has not joined yet knows no member; one given no
        // member to ask would found a cluster of its own.
        let knows = |i: &usize| {
            self.nodes[*i].core.as_ref().is_some_and(|c| !c.membership().members.is_empty())
        };
        let up: Vec<usize> = (0..self.nodes.len()).filter(knows).collect();
        let Some(&k) = up.choose(&mut self.rng) else { return Ok(()) };
        let members = &self.nodes[k].core.as_ref().expect("picked up").membership().members;
        let known: Vec<(u64, String)> =
            members.iter().map(|(id, m)| (id.0, m.address.clone())).collect();
        let id = self.nodes.len() as u64 + 1;
        let role = if self.rng.random_bool(0.5) { Role::Voter } else { Role::Observer };
        let template = &self.nodes[0].config;
        let mut config = Config::join(id, format!("n{id}"), role, known);
        config.max_terms_per_message = template.max_terms_per_message;
        config.max_terms_per_round = template.max_terms_per_round;
        self.add_node(config);
        let i = self.nodes.len() - 1;
        #[cfg(test)]
        self.apply_mutation(i);
        self.report.joiners += 1;
        self.note(|| format!("n{id} starts and asks to join as {role:?}"));
        self.check_node(i)
    }

    /// The leader is asked to remove one of its members, itself included.
    fn ask_removal(&mut self) -> Result<(), Fail> {
        let Some((i, members)) = self.leader_members() else { return Ok(()) };
        let (id, _) = *members.choose(&mut self.rng).expect("a leader is a member");
        self.ask_change(i, MembershipChange::Remove(id));
        Ok(())
    }

    /// The leader is asked to demote a voter or promote an observer.
    fn ask_role_change(&mut self) -> Result<(), Fail> {
        let Some((i, members)) = self.leader_members() else { return Ok(()) };
        let (id, role) = *members.choose(&mut self.rng).expect("a leader is a member");
        let role = if role == Role::Voter { Role::Observer } else { Role::Voter };
        let address = format!("n{}", id.0);
        let request = UpdateNode { id, address, role };
        if let Err(reason) = self.nodes[i].hook.update_node(&request) {
            self.note(|| format!("the application refuses {request:?}: {reason}"));
            return Ok(());
        }
        self.ask_change(i, MembershipChange::Update(request));
        Ok(())
    }

    /// A node that leads now, at random, with the members of its
    /// configuration and their roles.
    fn leader_members(&mut self) -> Option<(usize, Vec<(NodeId, Role)>)> {
        let i = self.pick_leader()?;
        let config = self.nodes[i].core.as_ref()?.membership();
        Some((i, config.members.iter().map(|(id, m)| (*id, m.role)).collect()))
    }

    /// Puts `change` in the update-node pool of leader `i`, which runs a
    /// round soon.
    fn ask_change(&mut self, i: usize, change: MembershipChange) {
        let local = self.local(i);
        let result = self.nodes[i].queue_change(change.clone());
        if result.is_ok() {
            self.round_soon(i, local);
        }
        self.report.changes_asked += 1;
        let id = self.nodes[i].id;
        self.note(|| format!("{id} is asked for {change:?}: {result:?}"));
    }

    /// Stops for good a running node whose removal is committed.
    fn retire_one(&mut self) {
        let removed: Vec<usize> =
            (0..self.nodes.len()).filter(|i| self.removal_committed(*i)).collect();
        let Some(&i) = removed.choose(&mut self.rng) else { return };
        self.nodes[i].crash();
        self.nodes[i].retired = true;
        self.report.retired += 1;
        let id = self.nodes[i].id;
        self.note(|| format!("{id} is removed and stops for good"));
    }

    /// Whether node `i` runs, was a member, and the last configuration of
    /// its log drops it and is known to be committed.
    fn removal_committed(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        if !node.is_up() {
            return false;
        }
        let terms = node.store().all_terms();
        let was_member = terms.iter().any(|t| config_of(t).is_some_and(|c| c.contains(node.id)));
        let Some((index, epoch, config)) = last_config(node.store(), Index::MAX) else {
            return false;
        };
        was_member && !config.contains(node.id) && self.checker.is_committed(index, epoch)
    }

    /// The members that must reach the end of the calm phase: those of the
    /// configuration of the leader `i`, less the nodes stopped for good.
    pub(crate) fn final_members(&self, i: usize) -> BTreeSet<NodeId> {
        let config = self.nodes[i].core.as_ref().expect("a leader runs").membership();
        let retired = |id: &NodeId| self.nodes[id.0 as usize - 1].retired;
        config.members.keys().copied().filter(|id| !retired(id)).collect()
    }

    /// A leader appends a configuration only when the last one in its log
    /// is committed and it has committed a term of its own epoch.
    pub(crate) fn check_change_allowed(&self, i: usize, draft: &Draft) -> Result<(), Fail> {
        let Some(t) = draft.terms.iter().find(|t| matches!(t.kind, TermKind::Config(_))) else {
            return Ok(());
        };
        let node = &self.nodes[i];
        let core = node.core.as_ref().expect("a leader runs");
        let store = core.store();
        let commit = core.commit_index();
        let (last, _, _) = last_config(store, Index::MAX).expect("a log holds a configuration");
        let detail = if last > commit {
            format!(
                "appends a configuration while the one at {last} is uncommitted (commit {commit})"
            )
        } else if store.epoch_of(commit) != Some(draft.epoch) {
            format!(
                "appends a configuration before committing a term of its epoch (commit {commit})"
            )
        } else {
            return Ok(());
        };
        let fail = Fail::new(Check::OneChangeAtATime, node.id, detail);
        Err(fail.at(Some(draft.epoch), Some(t.index)))
    }

    /// Node `i` stands for election: the last configuration of its log
    /// must count it as a voter, or the one before it, while the node does
    /// not know the change committed (a removed or demoted node that knows
    /// stays quiet).
    pub(crate) fn check_candidate(&self, i: usize) -> Result<(), Fail> {
        let node = &self.nodes[i];
        let Some((index, _, config)) = last_config(node.store(), Index::MAX) else {
            return Ok(());
        };
        let core = node.core.as_ref().expect("a candidate runs");
        let before = last_config(node.store(), index).map(|(_, _, c)| c);
        let unsure = index > core.commit_index() && before.is_some_and(|c| c.is_voter(node.id));
        if config.is_voter(node.id) || unsure {
            return Ok(());
        }
        let detail = format!(
            "stands for election, but its configuration at {index} has no vote for it and \
             is known committed (commit {})",
            core.commit_index()
        );
        Err(Fail::new(Check::RemovedStands, node.id, detail).at(Some(core.epoch()), Some(index)))
    }
}

/// The configuration `t` carries, if it carries one.
fn config_of(t: &crate::types::Term) -> Option<&Configuration> {
    match &t.kind {
        TermKind::Config(c) => Some(c),
        _ => None,
    }
}

/// The last configuration of `store` below index `before`: its index, its
/// epoch and itself.
pub(crate) fn last_config(
    store: &SimStore,
    before: Index,
) -> Option<(Index, Epoch, &Configuration)> {
    let terms = store.all_terms();
    let end = terms.partition_point(|t| t.index < before);
    terms[..end].iter().rev().find_map(|t| config_of(t).map(|c| (t.index, t.epoch, c)))
}

/// Whether two configurations differ by at most one voter added or
/// removed.
pub(crate) fn one_voter_apart(a: &Configuration, b: &Configuration) -> bool {
    let a: BTreeSet<NodeId> = a.voter_ids().collect();
    let b: BTreeSet<NodeId> = b.voter_ids().collect();
    a.symmetric_difference(&b).count() <= 1
}
