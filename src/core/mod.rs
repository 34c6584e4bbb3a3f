//! The deterministic core: every rule of the algorithm, and no I/O.
//!
//! A [`Core`] is a state machine. Each public method takes one input (a
//! message, the current time, a round of the leader) and returns the
//! [`Output`]s that must happen: messages to send, status changes to report,
//! terms that became committed. Time comes in as a [`Duration`] since an
//! origin the caller picks; randomness comes from a generator seeded by the
//! caller. The same inputs always give the same outputs, which is what lets
//! the simulator and the unit tests drive it step by step.
//!
//! The log and the hard state live in a [`LogStore`] the core owns; the core
//! treats a write as durable once the store returns, and never answers a
//! leader nor grants a vote before that.

mod election;
mod invariants;
mod membership;
mod replication;
mod round;
mod step;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use replication::{Progress, ProgressState};
pub use round::{Draft, RoundOutcome, Work};

use crate::config::Config;
use crate::message::Message;
use crate::store::{LogStore, StoreError};
use crate::types::{Configuration, Epoch, Index, NodeId, Role, Status, Term, TermKind, UpdateNode};

/// What must happen after the core took an input, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this message.
    Send(Message),
    /// The node's status changed.
    StatusChanged {
        /// The status before.
        from: Status,
        /// The status now.
        to: Status,
        /// The epoch of the new status.
        epoch: Epoch,
    },
    /// The node learned of a new leader, or lost track of it.
    LeaderChanged {
        /// The leader now known, if any.
        leader: Option<NodeId>,
        /// The epoch it leads.
        epoch: Epoch,
    },
    /// A follower stored these terms durably.
    Stored(Vec<Term>),
    /// Terms from this index on were removed: a leader replaced them (§5.3).
    Truncated {
        /// The first removed index.
        from: Index,
    },
    /// The commit index advanced to `index`: the terms up to it can be taken
    /// with [`Core::take_committed`].
    Committed {
        /// The new commit index.
        index: Index,
    },
    /// A candidate received an answer to its vote request.
    VoteReceived {
        /// The voter.
        from: NodeId,
        /// Whether it granted its vote.
        granted: bool,
    },
    /// A follower counts as negative in the leader's rounds: it has not
    /// answered for longer than the response timeout.
    LostConnection {
        /// The silent follower.
        peer: NodeId,
    },
    /// The transport must be able to reach these nodes at these addresses
    /// (the members of a new configuration, or a leader named in a
    /// redirect).
    Addresses(Vec<(NodeId, String)>),
    /// A node asks this leader to join or to change its membership. The
    /// application decides (`Hook::update_node`); the answer is built with
    /// [`Core::join_reply`], and an accepted request goes to the update-node
    /// pool.
    JoinRequested(UpdateNode),
    /// The leader refused this node's request to join; it stops asking.
    JoinRefused {
        /// The application's reason.
        reason: String,
    },
}

/// An input the core could not take.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The store failed: the node must stop taking writes.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// A message broke the protocol; it was dropped and changed nothing.
    #[error("malformed message from {from}: {detail}")]
    Malformed {
        /// The sender.
        from: NodeId,
        /// What is wrong with the message.
        detail: String,
    },
}

/// A rule of the algorithm broken on purpose, so that tests can show the
/// simulator catches the bug. Only the crate's own tests can set one; without
/// it the core is unchanged.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// Grant a vote to any candidate, even after voting in the epoch.
    DoubleVote,
    /// Commit a term of an earlier epoch by counting replicas.
    CommitEarlierEpoch,
    /// Grant a vote without checking that the candidate's log is up to date.
    SkipUpToDate,
    /// Start a membership change while the last one is uncommitted.
    ConcurrentChanges,
}

/// The settings the core reads from [`Config`].
#[derive(Clone, Debug)]
struct Settings {
    election_min: Duration,
    election_max: Duration,
    response_timeout: Duration,
    max_terms_per_message: usize,
    max_bytes_per_message: usize,
    max_terms_per_round: usize,
    join: Vec<(NodeId, String)>,
    address: String,
    role: Role,
    catch_up_margin: u64,
}

/// Counters of what the core did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Elections this node started.
    pub elections: u64,
    /// Times this node became leader.
    pub terms_as_leader: u64,
    /// Rounds this node ran as leader.
    pub rounds: u64,
    /// Terms that became committed while this node ran.
    pub committed: u64,
    /// Negative answers counted in rounds.
    pub negatives: u64,
}

/// The Raft state machine of one node.
pub struct Core<S: LogStore> {
    id: NodeId,
    settings: Settings,
    store: S,
    rng: SmallRng,

    status: Status,
    epoch: Epoch,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    commit: Index,
    applied: Index,
    /// The last index of this node's own log known to be durable. Below the
    /// last index only on a leader between a round and its sync.
    synced: Index,

    /// Configuration terms still in the log, oldest first; the last one is in
    /// force. Entry 0 is never removed by a truncation above it.
    configs: Vec<(Index, Configuration)>,

    election_deadline: Duration,
    /// Votes received as candidate in the current epoch.
    votes: BTreeMap<NodeId, bool>,
    /// Replication progress of every other member, on the leader only.
    progress: BTreeMap<NodeId, Progress>,
    /// Observers waiting to be promoted to voters once caught up (leader).
    promotions: BTreeSet<NodeId>,
    /// When this node last heard from the leader of its epoch.
    leader_contact: Option<Duration>,

    /// Which known node to ask next for admission, and when.
    join_next: usize,
    join_deadline: Duration,
    join_refused: Option<String>,

    counters: Counters,
    #[cfg(debug_assertions)]
    watch: invariants::Watch,
    /// The rule broken on purpose, if any (tests only).
    #[cfg(test)]
    pub(crate) mutation: Option<Mutation>,
}

impl<S: LogStore> Core<S> {
    /// Builds the core of node `config.id` over `store`, at time `now`.
    ///
    /// A store that has never held a term receives the initial configuration
    /// as term 1 of epoch 0 (the same on every node of a new cluster, so the
    /// logs agree from the start). A store that has terms is a restart: the
    /// epoch and the vote come back from it, and the configuration in force is
    /// the last one in the log.
    ///
    /// # Errors
    /// The store failed while reading the log or writing the first term.
    pub fn new(config: &Config, mut store: S, seed: u64, now: Duration) -> Result<Self, CoreError> {
        if let Some(initial) = config.bootstrap().filter(|_| store.last_index() == 0) {
            let first = Term { index: 1, epoch: 0, kind: TermKind::Config(initial) };
            store.append(&[first])?;
        }
        let configs = load_configs(&store)?;
        let hard = store.hard_state();
        let settings = Settings {
            election_min: config.election_timeout_min,
            election_max: config.election_timeout_max,
            response_timeout: config.response_timeout,
            max_terms_per_message: config.max_terms_per_message,
            max_bytes_per_message: config.max_bytes_per_message,
            max_terms_per_round: config.max_terms_per_round,
            join: config.join.clone(),
            address: config.address.clone(),
            role: config.role,
            catch_up_margin: config.catch_up_margin,
        };
        let mut core = Core {
            id: config.id,
            settings,
            store,
            rng: SmallRng::seed_from_u64(seed),
            status: Status::Pending,
            epoch: hard.epoch,
            vote: hard.vote,
            leader: None,
            commit: 0,
            applied: 0,
            synced: 0,
            configs,
            election_deadline: now,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            promotions: BTreeSet::new(),
            leader_contact: None,
            join_next: 0,
            join_deadline: now,
            join_refused: None,
            counters: Counters::default(),
            #[cfg(debug_assertions)]
            watch: invariants::Watch::new(hard.epoch, hard.vote),
            #[cfg(test)]
            mutation: None,
        };
        core.synced = core.store.last_index();
        core.status = core.follower_status();
        core.reset_election_deadline(now);
        Ok(core)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The candidate this node voted for in the current epoch.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// The leader this node knows in the current epoch.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The highest index known to be committed.
    pub fn commit_index(&self) -> Index {
        self.commit
    }

    /// The highest index handed out by [`Core::take_committed`].
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// The last index of the log.
    pub fn last_index(&self) -> Index {
        self.store.last_index()
    }

    /// The configuration in force: the last one in the log.
    pub fn membership(&self) -> &Configuration {
        &self.configs.last().expect("a log always holds a configuration").1
    }

    /// Replication progress of each other member; empty unless leader.
    pub fn progress(&self) -> &BTreeMap<NodeId, Progress> {
        &self.progress
    }

    /// What the core did since it started.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// When [`Core::tick`] must next be called: the election deadline of a
    /// voter that does not lead, or when a node outside the configuration
    /// asks again to join. A leader and a settled observer have none.
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.status == Status::Leader {
            return None;
        }
        if self.may_stand() {
            return Some(self.election_deadline);
        }
        self.joining().then_some(self.join_deadline)
    }

    /// Why the leader refused this node's request to join, if it did.
    pub fn join_refused(&self) -> Option<&str> {
        self.join_refused.as_deref()
    }

    /// The store, for reading.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for the simulator to sync it; nothing may change the log
    /// behind the core's back.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back, ending the core (a crash or a shutdown).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Hands out the committed terms not yet handed out, at most `max` of
    /// them, in index order; each index is handed out once per core.
    ///
    /// # Errors
    /// The store could not read the terms; nothing is handed out then.
    pub fn take_committed(&mut self, max: usize) -> Result<Vec<Term>, CoreError> {
        if self.applied >= self.commit || max == 0 {
            return Ok(Vec::new());
        }
        let to = self.commit.min(self.applied.saturating_add(max as u64));
        let terms = self.store.terms(self.applied + 1, to, usize::MAX)?;
        self.applied += terms.len() as u64;
        self.check_invariants();
        Ok(terms)
    }

    /// Makes the terms of the last round durable and counts them as this
    /// node's own: the second half of a round whose [`RoundOutcome`] says
    /// `sync_pending`, called once its messages are sent, so that the
    /// leader's disk writes while its followers' do.
    ///
    /// # Errors
    /// The store failed to sync.
    pub fn sync_log(&mut self, now: Duration) -> Result<Vec<Output>, CoreError> {
        let mut out = Vec::new();
        self.sync_own_log()?;
        if self.status == Status::Leader {
            self.maybe_commit(now, &mut out)?;
        }
        self.check_invariants();
        Ok(out)
    }

    /// Syncs what a deferred append left unsynced, if anything.
    fn sync_own_log(&mut self) -> Result<(), CoreError> {
        if self.synced < self.store.last_index() {
            self.store.sync()?;
            self.synced = self.store.last_index();
        }
        Ok(())
    }

    fn is_voter(&self) -> bool {
        self.membership().is_voter(self.id)
    }

    /// Whether this node stands for election when no leader is heard: it
    /// is a voter of the configuration in force, or of the one before it
    /// while this node does not know the change committed. A leader starts
    /// a change only once the one before is committed, so until the change
    /// commits a quorum of the configuration before may still be needed,
    /// and this node may hold the only copy of the change: without its
    /// candidacy, no one could finish it. Its own vote counts only where
    /// its configuration names it a voter (dissertation §4.2.2: a leader
    /// may manage a configuration it is not part of).
    fn may_stand(&self) -> bool {
        if self.is_voter() {
            return true;
        }
        let [.., (_, before), (last, _)] = self.configs.as_slice() else {
            return false;
        };
        *last > self.commit && before.is_voter(self.id)
    }

    /// The status a node takes when it is not leading nor standing.
    fn follower_status(&self) -> Status {
        if self.membership().contains(self.id) {
            Status::Follower
        } else {
            Status::Pending
        }
    }

    fn set_status(&mut self, to: Status, out: &mut Vec<Output>) {
        if self.status != to {
            out.push(Output::StatusChanged { from: self.status, to, epoch: self.epoch });
            self.status = to;
        }
    }

    fn set_leader(&mut self, leader: Option<NodeId>, out: &mut Vec<Output>) {
        if self.leader != leader {
            self.leader = leader;
            out.push(Output::LeaderChanged { leader, epoch: self.epoch });
        }
    }

    fn reset_election_deadline(&mut self, now: Duration) {
        let (min, max) = (self.settings.election_min, self.settings.election_max);
        self.election_deadline = now + self.rng.random_range(min..max);
    }

    fn send(&self, to: NodeId, body: crate::message::Body, out: &mut Vec<Output>) {
        out.push(Output::Send(Message { from: self.id, to, epoch: self.epoch, body }));
    }

    /// Saves the epoch and the vote; nothing may be answered before this
    /// returns.
    fn persist_hard_state(&mut self) -> Result<(), CoreError> {
        let state = crate::types::HardState { epoch: self.epoch, vote: self.vote };
        self.store.save_hard_state(state)?;
        Ok(())
    }

    /// Appends terms to the store and starts using any configuration they
    /// carry (a configuration takes effect as soon as it is in the log).
    fn append_to_store(&mut self, terms: &[Term], out: &mut Vec<Output>) -> Result<(), CoreError> {
        self.append_terms(terms, false, out)
    }

    /// Appends terms as [`Core::append_to_store`] does; `deferred` lets the
    /// store return before they are durable, and then they do not count as
    /// this node's own until [`Core::sync_log`].
    fn append_terms(
        &mut self,
        terms: &[Term],
        deferred: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        if terms.is_empty() {
            return Ok(());
        }
        let pending = if deferred {
            self.store.append_deferred(terms)?
        } else {
            self.store.append(terms)?;
            false
        };
        if !pending {
            self.synced = self.store.last_index();
        }
        let mut changed = false;
        for t in terms {
            if let TermKind::Config(c) = &t.kind {
                self.configs.push((t.index, c.clone()));
                changed = true;
            }
        }
        if changed {
            self.membership_changed(out);
        }
        Ok(())
    }

    /// Removes the log from `from` on; configurations removed with it stop
    /// being in force.
    fn truncate_store(&mut self, from: Index, out: &mut Vec<Output>) -> Result<(), CoreError> {
        assert!(
            self.status != Status::Leader,
            "invariant broken on node {} epoch {}: a leader truncates its own log at index {from}",
            self.id,
            self.epoch
        );
        assert!(
            from > self.commit,
            "invariant broken on node {} epoch {}: truncation at {from} below commit {}",
            self.id,
            self.epoch,
            self.commit
        );
        self.store.truncate_from(from)?;
        self.synced = self.synced.min(from - 1);
        let before = self.configs.len();
        while self.configs.len() > 1 && self.configs.last().is_some_and(|(i, _)| *i >= from) {
            self.configs.pop();
        }
        out.push(Output::Truncated { from });
        if self.configs.len() != before {
            self.membership_changed(out);
        }
        Ok(())
    }

    /// Brings the status and the leader's progress table in line with the
    /// configuration now in force.
    fn membership_changed(&mut self, out: &mut Vec<Output>) {
        out.push(Output::Addresses(Self::addresses(self.membership())));
        match self.status {
            Status::Leader => {
                // Members a change removes keep their progress until the
                // change commits (see `settle_membership`), so that they
                // learn of their removal.
                let config = self.membership().clone();
                let next = self.store.last_index() + 1;
                let now = self.progress.values().map(|p| p.last_heard).max().unwrap_or_default();
                for m in config.members.keys().filter(|m| **m != self.id) {
                    self.progress.entry(*m).or_insert_with(|| Progress::new(next, now));
                }
                let observer = |id: &NodeId| config.members.get(id).map(|m| m.role);
                self.promotions.retain(|id| observer(id) == Some(Role::Observer));
            }
            Status::Pending | Status::Follower => {
                let to = self.follower_status();
                self.set_status(to, out);
            }
            Status::Candidate => {}
        }
    }

    /// The last index in `0..=upto` whose term has epoch `epoch`, if any.
    /// Epochs never decrease along a log, so a binary search finds it.
    fn last_index_of_epoch(&self, epoch: Epoch, upto: Index) -> Option<Index> {
        let (mut lo, mut hi) = (self.store.first_index() - 1, upto.min(self.store.last_index()));
        // Invariant: epoch_of(lo) <= epoch, and every index above hi is beyond.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.store.epoch_of(mid).unwrap_or(Epoch::MAX) <= epoch {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        (self.store.epoch_of(lo) == Some(epoch)).then_some(lo)
    }

    /// The first index of the run of terms of `epoch` that ends at `at`.
    fn first_index_of_epoch(&self, epoch: Epoch, at: Index) -> Index {
        let (mut lo, mut hi) = (self.store.first_index(), at);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.store.epoch_of(mid).unwrap_or(0) >= epoch {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }
}

/// Reads every configuration term of the log, oldest first.
// FIXME: this reads the whole log on start; once snapshots exist the
// configuration comes from the snapshot and only the tail is read.
fn load_configs<S: LogStore>(store: &S) -> Result<Vec<(Index, Configuration)>, CoreError> {
    const CHUNK: u64 = 4096;
    let mut configs = Vec::new();
    let mut from = store.first_index();
    let last = store.last_index();
    while from <= last {
        let to = last.min(from + CHUNK - 1);
        let terms = store.terms(from, to, usize::MAX)?;
        for t in &terms {
            if let TermKind::Config(c) = &t.kind {
                configs.push((t.index, c.clone()));
            }
        }
        from += terms.len().max(1) as u64;
    }
    if configs.first().is_none_or(|(i, _)| *i != 1) {
        // A log that did not start with the bootstrap configuration (a node
        // that joined): before any configuration term, it knew none.
        configs.insert(0, (0, Configuration::default()));
    }
    Ok(configs)
}
