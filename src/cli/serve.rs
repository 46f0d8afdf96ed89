use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::idkey::IdHasher;
use crate::node::{self, NodeConfig};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub node_id: u64,
    /// Address to listen on for clients and peers (HOST:PORT).
    #[arg(long)]
    pub addr: SocketAddr,
    /// Directory for this node's data; reused on restart.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Members of a new cluster: ID=HOST:PORT,... Nodes started with the same
    /// list form the cluster on first start; ignored once initialized.
    #[arg(long, default_value = "")]
    pub initial_cluster: String,
    /// File holding the HMAC pepper shared by all nodes (else ONEID_PEPPER).
    #[arg(long)]
    pub pepper_file: Option<PathBuf>,
    /// HTTP address (HOST:PORT) for /metrics, /ready, /live and the HTTP/JSON
    /// gateway (/v1/..., described at /v1/openapi.json); without it
    /// no HTTP port is opened.
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// Entries between snapshots (log compaction).
    #[arg(long, default_value_t = 20_000)]
    pub snapshot_logs: u64,
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.node_id > 0, "--node-id must be positive");
    let env = std::env::var("ONEID_PEPPER").ok();
    let hasher = IdHasher::load(a.pepper_file.as_deref(), env.as_deref())?;
    let mut cfg = NodeConfig::new(a.node_id, a.addr, a.data_dir, hasher);
    cfg.initial_cluster = node::parse_cluster(&a.initial_cluster)?;
    if !cfg.initial_cluster.is_empty() {
        anyhow::ensure!(
            cfg.initial_cluster.iter().any(|(id, _)| *id == a.node_id),
            "--initial-cluster does not contain --node-id {}",
            a.node_id
        );
    }
    cfg.snapshot_logs = a.snapshot_logs.max(1);
    cfg.http_addr = a.http_addr;
    node::run(cfg, shutdown_signal())
        .await
        .context("node stopped with an error")
}

/// Resolves on SIGINT or SIGTERM so in-flight requests drain before exit.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
}
