//! The entry point for messages: checks a message before it can change
//! anything, applies the epoch rules every message obeys (§5.1), and hands it
//! to the handler of its kind.

use std::time::Duration;

use crate::core::{Core, CoreError, Output};
use crate::message::{AppendReply, Body, Message};
use crate::store::LogStore;

impl<S: LogStore> Core<S> {
    /// Takes one message from a peer, the application agreeing to whatever
    /// it asks.
    ///
    /// # Errors
    /// [`CoreError::Malformed`] for a message that breaks the protocol (it
    /// changes nothing), [`CoreError::Storage`] when the store failed.
    pub fn step(&mut self, msg: Message, now: Duration) -> Result<Vec<Output>, CoreError> {
        self.step_with(msg, now, true)
    }

    /// Takes one message like [`Core::step`], but the application refuses the
    /// vote it may ask for: a vote request is then denied whatever the Raft
    /// rules would say. Any other message is taken as by `step`.
    ///
    /// # Errors
    /// As [`Core::step`].
    pub fn step_refusing_vote(
        &mut self,
        msg: Message,
        now: Duration,
    ) -> Result<Vec<Output>, CoreError> {
        self.step_with(msg, now, false)
    }

    fn step_with(
        &mut self,
        msg: Message,
        now: Duration,
        vote_allowed: bool,
    ) -> Result<Vec<Output>, CoreError> {
        self.validate(&msg)?;
        let mut out = Vec::new();

        // Joining is not part of Raft's epochs: its messages bypass them.
        match &msg.body {
            Body::JoinRequest { .. } => {
                self.handle_join_request(&msg, &mut out);
                return Ok(out);
            }
            Body::JoinReply(reply) => {
                self.handle_join_reply(reply, now, &mut out);
                self.check_invariants();
                return Ok(out);
            }
            Body::VoteRequest { .. } if msg.epoch > self.epoch && self.leader_is_alive(now) => {
                return Ok(out);
            }
            _ => {}
        }

        // §5.1: a higher epoch makes any node a follower of it; a lower one
        // is answered with the current epoch and otherwise ignored.
        if msg.epoch > self.epoch {
            let leader = matches!(msg.body, Body::AppendTerms { .. }).then_some(msg.from);
            self.become_follower(msg.epoch, leader, now, &mut out)?;
        } else if msg.epoch < self.epoch {
            self.answer_stale(&msg, &mut out);
            return Ok(out);
        }

        match &msg.body {
            Body::AppendTerms { .. } => self.handle_append_terms(msg, now, &mut out)?,
            Body::AppendReply(reply) => self.handle_append_reply(msg.from, reply, now, &mut out)?,
            Body::VoteRequest { last_index, last_epoch } => {
                let (i, e) = (*last_index, *last_epoch);
                self.handle_vote_request(&msg, i, e, vote_allowed, now, &mut out)?;
            }
            Body::JoinRequest { .. } | Body::JoinReply(_) => {}
            Body::VoteReply { granted } => {
                self.handle_vote_reply(msg.from, *granted, now, &mut out)?
            }
        }
        self.check_invariants();
        Ok(out)
    }

    /// A request of a past epoch gets a refusal carrying the current epoch,
    /// so its sender steps down; an answer of a past epoch is dropped.
    fn answer_stale(&self, msg: &Message, out: &mut Vec<Output>) {
        let body = match msg.body {
            Body::AppendTerms { prev_index, .. } => Body::AppendReply(AppendReply::Mismatch {
                prev_index,
                last_index: self.store.last_index(),
                conflict: None,
            }),
            Body::VoteRequest { .. } => Body::VoteReply { granted: false },
            Body::AppendReply(_)
            | Body::VoteReply { .. }
            | Body::JoinRequest { .. }
            | Body::JoinReply(_) => return,
        };
        self.send(msg.from, body, out);
    }

    /// Refuses a message that no correct peer sends, before it changes
    /// anything.
    fn validate(&self, msg: &Message) -> Result<(), CoreError> {
        let bad = |detail: String| Err(CoreError::Malformed { from: msg.from, detail });
        if msg.to != self.id {
            return bad(format!("addressed to {}, not {}", msg.to, self.id));
        }
        if msg.from == self.id {
            return bad("sent by this node to itself".into());
        }
        let Body::AppendTerms { prev_index, prev_epoch, terms, .. } = &msg.body else {
            return Ok(());
        };
        if *prev_epoch > msg.epoch {
            return bad(format!("prev_epoch {prev_epoch} above message epoch {}", msg.epoch));
        }
        let mut epoch = *prev_epoch;
        for (k, t) in terms.iter().enumerate() {
            let expected = prev_index.checked_add(k as u64 + 1);
            if Some(t.index) != expected {
                return bad(format!(
                    "term {} at position {k} after prev_index {prev_index}",
                    t.index
                ));
            }
            if t.epoch < epoch || t.epoch > msg.epoch {
                return bad(format!("term {} has epoch {} out of order", t.index, t.epoch));
            }
            epoch = t.epoch;
        }
        Ok(())
    }
}
