//! The application's side of the algorithm: [`Hook`] has one method for each
//! moment of the original design, every one with a default, so an application
//! implements only the moments it cares about.
//!
//! # Threads
//! Hooks run on the node's own threads: the *node thread* (messages and the
//! election timer) and, while the node leads, the *leader worker* thread
//! (timers and rounds). A slow hook slows the node: a slow `apply_term` delays
//! the terms after it, a slow `send_term` delays every round. No lock of the
//! node is held during a hook call, so a hook may call any method of
//! [`crate::Node`]; the one exception is `apply_term`, which runs while the
//! node's apply order is reserved (see there).

pub use crate::types::UpdateNode;
use crate::types::{Epoch, Index, NodeId, Payload, Status, Term};

/// What the application does at each moment of the algorithm.
pub trait Hook: Send + Sync + 'static {
    /// Leader worker, on each tick of the prepare timer: content to propose,
    /// if any. `Some` goes into the term pool like a proposal nobody waits
    /// for; when the pool is full it is dropped with a warning.
    fn prepare_term(&self) -> Option<Payload> {
        None
    }

    /// Leader worker, once per round, before anything is sent: the terms the
    /// round built (none for a heartbeat). `false` ends the round without
    /// sending: its terms are in no log, and their proposals resolve as
    /// dropped. Refusing heartbeats keeps followers uninformed of the leader
    /// and leads to elections.
    fn send_term(&self, terms: &[Term]) -> bool {
        let _ = terms;
        true
    }

    /// Any node thread, for every committed term in index order, exactly once
    /// per run of the node (a restarted node applies its log again from the
    /// start). Empty and configuration terms come too: match on `term.kind`.
    ///
    /// Calls are serialized by the node so that order holds across its two
    /// threads: while this runs, the next committed terms wait.
    fn apply_term(&self, term: &Term) {
        let _ = term;
    }

    /// Node thread, on a follower, for each term of a leader's request
    /// before it is stored. `false` refuses the term and every one after it
    /// in that request: the follower stores the terms before it and answers
    /// that far, and the leader sends the rest again later (so this may be
    /// asked again for the same term; answer the same way). A follower that
    /// keeps refusing falls behind but does not stop the cluster while a
    /// quorum accepts.
    fn pre_append_term(&self, term: &Term) -> bool {
        let _ = term;
        true
    }

    /// Node thread, on a follower, for each term once it is durable.
    fn append_term(&self, term: &Term) {
        let _ = term;
    }

    /// Either thread, when this node learns that the commit index advanced
    /// to `index`. Called before the terms are applied.
    fn commit_term(&self, index: Index) {
        let _ = index;
    }

    /// Node thread, on a voter asked for its vote, before Raft's own rules.
    /// `false` denies the vote; `true` leaves the decision to the rules (one
    /// vote per epoch, an up-to-date log).
    fn request_vote(&self, candidate: NodeId, epoch: Epoch) -> bool {
        let _ = (candidate, epoch);
        true
    }

    /// Node thread, on a candidate, for each answer to its vote request.
    fn receive_vote(&self, voter: NodeId, epoch: Epoch, granted: bool) {
        let _ = (voter, epoch, granted);
    }

    /// Node thread, on the leader, for each request to join or update a
    /// member, and on any thread calling [`crate::Node::update_node`].
    /// `Err(reason)` refuses it with that reason. A joining node repeats its
    /// request until the configuration names it (and, for a voter, until it
    /// is promoted), so the same request may be asked more than once.
    ///
    /// # Errors
    /// The reason to refuse, sent back to the requester.
    fn update_node(&self, request: &UpdateNode) -> Result<(), String> {
        let _ = request;
        Ok(())
    }

    /// Any node thread, when a committed configuration that no longer names
    /// `peer` is applied, on every node that applies it.
    fn remove_connection(&self, peer: NodeId) {
        let _ = peer;
    }

    /// Either thread, on every change of status, in order.
    fn switch_status(&self, from: Status, to: Status, epoch: Epoch) {
        let _ = (from, to, epoch);
    }

    /// Either thread, when the known leader changes (`None`: no leader known).
    fn leader_change(&self, leader: Option<NodeId>, epoch: Epoch) {
        let _ = (leader, epoch);
    }

    /// Leader worker, when a member has not answered for longer than the
    /// response timeout. Reported once until it answers again.
    fn lost_connection(&self, peer: NodeId) {
        let _ = peer;
    }
}

/// Asks `hook` what it has a say in before the core takes `msg`: whether to
/// allow a vote the message asks for (the return value), and which terms of
/// an append to take (the list is cut at the first one `pre_append_term`
/// refuses). The runtime and the simulator both call this, with no lock held.
pub(crate) fn consult(hook: &dyn Hook, msg: &mut crate::message::Message) -> bool {
    use crate::message::Body;
    match &mut msg.body {
        Body::VoteRequest { .. } => hook.request_vote(msg.from, msg.epoch),
        Body::AppendTerms { terms, .. } => {
            if let Some(k) = terms.iter().position(|t| !hook.pre_append_term(t)) {
                terms.truncate(k);
            }
            true
        }
        _ => true,
    }
}

/// A hook that does nothing at every moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl Hook for NoHook {}

/// A shared hook is a hook, so an application can keep a handle on its own.
impl<T: Hook + ?Sized> Hook for std::sync::Arc<T> {
    fn prepare_term(&self) -> Option<Payload> {
        (**self).prepare_term()
    }

    fn send_term(&self, terms: &[Term]) -> bool {
        (**self).send_term(terms)
    }

    fn apply_term(&self, term: &Term) {
        (**self).apply_term(term)
    }

    fn pre_append_term(&self, term: &Term) -> bool {
        (**self).pre_append_term(term)
    }

    fn append_term(&self, term: &Term) {
        (**self).append_term(term)
    }

    fn commit_term(&self, index: Index) {
        (**self).commit_term(index)
    }

    fn request_vote(&self, candidate: NodeId, epoch: Epoch) -> bool {
        (**self).request_vote(candidate, epoch)
    }

    fn receive_vote(&self, voter: NodeId, epoch: Epoch, granted: bool) {
        (**self).receive_vote(voter, epoch, granted)
    }

    fn update_node(&self, request: &UpdateNode) -> Result<(), String> {
        (**self).update_node(request)
    }

    fn remove_connection(&self, peer: NodeId) {
        (**self).remove_connection(peer)
    }

    fn switch_status(&self, from: Status, to: Status, epoch: Epoch) {
        (**self).switch_status(from, to, epoch)
    }

    fn leader_change(&self, leader: Option<NodeId>, epoch: Epoch) {
        (**self).leader_change(leader, epoch)
    }

    fn lost_connection(&self, peer: NodeId) {
        (**self).lost_connection(peer)
    }
}
