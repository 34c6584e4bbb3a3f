//! What the leader worker does, and the clients: proposals reach a node (a
//! follower redirects the client to the leader it knows), wait in the term
//! pool, and are built into terms by the leader's rounds.

use std::time::Duration;

use rand::Rng;

use crate::core::Work;
use crate::sim::check::Fail;
use crate::sim::net::Event;
use crate::sim::node::Pending;
use crate::sim::outputs::proposal_content;
use crate::sim::Simulation;
use crate::types::{Configuration, Epoch, TermKind};

/// How many times a client follows a leader hint before giving up.
const MAX_REDIRECTS: u32 = 3;

impl Simulation {
    /// A new client proposal reaches a random node; the next one is
    /// scheduled.
    pub(crate) fn new_proposal(&mut self) {
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.report.proposals += 1;
        let i = self.rng.random_range(0..self.nodes.len());
        self.net.push(self.now, Event::Propose(i, id, 0));
        let at = self.now + self.random_interval(self.proposal_interval);
        self.net.push(at, Event::NewProposal);
    }

    /// Proposal `id` reaches node `i`: into the pool of a leader, else to
    /// the leader it knows, else nowhere.
    pub(crate) fn propose(&mut self, i: usize, id: u64, hops: u32) -> Result<(), Fail> {
        let local = self.local(i);
        let node = &mut self.nodes[i];
        let nid = node.id;
        let Some(core) = node.core.as_ref() else {
            self.note(|| format!("{nid} is down: proposal {id} refused"));
            return Ok(());
        };
        let leader = core.leader();
        if let Some(epoch) = node.leading {
            let content = proposal_content(id).into();
            node.pool.push_back(Pending { id: Some(id), content, epoch });
            self.round_soon(i, local);
            self.note(|| format!("{nid} epoch={epoch} takes proposal {id}"));
            return Ok(());
        }
        match leader {
            Some(l) if hops < MAX_REDIRECTS && l != nid => {
                let at = self.now + Duration::from_millis(self.rng.random_range(1..=5));
                self.net.push(at, Event::Propose(l.0 as usize - 1, id, hops + 1));
                self.note(|| format!("{nid} redirects proposal {id} to {l}"));
            }
            _ => self.note(|| format!("{nid} refuses proposal {id}: no leader known")),
        }
        Ok(())
    }

    /// The worker runs a round at once when its pool holds work: within
    /// two milliseconds here.
    pub(crate) fn round_soon(&mut self, i: usize, local: Duration) {
        let soon = local + Duration::from_micros(self.rng.random_range(0..=2000));
        let node = &mut self.nodes[i];
        node.next_round = Some(node.next_round.map_or(soon, |r| r.min(soon)));
    }

    /// The prepare timer: `Hook::prepare_term` may add content to the pool.
    pub(crate) fn prepare(&mut self, i: usize) {
        let local = self.local(i);
        let node = &mut self.nodes[i];
        node.next_prepare = Some(local + node.config.prepare_interval);
        let Some(epoch) = node.leading else { return };
        if let Some(content) = node.hook.prepare_term() {
            node.pool.push_back(Pending { id: None, content, epoch });
            self.round_soon(i, local);
        }
    }

    /// One round of the leader worker: apply, pop work, draft, ask the
    /// application, send, and schedule the next round.
    pub(crate) fn round(&mut self, i: usize) -> Result<(), Fail> {
        let local = self.local(i);
        let Some(epoch) = self.nodes[i].leading else {
            self.nodes[i].next_round = None;
            return Ok(());
        };
        self.apply(i)?;
        let (kinds, ids) = self.pop_work(i, epoch);
        let node = &mut self.nodes[i];
        let Some(draft) = node.core().draft_round(kinds) else {
            return Ok(());
        };
        #[cfg(test)]
        let check = !self.skip_change_rule;
        #[cfg(not(test))]
        let check = true;
        if check {
            self.check_change_allowed(i, &draft)?;
        }
        let node = &mut self.nodes[i];
        let approved = node.hook.send_term(&draft.terms);
        let (first, count) = (draft.first_index, draft.terms.len());
        if approved {
            for (index, pid) in (first..).zip(&ids) {
                if let Some(pid) = pid {
                    node.waiters.insert(index, (epoch, *pid));
                }
            }
        }
        let result = node.core().send_round(draft, approved, local);
        let outcome = result.map_err(|e| self.store_failed(i, &e.to_string()))?;
        if !outcome.appended {
            let node = &mut self.nodes[i];
            for k in first..first + count as u64 {
                node.waiters.remove(&k);
            }
        }
        let id = self.nodes[i].id;
        self.note(|| format!("{id} epoch={epoch} round from {first}: {count} terms"));
        if outcome.sync_pending && self.nodes[i].leader_sync.is_none() {
            // The leader's disk takes a while; its messages leave at once.
            let took = Duration::from_micros(self.rng.random_range(0..=2000));
            self.nodes[i].leader_sync = Some(local + took);
        }
        self.execute(i, outcome.outputs)?;
        let node = &mut self.nodes[i];
        if node.leading == Some(epoch) {
            node.next_round = Some(local + node.config.heartbeat_interval);
        }
        Ok(())
    }

    /// The terms of one round and the proposal each one carries, taken as
    /// the runtime's `pop_work` does: a promotion the core has ready or a
    /// change from the update-node pool, or proposals from the term pool,
    /// chosen by the core when both hold work. Proposals taken in another
    /// epoch are dropped.
    fn pop_work(&mut self, i: usize, epoch: Epoch) -> (Vec<TermKind>, Vec<Option<u64>>) {
        let node = &mut self.nodes[i];
        let core = node.core.as_mut().expect("a leader runs");
        let promotion = core.ready_promotion();
        let changes =
            promotion.is_some() || (!node.updates.is_empty() && core.can_change_membership());
        match core.choose_work(changes, !node.pool.is_empty()) {
            Work::Terms => self.pop_terms(i, epoch),
            Work::UpdateNode => match promotion.or_else(|| self.pop_change(i)) {
                Some(config) => (vec![TermKind::Config(config)], vec![None]),
                None => (Vec::new(), Vec::new()),
            },
            Work::Nothing => (Vec::new(), Vec::new()),
        }
    }

    /// The configuration the next waiting change leads to, skipping changes
    /// that change nothing.
    fn pop_change(&mut self, i: usize) -> Option<Configuration> {
        let node = &mut self.nodes[i];
        let id = node.id;
        while let Some(change) = node.updates.pop_front() {
            if let Some(config) = node.core().membership_change(&change) {
                self.note(|| format!("{id} starts the membership change {change:?}"));
                return Some(config);
            }
        }
        None
    }

    fn pop_terms(&mut self, i: usize, epoch: Epoch) -> (Vec<TermKind>, Vec<Option<u64>>) {
        let node = &mut self.nodes[i];
        let max = node.core().max_terms_per_round();
        let (mut kinds, mut ids) = (Vec::new(), Vec::new());
        while kinds.len() < max {
            let Some(p) = node.pool.pop_front() else {
                break;
            };
            if p.epoch == epoch {
                kinds.push(TermKind::Content(p.content));
                ids.push(p.id);
            }
        }
        (kinds, ids)
    }
}
