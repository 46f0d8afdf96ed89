//! `oneid config check FILE`: what `oneid serve --config FILE` would run
//! with, validated, without starting anything.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::{self, Config, Overrides, PEPPER_ENV};

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub cmd: ConfigCmd,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate FILE with ONEID_* variables and flags applied, as `serve`
    /// would, and print the effective configuration as TOML.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The TOML configuration file.
    pub file: PathBuf,
    #[command(flatten)]
    pub settings: Overrides,
}

pub fn run(a: ConfigArgs) -> anyhow::Result<()> {
    match a.cmd {
        ConfigCmd::Check(c) => check(c),
    }
}

fn check(a: CheckArgs) -> anyhow::Result<()> {
    let cfg = Config::resolve(Some(&a.file), config::process_env, &a.settings)?;
    cfg.validate()?;
    // A node cannot start without its pepper: check it loads, print only
    // where it comes from.
    cfg.hasher(config::process_env)?;
    print!(
        "{}",
        cfg.to_toml(config::process_env(PEPPER_ENV).is_some())?
    );
    Ok(())
}
