//! The step: find the earliest thing due (a queued event or a node's
//! timer), advance virtual time to it, carry it out, then check.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use rand::Rng;

use crate::core::{CoreError, Output};
use crate::message::{Body, Message};
use crate::sim::check::Fail;
use crate::sim::net::Event;
use crate::sim::report::Check;
use crate::sim::{Simulation, Violation};
use crate::store::LogStore;

/// A timer of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The core's election deadline.
    Election,
    /// The leader's next round.
    Round,
    /// The leader's prepare timer.
    Prepare,
    /// The periodic sync of a volatile store.
    Sync,
    /// The end of the leader's sync of its last round.
    LeaderSync,
}

impl Simulation {
    /// One step, with a panic of the core or a hook turned into a violation.
    pub(crate) fn guarded_step(&mut self) -> Result<(), Violation> {
        self.step += 1;
        self.current = None;
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.step_once()));
        let result = result.unwrap_or_else(|payload| {
            let what = panic_message(payload.as_ref());
            let node = self.current.map(|i| self.nodes[i].id);
            Err(Fail {
                check: Check::Panic,
                node,
                epoch: None,
                index: None,
                detail: format!("panicked: {what}"),
            })
        });
        result.map_err(|f| self.violation(f))
    }

    fn step_once(&mut self) -> Result<(), Fail> {
        let timer = self.next_timer();
        let queued = self.net.next_time();
        if let Some((t, i, kind)) = timer.filter(|(t, _, _)| queued.is_none_or(|q| *t < q)) {
            self.now = t;
            self.current = Some(i);
            return self.fire(i, kind);
        }
        let Some((t, event)) = self.net.pop() else {
            let detail = "nothing is left to happen: no timer, no message".to_string();
            return Err(Fail::new(Check::Liveness, self.nodes[0].id, detail));
        };
        self.now = t;
        self.handle(event)
    }

    /// The earliest timer of a running node, in virtual time; ties go to
    /// the lowest node and the first timer.
    fn next_timer(&self) -> Option<(Duration, usize, Timer)> {
        let mut best: Option<(Duration, usize, Timer)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(core) = &n.core else { continue };
            let sync = core.store().is_volatile().then_some(n.next_sync);
            let timers = [
                (core.next_deadline(), Timer::Election),
                (n.next_round, Timer::Round),
                (n.next_prepare, Timer::Prepare),
                (sync, Timer::Sync),
                (n.leader_sync, Timer::LeaderSync),
            ];
            for (local, kind) in timers {
                let Some(local) = local else { continue };
                let t = n.clock.virtual_time(local).max(self.now);
                if best.is_none_or(|(b, _, _)| t < b) {
                    best = Some((t, i, kind));
                }
            }
        }
        best
    }

    fn fire(&mut self, i: usize, kind: Timer) -> Result<(), Fail> {
        let local = self.local(i);
        match kind {
            Timer::Election => {
                let result = self.nodes[i].core().tick(local);
                self.take_outputs(i, result)?;
            }
            Timer::Round => self.round(i)?,
            Timer::Prepare => self.prepare(i),
            Timer::LeaderSync => {
                self.nodes[i].leader_sync = None;
                let result = self.nodes[i].core().sync_log(local);
                self.take_outputs(i, result)?;
            }
            Timer::Sync => {
                let node = &mut self.nodes[i];
                node.core().store_mut().sync();
                let every = Duration::from_millis(self.rng.random_range(10..=200));
                node.next_sync = local + every;
            }
        }
        self.check_node(i)
    }

    fn handle(&mut self, event: Event) -> Result<(), Fail> {
        match event {
            Event::Deliver(msg) => self.deliver(msg),
            Event::Propose(i, id, hops) => self.propose(i, id, hops),
            Event::NewProposal if !self.calm => {
                self.new_proposal();
                Ok(())
            }
            Event::Fault if !self.calm => {
                let at = self.now + self.random_interval(self.fault_interval);
                self.net.push(at, Event::Fault);
                self.fault()
            }
            Event::NewProposal | Event::Fault => Ok(()),
        }
    }

    /// A delay with mean `mean`, uniform from zero to twice it.
    pub(crate) fn random_interval(&mut self, mean: Duration) -> Duration {
        self.rng.random_range(Duration::ZERO..=mean * 2)
    }

    /// The local time of node `i` now.
    pub(crate) fn local(&self, i: usize) -> Duration {
        self.nodes[i].clock.local(self.now)
    }

    /// Hands a message to its receiver, asking its hook first what the
    /// runtime would ask: a vote, or each term of an append.
    fn deliver(&mut self, mut msg: Message) -> Result<(), Fail> {
        let i = msg.to.0 as usize - 1;
        if !self.nodes[i].is_up() || self.net.blocks(msg.from, msg.to) {
            self.report.dropped += 1;
            self.note(|| format!("{} -x {} dropped {}", msg.from, msg.to, describe(&msg)));
            return Ok(());
        }
        self.current = Some(i);
        self.report.delivered += 1;
        self.note(|| format!("{} <- {} {}", msg.to, msg.from, describe(&msg)));
        let node = &mut self.nodes[i];
        let vote_allowed = crate::hook::consult(&*node.hook, &mut msg);
        let local = node.clock.local(self.now);
        let result = if vote_allowed {
            node.core().step(msg, local)
        } else {
            node.core().step_refusing_vote(msg, local)
        };
        self.take_outputs(i, result)?;
        self.check_node(i)
    }

    /// Carries out what the core returned; a malformed message is dropped
    /// and counted, as the runtime would.
    pub(crate) fn take_outputs(
        &mut self,
        i: usize,
        result: Result<Vec<Output>, CoreError>,
    ) -> Result<(), Fail> {
        match result {
            Ok(out) => self.execute(i, out),
            Err(CoreError::Malformed { from, detail }) => {
                self.report.malformed += 1;
                let id = self.nodes[i].id;
                self.note(|| format!("{id} refused a message from {from}: {detail}"));
                Ok(())
            }
            Err(CoreError::Storage(e)) => Err(self.store_failed(i, &e.to_string())),
        }
    }

    pub(crate) fn store_failed(&self, i: usize, e: &str) -> Fail {
        let node = &self.nodes[i];
        let epoch = node.core.as_ref().map(|c| c.epoch());
        let last = node.store().last_index();
        let detail = format!("the store failed: {e}");
        Fail::new(Check::StoreError, node.id, detail).at(epoch, Some(last))
    }
}

/// A message in one short line, for the history.
pub(crate) fn describe(m: &Message) -> String {
    let body = match &m.body {
        Body::AppendTerms { prev_index, prev_epoch, commit, terms } => {
            let ts: Vec<String> =
                terms.iter().map(|t| format!("{}/{}", t.index, t.epoch)).collect();
            format!(
                "append prev={prev_index}/{prev_epoch} commit={commit} terms=[{}]",
                ts.join(",")
            )
        }
        Body::AppendReply(r) => format!("reply {r:?}"),
        Body::VoteRequest { last_index, last_epoch } => {
            format!("vote? last={last_index}/{last_epoch}")
        }
        Body::VoteReply { granted } => format!("vote {granted}"),
        Body::JoinRequest { address, role } => format!("join? {address} {role:?}"),
        Body::JoinReply(r) => format!("join {r:?}"),
    };
    format!("epoch={} {body}", m.epoch)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        return (*s).to_string();
    }
    if let Some(s) = payload.downcast_ref::<String>() {
        return s.clone();
    }
    "a panic without a message".to_string()
}
