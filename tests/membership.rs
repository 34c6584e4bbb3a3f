//! Joining, promotion, removal and observers on threaded nodes: the
//! update-node flow from a node's first request to its place in the
//! configuration.

mod common;

use std::time::Duration;

use common::{Cluster, WAIT};
use hookraft::{NodeId, Role, Status, UpdateError, UpdateNode};

#[test]
fn a_new_voter_joins_a_running_cluster_through_any_member() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    for i in 0..50u8 {
        cluster.propose(&[i]);
    }
    // It asks a member that may not lead: the member names the leader.
    let asked = if leader == 1 { 2 } else { 1 };
    cluster.join(4, Role::Voter, &[asked]);
    let joined = cluster
        .node(4)
        .wait_for(WAIT, |s| s.membership.is_voter(NodeId(4)))
        .expect("the new node becomes a voter");
    assert_eq!(joined.status, Status::Follower);
    let (index, _) = cluster.propose(b"after").wait_timeout(WAIT).unwrap();
    cluster.wait_applied(4, index);
    assert_eq!(cluster.hook(4).contents(), cluster.hook(leader).contents());
    let on_leader = cluster.node(cluster.wait_leader()).status().membership;
    assert_eq!(on_leader.voter_ids().count(), 4);
}

#[test]
fn a_joining_voter_does_not_stall_a_busy_cluster() {
    let mut cluster = Cluster::new(3);
    cluster.wait_leader();
    for i in 0..3000u32 {
        cluster.propose(&i.to_be_bytes());
    }
    cluster.join(4, Role::Voter, &[1, 2, 3]);
    // While the newcomer catches up as an observer, the three voters keep
    // committing; it counts in no quorum until it is promoted.
    let mut committed = 0;
    while !cluster.node(4).status().membership.is_voter(NodeId(4)) {
        cluster.propose(b"busy").wait_timeout(WAIT).expect("commits continue");
        committed += 1;
        assert!(committed < 10_000, "the newcomer was never promoted");
    }
    let (index, _) = cluster.propose(b"last").wait_timeout(WAIT).unwrap();
    cluster.wait_applied(4, index);
}

#[test]
fn an_observer_joins_and_receives_every_term_without_voting() {
    let mut cluster = Cluster::new(3);
    cluster.wait_leader();
    cluster.join(4, Role::Observer, &[1]);
    cluster.node(4).wait_for(WAIT, |s| s.status == Status::Follower).expect("it is let in");
    let (index, _) = cluster.propose(b"x").wait_timeout(WAIT).unwrap();
    let status = cluster.wait_applied(4, index);
    assert!(status.membership.contains(NodeId(4)));
    assert!(!status.membership.is_voter(NodeId(4)));
    assert_eq!(status.counters.elections, 0);
}

#[test]
fn a_refused_join_reports_the_reason_and_stops_asking() {
    let mut cluster = Cluster::new(3);
    cluster.wait_leader();
    for id in 1..=3 {
        *cluster.hook(id).refuse_updates.lock() = Some("no room".into());
    }
    cluster.join(4, Role::Voter, &[1, 2, 3]);
    let status = cluster
        .node(4)
        .wait_for(WAIT, |s| s.join_refused.is_some())
        .expect("the refusal reaches the joining node");
    assert_eq!(status.join_refused.as_deref(), Some("no room"));
    assert_eq!(status.status, Status::Pending);
    let leader = cluster.wait_leader_among(&[1, 2, 3]);
    assert!(!cluster.node(leader).status().membership.contains(NodeId(4)));
}

#[test]
fn removing_a_follower_tells_every_node_and_the_removed_one_goes_quiet() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    let removed = if leader == 3 { 2 } else { 3 };
    cluster.node(leader).remove_node(NodeId(removed)).unwrap();
    cluster
        .node(removed)
        .wait_for(WAIT, |s| s.status == Status::Pending)
        .expect("the removed node learns of its removal");
    let (index, _) = cluster.propose(b"after").wait_timeout(WAIT).unwrap();
    for id in (1..=3).filter(|i| *i != removed) {
        cluster.wait_applied(id, index);
        assert_eq!(*cluster.hook(id).removed.lock(), vec![NodeId(removed)]);
    }
    // It never stands again, so it cannot disrupt the two that remain.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(cluster.node(removed).status().counters.elections, 0);
    assert_eq!(cluster.node(leader).status().status, Status::Leader);
}

#[test]
fn a_removed_leader_steps_down_and_the_rest_elect_a_new_one() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    cluster.propose(b"before").wait_timeout(WAIT).unwrap();
    cluster.node(leader).remove_node(NodeId(leader)).unwrap();
    cluster
        .node(leader)
        .wait_for(WAIT, |s| s.status == Status::Pending)
        .expect("the removed leader steps down");
    let others: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let new = cluster.wait_leader_among(&others);
    let (index, _) =
        cluster.node(new).propose(b"after".to_vec()).unwrap().wait_timeout(WAIT).unwrap();
    cluster.wait_applied(others[0], index);
    assert_eq!(cluster.node(new).status().membership.voter_ids().count(), 2);
}

#[test]
fn a_voter_can_be_demoted_to_observer_and_promoted_back() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    let other = if leader == 3 { 2 } else { 3 };
    let demote =
        UpdateNode { id: NodeId(other), address: format!("mem-{other}"), role: Role::Observer };
    cluster.node(leader).update_node(demote).unwrap();
    cluster
        .node(leader)
        .wait_for(WAIT, |s| {
            !s.membership.is_voter(NodeId(other)) && s.membership.contains(NodeId(other))
        })
        .expect("demoted");
    let promote =
        UpdateNode { id: NodeId(other), address: format!("mem-{other}"), role: Role::Voter };
    cluster.node(leader).update_node(promote).unwrap();
    cluster
        .node(leader)
        .wait_for(WAIT, |s| s.membership.is_voter(NodeId(other)))
        .expect("promoted again once caught up");
}

#[test]
fn only_the_leader_takes_membership_changes() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    let other = if leader == 1 { 2 } else { 1 };
    let err = cluster.node(other).remove_node(NodeId(3)).unwrap_err();
    assert_eq!(err, UpdateError::NotLeader { leader: Some(NodeId(leader)) });
}

#[test]
fn a_cluster_grows_to_five_and_shrinks_to_three_while_proposals_run() {
    let mut cluster = Cluster::new(3);
    cluster.wait_leader();
    let mut last = 0;
    let mut propose = |cluster: &Cluster, tag: &str| {
        for i in 0..20u8 {
            let content = [tag.as_bytes(), &[i]].concat();
            last = cluster.propose(&content).wait_timeout(WAIT).expect("commits").0;
        }
    };
    propose(&cluster, "three");
    for id in [4, 5] {
        cluster.join(id, Role::Voter, &[1, 2, 3]);
        propose(&cluster, "growing");
        cluster.node(id).wait_for(WAIT, |s| s.membership.is_voter(NodeId(id))).expect("joins");
    }
    propose(&cluster, "five");

    // Shrink: the leader removes itself, then the new leader removes a follower.
    let leader = cluster.wait_leader();
    cluster.node(leader).remove_node(NodeId(leader)).unwrap();
    cluster.node(leader).wait_for(WAIT, |s| s.status == Status::Pending).expect("steps down");
    let rest: Vec<u64> = (1..=5).filter(|i| *i != leader).collect();
    let new = cluster.wait_leader_among(&rest);
    let follower = *rest.iter().find(|i| **i != new).unwrap();
    cluster.node(new).remove_node(NodeId(follower)).unwrap();
    cluster.node(follower).wait_for(WAIT, |s| s.status == Status::Pending).expect("removed");
    let remaining: Vec<u64> = rest.iter().copied().filter(|i| *i != follower).collect();
    let leader = cluster.wait_leader_among(&remaining);
    for i in 0..20u8 {
        let p = cluster.node(leader).propose(vec![b'x', i]).unwrap();
        last = p.wait_timeout(WAIT).expect("commits with three").0;
    }
    assert_eq!(cluster.node(leader).status().membership.voter_ids().count(), 3);

    // Every remaining node applied the same terms in the same order.
    for id in &remaining {
        cluster.wait_applied(*id, last);
    }
    let reference = cluster.hook(remaining[0]).contents();
    for id in &remaining[1..] {
        assert_eq!(cluster.hook(*id).contents(), reference, "node {id}");
    }
}

#[test]
fn two_nodes_joining_at_once_both_become_members_one_change_at_a_time() {
    let mut cluster = Cluster::new(3);
    cluster.wait_leader();
    cluster.join(4, Role::Voter, &[1, 2, 3]);
    cluster.join(5, Role::Voter, &[3, 2, 1]);
    for id in [4, 5] {
        cluster.node(id).wait_for(WAIT, |s| s.membership.is_voter(NodeId(id))).expect("joins");
    }
    let leader = cluster.wait_leader();
    let (index, _) = cluster.propose(b"five").wait_timeout(WAIT).unwrap();
    cluster.wait_all_applied(index);
    // Along the log, each configuration differs from the one before it by
    // one member or one role at most.
    let configs: Vec<_> = cluster
        .hook(leader)
        .applied
        .lock()
        .iter()
        .filter_map(|t| match &t.kind {
            hookraft::TermKind::Config(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    for pair in configs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let changed = a
            .members
            .keys()
            .chain(b.members.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|id| a.members.get(id) != b.members.get(id))
            .count();
        assert_eq!(changed, 1, "{a:?} -> {b:?}");
    }
}

#[test]
fn a_partition_during_a_membership_change_never_gives_two_leaders_one_epoch() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.wait_leader();
    cluster.join(4, Role::Observer, &[1, 2, 3]);
    cluster.node(4).wait_for(WAIT, |s| s.status == Status::Follower).expect("joins");
    // Promote the observer and cut the leader off at once: the change may
    // or may not commit, but no epoch may see two leaders.
    let promote = UpdateNode { id: NodeId(4), address: "mem-4".into(), role: Role::Voter };
    cluster.node(leader).update_node(promote).unwrap();
    cluster.net.isolate(NodeId(leader));
    std::thread::sleep(Duration::from_millis(500));
    cluster.net.heal();
    let new = cluster.wait_leader();
    cluster.node(new).propose(b"after".to_vec()).unwrap().wait_timeout(WAIT).unwrap();

    let mut leaders: std::collections::BTreeMap<u64, NodeId> = Default::default();
    for id in 1..=4 {
        for (epoch, who) in cluster.hook(id).led.lock().iter() {
            if let Some(other) = leaders.insert(*epoch, *who) {
                assert_eq!(other, *who, "two leaders in epoch {epoch}");
            }
        }
    }
    assert!(!leaders.is_empty());
}

#[test]
fn a_change_that_must_wait_does_not_keep_the_leader_busy() {
    // Followers cut off: the first change cannot commit, so the second one
    // waits in the pool. The leader must keep to its heartbeat meanwhile,
    // not run rounds back to back.
    let cluster = Cluster::with_config(3, |c| c.response_timeout = Duration::from_secs(30));
    let leader = cluster.wait_leader();
    for id in (1..=3).filter(|i| *i != leader) {
        cluster.net.isolate(NodeId(id));
    }
    let update =
        |id: u64| UpdateNode { id: NodeId(id), address: format!("mem-{id}"), role: Role::Observer };
    cluster.node(leader).update_node(update(8)).unwrap();
    cluster.node(leader).wait_for(WAIT, |s| s.membership.contains(NodeId(8))).unwrap();
    cluster.node(leader).update_node(update(9)).unwrap();
    let before = cluster.node(leader).status().counters.rounds;
    std::thread::sleep(Duration::from_millis(600));
    let rounds = cluster.node(leader).status().counters.rounds - before;
    // About 20 heartbeats fit in 600 ms; a spinning worker runs thousands.
    assert!(rounds < 200, "{rounds} rounds while a change waited");
    assert!(!cluster.node(leader).status().membership.contains(NodeId(9)));
}
