//! Three nodes in one process on the in-memory network: they elect a leader,
//! replicate a stream of proposals, survive the isolation of their leader,
//! let a fourth node join, and end with identical logs.
//!
//! Run it with `cargo run --example cluster`.

use std::sync::Arc;
use std::time::Duration;

use hookraft::{
    Config, Configuration, Hook, MemNetwork, MemStore, Node, NodeId, Role, Status, Term,
};
use parking_lot::Mutex;

/// The application: remembers the content of every committed term.
#[derive(Default)]
struct Journal {
    lines: Mutex<Vec<(u64, String)>>,
}

impl Hook for Journal {
    fn apply_term(&self, term: &Term) {
        if let Some(content) = term.content() {
            let text = String::from_utf8_lossy(content).into_owned();
            self.lines.lock().push((term.index, text));
        }
    }
}

const WAIT: Duration = Duration::from_secs(10);

fn main() {
    let initial = Configuration::voters([(1, "mem-1"), (2, "mem-2"), (3, "mem-3")]);
    let net = MemNetwork::new();
    let journals: Vec<Arc<Journal>> = (0..3).map(|_| Arc::default()).collect();
    let nodes: Vec<Node> = (1..=3)
        .map(|id| {
            let config = Config::new(id, initial.clone());
            let hook = journals[id as usize - 1].clone();
            Node::start(config, net.transport(), MemStore::new(), hook).expect("node starts")
        })
        .collect();
    println!("started three nodes; none leads yet, so they hold an election");

    let leader = wait_for_leader(&nodes, &[1, 2, 3]);
    println!("node {leader} won the election in epoch {}", nodes[leader - 1].status().epoch);

    propose_stream(&nodes[leader - 1], "first", 100);
    println!("node {leader} replicated 100 proposals; each one committed on a majority");

    println!("cutting node {leader} off from the others...");
    net.isolate(NodeId(leader as u64));
    let others: Vec<usize> = (1..=3).filter(|i| *i != leader).collect();
    let new_leader = wait_for_leader(&nodes, &others);
    println!(
        "the two others noticed its silence and elected node {new_leader} in epoch {}",
        nodes[new_leader - 1].status().epoch
    );
    let old = nodes[leader - 1].wait_for(WAIT, |s| s.status != Status::Leader);
    if old.is_some() {
        println!("node {leader}, hearing from no quorum, stepped down on its own");
    }

    propose_stream(&nodes[new_leader - 1], "second", 100);
    println!("node {new_leader} went on: 100 more proposals committed without node {leader}");

    println!("healing the network...");
    net.heal();
    let last = nodes[new_leader - 1].status().commit_index;
    for n in &nodes {
        n.wait_for(WAIT, |s| s.applied_index >= last).expect("every node catches up");
    }
    println!("node {leader} caught up and now follows node {new_leader}");

    println!("a fourth node starts, knowing only node 1, and asks to join as a voter");
    let journal = Arc::new(Journal::default());
    let config = Config::join(4, "mem-4", Role::Voter, [(1, "mem-1".to_string())]);
    let newcomer = Node::start(config, net.transport(), MemStore::new(), journal.clone())
        .expect("node starts");
    newcomer.wait_for(WAIT, |s| s.status == Status::Follower).expect("it is let in");
    println!("node 4 was let in as an observer and copies the log without counting in quorums");
    newcomer.wait_for(WAIT, |s| s.membership.is_voter(NodeId(4))).expect("it is promoted");
    println!("once caught up it was promoted: the cluster now has four voters");
    propose_stream(&nodes[new_leader - 1], "third", 10);
    let last = nodes[new_leader - 1].status().commit_index;
    for n in nodes.iter().chain([&newcomer]) {
        n.wait_for(WAIT, |s| s.applied_index >= last).expect("every node applies everything");
    }
    let mut journals = journals;
    journals.push(journal);

    let reference = journals[0].lines.lock().clone();
    let equal = journals.iter().all(|j| *j.lines.lock() == reference);
    println!(
        "every node applied the same {} terms in the same order: {}",
        reference.len(),
        if equal { "yes" } else { "NO" }
    );
    newcomer.shutdown();
    for n in nodes {
        n.shutdown();
    }
    assert!(equal, "logs differ");
}

/// Waits until exactly one of `among` leads and the others follow it.
fn wait_for_leader(nodes: &[Node], among: &[usize]) -> usize {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        let statuses: Vec<_> = among.iter().map(|i| nodes[i - 1].status()).collect();
        let leaders: Vec<_> = statuses.iter().filter(|s| s.status == Status::Leader).collect();
        if let [l] = leaders.as_slice() {
            if statuses.iter().all(|s| s.leader == Some(l.id) && s.epoch == l.epoch) {
                return l.id.0 as usize;
            }
        }
        nodes[among[0] - 1].wait_for(Duration::from_millis(20), |_| false);
    }
    panic!("no leader elected within {WAIT:?}");
}

/// Proposes `count` terms and waits for the last one to commit.
fn propose_stream(leader: &Node, label: &str, count: usize) {
    let mut last = None;
    for i in 0..count {
        let proposal = leader.propose(format!("{label}-{i}").as_str()).expect("leader takes it");
        last = Some(proposal);
    }
    last.expect("at least one").wait_timeout(WAIT).expect("the stream commits");
}
