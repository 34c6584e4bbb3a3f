//! Runs the deterministic simulator over many seeds (3, 5 and 7 voters,
//! sometimes with observers, by seed; membership changes in seeds from
//! `SimConfig::MEMBERSHIP_SEEDS` on) and checks that a run is a function
//! of its seed. `replay` runs the one seed in `HOOKRAFT_SIM_SEED` (and
//! `HOOKRAFT_SIM_STEPS` steps, when set) and prints its history.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hookraft::sim::{SimConfig, Simulation};
use hookraft::{Epoch, Hook, Index, NodeId, Payload, Status, Term};

/// Faulty steps per seed in the runs below.
const STEPS: u64 = 5000;

/// Runs `seeds` and fails with the first violation, which names its seed
/// and the command that replays it.
fn run_seeds(seeds: std::ops::Range<u64>) {
    let started = Instant::now();
    let (mut steps, mut joiners, mut changes, mut configs) = (0, 0, 0, 0);
    for seed in seeds.clone() {
        match Simulation::new(SimConfig::from_seed(seed).with_steps(STEPS)).run() {
            Ok(report) => {
                steps += report.steps;
                joiners += report.joiners;
                changes += report.changes_asked;
                configs += report.configurations;
            }
            Err(v) => panic!("{v}"),
        }
    }
    let took = started.elapsed();
    println!(
        "seeds {seeds:?}: {steps} steps in {took:.1?}; {joiners} nodes joined, {changes} changes \
         asked, {configs} configurations committed"
    );
    if seeds.start >= SimConfig::MEMBERSHIP_SEEDS {
        assert!(joiners > 0 && changes > 0, "membership seeds change no membership");
        assert!(configs > seeds.end - seeds.start, "no configuration beyond the initial ones");
    }
}

#[test]
fn seeds_0_to_299() {
    run_seeds(0..300);
}

#[test]
fn seeds_300_to_599() {
    run_seeds(300..600);
}

#[test]
fn seeds_600_to_899() {
    run_seeds(600..900);
}

#[test]
fn seeds_900_to_1199() {
    run_seeds(900..1200);
}

/// Seeds from `SimConfig::MEMBERSHIP_SEEDS` on also start nodes that join,
/// and ask leaders to remove, demote and promote members.
const M: u64 = SimConfig::MEMBERSHIP_SEEDS;

#[test]
fn membership_seeds_0_to_299() {
    run_seeds(M..M + 300);
}

#[test]
fn membership_seeds_300_to_599() {
    run_seeds(M + 300..M + 600);
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let run = |seed| {
        let mut sim = Simulation::new(SimConfig::from_seed(seed).with_history());
        let report = sim.run().expect("a correct core breaks nothing");
        (report, sim.history().to_vec())
    };
    let (a, b) = (run(17), run(17));
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1, "two runs of one seed differ");
    assert!(a.1.len() > 3000, "the history records every step");
    assert_ne!(run(18).1, a.1, "two seeds give the same history");
}

/// Runs the seed in `HOOKRAFT_SIM_SEED`, printing its history; passes
/// without doing anything when the variable is not set.
#[test]
fn replay() {
    let Some(seed) = env_u64("HOOKRAFT_SIM_SEED") else {
        return;
    };
    let mut cfg = SimConfig::from_seed(seed).with_history();
    if let Some(steps) = env_u64("HOOKRAFT_SIM_STEPS") {
        cfg = cfg.with_steps(steps);
    }
    let mut sim = Simulation::new(cfg);
    let result = sim.run();
    for line in sim.history() {
        println!("{line}");
    }
    match result {
        Ok(report) => println!("{report:?}"),
        Err(v) => panic!("{v}"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// Counts the hook calls of every node, and prepares content now and then.
#[derive(Default)]
struct Counting {
    calls: [AtomicU64; 10],
}

impl Counting {
    fn count(&self, k: usize) -> u64 {
        self.calls[k].fetch_add(1, Ordering::Relaxed)
    }
}

impl Hook for Counting {
    fn prepare_term(&self) -> Option<Payload> {
        let n = self.count(0);
        n.is_multiple_of(3).then(|| Payload::from(format!("prepared {n}").as_str()))
    }
    fn send_term(&self, _: &[Term]) -> bool {
        self.count(1);
        true
    }
    fn apply_term(&self, _: &Term) {
        self.count(2);
    }
    fn pre_append_term(&self, _: &Term) -> bool {
        self.count(3);
        true
    }
    fn append_term(&self, _: &Term) {
        self.count(4);
    }
    fn commit_term(&self, _: Index) {
        self.count(5);
    }
    fn request_vote(&self, _: NodeId, _: Epoch) -> bool {
        self.count(6);
        true
    }
    fn switch_status(&self, _: Status, _: Status, _: Epoch) {
        self.count(7);
    }
    fn leader_change(&self, _: Option<NodeId>, _: Epoch) {
        self.count(8);
    }
    fn lost_connection(&self, _: NodeId) {
        self.count(9);
    }
}

#[test]
fn hooks_are_called_and_prepared_content_commits() {
    // Over a few seeds every moment comes up; any one history may lack one
    // (a run without a silent follower never reports a lost connection).
    let hook = Arc::new(Counting::default());
    for seed in 4..8 {
        let shared = Arc::clone(&hook);
        let factory = Box::new(move |_| Box::new(Arc::clone(&shared)) as Box<dyn Hook>);
        let mut sim = Simulation::with_hooks(SimConfig::from_seed(seed), factory);
        let report = sim.run().expect("a correct core breaks nothing");
        assert!(report.commit_index > report.acknowledged, "{report:?}");
    }
    let calls: Vec<u64> = hook.calls.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert!(calls.iter().all(|c| *c > 0), "some hook was never called: {calls:?}");
}
