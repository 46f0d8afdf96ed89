//! Group commit: concurrent client commands are coalesced into one log entry,
//! so one fsync (and one replication round) serves many writes, and each
//! caller gets its own result back.
//!
//! While up to `max_inflight` batches are in raft, new commands queue; the
//! moment a slot frees, everything queued (up to `max_batch`) becomes the next
//! entry. Batches therefore grow with load and stay at one command when idle,
//! adding no latency.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::replica::Shared;
use crate::ReplicaError;

type Reply = oneshot::Sender<Result<(u64, Vec<u8>), ReplicaError>>;

struct Pending {
    command: Vec<u8>,
    reply: Reply,
    /// Sent here by a follower that took this node for the leader. It is
    /// never forwarded on: a leader that lost leadership while the batch
    /// waited would otherwise forward it to the new leader, whose own
    /// in-flight forwards may be waiting on this node — a cycle only the
    /// request timeout breaks.
    forwarded: bool,
}

pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
    inflight: Arc<Semaphore>,
}

/// Queue depth before callers wait: bounds memory under a flood.
const QUEUE: usize = 16_384;

impl Proposer {
    pub fn start(shared: Arc<Shared>, max_batch: usize, max_inflight: usize) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let inflight = Arc::new(Semaphore::new(max_inflight.max(1)));
        tokio::spawn(run(rx, shared.clone(), inflight.clone(), max_batch.max(1)));
        Proposer {
            tx,
            shared,
            inflight,
        }
    }

    pub async fn propose(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                command,
                reply,
                forwarded: false,
            })
            .await
            .map_err(|_| ReplicaError::ShuttingDown)?;
        rx.await.map_err(|_| ReplicaError::ShuttingDown)?
    }

    /// Queues several commands at once (a follower's forwarded batch): they
    /// coalesce with everything else queued here into the next entries.
    pub async fn propose_many(
        &self,
        commands: Vec<Vec<u8>>,
        forwarded: bool,
    ) -> Vec<Result<(u64, Vec<u8>), ReplicaError>> {
        let mut receivers = Vec::with_capacity(commands.len());
        for command in commands {
            let (reply, rx) = oneshot::channel();
            let pending = Pending {
                command,
                reply,
                forwarded,
            };
            if self.tx.send(pending).await.is_err() {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Err(ReplicaError::ShuttingDown));
                receivers.push(rx);
            } else {
                receivers.push(rx);
            }
        }
        let mut out = Vec::with_capacity(receivers.len());
        for rx in receivers {
            out.push(rx.await.unwrap_or(Err(ReplicaError::ShuttingDown)));
        }
        out
    }

    /// A caller-made batch, proposed as one entry.
    pub async fn propose_batch(
        &self,
        commands: Vec<Vec<u8>>,
    ) -> Result<Vec<(u64, Vec<u8>)>, ReplicaError> {
        let _permit = self
            .inflight
            .acquire()
            .await
            .map_err(|_| ReplicaError::ShuttingDown)?;
        submit(&self.shared, commands, true, None).await
    }
}

/// Proposes locally when this node leads, else forwards to the leader.
/// `queued` (when given) is sent once nothing proposed after this batch can
/// be ordered before it: locally, when the entry is in raft's queue; when
/// forwarded, only once the leader has answered (two forwarded batches in
/// flight could reach the leader's queue in either order).
async fn submit(
    shared: &Shared,
    commands: Vec<Vec<u8>>,
    may_forward: bool,
    queued: Option<oneshot::Sender<()>>,
) -> Result<Vec<(u64, Vec<u8>)>, ReplicaError> {
    let _gate = shared.gate.read().await;
    if shared.is_leader() {
        shared.propose_here(commands, queued).await
    } else if may_forward {
        shared.forward(commands).await
    } else {
        // Nothing was proposed: the follower retries with the new leader.
        Err(ReplicaError::NoLeader)
    }
}

async fn run(
    mut rx: mpsc::Receiver<Pending>,
    shared: Arc<Shared>,
    inflight: Arc<Semaphore>,
    max_batch: usize,
) {
    // Each batch waits until the one formed before it is queued in raft:
    // spawned tasks run in no set order (tokio runs the newest first), and
    // one caller's commands (an import request) span several batches that
    // must apply in the order they were sent — a rule such as "a sixth
    // card needs strict verification" decides by what came before. A
    // 10 M-card import refused one row because of it.
    let mut before: Option<oneshot::Receiver<()>> = None;
    while let Some(first) = rx.recv().await {
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        // Everything that arrived while we waited for a slot joins this batch.
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let shared = shared.clone();
        let (queued, next) = oneshot::channel();
        let after = before.replace(next);
        tokio::spawn(async move {
            if let Some(after) = after {
                // Sent or dropped: either way the batch before is queued or
                // was never proposed.
                let _ = after.await;
            }
            let may_forward = !batch.iter().any(|p| p.forwarded);
            let (commands, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.command, p.reply)).unzip();
            match submit(&shared, commands, may_forward, Some(queued)).await {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
