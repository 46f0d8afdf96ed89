//! `oneid member list|add|promote|remove`: online membership changes,
//! sent to the leader (found through any endpoint).

use std::collections::BTreeSet;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};

use super::client::{connect, explain, leader_target, Target};
use crate::pb;
use crate::pb::cluster_client::ClusterClient;

#[derive(Args, Debug)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub action: MemberAction,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Subcommand, Debug)]
pub enum MemberAction {
    /// Show members, their role and the leader.
    List,
    /// Add a node as a learner; returns once it has caught up.
    Add { node_id: u64, addr: String },
    /// Make a learner a voter.
    Promote { node_id: u64 },
    /// Remove a node from the cluster (voter or learner).
    Remove { node_id: u64 },
    /// Hand leadership to another voter (default: the most caught-up one),
    /// e.g. before stopping the leader for maintenance.
    TransferLeader {
        #[arg(long)]
        to: Option<u64>,
    },
}

async fn status(target: &Target) -> anyhow::Result<pb::StatusResponse> {
    let ch = connect(target).await?;
    Ok(ClusterClient::new(ch)
        .status(pb::StatusRequest::default())
        .await
        .map_err(explain)?
        .into_inner())
}

async fn leader(
    target: &Target,
    s: &pb::StatusResponse,
) -> anyhow::Result<ClusterClient<tonic::transport::Channel>> {
    // Adding a learner waits for it to catch up: allow a long deadline.
    let mut on_leader = leader_target(s, target)
        .ok_or_else(|| anyhow!("no leader is known right now; try again"))?;
    on_leader.timeout_ms = on_leader.timeout_ms.max(60_000);
    Ok(ClusterClient::new(connect(&on_leader).await?))
}

fn voters(s: &pb::StatusResponse) -> BTreeSet<u64> {
    s.members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect()
}

pub async fn run(a: MemberArgs) -> anyhow::Result<()> {
    let s = status(&a.target).await?;
    match a.action {
        MemberAction::List => {
            for m in &s.members {
                let role = if m.node_id == s.leader_id {
                    "leader"
                } else if m.voter {
                    "voter"
                } else {
                    "learner"
                };
                println!("{:>4}  {:<22} {role}", m.node_id, m.addr);
            }
            Ok(())
        }
        MemberAction::Add { node_id, addr } => {
            // Run again after it gave up waiting for the learner to catch
            // up, `add` waits again: the leader answers the same add like
            // the first. Another address is a move, which it is not.
            if let Some(m) = s.members.iter().find(|m| m.node_id == node_id) {
                anyhow::ensure!(
                    m.addr == addr,
                    "node {node_id} is already a member at {}; remove it first to give it \
                     another address",
                    m.addr
                );
                if m.voter {
                    println!("node {node_id} is already a voter at {addr}");
                    return Ok(());
                }
            }
            let r = leader(&a.target, &s)
                .await?
                .add_learner(pb::AddLearnerRequest { node_id, addr })
                .await
                .map_err(explain)
                .context("adding the learner")?;
            println!(
                "node {node_id} added as a learner and caught up (log index {})",
                r.into_inner().log_index
            );
            Ok(())
        }
        MemberAction::Promote { node_id } => {
            let m = s
                .members
                .iter()
                .find(|m| m.node_id == node_id)
                .ok_or_else(|| anyhow!("node {node_id} is not a member; add it first"))?;
            anyhow::ensure!(!m.voter, "node {node_id} is already a voter");
            let mut v = voters(&s);
            v.insert(node_id);
            change(&a.target, &s, v).await
        }
        MemberAction::Remove { node_id } => {
            anyhow::ensure!(
                s.members.iter().any(|m| m.node_id == node_id),
                "node {node_id} is not a member"
            );
            let mut v = voters(&s);
            v.remove(&node_id);
            // Removing voters one at a time, down to one, keeps a majority
            // of the old and new configurations available; an empty voter
            // set would leave no cluster at all.
            anyhow::ensure!(
                !v.is_empty(),
                "refusing to remove the last voter: the cluster would have no quorum"
            );
            change(&a.target, &s, v).await
        }
        MemberAction::TransferLeader { to } => {
            if let Some(t) = to {
                anyhow::ensure!(
                    s.members.iter().any(|m| m.node_id == t && m.voter),
                    "node {t} is not a voter"
                );
            }
            let r = leader(&a.target, &s)
                .await?
                .transfer_leader(pb::TransferLeaderRequest {
                    to: to.unwrap_or(0),
                })
                .await
                .map_err(explain)
                .context("transferring leadership")?;
            println!(
                "leadership moved from node {} to node {}",
                s.leader_id,
                r.into_inner().new_leader
            );
            Ok(())
        }
    }
}

async fn change(
    target: &Target,
    s: &pb::StatusResponse,
    voters: BTreeSet<u64>,
) -> anyhow::Result<()> {
    let list: Vec<u64> = voters.iter().copied().collect();
    let r = leader(target, s)
        .await?
        .change_voters(pb::ChangeVotersRequest {
            voters: list.clone(),
        })
        .await
        .map_err(explain)?;
    println!(
        "voters are now {list:?} (log index {})",
        r.into_inner().log_index
    );
    Ok(())
}
