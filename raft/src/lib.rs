//! Raft glue for oneid: openraft type configuration, a tonic transport,
//! group commit of client commands and coalesced linearizable read barriers.
//!
//! This crate is ignorant of the registry: client commands and their results
//! are opaque byte strings that the application's state machine interprets.

pub mod apply_backlog;
pub mod capabilities;
pub mod error;
pub mod lease;
pub mod network;
pub mod proposer;
pub mod reads;
pub mod replica;
pub mod service;
pub mod snapshot_turns;
pub mod transfer;
pub mod turns;
pub mod types;
pub mod unapplied;
pub mod wire;

pub mod pb {
    tonic::include_proto!("oneid.raft.v1");
}

pub use error::ReplicaError;
pub use replica::{Replica, ReplicaConfig};
pub use types::{Proposal, ProposalOutcome, Raft, SnapshotFile, TypeConfig};
