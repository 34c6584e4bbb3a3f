//! Replication (§5.3): what the leader sends each follower, how a follower
//! checks and stores it, and how the leader advances the commit index
//! (§5.4.2).

use std::time::Duration;

use crate::core::{Core, CoreError, Output};
use crate::message::{AppendReply, Body, Message};
use crate::store::LogStore;
use crate::types::{Epoch, Index, NodeId, Status, Term};

/// How the leader sends to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches its own:
    /// one request at a time, moving back on each mismatch.
    Probe,
    /// The logs match up to `match_index`: new terms are sent as soon as they
    /// exist, without waiting for answers.
    Replicate,
}

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The highest index known to be stored on the follower.
    pub match_index: Index,
    /// The next index to send.
    pub next_index: Index,
    /// Probing or replicating.
    pub state: ProgressState,
    /// When the follower last answered in the current epoch.
    pub last_heard: Duration,
    /// Whether the follower currently counts as negative in rounds.
    pub lost: bool,
    /// In `Probe`, whether a probe is out and unanswered.
    pub probe_sent: bool,
}

impl Progress {
    pub(super) fn new(next_index: Index, now: Duration) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            last_heard: now,
            lost: false,
            probe_sent: false,
        }
    }
}

impl<S: LogStore> Core<S> {
    /// Sends `peer` what it lacks, within the message bounds. `retransmit`
    /// (a round without new terms) resends whatever is not acknowledged, so a
    /// lost message costs one heartbeat, not an election.
    pub(super) fn replicate(
        &mut self,
        peer: NodeId,
        retransmit: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let last = self.store.last_index();
        let Some(p) = self.progress.get_mut(&peer) else {
            return Ok(());
        };
        match p.state {
            ProgressState::Probe if p.probe_sent && !retransmit => return Ok(()),
            ProgressState::Probe => p.probe_sent = true,
            ProgressState::Replicate if retransmit => p.next_index = p.match_index + 1,
            ProgressState::Replicate => {}
        }
        let next = p.next_index;
        let terms = if next <= last {
            let to = last.min(next + self.settings.max_terms_per_message as u64 - 1);
            self.store.terms(next, to, self.settings.max_bytes_per_message)?
        } else {
            Vec::new()
        };
        let p = self.progress.get_mut(&peer).expect("progress checked above");
        if p.state == ProgressState::Replicate {
            p.next_index += terms.len() as u64;
        }
        let prev_index = next - 1;
        let prev_epoch = self.store.epoch_of(prev_index).unwrap_or(0);
        let body = Body::AppendTerms { prev_index, prev_epoch, commit: self.commit, terms };
        self.send(peer, body, out);
        Ok(())
    }

    /// A follower's side of `AppendTerms` (§5.3), the message being of the
    /// current epoch.
    pub(super) fn handle_append_terms(
        &mut self,
        mut msg: Message,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let Body::AppendTerms { prev_index, prev_epoch, commit: leader_commit, terms } =
            &mut msg.body
        else {
            return Ok(());
        };
        let (prev_index, prev_epoch, leader_commit) = (*prev_index, *prev_epoch, *leader_commit);
        // The terms move into the store and the hook's list; no copy.
        let terms = std::mem::take(terms);
        let msg = &msg;
        if self.status == Status::Leader {
            return Err(malformed(msg, "a second leader in the same epoch"));
        }
        if self.status == Status::Candidate {
            self.become_follower(msg.epoch, Some(msg.from), now, out)?;
        }
        self.set_leader(Some(msg.from), out);
        self.leader_contact = Some(now);
        self.reset_election_deadline(now);

        let last = self.store.last_index();
        if prev_index > last {
            let reply = AppendReply::Mismatch { prev_index, last_index: last, conflict: None };
            self.send(msg.from, Body::AppendReply(reply), out);
            return Ok(());
        }
        if let Some(mine) = self.store.epoch_of(prev_index).filter(|e| *e != prev_epoch) {
            let conflict = Some((mine, self.first_index_of_epoch(mine, prev_index)));
            let reply = AppendReply::Mismatch { prev_index, last_index: last, conflict };
            self.send(msg.from, Body::AppendReply(reply), out);
            return Ok(());
        }

        let match_index = prev_index + terms.len() as u64;
        self.store_new_terms(msg, terms, out)?;
        let commit = leader_commit.min(match_index);
        if commit > self.commit {
            self.advance_commit(commit, out);
        }
        let reply = AppendReply::Stored { match_index };
        self.send(msg.from, Body::AppendReply(reply), out);
        Ok(())
    }

    /// Skips the terms the log already holds, truncates at the first
    /// conflicting one, and appends the rest.
    fn store_new_terms(
        &mut self,
        msg: &Message,
        mut terms: Vec<Term>,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let last = self.store.last_index();
        let mut first_new = terms.len();
        let mut conflict = false;
        for (k, t) in terms.iter().enumerate() {
            if t.index > last {
                first_new = k;
                break;
            }
            if self.store.epoch_of(t.index) != Some(t.epoch) {
                first_new = k;
                conflict = true;
                break;
            }
        }
        let new = if first_new == 0 { terms } else { terms.split_off(first_new) };
        let Some(first) = new.first().map(|t| t.index) else {
            return Ok(());
        };
        if conflict {
            if first <= self.commit {
                let detail = format!("replaces committed index {first}");
                return Err(malformed(msg, &detail));
            }
            self.truncate_store(first, out)?;
        }
        self.append_to_store(&new, out)?;
        out.push(Output::Stored(new));
        Ok(())
    }

    /// The leader's side of an answer to `AppendTerms`.
    pub(super) fn handle_append_reply(
        &mut self,
        from: NodeId,
        reply: &AppendReply,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        if self.status != Status::Leader {
            return Ok(());
        }
        let last = self.store.last_index();
        let Some(p) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        p.last_heard = now;
        p.lost = false;
        match *reply {
            AppendReply::Stored { match_index } => {
                let match_index = match_index.min(last);
                p.match_index = p.match_index.max(match_index);
                p.next_index = p.next_index.max(p.match_index + 1);
                p.state = ProgressState::Replicate;
                p.probe_sent = false;
                let behind = p.next_index <= last;
                self.maybe_commit(now, out)?;
                if self.status != Status::Leader {
                    return Ok(());
                }
                if behind {
                    self.replicate(from, false, out)?;
                }
            }
            AppendReply::Mismatch { prev_index, last_index, conflict } => {
                if last_index < p.match_index {
                    // The follower holds less than it once stored: it lost
                    // its log (a new disk, a store that was not durable), or
                    // this is a late answer from before. Either way, count
                    // only what it has now and probe from there; a late
                    // answer costs one resend.
                    p.match_index = last_index;
                    p.next_index = last_index + 1;
                    p.state = ProgressState::Probe;
                    p.probe_sent = false;
                    return self.replicate(from, false, out);
                }
                if prev_index <= p.match_index || prev_index >= p.next_index {
                    // An answer to a request older than what we know now.
                    return Ok(());
                }
                let next = self.next_after_mismatch(prev_index, last_index, conflict);
                let p = self.progress.get_mut(&from).expect("progress checked above");
                p.next_index = next.clamp(p.match_index + 1, prev_index);
                p.state = ProgressState::Probe;
                p.probe_sent = false;
                self.replicate(from, false, out)?;
            }
        }
        Ok(())
    }

    /// Where to probe next after a mismatch: past the follower's last term
    /// when its log is short, else past the leader's last term of the
    /// conflicting epoch, else at the start of that epoch on the follower.
    /// Each mismatch skips a whole epoch, not one index.
    fn next_after_mismatch(
        &self,
        prev_index: Index,
        last_index: Index,
        conflict: Option<(Epoch, Index)>,
    ) -> Index {
        if last_index < prev_index {
            return last_index + 1;
        }
        match conflict {
            Some((epoch, first)) => match self.last_index_of_epoch(epoch, prev_index) {
                Some(mine) => mine + 1,
                None => first,
            },
            None => prev_index,
        }
    }

    /// Moves the commit index to the highest index stored on a quorum of
    /// voters, if the term there is of this leader's epoch: earlier terms are
    /// never committed by counting (§5.4.2, Figure 8), they commit with it.
    pub(super) fn maybe_commit(
        &mut self,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let config = self.membership();
        let mut matched: Vec<Index> = config
            .voter_ids()
            .map(|v| match self.progress.get(&v) {
                Some(p) => p.match_index,
                None if v == self.id => self.synced,
                None => 0,
            })
            .collect();
        let quorum = config.quorum();
        if matched.len() < quorum {
            return Ok(());
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[quorum - 1];
        let own_epoch = self.store.epoch_of(candidate) == Some(self.epoch);
        #[cfg(test)]
        let own_epoch = own_epoch || self.mutation == Some(super::Mutation::CommitEarlierEpoch);
        if candidate > self.commit && own_epoch {
            self.advance_commit(candidate, out);
            self.settle_membership(now, out)?;
        }
        Ok(())
    }

    pub(super) fn advance_commit(&mut self, index: Index, out: &mut Vec<Output>) {
        self.counters.committed += index - self.commit;
        self.commit = index;
        out.push(Output::Committed { index });
    }
}

fn malformed(msg: &Message, detail: &str) -> CoreError {
    CoreError::Malformed { from: msg.from, detail: detail.to_string() }
}
