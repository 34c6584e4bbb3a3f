//! Threaded nodes on the in-memory network: elections, replication,
//! failures, hooks, backpressure and shutdown. Every test waits on
//! conditions with generous timeouts; none asserts a speed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Event, Recorder, WAIT};
use hookraft::{
    Config, Configuration, DropReason, Hook, MemNetwork, MemStore, Node, NodeId, ProposeError,
    Status, Term, WaitError,
};

fn assert_one_leader(cluster: &Cluster) {
    let leader = cluster.wait_leader();
    let statuses: Vec<_> = cluster.running().map(|n| n.status()).collect();
    let epoch = statuses.iter().find(|s| s.id.0 == leader).unwrap().epoch;
    let leaders = statuses.iter().filter(|s| s.status == Status::Leader && s.epoch == epoch);
    assert_eq!(leaders.count(), 1);
}

#[test]
fn three_nodes_elect_exactly_one_leader() {
    assert_one_leader(&Cluster::new(3));
}

#[test]
fn five_nodes_elect_exactly_one_leader() {
    assert_one_leader(&Cluster::new(5));
}

#[test]
fn proposed_terms_are_applied_by_every_node_in_the_same_order() {
    let cluster = Cluster::new(3);
    let mut last = 0;
    for i in 0..200u32 {
        let p = cluster.propose(&i.to_be_bytes());
        if i % 50 == 49 {
            last = p.wait_timeout(WAIT).expect("committed").0;
        }
    }
    cluster.wait_all_applied(last);
    let reference = cluster.hook(1).contents();
    assert_eq!(reference.len(), 200);
    let payloads: Vec<Vec<u8>> = reference.iter().map(|(_, _, c)| c.clone()).collect();
    let expected: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(payloads, expected);
    for id in 2..=3 {
        assert_eq!(cluster.hook(id).contents(), reference);
    }
}

#[test]
fn a_proposal_on_a_follower_names_the_leader() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    let follower = if leader == 1 { 2 } else { 1 };
    let err = cluster.node(follower).propose(b"x".to_vec()).unwrap_err();
    assert_eq!(err, ProposeError::NotLeader { leader: Some(NodeId(leader)) });
}

#[test]
fn a_crashed_leader_is_replaced_and_no_committed_term_is_lost() {
    let mut cluster = Cluster::new(3);
    let mut committed = Vec::new();
    for i in 0..20u32 {
        let (index, _) = cluster.propose(&i.to_be_bytes()).wait_timeout(WAIT).unwrap();
        committed.push(index);
    }
    let old = cluster.wait_leader();
    cluster.crash(old);

    let new = cluster.wait_leader();
    assert_ne!(new, old);
    let (index, _) = cluster.propose(b"after").wait_timeout(WAIT).unwrap();
    cluster.wait_all_applied(index);
    for n in cluster.running() {
        let contents = cluster.hook(n.id().0).contents();
        let indexes: Vec<u64> = contents.iter().map(|(i, _, _)| *i).collect();
        for i in &committed {
            assert!(indexes.contains(i), "node {} lost committed index {i}", n.id());
        }
        assert_eq!(contents.last().unwrap().2, b"after");
    }
}

#[test]
fn an_isolated_leader_steps_down_and_its_uncommitted_proposals_never_falsely_fail() {
    let cluster = Cluster::new(3);
    let old = cluster.wait_leader();
    cluster.propose(b"before").wait_timeout(WAIT).unwrap();
    cluster.net.isolate(NodeId(old));

    // Proposals the isolated leader takes cannot commit while it is cut off.
    let stranded: Vec<_> = (0..5).filter_map(|i| cluster.node(old).propose(vec![i]).ok()).collect();
    cluster
        .node(old)
        .wait_for(WAIT, |s| s.status != Status::Leader)
        .expect("the isolated leader steps down");
    cluster.node(old).wait_for(WAIT, |_| cluster.node(old).leader_workers() == 0);
    assert_eq!(cluster.node(old).leader_workers(), 0, "a leader worker survived a step-down");

    let others: Vec<u64> = (1..=3).filter(|i| *i != old).collect();
    let new = cluster.wait_leader_among(&others);
    // The healed cluster writes past every index the stranded terms had, so
    // each of them is either replaced or was never in a log: all resolve as
    // dropped, none as committed, none hangs.
    let mut index = 0;
    for i in 0..10u8 {
        let p = cluster.node(new).propose(vec![b'm', i]).unwrap();
        index = p.wait_timeout(WAIT).unwrap().0;
    }
    cluster.net.heal();
    cluster.wait_applied(old, index);
    for p in stranded {
        match p.wait_timeout(WAIT) {
            Err(WaitError::Dropped(DropReason::Replaced { .. } | DropReason::NotLeader)) => {}
            other => panic!("a stranded proposal resolved as {other:?}"),
        }
    }
    let reference = cluster.hook(new).contents();
    cluster.wait_all_applied(index);
    for id in 1..=3 {
        let c = cluster.hook(id).contents();
        assert_eq!(c[..], reference[..c.len().min(reference.len())], "node {id} diverged");
    }
}

#[test]
fn after_a_partition_heals_every_log_converges() {
    let cluster = Cluster::new(5);
    let leader = cluster.wait_leader();
    let minority = [leader, if leader == 1 { 2 } else { 1 }];
    for id in minority {
        for other in 1..=5 {
            if !minority.contains(&other) {
                cluster.net.cut_both(NodeId(id), NodeId(other));
            }
        }
    }
    let majority: Vec<u64> = (1..=5).filter(|i| !minority.contains(i)).collect();
    let new = cluster.wait_leader_among(&majority);
    let mut last = 0;
    for i in 0..30u8 {
        last = cluster.node(new).propose(vec![i]).unwrap().wait_timeout(WAIT).unwrap().0;
    }
    cluster.net.heal();
    cluster.wait_all_applied(last);
    let reference = cluster.hook(new).contents();
    for id in 1..=5 {
        let c = cluster.hook(id).contents();
        assert_eq!(c[..reference.len()], reference[..], "node {id}");
    }
}

#[test]
fn a_lagging_follower_catches_up() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    let lagging = if leader == 3 { 2 } else { 3 };
    cluster.net.isolate(NodeId(lagging));
    let mut last = 0;
    for i in 0..2000u32 {
        let p = cluster.node(leader).propose(i.to_be_bytes().to_vec()).unwrap();
        if i == 1999 {
            last = p.wait_timeout(WAIT).unwrap().0;
        }
    }
    assert!(cluster.node(lagging).status().last_index < last);
    cluster.net.heal();
    cluster.wait_applied(lagging, last);
    assert_eq!(cluster.hook(lagging).contents(), cluster.hook(leader).contents());
}

#[test]
fn hooks_run_in_the_documented_order_prepare_send_apply() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    cluster.hook(leader).prepared.lock().push(b"prepared".to_vec().into());
    let found = cluster.node(leader).wait_for(WAIT, |_| {
        cluster.hook(leader).contents().iter().any(|(_, _, c)| c == b"prepared")
    });
    assert!(found.is_some(), "the prepared content was never applied");
    let events = cluster.hook(leader).events.lock().clone();
    let prepare = events.iter().position(|e| *e == Event::Prepare).unwrap();
    let send = events.iter().skip(prepare).position(|e| matches!(e, Event::Send(_))).unwrap();
    let apply = events.iter().skip(prepare + send).position(|e| matches!(e, Event::Apply(_)));
    assert!(apply.is_some(), "{events:?}");
}

#[test]
fn a_follower_that_refuses_terms_falls_behind_while_the_quorum_commits() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    let refusing = if leader == 1 { 2 } else { 1 };
    *cluster.hook(refusing).refuse_appends.lock() = true;
    let (index, _) = cluster.propose(b"x").wait_timeout(WAIT).unwrap();
    cluster.wait_applied(leader, index);
    assert!(cluster.node(refusing).status().last_index < index, "it stored a refused term");

    *cluster.hook(refusing).refuse_appends.lock() = false;
    cluster.wait_applied(refusing, index);
}

#[test]
fn voters_that_refuse_their_votes_keep_a_candidate_from_winning() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    for id in 1..=3 {
        *cluster.hook(id).refuse_votes.lock() = true;
    }
    cluster.net.isolate(NodeId(leader));
    let others: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    // Both remaining nodes stand again and again, but nobody grants a vote.
    for id in &others {
        cluster.node(*id).wait_for(WAIT, |s| s.counters.elections >= 2).expect("elections run");
        assert_ne!(cluster.node(*id).status().status, Status::Leader);
    }
    for id in 1..=3 {
        *cluster.hook(id).refuse_votes.lock() = false;
    }
    let new = cluster.wait_leader_among(&others);
    assert_ne!(new, leader);
}

/// Holds every round of the leader inside `send_term` until released.
#[derive(Default)]
struct Gate {
    closed: parking_lot::Mutex<bool>,
    held: std::sync::atomic::AtomicBool,
    opened: parking_lot::Condvar,
}

impl Hook for Gate {
    fn send_term(&self, terms: &[Term]) -> bool {
        let mut closed = self.closed.lock();
        while *closed && !terms.is_empty() {
            self.held.store(true, std::sync::atomic::Ordering::SeqCst);
            self.opened.wait(&mut closed);
        }
        true
    }
}

#[test]
fn a_full_term_pool_pushes_back() {
    let initial = Configuration::voters([(1, "solo")]);
    let mut cfg = common::config(1, &initial);
    cfg.term_pool_capacity = 2;
    cfg.max_terms_per_round = 1;
    let gate = Arc::new(Gate::default());
    let net = MemNetwork::new();
    let node = Node::start(cfg, net.transport(), MemStore::new(), gate.clone()).unwrap();
    node.wait_for(WAIT, |s| s.status == Status::Leader).expect("a single voter leads");

    *gate.closed.lock() = true;
    let first = node.propose(b"held".to_vec()).unwrap();
    // Once the worker holds the first proposal inside send_term, two more
    // fill the pool and the next one is pushed back.
    let start = std::time::Instant::now();
    while !gate.held.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(start.elapsed() < WAIT, "the round never reached send_term");
        std::thread::sleep(Duration::from_millis(1));
    }
    node.try_propose(b"fill".to_vec()).unwrap();
    node.try_propose(b"fill".to_vec()).unwrap();
    let err = node.try_propose(b"more".to_vec()).unwrap_err();
    assert_eq!(err, ProposeError::PoolFull);
    let err = node.propose_timeout(b"more".to_vec(), Duration::from_millis(50)).unwrap_err();
    assert_eq!(err, ProposeError::Timeout);

    *gate.closed.lock() = false;
    gate.opened.notify_all();
    first.wait_timeout(WAIT).unwrap();
    node.propose(b"after".to_vec()).unwrap().wait_timeout(WAIT).unwrap();
}

#[test]
fn a_single_voter_commits_on_its_own() {
    let initial = Configuration::voters([(7, "solo")]);
    let net = MemNetwork::new();
    let hook = Arc::new(Recorder::default());
    let node = Node::start(Config::new(7, initial), net.transport(), MemStore::new(), hook.clone())
        .unwrap();
    node.wait_for(WAIT, |s| s.status == Status::Leader).unwrap();
    let (index, _) = node.propose(b"one".to_vec()).unwrap().wait_timeout(WAIT).unwrap();
    assert_eq!(hook.contents(), vec![(index, 1, b"one".to_vec())]);
}

#[test]
fn an_invalid_configuration_is_refused_with_a_reason() {
    let initial = Configuration::voters([(1, "a")]);
    let mut cfg = Config::new(2, initial);
    let err = Node::start(
        cfg.clone(),
        MemNetwork::new().transport(),
        MemStore::new(),
        Recorder::default(),
    );
    assert!(err.err().unwrap().to_string().contains("absent"));
    cfg.id = NodeId(1);
    cfg.heartbeat_interval = cfg.election_timeout_min;
    let err = Node::start(cfg, MemNetwork::new().transport(), MemStore::new(), Recorder::default());
    assert!(err.err().unwrap().to_string().contains("heartbeat_interval"));
}

#[test]
fn a_follower_restarted_with_an_empty_store_is_brought_back_in_full() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    let follower = if leader == 3 { 2 } else { 3 };
    let mut last = 0;
    for i in 0..100u8 {
        last = cluster.propose(&[i]).wait_timeout(WAIT).unwrap().0;
    }
    cluster.wait_applied(follower, last);
    cluster.crash(follower);
    cluster.restart_empty(follower);
    cluster.wait_applied(follower, last);
    assert_eq!(cluster.hook(follower).contents(), cluster.hook(leader).contents());
}
