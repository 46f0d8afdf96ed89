//! The `Admin` service: consistent backups of the state machine.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use oneid_raft::{Raft, Replica};
use openraft::{BasicNode, SnapshotMeta};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::keyring::Keyring;
use super::writer::Writer;
use super::ApiError;
use crate::command::{Command, Rekey};
use crate::domain::{DomainError, Reason};
use crate::pb;
use crate::pb::admin_server::Admin;
use crate::reader::Reader;

/// Bytes of snapshot file per streamed message, well under the client's
/// default 4 MiB decoding limit.
const PIECE_BYTES: usize = 1 << 20;
/// Longest a backup waits for raft to build its snapshot: a full dump of a
/// 10 M card node takes on the order of a minute; beyond this something is
/// wrong and the operator should hear about it.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the build is re-requested while waiting. A trigger that arrives
/// during a build already under way (one the log policy started, for an
/// older index) is dropped by openraft; asking again once it ends gets ours.
const RETRIGGER: Duration = Duration::from_secs(1);

type Meta = SnapshotMeta<u64, BasicNode>;
type Pieces = Pin<Box<dyn Stream<Item = Result<pb::SnapshotPiece, Status>> + Send>>;

pub struct AdminApi {
    replica: Arc<Replica>,
    writer: Writer,
    reader: Reader,
    keyring: Keyring,
}

impl AdminApi {
    pub fn new(replica: Arc<Replica>, writer: Writer, reader: Reader, keyring: Keyring) -> Self {
        AdminApi {
            replica,
            writer,
            reader,
            keyring,
        }
    }

    fn rekey_status(&self) -> Result<pb::RekeyStatus, ApiError> {
        let state = self.reader.key_state()?;
        Ok(pb::RekeyStatus {
            current_version: state.current,
            target_version: state.next,
            moved_ids: state.moved,
            dropping_aliases: state.next == 0 && self.reader.has_aliases()?,
            node_pepper_versions: self.keyring.hasher().versions(),
        })
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    type SaveSnapshotStream = Pieces;

    async fn save_snapshot(
        &self,
        req: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<Pieces>, Status> {
        let local = req.into_inner().local;
        let replica = self.replica.clone();
        let (tx, rx) = mpsc::channel(4);
        // The work runs behind the response stream: building a big snapshot
        // takes longer than the server's per-request deadline allows a
        // handler to take before it answers.
        tokio::spawn(async move {
            if let Err(status) = stream_snapshot(&replica, local, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn start_rekey(
        &self,
        req: Request<pb::StartRekeyRequest>,
    ) -> Result<Response<pb::RekeyStatus>, Status> {
        let req = req.into_inner();
        let to = req.to_version;
        if to < 2 {
            return Err(ApiError::from(DomainError::new(
                Reason::InvalidArgument,
                format!("to_version {to}: rotations go to version 2 or later"),
            ))
            .into());
        }
        // This node must derive the new keys itself; the leader's migration
        // needs them too and says so in its log if it cannot.
        self.keyring.hasher().require(to).map_err(ApiError::from)?;
        let command = Command::BeginRekey(Rekey { from: to - 1, to });
        self.writer.submit(&req.request_id, command).await?;
        // The status read below is local: catch up with the write first.
        self.writer.linearizable().await?;
        Ok(Response::new(self.rekey_status()?))
    }

    async fn get_rekey_status(
        &self,
        _req: Request<pb::GetRekeyStatusRequest>,
    ) -> Result<Response<pb::RekeyStatus>, Status> {
        self.writer.linearizable().await?;
        Ok(Response::new(self.rekey_status()?))
    }
}

async fn stream_snapshot(
    replica: &Replica,
    local: bool,
    tx: &mpsc::Sender<Result<pb::SnapshotPiece, Status>>,
) -> Result<(), Status> {
    if !local {
        // Without it, a lagging follower would save a state missing writes
        // the cluster acknowledged before the backup was asked for.
        replica
            .linearizable_barrier()
            .await
            .map_err(|e| ApiError::Unavailable(format!("read barrier before the backup: {e}")))?;
    }
    let raft = replica.raft();
    let target = raft.metrics().borrow().last_applied.map(|l| l.index);
    let (meta, mut file) = covering_snapshot(raft, target).await?;
    let io = |e: std::io::Error| ApiError::Internal(format!("reading the snapshot file: {e}"));
    let size = file.metadata().await.map_err(io)?.len();
    let info = pb::SnapshotInfo {
        last_log_index: meta.last_log_id.map(|l| l.index).unwrap_or(0),
        last_log_term: meta.last_log_id.map(|l| l.leader_id.term).unwrap_or(0),
        snapshot_id: meta.snapshot_id.clone(),
        size_bytes: size,
        node_id: replica.node_id(),
    };
    let first = pb::SnapshotPiece {
        info: Some(info),
        ..Default::default()
    };
    if tx.send(Ok(first)).await.is_err() {
        return Ok(()); // the client went away
    }
    let mut sent = 0u64;
    loop {
        let mut buf = vec![0u8; PIECE_BYTES];
        let mut filled = 0;
        // A short read is not the end of the file; fill each piece.
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..]).await.map_err(io)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        sent += filled as u64;
        let piece = pb::SnapshotPiece {
            info: None,
            data: buf,
        };
        if tx.send(Ok(piece)).await.is_err() {
            return Ok(());
        }
    }
    if sent != size {
        // Published snapshot files are never written again; this is a bug
        // or a disk problem, and the client must not keep what it got.
        return Err(ApiError::Internal(format!(
            "snapshot file {} changed while it was sent ({sent} of {size} bytes)",
            meta.snapshot_id
        ))
        .into());
    }
    Ok(())
}

/// The current snapshot once it covers index `target`, opened. Open before
/// the next build replaces (deletes) it: the open file stays readable.
async fn covering_snapshot(
    raft: &Raft,
    target: Option<u64>,
) -> Result<(Meta, tokio::fs::File), Status> {
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let unavailable = |e: &dyn std::fmt::Display| ApiError::Unavailable(e.to_string());
    loop {
        let current = raft.get_snapshot().await.map_err(|e| unavailable(&e))?;
        if let Some(s) = current.filter(|s| s.meta.last_log_id.map(|l| l.index) >= target) {
            match tokio::fs::File::open(&s.snapshot.path).await {
                Ok(f) => return Ok((s.meta, f)),
                // Replaced by a newer one in between: ask for the current one.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ApiError::Internal(format!(
                        "opening snapshot {}: {e}",
                        s.snapshot.path.display()
                    ))
                    .into())
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(ApiError::Unavailable(format!(
                "no snapshot covering index {} after {BUILD_TIMEOUT:?}",
                target.unwrap_or(0)
            ))
            .into());
        }
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| unavailable(&e))?;
        // Either outcome leads back to the check above.
        let _ = raft
            .wait(Some(RETRIGGER))
            .metrics(
                |m| m.snapshot.map(|l| l.index) >= target,
                "snapshot for a backup",
            )
            .await;
    }
}
