//! `hookraft` is an embeddable Raft consensus library for programs that do not
//! want an async runtime.
#![warn(missing_docs)]

pub mod config;
pub mod core;
pub mod hook;
pub mod message;
pub mod node;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod store;
pub mod transport;
pub mod types;

pub use config::{Config, ConfigError};
pub use core::{Core, CoreError, Output};
pub use hook::{Hook, NoHook, UpdateNode};
pub use message::{AppendReply, Body, Message};
pub use node::{
    DropReason, Node, NodeStatus, Outcome, Proposal, ProposeError, StartError, UpdateError,
    WaitError,
};
pub use store::{LogStore, MemStore, StoreError};
pub use transport::{
    DeliverError, Inbox, MemFaults, MemNetwork, MemStats, MemTransport, Transport,
};
pub use types::{
    Configuration, Epoch, HardState, Index, Member, NodeId, Payload, Role, Status, Term, TermKind,
};
