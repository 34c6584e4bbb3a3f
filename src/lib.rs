//! `hookraft` is an embeddable Raft consensus library for programs that do not
//! want an async runtime.
#![warn(missing_docs)]

pub mod config;
pub mod message;
pub mod store;
pub mod transport;
pub mod types;

pub use config::{Config, ConfigError};
pub use message::{AppendReply, Body, Message};
pub use store::{FileStore, FileStoreOptions, LogStore, MemStore, StoreError, SyncPolicy};
pub use transport::{DeliverError, Inbox, Transport};
pub use types::{
    Configuration, Epoch, HardState, Index, Member, NodeId, Payload, Role, Status, Term, TermKind,
};
