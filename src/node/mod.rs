//! The running node: the thin runtime that owns threads, timers and channels
//! and feeds the [core](crate::core).
//!
//! [`Node::start`] spawns the *node thread*, which waits in one `select!` on
//! incoming messages and the election timer. When the node becomes leader the
//! node thread starts the *leader worker* (see `worker.rs`), which ends when
//! the node steps down. Both threads share the core behind a lock held for
//! short sections only; neither holds it while calling a hook or the
//! transport.

mod proposal;
mod shared;
mod spin;
mod worker;

pub use proposal::{DropReason, Outcome, Proposal, ProposeError, WaitError};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{select, Receiver, SendTimeoutError, Sender, TrySendError};

use crate::config::{Config, ConfigError};
use crate::core::{Core, CoreError, Counters, Progress};
use crate::hook::{Hook, UpdateNode};
use crate::message::Message;
use crate::store::LogStore;
use crate::transport::{Inbox, Transport};
use crate::types::{Configuration, Epoch, Index, MembershipChange, NodeId, Payload, Status};
use proposal::Pending;
use shared::Shared;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration makes no sense.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be read or written.
    #[error("could not open the log: {0}")]
    Store(#[from] CoreError),
    /// The operating system refused a thread.
    #[error("could not start the node thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Why a request to update a member was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// This node does not lead; ask `leader` when it is known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows, if any.
        leader: Option<NodeId>,
    },
    /// `Hook::update_node` refused it, with this reason.
    #[error("refused: {0}")]
    Refused(String),
    /// The update-node pool is full.
    #[error("the update-node pool is full")]
    PoolFull,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// A snapshot of a node's state, from [`Node::status`].
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its status.
    pub status: Status,
    /// Its epoch.
    pub epoch: Epoch,
    /// The leader it knows in that epoch.
    pub leader: Option<NodeId>,
    /// The highest index it knows to be committed.
    pub commit_index: Index,
    /// The highest index it has applied.
    pub applied_index: Index,
    /// The last index of its log.
    pub last_index: Index,
    /// The configuration in force on it.
    pub membership: Configuration,
    /// On a leader, what it knows of each other member.
    pub progress: Vec<(NodeId, Progress)>,
    /// What its core did since it started.
    pub counters: Counters,
    /// Messages dropped because its inbox was full.
    pub inbox_dropped: u64,
    /// Proposals resolved as dropped.
    pub proposals_dropped: u64,
    /// Why the node stopped on its own (a storage failure), if it did.
    pub failure: Option<String>,
    /// Why the leader refused to let this node in, if it did.
    pub join_refused: Option<String>,
}

/// A running member of a cluster. Dropping it stops it.
pub struct Node {
    shared: Arc<Shared>,
    inbox: Inbox,
    shutdown: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Starts node `config.id` over `store`, reachable through `transport`,
    /// with `hook` as its application.
    ///
    /// # Errors
    /// A configuration that [`Config::validate`] refuses, a store that
    /// cannot be read, or a thread the system would not start.
    pub fn start(
        config: Config,
        transport: impl Transport,
        store: impl LogStore,
        hook: impl Hook,
    ) -> Result<Node, StartError> {
        config.validate()?;
        let store: Box<dyn LogStore> = Box::new(store);
        let core = Core::new(&config, store, rand::random(), Duration::ZERO)?;
        let (inbox_tx, inbox_rx) = crossbeam_channel::bounded(config.inbox_capacity);
        let (shutdown, shutdown_rx) = crossbeam_channel::bounded(0);
        let inbox = Inbox::new(inbox_tx);
        let shared = Arc::new(Shared::new(config, core, Arc::new(transport), Arc::new(hook)));
        shared.transport.attach(shared.id, inbox.clone());
        {
            let core = shared.core.lock();
            let members = core.membership().members.iter().map(|(id, m)| (*id, &m.address));
            let known = shared.config.join.iter().map(|(id, a)| (*id, a));
            for (id, address) in members.chain(known).filter(|(id, _)| *id != shared.id) {
                shared.transport.add_peer(id, address);
            }
        }

        let runner = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("hookraft-node-{}", shared.id.0))
            .spawn(move || run(runner, inbox_rx, shutdown_rx))?;
        log::info!("node={} started", shared.id);
        Ok(Node { shared, inbox, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// A snapshot of the node's state.
    pub fn status(&self) -> NodeStatus {
        let core = self.shared.core.lock();
        NodeStatus {
            id: self.shared.id,
            status: core.status(),
            epoch: core.epoch(),
            leader: core.leader(),
            commit_index: core.commit_index(),
            applied_index: core.applied_index(),
            last_index: core.last_index(),
            membership: core.membership().clone(),
            progress: core.progress().iter().map(|(id, p)| (*id, *p)).collect(),
            counters: core.counters(),
            inbox_dropped: self.inbox.dropped(),
            proposals_dropped: self.shared.proposals_dropped.load(Ordering::Relaxed),
            failure: self.shared.fatal.lock().clone(),
            join_refused: self.shared.join_refused.lock().clone(),
        }
    }

    /// Waits until `check` holds for the node's state, without polling: the
    /// node wakes the caller after each change. Returns the state that
    /// satisfied it, or `None` after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&NodeStatus) -> bool,
    ) -> Option<NodeStatus> {
        self.shared.wait_until(timeout, || Some(self.status()).filter(|s| check(s)))
    }

    /// How many leader worker threads of this node are running: 1 while it
    /// leads, 0 soon after it steps down.
    pub fn leader_workers(&self) -> usize {
        self.shared.workers_alive.load(Ordering::SeqCst)
    }

    /// Proposes `content`, waiting for room in the term pool when it is
    /// full. The returned [`Proposal`] tells when the term commits.
    ///
    /// # Errors
    /// [`ProposeError::NotLeader`] with the leader to retry on, or
    /// [`ProposeError::Stopped`].
    pub fn propose(&self, content: impl Into<Payload>) -> Result<Proposal, ProposeError> {
        let shared = &self.shared;
        self.submit(content.into(), |tx, mut p| loop {
            // Wait in slices, so that a node that stops while the pool is
            // full does not keep the caller forever.
            match tx.send_timeout(p, shared.config.heartbeat_interval) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(back)) if !shared.stopped.load(Ordering::SeqCst) => {
                    p = back
                }
                Err(_) => return Err(ProposeError::Stopped),
            }
        })
    }

    /// Proposes `content` if the term pool has room now.
    ///
    /// # Errors
    /// [`ProposeError::PoolFull`] when it has none, else as
    /// [`Node::propose`].
    pub fn try_propose(&self, content: impl Into<Payload>) -> Result<Proposal, ProposeError> {
        self.submit(content.into(), |tx, p| {
            tx.try_send(p).map_err(|e| match e {
                TrySendError::Full(_) => ProposeError::PoolFull,
                TrySendError::Disconnected(_) => ProposeError::Stopped,
            })
        })
    }

    /// Proposes `content`, waiting at most `timeout` for room in the pool.
    ///
    /// # Errors
    /// [`ProposeError::Timeout`] when the pool stayed full, else as
    /// [`Node::propose`].
    pub fn propose_timeout(
        &self,
        content: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Proposal, ProposeError> {
        self.submit(content.into(), |tx, p| {
            tx.send_timeout(p, timeout).map_err(|e| match e {
                SendTimeoutError::Timeout(_) => ProposeError::Timeout,
                SendTimeoutError::Disconnected(_) => ProposeError::Stopped,
            })
        })
    }

    /// Asks this node, as leader, to add a member or change a member's
    /// address or role. `Hook::update_node` decides; an accepted request
    /// waits in the update-node pool until a round turns it into a
    /// configuration term. Changes go one at a time: a request waits while
    /// an earlier change is not committed.
    ///
    /// # Errors
    /// [`UpdateError::NotLeader`] with the leader to ask instead,
    /// [`UpdateError::Refused`] with the hook's reason,
    /// [`UpdateError::PoolFull`], or [`UpdateError::Stopped`].
    pub fn update_node(&self, request: UpdateNode) -> Result<(), UpdateError> {
        self.check_leading()?;
        self.shared.hook.update_node(&request).map_err(UpdateError::Refused)?;
        self.queue(MembershipChange::Update(request))
    }

    /// Asks this node, as leader, to remove member `id` from the
    /// configuration. The change waits in the update-node pool like any
    /// other, and goes one at a time. Once it commits, every node calls
    /// `Hook::remove_connection`; a removed leader steps down, and a removed
    /// node stops standing for election.
    ///
    /// # Errors
    /// As [`Node::update_node`], without `Refused`.
    pub fn remove_node(&self, id: NodeId) -> Result<(), UpdateError> {
        self.check_leading()?;
        self.queue(MembershipChange::Remove(id))
    }

    fn check_leading(&self) -> Result<(), UpdateError> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(UpdateError::Stopped);
        }
        if self.shared.leading.load(Ordering::SeqCst) == 0 {
            let leader = self.shared.core.lock().leader();
            return Err(UpdateError::NotLeader { leader });
        }
        Ok(())
    }

    fn queue(&self, change: MembershipChange) -> Result<(), UpdateError> {
        self.shared.queue_change(change).map_err(|_| UpdateError::PoolFull)
    }

    fn submit(
        &self,
        content: Payload,
        push: impl FnOnce(&Sender<Pending>, Pending) -> Result<(), ProposeError>,
    ) -> Result<Proposal, ProposeError> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(ProposeError::Stopped);
        }
        let epoch = self.shared.leading.load(Ordering::SeqCst);
        if epoch == 0 {
            let leader = self.shared.core.lock().leader();
            return Err(ProposeError::NotLeader { leader });
        }
        let (proposal, done) = Proposal::new();
        push(&self.shared.terms_tx, Pending { content, epoch, done })?;
        if self.shared.stopped.load(Ordering::SeqCst) {
            // The node stopped while the proposal went in: nobody else will
            // empty the pool.
            self.shared.drain_term_pool();
        }
        Ok(proposal)
    }

    /// Stops the node and joins every thread it started. Proposals not yet
    /// resolved report [`WaitError::Stopped`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.shutdown.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("node={} the node thread panicked", self.shared.id);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The node thread: one `select!` over incoming messages, the shutdown
/// signal and the election timer.
fn run(shared: Arc<Shared>, inbox: Receiver<Message>, shutdown: Receiver<()>) {
    let idle = shared.config.heartbeat_interval;
    loop {
        let deadline = shared.core.lock().next_deadline();
        let now = shared.now();
        let timeout = deadline.map_or(idle, |d| d.saturating_sub(now).min(idle));
        spin::spin_until(shared.config.spin, || !inbox.is_empty());
        select! {
            recv(inbox) -> msg => match msg {
                Ok(msg) => handle_message(&shared, msg),
                Err(_) => break,
            },
            recv(shutdown) -> _ => break,
            default(timeout) => {}
        }
        if shared.stopped.load(Ordering::SeqCst) {
            break;
        }
        let now = shared.now();
        if deadline.is_some_and(|d| now >= d) {
            shared.with_core(|core| Ok(((), core.tick(now)?)));
        }
        housekeeping(&shared);
    }
    stop_threads(&shared);
}

/// Asks the application what it has a say in, then hands the message to
/// the core. The hooks run before the lock is taken.
fn handle_message(shared: &Arc<Shared>, mut msg: Message) {
    log::trace!("node={} received {:?} from {}", shared.id, msg.body, msg.from);
    let vote_allowed = crate::hook::consult(&*shared.hook, &mut msg);
    let now = shared.now();
    shared.with_core(|core| {
        let out =
            if vote_allowed { core.step(msg, now)? } else { core.step_refusing_vote(msg, now)? };
        Ok(((), out))
    });
}

/// Work the node thread does on every wake: proposals left in the pool of a
/// node that no longer leads are dropped, finished workers are joined.
fn housekeeping(shared: &Shared) {
    if shared.leading.load(Ordering::SeqCst) == 0 && !shared.terms_rx.is_empty() {
        shared.drain_term_pool();
    }
    shared.join_retired(false);
}

fn stop_threads(shared: &Shared) {
    shared.stopped.store(true, Ordering::SeqCst);
    shared.leading.store(0, Ordering::SeqCst);
    shared.stop_worker();
    shared.join_retired(true);
    shared.transport.detach(shared.id);
    shared.drain_term_pool();
    shared.waiters.lock().clear();
    shared.notify();
    log::info!("node={} stopped", shared.id);
}
