//! The in-memory network seen from outside: delivery, links, fault rates,
//! delays and counters. Every wait has a generous timeout and no test
//! asserts a speed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hookraft::{Body, Inbox, MemNetwork, MemTransport, Message, NodeId, Transport};

/// Long enough for any machine, however loaded.
const PATIENCE: Duration = Duration::from_secs(10);

/// A network with `n` nodes (ids 1 to `n`) attached through one transport,
/// and each node's receiving end.
fn cluster(
    seed: u64,
    n: u64,
    capacity: usize,
) -> (MemNetwork, MemTransport, Vec<Receiver<Message>>) {
    let network = MemNetwork::with_seed(seed);
    let transport = network.transport();
    let inboxes = (1..=n)
        .map(|id| {
            let (tx, rx) = crossbeam_channel::bounded(capacity);
            transport.attach(NodeId(id), Inbox::new(tx));
            rx
        })
        .collect();
    (network, transport, inboxes)
}

/// A message from `from` to `to`, tagged with `tag` in its epoch.
fn msg(from: u64, to: u64, tag: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        epoch: tag,
        body: Body::VoteReply { granted: true },
    }
}

/// Receives `count` messages, or panics after waiting too long for one.
fn recv_n(rx: &Receiver<Message>, count: usize) -> Vec<Message> {
    (0..count)
        .map(|i| rx.recv_timeout(PATIENCE).unwrap_or_else(|e| panic!("message {i}: {e}")))
        .collect()
}

/// Waits until nothing is in flight in `network`.
fn settle(network: &MemNetwork) {
    let start = Instant::now();
    while network.stats().in_flight > 0 {
        assert!(start.elapsed() < PATIENCE, "messages still in flight: {:?}", network.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn delivers_to_the_addressee() {
    let (network, transport, rx) = cluster(1, 3, 16);

    transport.send(msg(1, 3, 7));
    assert_eq!(rx[2].recv_timeout(PATIENCE), Ok(msg(1, 3, 7)));
    assert!(rx[0].is_empty() && rx[1].is_empty());

    let stats = network.stats();
    assert_eq!((stats.sent, stats.delivered, stats.dropped()), (1, 1, 0));
}

#[test]
fn send_all_delivers_each_message() {
    let (_network, transport, rx) = cluster(1, 2, 16);

    transport.send_all(vec![msg(1, 2, 1), msg(1, 2, 2), msg(2, 1, 3)]);
    assert_eq!(recv_n(&rx[1], 2), [msg(1, 2, 1), msg(1, 2, 2)]);
    assert_eq!(recv_n(&rx[0], 1), [msg(2, 1, 3)]);
}

#[test]
fn cut_drops_one_direction_only() {
    let (network, transport, rx) = cluster(1, 2, 16);
    network.cut(NodeId(1), NodeId(2));
    assert!(!network.is_linked(NodeId(1), NodeId(2)));
    assert!(network.is_linked(NodeId(2), NodeId(1)));

    transport.send(msg(1, 2, 1));
    transport.send(msg(2, 1, 2));
    assert_eq!(recv_n(&rx[0], 1), [msg(2, 1, 2)]);
    assert!(rx[1].is_empty());
    assert_eq!(network.stats().dropped_fault, 1);
}

#[test]
fn cut_both_and_heal_node() {
    let (network, transport, rx) = cluster(1, 3, 16);
    network.cut_both(NodeId(1), NodeId(2));

    transport.send(msg(1, 2, 1));
    transport.send(msg(2, 1, 2));
    transport.send(msg(3, 1, 3));
    assert_eq!(recv_n(&rx[0], 1), [msg(3, 1, 3)]);
    assert!(rx[1].is_empty());

    network.heal_node(NodeId(2));
    transport.send(msg(1, 2, 4));
    assert_eq!(recv_n(&rx[1], 1), [msg(1, 2, 4)]);
}

#[test]
fn isolate_cuts_a_node_from_everyone_until_healed() {
    let (network, transport, rx) = cluster(1, 3, 16);
    network.isolate(NodeId(1));

    for (from, to) in [(1, 2), (1, 3), (2, 1), (3, 1)] {
        transport.send(msg(from, to, 0));
    }
    transport.send(msg(2, 3, 1));
    assert_eq!(recv_n(&rx[2], 1), [msg(2, 3, 1)]);
    assert!(rx.iter().all(|r| r.is_empty()));
    assert_eq!(network.stats().dropped_fault, 4);

    network.heal();
    transport.send(msg(1, 2, 2));
    transport.send(msg(3, 1, 3));
    assert_eq!(recv_n(&rx[1], 1), [msg(1, 2, 2)]);
    assert_eq!(recv_n(&rx[0], 1), [msg(3, 1, 3)]);
}

#[test]
fn isolation_also_stops_nodes_attached_later() {
    let (network, transport, _rx) = cluster(1, 1, 16);
    network.isolate(NodeId(1));

    let (tx, rx9) = crossbeam_channel::bounded(16);
    transport.attach(NodeId(9), Inbox::new(tx));
    transport.send(msg(1, 9, 0));
    assert!(rx9.is_empty());

    network.heal_node(NodeId(1));
    transport.send(msg(1, 9, 1));
    assert_eq!(recv_n(&rx9, 1), [msg(1, 9, 1)]);
}

#[test]
fn drop_rate_one_drops_everything_and_zero_nothing() {
    let (network, transport, rx) = cluster(3, 2, 256);

    network.set_drop_rate(1.0);
    for i in 0..100 {
        transport.send(msg(1, 2, i));
    }
    assert!(rx[1].is_empty());
    assert_eq!(network.stats().dropped_fault, 100);

    network.set_drop_rate(0.0);
    for i in 0..100 {
        transport.send(msg(1, 2, i));
    }
    let got = recv_n(&rx[1], 100);
    assert_eq!(got, (0..100).map(|i| msg(1, 2, i)).collect::<Vec<_>>());
    assert_eq!(network.stats().delivered, 100);
}

#[test]
fn drop_rate_half_drops_some() {
    let (network, transport, rx) = cluster(4, 2, 1024);
    network.set_drop_rate(0.5);
    for i in 0..1000 {
        transport.send(msg(1, 2, i));
    }

    // With 1000 tosses, both outcomes occur for any seed in practice.
    let stats = network.stats();
    assert!(stats.dropped_fault > 0 && stats.delivered > 0, "{stats:?}");
    assert_eq!(stats.dropped_fault + stats.delivered, 1000);
    assert_eq!(rx[1].len() as u64, stats.delivered);
}

#[test]
fn the_same_seed_makes_the_same_choices() {
    let survivors = |seed| {
        let (network, transport, rx) = cluster(seed, 2, 1024);
        network.set_drop_rate(0.5);
        network.set_duplicate_rate(0.3);
        for i in 0..300 {
            transport.send(msg(1, 2, i));
        }
        rx[1].try_iter().map(|m| m.epoch).collect::<Vec<_>>()
    };

    assert_eq!(survivors(42), survivors(42));
    assert_eq!(MemNetwork::with_seed(42).seed(), 42);
}

#[test]
fn duplicate_rate_one_doubles_every_message() {
    let (network, transport, rx) = cluster(5, 2, 256);
    network.set_duplicate_rate(1.0);
    for i in 0..50 {
        transport.send(msg(1, 2, i));
    }

    let got = recv_n(&rx[1], 100);
    for i in 0..50 {
        assert_eq!(got.iter().filter(|m| m.epoch == i).count(), 2, "message {i}");
    }
    let stats = network.stats();
    assert_eq!((stats.sent, stats.duplicated, stats.delivered), (50, 50, 100));
}

#[test]
fn delay_delivers_later() {
    let (network, transport, rx) = cluster(6, 2, 16);
    let delay = Duration::from_millis(30);
    network.set_delay(delay, delay);

    let start = Instant::now();
    transport.send(msg(1, 2, 1));
    assert_eq!(recv_n(&rx[1], 1), [msg(1, 2, 1)]);
    assert!(start.elapsed() >= delay);
}

#[test]
fn every_delayed_message_eventually_arrives() {
    let (network, transport, rx) = cluster(7, 3, 1024);
    network.set_delay(Duration::ZERO, Duration::from_millis(10));
    for i in 0..300 {
        transport.send(msg(1 + i % 2, 3, i));
    }

    let got: BTreeSet<u64> = recv_n(&rx[2], 300).into_iter().map(|m| m.epoch).collect();
    assert_eq!(got, (0..300).collect());
    settle(&network);
    let stats = network.stats();
    assert_eq!((stats.delivered, stats.dropped(), stats.in_flight), (300, 0, 0));
}

#[test]
fn random_delays_reorder_messages() {
    let (network, transport, rx) = cluster(8, 2, 256);
    network.set_delay(Duration::ZERO, Duration::from_millis(50));
    for i in 0..100 {
        transport.send(msg(1, 2, i));
    }

    let order: Vec<u64> = recv_n(&rx[1], 100).into_iter().map(|m| m.epoch).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert_ne!(order, sorted, "100 random delays kept the sending order");
}

#[test]
fn a_fixed_delay_keeps_the_order_of_one_sender() {
    let (network, transport, rx) = cluster(9, 2, 256);
    let delay = Duration::from_millis(5);
    network.set_delay(delay, delay);
    for i in 0..100 {
        transport.send(msg(1, 2, i));
    }

    let order: Vec<u64> = recv_n(&rx[1], 100).into_iter().map(|m| m.epoch).collect();
    assert_eq!(order, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_cut_also_stops_messages_in_flight() {
    let (network, transport, rx) = cluster(10, 2, 16);
    network.set_delay(Duration::from_millis(100), Duration::from_millis(100));
    transport.send(msg(1, 2, 1));
    network.cut(NodeId(1), NodeId(2));

    settle(&network);
    assert!(rx[1].is_empty());
    assert_eq!(network.stats().dropped_fault, 1);
}

#[test]
fn heal_clears_rates_and_delay() {
    let (network, transport, rx) = cluster(11, 2, 16);
    network.set_drop_rate(1.0);
    network.set_duplicate_rate(1.0);
    network.set_delay(Duration::from_secs(60), Duration::from_secs(60));

    network.heal();
    assert_eq!(network.faults(), Default::default());
    transport.send(msg(1, 2, 1));
    assert_eq!(rx[1].try_recv(), Ok(msg(1, 2, 1)));
}

#[test]
fn detach_stops_delivery() {
    let (network, transport, rx) = cluster(12, 2, 16);
    transport.detach(NodeId(2));

    transport.send(msg(1, 2, 1));
    transport.send(msg(1, 7, 2));
    assert!(rx[1].is_empty());
    assert_eq!(network.stats().dropped_no_route, 2);
}

#[test]
fn a_full_inbox_drops_and_counts() {
    let network = MemNetwork::with_seed(13);
    let transport = network.transport();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let inbox = Inbox::new(tx);
    transport.attach(NodeId(2), inbox.clone());

    transport.send(msg(1, 2, 1));
    transport.send(msg(1, 2, 2));
    assert_eq!(rx.try_recv(), Ok(msg(1, 2, 1)));
    assert!(rx.is_empty());
    assert_eq!(network.stats().dropped_full, 1);
    assert_eq!(inbox.dropped(), 1);
}

#[test]
fn a_closed_inbox_counts_as_no_route() {
    let (network, transport, rx) = cluster(14, 2, 16);
    drop(rx);

    transport.send(msg(1, 2, 1));
    assert_eq!(network.stats().dropped_no_route, 1);
}

#[test]
fn counters_balance_under_every_fault() {
    let (network, transport, rx) = cluster(15, 3, 4096);
    network.set_drop_rate(0.2);
    network.set_duplicate_rate(0.2);
    network.set_delay(Duration::ZERO, Duration::from_millis(5));
    network.cut(NodeId(3), NodeId(1));

    let senders: Vec<_> = (1..=3)
        .map(|from| {
            let transport = transport.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    transport.send(msg(from, 1 + (from + i) % 3, i));
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender thread");
    }

    settle(&network);
    let stats = network.stats();
    let received: u64 = rx.iter().map(|r| r.len() as u64).sum();
    assert_eq!(stats.sent, 600);
    assert_eq!(stats.sent + stats.duplicated, stats.delivered + stats.dropped(), "{stats:?}");
    assert_eq!(received, stats.delivered);
}

#[test]
fn a_transport_keeps_the_network_running() {
    let (network, transport, rx) = cluster(16, 2, 16);
    network.set_delay(Duration::from_millis(10), Duration::from_millis(10));
    drop(network);

    transport.send(msg(1, 2, 1));
    assert_eq!(recv_n(&rx[1], 1), [msg(1, 2, 1)]);
    assert_eq!(transport.network().stats().delivered, 1);
}
