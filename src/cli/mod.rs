//! The `oneid` command line: one binary for the server, the demo cluster and
//! the client commands.

pub mod bench;
pub mod casework;
pub mod certs;
pub mod client;
pub mod config;
pub mod demo;
pub mod gen;
pub mod import;
pub mod member;
pub mod multiplex;
pub mod rekey;
pub mod route;
pub mod rows;
pub mod sample;
pub mod serve;
pub mod snapshot;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "oneid",
    version,
    about = "Replicated one-ID-check-all-cards registry"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a server node.
    Serve(serve::ServeArgs),
    /// Development certificates: a CA, node and client (role) certificates.
    Certs(certs::CertsArgs),
    /// Revoke certificates: issue a new revocation list (needs `certs --keep-ca-key`).
    Revoke(certs::RevokeArgs),
    /// Configuration files: check one and print the effective configuration.
    Config(config::ConfigArgs),
    /// Start a local 3-node cluster with sample data and serve until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Register a card under an identity.
    Register(client::RegisterArgs),
    /// Cancel a card.
    Cancel(client::CancelArgs),
    /// Count the cards registered under an identity (linearizable).
    Count(client::CountArgs),
    /// Show a node's raft status.
    Status(client::StatusArgs),
    /// Load generator: drive oneid (or etcd) and print throughput and latency.
    Bench(bench::BenchArgs),
    /// Bulk-register cards from a CSV or JSON Lines file (resumable).
    Import(import::ImportArgs),
    /// Generate a realistic import file.
    Gen(gen::GenArgs),
    /// Membership: list, add a learner, promote, remove.
    Member(member::MemberArgs),
    /// A carrier lists an identity's cards with it (masked numbers, status).
    Cards(casework::CardsArgs),
    /// Disputes: open, resolve (confirmed|stripped|suspended|cancelled), show.
    Dispute(casework::DisputeArgs),
    /// High-risk cards: flag (regulator), reverified (carrier).
    Risk(casework::RiskArgs),
    /// Restrictions on new cards (限制入网): add, remove, show.
    Restrict(casework::RestrictArgs),
    /// Linked internet accounts (一证通查 2.0): add, remove, count, pending, ack.
    Link(casework::LinkArgs),
    /// Backups: save a consistent snapshot, verify it, restore it as a new cluster.
    Snapshot(snapshot::SnapshotArgs),
    /// The replicated policy (limits, windows): get, set.
    Policy(casework::PolicyArgs),
    /// National statistics (one linearizable read).
    Stats(casework::StatsArgs),
    /// The audit trail of writes, oldest first, paged.
    Audit(casework::AuditArgs),
    /// Notifications (SMS outbox): request a count by SMS, list, ack.
    Outbox(casework::OutboxArgs),
    /// Print the HTTP/JSON gateway's OpenAPI 3.0 document.
    Openapi,
    /// Rotate the pepper behind every id key, online: start, status.
    Rekey(rekey::RekeyArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Serve(a) => serve::run(a).await,
        Cmd::Certs(a) => certs::run(a),
        Cmd::Revoke(a) => certs::revoke(a),
        Cmd::Config(a) => config::run(a),
        Cmd::Demo(a) => demo::run(a).await,
        Cmd::Register(a) => client::register(a).await,
        Cmd::Cancel(a) => client::cancel(a).await,
        Cmd::Count(a) => client::count(a).await,
        Cmd::Status(a) => client::status(a).await,
        Cmd::Bench(a) => bench::run(a).await,
        Cmd::Import(a) => import::run(a).await,
        Cmd::Gen(a) => gen::run(a),
        Cmd::Member(a) => member::run(a).await,
        Cmd::Cards(a) => casework::cards(a).await,
        Cmd::Dispute(a) => casework::dispute(a).await,
        Cmd::Risk(a) => casework::risk(a).await,
        Cmd::Restrict(a) => casework::restrict(a).await,
        Cmd::Link(a) => casework::link(a).await,
        Cmd::Snapshot(a) => snapshot::run(a).await,
        Cmd::Policy(a) => casework::policy(a).await,
        Cmd::Stats(a) => casework::stats(a).await,
        Cmd::Audit(a) => casework::audit(a).await,
        Cmd::Outbox(a) => casework::outbox(a).await,
        Cmd::Rekey(a) => rekey::run(a).await,
        Cmd::Openapi => {
            let catalog = crate::gateway::json::catalog()?;
            print!("{}", crate::gateway::openapi::render(&catalog)?);
            Ok(())
        }
    }
}
