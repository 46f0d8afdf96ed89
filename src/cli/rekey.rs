//! `oneid rekey start|status`: rotate the pepper behind every id key.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use tonic::transport::Channel;

use super::client::{connect, explain, fresh_request_id, Target};
use crate::pb;
use crate::pb::admin_client::AdminClient;

#[derive(Args, Debug)]
pub struct RekeyArgs {
    #[command(subcommand)]
    pub action: RekeyAction,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Subcommand, Debug)]
pub enum RekeyAction {
    /// Start moving every id key to pepper version TO (current + 1). First
    /// append the new pepper as line TO of the pepper file on every node.
    Start {
        to: u32,
        /// Wait until the rotation has finished and its aliases are gone,
        /// printing progress, for at most this many seconds.
        #[arg(long)]
        wait_seconds: Option<u64>,
    },
    /// Print where the rotation stands.
    Status,
}

fn line(s: &pb::RekeyStatus) -> String {
    let phase = if s.target_version != 0 {
        format!("rotating to v{}", s.target_version)
    } else if s.dropping_aliases {
        "finished, forgetting aliases".into()
    } else {
        "idle".into()
    };
    format!(
        "key_version={} phase=\"{phase}\" moved_ids={} node_pepper_versions={}",
        s.current_version, s.moved_ids, s.node_pepper_versions
    )
}

async fn status(c: &mut AdminClient<Channel>) -> anyhow::Result<pb::RekeyStatus> {
    Ok(c.get_rekey_status(pb::GetRekeyStatusRequest {})
        .await
        .map_err(explain)?
        .into_inner())
}

pub async fn run(a: RekeyArgs) -> anyhow::Result<()> {
    let mut client = AdminClient::new(connect(&a.target).await?);
    match a.action {
        RekeyAction::Status => println!("{}", line(&status(&mut client).await?)),
        RekeyAction::Start { to, wait_seconds } => {
            let started = client
                .start_rekey(pb::StartRekeyRequest {
                    to_version: to,
                    request_id: fresh_request_id(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!("started: {}", line(&started));
            let Some(wait) = wait_seconds else {
                return Ok(());
            };
            let deadline = Instant::now() + Duration::from_secs(wait);
            loop {
                let s = status(&mut client).await?;
                if s.current_version == to && s.target_version == 0 && !s.dropping_aliases {
                    println!("done: {}", line(&s));
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("rotation not finished after {wait} s: {}", line(&s));
                }
                println!("{}", line(&s));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}
