use std::path::PathBuf;

use openraft::{BasicNode, Entry, RaftTypeConfig, TokioRuntime};
use serde::{Deserialize, Serialize};

/// One raft log entry's worth of client commands (group commit). The leader
/// stamps it with its wall clock before it enters the log; the state machine
/// uses only this stamp, never its own clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub stamp_ms: u64,
    /// Encoded as byte strings (one copy each), not as sequences of u8.
    pub commands: Vec<serde_bytes::ByteBuf>,
}

/// Client commands in a log entry (none in a blank or membership entry).
pub fn commands_in(entry: &Entry<TypeConfig>) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(p) => p.commands.len(),
        _ => 0,
    }
}

/// The index raft's metrics say this node has applied up to.
pub fn applied_index(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> u64 {
    m.last_applied.map_or(0, |l| l.index)
}

/// One result per command of a [`Proposal`], in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalOutcome {
    pub results: Vec<serde_bytes::ByteBuf>,
}

/// A snapshot is a file on disk (see `oneid_storage::snapshot_file`); it is
/// streamed, never loaded into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct TypeConfig;

impl RaftTypeConfig for TypeConfig {
    type D = Proposal;
    type R = ProposalOutcome;
    type NodeId = u64;
    type Node = BasicNode;
    type Entry = Entry<TypeConfig>;
    type SnapshotData = SnapshotFile;
    type AsyncRuntime = TokioRuntime;
    type Responder = openraft::impls::OneshotResponder<TypeConfig>;
}

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
