//! The leader's round, from the original design: choose work between the
//! update-node pool and the term pool, build the terms (or none: a heartbeat),
//! let the application approve, send to every follower in shuffled order,
//! count the negative answers, and step down when a quorum of voters is no
//! longer with the leader.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::core::{Core, CoreError, Output};
use crate::store::LogStore;
use crate::types::{Epoch, Index, NodeId, Status, Term, TermKind};

/// Which pool a round takes its work from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// The update-node pool.
    UpdateNode,
    /// The term pool.
    Terms,
    /// Neither holds work: the round sends a heartbeat.
    Nothing,
}

/// The terms a round will send, built but not yet in the log. A draft is
/// valid only while the node leads the epoch it was built in and nothing else
/// was appended since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// The epoch the terms belong to.
    pub epoch: Epoch,
    /// The index of the first term (the last index plus one when built).
    pub first_index: Index,
    /// The terms, possibly none (a heartbeat).
    pub terms: Vec<Term>,
}

/// What became of a round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    /// Whether the draft's terms are now in the leader's log. They may still
    /// commit or be replaced later; `false` means they are in no log at all.
    pub appended: bool,
    /// Whether the store holds the terms without having synced them: call
    /// [`Core::sync_log`] once the outputs are carried out. Until then the
    /// leader does not count the terms as stored on itself.
    pub sync_pending: bool,
    /// What must happen.
    pub outputs: Vec<Output>,
}

impl<S: LogStore> Core<S> {
    /// Chooses where the next round takes its work: at random when both
    /// pools hold some, otherwise the one that does.
    pub fn choose_work(&mut self, updates_waiting: bool, terms_waiting: bool) -> Work {
        match (updates_waiting, terms_waiting) {
            (true, true) if self.rng.random_bool(0.5) => Work::UpdateNode,
            (true, true) => Work::Terms,
            (true, false) => Work::UpdateNode,
            (false, true) => Work::Terms,
            (false, false) => Work::Nothing,
        }
    }

    /// Whether the leader may start a membership change now: one change at a
    /// time (the single-server change of Ongaro's dissertation, §4.1), so the
    /// last configuration in the log must be committed, and the leader must
    /// have committed a term of its own epoch first, so that it cannot
    /// overrule a change an earlier leader committed.
    pub fn can_change_membership(&self) -> bool {
        let last_config = self.configs.last().map_or(0, |(i, _)| *i);
        #[cfg(test)]
        let last_config = match self.mutation {
            Some(super::Mutation::ConcurrentChanges) => 0,
            _ => last_config,
        };
        self.status == Status::Leader
            && last_config <= self.commit
            && self.store.epoch_of(self.commit) == Some(self.epoch)
    }

    /// The most terms one round builds.
    pub fn max_terms_per_round(&self) -> usize {
        self.settings.max_terms_per_round
    }

    /// Builds the terms of a round from what was popped, in order, at the
    /// end of the log and in the current epoch. `None` unless leader.
    pub fn draft_round(&self, kinds: Vec<TermKind>) -> Option<Draft> {
        if self.status != Status::Leader {
            return None;
        }
        let first_index = self.store.last_index() + 1;
        let terms = kinds
            .into_iter()
            .zip(first_index..)
            .map(|(kind, index)| Term { index, epoch: self.epoch, kind })
            .collect();
        Some(Draft { epoch: self.epoch, first_index, terms })
    }

    /// Runs the rest of a round. A draft the application did not approve,
    /// or built before a change of leadership or of the log, is dropped
    /// without sending anything.
    ///
    /// Otherwise its terms go into the log, every follower is sent what it
    /// lacks in shuffled order, and the followers not heard from within the
    /// response timeout count as negative, the leader as one positive: when
    /// fewer than a quorum of voters are positive the leader steps down,
    /// otherwise it advances the commit index.
    ///
    /// # Errors
    /// The store failed to append the terms or read what to send.
    pub fn send_round(
        &mut self,
        draft: Draft,
        approved: bool,
        now: Duration,
    ) -> Result<RoundOutcome, CoreError> {
        let current = self.status == Status::Leader
            && draft.epoch == self.epoch
            && draft.first_index == self.store.last_index() + 1;
        if !current || !approved {
            return Ok(RoundOutcome::default());
        }
        self.counters.rounds += 1;
        let mut out = Vec::new();
        // The leader writes its terms without waiting for the disk and sends
        // them at once: its sync (`sync_log`) runs while its followers write
        // (dissertation §10.2.1). It counts them as its own only after that.
        let heartbeat = draft.terms.is_empty();
        self.append_terms(&draft.terms, true, &mut out)?;

        let mut peers: Vec<NodeId> = self.progress.keys().copied().collect();
        peers.shuffle(&mut self.rng);
        for p in peers {
            self.replicate(p, heartbeat, &mut out)?;
        }

        if self.quorum_lost(now, &mut out) {
            self.become_follower(self.epoch, None, now, &mut out)?;
        } else {
            self.maybe_commit(now, &mut out)?;
        }
        self.check_invariants();
        let sync_pending = self.synced < self.store.last_index();
        Ok(RoundOutcome { appended: true, sync_pending, outputs: out })
    }

    /// Counts the negative answers of a round: a member is negative when it
    /// has not answered within the response timeout (one that answered with
    /// a higher epoch has already made this node step down). True when the
    /// positive voters, the leader included, are fewer than a quorum.
    fn quorum_lost(&mut self, now: Duration, out: &mut Vec<Output>) -> bool {
        let timeout = self.settings.response_timeout;
        // Borrowed field by field, so that no round copies the configuration.
        let config = &self.configs.last().expect("a log always holds a configuration").1;
        let mut positive = usize::from(config.is_voter(self.id));
        for (id, p) in self.progress.iter_mut() {
            let negative = now.saturating_sub(p.last_heard) > timeout;
            if negative && !p.lost {
                p.lost = true;
                out.push(Output::LostConnection { peer: *id });
            }
            if config.is_voter(*id) {
                if negative {
                    self.counters.negatives += 1;
                } else {
                    positive += 1;
                }
            }
        }
        positive < config.quorum()
    }
}
