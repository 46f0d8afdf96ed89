//! The node-to-node gRPC service: raft RPCs, snapshot streaming, forwarded
//! proposals and ReadIndex.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use openraft::error::Fatal;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Snapshot;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::apply_backlog::max_hold;
use crate::network::SnapshotHeader;
use crate::pb::raft_service_server::RaftService;
use crate::pb::{
    Blob, CapabilitiesResponse, Empty, ForwardRequest, ForwardResponse, ReadIndexResponse,
    SnapshotChunk, TimeoutNowRequest,
};
use crate::types::{applied_index, NodeId, SnapshotFile, TypeConfig};
use crate::{wire, Replica, ReplicaError};

/// Most commands a forwarded batch may carry.
pub const MAX_FORWARD_BATCH: usize = 65_536;

pub struct RaftRpc {
    replica: Arc<Replica>,
    snapshot_dir: PathBuf,
    receive_seq: AtomicU64,
}

impl RaftRpc {
    pub fn new(replica: Arc<Replica>, snapshot_dir: PathBuf) -> Self {
        RaftRpc {
            replica,
            snapshot_dir,
            receive_seq: AtomicU64::new(0),
        }
    }
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn blob<T: serde::Serialize>(value: &T) -> Result<Response<Blob>, Status> {
    let data = wire::encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(Blob {
        data: data.into(),
        vote_window_ms: 0,
    }))
}

#[tonic::async_trait]
impl RaftService for RaftRpc {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            wire::decode(&req.into_inner().data).map_err(bad_request)?;
        if !rpc.entries.is_empty() {
            let raft = self.replica.raft();
            let max = max_hold(Duration::from_millis(raft.config().heartbeat_interval));
            self.replica
                .apply_backlog()
                .hold(&mut raft.metrics(), applied_index, max)
                .await;
        }
        self.replica.shared.heard_from(&rpc.vote).await;
        let result = self.replica.raft().append_entries(rpc).await;
        // The leader's lease counts on this node's own window (see
        // `crate::lease`), whatever the leader's settings are.
        let mut reply = blob(&result)?;
        reply.get_mut().vote_window_ms = self.replica.raft().config().election_timeout_max;
        Ok(reply)
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: VoteRequest<NodeId> = wire::decode(&req.into_inner().data).map_err(bad_request)?;
        // This node may grant the vote: a lease it holds ends first.
        self.replica.shared.lease.revoke();
        let result = self.replica.raft().vote(rpc).await;
        blob(&result)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Blob>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| bad_request("empty snapshot stream"))??;
        let (vote, meta): SnapshotHeader = wire::decode(&first.header).map_err(bad_request)?;
        self.replica.shared.heard_from(&vote).await;

        let seq = self.receive_seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .snapshot_dir
            .join(format!("recv-{}-{seq}.snap", sanitize(&meta.snapshot_id)));
        let io = |e: std::io::Error| Status::internal(format!("receiving snapshot: {e}"));
        let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
        let mut chunk = first;
        loop {
            file.write_all(&chunk.data).await.map_err(io)?;
            match stream.next().await {
                Some(c) => chunk = c?,
                None => break,
            }
        }
        file.sync_all().await.map_err(io)?;
        drop(file);

        let snapshot = Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path: path.clone() }),
        };
        let result: Result<_, Fatal<NodeId>> = self
            .replica
            .raft()
            .install_full_snapshot(vote, snapshot)
            .await;
        // The state machine keeps what it installed under its own name; a
        // rejected (stale) snapshot is simply dropped.
        if path.exists() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        blob(&result)
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let commands: Vec<Vec<u8>> = req
            .into_inner()
            .commands
            .into_iter()
            .map(|b| b.to_vec())
            .collect();
        if commands.len() > MAX_FORWARD_BATCH {
            return Err(bad_request(format!(
                "forwarded batch of {} commands exceeds {MAX_FORWARD_BATCH}",
                commands.len()
            )));
        }
        // Refuse before proposing, so the follower knows nothing was applied.
        if !self.replica.shared.is_leader() {
            return Err(Status::failed_precondition("not the leader"));
        }
        let mut resp = ForwardResponse::default();
        for r in self.replica.propose_forwarded(commands).await {
            // Leadership moved before the batch was proposed: nothing was
            // applied, and the follower may say so. Any other failure makes
            // the whole batch's outcome unknown to it; its clients retry
            // with their request ids.
            let (index, result) = r.map_err(|e| match e {
                ReplicaError::NoLeader => Status::failed_precondition("not the leader"),
                e => Status::unavailable(e.to_string()),
            })?;
            resp.applied_indexes.push(index);
            resp.results.push(result.into());
        }
        Ok(Response::new(resp))
    }

    async fn read_index(
        &self,
        _req: Request<Empty>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        match self.replica.leader_read_index().await {
            Ok(point) => Ok(Response::new(ReadIndexResponse {
                index: point.index,
                term: point.term,
            })),
            Err(ReplicaError::NoLeader) => Err(Status::failed_precondition("not the leader")),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn timeout_now(
        &self,
        req: Request<TimeoutNowRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = req.into_inner();
        self.replica
            .campaign(req.from, req.term)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(Empty {}))
    }

    async fn capabilities(
        &self,
        _req: Request<Empty>,
    ) -> Result<Response<CapabilitiesResponse>, Status> {
        Ok(Response::new(CapabilitiesResponse {
            rules: self.replica.shared.rules_supported,
        }))
    }
}

/// Snapshot ids become file names; keep them to a safe alphabet.
pub fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}
