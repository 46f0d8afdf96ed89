//! Coalesced read barriers. Every linearizable read needs the leader to
//! confirm that it still leads (ReadIndex): from its lease when it holds
//! one (see [`crate::lease`]), else with a quorum round. Reads that arrive
//! while a round is running wait for the next round, which starts after
//! they arrived, so one round serves everyone queued behind it.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::replica::Shared;
use crate::turns;
use crate::ReplicaError;

/// Read indexes a leader answered, by how it confirmed it still leads.
#[derive(Debug, Default)]
pub struct ReadIndexCounts {
    /// From its lease, without a round (see [`crate::lease`]).
    pub lease: AtomicU64,
    /// With a quorum round (one round may serve many).
    pub round: AtomicU64,
}

/// Where a linearizable read must have caught up to: a log index, and the
/// term of the leader's entry there (0: not known). A node holding that
/// very entry holds the leader's log up to it (Log Matching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPoint {
    pub index: u64,
    pub term: u64,
}

type Waiter = oneshot::Sender<Result<ReadPoint, ReplicaError>>;

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
    /// How many reads the last round served.
    last_round: usize,
}

/// Yields until as many reads wait as the last round served (at least one
/// turn: without it counts cost ~10 % more CPU; at most [`turns::TURNS`]).
/// Each round is a quorum of heartbeats (and, on a follower, an RPC to the
/// leader), so reads on their way join this one instead of starting the
/// next.
async fn gather(state: &Mutex<State>) {
    turns::yield_until(|| {
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.waiters.len() >= st.last_round
    })
    .await;
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
                    last_round: 0,
                }),
            }),
        }
    }

    /// The log index a read arriving now must wait for.
    pub async fn read_index(&self) -> Result<ReadPoint, ReplicaError> {
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
            gather(&self.state).await;
            let batch = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.waiters.is_empty() {
                    st.running = false;
                    return;
                }
                st.last_round = st.waiters.len();
                std::mem::take(&mut st.waiters)
            };
            let result = self.one_round().await;
            for w in batch {
                let _ = w.send(result.clone());
            }
        }
    }

    async fn one_round(&self) -> Result<ReadPoint, ReplicaError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(waiting: usize, last_round: usize) -> Arc<Mutex<State>> {
        Arc::new(Mutex::new(State {
            waiters: (0..waiting).map(|_| oneshot::channel().0).collect(),
            running: true,
            last_round,
        }))
    }

    /// Adds one waiting read after `n` scheduler turns.
    fn late_read(state: &Arc<Mutex<State>>, n: u32) {
        let state = state.clone();
        turns::after_turns(n, move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.waiters.push(oneshot::channel().0);
        });
    }

    fn waiting(state: &Mutex<State>) -> usize {
        state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiters
            .len()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_round_gathers_reads_on_their_way_up_to_the_last_rounds_size() {
        // Fewer wait than the last round served: reads arriving within the
        // turns join.
        let st = state(1, 3);
        late_read(&st, 0);
        late_read(&st, 4);
        gather(&st).await;
        assert_eq!(waiting(&st), 3);

        // As many as last time: one turn, as before (the read already
        // runnable joins, the later one does not).
        let st = state(2, 2);
        late_read(&st, 0);
        late_read(&st, 3);
        gather(&st).await;
        assert_eq!(waiting(&st), 3);

        // Never more than the turns, whoever is missing.
        let st = state(1, 64);
        late_read(&st, turns::TURNS + 5);
        gather(&st).await;
        assert_eq!(waiting(&st), 1);
    }
}
