//! Settings of a node, with [`Config::validate`] to refuse nonsense before the
//! node starts.

use std::time::Duration;

use crate::types::{Configuration, NodeId, Role};

/// Everything a node needs to know before it starts.
///
/// Every queue, batch and frame has a bound here; the defaults suit a cluster
/// on one local network.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id.
    pub id: NodeId,
    /// The configuration the cluster starts from. Every node of a new cluster
    /// must be given the same one: it becomes the first term of the log.
    /// Empty for a node that joins a running cluster through [`Config::join`].
    pub initial: Configuration,
    /// Members of a running cluster to ask for admission, with their
    /// addresses, tried in turn until one answers. Used only while the node
    /// is absent from its configuration.
    pub join: Vec<(NodeId, String)>,
    /// Where the transport reaches this node, sent with a request to join.
    pub address: String,
    /// The role this node asks for when it joins.
    pub role: Role,
    /// A joining voter first catches up as an observer; it is promoted once
    /// its log is within this many terms of the leader's.
    pub catch_up_margin: u64,
    /// Shortest election timeout. A follower that hears no leader for a random
    /// time between `election_timeout_min` and `election_timeout_max` stands
    /// for election (§5.2).
    pub election_timeout_min: Duration,
    /// Longest election timeout (exclusive).
    pub election_timeout_max: Duration,
    /// Time between two rounds of the leader when no proposal arrives.
    pub heartbeat_interval: Duration,
    /// Time between two calls of `Hook::prepare_term` on the leader.
    pub prepare_interval: Duration,
    /// A follower not heard from for this long counts as a negative answer in
    /// the leader's rounds. Half or more of the voters negative make the
    /// leader step down.
    pub response_timeout: Duration,
    /// Most terms in one `AppendTerms` message.
    pub max_terms_per_message: usize,
    /// Most bytes of terms (by [`crate::Term::size_hint`]) in one message; a
    /// single larger term still goes alone.
    pub max_bytes_per_message: usize,
    /// Most terms the leader builds in one round.
    pub max_terms_per_round: usize,
    /// Capacity of the term pool: proposals beyond it meet backpressure.
    pub term_pool_capacity: usize,
    /// Capacity of the update-node pool.
    pub update_pool_capacity: usize,
    /// Capacity of the node's inbox; messages beyond it are dropped (and
    /// counted), as a network would.
    pub inbox_capacity: usize,
    /// How long a node's thread that ran out of work polls for more before
    /// it sleeps. Waking a sleeping thread is slow on virtual machines; a
    /// short poll buys much lower commit latency for a little processor
    /// time after each burst of work. Zero turns polling off.
    pub spin: Duration,
}

impl Config {
    /// A configuration with the defaults, for node `id` of `initial`.
    pub fn new(id: u64, initial: Configuration) -> Self {
        let address = initial.members.get(&NodeId(id)).map(|m| m.address.clone());
        Config {
            id: NodeId(id),
            initial,
            join: Vec::new(),
            address: address.unwrap_or_default(),
            role: Role::Voter,
            catch_up_margin: 1024,
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(50),
            prepare_interval: Duration::from_millis(100),
            response_timeout: Duration::from_millis(300),
            max_terms_per_message: 1024,
            max_bytes_per_message: 1 << 20,
            max_terms_per_round: 4096,
            term_pool_capacity: 65_536,
            update_pool_capacity: 64,
            inbox_capacity: 65_536,
            spin: Duration::from_micros(50),
        }
    }

    /// A configuration for node `id`, reachable at `address`, that joins a
    /// running cluster as a `role` by asking the `known` members in turn.
    /// It starts `Pending` and becomes a follower once a configuration term
    /// naming it reaches its log.
    pub fn join(
        id: u64,
        address: impl Into<String>,
        role: Role,
        known: impl IntoIterator<Item = (u64, String)>,
    ) -> Self {
        let mut config = Config::new(id, Configuration::default());
        config.address = address.into();
        config.role = role;
        config.join = known.into_iter().map(|(i, a)| (NodeId(i), a)).collect();
        config
    }

    /// The configuration written as the first term of a new log: the initial
    /// one, or, for a voter given neither an initial configuration nor a
    /// node to join, a cluster of itself alone. `None` for a joining node,
    /// which receives its log from the leader.
    pub fn bootstrap(&self) -> Option<Configuration> {
        if !self.initial.members.is_empty() {
            return Some(self.initial.clone());
        }
        let alone = self.join.is_empty() && self.role == Role::Voter;
        alone.then(|| Configuration::default().with(self.id.0, self.address.clone(), Role::Voter))
    }

    /// Checks that the settings make sense together.
    ///
    /// # Errors
    /// The first setting found wrong, with what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError(msg));
        if self.election_timeout_min.is_zero() {
            return bad("election_timeout_min must be above zero".into());
        }
        if self.election_timeout_min >= self.election_timeout_max {
            return bad(format!(
                "election_timeout_min ({:?}) must be below election_timeout_max ({:?})",
                self.election_timeout_min, self.election_timeout_max
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.election_timeout_min
        {
            return bad(format!(
                "heartbeat_interval ({:?}) must be above zero and below election_timeout_min ({:?})",
                self.heartbeat_interval, self.election_timeout_min
            ));
        }
        if self.prepare_interval.is_zero() {
            return bad("prepare_interval must be above zero".into());
        }
        if self.response_timeout <= self.heartbeat_interval {
            return bad(format!(
                "response_timeout ({:?}) must be longer than heartbeat_interval ({:?})",
                self.response_timeout, self.heartbeat_interval
            ));
        }
        let bounds = [
            ("max_terms_per_message", self.max_terms_per_message),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("max_terms_per_round", self.max_terms_per_round),
            ("term_pool_capacity", self.term_pool_capacity),
            ("update_pool_capacity", self.update_pool_capacity),
            ("inbox_capacity", self.inbox_capacity),
        ];
        if let Some((name, _)) = bounds.iter().find(|(_, v)| *v == 0) {
            return bad(format!("{name} must be above zero"));
        }
        if self.initial.members.is_empty() {
            if self.join.is_empty() && self.role == Role::Observer {
                return bad(
                    "an observer with no initial configuration and no known node has no cluster \
                     to join"
                        .into(),
                );
            }
            if self.join.iter().any(|(id, _)| *id == self.id) {
                return bad(format!("node {} lists itself among the nodes to join", self.id));
            }
            return Ok(());
        }
        if self.initial.voter_ids().next().is_none() {
            return bad("the initial configuration has no voter".into());
        }
        if !self.initial.contains(self.id) {
            return bad(format!("node {} is absent from its initial configuration", self.id));
        }
        Ok(())
    }
}

/// A setting that makes no sense, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);
