//! What the node thread and the leader worker share, and the one place where
//! the core's outputs are carried out: messages handed to the transport,
//! hooks called, committed terms applied, the worker started and stopped.
//!
//! Locks here guard short sections only; none is held across a call to a hook
//! or to the transport, except the apply order (see [`Shared::apply`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::config::Config;
use crate::core::{Core, CoreError, Output};
use crate::hook::{Hook, UpdateNode};
use crate::message::Message;
use crate::node::proposal::{Completer, DropReason, Outcome, Pending};
use crate::node::worker::LeaderWorker;
use crate::store::LogStore;
use crate::transport::Transport;
use crate::types::{Configuration, MembershipChange, TermKind};
use crate::types::{Epoch, Index, NodeId, Status};

/// The store behind a running node, whatever its type.
pub(crate) type DynCore = Core<Box<dyn LogStore>>;

/// Most committed terms taken from the core per lock.
const APPLY_BATCH: usize = 1024;

/// A proposal built into a term, waiting for that index to be applied.
pub(crate) struct Waiter {
    pub(crate) epoch: Epoch,
    pub(crate) done: Completer,
}

pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) core: Mutex<DynCore>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) hook: Arc<dyn Hook>,
    origin: Instant,

    pub(crate) terms_tx: Sender<Pending>,
    pub(crate) terms_rx: Receiver<Pending>,
    pub(crate) updates_tx: Sender<MembershipChange>,
    pub(crate) updates_rx: Receiver<MembershipChange>,
    /// Nodes with a change waiting in the update-node pool.
    pub(crate) updates_waiting: Mutex<HashSet<NodeId>>,

    pub(crate) waiters: Mutex<HashMap<Index, Waiter>>,
    /// Held while committed terms are handed to the application, so that
    /// they reach it in index order whichever thread applies them; it keeps
    /// the last configuration applied.
    apply_order: Mutex<Configuration>,
    pub(crate) join_refused: Mutex<Option<String>>,

    /// The epoch this node leads, 0 when it does not lead.
    pub(crate) leading: AtomicU64,
    worker: Mutex<Option<LeaderWorker>>,
    retired: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) workers_alive: AtomicUsize,

    /// Bumped after every change a waiter may be interested in.
    version: Mutex<u64>,
    changed: Condvar,
    pub(crate) stopped: AtomicBool,
    pub(crate) fatal: Mutex<Option<String>>,
    pub(crate) proposals_dropped: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        core: DynCore,
        transport: Arc<dyn Transport>,
        hook: Arc<dyn Hook>,
    ) -> Self {
        let (terms_tx, terms_rx) = crossbeam_channel::bounded(config.term_pool_capacity);
        let (updates_tx, updates_rx) = crossbeam_channel::bounded(config.update_pool_capacity);
        Shared {
            id: config.id,
            config,
            core: Mutex::new(core),
            transport,
            hook,
            origin: Instant::now(),
            terms_tx,
            terms_rx,
            updates_tx,
            updates_rx,
            updates_waiting: Mutex::new(HashSet::new()),
            waiters: Mutex::new(HashMap::new()),
            apply_order: Mutex::new(Configuration::default()),
            join_refused: Mutex::new(None),
            leading: AtomicU64::new(0),
            worker: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
            workers_alive: AtomicUsize::new(0),
            version: Mutex::new(0),
            changed: Condvar::new(),
            stopped: AtomicBool::new(false),
            fatal: Mutex::new(None),
            proposals_dropped: AtomicU64::new(0),
        }
    }

    /// The core's clock: time since the node started.
    pub(crate) fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Runs `f` on the core under its lock, then carries out what it
    /// returned with the lock released.
    pub(crate) fn with_core<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut DynCore) -> Result<(T, Vec<Output>), CoreError>,
    ) -> Option<T> {
        let result = f(&mut self.core.lock());
        match result {
            Ok((value, outputs)) => {
                self.execute(outputs);
                Some(value)
            }
            Err(CoreError::Malformed { from, detail }) => {
                log::warn!("node={} dropped a message from {from}: {detail}", self.id);
                None
            }
            Err(CoreError::Storage(e)) => {
                self.fail(format!("storage failed: {e}"));
                None
            }
        }
    }

    /// Carries out the core's outputs in order.
    pub(crate) fn execute(self: &Arc<Self>, outputs: Vec<Output>) {
        if outputs.is_empty() {
            return;
        }
        let mut messages: Vec<Message> = Vec::new();
        let mut committed = false;
        for o in outputs {
            match o {
                Output::Send(m) => messages.push(m),
                Output::StatusChanged { from, to, epoch } => {
                    self.status_changed(from, to, epoch);
                }
                Output::LeaderChanged { leader, epoch } => {
                    log::info!("node={} epoch={epoch} leader={leader:?}", self.id);
                    self.hook.leader_change(leader, epoch);
                }
                Output::Stored(terms) => terms.iter().for_each(|t| self.hook.append_term(t)),
                Output::Truncated { from } => {
                    log::info!("node={} truncated its log from index={from}", self.id);
                }
                Output::Committed { index } => {
                    self.hook.commit_term(index);
                    committed = true;
                }
                Output::VoteReceived { from, granted } => {
                    let epoch = self.core.lock().epoch();
                    self.hook.receive_vote(from, epoch, granted);
                }
                Output::LostConnection { peer } => {
                    log::info!("node={} lost peer={peer}: no answer in time", self.id);
                    self.hook.lost_connection(peer);
                }
                Output::Addresses(peers) => {
                    for (id, address) in peers.iter().filter(|(id, _)| *id != self.id) {
                        self.transport.add_peer(*id, address);
                    }
                }
                Output::JoinRequested(request) => messages.push(self.answer_join(request)),
                Output::JoinRefused { reason } => {
                    log::warn!("node={} the leader refused to let it in: {reason}", self.id);
                    *self.join_refused.lock() = Some(reason);
                }
            }
        }
        if !messages.is_empty() {
            self.transport.send_all(messages);
        }
        if committed {
            self.apply();
        }
        self.notify();
    }

    /// A leader's answer to a request to join: the application decides, and
    /// an accepted change waits in the update-node pool, once per node.
    fn answer_join(&self, request: UpdateNode) -> Message {
        let id = request.id;
        let decision = self.hook.update_node(&request).and_then(|()| {
            self.queue_change(MembershipChange::Update(request))
                .map_err(|e| format!("cannot take the request now: {e}"))
        });
        log::info!("node={} join request from {id}: {decision:?}", self.id);
        self.core.lock().join_reply(id, decision)
    }

    /// Puts a change in the update-node pool, unless one for the same node
    /// already waits there.
    pub(crate) fn queue_change(&self, change: MembershipChange) -> Result<(), &'static str> {
        let id = change.node();
        if !self.updates_waiting.lock().insert(id) {
            return Ok(());
        }
        self.updates_tx.try_send(change).map_err(|_| {
            self.updates_waiting.lock().remove(&id);
            "the update-node pool is full"
        })
    }

    fn status_changed(self: &Arc<Self>, from: Status, to: Status, epoch: Epoch) {
        log::info!("node={} epoch={epoch} status {from} -> {to}", self.id);
        if from == Status::Leader {
            self.leading.store(0, Ordering::SeqCst);
            self.stop_worker();
        }
        self.hook.switch_status(from, to, epoch);
        if to == Status::Leader {
            self.leading.store(epoch, Ordering::SeqCst);
            self.start_worker(epoch);
        }
    }

    fn start_worker(self: &Arc<Self>, epoch: Epoch) {
        self.stop_worker();
        self.join_retired(true);
        let worker = LeaderWorker::spawn(Arc::clone(self), epoch);
        *self.worker.lock() = Some(worker);
    }

    /// Tells the worker to stop; its thread is joined later, since this may
    /// run on the worker itself.
    pub(crate) fn stop_worker(&self) {
        let worker = self.worker.lock().take();
        if let Some(w) = worker {
            self.retired.lock().push(w.stop());
        }
    }

    /// Joins the stopped workers: all of them when `all`, else only those
    /// that have already finished.
    pub(crate) fn join_retired(&self, all: bool) {
        let handles: Vec<JoinHandle<()>> = {
            let mut retired = self.retired.lock();
            let (done, running): (Vec<_>, Vec<_>) =
                retired.drain(..).partition(|h| all || h.is_finished());
            *retired = running;
            done
        };
        for h in handles {
            if h.join().is_err() {
                log::error!("node={} a leader worker panicked", self.id);
            }
        }
    }

    /// Hands the committed terms to the application in index order, and
    /// resolves the proposals waiting for them.
    ///
    /// The apply order is held across `Hook::apply_term`: it is what keeps
    /// terms in order across the two threads. No method of the node takes
    /// it, so the hook may still call the node.
    pub(crate) fn apply(self: &Arc<Self>) {
        let mut applied_config = self.apply_order.lock();
        loop {
            let batch = self.core.lock().take_committed(APPLY_BATCH);
            let terms = match batch {
                Ok(t) if t.is_empty() => return,
                Ok(t) => t,
                Err(e) => {
                    self.fail(format!("could not read committed terms: {e}"));
                    return;
                }
            };
            for t in &terms {
                self.hook.apply_term(t);
                if let TermKind::Config(config) = &t.kind {
                    self.removed_members(&applied_config, config);
                    *applied_config = config.clone();
                }
            }
            self.resolve_applied(&terms);
        }
    }

    /// Tells the application of each member that `new` no longer names.
    fn removed_members(&self, old: &Configuration, new: &Configuration) {
        for id in old.members.keys().filter(|id| !new.contains(**id)) {
            log::info!("node={} member {id} removed from the configuration", self.id);
            self.hook.remove_connection(*id);
        }
    }

    fn resolve_applied(&self, terms: &[crate::types::Term]) {
        let mut waiters = self.waiters.lock();
        if waiters.is_empty() {
            return;
        }
        for t in terms {
            if let Some(w) = waiters.remove(&t.index) {
                let outcome = if w.epoch == t.epoch {
                    Outcome::Committed { index: t.index, epoch: t.epoch }
                } else {
                    Outcome::Dropped(DropReason::Replaced { index: t.index })
                };
                w.done.complete(outcome);
            }
        }
    }

    /// Resolves proposals still in the term pool as dropped: they are in no
    /// log. Called when this node does not lead.
    pub(crate) fn drain_term_pool(&self) {
        while let Ok(p) = self.terms_rx.try_recv() {
            self.drop_proposal(p.done, DropReason::NotLeader);
        }
    }

    pub(crate) fn drop_proposal(&self, done: Completer, reason: DropReason) {
        self.proposals_dropped.fetch_add(1, Ordering::Relaxed);
        done.complete(Outcome::Dropped(reason));
    }

    /// Stops the node after an error it cannot go on from.
    pub(crate) fn fail(&self, reason: String) {
        log::error!("node={} stopping: {reason}", self.id);
        self.fatal.lock().get_or_insert(reason);
        self.stopped.store(true, Ordering::SeqCst);
        self.leading.store(0, Ordering::SeqCst);
        self.stop_worker();
        self.notify();
    }

    /// Wakes whoever waits for a change of the node's state.
    pub(crate) fn notify(&self) {
        *self.version.lock() += 1;
        self.changed.notify_all();
    }

    /// Waits until `check` returns `Some` or `timeout` passes.
    pub(crate) fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = *self.version.lock();
            if let Some(v) = check() {
                return Some(v);
            }
            let mut version = self.version.lock();
            if *version == seen && self.changed.wait_until(&mut version, deadline).timed_out() {
                drop(version);
                return check();
            }
        }
    }
}
