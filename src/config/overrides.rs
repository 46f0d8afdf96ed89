//! Settings given on the command line or in `ONEID_*` variables: each one
//! replaces the config file's. The flag and the variable of a setting carry
//! the same name (`--heartbeat-ms`, `ONEID_HEARTBEAT_MS`), except the log
//! filter, whose variable stays `ONEID_LOG`.

use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;

use super::ConfigError;
use crate::observe::log::LogFormat;

#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// This node's id, a positive integer unique in the cluster [node.id,
    /// ONEID_NODE_ID].
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Address for clients and peers, HOST:PORT [node.addr, ONEID_ADDR].
    #[arg(long)]
    pub addr: Option<String>,
    /// Directory for this node's data; reused on restart [node.data_dir,
    /// ONEID_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Members of a new cluster: ID=HOST:PORT,... Nodes started with the same
    /// list form the cluster on first start; ignored once initialized
    /// [node.initial_cluster, ONEID_INITIAL_CLUSTER].
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// File holding the HMAC pepper shared by all nodes (else ONEID_PEPPER)
    /// [node.pepper_file, ONEID_PEPPER_FILE].
    #[arg(long)]
    pub pepper_file: Option<PathBuf>,
    /// HTTP address (HOST:PORT) for /metrics, /ready, /live and the
    /// HTTP/JSON gateway (/v1/..., described at /v1/openapi.json); without
    /// it no HTTP port is opened [node.http_addr, ONEID_HTTP_ADDR].
    #[arg(long)]
    pub http_addr: Option<String>,
    /// HTTPS address (HOST:PORT) of the HTTP/JSON gateway when TLS is on:
    /// callers present a client certificate, as on gRPC, and get what
    /// their role may do [node.gateway_addr, ONEID_GATEWAY_ADDR].
    #[arg(long)]
    pub gateway_addr: Option<String>,
    /// Entries between snapshots (log compaction), about: members take
    /// turns, so they never all build at once [raft.snapshot_logs,
    /// ONEID_SNAPSHOT_LOGS].
    #[arg(long)]
    pub snapshot_logs: Option<u64>,
    /// Leader heartbeat interval [raft.heartbeat_ms, ONEID_HEARTBEAT_MS].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Shortest election timeout [raft.election_timeout_min_ms,
    /// ONEID_ELECTION_TIMEOUT_MIN_MS].
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    /// Longest election timeout [raft.election_timeout_max_ms,
    /// ONEID_ELECTION_TIMEOUT_MAX_MS].
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// How long a client request may wait for raft [raft.request_timeout_ms,
    /// ONEID_REQUEST_TIMEOUT_MS].
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Whether a leader holding its lease answers reads without a quorum
    /// round: true or false [raft.lease_reads, ONEID_LEASE_READS].
    #[arg(long)]
    pub lease_reads: Option<bool>,
    /// Log lines as human-readable text or JSON, on stderr [log.format,
    /// ONEID_LOG_FORMAT].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// `tracing` filter directives, e.g. info,openraft=warn [log.filter,
    /// ONEID_LOG].
    #[arg(long)]
    pub log_filter: Option<String>,
    /// Async worker threads, 0 for one per core [runtime.worker_threads,
    /// ONEID_WORKER_THREADS].
    #[arg(long)]
    pub worker_threads: Option<usize>,
    /// Queries per second per caller after its burst
    /// [limits.queries_per_second, ONEID_QUERIES_PER_SECOND].
    #[arg(long)]
    pub queries_per_second: Option<f64>,
    /// Queries a caller may make at once [limits.query_burst,
    /// ONEID_QUERY_BURST].
    #[arg(long)]
    pub query_burst: Option<u32>,
    /// Callers the rate limiter tracks at once
    /// [limits.max_tracked_callers, ONEID_MAX_TRACKED_CALLERS].
    #[arg(long)]
    pub max_tracked_callers: Option<usize>,
    /// Client requests served at once; more are refused
    /// [limits.max_concurrent_requests, ONEID_MAX_CONCURRENT_REQUESTS].
    #[arg(long)]
    pub max_concurrent_requests: Option<usize>,
    /// Cards in one ImportCards request [limits.max_import_batch,
    /// ONEID_MAX_IMPORT_BATCH].
    #[arg(long)]
    pub max_import_batch: Option<usize>,
    /// Comma-separated callers (IP addresses) the query rate does not
    /// apply to; "" for none [limits.unlimited_callers,
    /// ONEID_UNLIMITED_CALLERS].
    #[arg(long)]
    pub unlimited_callers: Option<String>,
    /// CA certificate (PEM) that signs every node and client [tls.ca,
    /// ONEID_CA].
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// This node's certificate (PEM, from `oneid certs`) [tls.cert,
    /// ONEID_CERT].
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM) [tls.key, ONEID_KEY].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The CA's certificate revocation lists (PEM, from `oneid revoke` or
    /// your CA), re-read within a second of changing: a revoked
    /// certificate is refused on every call [tls.crl, ONEID_CRL].
    #[arg(long)]
    pub crl: Option<PathBuf>,
    /// Plaintext, no TLS: every caller is trusted with every role. For
    /// local experiments only [tls.insecure, ONEID_INSECURE].
    #[arg(long)]
    pub insecure: bool,
}

impl Overrides {
    /// Every `ONEID_*` setting `var` reports; a value that does not parse is
    /// an error naming the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Overrides, ConfigError> {
        Ok(Overrides {
            node_id: parsed(&var, "ONEID_NODE_ID")?,
            addr: var("ONEID_ADDR"),
            data_dir: var("ONEID_DATA_DIR").map(PathBuf::from),
            initial_cluster: var("ONEID_INITIAL_CLUSTER"),
            pepper_file: var("ONEID_PEPPER_FILE").map(PathBuf::from),
            http_addr: var("ONEID_HTTP_ADDR"),
            gateway_addr: var("ONEID_GATEWAY_ADDR"),
            snapshot_logs: parsed(&var, "ONEID_SNAPSHOT_LOGS")?,
            heartbeat_ms: parsed(&var, "ONEID_HEARTBEAT_MS")?,
            election_timeout_min_ms: parsed(&var, "ONEID_ELECTION_TIMEOUT_MIN_MS")?,
            election_timeout_max_ms: parsed(&var, "ONEID_ELECTION_TIMEOUT_MAX_MS")?,
            request_timeout_ms: parsed(&var, "ONEID_REQUEST_TIMEOUT_MS")?,
            lease_reads: parsed(&var, "ONEID_LEASE_READS")?,
            queries_per_second: parsed(&var, "ONEID_QUERIES_PER_SECOND")?,
            query_burst: parsed(&var, "ONEID_QUERY_BURST")?,
            max_tracked_callers: parsed(&var, "ONEID_MAX_TRACKED_CALLERS")?,
            max_concurrent_requests: parsed(&var, "ONEID_MAX_CONCURRENT_REQUESTS")?,
            max_import_batch: parsed(&var, "ONEID_MAX_IMPORT_BATCH")?,
            unlimited_callers: var("ONEID_UNLIMITED_CALLERS"),
            ca: var("ONEID_CA").map(PathBuf::from),
            crl: var("ONEID_CRL").map(PathBuf::from),
            cert: var("ONEID_CERT").map(PathBuf::from),
            key: var("ONEID_KEY").map(PathBuf::from),
            insecure: parsed(&var, "ONEID_INSECURE")?.unwrap_or(false),
            ..Overrides::process_from_env(&var)?
        })
    }

    /// Only the settings every command has: logging and worker threads.
    pub fn process_from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Overrides, ConfigError> {
        Ok(Overrides {
            log_format: parsed(&var, "ONEID_LOG_FORMAT")?,
            log_filter: var("ONEID_LOG"),
            worker_threads: parsed(&var, "ONEID_WORKER_THREADS")?,
            ..Overrides::default()
        })
    }
}

fn parsed<T>(
    var: impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    let Some(value) = var(name) else {
        return Ok(None);
    };
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|e: T::Err| ConfigError::Env {
            var: name,
            reason: e.to_string(),
            value,
        })
}
