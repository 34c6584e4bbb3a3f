//! Three `examples/node.rs` processes on loopback: they elect a leader and
//! commit what stdin proposes; when the leader is killed with SIGKILL the
//! others elect another and go on; the killed node, restarted empty,
//! receives every committed term again.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: the test waits on output, it never asserts a speed.
const WAIT: Duration = Duration::from_secs(60);

/// The example binary, built first so that the test never runs a stale one.
fn node_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--example", "node"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the example does not build");

    // This test runs from target/<profile>/deps.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    profile_dir.join("examples").join("node")
}

/// Free loopback ports, found by binding port 0 and letting go.
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// One node process, with every line it printed.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

/// The processes of the test; dropping it kills every one still running,
/// whether the test passed or not.
struct Procs {
    binary: PathBuf,
    addrs: Vec<SocketAddr>,
    procs: Vec<Option<Proc>>,
    /// Each node's durable log, so that a killed node restarts with it.
    dirs: Vec<PathBuf>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Procs {
    fn start(binary: PathBuf, n: usize) -> Procs {
        let mut procs = Procs {
            binary,
            addrs: free_addrs(n),
            procs: (0..n).map(|_| None).collect(),
            dirs: (1..=n)
                .map(|i| {
                    std::env::temp_dir().join(format!("hookraft-proc-{}-{i}", std::process::id()))
                })
                .collect(),
        };
        for d in &procs.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        for id in 1..=n as u64 {
            procs.spawn(id);
        }
        procs
    }

    fn spawn(&mut self, id: u64) {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--id", &id.to_string(), "--cluster", "42"])
            .args(["--listen", &self.addrs[id as usize - 1].to_string()])
            .arg("--data")
            .arg(&self.dirs[id as usize - 1]);
        for (i, addr) in self.addrs.iter().enumerate() {
            if i as u64 + 1 != id {
                cmd.args(["--peer", &format!("{}={addr}", i + 1)]);
            }
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("the node starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        self.procs[id as usize - 1] = Some(Proc { child, stdin, lines });
    }

    fn proc(&mut self, id: u64) -> &mut Proc {
        self.procs[id as usize - 1].as_mut().expect("running")
    }

    fn kill(&mut self, id: u64) {
        let mut p = self.procs[id as usize - 1].take().expect("running");
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    fn running(&self) -> Vec<u64> {
        (1..=self.procs.len() as u64).filter(|id| self.procs[*id as usize - 1].is_some()).collect()
    }

    /// Waits for a line of node `id` after the first `skip` that starts
    /// with `prefix`, and returns it with its position.
    fn wait_line(&mut self, id: u64, skip: usize, prefix: &str) -> (usize, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let lines = self.proc(id).lines.lock().unwrap();
                let mut found = lines.iter().enumerate().skip(skip);
                if let Some((i, l)) = found.find(|(_, l)| l.starts_with(prefix)) {
                    return (i, l.clone());
                }
            }
            assert!(Instant::now() < deadline, "node {id} never printed {prefix}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Proposes `content` on node `id`; returns whether it committed.
    fn propose_on(&mut self, id: u64, content: &str) -> bool {
        let skip = self.proc(id).lines.lock().unwrap().len();
        writeln!(self.proc(id).stdin, "{content}").unwrap();
        let (_, answer) = self.wait_line(id, skip, "proposal ");
        answer.starts_with("proposal committed")
    }

    /// Proposes `content` on whichever running node leads, trying each in
    /// turn until one commits it.
    fn commit(&mut self, content: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            for id in self.running() {
                if self.propose_on(id, content) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "nobody committed {content}");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node that committed the last proposal, by its output.
    fn leader(&mut self) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            for id in self.running() {
                if self.propose_on(id, &format!("probe-{id}")) {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `id` has applied a term with `content`.
    fn wait_applied(&mut self, id: u64, content: &str) {
        let suffix = format!(" content={content}");
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let lines = self.proc(id).lines.lock().unwrap();
                let applied = |l: &String| l.starts_with("applied ") && l.ends_with(&suffix);
                if lines.iter().any(applied) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node {id} never applied {content}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_cluster_of_processes_survives_losing_its_leader() {
    let mut procs = Procs::start(node_binary(), 3);

    let first = procs.leader();
    for i in 0..3 {
        procs.commit(&format!("before-{i}"));
    }
    for id in 1..=3 {
        procs.wait_applied(id, "before-2");
    }

    procs.kill(first);
    for i in 0..3 {
        procs.commit(&format!("after-{i}"));
    }
    let second = procs.leader();
    assert_ne!(second, first);
    for id in procs.running() {
        procs.wait_applied(id, "after-2");
    }

    // Restarted empty, the old leader receives every term again.
    procs.spawn(first);
    procs.commit("rejoined");
    for content in ["before-0", "before-2", "after-0", "after-2", "rejoined"] {
        procs.wait_applied(first, content);
    }
}
