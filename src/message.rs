//! The messages nodes exchange. Every message is one-way; an answer is another
//! message. Every message carries the sender's epoch (§5.1).

use serde::{Deserialize, Serialize};

use crate::types::{Epoch, Index, NodeId, Role, Term};

/// One message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's epoch when it sent the message.
    pub epoch: Epoch,
    /// What the message says.
    pub body: Body,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A leader's round for one follower: the terms after `prev_index` (none
    /// for a heartbeat) and the leader's commit index (§5.3).
    AppendTerms {
        /// The index just before the first term sent.
        prev_index: Index,
        /// The epoch of the term at `prev_index` in the leader's log.
        prev_epoch: Epoch,
        /// The leader's commit index.
        commit: Index,
        /// The terms, consecutive from `prev_index + 1`.
        terms: Vec<Term>,
    },
    /// A follower's answer to `AppendTerms`.
    AppendReply(AppendReply),
    /// A candidate asks for a vote (§5.2), with the last term of its log so
    /// that voters can refuse a stale candidate (§5.4.1).
    VoteRequest {
        /// Index of the candidate's last term.
        last_index: Index,
        /// Epoch of the candidate's last term.
        last_epoch: Epoch,
    },
    /// A voter's answer to `VoteRequest`.
    VoteReply {
        /// Whether the vote was granted.
        granted: bool,
    },
    /// A node outside the configuration asks to join it, or a member to
    /// change its address or role.
    JoinRequest {
        /// Where the transport reaches the sender.
        address: String,
        /// The role it asks for.
        role: Role,
    },
    /// The answer to `JoinRequest`.
    JoinReply(JoinReply),
}

/// The answer to a request to join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinReply {
    /// The leader took the request: a configuration term naming the sender
    /// will follow.
    Accepted,
    /// The receiver does not lead; ask the leader it names, if it knows one.
    Redirect {
        /// The leader and its address.
        leader: Option<(NodeId, String)>,
    },
    /// The leader's application refused the request.
    Refused {
        /// Why, in the application's words.
        reason: String,
    },
}

/// A follower's answer to `AppendTerms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendReply {
    /// The follower's log matches the leader's up to `match_index`, and every
    /// term up to it is durable.
    Stored {
        /// The highest index known to match the leader's log.
        match_index: Index,
    },
    /// The follower has no term matching `prev_index` and `prev_epoch`.
    Mismatch {
        /// The `prev_index` of the refused request.
        prev_index: Index,
        /// The follower's last index.
        last_index: Index,
        /// When the follower has a term at `prev_index`, its epoch and the
        /// first index of that epoch in the follower's log, so the leader can
        /// skip back a whole epoch at a time.
        conflict: Option<(Epoch, Index)>,
    },
}
