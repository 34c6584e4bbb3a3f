//! Faults and recovery: crashes and restarts, partitions both ways and one
//! way, healing; then the calm phase, in which a leader must be elected and
//! a new proposal must commit and reach every node.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::core::Core;
use crate::sim::check::Fail;
use crate::sim::report::Check;
use crate::sim::{Simulation, Violation};
use crate::types::NodeId;

impl Simulation {
    /// One random fault; in runs that change membership, sometimes a
    /// membership change.
    pub(crate) fn fault(&mut self) -> Result<(), Fail> {
        if self.membership_chance > 0.0 && self.rng.random_bool(self.membership_chance) {
            return self.membership_fault();
        }
        match self.rng.random_range(0..100) {
            0..15 => self.crash_one(),
            15..25 => self.crash_leader(),
            25..45 => return self.restart_one(),
            45..55 => self.split(),
            55..63 => self.isolate_leader(),
            63..73 => self.cut_one_way(),
            73..79 => self.isolate_one_way(),
            79..90 => {
                let link = self.net.heal_one(&mut self.rng);
                self.note(|| format!("heal link {link:?}"));
            }
            _ => {
                self.net.heal();
                self.note(|| "heal every link".to_string());
            }
        }
        Ok(())
    }

    /// A node that leads now, chosen at random, if any.
    pub(crate) fn pick_leader(&mut self) -> Option<usize> {
        let leaders: Vec<usize> =
            (0..self.nodes.len()).filter(|i| self.nodes[*i].leads().is_some()).collect();
        leaders.choose(&mut self.rng).copied()
    }

    fn pick(&mut self, up: bool) -> Option<usize> {
        let ids: Vec<usize> =
            (0..self.nodes.len()).filter(|i| self.nodes[*i].is_up() == up).collect();
        let ids: Vec<usize> = ids.into_iter().filter(|i| !self.nodes[*i].retired).collect();
        ids.choose(&mut self.rng).copied()
    }

    fn crash_one(&mut self) {
        let Some(i) = self.pick(true) else { return };
        self.crash(i);
    }

    /// Leaders are where most rules meet: crashing one is the likeliest way
    /// to leave terms of its epoch half replicated.
    fn crash_leader(&mut self) {
        match self.pick_leader() {
            Some(i) => self.crash(i),
            None => self.crash_one(),
        }
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].crash();
        self.report.crashes += 1;
        let id = self.nodes[i].id;
        self.note(|| format!("{id} crashes"));
    }

    fn restart_one(&mut self) -> Result<(), Fail> {
        match self.pick(false) {
            Some(i) => self.restart(i),
            None => Ok(()),
        }
    }

    /// Builds a new core over the store node `i` left when it crashed.
    pub(crate) fn restart(&mut self, i: usize) -> Result<(), Fail> {
        self.current = Some(i);
        let local = self.local(i);
        let seed = self.rng.random();
        let node = &mut self.nodes[i];
        let store = node.take_parked().expect("a crashed node has its store");
        let core = Core::new(&node.config, store, seed, local);
        let core = core.map_err(|e| self.store_failed(i, &e.to_string()))?;
        let hook = (self.hooks)(self.nodes[i].id);
        self.nodes[i].restart(core, hook);
        #[cfg(test)]
        self.apply_mutation(i);
        self.report.restarts += 1;
        let (id, last) = (self.nodes[i].id, self.nodes[i].store().all_terms().len());
        self.note(|| format!("{id} restarts with {last} terms"));
        self.check_node(i)
    }

    fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Splits the nodes in two groups that do not hear each other.
    fn split(&mut self) {
        let mut ids = self.ids();
        ids.shuffle(&mut self.rng);
        let k = self.rng.random_range(1..ids.len().max(2));
        let (a, b) = ids.split_at(k.min(ids.len()));
        self.net.split(a, b);
        self.report.partitions += 1;
        self.note(|| format!("partition {a:?} | {b:?}"));
    }

    /// A leader (or any node) is cut off from every other node, both ways.
    fn isolate_leader(&mut self) {
        let i = match self.pick_leader() {
            Some(i) => i,
            None => self.rng.random_range(0..self.nodes.len()),
        };
        let x = self.nodes[i].id;
        let others: Vec<NodeId> = self.ids().into_iter().filter(|y| *y != x).collect();
        self.net.split(&[x], &others);
        self.report.partitions += 1;
        self.note(|| format!("{x} is cut off from everyone"));
    }

    /// One node stops hearing another, which still hears it.
    fn cut_one_way(&mut self) {
        let ids = self.ids();
        let from = *ids.choose(&mut self.rng).expect("a node");
        let to = *ids.choose(&mut self.rng).expect("a node");
        self.net.block(from, to);
        self.report.partitions += 1;
        self.note(|| format!("cut {from} -> {to}"));
    }

    /// One node stops being heard by all, or stops hearing all.
    fn isolate_one_way(&mut self) {
        let ids = self.ids();
        let x = *ids.choose(&mut self.rng).expect("a node");
        let deaf = self.rng.random_bool(0.5);
        for y in ids {
            if deaf {
                self.net.block(y, x);
            } else {
                self.net.block(x, y);
            }
        }
        self.report.partitions += 1;
        self.note(|| format!("{x} {}", if deaf { "hears nobody" } else { "is heard by nobody" }));
    }

    /// Ends the faults: every link heals, the network stops losing and
    /// duplicating, every crashed node restarts, no client proposes.
    pub(crate) fn calm_down(&mut self) -> Result<(), Fail> {
        self.calm = true;
        self.net.heal();
        self.net.weather = self.net.weather.calm();
        self.note(|| "faults end".to_string());
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_up() && !self.nodes[i].retired {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    /// The calm phase: a leader is elected, a new proposal commits, and
    /// every member of the leader's configuration applies up to it, within
    /// the allowed steps. Nodes outside that configuration (removed, or
    /// still waiting to join) are exempt: nothing sends them terms.
    pub(crate) fn recover(&mut self) -> Result<(), Violation> {
        let start = self.step;
        let mut target = None;
        loop {
            if let Some(new) = self.recovered_at {
                // Proposals still on their way when faults ended may be
                // acknowledged after the new one: every member must reach
                // all of them.
                let acked = self.checker.acked.keys().next_back().copied();
                let goal = acked.map_or(new, |a| a.max(new));
                if let Some((at, _)) = self.current_leader() {
                    let members = self.final_members(at);
                    let reached = |id: &NodeId| self.nodes[id.0 as usize - 1].seen_applied >= goal;
                    if members.iter().all(reached) {
                        self.final_members = Some(members);
                        break;
                    }
                }
            } else if let Some(at) = self.current_leader() {
                if target != Some(at) {
                    target = Some(at);
                    self.propose_recovery(at.0).map_err(|f| self.violation(f))?;
                }
            }
            if self.step - start >= self.cfg.recovery_steps {
                return Err(self.violation(self.stuck()));
            }
            self.guarded_step()?;
        }
        self.report.recovery_steps = self.step - start;
        self.check_acknowledged().map_err(|f| self.violation(f))
    }

    /// The lowest node that leads now, and its epoch.
    fn current_leader(&self) -> Option<(usize, u64)> {
        (0..self.nodes.len()).find_map(|i| self.nodes[i].leading.map(|e| (i, e)))
    }

    fn propose_recovery(&mut self, i: usize) -> Result<(), Fail> {
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.report.proposals += 1;
        self.recovery_ids.insert(id);
        self.propose(i, id, 0)
    }

    /// Why the calm phase did not end in time.
    fn stuck(&self) -> Fail {
        let state: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let Some(c) = n.core.as_ref() else {
                    return format!("{} retired", n.id);
                };
                let (s, e, ci) = (c.status(), c.epoch(), c.commit_index());
                let voters: Vec<u64> = c.membership().voter_ids().map(|v| v.0).collect();
                let members = c.membership().members.len();
                format!(
                    "{} {s} epoch={e} commit={ci} applied={} voters={voters:?} members={members}",
                    n.id, n.seen_applied
                )
            })
            .collect();
        let detail = format!(
            "no leader, commit or catch-up within {} steps after faults ended (new proposal \
             applied at {:?}); nodes: {}",
            self.cfg.recovery_steps,
            self.recovered_at,
            state.join("; ")
        );
        Fail::new(Check::Liveness, self.nodes[0].id, detail)
    }

    /// Every proposal acknowledged as committed is the term every member
    /// of the final configuration applied at its index.
    fn check_acknowledged(&self) -> Result<(), Fail> {
        let members = self.final_members.as_ref().expect("set when the calm phase ends");
        for (index, (epoch, pid)) in &self.checker.acked {
            let content = super::outputs::proposal_content(*pid);
            let applied = self.checker.applied_at(*index);
            let ok = applied.is_some_and(|(e, k)| {
                e == *epoch && matches!(k, crate::types::TermKind::Content(c) if **c == *content)
            });
            let behind =
                self.nodes.iter().find(|n| members.contains(&n.id) && n.seen_applied < *index);
            if ok && behind.is_none() {
                continue;
            }
            let node = behind.map_or(self.nodes[0].id, |n| n.id);
            let reached = behind.map_or(*index, |n| n.seen_applied);
            let detail = format!(
                "proposal {pid} acknowledged at this index; applied there: {applied:?}; the node \
                 applied up to {reached}"
            );
            return Err(
                Fail::new(Check::LostAcknowledged, node, detail).at(Some(*epoch), Some(*index))
            );
        }
        Ok(())
    }
}
