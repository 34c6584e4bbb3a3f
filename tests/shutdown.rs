//! Stopping nodes leaves no thread behind. Alone in its test binary so that
//! no other test's threads are counted.

mod common;

use std::time::Duration;

use common::{Cluster, WAIT};
use hookraft::{NodeId, Status};

/// Names of this process's threads that belong to the crate.
fn crate_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("hookraft"))
        .collect()
}

#[test]
fn shutdown_and_step_down_leave_no_thread_behind() {
    let mut cluster = Cluster::new(3);
    cluster.net.set_delay(Duration::from_micros(10), Duration::from_micros(200));
    let leader = cluster.wait_leader();
    cluster.propose(b"x").wait_timeout(WAIT).unwrap();
    assert_eq!(cluster.node(leader).leader_workers(), 1);

    // A leader that steps down ends its worker.
    cluster.net.isolate(NodeId(leader));
    cluster.node(leader).wait_for(WAIT, |s| s.status != Status::Leader).unwrap();
    let gone = cluster.node(leader).wait_for(WAIT, |_| cluster.node(leader).leader_workers() == 0);
    assert!(gone.is_some(), "a leader worker survived a step-down");
    cluster.net.heal();
    cluster.wait_leader();

    for id in 1..=3 {
        cluster.crash(id);
    }
    let Cluster { net, .. } = cluster;
    drop(net);
    assert_eq!(crate_threads(), Vec::<String>::new(), "threads left after shutdown");
}
