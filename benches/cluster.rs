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
    Config, Configuration, FileStore, FileStoreOptions, LogStore, MemNetwork, MemStore, NoHook,
    Node, NodeId, Status, TcpOptions, TcpTransport,
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

/// How the nodes reach each other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Net {
    Mem,
    /// `TcpTransport` on loopback ports.
    Tcp,
}

impl Net {
    fn name(self) -> &'static str {
        match self {
            Net::Mem => "mem",
            Net::Tcp => "tcp",
        }
    }
}

struct Cluster {
    net: MemNetwork,
    nodes: Vec<Node>,
    dirs: Vec<PathBuf>,
}

impl Cluster {
    fn start(n: u64, kind: Net, store: Store, tweak: impl Fn(&mut Config)) -> Self {
        let net = MemNetwork::with_seed(n);
        let tcp: Vec<TcpTransport> = match kind {
            Net::Mem => Vec::new(),
            Net::Tcp => (1..=n)
                .map(|_| {
                    let any = "127.0.0.1:0".parse().unwrap();
                    TcpTransport::bind(TcpOptions::new(any, 7)).expect("a loopback port")
                })
                .collect(),
        };
        let address = |id: u64| match kind {
            Net::Mem => format!("mem-{id}"),
            Net::Tcp => tcp[id as usize - 1].local_addr().to_string(),
        };
        let initial = Configuration::voters((1..=n).map(|i| (i, address(i))));
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let mut cfg = Config::new(id, initial.clone());
            tweak(&mut cfg);
            let store: Box<dyn LogStore> = match store {
                Store::Mem => Box::new(MemStore::new()),
                Store::File => {
                    let dir = std::env::temp_dir()
                        .join(format!("hookraft-bench-{}-{id}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    dirs.push(dir.clone());
                    Box::new(FileStore::open(&dir, FileStoreOptions::default()).unwrap())
                }
            };
            let node = match kind {
                Net::Mem => Node::start(cfg, net.transport(), store, NoHook),
                Net::Tcp => Node::start(cfg, tcp[id as usize - 1].clone(), store, NoHook),
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

/// Resets the process's peak resident memory (Linux), so that each case
/// reports its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory since the last reset, in MiB (0 where unknown).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.unwrap_or(0.0) / 1024.0
}

fn throughput(nodes: u64, clients: usize, payload: usize, kind: Net, store: Store) -> f64 {
    reset_peak_rss();
    let cluster = Cluster::start(nodes, kind, store, |_| {});
    let all: Vec<usize> = (0..nodes as usize).collect();
    let leader = &cluster.nodes[cluster.leader(&all)];
    closed_loop(leader, clients, payload, Duration::from_millis(300)); // warm-up
    let duration = Duration::from_secs(2);
    let start = Instant::now();
    let mut lat = closed_loop(leader, clients, payload, duration);
    let elapsed = start.elapsed();
    lat.sort_unstable();
    println!(
        "bench=throughput transport={} store={} nodes={nodes} clients={clients} \
         payload={payload} ops_per_s={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} \
         peak_rss_mb={:.0}",
        kind.name(),
        store.name(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        peak_rss_mb(),
    );
    lat.len() as f64 / elapsed.as_secs_f64()
}

/// Isolates the leader and times until a new leader has committed a
/// proposal, `rounds` times.
fn election(rounds: usize) {
    let cluster = Cluster::start(3, Net::Mem, Store::Mem, |c| {
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
    let cases: Vec<(u64, usize, usize, Net, Store)> = vec![
        (3, 1, 64, Net::Mem, Store::Mem),
        (3, 16, 64, Net::Mem, Store::Mem),
        (3, 256, 64, Net::Mem, Store::Mem),
        (5, 256, 64, Net::Mem, Store::Mem),
        (7, 256, 64, Net::Mem, Store::Mem),
        (3, 256, 4096, Net::Mem, Store::Mem),
        (3, 16, 65536, Net::Mem, Store::Mem),
        (3, 1, 64, Net::Tcp, Store::Mem),
        (3, 16, 64, Net::Tcp, Store::Mem),
        (3, 256, 64, Net::Tcp, Store::Mem),
        (3, 1, 64, Net::Mem, Store::File),
        (3, 16, 64, Net::Mem, Store::File),
        (3, 256, 64, Net::Mem, Store::File),
        (3, 1, 64, Net::Tcp, Store::File),
        (3, 16, 64, Net::Tcp, Store::File),
        (3, 256, 64, Net::Tcp, Store::File),
    ];
    let mut chart = Vec::new();
    for (nodes, clients, payload, net, store) in cases {
        let name = format!(
            "throughput transport={} store={} nodes={nodes} clients={clients} payload={payload}",
            net.name(),
            store.name()
        );
        if wanted(&name) {
            let ops = throughput(nodes, clients, payload, net, store);
            if nodes == 3 && payload == 64 {
                chart.push((format!("{}+{}", net.name(), store.name()), clients, ops));
            }
        }
    }
    if let Ok(path) = std::env::var("HOOKRAFT_BENCH_SVG") {
        std::fs::write(&path, svg_chart(&chart)).expect("the chart is written");
        println!("chart written to {path}");
    }
    if wanted("election") {
        election(20);
    }
}

/// A line chart of committed terms per second against proposers, one line
/// per transport and store, as a standalone SVG.
fn svg_chart(points: &[(String, usize, f64)]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 400.0;
    const M: f64 = 60.0;
    let max = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.1;
    let x = |clients: usize| M + (clients as f64).log(256.0) * (W - 2.0 * M);
    let y = |ops: f64| H - M - ops / max * (H - 2.0 * M);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{M}\" y=\"24\" font-size=\"15\">hookraft: committed terms per second, \
         3 nodes, 64-byte terms</text>\n"
    );
    for clients in [1, 16, 256] {
        let px = x(clients);
        out += &format!(
            "<line x1=\"{px}\" y1=\"{M}\" x2=\"{px}\" y2=\"{}\" stroke=\"#ddd\"/>\n\
             <text x=\"{px}\" y=\"{}\" text-anchor=\"middle\">{clients}</text>\n",
            H - M,
            H - M + 18.0
        );
    }
    out += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">proposers</text>\n",
        W / 2.0,
        H - 16.0
    );
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}k</text>\n",
            M - 6.0,
            y(v) + 4.0,
            v / 1000.0
        );
    }
    out += &format!(
        "<text x=\"{}\" y=\"{}\" fill=\"#555\">transport+store</text>\n",
        M + 12.0,
        M - 12.0
    );
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
    let mut series: Vec<&str> = points.iter().map(|p| p.0.as_str()).collect();
    series.dedup();
    for (n, name) in series.iter().enumerate() {
        let color = colors[n % colors.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|p| p.0 == *name)
            .map(|p| format!("{:.1},{:.1}", x(p.1), y(p.2)))
            .collect();
        out += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{color}\">{name}</text>\n",
            path.join(" "),
            M + 12.0,
            M + 16.0 * n as f64 + 4.0
        );
    }
    out + "</svg>\n"
}
