//! Membership: joining, promotion of a caught-up voter, removal, and the
//! single-server rule that keeps every change safe.
//!
//! A configuration takes effect on a node as soon as it is in that node's
//! log, committed or not. Changes go one node at a time (Ongaro's
//! dissertation, §4.1): any majority of the old configuration and any
//! majority of the new one then share a voter, so two leaders can never be
//! elected in one epoch by disjoint majorities. The leader starts no change
//! while the last one is uncommitted, nor before it has committed a term of
//! its own epoch: without that, a leader elected just after a change could
//! overrule a change an earlier leader committed (the flaw the dissertation
//! corrects in §4.1 of its errata).

use std::time::Duration;

use crate::core::{Core, CoreError, Output, ProgressState};
use crate::message::{Body, JoinReply, Message};
use crate::store::LogStore;
use crate::types::{Configuration, Member, MembershipChange, NodeId, Role, Status, UpdateNode};

impl<S: LogStore> Core<S> {
    /// The configuration that `change` leads to, or `None` when it changes
    /// nothing or would leave no voter. A node that asks to vote joins as an
    /// observer first and is promoted by [`Core::ready_promotion`] once it
    /// has caught up, so that a new voter never stalls commits.
    pub fn membership_change(&mut self, change: &MembershipChange) -> Option<Configuration> {
        let mut config = self.membership().clone();
        match change {
            MembershipChange::Update(u) => {
                let current = config.members.get(&u.id).map(|m| m.role);
                let role = match (u.role, current) {
                    (Role::Voter, Some(Role::Voter)) => Role::Voter,
                    (Role::Voter, _) => {
                        self.promotions.insert(u.id);
                        Role::Observer
                    }
                    (Role::Observer, _) => {
                        self.promotions.remove(&u.id);
                        Role::Observer
                    }
                };
                let member = Member { address: u.address.clone(), role };
                if config.members.get(&u.id) == Some(&member) {
                    return None;
                }
                config.members.insert(u.id, member);
            }
            MembershipChange::Remove(id) => {
                self.promotions.remove(id);
                config.members.remove(id)?;
            }
        }
        let has_voter = config.voter_ids().next().is_some();
        has_voter.then_some(config)
    }

    /// A configuration that promotes an observer waiting to vote, once its
    /// log is within the catch-up margin of the leader's and a change may
    /// start.
    pub fn ready_promotion(&self) -> Option<Configuration> {
        if !self.can_change_membership() {
            return None;
        }
        let last = self.store.last_index();
        let margin = self.settings.catch_up_margin;
        // Caught up means answering now and in step with the leader, not
        // only close to a short log: a node that never answered must not
        // become a voter the cluster then waits for.
        let id = self.promotions.iter().copied().find(|id| {
            let caught_up = self.progress.get(id).is_some_and(|p| {
                p.state == ProgressState::Replicate
                    && !p.lost
                    && p.match_index > 0
                    && p.match_index + margin >= last
            });
            caught_up && self.membership().members.get(id).is_some_and(|m| m.role == Role::Observer)
        })?;
        let mut config = self.membership().clone();
        config.members.get_mut(&id)?.role = Role::Voter;
        Some(config)
    }

    /// Whether this node should still ask to join: it is absent from its
    /// configuration, or waits for the vote it asked for, and it has never
    /// been removed nor refused.
    pub(super) fn joining(&self) -> bool {
        if self.settings.join.is_empty() || self.join_refused.is_some() {
            return false;
        }
        let config = self.membership();
        let was_member = self.configs.iter().any(|(_, c)| c.contains(self.id));
        let was_voter = self.configs.iter().any(|(_, c)| c.is_voter(self.id));
        match config.members.get(&self.id) {
            None => !was_member,
            Some(m) => self.settings.role == Role::Voter && m.role == Role::Observer && !was_voter,
        }
    }

    /// Asks the next known node (or the leader, when one is known) to let
    /// this node in; asks again after the longest election timeout.
    pub(super) fn send_join_request(&mut self, now: Duration, out: &mut Vec<Output>) {
        let to = match self.leader {
            Some(leader) => leader,
            None => {
                let known = &self.settings.join;
                let (id, _) = &known[self.join_next % known.len()];
                self.join_next += 1;
                *id
            }
        };
        let body =
            Body::JoinRequest { address: self.settings.address.clone(), role: self.settings.role };
        self.send(to, body, out);
        self.join_deadline = now + self.settings.election_max;
    }

    /// A request to join reached this node. A leader hands it to the
    /// application ([`Output::JoinRequested`]); any other node names the
    /// leader it knows.
    pub(super) fn handle_join_request(&self, msg: &Message, out: &mut Vec<Output>) {
        let Body::JoinRequest { address, role } = &msg.body else {
            return;
        };
        if self.status == Status::Leader && self.was_removed(msg.from) {
            // A request sent before the node's removal, arriving late, must
            // not bring back a node its operator took out.
            let reason = format!("{} was removed from the cluster", msg.from);
            self.send(msg.from, Body::JoinReply(JoinReply::Refused { reason }), out);
            return;
        }
        if self.status == Status::Leader {
            let request = UpdateNode { id: msg.from, address: address.clone(), role: *role };
            out.push(Output::JoinRequested(request));
            return;
        }
        let leader = self.leader.and_then(|l| {
            let member = self.membership().members.get(&l)?;
            Some((l, member.address.clone()))
        });
        self.send(msg.from, Body::JoinReply(JoinReply::Redirect { leader }), out);
    }

    /// Whether the log shows `id` as a member once and not any more.
    fn was_removed(&self, id: NodeId) -> bool {
        !self.membership().contains(id) && self.configs.iter().any(|(_, c)| c.contains(id))
    }

    /// An answer to this node's request to join.
    pub(super) fn handle_join_reply(
        &mut self,
        reply: &JoinReply,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if !self.joining() {
            return;
        }
        match reply {
            JoinReply::Accepted | JoinReply::Redirect { leader: None } => {}
            JoinReply::Redirect { leader: Some((id, address)) } => {
                if *id != self.id && !self.settings.join.iter().any(|(k, _)| k == id) {
                    self.settings.join.insert(0, (*id, address.clone()));
                    out.push(Output::Addresses(vec![(*id, address.clone())]));
                }
                if let Some(k) = self.settings.join.iter().position(|(k, _)| k == id) {
                    self.join_next = k;
                }
                // Soon, not at once: two nodes naming each other must not
                // bounce a request back and forth at message speed.
                self.join_deadline = now + self.settings.election_min / 10;
            }
            JoinReply::Refused { reason } => {
                self.join_refused = Some(reason.clone());
                out.push(Output::JoinRefused { reason: reason.clone() });
            }
        }
    }

    /// The reply a leader sends to a request to join, once the application
    /// decided.
    pub fn join_reply(&self, to: NodeId, decision: Result<(), String>) -> Message {
        let reply = match decision {
            Ok(()) => JoinReply::Accepted,
            Err(reason) => JoinReply::Refused { reason },
        };
        Message { from: self.id, to, epoch: self.epoch, body: Body::JoinReply(reply) }
    }

    /// After the commit index moved on a leader: members removed by a
    /// committed configuration are told so and lose their progress, and a
    /// leader that the
    /// committed configuration no longer counts as a voter steps down.
    pub(super) fn settle_membership(
        &mut self,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CoreError> {
        let last_config = self.configs.last().map_or(0, |(i, _)| *i);
        if self.status != Status::Leader || self.commit < last_config {
            return Ok(());
        }
        let config = self.membership();
        let removed: Vec<NodeId> =
            self.progress.keys().copied().filter(|id| !config.contains(*id)).collect();
        let stays_voter = config.is_voter(self.id);
        // One last message carries the commit index to the members the
        // change removed: a node stands until it knows its removal
        // committed.
        for id in &removed {
            self.replicate(*id, true, out)?;
            self.progress.remove(id);
        }
        if !stays_voter {
            self.become_follower(self.epoch, None, now, out)?;
        }
        Ok(())
    }

    /// The members of `config` with their addresses, for the transport.
    pub(super) fn addresses(config: &Configuration) -> Vec<(NodeId, String)> {
        config.members.iter().map(|(id, m)| (*id, m.address.clone())).collect()
    }
}
