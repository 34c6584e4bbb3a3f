//! What a simulation run is made of: [`SimConfig`] (the seed, the cluster's
//! shape, how long to run) and [`Faults`] (how badly the world behaves).

use std::time::Duration;

/// How badly the simulated world behaves. Each field is an upper bound:
/// every run draws its own value below it from its seed, so that runs
/// differ in kind, not only in detail.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Chance that a message is lost.
    pub loss: f64,
    /// Chance that a message is delivered twice.
    pub duplicate: f64,
    /// Longest usual delay of a message; each run draws one between 1 ms
    /// and this, and each message a delay up to the run's.
    pub max_delay: Duration,
    /// Chance that a message is held back much longer, which reorders it.
    pub long_delay: f64,
    /// Longest such delay.
    pub long_delay_max: Duration,
    /// Mean virtual time between two faults (crash, restart, partition,
    /// heal); each run draws its mean between a quarter of this and this.
    pub fault_interval: Duration,
    /// Mean virtual time between two client proposals; drawn like
    /// `fault_interval`.
    pub proposal_interval: Duration,
    /// Largest drift of a node's clock, in parts per million.
    pub max_skew_ppm: u32,
    /// Largest offset of a node's clock from virtual time zero.
    pub max_offset: Duration,
    /// Chance that a fault is a membership change instead: a new node
    /// starts and asks to join, or the leader is asked to remove a member,
    /// demote a voter or promote an observer. Zero (the default) keeps the
    /// membership as it started; each run draws its chance below this.
    pub membership: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.1,
            duplicate: 0.05,
            max_delay: Duration::from_millis(20),
            long_delay: 0.02,
            long_delay_max: Duration::from_millis(400),
            fault_interval: Duration::from_millis(200),
            proposal_interval: Duration::from_millis(20),
            max_skew_ppm: 10_000,
            max_offset: Duration::from_secs(10),
            membership: 0.0,
        }
    }
}

/// The settings of one simulation run.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The seed of the run's one random generator.
    pub seed: u64,
    /// Voters in the cluster (ids 1 to `voters`).
    pub voters: usize,
    /// Observers in the cluster (ids after the voters).
    pub observers: usize,
    /// Steps of the faulty phase; one step is one event (a message
    /// delivered, a timer fired, a fault, a proposal).
    pub steps: u64,
    /// Most steps the calm phase may take to elect a leader, commit a new
    /// proposal and bring every node up to it.
    pub recovery_steps: u64,
    /// Whether to record the history of the run (costs time).
    pub record_history: bool,
    /// How badly the world behaves.
    pub faults: Faults,
}

impl SimConfig {
    /// Steps of the faulty phase unless told otherwise.
    pub const DEFAULT_STEPS: u64 = 3000;

    /// The first seed whose run changes the membership: seeds from here on
    /// set [`Faults::membership`] to [`SimConfig::MEMBERSHIP_RATE`], those
    /// below leave it at zero.
    pub const MEMBERSHIP_SEEDS: u64 = 1_000_000;

    /// The most [`Faults::membership`] of a seed that changes membership.
    pub const MEMBERSHIP_RATE: f64 = 0.4;

    /// The run of `seed`: 3, 5 or 7 voters by `seed % 3`, one or two
    /// observers when `seed % 4 == 3`, [`SimConfig::DEFAULT_STEPS`] steps and
    /// the default faults, with membership changes from
    /// [`SimConfig::MEMBERSHIP_SEEDS`] on. Everything else comes from the
    /// seed as the run goes.
    pub fn from_seed(seed: u64) -> Self {
        let observers = if seed % 4 == 3 { 1 + (seed / 4 % 2) as usize } else { 0 };
        let mut faults = Faults::default();
        if seed >= Self::MEMBERSHIP_SEEDS {
            faults.membership = Self::MEMBERSHIP_RATE;
        }
        SimConfig {
            seed,
            voters: [3, 5, 7][(seed % 3) as usize],
            observers,
            steps: Self::DEFAULT_STEPS,
            recovery_steps: 20_000,
            record_history: false,
            faults,
        }
    }

    /// The same run with `steps` faulty steps.
    pub fn with_steps(mut self, steps: u64) -> Self {
        self.steps = steps;
        self
    }

    /// The same run, recording its history.
    pub fn with_history(mut self) -> Self {
        self.record_history = true;
        self
    }
}
