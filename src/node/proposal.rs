//! Proposals: content handed to the leader, and the handle that tells its
//! proposer what became of it.
//!
//! The outcome is exact. A term committed at its index with its epoch is
//! *committed*; a term that another term replaced at its index (the node
//! applied a different term there), or that never reached any log, is
//! *dropped*. A leader losing its leadership is neither: the next leader may
//! still commit the term, so a wait that runs out reports that the outcome is
//! *unknown*, never a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::types::{Epoch, Index, NodeId, Payload};

/// How long a proposer polls for its outcome before it sleeps.
const PROPOSER_SPIN: Duration = Duration::from_micros(50);

/// Why a proposal could not be handed to the leader.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead; retry on `leader` when it is known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows, if any.
        leader: Option<NodeId>,
    },
    /// The term pool is full: the leader is behind. Retry later.
    #[error("the term pool is full")]
    PoolFull,
    /// The term pool stayed full for the whole timeout.
    #[error("the term pool stayed full until the timeout")]
    Timeout,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// A term that will never commit, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Leadership changed before the content was built into a term: it is in
    /// no log.
    NotLeader,
    /// `Hook::send_term` refused the round: the term is in no log.
    Refused,
    /// Another term was committed at the index of this one.
    Replaced {
        /// The index the term had.
        index: Index,
    },
}

/// What became of a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed, and applied on the node that took the proposal.
    Committed {
        /// The term's index.
        index: Index,
        /// The term's epoch.
        epoch: Epoch,
    },
    /// It will never commit.
    Dropped(DropReason),
}

/// Why a wait for a proposal ended without it committing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The term will never commit.
    #[error("the proposal was dropped: {0:?}")]
    Dropped(DropReason),
    /// The wait timed out: the term may still commit (or not).
    #[error("the outcome is not known yet")]
    Unknown,
    /// The node stopped before it learned the outcome; the term may still
    /// commit on the rest of the cluster.
    #[error("the node stopped before the outcome was known")]
    Stopped,
}

/// A proposal waiting in the pool, with where to report its outcome.
pub(crate) struct Pending {
    pub(crate) content: Payload,
    /// The epoch in which this node led when it took the proposal.
    pub(crate) epoch: Epoch,
    pub(crate) done: Completer,
}

/// Where the outcome of one proposal meets its proposer: one allocation per
/// proposal, no channel.
#[derive(Debug)]
struct Slot {
    state: Mutex<State>,
    ready: Condvar,
    /// Set with the outcome, so that a proposer can poll without the lock.
    done: AtomicBool,
}

#[derive(Debug)]
enum State {
    Waiting,
    Done(Outcome),
    /// The node let go of the proposal without an outcome (it stopped).
    Abandoned,
}

/// The node's side of a proposal: reports its outcome once. Dropping it
/// without reporting tells the proposer that the node stopped.
#[derive(Debug)]
pub(crate) struct Completer {
    slot: Option<Arc<Slot>>,
}

impl Completer {
    pub(crate) fn complete(mut self, outcome: Outcome) {
        if let Some(slot) = self.slot.take() {
            slot.finish(State::Done(outcome));
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.finish(State::Abandoned);
        }
    }
}

impl Slot {
    fn finish(&self, state: State) {
        let mut current = self.state.lock();
        if matches!(*current, State::Waiting) {
            *current = state;
            self.done.store(true, Ordering::Release);
            self.ready.notify_all();
        }
    }
}

/// The proposer's side: waits for the outcome of one proposal.
#[derive(Debug)]
pub struct Proposal {
    slot: Arc<Slot>,
}

impl Proposal {
    pub(crate) fn new() -> (Self, Completer) {
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Waiting),
            ready: Condvar::new(),
            done: AtomicBool::new(false),
        });
        (Proposal { slot: Arc::clone(&slot) }, Completer { slot: Some(slot) })
    }

    /// Waits until the proposal commits or is dropped. Returns the index and
    /// epoch of the committed term.
    ///
    /// # Errors
    /// [`WaitError::Dropped`] when it will never commit;
    /// [`WaitError::Stopped`] when the node stopped first.
    pub fn wait(&self) -> Result<(Index, Epoch), WaitError> {
        self.poll_briefly();
        let mut state = self.slot.state.lock();
        while matches!(*state, State::Waiting) {
            self.slot.ready.wait(&mut state);
        }
        resolve(&state)
    }

    /// Like [`Proposal::wait`], giving up after `timeout`.
    ///
    /// # Errors
    /// As `wait`, and [`WaitError::Unknown`] when the timeout passed first.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(Index, Epoch), WaitError> {
        self.poll_briefly();
        let mut state = self.slot.state.lock();
        if !matches!(*state, State::Waiting) {
            return resolve(&state);
        }
        let deadline = Instant::now() + timeout;
        while matches!(*state, State::Waiting) {
            if self.slot.ready.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        resolve(&state)
    }

    /// Polls for the outcome for a moment before the caller sleeps: a commit
    /// often lands within microseconds, and waking a sleeping thread costs
    /// more than that.
    fn poll_briefly(&self) {
        super::spin::spin_until(PROPOSER_SPIN, || self.slot.done.load(Ordering::Acquire));
    }

    /// The outcome if it is known now, without waiting.
    pub fn try_outcome(&self) -> Option<Outcome> {
        match &*self.slot.state.lock() {
            State::Done(outcome) => Some(outcome.clone()),
            State::Waiting | State::Abandoned => None,
        }
    }
}

fn resolve(state: &State) -> Result<(Index, Epoch), WaitError> {
    match state {
        State::Done(Outcome::Committed { index, epoch }) => Ok((*index, *epoch)),
        State::Done(Outcome::Dropped(reason)) => Err(WaitError::Dropped(reason.clone())),
        State::Waiting => Err(WaitError::Unknown),
        State::Abandoned => Err(WaitError::Stopped),
    }
}
