//! Nodes on the durable file store: a cluster restarted node by node while
//! proposals run loses and changes no committed term, and a store that fails
//! stops its node with the reason instead of panicking.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Recorder, WAIT};
use hookraft::{
    Configuration, Epoch, FileStore, FileStoreOptions, HardState, Index, LogStore, MemNetwork,
    MemStore, Node, ProposeError, Status, StoreError, Term,
};
use parking_lot::Mutex;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hookraft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn open(dir: &PathBuf) -> FileStore {
    // A stopped node's lock can outlive it by a moment when another test
    // forks a process at the same time: retry briefly.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match FileStore::open(dir, FileStoreOptions::default()) {
            Ok(s) => return s,
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("cannot open {}: {e}", dir.display()),
        }
    }
}

struct DurableCluster {
    net: MemNetwork,
    initial: Configuration,
    dirs: Vec<PathBuf>,
    nodes: Mutex<Vec<Option<Node>>>,
    hooks: Mutex<Vec<Arc<Recorder>>>,
}

impl DurableCluster {
    fn new(name: &str) -> Self {
        let initial = Configuration::voters((1..=3).map(|i| (i, format!("mem-{i}"))));
        let dirs = (1..=3).map(|i| temp_dir(&format!("{name}-{i}"))).collect();
        let c = DurableCluster {
            net: MemNetwork::new(),
            initial,
            dirs,
            nodes: Mutex::new(vec![None, None, None]),
            hooks: Mutex::new(Vec::new()),
        };
        for id in 1..=3 {
            c.start(id);
        }
        c
    }

    fn start(&self, id: u64) {
        let hook = Arc::new(Recorder::default());
        let cfg = common::config(id, &self.initial);
        let store = open(&self.dirs[id as usize - 1]);
        let node = Node::start(cfg, self.net.transport(), store, hook.clone()).unwrap();
        self.nodes.lock()[id as usize - 1] = Some(node);
        let mut hooks = self.hooks.lock();
        if hooks.len() < id as usize {
            hooks.push(hook);
        } else {
            hooks[id as usize - 1] = hook;
        }
    }

    fn stop(&self, id: u64) {
        let node = self.nodes.lock()[id as usize - 1].take();
        node.expect("running").shutdown();
    }

    /// Proposes on whichever node leads; `None` when no node takes it now.
    fn try_propose(&self, content: Vec<u8>) -> Option<hookraft::Proposal> {
        let nodes = self.nodes.lock();
        for n in nodes.iter().flatten() {
            match n.propose(content.clone()) {
                Ok(p) => return Some(p),
                Err(ProposeError::NotLeader { .. }) => continue,
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        None
    }
}

impl Drop for DurableCluster {
    fn drop(&mut self) {
        for n in self.nodes.lock().iter_mut() {
            if let Some(n) = n.take() {
                n.shutdown();
            }
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Terms by index: epoch and content.
type Applied = BTreeMap<Index, (Epoch, Vec<u8>)>;

#[test]
fn restarting_every_node_in_turn_loses_no_committed_term() {
    let cluster = Arc::new(DurableCluster::new("rolling"));
    let running = Arc::new(AtomicBool::new(true));
    let committed: Arc<Mutex<Applied>> = Arc::default();

    let proposer = {
        let (cluster, running, committed) = (cluster.clone(), running.clone(), committed.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while running.load(Ordering::SeqCst) {
                let content = format!("p{i}").into_bytes();
                i += 1;
                let Some(p) = cluster.try_propose(content.clone()) else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if let Ok((index, epoch)) = p.wait_timeout(Duration::from_secs(2)) {
                    committed.lock().insert(index, (epoch, content));
                }
            }
        })
    };

    for id in 1..=3 {
        let before = committed.lock().len();
        wait_until(|| committed.lock().len() >= before + 20);
        cluster.stop(id);
        wait_until(|| committed.lock().len() >= before + 40);
        cluster.start(id);
    }
    wait_until(|| committed.lock().len() >= 150);
    running.store(false, Ordering::SeqCst);
    proposer.join().unwrap();

    // Then the whole cluster stops at once and restarts from its disks
    // alone: nothing can be repaired from a live peer.
    for id in 1..=3 {
        cluster.stop(id);
    }
    for id in 1..=3 {
        cluster.start(id);
    }

    // Every node ends with every acknowledged term, unchanged, at its index.
    let last = *committed.lock().keys().last().unwrap();
    for id in 1..=3 {
        let node = &cluster.nodes.lock()[id as usize - 1];
        let node = node.as_ref().unwrap();
        node.wait_for(WAIT, |s| s.applied_index >= last).expect("catches up");
        let applied: Applied = cluster.hooks.lock()[id as usize - 1]
            .contents()
            .into_iter()
            .map(|(i, e, c)| (i, (e, c)))
            .collect();
        for (index, term) in committed.lock().iter() {
            assert_eq!(applied.get(index), Some(term), "node {id} at index {index}");
        }
    }
}

fn wait_until(mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A store whose writes start failing on demand, as a full disk would.
struct FailingStore {
    inner: MemStore,
    fail: Arc<AtomicBool>,
}

impl FailingStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            let source = std::io::Error::from_raw_os_error(28); // ENOSPC
            return Err(StoreError::Io { context: "appending to seg-1.log".into(), source });
        }
        Ok(())
    }
}

impl LogStore for FailingStore {
    fn hard_state(&self) -> HardState {
        self.inner.hard_state()
    }
    fn save_hard_state(&mut self, state: HardState) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_hard_state(state)
    }
    fn append(&mut self, terms: &[Term]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.append(terms)
    }
    fn truncate_from(&mut self, index: Index) -> Result<(), StoreError> {
        self.check()?;
        self.inner.truncate_from(index)
    }
    fn first_index(&self) -> Index {
        self.inner.first_index()
    }
    fn last_index(&self) -> Index {
        self.inner.last_index()
    }
    fn epoch_of(&self, index: Index) -> Option<Epoch> {
        self.inner.epoch_of(index)
    }
    fn terms(&self, from: Index, to: Index, max: usize) -> Result<Vec<Term>, StoreError> {
        self.inner.terms(from, to, max)
    }
}

#[test]
fn a_failing_disk_stops_the_node_with_the_reason() {
    let initial = Configuration::voters([(1, "solo")]);
    let fail = Arc::new(AtomicBool::new(false));
    let store = FailingStore { inner: MemStore::new(), fail: fail.clone() };
    let net = MemNetwork::new();
    let cfg = common::config(1, &initial);
    let node = Node::start(cfg, net.transport(), store, Recorder::default()).unwrap();
    node.wait_for(WAIT, |s| s.status == Status::Leader).unwrap();
    node.propose(b"ok".to_vec()).unwrap().wait_timeout(WAIT).unwrap();

    fail.store(true, Ordering::SeqCst);
    let p = node.propose(b"lost".to_vec()).unwrap();
    let stopped = node.wait_for(WAIT, |s| s.failure.is_some()).expect("the node stops");
    let reason = stopped.failure.unwrap();
    assert!(reason.contains("seg-1.log"), "{reason}");
    assert!(p.wait_timeout(WAIT).is_err(), "a term the disk refused reported committed");
    assert_eq!(node.propose(b"more".to_vec()).unwrap_err(), ProposeError::Stopped);
    let ended = node.wait_for(WAIT, |_| node.leader_workers() == 0);
    assert!(ended.is_some(), "the leader worker of a failed node still runs");
}

/// Holds every round that carries terms inside `send_term` until opened.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    held: AtomicBool,
    opened: parking_lot::Condvar,
}

impl hookraft::Hook for Gate {
    fn send_term(&self, terms: &[Term]) -> bool {
        let mut closed = self.closed.lock();
        while *closed && !terms.is_empty() {
            self.held.store(true, Ordering::SeqCst);
            self.opened.wait(&mut closed);
        }
        true
    }
}

#[test]
fn a_proposer_blocked_on_a_full_pool_is_released_when_the_node_stops() {
    let initial = Configuration::voters([(1, "solo")]);
    let fail = Arc::new(AtomicBool::new(false));
    let store = FailingStore { inner: MemStore::new(), fail: fail.clone() };
    let mut cfg = common::config(1, &initial);
    cfg.term_pool_capacity = 1;
    let gate = Arc::new(Gate::default());
    let net = MemNetwork::new();
    let node = Node::start(cfg, net.transport(), store, gate.clone()).unwrap();
    node.wait_for(WAIT, |s| s.status == Status::Leader).unwrap();

    *gate.closed.lock() = true;
    let held = node.propose(b"held".to_vec()).unwrap();
    wait_until(|| gate.held.load(Ordering::SeqCst));
    node.try_propose(b"fill".to_vec()).unwrap();

    std::thread::scope(|scope| {
        let blocked = scope.spawn(|| node.propose(b"blocked".to_vec()));
        // The disk fails under the held round: the node stops.
        fail.store(true, Ordering::SeqCst);
        *gate.closed.lock() = false;
        gate.opened.notify_all();
        match blocked.join().unwrap() {
            Err(ProposeError::Stopped) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(p) => assert!(p.wait_timeout(WAIT).is_err(), "committed on a failed node"),
        }
    });
    assert!(held.wait_timeout(WAIT).is_err());
    assert!(node.status().failure.is_some());
}
