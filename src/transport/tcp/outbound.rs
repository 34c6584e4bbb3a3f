//! The outgoing side: one writer thread per peer, fed by a bounded queue,
//! that connects, batches queued messages into frames, and reconnects with
//! backoff.

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rand::Rng;

use super::handshake::{self, Identity};
use super::inbound::tick;
use super::stream::{ConnError, FrameReader};
use super::{add, Shared};
use crate::message::Message;
use crate::types::NodeId;
use crate::wire::{FrameEncoder, WireError};

/// Most messages packed into one frame: a frame is written once it holds
/// this many, so a long queue streams out instead of waiting to be packed
/// whole.
const MAX_BATCH: usize = 1024;

/// Room in the write buffer: many small frames leave in one system call.
const WRITE_BUFFER: usize = 64 * 1024;

/// Starts the writer to `peer` and registers its queue.
pub(super) fn spawn(
    shared: Arc<Shared>,
    local: NodeId,
    peer: NodeId,
) -> std::io::Result<JoinHandle<()>> {
    let (tx, rx) = crossbeam_channel::bounded(shared.options.queue_capacity);
    shared.queues.write().insert(peer, tx);
    let writer = Writer {
        backoff: Backoff::new(shared.options.backoff_min, shared.options.backoff_max),
        encoder: FrameEncoder::new(shared.options.max_frame),
        shared,
        local,
        peer,
        rx,
        ever_connected: false,
        failing: false,
    };
    thread::Builder::new().name(format!("hookraft-tcp-out-{}", peer.0)).spawn(move || writer.run())
}

struct Writer {
    shared: Arc<Shared>,
    local: NodeId,
    peer: NodeId,
    rx: Receiver<Message>,
    encoder: FrameEncoder,
    backoff: Backoff,
    ever_connected: bool,
    /// Whether the last attempt failed: failures are logged once until the
    /// next success.
    failing: bool,
}

impl Writer {
    /// Runs until the queue closes (the transport stops).
    fn run(mut self) {
        let mut conn: Option<BufWriter<TcpStream>> = None;
        while let Ok(first) = self.rx.recv() {
            if conn.is_none() {
                conn = self.try_connect();
            }
            let Some(out) = conn.as_mut() else {
                self.drop_queued(1);
                continue;
            };
            if let Err(e) = self.pump(out, first) {
                self.lost(&e);
                conn = None;
            }
        }
        self.forget_socket();
    }

    /// Writes `first` and everything queued behind it, then flushes.
    fn pump(&mut self, out: &mut BufWriter<TcpStream>, first: Message) -> Result<(), WireError> {
        let c = &self.shared.counters;
        let mut next = Some(first);
        while let Some(msg) = next {
            match self.encoder.push(&msg, out) {
                Ok(frames) => add(&c.frames_sent, frames as u64),
                Err(WireError::TooLarge { len, max }) => {
                    add(&c.dropped_oversize, 1);
                    log::warn!(
                        "node={} dropped a {len}-byte message to {} (frame limit {max})",
                        self.local,
                        self.peer
                    );
                    next = self.rx.try_recv().ok();
                    continue;
                }
                Err(e) => return Err(e),
            }
            add(&c.messages_sent, 1);
            next = self.rx.try_recv().ok();
            if next.is_none() || self.encoder.pending() >= MAX_BATCH {
                add(&c.frames_sent, self.encoder.finish(out)? as u64);
            }
        }
        out.flush()?;
        Ok(())
    }

    /// Connects and runs the handshake, unless a backoff is running.
    fn try_connect(&mut self) -> Option<BufWriter<TcpStream>> {
        if !self.backoff.ready(Instant::now()) {
            return None;
        }
        match self.connect() {
            Ok(stream) => {
                self.connected();
                Some(BufWriter::with_capacity(WRITE_BUFFER, stream))
            }
            Err(e) => {
                add(&self.shared.counters.connect_failures, 1);
                self.failed(&e);
                None
            }
        }
    }

    fn connect(&mut self) -> Result<TcpStream, ConnError> {
        let options = &self.shared.options;
        let addr = self.address()?;
        let stream = TcpStream::connect_timeout(&addr, options.connect_timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(options.write_timeout))?;
        stream.set_read_timeout(Some(tick(options.frame_timeout)))?;

        // Registered before the check, so that a shutdown either sees the
        // socket or is seen here.
        self.shared.outgoing.lock().insert(self.peer, stream.try_clone()?);
        if self.shared.stopping() {
            return Err(ConnError::Stopped);
        }
        let mut reader =
            FrameReader::new(stream.try_clone()?, self.shared.decoder, options.frame_timeout);
        let me = Identity {
            cluster: options.cluster,
            node: self.local,
            secret: options.secret.as_deref(),
        };
        let deadline = Instant::now() + options.frame_timeout;
        handshake::dial(&me, self.peer, &stream, &mut reader, deadline)?;
        Ok(stream)
    }

    /// Where the peer listens now.
    fn address(&self) -> Result<SocketAddr, ConnError> {
        let peers = self.shared.peers.read();
        let addr = peers.get(&self.peer).copied();
        addr.ok_or_else(|| ConnError::Handshake("the peer has no address".into()))
    }

    fn connected(&mut self) {
        let c = &self.shared.counters;
        add(&c.connects, 1);
        if self.ever_connected {
            add(&c.reconnects, 1);
        }
        self.ever_connected = true;
        self.failing = false;
        self.backoff.reset();
        log::info!("node={} connected to {}", self.local, self.peer);
    }

    /// A connection attempt failed.
    fn failed(&mut self, e: &ConnError) {
        self.forget_socket();
        self.backoff.fail(Instant::now());
        if self.shared.stopping() {
            return;
        }
        if self.failing {
            log::debug!("node={} still cannot reach {}: {e}", self.local, self.peer);
        } else {
            log::warn!("node={} cannot reach {}: {e}", self.local, self.peer);
        }
        self.failing = true;
    }

    /// An established connection failed while writing.
    fn lost(&mut self, e: &WireError) {
        self.forget_socket();
        self.encoder.clear();
        self.drop_queued(0);
        self.backoff.fail(Instant::now());
        if !self.shared.stopping() {
            log::warn!("node={} lost its connection to {}: {e}", self.local, self.peer);
        }
    }

    /// Closes the registered socket: the clone kept for shutdown would
    /// otherwise hold the connection open.
    fn forget_socket(&self) {
        if let Some(stream) = self.shared.outgoing.lock().remove(&self.peer) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Drops `held` messages and everything queued: they are stale by the
    /// time a connection comes back, and Raft sends again what matters.
    fn drop_queued(&self, held: u64) {
        let queued = self.rx.try_iter().count() as u64;
        add(&self.shared.counters.dropped_unreachable, held + queued);
    }
}

/// Exponential backoff with jitter between connection attempts.
struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    not_before: Option<Instant>,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, current: min, not_before: None }
    }

    fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// Waits a random time between half the current backoff and all of it,
    /// then doubles the backoff up to the maximum.
    fn fail(&mut self, now: Instant) {
        let wait = rand::rng().random_range(self.current / 2..=self.current);
        self.not_before = Some(now + wait);
        self.current = (self.current * 2).min(self.max);
    }

    fn reset(&mut self) {
        self.current = self.min;
        self.not_before = None;
    }
}
