//! The `Cluster` service: what an operator asks a node about itself.

use std::sync::Arc;

use oneid_raft::capabilities::MemberRules;
use oneid_raft::Replica;
use openraft::ServerState;
use tonic::{Request, Response, Status};

use super::writer::invalid;
use super::ApiError;
use crate::domain::RULES_ORIGINAL;
use crate::pb;
use crate::pb::cluster_server::Cluster;
use crate::reader::Reader;

/// Bound on an operator-requested leadership transfer: catch-up of the
/// target plus, in larger clusters, the old leader's lease running out.
const TRANSFER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

pub struct ClusterApi {
    replica: Arc<Replica>,
    reader: Reader,
}

impl ClusterApi {
    pub fn new(replica: Arc<Replica>, reader: Reader) -> Self {
        ClusterApi { replica, reader }
    }
}

pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let m = self.replica.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| pb::Member {
                node_id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let state_digest = if req.into_inner().include_digest {
            let reader = self.reader.clone();
            let (index, digest) = tokio::task::spawn_blocking(move || reader.state_digest())
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(ApiError::from)?;
            format!("{index}:{digest}")
        } else {
            String::new()
        };
        let last_log_index = m.last_log_index.unwrap_or(0);
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, matched)| {
                        let matched_index = matched.map(|l| l.index).unwrap_or(0);
                        pb::Replication {
                            node_id: *id,
                            matched_index,
                            lag: last_log_index.saturating_sub(matched_index),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            data_bytes: self.reader.data_bytes(),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            replication,
            millis_since_quorum_ack: m
                .millis_since_quorum_ack
                .map(|ms| ms.min(i64::MAX as u64) as i64)
                .unwrap_or(-1),
            node_id: m.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            members,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            last_log_index,
            role: role_name(m.state).to_string(),
            state_digest,
            rules_version: self.reader.rules_version().map_err(ApiError::from)?,
            rules_supported: self.replica.rules_supported(),
        }))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let req = req.into_inner();
        if req.node_id == 0 {
            return Err(invalid("node_id must be positive").into());
        }
        let addr: std::net::SocketAddr = req
            .addr
            .parse()
            .map_err(|_| Status::from(invalid(format!("addr '{}' is not HOST:PORT", req.addr))))?;
        // Raft re-adds a member as it is, keeping its old address: a retry
        // with the same address is answered as a fresh add (once caught
        // up), a different one would be silently ignored.
        let known = self
            .replica
            .raft()
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&req.node_id)
            .map(|n| n.addr.clone());
        if let Some(known) = known.filter(|known| *known != addr.to_string()) {
            return Err(ApiError::Membership(format!(
                "node {} is already a member at {known}; remove it before adding it at {addr}",
                req.node_id
            ))
            .into());
        }
        let in_force = self.reader.rules_version().map_err(ApiError::from)?;
        if in_force > RULES_ORIGINAL {
            // Every build applies the first rules; past them, a node whose
            // build does not know the rules in force would stop at the
            // snapshot or entry that carries them.
            let member = MemberRules {
                id: req.node_id,
                addr: addr.to_string(),
                rules: self.replica.rules_at(&addr.to_string()).await,
            };
            super::rules::judge(in_force, &[member])?;
        }
        let log_index = self
            .replica
            .add_learner(req.node_id, addr.to_string())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::MembershipResponse { log_index }))
    }

    async fn change_voters(
        &self,
        req: Request<pb::ChangeVotersRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let voters: std::collections::BTreeSet<u64> = req.into_inner().voters.into_iter().collect();
        if voters.is_empty() || voters.contains(&0) {
            // INVALID_ARGUMENT, like bad input anywhere else (a refused
            // change is FAILED_PRECONDITION `MEMBERSHIP`).
            return Err(invalid("voters must name at least one node, each id positive").into());
        }
        let log_index = self
            .replica
            .change_voters(voters)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::MembershipResponse { log_index }))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let to = Some(req.into_inner().to).filter(|t| *t != 0);
        let new_leader = self
            .replica
            .transfer_leadership(to, TRANSFER_WITHIN)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::TransferLeaderResponse { new_leader }))
    }
}
