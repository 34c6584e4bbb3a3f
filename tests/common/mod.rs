//! A cluster of threaded nodes on the in-memory network, and a hook that
//! records what the application saw, shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hookraft::{
    Config, Configuration, Hook, MemNetwork, MemStore, Node, NodeId, NodeStatus, Payload, Proposal,
    ProposeError, Role, Status, Term, Transport, UpdateNode,
};
use parking_lot::Mutex;

/// Generous: tests wait on conditions, they never assert a speed.
pub const WAIT: Duration = Duration::from_secs(20);

/// One moment the hook saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Prepare,
    Send(usize),
    Apply(u64),
    Status(Status, Status),
}

/// Records every applied term and, when asked, the order of moments.
#[derive(Default)]
pub struct Recorder {
    pub applied: Mutex<Vec<Term>>,
    pub events: Mutex<Vec<Event>>,
    pub prepared: Mutex<Vec<Payload>>,
    pub refuse_votes: Mutex<bool>,
    pub refuse_appends: Mutex<bool>,
    pub refuse_updates: Mutex<Option<String>>,
    pub removed: Mutex<Vec<NodeId>>,
    /// Every (epoch, leader) this node saw announced.
    pub led: Mutex<Vec<(u64, NodeId)>>,
}

impl Recorder {
    /// The applied terms that carry content, as (index, epoch, content).
    pub fn contents(&self) -> Vec<(u64, u64, Vec<u8>)> {
        self.applied
            .lock()
            .iter()
            .filter_map(|t| t.content().map(|c| (t.index, t.epoch, c.to_vec())))
            .collect()
    }
}

impl Hook for Recorder {
    fn prepare_term(&self) -> Option<Payload> {
        self.events.lock().push(Event::Prepare);
        self.prepared.lock().pop()
    }

    fn send_term(&self, terms: &[Term]) -> bool {
        if !terms.is_empty() {
            self.events.lock().push(Event::Send(terms.len()));
        }
        true
    }

    fn apply_term(&self, term: &Term) {
        let mut applied = self.applied.lock();
        if let Some(last) = applied.last() {
            assert_eq!(last.index + 1, term.index, "terms applied out of order");
        }
        applied.push(term.clone());
        if term.content().is_some() {
            self.events.lock().push(Event::Apply(term.index));
        }
    }

    fn pre_append_term(&self, _term: &Term) -> bool {
        !*self.refuse_appends.lock()
    }

    fn request_vote(&self, _candidate: NodeId, _epoch: u64) -> bool {
        !*self.refuse_votes.lock()
    }

    fn update_node(&self, _request: &UpdateNode) -> Result<(), String> {
        match self.refuse_updates.lock().clone() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    fn remove_connection(&self, peer: NodeId) {
        self.removed.lock().push(peer);
    }

    fn leader_change(&self, leader: Option<NodeId>, epoch: u64) {
        if let Some(l) = leader {
            self.led.lock().push((epoch, l));
        }
    }

    fn switch_status(&self, from: Status, to: Status, _epoch: u64) {
        self.events.lock().push(Event::Status(from, to));
    }
}

/// Timeouts short enough for tests to run quickly, long enough for a busy
/// two-core machine.
pub fn config(id: u64, initial: &Configuration) -> Config {
    let mut c = Config::new(id, initial.clone());
    c.election_timeout_min = Duration::from_millis(150);
    c.election_timeout_max = Duration::from_millis(300);
    c.heartbeat_interval = Duration::from_millis(30);
    c.response_timeout = Duration::from_millis(200);
    c
}

pub struct Cluster {
    pub net: MemNetwork,
    pub initial: Configuration,
    pub nodes: Vec<Option<Node>>,
    pub hooks: Vec<Arc<Recorder>>,
}

impl Cluster {
    pub fn new(n: u64) -> Self {
        Self::with_config(n, |_| {})
    }

    pub fn with_config(n: u64, tweak: impl Fn(&mut Config)) -> Self {
        let initial = Configuration::voters((1..=n).map(|i| (i, format!("mem-{i}"))));
        let net = MemNetwork::new();
        let mut cluster = Cluster { net, initial, nodes: Vec::new(), hooks: Vec::new() };
        for id in 1..=n {
            let hook = Arc::new(Recorder::default());
            let mut cfg = config(id, &cluster.initial);
            tweak(&mut cfg);
            let node =
                Node::start(cfg, cluster.net.transport(), MemStore::new(), hook.clone()).unwrap();
            cluster.nodes.push(Some(node));
            cluster.hooks.push(hook);
        }
        cluster
    }

    /// Starts node `id` that joins the cluster as `role` through `known`.
    pub fn join(&mut self, id: u64, role: Role, known: &[u64]) {
        let known = known.iter().map(|k| (*k, format!("mem-{k}")));
        let mut cfg = Config::join(id, format!("mem-{id}"), role, known);
        let base = config(id, &self.initial);
        cfg.election_timeout_min = base.election_timeout_min;
        cfg.election_timeout_max = base.election_timeout_max;
        cfg.heartbeat_interval = base.heartbeat_interval;
        cfg.response_timeout = base.response_timeout;
        let hook = Arc::new(Recorder::default());
        let node = Node::start(cfg, self.net.transport(), MemStore::new(), hook.clone()).unwrap();
        assert_eq!(self.nodes.len() as u64 + 1, id, "joining ids follow the initial ones");
        self.nodes.push(Some(node));
        self.hooks.push(hook);
    }

    /// A cluster of `initial`'s voters, numbered from 1, each node on its own
    /// transport (`net` is then an idle network nobody uses).
    pub fn over<T: Transport>(initial: Configuration, transports: Vec<T>) -> Self {
        let mut cluster =
            Cluster { net: MemNetwork::new(), initial, nodes: Vec::new(), hooks: Vec::new() };
        for (i, transport) in transports.into_iter().enumerate() {
            let hook = Arc::new(Recorder::default());
            let cfg = config(i as u64 + 1, &cluster.initial);
            let node = Node::start(cfg, transport, MemStore::new(), hook.clone()).unwrap();
            cluster.nodes.push(Some(node));
            cluster.hooks.push(hook);
        }
        cluster
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes[id as usize - 1].as_ref().expect("node is running")
    }

    pub fn hook(&self, id: u64) -> &Recorder {
        &self.hooks[id as usize - 1]
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// Starts node `id` again after a crash, with an empty store (a node
    /// whose disk was replaced).
    pub fn restart_empty(&mut self, id: u64) {
        let hook = Arc::new(Recorder::default());
        let cfg = config(id, &self.initial);
        let node = Node::start(cfg, self.net.transport(), MemStore::new(), hook.clone()).unwrap();
        self.nodes[id as usize - 1] = Some(node);
        self.hooks[id as usize - 1] = hook;
    }

    /// Stops node `id` (a crash, as far as the others can tell).
    pub fn crash(&mut self, id: u64) {
        self.nodes[id as usize - 1].take().expect("node is running").shutdown();
    }

    /// Waits for a leader that every running node in `among` follows, in one
    /// epoch, and returns it.
    pub fn wait_leader_among(&self, among: &[u64]) -> u64 {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let statuses: Vec<NodeStatus> = among.iter().map(|i| self.node(*i).status()).collect();
            let leaders: Vec<&NodeStatus> =
                statuses.iter().filter(|s| s.status == Status::Leader).collect();
            if let [leader] = leaders.as_slice() {
                let agreed =
                    statuses.iter().all(|s| s.epoch == leader.epoch && s.leader == Some(leader.id));
                if agreed {
                    return leader.id.0;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no agreed leader: {statuses:#?}");
            // Any change of the first node wakes us; the others are checked
            // on the next pass.
            self.node(among[0]).wait_for(Duration::from_millis(20), |_| false);
        }
    }

    pub fn wait_leader(&self) -> u64 {
        let ids: Vec<u64> = self.running().map(|n| n.id().0).collect();
        self.wait_leader_among(&ids)
    }

    /// Proposes on whichever node leads, retrying on the hinted leader.
    pub fn propose(&self, content: &[u8]) -> Proposal {
        let deadline = std::time::Instant::now() + WAIT;
        let mut target = self.wait_leader();
        loop {
            match self.node(target).propose(content.to_vec()) {
                Ok(p) => return p,
                Err(ProposeError::NotLeader { leader: Some(l) })
                    if self.nodes[l.0 as usize - 1].is_some() =>
                {
                    target = l.0
                }
                Err(_) => target = self.wait_leader(),
            }
            assert!(std::time::Instant::now() < deadline, "could not propose");
        }
    }

    /// Waits until node `id` has applied up to `index`.
    pub fn wait_applied(&self, id: u64, index: u64) -> NodeStatus {
        self.node(id).wait_for(WAIT, |s| s.applied_index >= index).unwrap_or_else(|| {
            panic!("node {id} did not apply {index}: {:#?}", self.node(id).status())
        })
    }

    /// Waits until every running node has applied up to `index` and returns
    /// nothing; panics with the states after the timeout.
    pub fn wait_all_applied(&self, index: u64) {
        for n in self.running() {
            self.wait_applied(n.id().0, index);
        }
    }
}
