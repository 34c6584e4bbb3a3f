//! Unit tests of the simulator's parts, and mutation tests: each breaks one
//! rule (in the core, or in the store's durability) and shows that some seed
//! among the first few hundred reports a violation.
//!
//! The double-vote mutant skips the core's debug check that the vote never
//! changes within an epoch, so that the simulator's election-safety check is
//! what catches it; a panic of any other debug check would be caught too
//! and reported as [`Check::Panic`]. The replay command a violation prints
//! runs the seed without the mutation: rerun the mutation test instead.

use std::time::Duration;

use super::node::Clock;
use super::*;
use crate::core::Mutation;
use crate::store::LogStore;
use crate::types::{HardState, Term, TermKind};

/// Seeds a mutation test may try before it must have found the bug.
const MUTATION_SEEDS: u64 = 300;

/// Faulty steps per seed in mutation tests: long runs see more leaders.
const MUTATION_STEPS: u64 = 20_000;

/// The first seed whose run, with `m` in every node, breaks a safety
/// property. A run that only fails to recover (a liveness violation) does
/// not count: the tests want the broken rule caught as unsafe.
fn caught(m: SimMutation) -> Violation {
    caught_from(m, 0, false)
}

/// As [`caught`], over the seeds from `first` on, with the check of the
/// one-change-at-a-time rule left out when `skip_change_rule`.
fn caught_from(m: SimMutation, first: u64, skip_change_rule: bool) -> Violation {
    let found = (first..first + MUTATION_SEEDS).find_map(|seed| {
        let mut sim = Simulation::new(SimConfig::from_seed(seed).with_steps(MUTATION_STEPS));
        sim.skip_change_rule = skip_change_rule;
        sim.mutate(m);
        let v = sim.run().err()?;
        (v.check != Check::Liveness).then_some((seed, v))
    });
    let (seed, v) =
        found.unwrap_or_else(|| panic!("{m:?} went unnoticed for {MUTATION_SEEDS} seeds"));
    println!("{m:?} caught at seed {seed}: {v}");
    assert_eq!(v.seed, seed);
    assert!(v.to_string().contains(&format!("HOOKRAFT_SIM_SEED={seed} ")));
    v
}

#[test]
fn two_votes_in_one_epoch_are_caught() {
    let v = caught(SimMutation::Core(Mutation::DoubleVote));
    assert_eq!(v.check, Check::ElectionSafety, "{v}");
}

#[test]
fn committing_an_earlier_epoch_by_counting_is_caught() {
    caught(SimMutation::Core(Mutation::CommitEarlierEpoch));
}

#[test]
fn voting_for_a_stale_log_is_caught() {
    caught(SimMutation::Core(Mutation::SkipUpToDate));
}

#[test]
fn two_membership_changes_in_flight_are_caught() {
    let m = SimMutation::Core(Mutation::ConcurrentChanges);
    let v = caught_from(m, SimConfig::MEMBERSHIP_SEEDS, false);
    assert_eq!(v.check, Check::OneChangeAtATime, "{v}");
}

#[test]
fn two_membership_changes_in_flight_are_caught_by_their_effects() {
    // Without the check that restates the rule, the damage the broken
    // rule does (two leaders' quorums that miss each other) must show.
    let m = SimMutation::Core(Mutation::ConcurrentChanges);
    let v = caught_from(m, SimConfig::MEMBERSHIP_SEEDS, true);
    assert_ne!(v.check, Check::OneChangeAtATime, "{v}");
}

#[test]
fn acknowledging_before_durable_is_caught() {
    caught(SimMutation::AckBeforeDurable);
}

fn term(index: u64, epoch: u64) -> Term {
    Term { index, epoch, kind: TermKind::Empty }
}

#[test]
fn a_durable_store_keeps_everything_across_a_crash() {
    let mut s = SimStore::new();
    s.append(&[term(1, 0), term(2, 1)]).unwrap();
    s.crash();
    assert_eq!(s.last_index(), 2);
    assert!(!s.has_unsynced());
}

#[test]
fn a_volatile_store_loses_what_was_not_synced() {
    let mut s = SimStore::new().into_volatile();
    s.append(&[term(1, 0)]).unwrap();
    s.sync();
    s.append(&[term(2, 1)]).unwrap();
    let hard = HardState { epoch: 3, vote: None };
    s.save_hard_state(hard).unwrap();
    assert!(s.has_unsynced());
    s.crash();
    assert_eq!(s.last_index(), 1);
    assert_eq!(s.hard_state(), HardState::default());
}

#[test]
fn a_skewed_clock_reaches_each_local_time_at_the_earliest_virtual_time() {
    let clock = Clock { offset: Duration::from_millis(1234), ppm: -7_777 };
    for ms in [1234u64, 1300, 5000, 99_999] {
        let local = Duration::from_micros(ms * 1000 + 17);
        let t = clock.virtual_time(local);
        assert!(clock.local(t) >= local);
        assert!(clock.local(t - Duration::from_nanos(1)) < local);
    }
}

#[test]
fn a_run_is_a_function_of_its_seed() {
    let run = || {
        let mut sim = Simulation::new(SimConfig::from_seed(5).with_steps(800).with_history());
        (sim.run(), sim.history().to_vec())
    };
    assert_eq!(run(), run());
}
