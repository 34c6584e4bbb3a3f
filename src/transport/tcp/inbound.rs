//! The incoming side: the listener thread, and one reader thread per
//! accepted connection that checks the handshake and hands messages to the
//! node.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::handshake::{self, Identity};
use super::stream::{ConnError, FrameReader, Wait};
use super::{add, Shared};
use crate::message::Message;
use crate::transport::Inbox;
use crate::types::NodeId;
use crate::wire::{Frame, FrameKind, WireError};

/// The incoming connections: their sockets (to cut them) and threads (to
/// join them).
#[derive(Default)]
pub(super) struct Registry {
    next: u64,
    conns: HashMap<u64, Conn>,
}

struct Conn {
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
    peer: Option<NodeId>,
}

impl Registry {
    /// Joins the threads of connections that have ended.
    fn reap(&mut self) {
        let done: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.thread.as_ref().is_none_or(JoinHandle::is_finished))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(handle) = self.conns.remove(&id).and_then(|c| c.thread) {
                let _ = handle.join();
            }
        }
    }

    /// Records that connection `conn` speaks for `peer`, and cuts any older
    /// connection from the same peer: a peer that restarted leaves its old
    /// connection behind.
    fn claim(&mut self, conn: u64, peer: NodeId) {
        for (id, c) in self.conns.iter_mut() {
            if *id != conn && c.peer == Some(peer) {
                let _ = c.stream.shutdown(Shutdown::Both);
                c.peer = None;
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(peer);
        }
    }

    /// Cuts every connection and hands back the threads to join.
    pub(super) fn close_all(&mut self) -> Vec<JoinHandle<()>> {
        self.conns
            .drain()
            .filter_map(|(_, c)| {
                let _ = c.stream.shutdown(Shutdown::Both);
                c.thread
            })
            .collect()
    }
}

/// The listener thread: accepts connections until the transport stops.
pub(super) fn listen(shared: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping() {
            break;
        }
        match stream {
            Ok(stream) => admit(&shared, stream),
            Err(e) => {
                // Out of descriptors, most likely: give the readers a moment.
                log::warn!("tcp accept on {} failed: {e}", shared.local_addr);
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Gives an accepted connection its reader thread, if there is room.
fn admit(shared: &Arc<Shared>, stream: TcpStream) {
    let remote = stream.peer_addr().ok();
    let mut registry = shared.incoming.lock();
    registry.reap();
    if registry.conns.len() >= shared.options.max_connections {
        drop(registry);
        add(&shared.counters.rejected, 1);
        log::warn!("tcp refused a connection from {remote:?}: too many connections");
        return;
    }
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let id = registry.next;
    registry.next += 1;
    let runner = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("hookraft-tcp-in-{id}"))
        .spawn(move || serve(&runner, id, clone, remote));
    match spawned {
        Ok(handle) => {
            let conn = Conn { stream, thread: Some(handle), peer: None };
            registry.conns.insert(id, conn);
        }
        Err(e) => log::error!("tcp could not start a reader thread: {e}"),
    }
}

/// A reader thread: the handshake, then frames until the connection ends.
/// Whatever ended it is logged once, then the socket is closed (the
/// registry's handle on it would otherwise keep it open).
fn serve(shared: &Shared, conn: u64, stream: TcpStream, remote: Option<SocketAddr>) {
    let remote = remote.map_or_else(|| "?".to_string(), |a| a.to_string());
    let mut peer = None;
    if let Err(e) = run(shared, conn, &stream, &mut peer) {
        report(shared, &remote, peer, &e);
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn run(
    shared: &Shared,
    conn: u64,
    stream: &TcpStream,
    peer: &mut Option<NodeId>,
) -> Result<(), ConnError> {
    let options = &shared.options;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(tick(options.frame_timeout)))?;
    stream.set_write_timeout(Some(options.write_timeout))?;
    let mut reader = FrameReader::new(stream.try_clone()?, shared.decoder, options.frame_timeout);

    let Some((local, inbox)) = shared.local.read().clone() else {
        return Err(ConnError::Stopped);
    };
    let me = Identity { cluster: options.cluster, node: local, secret: options.secret.as_deref() };
    let deadline = Instant::now() + options.frame_timeout;
    let from = handshake::accept(&me, stream, &mut reader, deadline)?;
    *peer = Some(from);
    add(&shared.counters.accepted, 1);
    shared.incoming.lock().claim(conn, from);
    log::debug!("node={local} accepted a connection from {from}");

    loop {
        match reader.next(Wait::Idle)? {
            Frame::Messages(msgs) => deliver_all(shared, &inbox, (from, local), msgs)?,
            Frame::Handshake(_) => {
                return Err(ConnError::Wire(WireError::UnexpectedKind {
                    expected: FrameKind::Messages,
                    found: FrameKind::Handshake,
                }))
            }
        }
    }
}

/// Hands a batch to the node, dropping any message that does not travel
/// from this connection's peer to this node.
fn deliver_all(
    shared: &Shared,
    inbox: &Inbox,
    (from, to): (NodeId, NodeId),
    msgs: Vec<Message>,
) -> Result<(), ConnError> {
    add(&shared.counters.frames_received, 1);
    for msg in msgs {
        if msg.from != from || msg.to != to {
            add(&shared.counters.dropped_misaddressed, 1);
            log::trace!("node={to} dropped a message from {} to {}", msg.from, msg.to);
            continue;
        }
        if !shared.deliver(inbox, msg) {
            return Err(ConnError::Stopped);
        }
    }
    Ok(())
}

/// The read timeout of a socket: how often a reader checks its deadline.
pub(super) fn tick(frame_timeout: Duration) -> Duration {
    (frame_timeout / 4).max(Duration::from_millis(10))
}

/// Logs how a connection ended, once, and counts the rejections.
fn report(shared: &Shared, remote: &str, peer: Option<NodeId>, e: &ConnError) {
    if shared.stopping() {
        return;
    }
    let from = peer.map_or_else(|| "unknown node".to_string(), |p| p.to_string());
    match e {
        ConnError::Closed | ConnError::Stopped => {
            log::debug!("tcp connection from {from} at {remote} closed: {e}");
        }
        ConnError::Io(_) if peer.is_some() => {
            log::debug!("tcp connection from {from} at {remote} lost: {e}");
        }
        _ => {
            add(&shared.counters.rejected, 1);
            log::warn!("tcp closed the connection from {from} at {remote}: {e}");
        }
    }
}
