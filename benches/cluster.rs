//! Cluster benchmark: throughput and commit latency of proposals on a cluster
//! of threaded nodes, and the time to elect a new leader that commits.
//!
//! Prints one machine-readable line per result, so runs can be compared:
//!
//! ```text
//! bench=throughput transport=mem store=mem nodes=3 clients=256 payload=64 ops_per_s=... p50_us=... p99_us=... p999_us=...
//! bench=election transport=mem nodes=3 rounds=20 median_ms=... max_ms=...
//! ```
//!
//! A term counts when its proposer learns it is committed, which happens once
//! the leader has applied it. Proposers are logical: one driver thread keeps
//! `clients` proposals outstanding in a closed loop.
//!
//! Run: `cargo bench --bench cluster` (all cases) or
//! `cargo bench --bench cluster -- throughput` / `election` / a case filter
//! such as `nodes=5`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hookraft::{
    Config, Configuration, FileStore, FileStoreOptions, MemNetwork, MemStore, NoHook, Node, NodeId,
    Status,
};

const WAIT: Duration = Duration::from_secs(30);

/// Where the nodes keep their logs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Mem,
    /// `FileStore` syncing every write, in a temporary directory.
    File,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Mem => "mem",
            Store::File => "file",
        }
    }
}

struct Cluster {
    net: MemNetwork,
    nodes: Vec<Node>,
    dirs: Vec<PathBuf>,
}

impl Cluster {
    fn start(n: u64, store: Store, tweak: impl Fn(&mut Config)) -> Self {
        let initial = Configuration::voters((1..=n).map(|i| (i, format!("mem-{i}"))));
        let net = MemNetwork::with_seed(n);
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let mut cfg = Config::new(id, initial.clone());
            tweak(&mut cfg);
            let node = match store {
                Store::Mem => Node::start(cfg, net.transport(), MemStore::new(), NoHook),
                Store::File => {
                    let dir = std::env::temp_dir()
                        .join(format!("hookraft-bench-{}-{id}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    let fs = FileStore::open(&dir, FileStoreOptions::default()).unwrap();
                    dirs.push(dir);
                    Node::start(cfg, net.transport(), fs, NoHook)
                }
            };
            nodes.push(node.unwrap());
        }
        Cluster { net, nodes, dirs }
    }

    /// The index in `nodes` of the leader that every node in `among` follows.
    fn leader(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let st: Vec<_> = among.iter().map(|i| self.nodes[*i].status()).collect();
            let leaders: Vec<_> = st.iter().filter(|s| s.status == Status::Leader).collect();
            if let [l] = leaders.as_slice() {
                if st.iter().all(|s| s.leader == Some(l.id) && s.epoch == l.epoch) {
                    return among.iter().position(|i| self.nodes[*i].id() == l.id).unwrap();
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            self.nodes[among[0]].wait_for(Duration::from_millis(1), |_| false);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.drain(..) {
            n.shutdown();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Keeps `clients` proposals outstanding on `leader` for `duration`;
/// returns the commit count and each proposal's latency.
fn closed_loop(leader: &Node, clients: usize, payload: usize, duration: Duration) -> Vec<Duration> {
    let content = vec![7u8; payload];
    let mut outstanding = VecDeque::with_capacity(clients);
    let mut latencies = Vec::with_capacity(1 << 20);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        while outstanding.len() < clients {
            let p = leader.propose(content.clone()).expect("the leader takes proposals");
            outstanding.push_back((Instant::now(), p));
        }
        let (start, p) = outstanding.pop_front().unwrap();
        p.wait_timeout(WAIT).expect("committed");
        latencies.push(start.elapsed());
    }
    for (_, p) in outstanding {
        p.wait_timeout(WAIT).expect("committed");
    }
    latencies
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn throughput(nodes: u64, clients: usize, payload: usize, store: Store) {
    let cluster = Cluster::start(nodes, store, |_| {});
    let all: Vec<usize> = (0..nodes as usize).collect();
    let leader = &cluster.nodes[cluster.leader(&all)];
    closed_loop(leader, clients, payload, Duration::from_millis(300)); // warm-up
    let duration = Duration::from_secs(2);
    let start = Instant::now();
    let mut lat = closed_loop(leader, clients, payload, duration);
    let elapsed = start.elapsed();
    lat.sort_unstable();
    println!(
        "bench=throughput transport=mem store={} nodes={nodes} clients={clients} \
         payload={payload} ops_per_s={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1}",
        store.name(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
    );
}

/// Isolates the leader and times until a new leader has committed a
/// proposal, `rounds` times.
fn election(rounds: usize) {
    let cluster = Cluster::start(3, Store::Mem, |c| {
        c.election_timeout_min = Duration::from_millis(150);
        c.election_timeout_max = Duration::from_millis(300);
        c.heartbeat_interval = Duration::from_millis(50);
    });
    let all: Vec<usize> = (0..3).collect();
    let mut times = Vec::new();
    for _ in 0..rounds {
        let old = cluster.leader(&all);
        cluster.nodes[old].propose(b"warm".to_vec()).unwrap().wait_timeout(WAIT).unwrap();
        let others: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
        let start = Instant::now();
        cluster.net.isolate(NodeId(old as u64 + 1));
        let new = loop {
            let st: Vec<_> = others.iter().map(|i| cluster.nodes[*i].status()).collect();
            if let Some(s) = st.iter().find(|s| s.status == Status::Leader) {
                break s.id.0 as usize - 1;
            }
            cluster.nodes[others[0]].wait_for(Duration::from_millis(1), |_| false);
            assert!(start.elapsed() < WAIT, "no new leader");
        };
        let p = loop {
            match cluster.nodes[new].propose(b"after".to_vec()) {
                Ok(p) => break p,
                Err(_) => std::thread::yield_now(),
            }
        };
        p.wait_timeout(WAIT).expect("the new leader commits");
        times.push(start.elapsed());
        cluster.net.heal();
        cluster.leader(&all);
    }
    times.sort_unstable();
    println!(
        "bench=election transport=mem nodes=3 rounds={rounds} median_ms={:.0} max_ms={:.0}",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
    );
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let cases: Vec<(u64, usize, usize, Store)> = vec![
        (3, 1, 64, Store::Mem),
        (3, 16, 64, Store::Mem),
        (3, 256, 64, Store::Mem),
        (5, 256, 64, Store::Mem),
        (7, 256, 64, Store::Mem),
        (3, 256, 4096, Store::Mem),
        (3, 16, 65536, Store::Mem),
        (3, 1, 64, Store::File),
        (3, 16, 64, Store::File),
        (3, 256, 64, Store::File),
    ];
    for (nodes, clients, payload, store) in cases {
        let name = format!(
            "throughput store={} nodes={nodes} clients={clients} payload={payload}",
            store.name()
        );
        if wanted(&name) {
            throughput(nodes, clients, payload, store);
        }
    }
    if wanted("election") {
        election(20);
    }
}
