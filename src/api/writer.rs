//! The path every API call shares: propose a command through raft and wait
//! for its outcome, or pass a linearizable read barrier.

use std::sync::Arc;
use std::time::Duration;

use oneid_raft::Replica;

use super::ApiError;
use crate::command::{self, Applied, Command, Envelope, KeyBinding};
use crate::domain::{DomainError, Reason};
use crate::query_audit::QueryAudit;

#[derive(Clone)]
pub struct Writer {
    replica: Arc<Replica>,
    /// Bound on how long a write waits for its outcome.
    timeout: Duration,
    queries: Arc<QueryAudit>,
}

impl Writer {
    pub fn new(replica: Arc<Replica>, timeout: Duration, queries: Arc<QueryAudit>) -> Self {
        Writer {
            replica,
            timeout,
            queries,
        }
    }

    /// Records a served query in this node's query trail and passes its
    /// result through. A record that cannot even be encoded fails the
    /// query; the batched disk write behind it is logged if it fails.
    pub fn audited<T>(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        result: Result<T, tonic::Status>,
    ) -> Result<T, tonic::Status> {
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(s) => super::error::reason_of(s).unwrap_or_else(|| format!("{:?}", s.code())),
        };
        match self.queries.record(actor, action, subject, &outcome) {
            Ok(()) => result,
            Err(e) => Err(ApiError::from(e).into()),
        }
    }

    pub fn query_trail(&self) -> &QueryAudit {
        &self.queries
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Proposes one command; a domain rejection comes back as an error.
    pub async fn execute(&self, envelope: Envelope) -> Result<(u64, Applied), ApiError> {
        let bytes = envelope
            .encode()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (index, result) = tokio::time::timeout(self.timeout, self.replica.propose(bytes))
            .await
            .map_err(|_| {
                ApiError::Indeterminate(format!("no outcome within {:?}", self.timeout))
            })??;
        let applied: Applied =
            command::decode(&result).map_err(|e| ApiError::Internal(e.to_string()))?;
        if let Some(e) = applied.outcome.as_error() {
            return Err(e.into());
        }
        Ok((index, applied))
    }

    /// Validates the request id and proposes `command` under it.
    pub async fn submit(
        &self,
        request_id: &str,
        command: Command,
    ) -> Result<(u64, Applied), ApiError> {
        self.submit_keyed(request_id, command, KeyBinding::default())
            .await
    }

    /// [`Writer::submit`] for a command whose id keys `keys` describes.
    pub async fn submit_keyed(
        &self,
        request_id: &str,
        command: Command,
        keys: KeyBinding,
    ) -> Result<(u64, Applied), ApiError> {
        self.execute(super::commands::envelope(request_id, (command, keys))?)
            .await
    }

    /// Waits until this node's state reflects every write acknowledged
    /// before the call: reads after it are linearizable.
    pub async fn linearizable(&self) -> Result<(), ApiError> {
        if cfg!(feature = "unsafe-stale-reads") {
            // Test-only build: deliberately skip the barrier so the chaos
            // harness can prove its checker catches stale reads.
            return Ok(());
        }
        self.replica
            .linearizable_barrier()
            .await
            .map_err(ApiError::from_read_barrier)
    }

    /// [`Writer::linearizable`] for a read of only the records the tokens
    /// name (see `crate::footprint`): it waits for the writes to them, not
    /// for the others. Returns the read index if it skipped any write
    /// before it: anything else the read needs is linearizable after
    /// [`Writer::wait_applied`] of it.
    pub async fn linearizable_for(&self, tokens: &[u64]) -> Result<Option<u64>, ApiError> {
        if cfg!(feature = "unsafe-stale-reads") {
            return Ok(None);
        }
        self.replica
            .linearizable_barrier_for(tokens)
            .await
            .map_err(ApiError::from_read_barrier)
    }

    /// After [`Writer::linearizable_for`] returned `Some(index)`: waits
    /// for the writes up to `index` to the records `tokens` name too (a
    /// read that learns from its first records which others to read).
    pub async fn wait_touching(&self, index: u64, tokens: &[u64]) -> Result<(), ApiError> {
        self.replica
            .wait_touching(index, tokens)
            .await
            .map(|_| ())
            .map_err(ApiError::from_read_barrier)
    }

    /// [`Writer::linearizable`] for a read of records that no command with
    /// a bounded footprint writes (see `crate::footprint`): it waits for
    /// every other write before it, but not for registrations or lockout
    /// bookkeeping, so a bulk import ahead of it does not hold it up.
    pub async fn linearizable_outside_footprints(&self) -> Result<(), ApiError> {
        self.linearizable_for(&[]).await.map(|_| ())
    }

    /// Waits until this node has applied `index` (a read index from
    /// [`Writer::linearizable_for`]).
    pub async fn wait_applied(&self, index: u64) -> Result<(), ApiError> {
        self.replica
            .wait_applied(index)
            .await
            .map_err(ApiError::from_read_barrier)
    }
}

/// An outcome of a kind the command cannot produce: a bug, not bad input.
pub fn unexpected(what: &str, outcome: &crate::command::Outcome) -> ApiError {
    ApiError::Internal(format!("{what} produced {outcome:?}"))
}

pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::Domain(DomainError::new(Reason::InvalidArgument, message))
}

pub fn write_response(index: u64, replayed: bool) -> tonic::Response<crate::pb::WriteResponse> {
    tonic::Response::new(crate::pb::WriteResponse {
        applied_index: index,
        replayed,
    })
}

/// A page size from a request: 0 takes `default`, above `max` is refused.
pub fn page_limit(raw: u32, default: usize, max: usize) -> Result<usize, ApiError> {
    match raw as usize {
        0 => Ok(default),
        n if n <= max => Ok(n),
        n => Err(invalid(format!("limit {n} is above {max}"))),
    }
}
