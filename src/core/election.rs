//! Elections (§5.2): the election timer, vote requests and answers, and the
//! status changes they cause.

use std::time::Duration;

use crate::core::{Core, CoreError, Output, Progress};
use crate::message::{Body, Message};
use crate::store::LogStore;
use crate::types::{Epoch, NodeId, Status, Term, TermKind};

impl<S: LogStore> Core<S> {
    /// Tells the core the time is `now`. A voter that has heard no leader
    /// before its election deadline stands for election (§5.2).
    ///
    /// # Errors
    /// The store failed to save the new epoch and vote.
    pub fn tick(&mut self, now: Duration) -> Result<Vec<Output>, CoreError> {
        let mut out = Vec::new();
        if self.next_deadline().is_some_and(|d| now >= d) {
            if self.may_stand() {
                self.start_election(now, &mut out)?;
            } else {
                self.send_join_request(now, &mut out);
            }
        }
        self.check_invariants();
        Ok(out)
    }

    /// A candidate moves to the next epoch, votes for itself, and asks every
    /// other voter (§5.2).
    fn start_election(&mut self, now: Duration, out: &mut Vec<Output>) -> Result<(), CoreError> {
        self.epoch += 1;
        self.vote = Some(self.id);
        self.persist_hard_state()?;
        self.counters.elections += 1;

        self.progress.clear();
        self.votes.clear();
        self.votes.insert(self.id, true);
        self.set_leader(None, out);
        self.set_status(Status::Candidate, out);
        self.reset_election_deadline(now);

        if self.won_election() {
            return self.become_leader(now, out);
        }
        let last_index = self.store.last_index();
        let last_epoch = self.store.epoch_of(last_index).unwrap_or(0);
        let voters: Vec<NodeId> = self.membership().voter_ids().filter(|v| *v != self.id).collect();
        for v in voters {
            self.send(v, Body::VoteRequest { last_index, last_epoch }, out);
        }
        Ok(())
    }

    fn won_election(&self) -> bool {
        let config = self.membership();
        let granted = self.votes.iter().filter(|(id, g)| **g && config.is_voter(**id)).count();
        granted >= config.quorum()
    }

    /// Takes leadership of the current epoch: every other member starts
    /// probed from the end of the log, and an empty term of the new epoch is
    /// appended and sent at once, so that terms of earlier epochs can commit
    /// with it (§5.4.2).
    pub(super) fn become_leader(
        &mut self,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        self.votes.clear();
        self.set_status(Status::Leader, out);
        self.set_leader(Some(self.id), out);
        self.counters.terms_as_leader += 1;

        let next = self.store.last_index() + 1;
        let peers: Vec<NodeId> =
            self.membership().members.keys().copied().filter(|m| *m != self.id).collect();
        self.progress = peers.into_iter().map(|p| (p, Progress::new(next, now))).collect();

        let noop = Term { index: next, epoch: self.epoch, kind: TermKind::Empty };
        self.append_to_store(&[noop], out)?;
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for p in peers {
            self.replicate(p, false, out)?;
        }
        self.maybe_commit(now, out)
    }

    /// Steps back to follower (or pending) in `epoch`, which is at least the
    /// current one; a higher epoch clears the vote and is saved first.
    pub(super) fn become_follower(
        &mut self,
        epoch: Epoch,
        leader: Option<NodeId>,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        // A leader stepping down between a round and its sync: a follower
        // answers for its whole log, so all of it must be durable first.
        self.sync_own_log()?;
        if epoch > self.epoch {
            self.epoch = epoch;
            self.vote = None;
            self.persist_hard_state()?;
        }
        self.progress.clear();
        self.promotions.clear();
        self.votes.clear();
        let to = self.follower_status();
        self.set_status(to, out);
        self.set_leader(leader, out);
        self.reset_election_deadline(now);
        Ok(())
    }

    /// Whether a leader was heard from within the shortest election timeout:
    /// a follower that has, and a leader that a quorum answered within it,
    /// ignore a vote request of a higher epoch, so that a node cut off from
    /// the leader, or removed from the cluster, cannot depose a leader that
    /// works (dissertation §4.2.3).
    pub(super) fn leader_is_alive(&self, now: Duration) -> bool {
        let lease = self.settings.election_min;
        let recent = |t: Duration| now.saturating_sub(t) < lease;
        match self.status {
            Status::Leader => {
                let config = self.membership();
                let mut alive = usize::from(config.is_voter(self.id));
                for (id, p) in &self.progress {
                    alive += usize::from(config.is_voter(*id) && recent(p.last_heard));
                }
                alive >= config.quorum()
            }
            _ => self.leader.is_some() && self.leader_contact.is_some_and(recent),
        }
    }

    /// Answers a vote request. `allowed` is the application's say: false
    /// turns what would be a grant into a refusal, and nothing else. A node
    /// that its own configuration does not count as a voter answers too;
    /// only a candidate whose configuration counts it asks.
    pub(super) fn handle_vote_request(
        &mut self,
        msg: &Message,
        last_index: u64,
        last_epoch: Epoch,
        allowed: bool,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        // §5.4.1: only a candidate whose log is at least as up to date.
        let my_last = self.store.last_index();
        let my_last_epoch = self.store.epoch_of(my_last).unwrap_or(0);
        let up_to_date = (last_epoch, last_index) >= (my_last_epoch, my_last);
        let free = self.vote.is_none() || self.vote == Some(msg.from);
        #[cfg(test)]
        let up_to_date = up_to_date || self.mutation == Some(super::Mutation::SkipUpToDate);
        #[cfg(test)]
        let free = free || self.mutation == Some(super::Mutation::DoubleVote);
        // A node votes without consulting its own configuration (as the
        // dissertation's §4.1 asks of every request): a candidate counts
        // only the voters of its own configuration, and a node whose log
        // lacks the change that made it a voter must still be able to
        // give the vote that change made necessary.
        let can_vote = self.status != Status::Leader;

        let granted = allowed && up_to_date && free && can_vote;
        if granted {
            self.vote = Some(msg.from);
            self.persist_hard_state()?;
            self.reset_election_deadline(now);
        }
        self.send(msg.from, Body::VoteReply { granted }, out);
        Ok(())
    }

    /// Counts an answer to this node's vote request.
    pub(super) fn handle_vote_reply(
        &mut self,
        from: NodeId,
        granted: bool,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        if self.status != Status::Candidate {
            return Ok(());
        }
        out.push(Output::VoteReceived { from, granted });
        self.votes.insert(from, granted);
        if self.won_election() {
            self.become_leader(now, out)?;
        }
        Ok(())
    }
}
