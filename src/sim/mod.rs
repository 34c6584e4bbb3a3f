//! A deterministic simulator of a whole cluster, for finding bugs in the
//! [core](crate::core) that only a rare interleaving shows.
//!
//! A [`Simulation`] runs the cores of 3 to 7 voters (and optionally some
//! observers) in one thread, with one seeded random generator standing in for
//! everything that varies: a virtual clock, each node's clock skew, message
//! loss, duplication, delay and reordering, partitions that form and heal
//! (one-way ones too), crashes and restarts (a restart builds a new core over
//! the same store, which keeps only what it made durable), and client
//! proposals arriving at random nodes. In runs that ask for it
//! ([`Faults::membership`]), the membership changes too: new nodes start
//! and join through the protocol, and leaders are asked to remove, demote
//! and promote members. Around each core it plays the part of
//! the threaded runtime: the same [`Hook`] methods are called at the same
//! moments, the leader runs its rounds on its heartbeat timer and soon after
//! proposals arrive, and committed terms are taken and applied.
//!
//! After every step the simulation checks Raft's safety properties (see
//! [`Check`]), remembering what it saw over the whole run. A run ends with
//! a calm phase: every partition heals, every crashed node restarts, and a
//! leader must be elected and a new proposal commit and reach every member
//! of the leader's configuration within a bounded number of steps.
//!
//! The same [`SimConfig`] gives the same run, byte for byte: nothing depends
//! on a hash order, the wall clock or a thread. A broken property comes back
//! as a [`Violation`] naming the seed, the step, the node, the epoch and the
//! index, with a command that replays the run and prints its history.
//!
//! A panic inside a core (its debug invariants) or a hook is caught and
//! reported as a [`Check::Panic`] violation of the step that caused it.
//!
//! ```
//! use hookraft::sim::{SimConfig, Simulation};
//!
//! let report = Simulation::new(SimConfig::from_seed(7).with_steps(500)).run().unwrap();
//! assert!(report.leaders >= 1);
//! ```

mod check;
mod config;
mod driver;
mod faults;
mod leader;
mod membership;
mod net;
mod node;
mod observe;
mod outputs;
mod report;
mod store;
#[cfg(test)]
mod tests;

pub use config::{Faults, SimConfig};
pub use report::{replay_command, Check, Report, Violation};
pub use store::SimStore;

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::core::Core;
use crate::hook::{Hook, NoHook};
use crate::types::{Configuration, NodeId, Role};
use check::{Checker, Fail};
use net::{Event, Network, Weather};
use node::{Clock, SimNode};

/// Every so many steps, every log is checked again from the start.
const FULL_CHECK_EVERY: u64 = 1024;

/// Builds the hook of a node each time it starts (a restart gets a new one,
/// as a restarted process would).
pub type HookFactory = Box<dyn Fn(NodeId) -> Box<dyn Hook>>;

/// A rule broken on purpose, to show that the simulation catches it.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SimMutation {
    /// A rule of the core.
    Core(crate::core::Mutation),
    /// Stores acknowledge writes before they are durable.
    AckBeforeDurable,
}

/// A simulated cluster and everything that happens to it.
pub struct Simulation {
    cfg: SimConfig,
    rng: SmallRng,
    /// Virtual time.
    now: Duration,
    step: u64,
    nodes: Vec<SimNode>,
    net: Network,
    checker: Checker,
    hooks: HookFactory,
    /// The node the current step drives, for panic reports.
    current: Option<usize>,
    /// Faults and random proposals have stopped.
    calm: bool,
    fault_interval: Duration,
    proposal_interval: Duration,
    next_proposal: u64,
    /// Proposals of the calm phase, and the index of the first one acked.
    recovery_ids: std::collections::BTreeSet<u64>,
    recovered_at: Option<crate::types::Index>,
    /// The members the calm phase waited for, once it ended.
    final_members: Option<std::collections::BTreeSet<NodeId>>,
    /// This run's chance that a fault changes membership.
    membership_chance: f64,
    history: Option<Vec<String>>,
    report: Report,
    #[cfg(test)]
    mutation: Option<SimMutation>,
    /// Leaves out the check that a leader starts one change at a time, to
    /// see whether the other checks catch a broken rule by its effects.
    #[cfg(test)]
    skip_change_rule: bool,
}

impl Simulation {
    /// A simulation whose nodes use [`NoHook`].
    ///
    /// # Panics
    /// `cfg.voters` is zero.
    pub fn new(cfg: SimConfig) -> Self {
        Self::with_hooks(cfg, Box::new(|_| Box::new(NoHook)))
    }

    /// A simulation whose nodes use the hooks `hooks` builds, one per node
    /// start.
    ///
    /// # Panics
    /// `cfg.voters` is zero.
    pub fn with_hooks(cfg: SimConfig, hooks: HookFactory) -> Self {
        assert!(cfg.voters > 0, "a simulated cluster needs a voter");
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let weather = draw_weather(&mut rng, &cfg.faults);
        let fault_interval = draw_interval(&mut rng, cfg.faults.fault_interval);
        let proposal_interval = draw_interval(&mut rng, cfg.faults.proposal_interval);
        let configs = node_configs(&mut rng, &cfg);
        // Drawn only when asked for, so that runs without membership
        // changes draw exactly what they drew before.
        let max = cfg.faults.membership;
        let membership_chance = if max > 0.0 { rng.random_range(max / 4.0..=max) } else { 0.0 };
        let mut sim = Simulation {
            report: Report {
                seed: cfg.seed,
                voters: cfg.voters,
                observers: cfg.observers,
                ..Report::default()
            },
            history: cfg.record_history.then(Vec::new),
            cfg,
            rng,
            now: Duration::ZERO,
            step: 0,
            nodes: Vec::new(),
            net: Network::new(weather),
            checker: Checker::default(),
            hooks,
            current: None,
            calm: false,
            fault_interval,
            proposal_interval,
            next_proposal: 0,
            recovery_ids: Default::default(),
            recovered_at: None,
            final_members: None,
            membership_chance,
            #[cfg(test)]
            mutation: None,
            #[cfg(test)]
            skip_change_rule: false,
        };
        for c in configs {
            sim.add_node(c);
        }
        sim.net.push(fault_interval, Event::Fault);
        sim.net.push(Duration::ZERO, Event::NewProposal);
        sim
    }

    fn add_node(&mut self, config: Config) {
        let f = &self.cfg.faults;
        let max_ppm = i64::from(f.max_skew_ppm);
        let clock = Clock {
            offset: self.rng.random_range(Duration::ZERO..=f.max_offset),
            ppm: self.rng.random_range(-max_ppm..=max_ppm),
        };
        let seed = self.rng.random();
        let store = store::SimStore::new();
        #[cfg(test)]
        let store = match self.mutation {
            Some(SimMutation::AckBeforeDurable) => store.into_volatile(),
            _ => store,
        };
        let core = Core::new(&config, store, seed, clock.local(self.now))
            .expect("an empty simulated store takes the first term");
        let hook = (self.hooks)(config.id);
        self.nodes.push(SimNode::new(config, clock, core, hook));
    }

    /// Breaks one rule in every node, now and after every restart.
    #[cfg(test)]
    pub(crate) fn mutate(&mut self, m: SimMutation) {
        self.mutation = Some(m);
        for i in 0..self.nodes.len() {
            if m == SimMutation::AckBeforeDurable {
                let node = &mut self.nodes[i];
                let store = node.core.take().expect("running").into_store();
                let seed = self.rng.random();
                let local = node.clock.local(self.now);
                let core = Core::new(&node.config, store.into_volatile(), seed, local);
                node.core = Some(core.expect("a simulated store does not fail"));
            }
            self.apply_mutation(i);
        }
    }

    #[cfg(test)]
    fn apply_mutation(&mut self, i: usize) {
        if let Some(SimMutation::Core(m)) = self.mutation {
            self.nodes[i].core().mutation = Some(m);
        }
    }

    /// The settings of this run.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The history recorded so far, one line per event; empty unless the
    /// run records it ([`SimConfig::with_history`]).
    pub fn history(&self) -> &[String] {
        self.history.as_deref().unwrap_or(&[])
    }

    /// Runs the faulty phase, then the calm phase, checking every property
    /// after every step.
    ///
    /// # Errors
    /// The first property broken, with where and how to replay it.
    pub fn run(&mut self) -> Result<Report, Violation> {
        for _ in 0..self.cfg.steps {
            self.guarded_step()?;
            if self.step.is_multiple_of(FULL_CHECK_EVERY) {
                self.full_check().map_err(|f| self.violation(f))?;
            }
        }
        self.calm_down().map_err(|f| self.violation(f))?;
        self.recover()?;
        self.full_check().map_err(|f| self.violation(f))?;
        self.report.steps = self.step;
        self.report.virtual_time = self.now;
        self.report.leaders = self.checker.leader_count();
        self.report.configurations = self.checker.committed_configs();
        Ok(self.report.clone())
    }

    /// Adds the seed and the step to a failed check.
    fn violation(&self, f: Fail) -> Violation {
        Violation {
            seed: self.cfg.seed,
            steps: self.cfg.steps,
            step: self.step,
            check: f.check,
            node: f.node,
            epoch: f.epoch,
            index: f.index,
            detail: f.detail,
        }
    }

    /// Records one line of history, built only when recording.
    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(h) = self.history.as_mut() {
            let t = self.now.as_micros();
            h.push(format!("#{} t={}.{:03}ms {}", self.step, t / 1000, t % 1000, line()));
        }
    }
}

fn draw_weather(rng: &mut SmallRng, f: &Faults) -> Weather {
    let min_delay = Duration::from_millis(1);
    Weather {
        loss: rng.random_range(0.0..=f.loss),
        duplicate: rng.random_range(0.0..=f.duplicate),
        min_delay,
        max_delay: rng.random_range(min_delay..=f.max_delay.max(min_delay)),
        long_delay: rng.random_range(0.0..=f.long_delay),
        long_delay_max: f.long_delay_max,
    }
}

/// A mean interval between a quarter of `max` and `max`.
fn draw_interval(rng: &mut SmallRng, max: Duration) -> Duration {
    let max = max.max(Duration::from_millis(1));
    rng.random_range(max / 4..=max)
}

/// The configuration of every node, with message and round bounds drawn
/// small sometimes, so that logs are sent in pieces.
fn node_configs(rng: &mut SmallRng, cfg: &SimConfig) -> Vec<Config> {
    let voters = 1..=cfg.voters as u64;
    let mut initial = Configuration::voters(voters.map(|i| (i, format!("n{i}"))));
    let total = (cfg.voters + cfg.observers) as u64;
    for i in cfg.voters as u64 + 1..=total {
        initial = initial.with(i, format!("n{i}"), Role::Observer);
    }
    let per_message = [1, 1, 2, 1024][rng.random_range(0..4)];
    let per_round = [1, 3, 16, 4096][rng.random_range(0..4)];
    (1..=total)
        .map(|i| {
            let mut c = Config::new(i, initial.clone());
            c.max_terms_per_message = per_message;
            c.max_terms_per_round = per_round;
            c
        })
        .collect()
}
