//! Client subcommands. Each tries the given endpoints in order (any node
//! accepts any request) and prints the answer; a rejection is printed with
//! its reason and exits non-zero.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::api::error::reason_of;
use crate::pb;
use crate::pb::cluster_client::ClusterClient;
use crate::pb::registry_client::RegistryClient;
use crate::security::tls::TlsFiles;

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Node addresses, comma separated; the first that answers is used.
    #[arg(
        long,
        default_value = "127.0.0.1:7001",
        env = "ONEID_ENDPOINTS",
        global = true
    )]
    pub endpoints: String,
    /// Per-request deadline in milliseconds.
    #[arg(long, default_value_t = 5000, global = true)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub tls: ClientTls,
}

/// How a client command authenticates: a certificate for its role (from
/// `oneid certs`) and the CA the nodes' certificates are checked against,
/// or `--insecure` against a node that runs without TLS.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientTls {
    /// CA certificate (PEM) that signs the nodes' certificates.
    #[arg(long, env = "ONEID_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM); its role decides what it may call.
    #[arg(long, env = "ONEID_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, env = "ONEID_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Plaintext, for a node started with --insecure.
    #[arg(
        long,
        env = "ONEID_INSECURE",
        global = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure: bool,
}

impl ClientTls {
    /// The TLS settings of every connection, or none for plaintext.
    pub fn config(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        match (&self.ca, &self.cert, &self.key, self.insecure) {
            (None, None, None, true) => Ok(None),
            (Some(ca), Some(cert), Some(key), false) => {
                let files = TlsFiles {
                    ca: ca.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                    crl: None,
                };
                Ok(Some(files.load()?.client()))
            }
            (_, _, _, true) => Err(anyhow!(
                "--insecure is given together with TLS files; choose one"
            )),
            _ => Err(anyhow!(
                "no TLS credentials: pass --ca, --cert and --key (or ONEID_CA, ONEID_CERT, \
                 ONEID_KEY; `oneid certs` makes a development set), or --insecure for a \
                 node started with --insecure"
            )),
        }
    }

    /// A lazily connecting endpoint for HOST:PORT with these settings.
    pub fn endpoint(&self, addr: &str) -> anyhow::Result<Endpoint> {
        let endpoint = match self.config()? {
            Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
                .with_context(|| format!("bad endpoint '{addr}'"))?
                .tls_config(tls)
                .with_context(|| format!("TLS settings for '{addr}'"))?,
            None => Endpoint::from_shared(format!("http://{addr}"))
                .with_context(|| format!("bad endpoint '{addr}'"))?,
        };
        Ok(endpoint)
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum DocTypeArg {
    ResidentId,
    Passport,
    HkMacauPermit,
    TaiwanPermit,
    ForeignPermanentResident,
    UnifiedSocialCreditCode,
}

impl DocTypeArg {
    fn proto(self) -> pb::DocType {
        match self {
            DocTypeArg::ResidentId => pb::DocType::ResidentId,
            DocTypeArg::Passport => pb::DocType::Passport,
            DocTypeArg::HkMacauPermit => pb::DocType::HkMacauPermit,
            DocTypeArg::TaiwanPermit => pb::DocType::TaiwanPermit,
            DocTypeArg::ForeignPermanentResident => pb::DocType::ForeignPermanentResident,
            DocTypeArg::UnifiedSocialCreditCode => pb::DocType::UnifiedSocialCreditCode,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum KindArg {
    Personal,
    Iot,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ChannelArg {
    OwnHall,
    Agent,
    Online,
}

#[derive(Args, Debug)]
pub struct IdentityArgs {
    #[arg(long, value_enum, default_value = "resident-id")]
    pub doc_type: DocTypeArg,
    /// The identity document number.
    #[arg(long = "id")]
    pub number: String,
}

impl IdentityArgs {
    pub fn proto(&self) -> pb::Identity {
        pb::Identity {
            doc_type: self.doc_type.proto() as i32,
            number: self.number.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[arg(long)]
    pub msisdn: String,
    #[arg(long)]
    pub carrier: String,
    /// GB/T 2260 two-digit province code.
    #[arg(long)]
    pub province: String,
    #[arg(long, value_enum, default_value = "personal")]
    pub kind: KindArg,
    #[arg(long, value_enum, default_value = "agent")]
    pub channel: ChannelArg,
    /// The carrier performed strict in-person verification.
    #[arg(long)]
    pub strict: bool,
    /// IoT cards: the responsible unit's unified social credit code (`--id`
    /// is then the responsible person).
    #[arg(long)]
    pub unit: Option<String>,
    /// Idempotency key; a fresh one is generated when omitted.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long)]
    pub msisdn: String,
    #[arg(long)]
    pub carrier: String,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct CountArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// A number registered under the identity, proving the caller holds it.
    #[arg(long)]
    pub verify_msisdn: String,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Include the state machine digest (scans all data).
    #[arg(long)]
    pub digest: bool,
}

impl Target {
    /// The same settings, aimed at one address.
    pub fn only(&self, addr: &str) -> Target {
        Target {
            endpoints: addr.to_string(),
            ..self.clone()
        }
    }
}

pub fn fresh_request_id() -> String {
    use rand::Rng;
    format!("cli-{:032x}", rand::thread_rng().gen::<u128>())
}

/// Connects to the first endpoint that accepts a connection.
pub async fn connect(target: &Target) -> anyhow::Result<Channel> {
    let mut last = None;
    for ep in target
        .endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let endpoint = target
            .tls
            .endpoint(ep)?
            .connect_timeout(Duration::from_millis(1000))
            .timeout(Duration::from_millis(target.timeout_ms));
        match endpoint.connect().await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(anyhow!("{ep}: {e}")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no endpoints given")))
}

/// A target naming only the leader `s` reports, if it knows one.
pub fn leader_target(s: &pb::StatusResponse, via: &Target) -> Option<Target> {
    s.members
        .iter()
        .find(|m| m.node_id == s.leader_id)
        .map(|m| via.only(&m.addr))
}

/// Turns a gRPC error into a message that names the reason (the error's
/// stated reason, else its code) and the server's words, if any.
pub fn explain(status: tonic::Status) -> anyhow::Error {
    let reason = reason_of(&status).unwrap_or_else(|| format!("{:?}", status.code()));
    match status.message() {
        "" => anyhow!("{reason}"),
        message => anyhow!("{reason}: {message}"),
    }
}

pub async fn register(a: RegisterArgs) -> anyhow::Result<()> {
    let mut client = RegistryClient::new(connect(&a.target).await?);
    let kind = match a.kind {
        KindArg::Personal => pb::CardKind::Personal,
        KindArg::Iot => pb::CardKind::Iot,
    };
    let channel = match a.channel {
        ChannelArg::OwnHall => pb::Channel::OwnHall,
        ChannelArg::Agent => pb::Channel::Agent,
        ChannelArg::Online => pb::Channel::Online,
    };
    let r = client
        .register_card(pb::RegisterCardRequest {
            request_id: a.request_id.unwrap_or_else(fresh_request_id),
            identity: Some(a.identity.proto()),
            msisdn: a.msisdn,
            carrier: a.carrier,
            province: a.province,
            kind: kind as i32,
            channel: channel as i32,
            strict_verification: a.strict,
            responsible_unit: a.unit.map(|number| pb::Identity {
                doc_type: pb::DocType::UnifiedSocialCreditCode as i32,
                number,
            }),
        })
        .await
        .map_err(explain)?
        .into_inner();
    println!(
        "registered at index {} ({} active at this carrier-province{})",
        r.applied_index,
        r.active_at_carrier_province,
        if r.replayed { ", replayed" } else { "" }
    );
    Ok(())
}

pub async fn cancel(a: CancelArgs) -> anyhow::Result<()> {
    let mut client = RegistryClient::new(connect(&a.target).await?);
    let r = client
        .cancel_card(pb::CancelCardRequest {
            request_id: a.request_id.unwrap_or_else(fresh_request_id),
            msisdn: a.msisdn,
            carrier: a.carrier,
        })
        .await
        .map_err(explain)?
        .into_inner();
    println!(
        "cancelled at index {}{}",
        r.applied_index,
        if r.replayed { " (replayed)" } else { "" }
    );
    Ok(())
}

pub fn format_count(r: &pb::CountCardsResponse) -> String {
    let parts: Vec<String> = r
        .by_carrier
        .iter()
        .map(|c| format!("{} {}", c.carrier, c.count))
        .collect();
    format!("{} card(s) registered: {}", r.total, parts.join(", "))
}

pub async fn count(a: CountArgs) -> anyhow::Result<()> {
    let mut client = RegistryClient::new(connect(&a.target).await?);
    let r = client
        .count_cards(pb::CountCardsRequest {
            identity: Some(a.identity.proto()),
            verify_msisdn: a.verify_msisdn,
        })
        .await
        .map_err(explain)?
        .into_inner();
    println!("{}", format_count(&r));
    Ok(())
}

/// One node's status, asked of that node alone.
async fn status_of(ep: &str, via: &Target, digest: bool) -> anyhow::Result<pb::StatusResponse> {
    let mut client = ClusterClient::new(connect(&via.only(ep)).await?);
    Ok(client
        .status(pb::StatusRequest {
            include_digest: digest,
        })
        .await
        .map_err(explain)?
        .into_inner())
}

fn status_json(s: &pb::StatusResponse) -> serde_json::Value {
    let members: Vec<serde_json::Value> = s
        .members
        .iter()
        .map(|m| serde_json::json!({"node_id": m.node_id, "addr": m.addr, "voter": m.voter}))
        .collect();
    let replication: Vec<serde_json::Value> = s
        .replication
        .iter()
        .map(|r| serde_json::json!({"node_id": r.node_id, "matched_index": r.matched_index, "lag": r.lag}))
        .collect();
    serde_json::json!({
        "node_id": s.node_id, "leader_id": s.leader_id, "term": s.term, "role": s.role,
        "last_applied": s.last_applied, "last_log_index": s.last_log_index,
        "snapshot_index": s.snapshot_index, "purged_index": s.purged_index,
        "data_bytes": s.data_bytes, "members": members, "replication": replication,
        "millis_since_quorum_ack": s.millis_since_quorum_ack, "state_digest": s.state_digest,
        "rules_version": s.rules_version, "rules_supported": s.rules_supported,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// Status of every endpoint given: one table row (or JSON line) per node.
/// Replication lag comes from the leader's view of its followers.
pub async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let eps: Vec<&str> = a
        .target
        .endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    anyhow::ensure!(!eps.is_empty(), "no endpoints given");
    let answers =
        futures::future::join_all(eps.iter().map(|ep| status_of(ep, &a.target, a.digest))).await;
    if answers.iter().all(|r| r.is_err()) {
        let errors: Vec<String> = eps
            .iter()
            .zip(&answers)
            .filter_map(|(ep, r)| r.as_ref().err().map(|e| format!("{ep}: {e}")))
            .collect();
        anyhow::bail!("no node answered: {}", errors.join("; "));
    }
    let lag: std::collections::BTreeMap<u64, u64> = answers
        .iter()
        .flatten()
        .filter(|s| s.role == "leader")
        .flat_map(|s| s.replication.iter().map(|r| (r.node_id, r.lag)))
        .collect();
    if a.json {
        for (ep, r) in eps.iter().zip(&answers) {
            match r {
                Ok(s) => println!("{}", status_json(s)),
                Err(e) => println!(
                    "{}",
                    serde_json::json!({"endpoint": ep, "error": e.to_string()})
                ),
            }
        }
        return Ok(());
    }
    println!(
        "{:<22} {:>4} {:<9} {:>5} {:>6} {:>10} {:>10} {:>10} {:>6} {:>9} {:>6}",
        "endpoint",
        "node",
        "role",
        "term",
        "leader",
        "applied",
        "last log",
        "snapshot",
        "lag",
        "data MiB",
        "rules"
    );
    for (ep, r) in eps.iter().zip(&answers) {
        match r {
            Ok(s) => println!(
                "{:<22} {:>4} {:<9} {:>5} {:>6} {:>10} {:>10} {:>10} {:>6} {:>9} {:>6}",
                ep,
                s.node_id,
                s.role,
                s.term,
                s.leader_id,
                s.last_applied,
                s.last_log_index,
                s.snapshot_index,
                lag.get(&s.node_id)
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "-".into()),
                mib(s.data_bytes),
                // In force here / the newest this node's build applies.
                format!("{}/{}", s.rules_version, s.rules_supported)
            ),
            Err(e) => println!("{ep:<22} unreachable: {e}"),
        }
    }
    if let Some(s) = answers.iter().flatten().next() {
        for m in &s.members {
            println!(
                "member {} {} {}",
                m.node_id,
                m.addr,
                if m.voter { "voter" } else { "learner" }
            );
        }
    }
    for s in answers.iter().flatten() {
        if !s.state_digest.is_empty() {
            println!("node {} digest {}", s.node_id, s.state_digest);
        }
    }
    Ok(())
}
