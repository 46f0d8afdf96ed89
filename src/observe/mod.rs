//! What a running node tells operators about itself: Prometheus metrics and
//! HTTP readiness on a side port, gRPC health and reflection on the main one.
//!
//! One background task ([`watch_raft`]) follows raft's metrics channel and is
//! the only writer of the raft gauges, the readiness verdict and the gRPC
//! health statuses, so `/ready`, `/metrics` and `grpc.health.v1.Health` never
//! disagree for longer than one pass of that task.

pub mod grpc;
pub mod health;
pub mod http;
pub mod log;
pub mod metrics;
pub mod request_id;

use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, RaftMetrics, ServerState};
use serde::Serialize;
use tokio::sync::watch;

use oneid_raft::apply_backlog::ApplyBacklog;
use oneid_raft::reads::ReadIndexCounts;
use oneid_raft::types::Raft;
use oneid_storage::Db;

use crate::api::cluster::role_name;
use crate::security::revocation::Revocations;
pub use metrics::Metrics;

/// Shared by the HTTP handlers, the gRPC layer and the raft watcher.
pub struct Observer {
    pub metrics: Metrics,
    pub db: Arc<Db>,
    /// Read on every scrape so the raft gauges are never behind the
    /// watcher's pacing.
    pub raft: Raft,
    /// The follower's apply brake, for its hold counters.
    pub apply_backlog: Arc<ApplyBacklog>,
    /// How this node, as leader, confirmed its read indexes.
    pub read_counts: Arc<ReadIndexCounts>,
    /// The node's revocation lists, when it has them (`tls.crl`).
    pub revocations: Option<Revocations>,
    readiness: watch::Sender<Readiness>,
}

impl Observer {
    pub fn new(
        node_id: u64,
        db: Arc<Db>,
        raft: Raft,
        apply_backlog: Arc<ApplyBacklog>,
        read_counts: Arc<ReadIndexCounts>,
        revocations: Option<Revocations>,
    ) -> anyhow::Result<Arc<Self>> {
        let metrics = Metrics::new(node_id)?;
        let (readiness, _) = watch::channel(Readiness::starting(node_id));
        Ok(Arc::new(Observer {
            metrics,
            db,
            raft,
            apply_backlog,
            read_counts,
            revocations,
            readiness,
        }))
    }

    /// The watcher's latest verdict.
    pub fn readiness(&self) -> Readiness {
        self.readiness.borrow().clone()
    }

    fn publish(&self, r: Readiness) {
        self.metrics.ready.set(i64::from(r.ready));
        self.readiness.send_replace(r);
    }
}

/// Whether this node should receive client traffic, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// "ok", or what keeps the node from being ready.
    pub reason: String,
    pub node_id: u64,
    pub role: &'static str,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub last_applied: u64,
    /// The commit index as this node knows it (on a follower: the leader's
    /// commit index from the last AppendEntries it accepted).
    pub committed: Option<u64>,
}

impl Readiness {
    fn starting(node_id: u64) -> Self {
        Readiness {
            ready: false,
            reason: "starting".into(),
            node_id,
            role: "starting",
            leader_id: None,
            term: 0,
            last_applied: 0,
            committed: None,
        }
    }

    fn not_ready(mut self, reason: impl Into<String>) -> Self {
        self.ready = false;
        self.reason = reason.into();
        self
    }
}

/// Entries a node may trail its commit index by and still count as caught
/// up. Under write load commit runs a few entries ahead of apply at every
/// instant (the pipelined batches); counting that as lag made `/ready` flap
/// every few milliseconds. A node really catching up trails by far more.
const APPLY_SLACK: u64 = 8;

/// Decides readiness from a metrics snapshot and this node's commit index
/// (`None` when the raft core could not be asked).
///
/// Ready means: a leader is known, this node has applied everything it knows
/// to be committed, and, when this node is the leader, a quorum acknowledged
/// it within `max_quorum_ack`. The last condition matters because an openraft
/// 0.9 leader that lost its followers keeps calling itself leader; without it
/// a partitioned leader would stay "ready" while every write times out.
pub fn assess(
    m: &RaftMetrics<u64, BasicNode>,
    committed: Option<Option<u64>>,
    max_quorum_ack: Duration,
) -> Readiness {
    let last_applied = oneid_raft::types::applied_index(m);
    let base = Readiness {
        ready: true,
        reason: "ok".into(),
        node_id: m.id,
        role: role_name(m.state),
        leader_id: m.current_leader,
        term: m.current_term,
        last_applied,
        committed: committed.flatten(),
    };
    if let Err(e) = &m.running_state {
        return base.not_ready(format!("raft stopped: {e}"));
    }
    let Some(leader) = m.current_leader else {
        return base.not_ready("no known leader");
    };
    // A leader that removed itself steps down to a learner that still names
    // itself leader, and would otherwise look ready while every request to it
    // finds no leader to go to.
    if m.membership_config.membership().get_node(&m.id).is_none() {
        return base
            .not_ready("not a member of the cluster (removed, or its addition not applied yet)");
    }
    if m.state == ServerState::Leader && leader == m.id {
        match m.millis_since_quorum_ack {
            None => return base.not_ready("leader not yet acknowledged by a quorum"),
            Some(ms) if ms > max_quorum_ack.as_millis() as u64 => {
                return base.not_ready(format!("leader has not heard from a quorum for {ms} ms"));
            }
            Some(_) => {}
        }
    }
    let Some(committed) = committed else {
        return base.not_ready("raft core did not report its commit index");
    };
    let committed = committed.unwrap_or(0);
    if last_applied.saturating_add(APPLY_SLACK) < committed {
        return base.not_ready(format!(
            "catching up: applied {last_applied} of {committed} committed"
        ));
    }
    base
}

/// How often readiness is re-evaluated when raft reports nothing new; it
/// bounds how stale `/ready` can be for a leader whose quorum went silent.
const RECHECK: Duration = Duration::from_millis(500);
/// Least time between two passes: under heavy writes the metrics channel
/// changes on every raft-core loop, and each pass asks the core for its
/// commit index.
const PACE: Duration = Duration::from_millis(50);
/// A raft core that does not answer within this is treated as unhealthy.
const CORE_ANSWER: Duration = Duration::from_secs(2);

/// Follows raft until `stop` flips or raft shuts down, keeping the raft
/// gauges, the leader-change counter, readiness and gRPC health current.
pub async fn watch_raft(
    obs: Arc<Observer>,
    health: tonic_health::server::HealthReporter,
    max_quorum_ack: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let raft = obs.raft.clone();
    let mut changes = raft.metrics();
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leader_seen: Option<(u64, u64)> = None;
    let mut published: Option<bool> = None;
    loop {
        let m = changes.borrow_and_update().clone();
        obs.metrics.observe_raft(&m);
        if let Some(leader) = m.current_leader {
            // Counted like etcd's leader_changes_seen: the first leader a
            // node learns counts, and a new term with the same leader is
            // still a new election.
            if leader_seen != Some((m.current_term, leader)) {
                obs.metrics.raft_leader_changes.inc();
            }
            leader_seen = Some((m.current_term, leader));
        }

        let committed = tokio::time::timeout(
            CORE_ANSWER,
            raft.with_raft_state(|st| st.committed.as_ref().map(|l| l.index)),
        )
        .await
        .ok()
        .and_then(Result::ok);
        if let Some(c) = committed {
            obs.metrics
                .raft_committed_index
                .set(metrics::gauge_value(c.unwrap_or(0)));
        }
        let r = assess(&m, committed, max_quorum_ack);
        if published != Some(r.ready) {
            tracing::info!(ready = r.ready, reason = %r.reason, "readiness changed");
            health::publish(&health, r.ready).await;
            published = Some(r.ready);
        }
        obs.publish(r);

        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        tokio::time::sleep(PACE).await;
    }
    // Shutting down (or raft gone): stop attracting traffic while in-flight
    // requests drain.
    let r = obs.readiness().not_ready("shutting down");
    health::publish(&health, false).await;
    obs.publish(r);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};

    use super::*;

    /// Node 1's metrics in a cluster of voters 1, 2 and 3.
    fn metrics(
        state: ServerState,
        leader: Option<u64>,
        applied: u64,
    ) -> RaftMetrics<u64, BasicNode> {
        let mut m = RaftMetrics::new_initial(1);
        m.state = state;
        m.current_leader = leader;
        m.current_term = 3;
        m.last_applied = Some(LogId::new(CommittedLeaderId::new(3, 2), applied));
        m.membership_config = Arc::new(voters(&[1, 2, 3]));
        m
    }

    fn voters(ids: &[u64]) -> StoredMembership<u64, BasicNode> {
        let config: BTreeSet<u64> = ids.iter().copied().collect();
        StoredMembership::new(None, Membership::new(vec![config], None))
    }

    const BOUND: Duration = Duration::from_secs(2);

    #[test]
    fn follower_with_leader_and_applied_everything_is_ready() {
        let r = assess(
            &metrics(ServerState::Follower, Some(2), 10),
            Some(Some(10)),
            BOUND,
        );
        assert!(r.ready, "{r:?}");
        assert_eq!(r.reason, "ok");
    }

    #[test]
    fn no_leader_is_not_ready() {
        let r = assess(
            &metrics(ServerState::Candidate, None, 10),
            Some(Some(10)),
            BOUND,
        );
        assert!(!r.ready);
        assert!(r.reason.contains("no known leader"), "{}", r.reason);
    }

    #[test]
    fn apply_lag_is_not_ready() {
        let r = assess(
            &metrics(ServerState::Follower, Some(2), 7),
            Some(Some(100)),
            BOUND,
        );
        assert!(!r.ready);
        assert!(r.reason.contains("applied 7 of 100"), "{}", r.reason);
    }

    #[test]
    fn the_pipelined_entries_under_load_are_not_lag() {
        let ready = |applied, committed| {
            assess(
                &metrics(ServerState::Follower, Some(2), applied),
                Some(Some(committed)),
                BOUND,
            )
            .ready
        };
        assert!(ready(92, 100));
        assert!(!ready(91, 100));
    }

    #[test]
    fn unknown_commit_index_is_not_ready() {
        let r = assess(&metrics(ServerState::Follower, Some(2), 7), None, BOUND);
        assert!(!r.ready);
    }

    #[test]
    fn a_removed_leader_is_not_ready() {
        // What openraft leaves after the leader commits a membership
        // without itself: a learner that still names itself leader.
        let mut m = metrics(ServerState::Learner, Some(1), 10);
        m.membership_config = Arc::new(voters(&[2, 3, 4]));
        let r = assess(&m, Some(Some(10)), BOUND);
        assert!(!r.ready, "{r:?}");
        assert!(r.reason.contains("not a member"), "{}", r.reason);
    }

    #[test]
    fn leader_needs_a_recent_quorum_ack() {
        let mut m = metrics(ServerState::Leader, Some(1), 10);
        m.millis_since_quorum_ack = Some(100);
        assert!(assess(&m, Some(Some(10)), BOUND).ready);
        m.millis_since_quorum_ack = Some(5_000);
        let r = assess(&m, Some(Some(10)), BOUND);
        assert!(!r.ready);
        assert!(r.reason.contains("quorum"), "{}", r.reason);
        m.millis_since_quorum_ack = None;
        assert!(!assess(&m, Some(Some(10)), BOUND).ready);
    }
}
