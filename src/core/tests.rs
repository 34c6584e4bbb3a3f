//! Unit tests of the core: each drives cores by hand (deliver this message,
//! fire that timer) and checks what they answer. Tests cite the section of
//! the Raft paper whose rule they check.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use super::*;
use crate::message::{AppendReply, Body, JoinReply, Message};
use crate::store::MemStore;
use crate::types::{
    Configuration, HardState, Member, MembershipChange, Role, Status, TermKind, UpdateNode,
};

const MS: Duration = Duration::from_millis(1);

fn config(id: u64, voters: u64) -> Config {
    Config::new(id, Configuration::voters((1..=voters).map(|i| (i, format!("n{i}")))))
}

fn core_with(cfg: &Config, store: MemStore) -> Core<MemStore> {
    Core::new(cfg, store, cfg.id.0, Duration::ZERO).unwrap()
}

fn core(id: u64, voters: u64) -> Core<MemStore> {
    core_with(&config(id, voters), MemStore::new())
}

fn sends(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn msg(from: u64, to: u64, epoch: Epoch, body: Body) -> Message {
    Message { from: NodeId(from), to: NodeId(to), epoch, body }
}

fn content(s: &str) -> TermKind {
    TermKind::Content(s.into())
}

/// A store already holding terms of the given epochs (after the initial
/// configuration at index 1, epoch 0).
fn store_with(cfg: &Config, epochs: &[Epoch], hard_epoch: Epoch) -> MemStore {
    let mut s = MemStore::new();
    let mut terms = vec![Term { index: 1, epoch: 0, kind: TermKind::Config(cfg.initial.clone()) }];
    for (k, e) in epochs.iter().enumerate() {
        terms.push(Term { index: k as u64 + 2, epoch: *e, kind: content(&format!("t{k}")) });
    }
    s.append(&terms).unwrap();
    s.save_hard_state(HardState { epoch: hard_epoch, vote: None }).unwrap();
    s
}

/// Several cores and the messages between them, delivered by hand.
struct Cluster {
    nodes: Vec<Core<MemStore>>,
    now: Duration,
    queue: VecDeque<Message>,
    /// Directed links that lose everything: (from, to).
    cut: BTreeSet<(u64, u64)>,
    committed: Vec<Output>,
}

impl Cluster {
    fn new(voters: u64) -> Self {
        let nodes = (1..=voters).map(|i| core(i, voters)).collect();
        Cluster {
            nodes,
            now: Duration::ZERO,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            committed: vec![],
        }
    }

    fn from_stores(cfgs: Vec<(Config, MemStore)>) -> Self {
        let nodes = cfgs.iter().map(|(c, s)| core_with(c, s.clone())).collect();
        Cluster {
            nodes,
            now: Duration::ZERO,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            committed: vec![],
        }
    }

    fn node(&mut self, id: u64) -> &mut Core<MemStore> {
        &mut self.nodes[id as usize - 1]
    }

    fn take(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send(m) => self.queue.push_back(m),
                Output::Committed { .. } => self.committed.push(o),
                _ => {}
            }
        }
    }

    fn isolate(&mut self, id: u64) {
        for other in 1..=self.nodes.len() as u64 {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Delivers messages until none is left; returns how many were delivered.
    fn deliver_all(&mut self) -> usize {
        let mut n = 0;
        while let Some(m) = self.queue.pop_front() {
            let absent = m.to.0 == 0 || m.to.0 as usize > self.nodes.len();
            if absent || self.cut.contains(&(m.from.0, m.to.0)) {
                continue;
            }
            n += 1;
            let now = self.now;
            let out = self.node(m.to.0).step(m, now).unwrap();
            self.take(out);
        }
        n
    }

    /// Runs one round on `id` and delivers everything that follows,
    /// counting the messages that reach node `to`.
    fn round_counting(&mut self, id: u64, contents: &[&str], to: u64) -> usize {
        let kinds = contents.iter().map(|c| content(c)).collect();
        let draft = self.node(id).draft_round(kinds).expect("round on a leader");
        let now = self.now;
        let outcome = self.node(id).send_round(draft, true, now).unwrap();
        self.take(outcome.outputs);
        let mut n = 0;
        while let Some(m) = self.queue.pop_front() {
            n += usize::from(m.to.0 == to);
            let out = self.node(m.to.0).step(m, now).unwrap();
            self.take(out);
        }
        n
    }

    /// Fires node `id`'s election timer and delivers everything that follows.
    fn elect(&mut self, id: u64) {
        let deadline = self.node(id).next_deadline().expect("a voter has a deadline");
        self.now = self.now.max(deadline);
        let now = self.now;
        let out = self.node(id).tick(now).unwrap();
        self.take(out);
        self.deliver_all();
    }

    /// Runs one round on `id` with these contents, approved, and delivers.
    fn round(&mut self, id: u64, contents: &[&str]) -> RoundOutcome {
        let kinds = contents.iter().map(|c| content(c)).collect();
        let draft = self.node(id).draft_round(kinds).expect("round on a leader");
        let now = self.now;
        let outcome = self.node(id).send_round(draft, true, now).unwrap();
        self.take(outcome.outputs.clone());
        self.deliver_all();
        outcome
    }

    fn leaders(&self) -> Vec<u64> {
        self.nodes.iter().filter(|c| c.status() == Status::Leader).map(|c| c.id().0).collect()
    }

    fn log(&self, id: u64) -> Vec<(Index, Epoch)> {
        let c = &self.nodes[id as usize - 1];
        c.store().all_terms().iter().map(|t| (t.index, t.epoch)).collect()
    }
}

// ---- Construction and restarts ----

#[test]
fn a_new_store_starts_with_the_initial_configuration_as_term_one() {
    let c = core(1, 3);
    let terms = c.store().all_terms();
    assert_eq!(terms.len(), 1);
    assert_eq!((terms[0].index, terms[0].epoch), (1, 0));
    assert_eq!(terms[0].kind, TermKind::Config(config(1, 3).initial));
    assert_eq!(c.status(), Status::Follower);
    assert_eq!(c.membership().quorum(), 2);
}

#[test]
fn a_vote_survives_a_restart_of_the_core_from_its_store() {
    let mut c = core(2, 3);
    let req = msg(1, 2, 1, Body::VoteRequest { last_index: 1, last_epoch: 0 });
    let out = c.step(req, MS).unwrap();
    assert_eq!(sends(&out)[0].body, Body::VoteReply { granted: true });

    let mut restarted = core_with(&config(2, 3), c.into_store());
    assert_eq!((restarted.epoch(), restarted.vote()), (1, Some(NodeId(1))));
    let rival = msg(3, 2, 1, Body::VoteRequest { last_index: 1, last_epoch: 0 });
    let out = restarted.step(rival, MS).unwrap();
    assert_eq!(sends(&out)[0].body, Body::VoteReply { granted: false });
}

// ---- Elections (§5.2) ----

#[test]
fn election_timeouts_are_random_within_the_configured_bounds() {
    let cfg = config(1, 3);
    let mut seen = BTreeSet::new();
    for seed in 0..50 {
        let c = Core::new(&cfg, MemStore::new(), seed, Duration::ZERO).unwrap();
        let d = c.next_deadline().unwrap();
        assert!(d >= cfg.election_timeout_min && d < cfg.election_timeout_max, "{d:?}");
        seen.insert(d);
    }
    assert!(seen.len() > 10, "timeouts barely vary: {seen:?}");
}

#[test]
fn nothing_happens_before_the_election_deadline() {
    let mut c = core(1, 3);
    let d = c.next_deadline().unwrap();
    assert!(c.tick(d - MS).unwrap().is_empty());
    assert_eq!((c.status(), c.epoch()), (Status::Follower, 0));
}

#[test]
fn a_candidate_increments_the_epoch_votes_for_itself_and_asks_every_voter() {
    let mut c = core(1, 3);
    let d = c.next_deadline().unwrap();
    let out = c.tick(d).unwrap();
    assert_eq!((c.status(), c.epoch(), c.vote()), (Status::Candidate, 1, Some(NodeId(1))));
    assert_eq!(c.store().hard_state(), HardState { epoch: 1, vote: Some(NodeId(1)) });
    assert!(out.contains(&Output::StatusChanged {
        from: Status::Follower,
        to: Status::Candidate,
        epoch: 1
    }));
    let asked: Vec<_> = sends(&out).into_iter().map(|m| (m.to.0, m.epoch, m.body)).collect();
    let req = Body::VoteRequest { last_index: 1, last_epoch: 0 };
    assert_eq!(asked, vec![(2, 1, req.clone()), (3, 1, req)]);
    assert!(c.next_deadline().unwrap() > d, "a candidate restarts its timer");
}

#[test]
fn a_single_voter_becomes_leader_of_its_own_cluster_at_once() {
    let mut c = core(1, 1);
    let d = c.next_deadline().unwrap();
    let out = c.tick(d).unwrap();
    assert_eq!(c.status(), Status::Leader);
    // Its empty term of the new epoch commits by itself.
    assert!(out.contains(&Output::Committed { index: 2 }));
    assert_eq!(c.next_deadline(), None, "a leader has no election deadline");
}

#[test]
fn a_majority_of_voters_elects_the_candidate() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    assert_eq!(cl.leaders(), vec![1]);
    assert_eq!(cl.node(2).leader(), Some(NodeId(1)));
    assert_eq!(cl.node(3).leader(), Some(NodeId(1)));
}

#[test]
fn one_vote_per_epoch_first_come_first_served() {
    let mut c = core(3, 3);
    let first = msg(1, 3, 1, Body::VoteRequest { last_index: 1, last_epoch: 0 });
    let second = msg(2, 3, 1, Body::VoteRequest { last_index: 1, last_epoch: 0 });
    let again = first.clone();
    assert_eq!(sends(&c.step(first, MS).unwrap())[0].body, Body::VoteReply { granted: true });
    assert_eq!(sends(&c.step(second, MS).unwrap())[0].body, Body::VoteReply { granted: false });
    // The same candidate asking again (a lost answer) is granted again.
    assert_eq!(sends(&c.step(again, MS).unwrap())[0].body, Body::VoteReply { granted: true });
}

#[test]
fn a_vote_goes_only_to_a_candidate_whose_log_is_at_least_as_up_to_date() {
    // §5.4.1: compare the last epochs first, then the lengths.
    let cfg = config(3, 3);
    let cases = [
        ((3, 1), false), // shorter log of the same last epoch
        ((2, 1), false), // lower last epoch, though as long
        ((4, 1), true),  // same last epoch, as long
        ((2, 2), true),  // higher last epoch, though shorter
    ];
    for ((last_index, last_epoch), expected) in cases {
        let mut c = core_with(&cfg, store_with(&cfg, &[1, 1, 1], 1));
        let req = msg(1, 3, 2, Body::VoteRequest { last_index, last_epoch });
        let out = c.step(req, MS).unwrap();
        assert_eq!(
            sends(&out)[0].body,
            Body::VoteReply { granted: expected },
            "candidate last=({last_index},{last_epoch}) against voter last=(4,1)"
        );
    }
}

#[test]
fn a_candidate_with_a_stale_log_loses() {
    let fresh = config(1, 3);
    let stores = vec![
        (config(1, 3), store_with(&fresh, &[1], 1)),
        (config(2, 3), store_with(&fresh, &[1, 1], 1)),
        (config(3, 3), store_with(&fresh, &[1, 1], 1)),
    ];
    let mut cl = Cluster::from_stores(stores);
    cl.elect(1);
    assert!(cl.leaders().is_empty(), "node 1 has a stale log and must not win");
    cl.elect(2);
    assert_eq!(cl.leaders(), vec![2]);
}

#[test]
fn the_application_can_refuse_a_vote() {
    let mut c = core(2, 3);
    let req = msg(1, 2, 1, Body::VoteRequest { last_index: 1, last_epoch: 0 });
    let out = c.step_refusing_vote(req, MS).unwrap();
    assert_eq!(sends(&out)[0].body, Body::VoteReply { granted: false });
    assert_eq!((c.epoch(), c.vote()), (1, None), "the epoch is still adopted");
}

#[test]
fn a_split_vote_resolves_at_a_later_timeout() {
    let mut cl = Cluster::new(4);
    // 1 and 2 stand in the same epoch; 3 votes for 1 and 4 for 2: two votes
    // each, no majority of four.
    for id in [1, 2] {
        let d = cl.node(id).next_deadline().unwrap();
        cl.now = cl.now.max(d);
        let now = cl.now;
        cl.node(id).tick(now).unwrap();
    }
    let (e1, e2) = (cl.node(1).epoch(), cl.node(2).epoch());
    assert_eq!((e1, e2), (1, 1));
    let ask = |from, to| msg(from, to, 1, Body::VoteRequest { last_index: 1, last_epoch: 0 });
    for (from, to) in [(1, 3), (2, 4), (1, 4), (2, 3)] {
        let now = cl.now;
        let out = cl.node(to).step(ask(from, to), now).unwrap();
        cl.take(out);
    }
    cl.deliver_all();
    assert!(cl.leaders().is_empty(), "no candidate has a majority of four");
    assert_eq!(cl.node(1).status(), Status::Candidate);

    // The next timeout of either candidate starts epoch 2, which it wins.
    cl.elect(2);
    assert_eq!(cl.leaders(), vec![2]);
    assert_eq!(cl.node(2).epoch(), 2);
}

#[test]
fn a_leader_that_a_quorum_follows_ignores_a_disruptive_vote_request() {
    // Dissertation §4.2.3: within the shortest election timeout of hearing
    // from a quorum, a leader neither adopts the higher epoch nor answers.
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let now = cl.now;
    let req = msg(3, 1, 5, Body::VoteRequest { last_index: 9, last_epoch: 9 });
    let out = cl.node(1).step(req, now).unwrap();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!((cl.node(1).status(), cl.node(1).epoch()), (Status::Leader, 1));
}

#[test]
fn a_follower_that_hears_its_leader_ignores_a_disruptive_vote_request() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let now = cl.now;
    let req = msg(3, 2, 5, Body::VoteRequest { last_index: 9, last_epoch: 9 });
    assert!(cl.node(2).step(req.clone(), now).unwrap().is_empty());
    assert_eq!((cl.node(2).epoch(), cl.node(2).vote()), (1, Some(NodeId(1))));
    // Once the leader has been silent for the shortest election timeout,
    // the same request is a real election.
    let later = now + config(2, 3).election_timeout_min;
    let out = cl.node(2).step(req, later).unwrap();
    assert_eq!(sends(&out)[0].body, Body::VoteReply { granted: true });
    assert_eq!(cl.node(2).epoch(), 5);
}

#[test]
fn a_higher_epoch_turns_a_leader_into_a_follower() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    // Past the leader's lease: no answer for the shortest election timeout.
    let now = cl.now + config(1, 3).election_timeout_min;
    let req = msg(3, 1, 5, Body::VoteRequest { last_index: 0, last_epoch: 0 });
    let out = cl.node(1).step(req, now).unwrap();
    assert!(out.contains(&Output::StatusChanged {
        from: Status::Leader,
        to: Status::Follower,
        epoch: 5
    }));
    assert_eq!((cl.node(1).epoch(), cl.node(1).leader()), (5, None));
    assert!(cl.node(1).progress().is_empty());
}

#[test]
fn a_higher_epoch_in_an_answer_also_deposes_the_leader() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let now = cl.now;
    let reply = msg(2, 1, 4, Body::AppendReply(AppendReply::Stored { match_index: 0 }));
    cl.node(1).step(reply, now).unwrap();
    assert_eq!((cl.node(1).status(), cl.node(1).epoch()), (Status::Follower, 4));
}

#[test]
fn a_stale_epoch_message_is_answered_with_the_current_epoch_and_changes_nothing() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.elect(2); // epoch 2, node 2 leads
    assert_eq!(cl.leaders(), vec![2]);
    let before = (cl.node(3).epoch(), cl.node(3).leader(), cl.log(3), cl.node(3).vote());

    let now = cl.now;
    let stale_terms = vec![Term { index: 4, epoch: 1, kind: content("old") }];
    let stale = Body::AppendTerms { prev_index: 3, prev_epoch: 1, commit: 9, terms: stale_terms };
    let out = cl.node(3).step(msg(1, 3, 1, stale), now).unwrap();
    let answer = sends(&out);
    assert_eq!(answer.len(), 1);
    assert_eq!((answer[0].to, answer[0].epoch), (NodeId(1), 2));
    assert!(matches!(answer[0].body, Body::AppendReply(AppendReply::Mismatch { .. })));

    let vote = msg(1, 3, 1, Body::VoteRequest { last_index: 99, last_epoch: 1 });
    let out = cl.node(3).step(vote, now).unwrap();
    assert_eq!(sends(&out)[0].body, Body::VoteReply { granted: false });
    assert_eq!(sends(&out)[0].epoch, 2);

    let after = (cl.node(3).epoch(), cl.node(3).leader(), cl.log(3), cl.node(3).vote());
    assert_eq!(before, after);
}

// ---- Observers and pending nodes ----

#[test]
fn an_observer_never_stands_nor_is_asked_to_vote_and_counts_in_no_quorum() {
    let initial = Configuration::voters([(1, "a"), (2, "b")]).with(3, "c", Role::Observer);
    let mut obs = core_with(&Config::new(3, initial.clone()), MemStore::new());
    assert_eq!(obs.status(), Status::Follower);
    assert_eq!(obs.next_deadline(), None);
    assert!(obs.tick(Duration::from_secs(3600)).unwrap().is_empty());
    assert_eq!((obs.status(), obs.epoch()), (Status::Follower, 0));
    // Asked anyway (by a candidate whose log has promoted it), it answers
    // as any node would: its own log may lack the promotion.
    let req = msg(1, 3, 1, Body::VoteRequest { last_index: 9, last_epoch: 9 });
    assert_eq!(sends(&obs.step(req, MS).unwrap())[0].body, Body::VoteReply { granted: true });

    assert_eq!(initial.quorum(), 2, "two voters: a quorum is both");
    let voter = core_with(&Config::new(1, initial), MemStore::new());
    let d = voter.next_deadline().unwrap();
    let mut voter = voter;
    let out = voter.tick(d).unwrap();
    let asked: Vec<u64> = sends(&out).iter().map(|m| m.to.0).collect();
    assert_eq!(asked, vec![2], "the observer is not asked for a vote");
}

#[test]
fn a_voter_whose_promotion_never_reached_it_still_votes_for_the_leader_that_promoted_it() {
    // Found by the simulator: a lone voter promoted an observer and lost
    // leadership before the promotion reached it. Its own log counts two
    // voters, the observer's log one, and the observer refused to vote
    // because its log did not count it: no leader could ever be elected.
    let initial = Configuration::voters([(1, "a")]).with(2, "b", Role::Observer);
    let cfgs = (1..=2).map(|i| (Config::new(i, initial.clone()), MemStore::new())).collect();
    let mut cl = Cluster::from_stores(cfgs);
    cl.elect(1);
    cl.round(1, &[]);
    cl.isolate(2);
    change(&mut cl, 1, Configuration::voters([(1, "a"), (2, "b")]));
    assert!(!cl.node(2).membership().is_voter(NodeId(2)));

    let store = cl.nodes.remove(0).into_store();
    cl.nodes.insert(0, core_with(&Config::new(1, initial), store));
    cl.heal();
    cl.now += Duration::from_secs(1);
    cl.elect(1);
    assert_eq!(cl.leaders(), vec![1], "the vote of node 2 is needed, and must be given");
}

#[test]
fn an_observer_receives_every_term() {
    let initial = Configuration::voters([(1, "a"), (2, "b")]).with(3, "c", Role::Observer);
    let cfgs = (1..=3).map(|i| (Config::new(i, initial.clone()), MemStore::new())).collect();
    let mut cl = Cluster::from_stores(cfgs);
    cl.elect(1);
    cl.round(1, &["x", "y"]);
    cl.round(1, &[]);
    assert_eq!(cl.log(3), cl.log(1));
    assert_eq!(cl.node(3).commit_index(), cl.node(1).commit_index());
}

#[test]
fn a_node_absent_from_the_configuration_is_pending_until_a_configuration_names_it() {
    let initial = Configuration::voters([(1, "a")]);
    let mut c = core_with(&Config::new(4, initial.clone()), MemStore::new());
    assert_eq!(c.status(), Status::Pending);
    assert_eq!(c.next_deadline(), None);

    let joined = initial.with(4, "d", Role::Voter);
    let terms = vec![Term { index: 2, epoch: 1, kind: TermKind::Config(joined) }];
    let append = Body::AppendTerms { prev_index: 1, prev_epoch: 0, commit: 1, terms };
    let out = c.step(msg(1, 4, 1, append), MS).unwrap();
    assert!(out.contains(&Output::StatusChanged {
        from: Status::Pending,
        to: Status::Follower,
        epoch: 1
    }));
    assert!(c.next_deadline().is_some());
}

// ---- Replication (§5.3) ----

#[test]
fn proposed_terms_reach_every_follower_and_commit_on_a_majority() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let out = cl.round(1, &["a", "b", "c"]);
    assert!(out.appended);
    assert_eq!(cl.node(1).commit_index(), 5);
    assert_eq!(cl.log(2), cl.log(1));
    // Followers learn the commit index with the next round.
    cl.round(1, &[]);
    assert_eq!(cl.node(2).commit_index(), 5);
    assert_eq!(cl.node(3).commit_index(), 5);
}

#[test]
fn a_term_commits_with_one_follower_down_in_a_three_node_cluster() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.isolate(3);
    cl.round(1, &["a"]);
    assert_eq!(cl.node(1).commit_index(), 3);
    assert_eq!(cl.node(3).last_index(), 2);
}

#[test]
fn a_term_does_not_commit_without_a_majority() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.isolate(1);
    cl.round(1, &["a"]);
    assert_eq!(cl.node(1).commit_index(), 2, "only the empty term of epoch 1 committed");
}

#[test]
fn a_follower_commit_index_never_passes_what_it_verified() {
    let mut c = core(2, 3);
    let terms = vec![Term { index: 2, epoch: 1, kind: content("a") }];
    let append = Body::AppendTerms { prev_index: 1, prev_epoch: 0, commit: 50, terms };
    let out = c.step(msg(1, 2, 1, append), MS).unwrap();
    assert_eq!(c.commit_index(), 2);
    assert!(out.contains(&Output::Committed { index: 2 }));
    assert_eq!(sends(&out)[0].body, Body::AppendReply(AppendReply::Stored { match_index: 2 }));
}

#[test]
fn a_follower_refuses_terms_that_do_not_follow_a_matching_term() {
    let cfg = config(2, 3);
    let mut c = core_with(&cfg, store_with(&cfg, &[1, 1, 2], 2));
    // Its term 4 has epoch 2; the leader says epoch 3 there.
    let append = Body::AppendTerms { prev_index: 4, prev_epoch: 3, commit: 0, terms: vec![] };
    let out = c.step(msg(1, 2, 3, append), MS).unwrap();
    let reply = AppendReply::Mismatch { prev_index: 4, last_index: 4, conflict: Some((2, 4)) };
    assert_eq!(sends(&out)[0].body, Body::AppendReply(reply));
    // A leader that is ahead of it.
    let append = Body::AppendTerms { prev_index: 9, prev_epoch: 3, commit: 0, terms: vec![] };
    let out = c.step(msg(1, 2, 3, append), MS).unwrap();
    let reply = AppendReply::Mismatch { prev_index: 9, last_index: 4, conflict: None };
    assert_eq!(sends(&out)[0].body, Body::AppendReply(reply));
    assert_eq!(c.last_index(), 4, "nothing changed in the log");
}

#[test]
fn a_follower_truncates_a_conflicting_suffix_and_appends() {
    let cfg = config(2, 3);
    let mut c = core_with(&cfg, store_with(&cfg, &[1, 1, 1, 1], 1));
    let terms = vec![
        Term { index: 3, epoch: 1, kind: content("t1") },
        Term { index: 4, epoch: 2, kind: content("new") },
    ];
    let append = Body::AppendTerms { prev_index: 2, prev_epoch: 1, commit: 0, terms };
    let out = c.step(msg(1, 2, 2, append), MS).unwrap();
    assert!(out.contains(&Output::Truncated { from: 4 }));
    let log: Vec<_> = c.store().all_terms().iter().map(|t| (t.index, t.epoch)).collect();
    assert_eq!(log, vec![(1, 0), (2, 1), (3, 1), (4, 2)]);
    assert_eq!(sends(&out)[0].body, Body::AppendReply(AppendReply::Stored { match_index: 4 }));
}

#[test]
fn a_duplicate_or_reordered_append_never_truncates_matching_terms() {
    let mut c = core(2, 3);
    let t = |i| Term { index: i, epoch: 1, kind: content("x") };
    let long =
        Body::AppendTerms { prev_index: 1, prev_epoch: 0, commit: 0, terms: vec![t(2), t(3)] };
    let short = Body::AppendTerms { prev_index: 1, prev_epoch: 0, commit: 0, terms: vec![t(2)] };
    c.step(msg(1, 2, 1, long), MS).unwrap();
    let out = c.step(msg(1, 2, 1, short), MS).unwrap();
    assert_eq!(c.last_index(), 3, "an older, shorter request must not cut the log");
    assert!(!out.iter().any(|o| matches!(o, Output::Truncated { .. })));
}

#[test]
fn the_leader_skips_back_a_whole_epoch_on_each_mismatch() {
    let cfg = config(1, 2);
    // The leader's log: epochs 1 1 4 4 4; the follower: 1 1 2 2 2 3 3 3 3.
    let leader_store = store_with(&cfg, &[1, 1, 4, 4, 4], 4);
    let follower_store = store_with(&config(2, 2), &[1, 1, 2, 2, 2, 3, 3, 3, 3], 3);
    let mut cl = Cluster::from_stores(vec![(cfg, leader_store), (config(2, 2), follower_store)]);
    // Node 2 votes for 1: its last epoch (3) is below 1's (4).
    cl.elect(1);
    assert_eq!(cl.leaders(), vec![1]);
    let sent = cl.round_counting(1, &["z"], 2);
    assert_eq!(cl.log(2), cl.log(1));
    // The probe, one request per skipped epoch (3, then 2), and the one that
    // lands; stepping back one index at a time would need seven more.
    assert!(sent <= 4, "{sent} requests to converge");
}

#[test]
fn a_follower_far_behind_with_conflicting_terms_converges_in_a_few_round_trips() {
    let cfg = config(1, 3);
    let mut leader_epochs = vec![1; 50];
    leader_epochs.extend(vec![3; 200]);
    let mut stale_epochs = vec![1; 50];
    stale_epochs.extend(vec![2; 400]);
    let stores = vec![
        (cfg.clone(), store_with(&cfg, &leader_epochs, 3)),
        (config(2, 3), store_with(&cfg, &stale_epochs, 2)),
        (config(3, 3), store_with(&cfg, &leader_epochs, 3)),
    ];
    let mut cl = Cluster::from_stores(stores);
    cl.elect(1);
    assert_eq!(cl.leaders(), vec![1]);
    let mut messages_to_2 = 0;
    for _ in 0..10 {
        messages_to_2 += cl.round_counting(1, &["p"], 2);
    }
    assert_eq!(cl.log(2), cl.log(1));
    assert!(messages_to_2 < 40, "converged only after {messages_to_2} messages");
}

#[test]
fn a_heartbeat_round_resends_what_a_follower_has_not_acknowledged() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.cut.insert((1, 3));
    cl.round(1, &["lost"]);
    assert_eq!(cl.node(3).last_index(), 2);
    cl.heal();
    cl.round(1, &[]);
    assert_eq!(cl.log(3), cl.log(1));
}

#[test]
fn terms_of_earlier_epochs_are_never_committed_by_counting() {
    // Figure 8 of the paper: S1 leads epoch 2 and stores term 3 (epoch 2) on
    // S2 only. S5 leads epoch 3 with a term of its own at index 3, then
    // crashes. S1 leads again in epoch 4 and copies its term 3 (epoch 2) to
    // S3: a majority holds it, yet it must not commit, because S5 could still
    // be elected and overwrite it. It commits only with a term of epoch 4.
    let base = config(1, 5);
    let mut s1 = core_with(&config(1, 5), store_with(&base, &[1, 2], 3));
    let t = s1.next_deadline().unwrap();
    s1.tick(t).unwrap(); // candidate in epoch 4
    for v in [2, 3] {
        let reply = msg(v, 1, 4, Body::VoteReply { granted: true });
        s1.step(reply, t).unwrap();
    }
    assert_eq!(s1.status(), Status::Leader);
    // S2 and S3 report index 3 stored, not the empty term at index 4.
    for v in [2, 3] {
        let stored = msg(v, 1, 4, Body::AppendReply(AppendReply::Stored { match_index: 3 }));
        let out = s1.step(stored, t).unwrap();
        assert!(!out.iter().any(|o| matches!(o, Output::Committed { .. })), "{out:?}");
    }
    assert_eq!(s1.commit_index(), 0, "a term of epoch 2 was committed by counting in epoch 4");
    // Once a majority stores the term of epoch 4, both commit.
    for v in [2, 3] {
        let stored = msg(v, 1, 4, Body::AppendReply(AppendReply::Stored { match_index: 4 }));
        s1.step(stored, t).unwrap();
    }
    assert_eq!(s1.commit_index(), 4);
}

#[test]
fn committed_terms_are_handed_out_once_in_order() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.round(1, &["a", "b"]);
    let c = cl.node(1);
    let first = c.take_committed(2).unwrap();
    let second = c.take_committed(100).unwrap();
    let indexes: Vec<Index> = first.iter().chain(&second).map(|t| t.index).collect();
    assert_eq!(indexes, vec![1, 2, 3, 4]);
    assert!(c.take_committed(100).unwrap().is_empty());
    assert_eq!(c.applied_index(), 4);
}

#[test]
fn a_configuration_term_changes_the_quorum_as_soon_as_it_is_in_the_log() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let mut bigger = cl.node(1).membership().clone();
    for i in [4, 5] {
        bigger.members.insert(NodeId(i), Member { address: format!("n{i}"), role: Role::Voter });
    }
    let draft = cl.node(1).draft_round(vec![TermKind::Config(bigger)]).unwrap();
    let now = cl.now;
    let outcome = cl.node(1).send_round(draft, true, now).unwrap();
    assert_eq!(cl.node(1).membership().quorum(), 3);
    assert!(cl.node(1).progress().contains_key(&NodeId(5)), "new members get progress");
    // Nodes 4 and 5 do not exist here: with 1, 2, 3 storing it the term has
    // three of five, a majority, and commits.
    cl.take(outcome.outputs);
    cl.deliver_all();
    assert_eq!(cl.node(1).commit_index(), 3);
}

// ---- The leader round ----

#[test]
fn choose_work_takes_what_there_is_and_picks_at_random_when_both_pools_hold_work() {
    let mut cl = Cluster::new(1);
    let c = cl.node(1);
    assert_eq!(c.choose_work(false, false), Work::Nothing);
    assert_eq!(c.choose_work(true, false), Work::UpdateNode);
    assert_eq!(c.choose_work(false, true), Work::Terms);
    let picks: BTreeSet<_> = (0..64).map(|_| format!("{:?}", c.choose_work(true, true))).collect();
    assert_eq!(picks.len(), 2, "both pools must be chosen at times: {picks:?}");
}

#[test]
fn a_refused_round_sends_nothing_and_appends_nothing() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let last = cl.node(1).last_index();
    let draft = cl.node(1).draft_round(vec![content("x")]).unwrap();
    let now = cl.now;
    let outcome = cl.node(1).send_round(draft, false, now).unwrap();
    assert_eq!(outcome, RoundOutcome::default());
    assert_eq!(cl.node(1).last_index(), last);
}

#[test]
fn a_draft_built_before_a_change_of_leadership_is_dropped() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let draft = cl.node(1).draft_round(vec![content("x")]).unwrap();
    cl.elect(2);
    let now = cl.now;
    let outcome = cl.node(1).send_round(draft, true, now).unwrap();
    assert!(!outcome.appended);
    assert!(outcome.outputs.is_empty());
}

#[test]
fn an_empty_round_is_a_heartbeat_that_carries_the_commit_index() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.round(1, &["a"]);
    let draft = cl.node(1).draft_round(vec![]).unwrap();
    let now = cl.now;
    let outcome = cl.node(1).send_round(draft, true, now).unwrap();
    let msgs = sends(&outcome.outputs);
    assert_eq!(msgs.len(), 2);
    for m in msgs {
        assert!(
            matches!(m.body, Body::AppendTerms { commit: 3, ref terms, .. } if terms.is_empty()),
            "{m:?}"
        );
    }
}

#[test]
fn a_round_sends_to_followers_in_shuffled_order() {
    let mut orders = BTreeSet::new();
    for seed in 0..20 {
        let cfg = config(1, 5);
        let mut c = Core::new(&cfg, MemStore::new(), seed, Duration::ZERO).unwrap();
        let d = c.next_deadline().unwrap();
        c.tick(d).unwrap();
        for v in [2, 3] {
            c.step(msg(v, 1, 1, Body::VoteReply { granted: true }), d).unwrap();
        }
        let draft = c.draft_round(vec![]).unwrap();
        let outcome = c.send_round(draft, true, d).unwrap();
        let order: Vec<u64> = sends(&outcome.outputs).iter().map(|m| m.to.0).collect();
        assert_eq!(order.len(), 4);
        orders.insert(order);
    }
    assert!(orders.len() > 3, "send orders do not vary: {orders:?}");
}

fn leader_after_silence(voters: u64, silent: &[u64]) -> (Core<MemStore>, Vec<Output>) {
    let mut cl = Cluster::new(voters);
    cl.elect(1);
    for id in silent {
        cl.isolate(*id);
    }
    // Past the response timeout, with the others still answering.
    let step = Duration::from_millis(100);
    let mut last = Vec::new();
    for _ in 0..5 {
        cl.now += step;
        if cl.node(1).status() == Status::Leader {
            last = cl.round(1, &[]).outputs;
        }
    }
    let leader = std::mem::replace(&mut cl.nodes[0], core(1, voters));
    (leader, last)
}

#[test]
fn a_three_node_leader_keeps_leading_with_one_follower_down() {
    let (leader, _) = leader_after_silence(3, &[3]);
    assert_eq!(leader.status(), Status::Leader);
    assert!(leader.progress()[&NodeId(3)].lost);
}

#[test]
fn a_leader_cut_off_from_half_of_its_voters_steps_down() {
    let (leader, out) = leader_after_silence(4, &[3, 4]);
    assert_eq!(leader.status(), Status::Follower);
    assert_eq!(leader.leader(), None);
    assert!(leader.counters().negatives >= 2);
    assert!(out.iter().any(|o| matches!(o, Output::StatusChanged { to: Status::Follower, .. })));
    let (leader, out) = leader_after_silence(5, &[2, 3, 4]);
    assert_eq!(leader.status(), Status::Follower);
    assert!(out.iter().any(|o| matches!(o, Output::StatusChanged { to: Status::Follower, .. })));
}

#[test]
fn a_silent_follower_is_reported_lost_once() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.isolate(3);
    let mut reports = 0;
    for _ in 0..6 {
        cl.now += Duration::from_millis(100);
        let out = cl.round(1, &[]).outputs;
        reports += out.iter().filter(|o| **o == Output::LostConnection { peer: NodeId(3) }).count();
    }
    assert_eq!(reports, 1);
    cl.heal();
    cl.round(1, &[]);
    assert!(!cl.node(1).progress()[&NodeId(3)].lost, "an answer clears the mark");
}

// ---- Bad input ----

#[test]
fn malformed_messages_are_refused_and_change_nothing() {
    let mut c = core(2, 3);
    let t = |i, e| Term { index: i, epoch: e, kind: content("x") };
    let bad = [
        msg(1, 9, 1, Body::VoteReply { granted: true }),
        msg(2, 2, 1, Body::VoteReply { granted: true }),
        msg(
            1,
            2,
            1,
            Body::AppendTerms { prev_index: 1, prev_epoch: 0, commit: 0, terms: vec![t(3, 1)] },
        ),
        msg(
            1,
            2,
            1,
            Body::AppendTerms { prev_index: 1, prev_epoch: 0, commit: 0, terms: vec![t(2, 5)] },
        ),
        msg(1, 2, 1, Body::AppendTerms { prev_index: 1, prev_epoch: 3, commit: 0, terms: vec![] }),
        msg(
            1,
            2,
            2,
            Body::AppendTerms {
                prev_index: u64::MAX,
                prev_epoch: 0,
                commit: 0,
                terms: vec![t(0, 1)],
            },
        ),
    ];
    for m in bad {
        let err = c.step(m.clone(), MS).unwrap_err();
        assert!(matches!(err, CoreError::Malformed { .. }), "{m:?}");
        assert_eq!((c.epoch(), c.last_index(), c.leader()), (0, 1, None));
    }
}

#[test]
fn a_leader_refuses_to_replace_a_committed_term() {
    let mut c = core(2, 3);
    let t = |i, e, s| Term { index: i, epoch: e, kind: content(s) };
    let ok =
        Body::AppendTerms { prev_index: 1, prev_epoch: 0, commit: 2, terms: vec![t(2, 1, "a")] };
    c.step(msg(1, 2, 1, ok), MS).unwrap();
    assert_eq!(c.commit_index(), 2);
    let evil =
        Body::AppendTerms { prev_index: 1, prev_epoch: 0, commit: 2, terms: vec![t(2, 2, "b")] };
    let err = c.step(msg(3, 2, 2, evil), MS).unwrap_err();
    assert!(matches!(err, CoreError::Malformed { .. }));
    assert_eq!(c.store().all_terms()[1].epoch, 1);
}

#[test]
fn two_leaders_in_one_epoch_is_refused() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let hb = Body::AppendTerms { prev_index: 2, prev_epoch: 1, commit: 0, terms: vec![] };
    let now = cl.now;
    let err = cl.node(1).step(msg(2, 1, 1, hb), now).unwrap_err();
    assert!(matches!(err, CoreError::Malformed { .. }));
    assert_eq!(cl.leaders(), vec![1]);
}

// ---- Membership (dissertation §4.1) ----

fn update(id: u64, role: Role) -> MembershipChange {
    MembershipChange::Update(UpdateNode { id: NodeId(id), address: format!("n{id}"), role })
}

/// Runs a round carrying `config` on `id` and delivers everything.
fn change(cl: &mut Cluster, id: u64, config: Configuration) {
    let draft = cl.node(id).draft_round(vec![TermKind::Config(config)]).unwrap();
    let now = cl.now;
    let outcome = cl.node(id).send_round(draft, true, now).unwrap();
    assert!(outcome.appended);
    cl.take(outcome.outputs);
    cl.deliver_all();
}

#[test]
fn a_new_leader_starts_no_change_before_it_commits_a_term_of_its_own_epoch() {
    // The case the dissertation's errata warn about: a leader elected just
    // after a change must not start another until its own epoch has a
    // committed term, or it could overrule a change it never saw commit.
    let mut c = core(1, 3);
    let d = c.next_deadline().unwrap();
    c.tick(d).unwrap();
    c.step(msg(2, 1, 1, Body::VoteReply { granted: true }), d).unwrap();
    assert_eq!(c.status(), Status::Leader);
    assert!(!c.can_change_membership(), "its empty term is not committed yet");
    let stored = Body::AppendReply(AppendReply::Stored { match_index: 2 });
    c.step(msg(2, 1, 1, stored), d).unwrap();
    assert_eq!(c.commit_index(), 2);
    assert!(c.can_change_membership());
}

#[test]
fn a_second_change_waits_until_the_first_commits() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.isolate(2);
    cl.isolate(3);
    let config = cl.node(1).membership_change(&update(4, Role::Observer)).unwrap();
    change(&mut cl, 1, config);
    assert!(!cl.node(1).can_change_membership(), "the first change is not committed");
    cl.heal();
    cl.round(1, &[]);
    assert!(cl.node(1).can_change_membership());
}

#[test]
fn a_joining_voter_enters_as_an_observer_and_is_promoted_once_caught_up() {
    let mut cl = Cluster::new(3);
    cl.nodes
        .push(core_with(&Config::join(4, "n4", Role::Voter, [(1, "n1".into())]), MemStore::new()));
    cl.elect(1);
    for _ in 0..3 {
        cl.round(1, &["a", "b"]);
    }
    let config = cl.node(1).membership_change(&update(4, Role::Voter)).unwrap();
    assert_eq!(config.members[&NodeId(4)].role, Role::Observer);
    assert!(cl.node(1).ready_promotion().is_none(), "not caught up, no change may start");
    change(&mut cl, 1, config);
    assert_eq!(cl.node(4).status(), Status::Follower);
    assert!(!cl.node(4).membership().is_voter(NodeId(4)));
    cl.round(1, &[]);

    let promoted = cl.node(1).ready_promotion().expect("caught up and committed");
    assert!(promoted.is_voter(NodeId(4)));
    change(&mut cl, 1, promoted);
    assert!(cl.node(4).membership().is_voter(NodeId(4)));
    assert!(cl.node(4).next_deadline().is_some(), "a voter stands when its leader is silent");
    assert_eq!(cl.node(1).membership().quorum(), 3);
}

#[test]
fn a_removed_leader_steps_down_once_the_removal_commits() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let config = cl.node(1).membership_change(&MembershipChange::Remove(NodeId(1))).unwrap();
    change(&mut cl, 1, config);
    assert_eq!(cl.node(1).status(), Status::Pending);
    assert_eq!(cl.node(1).next_deadline(), None, "a removed node never stands again");
    cl.elect(2);
    assert_eq!(cl.leaders(), vec![2]);
}

#[test]
fn a_removed_follower_learns_of_its_removal_and_stops_standing() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let config = cl.node(1).membership_change(&MembershipChange::Remove(NodeId(3))).unwrap();
    change(&mut cl, 1, config);
    assert_eq!(cl.node(3).status(), Status::Pending);
    assert_eq!(cl.node(3).next_deadline(), None);
    assert!(!cl.node(1).progress().contains_key(&NodeId(3)), "dropped once committed");
}

#[test]
fn a_leader_that_removed_itself_stands_again_until_it_knows_the_removal_committed() {
    // Found by the simulator: a leader removed itself, crashed before the
    // removal reached the other voter, and restarted. Only its log held
    // the removal, so the other voter could never win its vote; and the
    // removed node, absent from its own configuration, never stood. No
    // leader could ever be elected.
    let mut cl = Cluster::new(2);
    cl.elect(1);
    cl.round(1, &[]);
    cl.isolate(2);
    let removal = cl.node(1).membership_change(&MembershipChange::Remove(NodeId(1))).unwrap();
    change(&mut cl, 1, removal);

    let store = cl.nodes.remove(0).into_store();
    cl.nodes.insert(0, core_with(&config(1, 2), store));
    assert_eq!(cl.node(1).status(), Status::Pending);
    cl.heal();
    cl.now += Duration::from_secs(1);
    cl.elect(1);
    // It led a configuration without itself just long enough to commit
    // the removal with the other voter, then stepped down for good.
    assert_eq!(cl.node(1).counters().terms_as_leader, 1);
    assert!(cl.node(1).commit_index() >= 3, "the removal committed");
    assert_eq!(cl.node(1).status(), Status::Pending);
    assert_eq!(cl.node(1).next_deadline(), None, "it knows: it never stands again");
    cl.now += Duration::from_secs(1);
    cl.elect(2);
    assert_eq!(cl.leaders(), vec![2]);
}

#[test]
fn the_last_voter_cannot_be_removed() {
    let mut cl = Cluster::new(1);
    cl.elect(1);
    assert_eq!(cl.node(1).membership_change(&MembershipChange::Remove(NodeId(1))), None);
}

#[test]
fn a_node_outside_the_configuration_asks_the_known_nodes_in_turn() {
    let known = [(1, "n1".to_string()), (2, "n2".to_string())];
    let mut c = core_with(&Config::join(9, "n9", Role::Observer, known), MemStore::new());
    assert_eq!((c.status(), c.last_index()), (Status::Pending, 0));
    let mut asked = Vec::new();
    for _ in 0..3 {
        let d = c.next_deadline().expect("a joining node keeps asking");
        for m in sends(&c.tick(d).unwrap()) {
            assert_eq!(m.body, Body::JoinRequest { address: "n9".into(), role: Role::Observer });
            asked.push(m.to.0);
        }
    }
    assert_eq!(asked, vec![1, 2, 1]);

    let refused = Body::JoinReply(JoinReply::Refused { reason: "full".into() });
    let out = c.step(msg(1, 9, 3, refused), MS).unwrap();
    assert!(out.contains(&Output::JoinRefused { reason: "full".into() }));
    assert_eq!(c.next_deadline(), None, "a refused node stops asking");
}

#[test]
fn a_member_that_does_not_lead_names_the_leader_to_a_joining_node() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let now = cl.now;
    let req = Body::JoinRequest { address: "n9".into(), role: Role::Voter };
    let out = cl.node(2).step(msg(9, 2, 0, req.clone()), now).unwrap();
    let leader = Some((NodeId(1), "n1".to_string()));
    assert_eq!(sends(&out)[0].body, Body::JoinReply(JoinReply::Redirect { leader }));
    // The leader hands the request to the application.
    let out = cl.node(1).step(msg(9, 1, 0, req), now).unwrap();
    let request = UpdateNode { id: NodeId(9), address: "n9".into(), role: Role::Voter };
    assert_eq!(out, vec![Output::JoinRequested(request)]);
}

#[test]
fn a_lone_voter_with_nothing_to_join_founds_a_cluster_of_one() {
    let cfg = Config::join(5, "n5", Role::Voter, []);
    cfg.validate().unwrap();
    let mut c = core_with(&cfg, MemStore::new());
    let d = c.next_deadline().unwrap();
    c.tick(d).unwrap();
    assert_eq!(c.status(), Status::Leader);
    let observer = Config::join(5, "n5", Role::Observer, []);
    assert!(observer.validate().unwrap_err().to_string().contains("no cluster to join"));
}

#[test]
fn an_observer_with_the_longest_log_never_stands_and_counts_in_no_quorum() {
    let initial =
        Configuration::voters([(1, "a"), (2, "b"), (3, "c")]).with(4, "d", Role::Observer);
    let cfgs = (1..=4).map(|i| (Config::new(i, initial.clone()), MemStore::new())).collect();
    let mut cl = Cluster::from_stores(cfgs);
    cl.elect(1);
    let committed = cl.node(1).commit_index();
    cl.isolate(2);
    cl.isolate(3);
    cl.cut.remove(&(1, 4));
    cl.cut.remove(&(4, 1));
    cl.round(1, &["only the observer has this"]);
    assert_eq!(cl.node(4).last_index(), cl.node(1).last_index());
    assert_eq!(cl.node(1).commit_index(), committed, "the observer's copy counted in a quorum");

    // The leader goes; the observer holds the longest log of those left,
    // yet it never stands, and the voters elect one of their own.
    cl.isolate(1);
    cl.cut.retain(|(a, b)| *a == 1 || *b == 1);
    assert_eq!(cl.node(4).next_deadline(), None);
    cl.elect(2);
    assert_eq!(cl.node(2).status(), Status::Leader, "voters 2 and 3 elect without the observer");
    assert_eq!(cl.node(3).leader(), Some(NodeId(2)));
    assert_eq!(cl.node(4).status(), Status::Follower);
}

#[test]
fn a_follower_that_lost_its_log_is_replicated_again_from_the_start() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    cl.round(1, &["a", "b", "c"]);
    assert_eq!(cl.node(1).progress()[&NodeId(3)].match_index, 5);
    // Node 3 comes back with an empty store: the leader still believes it
    // holds five terms.
    cl.nodes[2] = core(3, 3);
    cl.round(1, &[]);
    cl.round(1, &[]);
    assert_eq!(cl.log(3), cl.log(1));
    assert_eq!(cl.node(1).progress()[&NodeId(3)].match_index, 5);
}

#[test]
fn an_observer_that_never_answered_is_not_promoted_however_short_the_log() {
    let mut cl = Cluster::new(3);
    cl.nodes
        .push(core_with(&Config::join(4, "n4", Role::Voter, [(1, "n1".into())]), MemStore::new()));
    cl.elect(1);
    cl.isolate(4);
    let config = cl.node(1).membership_change(&update(4, Role::Voter)).unwrap();
    change(&mut cl, 1, config);
    cl.round(1, &[]);
    assert!(cl.node(1).can_change_membership());
    // The log is far shorter than the catch-up margin, yet node 4 has not
    // answered once: promoting it would add a voter the cluster waits for.
    assert_eq!(cl.node(1).ready_promotion(), None);
    cl.heal();
    cl.round(1, &[]);
    assert!(cl.node(1).ready_promotion().is_some_and(|c| c.is_voter(NodeId(4))));
}

#[test]
fn a_late_request_to_join_from_a_removed_node_is_refused() {
    let mut cl = Cluster::new(3);
    cl.elect(1);
    let config = cl.node(1).membership_change(&MembershipChange::Remove(NodeId(3))).unwrap();
    change(&mut cl, 1, config);
    let now = cl.now;
    let req = Body::JoinRequest { address: "n3".into(), role: Role::Voter };
    let out = cl.node(1).step(msg(3, 1, 0, req), now).unwrap();
    let reply = &sends(&out)[0].body;
    assert!(matches!(reply, Body::JoinReply(JoinReply::Refused { .. })), "{reply:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::JoinRequested(_))));
}

// ---- The leader's own sync (dissertation §10.2.1) ----

/// A leader of three over a store that defers the sync of a round.
fn leader_over_deferred_store() -> Core<crate::sim::SimStore> {
    let cfg = config(1, 3);
    let mut c = Core::new(&cfg, crate::sim::SimStore::new(), 1, Duration::ZERO).unwrap();
    let d = c.next_deadline().unwrap();
    c.tick(d).unwrap();
    c.step(msg(2, 1, 1, Body::VoteReply { granted: true }), d).unwrap();
    let stored = Body::AppendReply(AppendReply::Stored { match_index: 2 });
    c.step(msg(2, 1, 1, stored), d).unwrap();
    assert_eq!((c.status(), c.commit_index()), (Status::Leader, 2));
    c
}

#[test]
fn a_leader_sends_a_round_before_its_own_sync_and_counts_itself_only_after() {
    let mut c = leader_over_deferred_store();
    let draft = c.draft_round(vec![content("x")]).unwrap();
    let outcome = c.send_round(draft, true, MS).unwrap();
    assert!(outcome.sync_pending);
    assert!(sends(&outcome.outputs)
        .iter()
        .any(|m| { matches!(&m.body, Body::AppendTerms { terms, .. } if !terms.is_empty()) }));
    // One follower stored it; the leader's copy is not durable yet: one of
    // three, no commit.
    let stored = Body::AppendReply(AppendReply::Stored { match_index: 3 });
    c.step(msg(2, 1, 1, stored), MS).unwrap();
    assert_eq!(c.commit_index(), 2);
    let out = c.sync_log(MS).unwrap();
    assert!(out.contains(&Output::Committed { index: 3 }));
    assert!(!c.store().has_unsynced());
}

#[test]
fn a_leader_stepping_down_before_its_sync_makes_its_log_durable_first() {
    let mut c = leader_over_deferred_store();
    let draft = c.draft_round(vec![content("x")]).unwrap();
    assert!(c.send_round(draft, true, MS).unwrap().sync_pending);
    assert!(c.store().has_unsynced());
    // A higher epoch: it becomes a follower, which answers for its whole
    // log, so nothing may stay unsynced.
    let req = Body::AppendTerms { prev_index: 3, prev_epoch: 1, commit: 2, terms: vec![] };
    let out = c.step(msg(3, 1, 2, req), Duration::from_secs(5)).unwrap();
    assert_eq!(c.status(), Status::Follower);
    assert!(!c.store().has_unsynced());
    assert_eq!(sends(&out)[0].body, Body::AppendReply(AppendReply::Stored { match_index: 3 }));
}
