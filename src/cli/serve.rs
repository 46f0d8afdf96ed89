use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::{self, Config, ConfigError, Overrides};
use crate::node;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (see oneid.example.toml); ONEID_* variables
    /// and the flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Overrides,
}

impl ServeArgs {
    /// The effective configuration: the file, then the process environment,
    /// then the flags. Resolved before the runtime starts, since it sets
    /// the worker threads and the log format.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        Config::resolve(self.config.as_deref(), config::process_env, &self.settings)
    }
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    run_config(a.resolve()?).await
}

/// Runs a node from a resolved configuration until SIGINT or SIGTERM.
pub async fn run_config(cfg: Config) -> anyhow::Result<()> {
    let checked = cfg.validate()?;
    let hasher = cfg.hasher(config::process_env)?;
    node::run(checked.node_config(hasher), shutdown_signal())
        .await
        .context("node stopped with an error")
}

/// Resolves on SIGINT or SIGTERM so in-flight requests drain before exit.
pub(crate) async fn shutdown_signal() {
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
