//! Leadership transfer (Raft thesis §3.10). A leader that is about to stop
//! hands over instead of vanishing: new writes wait at the gate, the chosen
//! voter catches up with the whole log, then campaigns at once. Writes pause
//! for one catch-up and one election round trip, not for a leader lease plus
//! an election timeout as after a crash.

use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::RaftMetrics;
use openraft::Vote;

use crate::pb::raft_service_client::RaftServiceClient;
use crate::pb::TimeoutNowRequest;
use crate::replica::Shared;
use crate::types::NodeId;
use crate::{Replica, ReplicaError};

/// How long a target keeps re-campaigning. Followers refuse votes while the
/// old leader's lease (the election timeout) lasts; in clusters of five or
/// more the target needs some of them, so it retries until those leases
/// have run out.
const CAMPAIGN_FOR: Duration = Duration::from_secs(3);
/// Between campaign attempts: long enough for a vote round on any sane
/// network, short enough to catch the first expired lease.
const CAMPAIGN_RETRY: Duration = Duration::from_millis(300);

type Metrics = RaftMetrics<NodeId, BasicNode>;

impl Replica {
    /// Hands leadership to `to` (or the most caught-up other voter) and
    /// returns the new leader. Must be called on the leader. On failure this
    /// node may still lead, and writes flow again.
    pub async fn transfer_leadership(
        &self,
        to: Option<NodeId>,
        within: Duration,
    ) -> Result<NodeId, ReplicaError> {
        let shared = &self.shared;
        let me = shared.node_id;
        if !shared.is_leader() {
            return Err(ReplicaError::Transfer(match shared.leader() {
                Some((id, addr)) => format!("this node is not the leader; node {id} at {addr} is"),
                None => "this node is not the leader and no leader is known".into(),
            }));
        }
        let (target, addr) = choose_target(&shared.raft.metrics().borrow(), me, to)?;
        let deadline = Instant::now() + within;

        // Writes queued or forwarded from now on wait here; once leadership
        // has moved they are forwarded to the new leader.
        let _gate = tokio::time::timeout_at(deadline.into(), shared.gate.write())
            .await
            .map_err(|_| ReplicaError::Timeout("in-flight writes before a leadership transfer"))?;

        let last = shared.raft.metrics().borrow().last_log_index;
        wait_metrics(shared, deadline, "the target to catch up", |m| {
            matched(m, target) >= last
        })
        .await?;

        // This node must not win the election it is handing over: once the
        // target's campaign makes it step down, its own election timer would
        // race the target's retries, and as the holder of the newest log it
        // can win every time (seen under load: the old leader re-elected
        // ten times in three seconds, the transfer timing out). Elections
        // come back on when this call returns, whatever its outcome.
        let _no_elect = SuspendElections::new(&shared.raft);
        // The target will ignore the window in which it promised the
        // followers' part of this node's lease.
        let term = shared.raft.metrics().borrow().vote.leader_id.term;
        shared.lease.give_up_term(term);
        let channel = shared
            .channels
            .get(&addr)
            .map_err(|e| ReplicaError::Transfer(format!("target address {addr}: {e}")))?;
        let mut req = tonic::Request::new(TimeoutNowRequest { from: me, term });
        req.set_timeout(remaining(deadline));
        RaftServiceClient::new(channel)
            .timeout_now(req)
            .await
            .map_err(|s| ReplicaError::Transfer(format!("node {target}: {}", s.message())))?;

        let m = wait_metrics(shared, deadline, "a new leader", |m| {
            m.current_leader.is_some_and(|l| l != me)
        })
        .await?;
        m.current_leader
            .ok_or_else(|| ReplicaError::Transfer("no leader after the transfer".into()))
    }

    /// The receiving end of a transfer: campaign now, and again while the
    /// remaining followers' leases from the old leader run out. Returns as
    /// soon as the campaign has started. Only for the leader of `term`
    /// this node last heard from (see [`Shared::elect_for`]).
    pub async fn campaign(&self, from: NodeId, term: u64) -> Result<(), ReplicaError> {
        let me = self.shared.node_id;
        let is_voter = self
            .shared
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == me);
        if !is_voter {
            return Err(ReplicaError::Transfer(format!("node {me} is not a voter")));
        }
        let leader = Vote::new_committed(term, from);
        self.shared.elect_for(&leader).await?;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let until = Instant::now() + CAMPAIGN_FOR;
            let settled = |m: &Metrics| m.current_leader.is_some_and(|l| l != from);
            loop {
                let _ = shared
                    .raft
                    .wait(Some(CAMPAIGN_RETRY))
                    .metrics(settled, "a leader after campaigning")
                    .await;
                if Instant::now() >= until || settled(&shared.raft.metrics().borrow()) {
                    return;
                }
                if shared.elect_for(&leader).await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
}

impl Shared {
    /// Notes the leadership an AppendEntries or a snapshot came from,
    /// before raft sees it. Keeps the highest.
    pub(crate) async fn heard_from(&self, leader: &Vote<NodeId>) {
        let mut heard = self.heard.lock().await;
        if heard.as_ref().is_none_or(|h| leader > h) {
            *heard = Some(*leader);
        }
    }

    /// Campaigns at once, ignoring the window in which this node promised
    /// not to vote against the leader it last heard from, so only when
    /// that leader is `leader` (which gave up its lease before asking):
    /// a late transfer request from an earlier leader or term must not
    /// unseat a leader that counts on this node's window. The lock keeps
    /// the check and the election in order with raft's handling of
    /// AppendEntries: any request from another leader not seen by the
    /// check reaches raft after the election does.
    pub(crate) async fn elect_for(&self, leader: &Vote<NodeId>) -> Result<(), ReplicaError> {
        let heard = self.heard.lock().await;
        if heard.as_ref() != Some(leader) {
            return Err(ReplicaError::Transfer(format!(
                "asked to campaign by the leader of term {} (node {}), \
                 but the last leader heard from is {}",
                leader.leader_id.term,
                leader.leader_id.voted_for().unwrap_or_default(),
                heard.map_or_else(|| "none".to_string(), |h| h.to_string())
            )));
        }
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| ReplicaError::Fatal(e.to_string()))?;
        drop(heard);
        Ok(())
    }
}

/// Keeps this node from starting elections while it lives.
struct SuspendElections<'a> {
    raft: &'a crate::types::Raft,
}

impl<'a> SuspendElections<'a> {
    fn new(raft: &'a crate::types::Raft) -> Self {
        raft.runtime_config().elect(false);
        SuspendElections { raft }
    }
}

impl Drop for SuspendElections<'_> {
    fn drop(&mut self) {
        self.raft.runtime_config().elect(true);
    }
}

/// The voter to hand over to: the one asked for, else the most caught-up.
fn choose_target(
    m: &Metrics,
    me: NodeId,
    to: Option<NodeId>,
) -> Result<(NodeId, String), ReplicaError> {
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().filter(|v| *v != me).collect();
    let target = match to {
        Some(t) if t == me => {
            return Err(ReplicaError::Transfer(format!("node {me} already leads")))
        }
        Some(t) if voters.contains(&t) => t,
        Some(t) => {
            return Err(ReplicaError::Transfer(format!(
                "node {t} is not a voter of this cluster"
            )))
        }
        None => voters
            .iter()
            .copied()
            .max_by_key(|v| matched(m, *v))
            .ok_or_else(|| {
                ReplicaError::Transfer("there is no other voter to hand leadership to".into())
            })?,
    };
    let addr = membership
        .get_node(&target)
        .map(|n| n.addr.clone())
        .ok_or_else(|| ReplicaError::Transfer(format!("node {target} has no address")))?;
    Ok((target, addr))
}

/// The last log index the leader knows `node` holds.
pub(crate) fn matched(m: &Metrics, node: NodeId) -> Option<u64> {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&node))
        .and_then(|l| l.as_ref())
        .map(|l| l.index)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

async fn wait_metrics(
    shared: &Shared,
    deadline: Instant,
    what: &'static str,
    cond: impl Fn(&Metrics) -> bool + Send,
) -> Result<Metrics, ReplicaError> {
    shared
        .raft
        .wait(Some(remaining(deadline)))
        .metrics(cond, what)
        .await
        .map_err(|e| match e {
            openraft::metrics::WaitError::Timeout(..) => {
                ReplicaError::Transfer(format!("timed out waiting for {what}"))
            }
            openraft::metrics::WaitError::ShuttingDown => ReplicaError::ShuttingDown,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{LogId, Membership, ServerState, StoredMembership};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    fn metrics(voters: &[NodeId], learners: &[NodeId], matched: &[(NodeId, u64)]) -> Metrics {
        let mut m = Metrics::new_initial(1);
        let nodes: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .chain(learners)
            .map(|id| {
                (
                    *id,
                    BasicNode {
                        addr: format!("127.0.0.1:{}", 7000 + id),
                    },
                )
            })
            .collect();
        let voter_set: BTreeSet<NodeId> = voters.iter().copied().collect();
        let membership = Membership::new(vec![voter_set], nodes);
        m.membership_config = Arc::new(StoredMembership::new(None, membership));
        m.state = ServerState::Leader;
        m.replication = Some(
            matched
                .iter()
                .map(|(id, i)| {
                    (
                        *id,
                        Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), *i)),
                    )
                })
                .collect(),
        );
        m
    }

    #[test]
    fn picks_the_most_caught_up_voter_never_a_learner() {
        let m = metrics(&[1, 2, 3], &[4], &[(2, 10), (3, 12), (4, 99)]);
        assert_eq!(choose_target(&m, 1, None).unwrap().0, 3);
        assert_eq!(
            choose_target(&m, 1, Some(2)).unwrap(),
            (2, "127.0.0.1:7002".into())
        );
    }

    #[test]
    fn refuses_self_learners_strangers_and_lonely_leaders() {
        let m = metrics(&[1, 2, 3], &[4], &[(2, 10), (3, 12)]);
        for bad in [Some(1), Some(4), Some(9)] {
            assert!(matches!(
                choose_target(&m, 1, bad),
                Err(ReplicaError::Transfer(_))
            ));
        }
        let alone = metrics(&[1], &[4], &[]);
        assert!(matches!(
            choose_target(&alone, 1, None),
            Err(ReplicaError::Transfer(_))
        ));
    }
}
