//! Coalesced read barriers. Every linearizable read needs the leader to
//! confirm, with a quorum round, that it still leads (ReadIndex). Reads that
//! arrive while a round is running wait for the next round, which starts after
//! they arrived, so one round serves everyone queued behind it.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::replica::Shared;
use crate::ReplicaError;

type Waiter = oneshot::Sender<Result<u64, ReplicaError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Local reads: the leader confirms itself; a follower asks the leader.
    AnyRole,
    /// ReadIndex requests from followers: only a leader may answer, so two
    /// nodes with stale views can never bounce a request between them.
    LeaderOnly,
}

struct State {
    waiters: Vec<Waiter>,
    running: bool,
}

pub struct ReadBarrier {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    mode: ReadMode,
    state: Mutex<State>,
}

impl ReadBarrier {
    pub fn new(shared: Arc<Shared>, mode: ReadMode) -> ReadBarrier {
        ReadBarrier {
            inner: Arc::new(Inner {
                shared,
                mode,
                state: Mutex::new(State {
                    waiters: Vec::new(),
                    running: false,
                }),
            }),
        }
    }

    /// The log index a read arriving now must wait for.
    pub async fn read_index(&self) -> Result<u64, ReplicaError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            st.waiters.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            tokio::spawn(self.inner.clone().drive());
        }
        rx.await.map_err(|_| ReplicaError::ShuttingDown)?
    }
}

impl Inner {
    async fn drive(self: Arc<Self>) {
        loop {
            // One pass of the scheduler first: reads already decoded and on
            // their way here join this round instead of starting the next.
            // Each round is a quorum of heartbeats (and, on a follower, an
            // RPC to the leader); fewer rounds left ~10 % more CPU for
            // counts, at no timer's latency.
            tokio::task::yield_now().await;
            let batch = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.waiters.is_empty() {
                    st.running = false;
                    return;
                }
                std::mem::take(&mut st.waiters)
            };
            let result = self.one_round().await;
            for w in batch {
                let _ = w.send(result.clone());
            }
        }
    }

    async fn one_round(&self) -> Result<u64, ReplicaError> {
        let s = &self.shared;
        let round = async {
            if s.is_leader() {
                s.leader_read_index().await
            } else if self.mode == ReadMode::LeaderOnly {
                Err(ReplicaError::NoLeader)
            } else {
                s.remote_read_index().await
            }
        };
        tokio::time::timeout(s.request_timeout, round)
            .await
            .unwrap_or(Err(ReplicaError::Timeout("read barrier")))
    }
}
