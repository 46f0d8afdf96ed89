//! Membership changes through the leader's admin RPCs, retried across
//! leader changes (a fault may have just moved leadership).

use std::time::{Duration, Instant};

use oneid::pb;
use oneid::pb::cluster_client::ClusterClient;

use crate::nodes;

const BOUND: Duration = Duration::from_secs(60);

async fn on_leader<F, Fut>(n: usize, what: &str, mut call: F) -> anyhow::Result<()>
where
    F: FnMut(ClusterClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<
        Output = Result<tonic::Response<pb::MembershipResponse>, tonic::Status>,
    >,
{
    let deadline = Instant::now() + BOUND;
    let mut last = String::from("no leader");
    while Instant::now() < deadline {
        // Ask the nodes that call themselves leader: a removed node keeps a
        // stale view, so the nodes need not agree on who leads.
        for node in 1..=n {
            let is_leader = nodes::status(node, false)
                .await
                .is_some_and(|s| s.role == "leader");
            if !is_leader {
                continue;
            }
            let client = ClusterClient::new(nodes::channel(node, BOUND)?);
            match call(client).await {
                Ok(_) => return Ok(()),
                Err(s) => last = format!("{:?}: {}", s.code(), s.message()),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{what} did not succeed within {BOUND:?}: {last}")
}

pub async fn change_voters(n: usize, voters: Vec<u64>) -> anyhow::Result<()> {
    on_leader(n, "changing voters", |mut c| {
        let voters = voters.clone();
        async move { c.change_voters(pb::ChangeVotersRequest { voters }).await }
    })
    .await
}

pub async fn add_learner(n: usize, node: usize) -> anyhow::Result<()> {
    on_leader(n, "adding a learner", |mut c| async move {
        c.add_learner(pb::AddLearnerRequest {
            node_id: node as u64,
            addr: nodes::addr(node),
        })
        .await
    })
    .await
}
