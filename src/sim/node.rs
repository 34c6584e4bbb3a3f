//! One simulated node: its skewed clock, its core (or, while crashed, only
//! its store), its hook, and what the runtime would keep beside the core:
//! the term pool, the update-node pool, the proposals waiting for their
//! index, the leader's timers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::config::Config;
use crate::core::Core;
use crate::hook::Hook;
use crate::sim::store::SimStore;
use crate::types::{Configuration, Epoch, Index, MembershipChange, NodeId, Payload, Status};

/// A node's clock: `local = offset + true × (1 + ppm / 10⁶)`. Both are
/// fixed for the run, so local time never goes back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub(crate) offset: Duration,
    pub(crate) ppm: i64,
}

const MILLION: u128 = 1_000_000;

impl Clock {
    fn rate(&self) -> u128 {
        (MILLION as i64 + self.ppm) as u128
    }

    /// The node's local time at virtual time `t`.
    pub(crate) fn local(&self, t: Duration) -> Duration {
        let nanos = t.as_nanos() * self.rate() / MILLION;
        self.offset + Duration::from_nanos(nanos as u64)
    }

    /// The earliest virtual time at which the local time reaches `local`.
    pub(crate) fn virtual_time(&self, local: Duration) -> Duration {
        let d = local.saturating_sub(self.offset).as_nanos();
        Duration::from_nanos((d * MILLION).div_ceil(self.rate()) as u64)
    }
}

/// A proposal in a leader's term pool.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    /// The client proposal's id; `None` for content from `prepare_term`.
    pub(crate) id: Option<u64>,
    pub(crate) content: Payload,
    /// The epoch the node led when it took the proposal.
    pub(crate) epoch: Epoch,
}

/// One node of the simulation.
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    /// The running core; `None` while crashed.
    pub(crate) core: Option<Core<SimStore>>,
    /// The store while crashed.
    pub(crate) parked: Option<SimStore>,
    pub(crate) hook: Box<dyn Hook>,

    /// The epoch this node leads, as its leader worker would know it.
    pub(crate) leading: Option<Epoch>,
    pub(crate) pool: VecDeque<Pending>,
    /// The update-node pool: changes waiting for a round, at most one per
    /// node. Like the runtime's, it outlives a leadership and dies with the
    /// process.
    pub(crate) updates: VecDeque<MembershipChange>,
    /// The last configuration applied, to tell the application of the
    /// members a newly applied one drops.
    pub(crate) applied_config: Configuration,
    /// Stopped for good after its removal: never restarted.
    pub(crate) retired: bool,
    /// Proposals built into terms: index → (epoch, proposal id).
    pub(crate) waiters: BTreeMap<Index, (Epoch, u64)>,
    /// Local times of the leader's next round and next prepare.
    pub(crate) next_round: Option<Duration>,
    pub(crate) next_prepare: Option<Duration>,
    /// Local time of the next sync of a volatile store.
    pub(crate) next_sync: Duration,
    /// Local time at which the leader's disk finishes the sync of its last
    /// round (`Core::sync_log`), while its messages are already out.
    pub(crate) leader_sync: Option<Duration>,

    /// What the checks saw of this core's life.
    pub(crate) seen_commit: Index,
    pub(crate) seen_applied: Index,
    pub(crate) applied_ids: BTreeSet<u64>,
    /// The epochs of the log as last checked, index 1 first.
    pub(crate) mirror: Vec<Epoch>,
}

impl SimNode {
    pub(crate) fn new(
        config: Config,
        clock: Clock,
        core: Core<SimStore>,
        hook: Box<dyn Hook>,
    ) -> Self {
        SimNode {
            id: config.id,
            config,
            clock,
            core: Some(core),
            parked: None,
            hook,
            leading: None,
            pool: VecDeque::new(),
            updates: VecDeque::new(),
            applied_config: Configuration::default(),
            retired: false,
            waiters: BTreeMap::new(),
            next_round: None,
            next_prepare: None,
            next_sync: Duration::ZERO,
            leader_sync: None,
            seen_commit: 0,
            seen_applied: 0,
            applied_ids: BTreeSet::new(),
            mirror: Vec::new(),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// The store, running or not.
    pub(crate) fn store(&self) -> &SimStore {
        match (&self.core, &self.parked) {
            (Some(c), _) => c.store(),
            (None, Some(s)) => s,
            (None, None) => unreachable!("a node holds its store, in its core or parked"),
        }
    }

    /// The running core.
    ///
    /// # Panics
    /// The node is crashed: the simulation only drives running nodes.
    pub(crate) fn core(&mut self) -> &mut Core<SimStore> {
        self.core.as_mut().expect("the simulation drives running nodes only")
    }

    /// Whether the core leads, and which epoch.
    pub(crate) fn leads(&self) -> Option<Epoch> {
        let c = self.core.as_ref()?;
        (c.status() == Status::Leader).then(|| c.epoch())
    }

    /// Forgets what lives only in memory: the core, its pool, its waiters.
    /// The store keeps what it made durable.
    pub(crate) fn crash(&mut self) {
        let Some(core) = self.core.take() else {
            return;
        };
        let mut store = core.into_store();
        store.crash();
        self.parked = Some(store);
        self.leading = None;
        self.pool.clear();
        self.updates.clear();
        self.waiters.clear();
        self.next_round = None;
        self.next_prepare = None;
        self.leader_sync = None;
    }

    /// Starts a new life over the parked store.
    pub(crate) fn restart(&mut self, core: Core<SimStore>, hook: Box<dyn Hook>) {
        self.core = Some(core);
        self.parked = None;
        self.hook = hook;
        self.applied_config = Configuration::default();
        self.seen_commit = 0;
        self.seen_applied = 0;
        self.applied_ids.clear();
        self.mirror.clear();
    }

    /// Puts `change` in the update-node pool, as the runtime's
    /// `queue_change` does: ignored when a change for the same node already
    /// waits there, refused when the pool is full.
    pub(crate) fn queue_change(&mut self, change: MembershipChange) -> Result<(), &'static str> {
        let id = change.node();
        if self.updates.iter().any(|c| c.node() == id) {
            return Ok(());
        }
        if self.updates.len() >= self.config.update_pool_capacity {
            return Err("the update-node pool is full");
        }
        self.updates.push_back(change);
        Ok(())
    }

    /// Takes the parked store, to build a core over it.
    pub(crate) fn take_parked(&mut self) -> Option<SimStore> {
        self.parked.take()
    }
}
