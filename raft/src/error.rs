/// Why a replicated operation did not complete. `Indeterminate` means the
/// command may or may not have been applied: the caller must not report it
/// as failed (a retry with the same request id is safe).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicaError {
    #[error("no leader is known; try again")]
    NoLeader,
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    #[error("not applied: {0}")]
    Rejected(String),
    /// The leader could not get a quorum to confirm it still leads, so it
    /// cannot serve a linearizable read; nothing was written.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("node is shutting down")]
    ShuttingDown,
    /// A membership change this node cannot make: not the leader, or the
    /// change itself is invalid (unknown node, empty voter set, ...).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A leadership transfer that could not start or did not finish; when it
    /// did not finish, this node may still lead.
    #[error("leadership transfer refused: {0}")]
    Transfer(String),
    #[error("fatal raft error: {0}")]
    Fatal(String),
}
