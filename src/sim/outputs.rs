//! Carrying out what a core returned, as the runtime's `Shared::execute`
//! does: messages to the network, hooks called in order, the leader's worker
//! started or stopped, committed terms applied and proposals resolved.

use crate::core::Output;
use crate::hook::UpdateNode;
use crate::message::Message;
use crate::sim::check::Fail;
use crate::sim::net::Fate;
use crate::sim::report::Check;
use crate::sim::Simulation;
use crate::types::{Configuration, Epoch, MembershipChange, NodeId, Status, Term, TermKind};

/// Most committed terms taken from a core at once, as the runtime does.
const APPLY_BATCH: usize = 1024;

/// The content of client proposal `id`; nothing else looks like it.
pub(crate) fn proposal_content(id: u64) -> Vec<u8> {
    format!("hookraft-sim-proposal-{id}").into_bytes()
}

/// The id of the client proposal `t` carries, if it carries one.
fn proposal_id(t: &Term) -> Option<u64> {
    let text = std::str::from_utf8(t.content()?).ok()?;
    text.strip_prefix("hookraft-sim-proposal-")?.parse().ok()
}

impl Simulation {
    /// Carries out the outputs of node `i`'s core, in order; messages go
    /// out after the hooks, committed terms are applied last.
    pub(crate) fn execute(&mut self, i: usize, outputs: Vec<Output>) -> Result<(), Fail> {
        let mut messages: Vec<Message> = Vec::new();
        let mut apply = false;
        for o in outputs {
            match o {
                Output::Send(m) => messages.push(m),
                Output::StatusChanged { from, to, epoch } => {
                    apply |= to == Status::Leader;
                    self.status_changed(i, from, to, epoch);
                    if to == Status::Candidate {
                        self.check_candidate(i)?;
                    }
                }
                Output::Committed { index } => {
                    self.nodes[i].hook.commit_term(index);
                    apply = true;
                }
                Output::JoinRequested(request) => messages.push(self.answer_join(i, request)),
                other => self.minor_output(i, other),
            }
        }
        for m in messages {
            self.send(m);
        }
        if apply {
            self.apply(i)?;
        }
        Ok(())
    }

    /// The outputs that only call a hook or note something.
    fn minor_output(&mut self, i: usize, o: Output) {
        let node = &mut self.nodes[i];
        let id = node.id;
        match o {
            Output::LeaderChanged { leader, epoch } => {
                node.hook.leader_change(leader, epoch);
                self.note(|| format!("{id} epoch={epoch} knows leader {leader:?}"));
            }
            Output::Stored(terms) => terms.iter().for_each(|t| node.hook.append_term(t)),
            Output::Truncated { from } => {
                let keep = (from.saturating_sub(1) as usize).min(node.mirror.len());
                node.mirror.truncate(keep);
                self.note(|| format!("{id} truncated its log from {from}"));
            }
            Output::VoteReceived { from, granted } => {
                let epoch = node.core().epoch();
                node.hook.receive_vote(from, epoch, granted);
            }
            Output::LostConnection { peer } => {
                node.hook.lost_connection(peer);
                self.note(|| format!("{id} lost {peer}"));
            }
            // The simulated network routes by id: there is no address to
            // learn.
            Output::Addresses(_) => {}
            Output::JoinRefused { reason } => {
                self.note(|| format!("{id} was refused admission: {reason}"));
            }
            Output::Send(_)
            | Output::StatusChanged { .. }
            | Output::Committed { .. }
            | Output::JoinRequested(_) => {}
        }
    }

    /// A leader's answer to a request to join, as the runtime's
    /// `answer_join`: the application decides, an accepted change waits in
    /// the update-node pool (once per node), and the worker runs a round
    /// soon.
    fn answer_join(&mut self, i: usize, request: UpdateNode) -> Message {
        let local = self.local(i);
        let node = &mut self.nodes[i];
        let (id, from) = (node.id, request.id);
        let change = MembershipChange::Update(request.clone());
        let decision = node.hook.update_node(&request).and_then(|()| {
            node.queue_change(change).map_err(|e| format!("cannot take the request now: {e}"))
        });
        let reply = node.core().join_reply(from, decision.clone());
        if decision.is_ok() && node.leading.is_some() {
            self.round_soon(i, local);
        }
        self.note(|| format!("{id} answers the join request of {from}: {decision:?}"));
        reply
    }

    fn send(&mut self, m: Message) {
        let line = self.history.is_some().then(|| super::driver::describe(&m));
        let (from, to) = (m.from, m.to);
        let fate = self.net.send(&mut self.rng, self.now, m);
        match fate {
            Fate::Dropped => self.report.dropped += 1,
            Fate::Duplicated => self.report.duplicated += 1,
            Fate::Sent => {}
        }
        if let Some(line) = line {
            self.note(|| format!("{from} -> {to} {fate:?} {line}"));
        }
    }

    /// What the runtime does on a change of status: the leader worker stops
    /// (its pool is dropped) or starts (with fresh timers).
    fn status_changed(&mut self, i: usize, from: Status, to: Status, epoch: Epoch) {
        let local = self.local(i);
        let node = &mut self.nodes[i];
        let id = node.id;
        if from == Status::Leader {
            node.leading = None;
            node.next_round = None;
            node.next_prepare = None;
            node.pool.clear();
        }
        node.hook.switch_status(from, to, epoch);
        if to == Status::Leader {
            node.leading = Some(epoch);
            node.next_round = Some(local + node.config.heartbeat_interval);
            node.next_prepare = Some(local + node.config.prepare_interval);
        }
        self.note(|| format!("{id} epoch={epoch} {from} -> {to}"));
    }

    /// Takes the committed terms of node `i` and applies them.
    pub(crate) fn apply(&mut self, i: usize) -> Result<(), Fail> {
        loop {
            let terms = match self.nodes[i].core().take_committed(APPLY_BATCH) {
                Ok(t) if t.is_empty() => return Ok(()),
                Ok(t) => t,
                Err(e) => return Err(self.store_failed(i, &e.to_string())),
            };
            for t in &terms {
                self.nodes[i].hook.apply_term(t);
                if let TermKind::Config(config) = &t.kind {
                    self.removed_members(i, config);
                }
                self.applied_one(i, t)?;
            }
        }
    }

    /// Tells the application of node `i` of each member that the applied
    /// configuration `new` no longer names, as the runtime does.
    fn removed_members(&mut self, i: usize, new: &Configuration) {
        let node = &mut self.nodes[i];
        let old = std::mem::replace(&mut node.applied_config, new.clone());
        let id = node.id;
        let gone: Vec<NodeId> = old.members.keys().copied().filter(|m| !new.contains(*m)).collect();
        for g in gone {
            self.nodes[i].hook.remove_connection(g);
            self.note(|| format!("{id} drops its connection to {g}"));
        }
    }

    /// Checks one applied term and resolves the proposal waiting for it.
    fn applied_one(&mut self, i: usize, t: &Term) -> Result<(), Fail> {
        let node = &mut self.nodes[i];
        let id = node.id;
        let fail = |detail: String| Fail::new(Check::Monotonic, id, detail);
        if t.index != node.seen_applied + 1 {
            let detail = format!("applied index {} after {}", t.index, node.seen_applied);
            return Err(fail(detail).at(Some(t.epoch), Some(t.index)));
        }
        node.seen_applied = t.index;
        if let Some(pid) = proposal_id(t) {
            if !node.applied_ids.insert(pid) {
                let detail = format!("applied proposal {pid} a second time");
                return Err(fail(detail).at(Some(t.epoch), Some(t.index)));
            }
        }
        self.checker.apply(id, t)?;
        self.resolve(i, t)
    }

    /// The proposal waiting for `t`'s index is acknowledged when `t` has its
    /// epoch, and then `t` must carry its content.
    fn resolve(&mut self, i: usize, t: &Term) -> Result<(), Fail> {
        let node = &mut self.nodes[i];
        let Some((epoch, pid)) = node.waiters.remove(&t.index) else {
            return Ok(());
        };
        if epoch != t.epoch {
            return Ok(());
        }
        let id = node.id;
        if t.content().map(|c| c.to_vec()) != Some(proposal_content(pid)) {
            let detail = format!("proposal {pid} built at this index holds {:?}", t.kind);
            let fail = Fail::new(Check::StateMachineSafety, id, detail);
            return Err(fail.at(Some(epoch), Some(t.index)));
        }
        self.checker.acked.insert(t.index, (epoch, pid));
        self.report.acknowledged += 1;
        if self.recovery_ids.contains(&pid) {
            self.recovered_at.get_or_insert(t.index);
        }
        self.note(|| format!("{id} acknowledged proposal {pid} at {}/{epoch}", t.index));
        Ok(())
    }
}
