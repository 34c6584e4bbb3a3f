//! How messages reach other nodes. A [`Transport`] sends one-way messages;
//! incoming messages reach the node through the [`Inbox`] it hands to the
//! transport when it starts. [`MemNetwork`] is an in-memory network for
//! tests and examples; [`TcpTransport`] carries messages over TCP.

mod mem;
mod tcp;

pub use mem::{MemFaults, MemNetwork, MemStats, MemTransport};
pub use tcp::{TcpError, TcpOptions, TcpStats, TcpTransport};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::message::Message;
use crate::types::NodeId;

/// Carries messages between nodes.
///
/// A transport may lose, delay, duplicate or reorder messages: the algorithm
/// tolerates all of it. It must not block the caller for long: a slow or dead
/// peer is the transport's problem, not the node's.
pub trait Transport: Send + Sync + 'static {
    /// Called once when node `id` starts: from now on, messages addressed to
    /// `id` are handed to `inbox`.
    fn attach(&self, id: NodeId, inbox: Inbox);

    /// Sends `msg` to `msg.to`, or drops it.
    fn send(&self, msg: Message);

    /// Sends several messages; a transport that can batch them overrides this.
    fn send_all(&self, msgs: Vec<Message>) {
        for m in msgs {
            self.send(m);
        }
    }

    /// The node may now send to `id` at `address`: a member of a new
    /// configuration, a node to ask for admission, or a leader named in a
    /// redirect. A transport that routes by id alone ignores it.
    fn add_peer(&self, _id: NodeId, _address: &str) {}

    /// Called once when node `id` stops: messages to it are no longer
    /// delivered.
    fn detach(&self, _id: NodeId) {}
}

/// The node's mailbox, as a transport sees it. Cloning it is cheap.
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: Sender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Why a message was not delivered to an inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// The inbox is full: the message was dropped and counted.
    #[error("inbox full, message dropped")]
    Full,
    /// The node has stopped.
    #[error("node stopped")]
    Closed,
}

impl Inbox {
    /// An inbox that feeds `tx`.
    pub fn new(tx: Sender<Message>) -> Self {
        Inbox { tx, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Hands `msg` to the node without blocking.
    ///
    /// # Errors
    /// [`DeliverError::Full`] when the node is behind (the message is
    /// dropped and counted), [`DeliverError::Closed`] when it has stopped.
    pub fn deliver(&self, msg: Message) -> Result<(), DeliverError> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Err(DeliverError::Full)
            }
            Err(TrySendError::Disconnected(_)) => Err(DeliverError::Closed),
        }
    }

    /// How many messages were dropped because the inbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
