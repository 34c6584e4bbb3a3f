//! The vocabulary of the crate as types: nodes, epochs, indexes, terms, the
//! cluster configuration and the status of a node.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The stable identity of a node. It never changes, even when the node's
/// address does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// The election counter (Raft's *term*). It only grows.
pub type Epoch = u64;

/// The position of a term in the log. The first term has index 1; index 0
/// stands for "before the first term" and always has epoch 0.
pub type Index = u64;

/// The opaque content of a term, shared rather than copied: cloning a
/// `Payload` costs one reference count.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Payload(Arc<[u8]>);

impl Payload {
    /// Content of this many bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the content has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload(Arc::from(v))
    }
}

impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Self {
        Payload(Arc::from(v))
    }
}

impl From<String> for Payload {
    fn from(v: String) -> Self {
        Payload::from(v.into_bytes())
    }
}

impl From<&str> for Payload {
    fn from(v: &str) -> Self {
        Payload(Arc::from(v.as_bytes()))
    }
}

impl fmt::Debug for Payload {
    // Content is the application's data: only its size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;

        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Payload;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload::from(v))
            }

            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload::from(v))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Payload, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Payload::from(v))
            }
        }

        // Asking for borrowed bytes lets a format that holds the input in
        // memory hand the slice over: the content is copied once, into the
        // `Payload`, and nothing is reserved before its length is checked
        // against the input.
        d.deserialize_bytes(BytesVisitor)
    }
}

/// Whether a member takes part in elections and quorums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Votes, stands for election and counts in every quorum.
    Voter,
    /// Receives every term but never votes nor stands for election.
    Observer,
}

/// One member of the cluster as the configuration knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Where the transport reaches the member. Opaque to the core.
    pub address: String,
    /// Voter or observer.
    pub role: Role,
}

/// The members of the cluster. A configuration travels in the log as a term
/// and takes effect on a node as soon as it is in that node's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Configuration {
    /// Every member, voters and observers, by id.
    pub members: BTreeMap<NodeId, Member>,
}

impl Configuration {
    /// A configuration of voters only, each given as `(id, address)`.
    pub fn voters<A: Into<String>>(voters: impl IntoIterator<Item = (u64, A)>) -> Self {
        let members = voters
            .into_iter()
            .map(|(id, a)| (NodeId(id), Member { address: a.into(), role: Role::Voter }))
            .collect();
        Configuration { members }
    }

    /// Adds (or replaces) a member and returns the configuration.
    pub fn with(mut self, id: u64, address: impl Into<String>, role: Role) -> Self {
        self.members.insert(NodeId(id), Member { address: address.into(), role });
        self
    }

    /// Whether `id` is a voter here.
    pub fn is_voter(&self, id: NodeId) -> bool {
        matches!(self.members.get(&id), Some(m) if m.role == Role::Voter)
    }

    /// Whether `id` is a member here, voter or observer.
    pub fn contains(&self, id: NodeId) -> bool {
        self.members.contains_key(&id)
    }

    /// The voters, in id order.
    pub fn voter_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|(_, m)| m.role == Role::Voter).map(|(id, _)| *id)
    }

    /// How many voters make a majority: more than half of them.
    pub fn quorum(&self) -> usize {
        self.voter_ids().count() / 2 + 1
    }
}

/// A request to join the cluster or to change a member's address or role.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpdateNode {
    /// The node asking.
    pub id: NodeId,
    /// Where the transport reaches it.
    pub address: String,
    /// Whether it wants to vote or only to observe.
    pub role: Role,
}

/// A change of the configuration, asked of the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a member, or change a member's address or role.
    Update(UpdateNode),
    /// Remove a member.
    Remove(NodeId),
}

impl MembershipChange {
    /// The node the change is about.
    pub fn node(&self) -> NodeId {
        match self {
            MembershipChange::Update(u) => u.id,
            MembershipChange::Remove(id) => *id,
        }
    }
}

/// What a term carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TermKind {
    /// No content: the first term of every leader's epoch (it lets the leader
    /// commit the terms of earlier epochs, §5.4.2).
    Empty,
    /// Application content.
    Content(Payload),
    /// A new cluster configuration.
    Config(Configuration),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// Position in the log, from 1.
    pub index: Index,
    /// The epoch in which a leader created this term.
    pub epoch: Epoch,
    /// What it carries.
    pub kind: TermKind,
}

impl Term {
    /// The application content, if this term carries any.
    pub fn content(&self) -> Option<&Payload> {
        match &self.kind {
            TermKind::Content(p) => Some(p),
            _ => None,
        }
    }

    /// A rough size in bytes, used to bound messages and batches.
    pub fn size_hint(&self) -> usize {
        const HEADER: usize = 24;
        match &self.kind {
            TermKind::Empty => HEADER,
            TermKind::Content(p) => HEADER + p.len(),
            TermKind::Config(c) => {
                HEADER + c.members.values().map(|m| 16 + m.address.len()).sum::<usize>()
            }
        }
    }
}

/// The status of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Not (yet) a member of the configuration it knows: it stores terms but
    /// never votes nor stands.
    Pending,
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks the voters to elect it.
    Candidate,
    /// Builds and sends terms.
    Leader,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Status::Pending => "pending",
            Status::Follower => "follower",
            Status::Candidate => "candidate",
            Status::Leader => "leader",
        };
        f.write_str(s)
    }
}

/// What a node must remember across restarts before it answers anyone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The highest epoch this node has seen.
    pub epoch: Epoch,
    /// The candidate this node voted for in `epoch`, if any.
    pub vote: Option<NodeId>,
}
