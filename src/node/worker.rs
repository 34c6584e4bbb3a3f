//! The leader worker: an OS thread that lives while its node leads one epoch.
//! It runs the two timers of the original design, the prepare timer (asks
//! `Hook::prepare_term` for content) and the heartbeat timer (runs a round),
//! and runs a round at once whenever a pool holds work, so a proposal never
//! waits for a tick.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};

use crate::core::Work;
use crate::node::proposal::{DropReason, Outcome, Pending, Proposal};
use crate::node::shared::{Shared, Waiter};
use crate::node::spin;
use crate::types::{Configuration, Epoch, TermKind};

/// The handle the node keeps on its running worker.
pub(crate) struct LeaderWorker {
    handle: JoinHandle<()>,
    /// Dropped to tell the worker to stop.
    stop: Sender<()>,
}

impl LeaderWorker {
    /// Starts the worker of `epoch`.
    pub(crate) fn spawn(shared: Arc<Shared>, epoch: Epoch) -> Self {
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        let name = format!("hookraft-leader-{}", shared.id.0);
        shared.workers_alive.fetch_add(1, Ordering::SeqCst);
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _alive = AliveGuard(Arc::clone(&shared));
                Worker { shared, epoch, stop: stop_rx }.run();
            })
            .expect("the operating system refused to start a thread");
        LeaderWorker { handle, stop }
    }

    /// Tells the worker to stop and returns its thread to join.
    pub(crate) fn stop(self) -> JoinHandle<()> {
        drop(self.stop);
        self.handle
    }
}

/// Counts running workers, so that tests can see none survives, and wakes
/// whoever waits for that count to change.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.workers_alive.fetch_sub(1, Ordering::SeqCst);
        self.0.notify();
    }
}

struct Worker {
    shared: Arc<Shared>,
    epoch: Epoch,
    stop: Receiver<()>,
}

/// Proposals popped for a round, in term order; `None` for a term nobody
/// waits for (prepared content, configuration).
type Completions = Vec<Option<Pending>>;

impl Worker {
    fn run(self) {
        let cfg = &self.shared.config;
        log::debug!("node={} epoch={} leader worker started", self.shared.id, self.epoch);
        self.shared.apply();
        let now = self.shared.now();
        let mut next_heartbeat = now + cfg.heartbeat_interval;
        let mut next_prepare = now + cfg.prepare_interval;

        while self.leads() {
            let now = self.shared.now();
            let wake = next_heartbeat.min(next_prepare);
            // A change waiting in the update-node pool is work only once a
            // change may start; until then it must not wake the worker, or
            // the worker would spin.
            let changes = self.shared.core.lock().can_change_membership();
            if !self.wait_for_work(wake.saturating_sub(now), changes) {
                break;
            }
            let now = self.shared.now();
            if now >= next_prepare {
                self.prepare();
                next_prepare = now + cfg.prepare_interval;
            }
            let work_waiting =
                !self.shared.terms_rx.is_empty() || (changes && !self.shared.updates_rx.is_empty());
            if work_waiting || now >= next_heartbeat {
                self.round();
                next_heartbeat = self.shared.now() + cfg.heartbeat_interval;
            }
        }
        self.shared.drain_term_pool();
        log::debug!("node={} epoch={} leader worker stopped", self.shared.id, self.epoch);
    }

    /// Whether the node still leads this worker's epoch.
    fn leads(&self) -> bool {
        self.shared.leading.load(Ordering::SeqCst) == self.epoch
            && !self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps until a pool holds work (the update-node pool counts only when
    /// `changes` may start) or `timeout` passes; false when told to stop.
    fn wait_for_work(&self, timeout: Duration, changes: bool) -> bool {
        let s = &self.shared;
        spin::spin_until(s.config.spin, || {
            !s.terms_rx.is_empty() || (changes && !s.updates_rx.is_empty()) || !self.stop.is_empty()
        });
        let mut sel = Select::new();
        let stop = sel.recv(&self.stop);
        sel.recv(&self.shared.terms_rx);
        if changes {
            sel.recv(&self.shared.updates_rx);
        }
        !matches!(sel.ready_timeout(timeout), Ok(i) if i == stop)
    }

    /// The prepare timer: content from the application goes into the pool.
    fn prepare(&self) {
        let Some(content) = self.shared.hook.prepare_term() else {
            return;
        };
        let (_, done) = Proposal::new();
        let pending = Pending { content, epoch: self.epoch, done };
        if let Err(TrySendError::Full(_)) = self.shared.terms_tx.try_send(pending) {
            log::warn!("node={} term pool full: prepared content dropped", self.shared.id);
        }
    }

    /// One round: apply what committed, pop work, build the terms, let the
    /// application approve, and send.
    fn round(&self) {
        self.shared.apply();
        let (kinds, completions) = self.pop_work();
        let Some(draft) = self.shared.core.lock().draft_round(kinds) else {
            self.drop_all(completions, DropReason::NotLeader);
            return;
        };
        let approved = self.shared.hook.send_term(&draft.terms);
        if !approved {
            self.drop_all(completions, DropReason::Refused);
            return;
        }
        let first = draft.first_index;
        let count = completions.len() as u64;
        self.register(first, completions);
        let now = self.shared.now();
        // The messages go out (with the lock released) before the leader's
        // own sync, so that its disk and its followers' write at once.
        let sent = self.shared.with_core(|core| {
            let outcome = core.send_round(draft, true, now)?;
            Ok(((outcome.appended, outcome.sync_pending), outcome.outputs))
        });
        if sent.is_some_and(|(_, sync_pending)| sync_pending) {
            let now = self.shared.now();
            self.shared.with_core(|core| Ok(((), core.sync_log(now)?)));
        }
        if sent.is_none_or(|(appended, _)| !appended) {
            self.unregister(first..first + count, DropReason::NotLeader);
        }
        log::debug!("node={} epoch={} round from index={first}", self.shared.id, self.epoch);
    }

    /// Takes the work of one round: from the update-node pool (or a
    /// promotion the core has ready) or the term pool, chosen by the core
    /// when both hold some.
    fn pop_work(&self) -> (Vec<TermKind>, Completions) {
        let s = &self.shared;
        let (work, promotion) = {
            let mut core = s.core.lock();
            let promotion = core.ready_promotion();
            let changes =
                promotion.is_some() || (!s.updates_rx.is_empty() && core.can_change_membership());
            (core.choose_work(changes, !s.terms_rx.is_empty()), promotion)
        };
        match work {
            Work::Terms => self.pop_terms(),
            Work::UpdateNode => match promotion.or_else(|| self.pop_change()) {
                Some(config) => (vec![TermKind::Config(config)], vec![None]),
                None => (Vec::new(), Vec::new()),
            },
            Work::Nothing => (Vec::new(), Vec::new()),
        }
    }

    /// The configuration the next waiting change leads to, skipping changes
    /// that change nothing.
    fn pop_change(&self) -> Option<Configuration> {
        while let Ok(change) = self.shared.updates_rx.try_recv() {
            self.shared.updates_waiting.lock().remove(&change.node());
            if let Some(config) = self.shared.core.lock().membership_change(&change) {
                log::info!("node={} membership change {change:?}", self.shared.id);
                return Some(config);
            }
        }
        None
    }

    fn pop_terms(&self) -> (Vec<TermKind>, Completions) {
        let max = self.shared.config.max_terms_per_round;
        let mut kinds = Vec::new();
        let mut completions = Vec::new();
        while kinds.len() < max {
            let Ok(p) = self.shared.terms_rx.try_recv() else {
                break;
            };
            if p.epoch != self.epoch {
                // Taken while this node led another epoch: in no log.
                self.shared.drop_proposal(p.done, DropReason::NotLeader);
                continue;
            }
            kinds.push(TermKind::Content(p.content.clone()));
            completions.push(Some(p));
        }
        (kinds, completions)
    }

    /// Records who waits for which index, before the terms can commit.
    fn register(&self, first: u64, completions: Completions) {
        let mut waiters = self.shared.waiters.lock();
        for (index, c) in (first..).zip(completions) {
            if let Some(p) = c {
                waiters.insert(index, Waiter { epoch: self.epoch, done: p.done });
            }
        }
    }

    /// Resolves the waiters of a round whose terms never reached the log.
    fn unregister(&self, indexes: std::ops::Range<u64>, reason: DropReason) {
        let mut waiters = self.shared.waiters.lock();
        for index in indexes {
            if waiters.get(&index).is_some_and(|w| w.epoch == self.epoch) {
                let w = waiters.remove(&index).expect("checked above");
                w.done.complete(Outcome::Dropped(reason.clone()));
            }
        }
    }

    fn drop_all(&self, completions: Completions, reason: DropReason) {
        for p in completions.into_iter().flatten() {
            self.shared.drop_proposal(p.done, reason.clone());
        }
    }
}
