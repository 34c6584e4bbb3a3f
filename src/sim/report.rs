//! What a simulation run returns: a [`Report`] of what happened, or the first
//! [`Violation`] of a property, with the command that replays the run.

use std::fmt;
use std::time::Duration;

use crate::types::{Epoch, Index, NodeId};

/// The property a run broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// Two leaders in one epoch (§5.2).
    ElectionSafety,
    /// Two logs hold a term with the same index and epoch but differ at or
    /// before it (§5.3).
    LogMatching,
    /// A leader lacks a term committed in an earlier epoch (§5.4).
    LeaderCompleteness,
    /// Two different terms committed or applied at one index (§5.4.3).
    StateMachineSafety,
    /// A commit or applied index went back within a core's life, or terms
    /// were applied out of order or twice.
    Monotonic,
    /// A proposal acknowledged as committed is not applied everywhere.
    LostAcknowledged,
    /// No leader, or no new commit, in the allowed steps after faults ended.
    Liveness,
    /// The core (or a hook) panicked: a broken internal invariant.
    Panic,
    /// The core returned a storage error.
    StoreError,
    /// A configuration term moved more than one voter from the one before
    /// it, or a leader started a change while the last one was uncommitted
    /// or before it committed a term of its own epoch (dissertation §4.1).
    OneChangeAtATime,
    /// A node stood for election although the last configuration of its
    /// log does not count it as a voter and it knows that configuration
    /// committed.
    RemovedStands,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Check::ElectionSafety => "election safety",
            Check::LogMatching => "log matching",
            Check::LeaderCompleteness => "leader completeness",
            Check::StateMachineSafety => "state machine safety",
            Check::Monotonic => "monotonic commit and apply",
            Check::LostAcknowledged => "acknowledged proposal applied",
            Check::Liveness => "liveness",
            Check::Panic => "no panic",
            Check::StoreError => "no storage error",
            Check::OneChangeAtATime => "one membership change at a time",
            Check::RemovedStands => "only voters stand",
        };
        f.write_str(s)
    }
}

/// A broken property: what, where and how to see it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The seed of the run.
    pub seed: u64,
    /// The steps of the faulty phase the run was configured with.
    pub steps: u64,
    /// The step at which the check failed (1 is the first step).
    pub step: u64,
    /// The property.
    pub check: Check,
    /// The node involved, when one is.
    pub node: Option<NodeId>,
    /// The epoch involved, when one is.
    pub epoch: Option<Epoch>,
    /// The log index involved, when one is.
    pub index: Option<Index>,
    /// What exactly was seen.
    pub detail: String,
}

impl Violation {
    /// The shell command that replays this run with its history printed.
    pub fn replay_command(&self) -> String {
        replay_command(self.seed, self.steps)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: seed {} step {}", self.check, self.seed, self.step)?;
        if let Some(n) = self.node {
            write!(f, " node {n}")?;
        }
        if let Some(e) = self.epoch {
            write!(f, " epoch {e}")?;
        }
        if let Some(i) = self.index {
            write!(f, " index {i}")?;
        }
        write!(f, ": {}\nreplay: {}", self.detail, self.replay_command())
    }
}

impl std::error::Error for Violation {}

/// The command that replays the run of `seed` (with `steps` faulty steps)
/// and prints its history.
pub fn replay_command(seed: u64, steps: u64) -> String {
    let steps = if steps == crate::sim::SimConfig::DEFAULT_STEPS {
        String::new()
    } else {
        format!("HOOKRAFT_SIM_STEPS={steps} ")
    };
    format!(
        "HOOKRAFT_SIM_SEED={seed} {steps}cargo test --features sim --test simulation replay \
         -- --nocapture"
    )
}

/// What happened in a run that broke no property.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The seed of the run.
    pub seed: u64,
    /// Voters in the cluster.
    pub voters: usize,
    /// Observers in the cluster.
    pub observers: usize,
    /// Steps taken, the calm phase included.
    pub steps: u64,
    /// Steps the calm phase took to elect a leader, commit a new proposal
    /// and bring every node up to it.
    pub recovery_steps: u64,
    /// Virtual time at the end.
    pub virtual_time: Duration,
    /// Epochs that had a leader.
    pub leaders: u64,
    /// The highest commit index seen.
    pub commit_index: Index,
    /// Client proposals made.
    pub proposals: u64,
    /// Proposals acknowledged as committed.
    pub acknowledged: u64,
    /// Messages delivered to a running node.
    pub delivered: u64,
    /// Messages lost, blocked, or sent to a crashed node.
    pub dropped: u64,
    /// Messages duplicated.
    pub duplicated: u64,
    /// Messages the core refused as malformed.
    pub malformed: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Node restarts.
    pub restarts: u64,
    /// Partitions formed (both-way splits and one-way cuts).
    pub partitions: u64,
    /// Nodes started during the run to join the cluster.
    pub joiners: u64,
    /// Removals and role changes asked of a leader.
    pub changes_asked: u64,
    /// Removed nodes stopped for good.
    pub retired: u64,
    /// Configuration terms committed, the initial one included.
    pub configurations: u64,
}
