//! One oneid server process: storage, raft, and the gRPC services on one port,
//! plus an optional HTTP port for metrics, readiness and the HTTP/JSON gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oneid_raft::network::PeerTls;
use oneid_raft::pb::raft_service_server::RaftServiceServer;
use oneid_raft::service::RaftRpc;
use oneid_raft::snapshot_turns::{self, SnapshotTurns};
use oneid_raft::unapplied::Unapplied;
use oneid_raft::{Replica, ReplicaConfig};
use oneid_storage::log_store::LogStore;
use oneid_storage::schema::Tuning;
use oneid_storage::Db;
use openraft::SnapshotPolicy;
use tokio::sync::watch;

use crate::api::admin::AdminApi;
use crate::api::batch::BatchApi;
use crate::api::cluster::ClusterApi;
use crate::api::disputes::DisputesApi;
use crate::api::keyring::Keyring;
use crate::api::linkage::LinkageApi;
use crate::api::notifications::NotificationsApi;
use crate::api::registry::RegistryApi;
use crate::api::regulator::RegulatorApi;
use crate::api::writer::Writer;
use crate::config::LimitsSection;
use crate::gateway::{self, Gateway};
use crate::idkey::IdHasher;
use crate::limits::{shed::ShedLayer, QueryLimit, RateConfig};
use crate::observe::{self, grpc::GrpcMetricsLayer, Observer};
use crate::pb::admin_server::AdminServer;
use crate::pb::batch_server::BatchServer;
use crate::pb::cluster_server::ClusterServer;
use crate::pb::disputes_server::DisputesServer;
use crate::pb::linkage_server::LinkageServer;
use crate::pb::notifications_server::NotificationsServer;
use crate::pb::registry_server::RegistryServer;
use crate::pb::regulator_server::RegulatorServer;
use crate::query_audit::QueryAudit;
use crate::reader::Reader;
use crate::security::authz::{Admission, AuthzLayer, Callers};
use crate::security::revocation::Revocations;
use crate::security::tls::{NodeTls, TlsFiles};
use crate::state_machine::StateMachine;

/// Largest client request accepted on the wire.
pub const MAX_CLIENT_MESSAGE: usize = 1 << 20;
/// How long a stopping leader tries to hand over before it just stops.
const SHUTDOWN_TRANSFER_WITHIN: Duration = Duration::from_secs(5);
/// Longest a client call may take, over gRPC or the HTTP gateway.
pub const CLIENT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest node-to-node message (a batch of log entries).
pub const MAX_RAFT_MESSAGE: usize = 512 << 20;

#[derive(Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    /// HTTP address for /metrics, /ready and /live; none means no listener.
    pub http_addr: Option<SocketAddr>,
    /// The HTTP/JSON gateway over mTLS (TLS only).
    pub gateway_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Members of a brand-new cluster (id, address); empty to join later.
    pub initial_cluster: Vec<(u64, String)>,
    pub hasher: IdHasher,
    /// Build a snapshot (and purge the log) about every this many entries,
    /// in this member's turn (`oneid_raft::snapshot_turns`).
    pub snapshot_logs: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    pub request_timeout: Duration,
    /// A leader holding its lease answers reads without a quorum round.
    pub lease_reads: bool,
    pub limits: LimitsSection,
    /// mTLS files; none serves plaintext and trusts every caller.
    pub tls: Option<TlsFiles>,
}

impl NodeConfig {
    /// How long a leader may go without a quorum's acknowledgement and still
    /// call itself ready: a few election timeouts, so a heartbeat delayed by
    /// a busy machine does not flap readiness, yet a leader cut off from its
    /// followers stops attracting traffic within seconds.
    fn max_quorum_ack(&self) -> Duration {
        Duration::from_millis((self.election_timeout_ms.1 * 3).max(1_000))
    }

    fn raft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "oneid".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms.0,
            election_timeout_max: self.election_timeout_ms.1,
            install_snapshot_timeout: 600_000,
            // openraft bounds each AppendEntries by the heartbeat interval,
            // and an entry can hold a whole group-commit batch (up to
            // `max_batch` commands, ~0.7 MB): a few entries per RPC keep a
            // catching-up follower's RPCs well inside that bound instead of
            // timing out, backing off and losing leadership under imports.
            max_payload_entries: 8,
            // Members take turns instead (`snapshot_turns`), so they never
            // all build at the same log index.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        }
    }
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
pub fn parse_cluster(spec: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("cluster member '{part}' is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("node id '{id}' is not a number"))?;
        anyhow::ensure!(id > 0, "node id 0 is reserved");
        let addr = addr.trim();
        addr.parse::<SocketAddr>()
            .with_context(|| format!("address '{addr}' is not HOST:PORT"))?;
        anyhow::ensure!(
            !out.iter().any(|(i, _)| *i == id),
            "node id {id} appears twice"
        );
        out.push((id, addr.to_string()));
    }
    Ok(out)
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    cfg: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Before anything starts: a list that does not verify must stop the
    // node, not let revoked callers in.
    let revocations = match cfg
        .tls
        .as_ref()
        .and_then(|t| t.crl.as_ref().map(|c| (c, &t.ca)))
    {
        Some((crl, ca)) => Some(Revocations::load(crl, ca).context("loading tls.crl")?),
        None => None,
    };
    let tls = match &cfg.tls {
        Some(files) => Some(files.load().context("loading TLS files")?),
        None => {
            tracing::warn!(
                "--insecure: plaintext on every port, and every caller is trusted \
                 as an operator with every role; never use this outside a test bench"
            );
            None
        }
    };
    let db = Db::open(&cfg.data_dir.join("db"), Tuning::default())
        .with_context(|| format!("opening database in {}", cfg.data_dir.display()))?;
    let snapshot_dir = cfg.data_dir.join("snapshots");
    let sm = StateMachine::open(db.clone(), &snapshot_dir).context("opening state machine")?;
    let unapplied = Arc::new(Unapplied::new(crate::footprint::of_command));
    let log_store = LogStore::new(db.clone())
        .and_then(|l| l.observed_by(unapplied.clone()))
        .context("starting the raft log")?;

    let peer_tls: Option<Arc<dyn PeerTls>> = match &tls {
        Some(t) => {
            Some(NodeTls::new(t.clone(), revocations.clone()).context("TLS settings for peers")?)
        }
        None => None,
    };
    let replica = Replica::start(
        ReplicaConfig {
            node_id: cfg.node_id,
            raft: cfg.raft_config(),
            max_batch: 4096,
            max_inflight: 2,
            request_timeout: cfg.request_timeout,
            peer_tls,
            rules_supported: crate::domain::LATEST_RULES,
            unapplied,
            lease_reads: cfg.lease_reads,
        },
        log_store,
        sm,
    )
    .await
    .context("starting raft")?;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let http_listener = bind_if_set(cfg.http_addr, "HTTP").await?;
    let gateway_listener = bind_if_set(cfg.gateway_addr, "the HTTPS gateway").await?;
    tracing::info!(
        node = cfg.node_id,
        addr = %cfg.listen,
        http = ?cfg.http_addr,
        gateway = ?cfg.gateway_addr,
        "serving"
    );

    // One stop signal, several listeners: the gRPC server, the HTTP server
    // and the raft watcher (which turns readiness off while requests drain).
    let (stop_tx, stop_rx) = watch::channel(false);
    let handing_over = replica.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Peers reach raft through the gRPC port this stop closes, so
        // leadership is handed over first, while they still can.
        hand_over_leadership(&handing_over).await;
        let _ = stop_tx.send(true);
    });

    let obs = Observer::new(
        cfg.node_id,
        db.clone(),
        replica.raft().clone(),
        replica.apply_backlog().clone(),
        replica.read_counts(),
        revocations.clone(),
    )
    .context("registering metrics")?;
    let (health, health_service) = observe::health::reporter().await;
    let (reflection_v1, reflection_v1alpha) =
        observe::health::reflection().context("building gRPC reflection")?;
    let watcher = tokio::spawn(observe::watch_raft(
        obs.clone(),
        health,
        cfg.max_quorum_ack(),
        stop_rx.clone(),
    ));
    let reader = Reader::new(db.clone());
    let queries = Arc::new(QueryAudit::open(db.clone()).context("opening the query audit trail")?);
    let writer = Writer::new(replica.clone(), cfg.request_timeout * 2, queries);
    let query_limit = QueryLimit::new(
        RateConfig {
            per_second: cfg.limits.queries_per_second,
            burst: cfg.limits.query_burst,
            max_callers: cfg.limits.max_tracked_callers,
        },
        cfg.limits.unlimited_callers.clone(),
    );
    let keyring = Keyring::new(cfg.hasher.clone(), reader.clone());
    let admin_writer = writer.clone();
    // One instance of each service, shared by the gRPC server and the
    // HTTP/JSON gateway, so both run the same checks on the same state.
    let services = gateway::Services {
        registry: Arc::new(RegistryApi::new(
            writer.clone(),
            reader.clone(),
            keyring.clone(),
            query_limit.clone(),
            cfg.limits.max_import_batch,
        )),
        disputes: Arc::new(DisputesApi::new(
            writer.clone(),
            reader.clone(),
            keyring.clone(),
            query_limit.clone(),
        )),
        regulator: Arc::new(RegulatorApi::new(
            writer.clone(),
            reader.clone(),
            keyring.clone(),
        )),
        linkage: Arc::new(LinkageApi::new(
            writer.clone(),
            reader.clone(),
            keyring.clone(),
            query_limit,
        )),
        notifications: Arc::new(NotificationsApi::new(writer.clone(), reader.clone())),
    };
    let registry = RegistryServer::from_arc(services.registry.clone())
        .max_decoding_message_size(MAX_CLIENT_MESSAGE);
    let disputes = DisputesServer::from_arc(services.disputes.clone())
        .max_decoding_message_size(MAX_CLIENT_MESSAGE);
    let regulator = RegulatorServer::from_arc(services.regulator.clone())
        .max_decoding_message_size(MAX_CLIENT_MESSAGE);
    let linkage = LinkageServer::from_arc(services.linkage.clone())
        .max_decoding_message_size(MAX_CLIENT_MESSAGE);
    let notifications = NotificationsServer::from_arc(services.notifications.clone())
        .max_decoding_message_size(MAX_CLIENT_MESSAGE);
    let shed = ShedLayer::new(cfg.limits.max_concurrent_requests);
    let batch = BatchServer::new(BatchApi::new(
        services.clone(),
        shed.clone(),
        &obs.metrics,
        CLIENT_CALL_TIMEOUT,
    ))
    .max_decoding_message_size(MAX_CLIENT_MESSAGE);
    if let Some(r) = &revocations {
        tokio::spawn(r.clone().watch(stop_rx.clone()));
    }
    let admission = Admission {
        callers: match tls {
            None => Callers::Insecure,
            Some(_) => Callers::Certified(revocations),
        },
        is_member: member_check(&replica),
    };
    // With TLS the gateway is served over HTTPS with client certificates on
    // its own port, the plain HTTP port keeping /metrics, /ready and /live;
    // in insecure mode it is on the HTTP port. Built only where it is
    // served: it parses the descriptors and renders the OpenAPI document,
    // start-up work a node without it need not do.
    let https_gateway = match (gateway_listener, &tls) {
        (Some(l), Some(tls)) => {
            let config = tls
                .https_server()
                .context("configuring the HTTPS gateway")?;
            let app = gateway::router(
                Gateway::new(
                    services.clone(),
                    CLIENT_CALL_TIMEOUT,
                    admission.clone(),
                    shed.clone(),
                )
                .context("building the HTTP/JSON gateway")?,
            );
            Some(tokio::spawn(gateway::https::serve(
                l,
                config,
                app,
                stopped(stop_rx.clone()),
            )))
        }
        _ => None,
    };
    let http = match http_listener {
        Some(l) => {
            let api_gateway = if tls.is_some() {
                axum::Router::new()
            } else {
                gateway::router(
                    Gateway::new(
                        services,
                        CLIENT_CALL_TIMEOUT,
                        admission.clone(),
                        shed.clone(),
                    )
                    .context("building the HTTP/JSON gateway")?,
                )
            };
            let served =
                observe::http::serve(l, obs.clone(), api_gateway, stopped(stop_rx.clone()));
            Some(tokio::spawn(async move {
                // Metrics are not worth taking the node down for; say so and
                // keep serving gRPC.
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            }))
        }
        None => None,
    };

    let sweeper = tokio::spawn(crate::sweeper::run(
        replica.clone(),
        reader.clone(),
        stop_rx.clone(),
    ));
    let snapshots = tokio::spawn(snapshot_turns::run(
        replica.raft().clone(),
        SnapshotTurns::new(cfg.node_id, cfg.snapshot_logs),
        stop_rx.clone(),
    ));
    let rekeying = tokio::spawn(crate::rekey::run(
        replica.clone(),
        reader.clone(),
        cfg.hasher.clone(),
        stop_rx.clone(),
    ));
    let admin = AdminServer::new(AdminApi::new(
        replica.clone(),
        admin_writer,
        reader.clone(),
        keyring,
    ));
    let cluster = ClusterServer::new(ClusterApi::new(replica.clone(), reader));
    let raft_rpc = RaftServiceServer::new(RaftRpc::new(replica.clone(), snapshot_dir))
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder
            .tls_config(tls.server())
            .context("configuring TLS")?;
    }
    let server = builder
        .tcp_nodelay(true)
        .timeout(CLIENT_CALL_TIMEOUT)
        .layer(GrpcMetricsLayer::new(obs.clone()))
        // Inside the metrics layer, so refusals are counted and carry a
        // request id.
        .layer(shed)
        .layer(AuthzLayer::new(admission))
        .add_service(registry)
        .add_service(disputes)
        .add_service(regulator)
        .add_service(linkage)
        .add_service(notifications)
        .add_service(batch)
        .add_service(cluster)
        .add_service(admin)
        .add_service(raft_rpc)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            // The builder's tcp_nodelay applies only to listeners it binds
            // itself; Nagle on these sockets adds ~40 ms stalls.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopped(stop_rx),
        );
    let server = tokio::spawn(server);

    let founding_member = cfg.initial_cluster.iter().any(|(id, _)| *id == cfg.node_id);
    if founding_member && replica.initialize(cfg.initial_cluster.clone()).await? {
        tracing::info!("initialized a new cluster: {:?}", cfg.initial_cluster);
    }

    let served = server.await.context("server task")?;
    // Scrapers hold keep-alive connections that graceful shutdown would wait
    // for; the HTTP port has nothing worth draining.
    if let Some(http) = http {
        http.abort();
    }
    if let Some(gateway) = https_gateway {
        gateway.abort();
    }
    watcher.abort();
    sweeper.abort();
    snapshots.abort();
    rekeying.abort();
    tracing::info!("shutting down raft");
    let _ = replica.raft().shutdown().await;
    db.sync_wal().context("final WAL sync")?;
    // Applies skip the WAL; flushed, a restart need not apply them again.
    db.flush_state_machine()
        .context("flushing the state machine")?;
    served.context("grpc server")?;
    Ok(())
}

/// A leader stopping on purpose hands over, so writes pause for a catch-up
/// and one vote round instead of a lease and an election timeout. Failing
/// that (no other voter, target too slow) the node stops anyway.
/// Whether a node is in this node's membership (any config it knows,
/// joint ones included), or this node knows none yet.
fn member_check(replica: &Replica) -> crate::security::authz::MemberCheck {
    let metrics = replica.raft().metrics();
    Arc::new(move |id| {
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let mut nodes = membership.nodes().map(|(n, _)| *n).peekable();
        nodes.peek().is_none() || nodes.any(|n| n == id)
    })
}

async fn hand_over_leadership(replica: &Replica) {
    if !replica.shared.is_leader() {
        return;
    }
    match replica
        .transfer_leadership(None, SHUTDOWN_TRANSFER_WITHIN)
        .await
    {
        Ok(to) => tracing::info!(to, "handed leadership over before stopping"),
        Err(e) => tracing::warn!(error = %e, "stopping without handing leadership over"),
    }
}

/// A listener on `addr`, when one is configured.
async fn bind_if_set(
    addr: Option<SocketAddr>,
    what: &str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {what} {addr}"))?,
        )),
        None => Ok(None),
    }
}

/// Resolves once `stop` flips to true, or its sender is gone (the process is
/// going down anyway).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
