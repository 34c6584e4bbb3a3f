//! The TCP transport on loopback: delivery, reconnection, and connections
//! that misbehave (garbage, a huge length, another cluster, a wrong secret,
//! a frame that never ends). Under each attack a real three-node cluster
//! keeps electing and committing.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{Cluster, WAIT};
use crossbeam_channel::Receiver;
use hookraft::wire::{self, Handshake, NONCE_LEN, VERSION};
use hookraft::{
    Body, Configuration, Inbox, Message, NodeId, TcpOptions, TcpStats, TcpTransport, Transport,
};

const CLUSTER: u64 = 7;

fn options() -> TcpOptions {
    let mut o = TcpOptions::new("127.0.0.1:0".parse().unwrap(), CLUSTER);
    o.frame_timeout = Duration::from_millis(500);
    o.backoff_min = Duration::from_millis(10);
    o.backoff_max = Duration::from_millis(200);
    o
}

/// Binds `n` transports numbered from 1, each knowing every other.
fn bind_all(n: u64, tweak: impl Fn(&mut TcpOptions)) -> Vec<TcpTransport> {
    let transports: Vec<TcpTransport> = (1..=n)
        .map(|_| {
            let mut o = options();
            tweak(&mut o);
            TcpTransport::bind(o).unwrap()
        })
        .collect();
    for (i, t) in transports.iter().enumerate() {
        for (j, other) in transports.iter().enumerate() {
            if i != j {
                t.set_peer(NodeId(j as u64 + 1), other.local_addr());
            }
        }
    }
    transports
}

/// Three nodes on TCP, with `secret` shared when there is one.
fn tcp_cluster(secret: Option<&str>) -> (Cluster, Vec<TcpTransport>) {
    let transports = bind_all(3, |o| o.secret = secret.map(|s| s.as_bytes().to_vec()));
    let initial = Configuration::voters(
        transports.iter().enumerate().map(|(i, t)| (i as u64 + 1, t.local_addr().to_string())),
    );
    (Cluster::over(initial, transports.clone()), transports)
}

/// Commits `content`, retrying when leadership changes under the proposal,
/// and waits until every running node has applied it.
fn commit(cluster: &Cluster, content: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok((index, _)) = cluster.propose(content.as_bytes()).wait_timeout(WAIT) {
            cluster.wait_all_applied(index);
            return;
        }
        assert!(Instant::now() < deadline, "could not commit {content}");
    }
}

/// The cluster commits, then loses its leader, elects another and commits
/// again.
fn keeps_electing_and_committing(mut cluster: Cluster) {
    commit(&cluster, "before");
    let leader = cluster.wait_leader();
    cluster.crash(leader);
    let next = cluster.wait_leader();
    assert_ne!(next, leader);
    commit(&cluster, "after");
}

fn vote(from: u64, to: u64, epoch: u64) -> Message {
    Message { from: NodeId(from), to: NodeId(to), epoch, body: Body::VoteReply { granted: true } }
}

fn attach(t: &TcpTransport, id: u64) -> Receiver<Message> {
    let (tx, rx) = crossbeam_channel::bounded(100_000);
    t.attach(NodeId(id), Inbox::new(tx));
    rx
}

/// Waits until `stats` of `t` satisfy `check`.
fn wait_stats(t: &TcpTransport, check: impl Fn(&TcpStats) -> bool) -> TcpStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = t.stats();
        if check(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "stats never matched: {stats:#?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the other side closed `stream` within the test's patience.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

fn hello(cluster: u64, node: u64) -> Vec<u8> {
    let hs = Handshake {
        version: VERSION,
        cluster,
        node: NodeId(node),
        nonce: [1; NONCE_LEN],
        proof: None,
    };
    let mut bytes = Vec::new();
    wire::write_handshake(&hs, &mut bytes).unwrap();
    bytes
}

fn addresses(transports: &[TcpTransport]) -> Vec<SocketAddr> {
    transports.iter().map(TcpTransport::local_addr).collect()
}

fn total(transports: &[TcpTransport], field: impl Fn(&TcpStats) -> u64) -> u64 {
    transports.iter().map(|t| field(&t.stats())).sum()
}

#[test]
fn messages_flow_between_two_transports_in_order() {
    // Every message fits in the queue, even while the writer connects.
    let ts = bind_all(2, |o| o.queue_capacity = 8192);
    let rx1 = attach(&ts[0], 1);
    let rx2 = attach(&ts[1], 2);

    ts[0].send_all((0..5000).map(|e| vote(1, 2, e)).collect());
    for e in 0..5000 {
        assert_eq!(rx2.recv_timeout(WAIT).unwrap(), vote(1, 2, e));
    }
    ts[1].send(vote(2, 1, 9));
    assert_eq!(rx1.recv_timeout(WAIT).unwrap(), vote(2, 1, 9));

    // Batching: many messages share a frame.
    let sent = ts[0].stats();
    assert_eq!(sent.messages_sent, 5000);
    assert!(sent.frames_sent < 5000, "{sent:#?}");
    assert_eq!(ts[1].stats().messages_received, 5000);
}

#[test]
fn a_peer_that_restarts_is_reached_again() {
    let ts = bind_all(2, |_| {});
    let _rx1 = attach(&ts[0], 1);
    let rx2 = attach(&ts[1], 2);
    ts[0].send(vote(1, 2, 1));
    assert_eq!(rx2.recv_timeout(WAIT).unwrap(), vote(1, 2, 1));

    // Stop node 2, then bring it back on the same port.
    let addr = ts[1].local_addr();
    ts[1].shutdown();
    let mut o = options();
    o.listen = addr;
    let again = TcpTransport::bind(o).unwrap();
    let rx2 = attach(&again, 2);

    let deadline = Instant::now() + WAIT;
    let mut epoch = 2;
    loop {
        ts[0].send(vote(1, 2, epoch));
        if rx2.recv_timeout(Duration::from_millis(50)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "{:#?}", ts[0].stats());
        epoch += 1;
    }
    assert!(ts[0].stats().reconnects >= 1, "{:#?}", ts[0].stats());
}

#[test]
fn shutdown_closes_the_port_and_drops_later_messages() {
    let ts = bind_all(2, |_| {});
    let _rx = attach(&ts[0], 1);
    let addr = ts[0].local_addr();
    ts[0].shutdown();
    ts[0].send(vote(1, 2, 1));
    assert!(TcpListener::bind(addr).is_ok(), "the port is still taken");
    assert_eq!(ts[0].stats().dropped(), 1);
}

#[test]
fn random_bytes_are_refused_while_the_cluster_goes_on() {
    let (cluster, ts) = tcp_cluster(None);
    let garbage: Vec<u8> =
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for addr in addresses(&ts) {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&garbage);
        assert!(closed_by_peer(&mut s));
    }
    assert!(total(&ts, |s| s.rejected) >= 3);
    keeps_electing_and_committing(cluster);
}

#[test]
fn a_huge_length_is_refused_before_anything_is_read() {
    let (cluster, ts) = tcp_cluster(None);
    let mut header = hello(CLUSTER, 9);
    header[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    header.truncate(wire::HEADER_LEN);
    for addr in addresses(&ts) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&header).unwrap();
        assert!(closed_by_peer(&mut s));
    }
    assert!(total(&ts, |s| s.rejected) >= 3);
    keeps_electing_and_committing(cluster);
}

#[test]
fn another_cluster_is_refused() {
    let (cluster, ts) = tcp_cluster(None);
    for addr in addresses(&ts) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&hello(CLUSTER + 1, 9)).unwrap();
        assert!(closed_by_peer(&mut s));
    }
    assert!(total(&ts, |s| s.rejected) >= 3);
    keeps_electing_and_committing(cluster);
}

#[test]
fn a_wrong_secret_or_none_cannot_send_terms() {
    let (cluster, ts) = tcp_cluster(Some("the right one"));
    commit(&cluster, "first");

    // Two intruders claiming to be node 4, one with a wrong secret, one
    // with none, shout votes in a huge epoch at every node.
    let intruders: Vec<TcpTransport> = [Some("a wrong one"), None]
        .into_iter()
        .map(|secret| {
            let mut o = options();
            o.secret = secret.map(|s| s.as_bytes().to_vec());
            let t = TcpTransport::bind(o).unwrap();
            for (i, addr) in addresses(&ts).into_iter().enumerate() {
                t.set_peer(NodeId(i as u64 + 1), addr);
            }
            t
        })
        .collect();
    let _inboxes: Vec<_> = intruders.iter().map(|t| attach(t, 4)).collect();
    for t in &intruders {
        for to in 1..=3 {
            t.send(vote(4, to, 1_000_000));
        }
        wait_stats(t, |s| s.connect_failures >= 3);
        assert_eq!(t.stats().connects, 0);
    }
    assert!(total(&ts, |s| s.rejected) >= 6);

    commit(&cluster, "second");
    assert!(cluster.running().all(|n| n.status().epoch < 1_000_000));
    keeps_electing_and_committing(cluster);
}

#[test]
fn frames_that_never_end_are_dropped_without_harm() {
    let (cluster, ts) = tcp_cluster(None);
    let leader = cluster.wait_leader();
    let target = ts[leader as usize - 1].local_addr();

    // Half the connections say nothing; the others start a handshake and
    // then trickle one byte at a time, faster than the read tick.
    let lorises: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(target).unwrap();
                let frame = hello(CLUSTER, 10 + i);
                if i % 2 == 1 {
                    for b in &frame[..frame.len() - 1] {
                        if s.write_all(&[*b]).is_err() {
                            break;
                        }
                        thread::sleep(Duration::from_millis(50));
                    }
                }
                closed_by_peer(&mut s)
            })
        })
        .collect();
    commit(&cluster, "during");
    for l in lorises {
        assert!(l.join().unwrap(), "a slow connection was never closed");
    }
    assert!(ts[leader as usize - 1].stats().rejected >= 8);
    keeps_electing_and_committing(cluster);
}
