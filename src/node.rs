//! One oneid server process: storage, raft, and the gRPC services on one port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use oneid_raft::pb::raft_service_server::RaftServiceServer;
use oneid_raft::service::RaftRpc;
use oneid_raft::{Replica, ReplicaConfig};
use oneid_storage::log_store::LogStore;
use oneid_storage::schema::Tuning;
use oneid_storage::Db;
use openraft::SnapshotPolicy;

use crate::api::cluster::ClusterApi;
use crate::api::registry::RegistryApi;
use crate::idkey::IdHasher;
use crate::pb::cluster_server::ClusterServer;
use crate::pb::registry_server::RegistryServer;
use crate::reader::Reader;
use crate::state_machine::StateMachine;

/// Largest client request accepted on the wire.
pub const MAX_CLIENT_MESSAGE: usize = 1 << 20;
/// Largest node-to-node message (a batch of log entries).
pub const MAX_RAFT_MESSAGE: usize = 512 << 20;

#[derive(Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Members of a brand-new cluster (id, address); empty to join later.
    pub initial_cluster: Vec<(u64, String)>,
    pub hasher: IdHasher,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_logs: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    pub request_timeout: Duration,
}

impl NodeConfig {
    pub fn new(node_id: u64, listen: SocketAddr, data_dir: PathBuf, hasher: IdHasher) -> Self {
        NodeConfig {
            node_id,
            listen,
            data_dir,
            initial_cluster: Vec::new(),
            hasher,
            snapshot_logs: 20_000,
            heartbeat_ms: 100,
            election_timeout_ms: (400, 800),
            request_timeout: Duration::from_secs(3),
        }
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
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
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
    let db = Db::open(&cfg.data_dir.join("db"), Tuning::default())
        .with_context(|| format!("opening database in {}", cfg.data_dir.display()))?;
    let snapshot_dir = cfg.data_dir.join("snapshots");
    let sm = StateMachine::open(db.clone(), &snapshot_dir).context("opening state machine")?;
    let log_store = LogStore::new(db.clone()).context("starting the raft log")?;

    let replica = Replica::start(
        ReplicaConfig {
            node_id: cfg.node_id,
            raft: cfg.raft_config(),
            max_batch: 4096,
            max_inflight: 2,
            request_timeout: cfg.request_timeout,
        },
        log_store,
        sm,
    )
    .await
    .context("starting raft")?;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(node = cfg.node_id, addr = %cfg.listen, "serving");

    let reader = Reader::new(db.clone());
    let registry = RegistryServer::new(RegistryApi::new(
        replica.clone(),
        reader.clone(),
        cfg.hasher.clone(),
        cfg.request_timeout * 2,
    ))
    .max_decoding_message_size(MAX_CLIENT_MESSAGE);
    let cluster = ClusterServer::new(ClusterApi::new(replica.clone(), reader));
    let raft_rpc = RaftServiceServer::new(RaftRpc::new(replica.clone(), snapshot_dir))
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);

    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .add_service(registry)
        .add_service(cluster)
        .add_service(raft_rpc)
        .serve_with_incoming_shutdown(
            // The builder's tcp_nodelay applies only to listeners it binds
            // itself; Nagle on these sockets adds ~40 ms stalls.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        );
    let server = tokio::spawn(server);

    let founding_member = cfg.initial_cluster.iter().any(|(id, _)| *id == cfg.node_id);
    if founding_member && replica.initialize(cfg.initial_cluster.clone()).await? {
        tracing::info!("initialized a new cluster: {:?}", cfg.initial_cluster);
    }

    let served = server.await.context("server task")?;
    tracing::info!("shutting down raft");
    let _ = replica.raft().shutdown().await;
    db.sync_wal().context("final WAL sync")?;
    served.context("grpc server")?;
    Ok(())
}
