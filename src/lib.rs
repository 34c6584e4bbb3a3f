#![doc = include_str!("../README.md")]
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
pub mod wire;

pub use config::{Config, ConfigError};
pub use core::{Core, CoreError, Output};
pub use hook::{Hook, NoHook, UpdateNode};
pub use message::{AppendReply, Body, JoinReply, Message};
pub use node::{
    DropReason, Node, NodeStatus, Outcome, Proposal, ProposeError, StartError, UpdateError,
    WaitError,
};
pub use store::{FileStore, FileStoreOptions, LogStore, MemStore, StoreError, SyncPolicy};
pub use transport::{
    DeliverError, Inbox, MemFaults, MemNetwork, MemStats, MemTransport, TcpError, TcpOptions,
    TcpStats, TcpTransport, Transport,
};
pub use types::{
    Configuration, Epoch, HardState, Index, Member, MembershipChange, NodeId, Payload, Role,
    Status, Term, TermKind,
};
