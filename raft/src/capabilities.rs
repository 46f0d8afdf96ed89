//! What each member's build can apply. The application moves the cluster to
//! a newer revision of its replicated rules only once every member reports
//! it can apply that revision: a member that could not would have to stop
//! applying the log (it must never decide an entry differently from its
//! peers), and the cluster would lose it until it is upgraded.

use std::time::Duration;

use crate::pb::raft_service_client::RaftServiceClient;
use crate::pb::Empty;
use crate::types::NodeId;
use crate::Replica;

/// Longest one member has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// One member's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRules {
    pub id: NodeId,
    pub addr: String,
    /// The newest rules revision its build applies, or why it is not known.
    pub rules: Result<u32, String>,
}

impl Replica {
    /// The newest rules revision this build applies.
    pub fn rules_supported(&self) -> u32 {
        self.shared.rules_supported
    }

    /// Every member's (voters and learners, as this node knows the
    /// membership) newest rules revision, asked in parallel.
    pub async fn members_rules(&self) -> Vec<MemberRules> {
        let members: Vec<(NodeId, String)> = {
            let m = self.shared.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect()
        };
        let asks = members.into_iter().map(|(id, addr)| async move {
            let rules = if id == self.shared.node_id {
                Ok(self.shared.rules_supported)
            } else {
                self.rules_at(&addr).await
            };
            MemberRules { id, addr, rules }
        });
        futures::future::join_all(asks).await
    }

    /// The newest rules revision the node at `addr` applies.
    pub async fn rules_at(&self, addr: &str) -> Result<u32, String> {
        let channel = self
            .shared
            .channels
            .get(addr)
            .map_err(|e| format!("address {addr}: {e}"))?;
        let mut req = tonic::Request::new(Empty {});
        req.set_timeout(ASK_TIMEOUT.min(self.shared.request_timeout));
        match RaftServiceClient::new(channel).capabilities(req).await {
            Ok(r) => Ok(r.into_inner().rules),
            // A build from before rules revisions knows only the first.
            Err(s) if s.code() == tonic::Code::Unimplemented => Ok(1),
            Err(s) => Err(s.message().to_string()),
        }
    }
}
