//! A [`Transport`] over TCP: one node per [`TcpTransport`], one listening
//! socket, one outgoing connection per peer.
//!
//! # Threads
//! - The *listener* (`hookraft-tcp-listen`) accepts connections and gives
//!   each one a *reader* thread (`hookraft-tcp-in`), which runs the
//!   handshake, then decodes frames and hands their messages to the node's
//!   [`Inbox`]. Connections carry messages one way only, from the side that
//!   connected.
//! - Each peer has a *writer* thread (`hookraft-tcp-out-<id>`) fed by a
//!   bounded queue. [`Transport::send`] only pushes into that queue, so a
//!   slow or dead peer never blocks the node nor the other peers: when its
//!   queue is full, messages to it are dropped and counted. The writer
//!   connects when it has something to send, packs every queued message
//!   into as few frames as the frame limit allows, and writes them through a
//!   buffer flushed when the queue runs dry.
//! - A writer whose connection fails drops what it holds and retries at the
//!   next message once a backoff has passed: it doubles from `backoff_min`
//!   up to `backoff_max` after each failure, with random jitter, and resets
//!   on success. A peer that goes away and comes back is reached again.
//!
//! [`Transport::detach`], [`TcpTransport::shutdown`] or dropping the last
//! handle stops every thread and joins them.
//!
//! # Bounds
//! Every frame is at most `max_frame` bytes of payload (see
//! [`crate::wire`]); a message too large for one frame is dropped and
//! counted. Each peer's queue holds at most `queue_capacity` messages, and
//! at most `max_connections` incoming connections are served at once. A
//! frame (or the handshake) that has started must arrive whole within
//! `frame_timeout`, so a peer that never finishes one is dropped without
//! holding up the others.
//!
//! # Security
//! Without a shared secret, anything that can reach the port and knows the
//! cluster id can join the conversation. With one (`secret`), both sides of
//! every connection prove that they hold it, by HMAC-SHA256 over nonces
//! both sides chose for that connection: a peer without the secret cannot
//! connect, so it cannot send messages, win votes or append terms.
//!
//! What the secret does **not** give: no encryption (anyone on the path
//! reads every term), no integrity of the messages after the handshake (no
//! per-message MAC: anyone able to inject into or take over an established
//! TCP stream can forge messages), and no replay protection beyond the
//! handshake's nonces. Any holder of the secret may claim any node id. Run
//! the cluster on a network you trust, or under a tunnel that encrypts.

mod handshake;
mod inbound;
mod outbound;
mod stream;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::{Mutex, RwLock};

use super::{Inbox, Transport};
use crate::message::Message;
use crate::types::NodeId;
use crate::wire::{Decoder, DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT};

/// Settings of a [`TcpTransport`]. Build them with [`TcpOptions::new`] and
/// change the fields that matter; [`TcpOptions::validate`] refuses nonsense.
#[derive(Clone)]
pub struct TcpOptions {
    /// Where to listen. Port 0 picks a free port; read it back with
    /// [`TcpTransport::local_addr`].
    pub listen: SocketAddr,
    /// Where each peer listens. Messages to a node not listed are dropped.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The cluster's id: connections from another cluster are refused.
    pub cluster: u64,
    /// A secret every node of the cluster shares, or none (see the module
    /// documentation for what it protects).
    pub secret: Option<Vec<u8>>,
    /// Largest frame payload in bytes, sent or accepted; at most
    /// [`MAX_FRAME_LIMIT`]. It must exceed the node's
    /// `Config::max_bytes_per_message` with room to spare.
    pub max_frame: usize,
    /// Messages each peer's queue holds; beyond, messages are dropped.
    pub queue_capacity: usize,
    /// Longest wait for an outgoing connection to open.
    pub connect_timeout: Duration,
    /// Longest wait for one write to a peer: past it, the connection is
    /// considered dead.
    pub write_timeout: Duration,
    /// Longest time a frame, or the whole handshake, may take to arrive
    /// once it has started.
    pub frame_timeout: Duration,
    /// First wait before reconnecting to a peer after a failure.
    pub backoff_min: Duration,
    /// Longest wait before reconnecting.
    pub backoff_max: Duration,
    /// Most incoming connections served at once.
    pub max_connections: usize,
}

impl TcpOptions {
    /// Options with the defaults: no peer, no secret, 16 MiB frames, 4096
    /// queued messages per peer, 1 s to connect, 2 s per write, 5 s per
    /// frame, backoff from 50 ms to 1 s, 64 incoming connections.
    pub fn new(listen: SocketAddr, cluster: u64) -> Self {
        TcpOptions {
            listen,
            peers: BTreeMap::new(),
            cluster,
            secret: None,
            max_frame: DEFAULT_MAX_FRAME,
            queue_capacity: 4096,
            connect_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(2),
            frame_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            max_connections: 64,
        }
    }

    /// Adds (or moves) peer `id` at `addr` and returns the options.
    pub fn peer(mut self, id: u64, addr: SocketAddr) -> Self {
        self.peers.insert(NodeId(id), addr);
        self
    }

    /// Sets the shared secret and returns the options.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Checks that the settings make sense together.
    ///
    /// # Errors
    /// [`TcpError::InvalidOptions`] naming the first setting found wrong.
    pub fn validate(&self) -> Result<(), TcpError> {
        let bad = |msg: &str| Err(TcpError::InvalidOptions(msg.to_string()));
        if self.max_frame < 1024 || self.max_frame > MAX_FRAME_LIMIT {
            return bad("max_frame must be between 1 KiB and wire::MAX_FRAME_LIMIT");
        }
        if self.queue_capacity == 0 || self.max_connections == 0 {
            return bad("queue_capacity and max_connections must be above zero");
        }
        let timeouts =
            [self.connect_timeout, self.write_timeout, self.frame_timeout, self.backoff_min];
        if timeouts.iter().any(Duration::is_zero) {
            return bad("timeouts and backoff_min must be above zero");
        }
        if self.backoff_max < self.backoff_min {
            return bad("backoff_max must not be below backoff_min");
        }
        if self.secret.as_ref().is_some_and(Vec::is_empty) {
            return bad("a shared secret must not be empty");
        }
        Ok(())
    }
}

impl fmt::Debug for TcpOptions {
    // The secret itself is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpOptions")
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("cluster", &self.cluster)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("max_frame", &self.max_frame)
            .field("queue_capacity", &self.queue_capacity)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("frame_timeout", &self.frame_timeout)
            .field("backoff", &(self.backoff_min, self.backoff_max))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Why a [`TcpTransport`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// The options make no sense; fix the named setting.
    #[error("invalid TCP options: {0}")]
    InvalidOptions(String),
    /// The listening socket could not be opened (address in use, no
    /// permission, ...).
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The operating system refused a thread.
    #[error("could not start a transport thread: {0}")]
    Thread(#[source] io::Error),
}

/// A snapshot of a [`TcpTransport`]'s counters, read one by one (so
/// approximate while traffic flows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Frames written to peers.
    pub frames_sent: u64,
    /// Messages written to peers.
    pub messages_sent: u64,
    /// Frames received from peers.
    pub frames_received: u64,
    /// Messages received and handed to the node.
    pub messages_received: u64,
    /// Messages dropped because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because the peer could not be reached (no
    /// connection, a backoff running, a failed write).
    pub dropped_unreachable: u64,
    /// Messages dropped because no peer has their destination's id.
    pub dropped_unknown_peer: u64,
    /// Messages dropped because one alone exceeds the frame limit.
    pub dropped_oversize: u64,
    /// Messages received but dropped: the node's inbox was full, or no node
    /// was attached.
    pub dropped_inbox: u64,
    /// Messages received whose sender or receiver is not the connection's.
    pub dropped_misaddressed: u64,
    /// Outgoing connections opened (handshake done), first ones included.
    pub connects: u64,
    /// Outgoing connections opened again after an earlier one to the same
    /// peer was lost.
    pub reconnects: u64,
    /// Outgoing connection attempts that failed.
    pub connect_failures: u64,
    /// Incoming connections accepted (handshake done).
    pub accepted: u64,
    /// Incoming connections closed for a failed handshake, garbage, a
    /// stalled frame or too many connections.
    pub rejected: u64,
}

impl TcpStats {
    /// Every message dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_unreachable
            + self.dropped_unknown_peer
            + self.dropped_oversize
            + self.dropped_inbox
            + self.dropped_misaddressed
    }
}

/// The TCP transport of one node. Cloning the handle is cheap; the threads
/// stop when the last handle is dropped, at [`TcpTransport::shutdown`], or
/// when the node detaches.
///
/// # Example
/// ```
/// use hookraft::{TcpOptions, TcpTransport};
///
/// let options = TcpOptions::new("127.0.0.1:0".parse().unwrap(), 7)
///     .peer(2, "127.0.0.1:4702".parse().unwrap())
///     .secret("correct horse");
/// let transport = TcpTransport::bind(options).unwrap();
/// println!("listening on {}", transport.local_addr());
/// // Node::start(config, transport.clone(), store, hook) ...
/// transport.shutdown();
/// ```
#[derive(Clone)]
pub struct TcpTransport {
    owner: Arc<Owner>,
}

/// Stops everything when the last handle goes.
struct Owner {
    shared: Arc<Shared>,
    threads: Mutex<Option<Threads>>,
}

struct Threads {
    listener: JoinHandle<()>,
    writers: Vec<JoinHandle<()>>,
}

/// What every thread of the transport shares.
struct Shared {
    options: TcpOptions,
    local_addr: SocketAddr,
    decoder: Decoder,
    stopping: AtomicBool,
    /// Where each peer listens; writers read it at every connection.
    peers: RwLock<BTreeMap<NodeId, SocketAddr>>,
    /// The attached node and its inbox.
    local: RwLock<Option<(NodeId, Inbox)>>,
    /// The queue of each peer's writer.
    queues: RwLock<HashMap<NodeId, Sender<Message>>>,
    /// Each writer's current socket, to cut it at shutdown.
    outgoing: Mutex<HashMap<NodeId, TcpStream>>,
    /// Every incoming connection not yet reaped.
    incoming: Mutex<inbound::Registry>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    frames_sent: AtomicU64,
    messages_sent: AtomicU64,
    frames_received: AtomicU64,
    messages_received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unreachable: AtomicU64,
    dropped_unknown_peer: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_inbox: AtomicU64,
    dropped_misaddressed: AtomicU64,
    connects: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> TcpStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpStats {
            frames_sent: r(&self.frames_sent),
            messages_sent: r(&self.messages_sent),
            frames_received: r(&self.frames_received),
            messages_received: r(&self.messages_received),
            dropped_queue_full: r(&self.dropped_queue_full),
            dropped_unreachable: r(&self.dropped_unreachable),
            dropped_unknown_peer: r(&self.dropped_unknown_peer),
            dropped_oversize: r(&self.dropped_oversize),
            dropped_inbox: r(&self.dropped_inbox),
            dropped_misaddressed: r(&self.dropped_misaddressed),
            connects: r(&self.connects),
            reconnects: r(&self.reconnects),
            connect_failures: r(&self.connect_failures),
            accepted: r(&self.accepted),
            rejected: r(&self.rejected),
        }
    }
}

impl TcpTransport {
    /// Opens the listening socket and starts the listener thread. Writers
    /// start when a node attaches; until then incoming connections are
    /// refused at the handshake.
    ///
    /// # Errors
    /// [`TcpError::InvalidOptions`], [`TcpError::Bind`] when the address
    /// cannot be listened on, [`TcpError::Thread`].
    pub fn bind(options: TcpOptions) -> Result<TcpTransport, TcpError> {
        options.validate()?;
        let bind_err = |source| TcpError::Bind { addr: options.listen, source };
        let listener = TcpListener::bind(options.listen).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let shared = Arc::new(Shared {
            decoder: Decoder::new(options.max_frame),
            peers: RwLock::new(options.peers.clone()),
            options,
            local_addr,
            stopping: AtomicBool::new(false),
            local: RwLock::new(None),
            queues: RwLock::new(HashMap::new()),
            outgoing: Mutex::new(HashMap::new()),
            incoming: Mutex::new(inbound::Registry::default()),
            counters: Counters::default(),
        });

        let runner = Arc::clone(&shared);
        let listener = thread::Builder::new()
            .name(format!("hookraft-tcp-listen-{}", local_addr.port()))
            .spawn(move || inbound::listen(runner, listener))
            .map_err(TcpError::Thread)?;
        log::info!("tcp listening on {local_addr}");
        let threads = Threads { listener, writers: Vec::new() };
        Ok(TcpTransport { owner: Arc::new(Owner { shared, threads: Mutex::new(Some(threads)) }) })
    }

    /// The address the transport listens on (with the real port when the
    /// options asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.owner.shared.local_addr
    }

    /// Adds peer `id` at `addr`, or moves it there: its next connection
    /// goes to the new address. A peer added after the node attached gets
    /// its writer at once.
    pub fn set_peer(&self, id: NodeId, addr: SocketAddr) {
        let known = self.owner.shared.peers.write().insert(id, addr).is_some();
        if !known {
            self.owner.start_writer(id);
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TcpStats {
        self.owner.shared.counters.snapshot()
    }

    /// Stops every thread and closes every connection, then returns.
    /// Messages sent afterwards are dropped. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.owner.stop();
    }
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("local_addr", &self.local_addr())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Transport for TcpTransport {
    /// Starts a writer for each peer. A transport serves one node: attaching
    /// a second id is refused with an error in the log.
    fn attach(&self, id: NodeId, inbox: Inbox) {
        self.owner.attach(id, inbox);
    }

    /// Queues `msg` for its peer without blocking; see [`TcpStats`] for the
    /// ways it may be dropped.
    fn send(&self, msg: Message) {
        let shared = &self.owner.shared;
        let queues = shared.queues.read();
        shared.route(&queues, msg);
    }

    fn send_all(&self, msgs: Vec<Message>) {
        let shared = &self.owner.shared;
        let queues = shared.queues.read();
        for msg in msgs {
            shared.route(&queues, msg);
        }
    }

    /// Stops the whole transport (it served only this node).
    /// Learns a member's address from the configuration, or a leader's from
    /// a redirect. An address that is not `ip:port` is logged and ignored:
    /// this transport resolves no names, so that a lookup never blocks the
    /// node.
    fn add_peer(&self, id: NodeId, address: &str) {
        match address.parse::<SocketAddr>() {
            Ok(addr) if self.owner.shared.peers.read().get(&id) != Some(&addr) => {
                self.set_peer(id, addr)
            }
            Ok(_) => {}
            Err(_) => log::warn!("tcp transport: address {address:?} of {id} is not ip:port"),
        }
    }

    fn detach(&self, id: NodeId) {
        let attached = self.owner.shared.local.read().as_ref().map(|(n, _)| *n);
        if attached == Some(id) {
            self.owner.stop();
        }
    }
}

impl Owner {
    fn attach(&self, id: NodeId, inbox: Inbox) {
        let shared = &self.shared;
        {
            let mut local = shared.local.write();
            if let Some((other, _)) = local.as_ref().filter(|(n, _)| *n != id) {
                log::error!("tcp transport of {other} cannot also serve {id}: attach ignored");
                return;
            }
            *local = Some((id, inbox));
        }
        let peers: Vec<NodeId> = shared.peers.read().keys().copied().collect();
        for peer in peers {
            self.start_writer(peer);
        }
    }

    /// Starts the writer to `peer`, once a node is attached, unless it runs
    /// already.
    fn start_writer(&self, peer: NodeId) {
        let shared = &self.shared;
        let Some(local) = shared.local.read().as_ref().map(|(id, _)| *id) else {
            return;
        };
        let Some(threads) = &mut *self.threads.lock() else {
            return;
        };
        if peer == local || shared.queues.read().contains_key(&peer) {
            return;
        }
        match outbound::spawn(Arc::clone(shared), local, peer) {
            Ok(writer) => threads.writers.push(writer),
            Err(e) => log::error!("node={local} could not start the writer to {peer}: {e}"),
        }
    }

    fn stop(&self) {
        let Some(threads) = self.threads.lock().take() else {
            return;
        };
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        *shared.local.write() = None;

        // Closing the queues ends the writers; cutting their sockets ends
        // a write or handshake in progress.
        shared.queues.write().clear();
        for stream in shared.outgoing.lock().values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        for writer in threads.writers {
            join(writer, "writer");
        }

        // The listener blocks in accept: a connection wakes it.
        let _ = TcpStream::connect_timeout(&wake_address(shared.local_addr), WAKE_TIMEOUT);
        join(threads.listener, "listener");
        let readers = shared.incoming.lock().close_all();
        for reader in readers {
            join(reader, "reader");
        }
        log::info!("tcp on {} stopped", shared.local_addr);
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop();
    }
}

const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where to connect to reach a listener bound to `addr`.
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let mut wake = addr;
    if addr.ip().is_unspecified() {
        wake.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    wake
}

fn join(handle: JoinHandle<()>, what: &str) {
    if handle.join().is_err() {
        log::error!("tcp {what} thread panicked");
    }
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Hands `msg` to its peer's queue, or to the local inbox when it is
    /// addressed to the attached node itself.
    fn route(&self, queues: &HashMap<NodeId, Sender<Message>>, msg: Message) {
        let c = &self.counters;
        let Some(queue) = queues.get(&msg.to) else {
            let local = self.local.read().clone();
            match local {
                Some((id, inbox)) if id == msg.to => {
                    self.deliver(&inbox, msg);
                }
                _ => add(&c.dropped_unknown_peer, 1),
            }
            return;
        };
        match queue.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => add(&c.dropped_queue_full, 1),
            Err(TrySendError::Disconnected(_)) => add(&c.dropped_unreachable, 1),
        }
    }

    /// Hands one received message to the node. Returns `false` once the
    /// node has stopped.
    fn deliver(&self, inbox: &Inbox, msg: Message) -> bool {
        match inbox.deliver(msg) {
            Ok(()) => {
                add(&self.counters.messages_received, 1);
                true
            }
            Err(super::DeliverError::Full) => {
                add(&self.counters.dropped_inbox, 1);
                true
            }
            Err(super::DeliverError::Closed) => {
                add(&self.counters.dropped_inbox, 1);
                false
            }
        }
    }
}
