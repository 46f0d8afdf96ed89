//! Every check a configuration must pass before a node starts from it, all
//! reported at once so one `config check` run lists every problem.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError, TlsSection};
use crate::api::registry::MAX_IMPORT_BATCH;
use crate::idkey::IdHasher;
use crate::node::{self, NodeConfig};
use crate::observe::log;
use crate::security::tls::TlsFiles;

/// More threads than this is a typo, not a tuning.
const MAX_WORKER_THREADS: usize = 1024;
/// Longest raft timing accepted (an hour): longer is a typo, and keeps the
/// arithmetic on timings far from overflow.
const MAX_TIMING_MS: u64 = 3_600_000;
/// More requests in progress than tokio's semaphore can count is a typo.
const MAX_CONCURRENT_REQUESTS: usize = 1 << 20;

/// A configuration that passed every check, with its addresses parsed.
#[derive(Debug, Clone)]
pub struct Checked {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    /// The HTTP/JSON gateway over mTLS.
    pub gateway_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub initial_cluster: Vec<(u64, String)>,
    /// None: plaintext (`tls.insecure`).
    pub tls: Option<TlsFiles>,
    config: Config,
}

impl Config {
    pub fn validate(&self) -> Result<Checked, ConfigError> {
        let mut errs = Vec::new();
        let n = &self.node;
        let node_id = match n.id {
            None => required(&mut errs, "node.id", "ONEID_NODE_ID", "--node-id"),
            Some(0) => {
                errs.push("node.id must be a positive integer".into());
                None
            }
            Some(id) => Some(id),
        };
        let listen = match &n.addr {
            None => required(&mut errs, "node.addr", "ONEID_ADDR", "--addr"),
            Some(a) => address(&mut errs, "node.addr", a),
        };
        let data_dir = match &n.data_dir {
            Some(d) if !d.as_os_str().is_empty() => Some(d.clone()),
            _ => required(&mut errs, "node.data_dir", "ONEID_DATA_DIR", "--data-dir"),
        };
        let http_addr = n
            .http_addr
            .as_ref()
            .and_then(|a| address(&mut errs, "node.http_addr", a));
        let gateway_addr = n
            .gateway_addr
            .as_ref()
            .and_then(|a| address(&mut errs, "node.gateway_addr", a));
        if gateway_addr.is_some() && self.tls.insecure {
            errs.push(
                "node.gateway_addr serves the HTTP/JSON gateway over mTLS and needs TLS; \
                 in insecure mode the gateway is on node.http_addr"
                    .into(),
            );
        }
        let initial_cluster = match node::parse_cluster(&n.initial_cluster) {
            Ok(members) => members,
            Err(e) => {
                errs.push(format!("node.initial_cluster: {e:#}"));
                Vec::new()
            }
        };
        if let Some(id) = node_id {
            if !initial_cluster.is_empty() && !initial_cluster.iter().any(|(m, _)| *m == id) {
                errs.push(format!(
                    "node.initial_cluster does not contain this node (node.id = {id})"
                ));
            }
        }
        raft(&mut errs, self);
        limits(&mut errs, self);
        let tls = tls(&mut errs, &self.tls);
        errs.extend(process(self).err().unwrap_or_default());
        match (node_id, listen, data_dir) {
            (Some(node_id), Some(listen), Some(data_dir)) if errs.is_empty() => Ok(Checked {
                node_id,
                listen,
                http_addr,
                gateway_addr,
                data_dir,
                initial_cluster,
                tls,
                config: self.clone(),
            }),
            _ => Err(ConfigError::Invalid(errs)),
        }
    }
}

impl Checked {
    pub fn node_config(self, hasher: IdHasher) -> NodeConfig {
        let r = &self.config.raft;
        NodeConfig {
            node_id: self.node_id,
            listen: self.listen,
            http_addr: self.http_addr,
            gateway_addr: self.gateway_addr,
            data_dir: self.data_dir,
            initial_cluster: self.initial_cluster,
            hasher,
            snapshot_logs: r.snapshot_logs,
            heartbeat_ms: r.heartbeat_ms,
            election_timeout_ms: (r.election_timeout_min_ms, r.election_timeout_max_ms),
            request_timeout: Duration::from_millis(r.request_timeout_ms),
            lease_reads: r.lease_reads,
            limits: self.config.limits.clone(),
            tls: self.tls,
        }
    }
}

/// The TLS files, all three or none with `insecure` said out loud.
fn tls(errs: &mut Vec<String>, t: &TlsSection) -> Option<TlsFiles> {
    match (&t.ca, &t.cert, &t.key, t.insecure) {
        (None, None, None, true) if t.crl.is_none() => None,
        (None, None, None, true) => {
            errs.push("tls.crl needs TLS (tls.ca, tls.cert and tls.key), not tls.insecure".into());
            None
        }
        (Some(ca), Some(cert), Some(key), false) => Some(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
            crl: t.crl.clone(),
        }),
        (_, _, _, true) => {
            errs.push("tls.insecure is set together with TLS files; choose one".into());
            None
        }
        _ => {
            errs.push(
                "TLS needs tls.ca, tls.cert and tls.key (ONEID_CA/ONEID_CERT/ONEID_KEY, \
                 --ca/--cert/--key; `oneid certs` makes a development set), or \
                 tls.insecure = true (--insecure) for plaintext"
                    .into(),
            );
            None
        }
    }
}

/// The checks that apply to every command: logging and worker threads.
pub(super) fn process(cfg: &Config) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    if let Err(e) = log::filter(&cfg.log.filter) {
        errs.push(format!(
            "log.filter {:?} (from the file, ONEID_LOG or --log-filter): {e}",
            cfg.log.filter
        ));
    }
    if cfg.runtime.worker_threads > MAX_WORKER_THREADS {
        errs.push(format!(
            "runtime.worker_threads = {} is more than {MAX_WORKER_THREADS} (0 means one per core)",
            cfg.runtime.worker_threads
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn raft(errs: &mut Vec<String>, cfg: &Config) {
    let r = &cfg.raft;
    for (key, ms) in [
        ("raft.heartbeat_ms", r.heartbeat_ms),
        ("raft.election_timeout_min_ms", r.election_timeout_min_ms),
        ("raft.election_timeout_max_ms", r.election_timeout_max_ms),
        ("raft.request_timeout_ms", r.request_timeout_ms),
    ] {
        if ms > MAX_TIMING_MS {
            errs.push(format!(
                "{key} = {ms} is more than {MAX_TIMING_MS} (an hour)"
            ));
        }
    }
    if r.heartbeat_ms == 0 {
        errs.push("raft.heartbeat_ms must be positive".into());
    }
    if r.election_timeout_min_ms >= r.election_timeout_max_ms {
        errs.push(format!(
            "raft.election_timeout_min_ms ({}) must be less than raft.election_timeout_max_ms ({})",
            r.election_timeout_min_ms, r.election_timeout_max_ms
        ));
    }
    if r.heartbeat_ms >= r.election_timeout_min_ms {
        errs.push(format!(
            "raft.heartbeat_ms ({}) must be less than raft.election_timeout_min_ms ({}), \
             or followers start elections between heartbeats",
            r.heartbeat_ms, r.election_timeout_min_ms
        ));
    }
    if r.request_timeout_ms == 0 {
        errs.push("raft.request_timeout_ms must be positive".into());
    }
    if r.snapshot_logs == 0 {
        errs.push("raft.snapshot_logs must be positive".into());
    }
}

fn limits(errs: &mut Vec<String>, cfg: &Config) {
    let l = &cfg.limits;
    if !(l.queries_per_second.is_finite() && l.queries_per_second > 0.0) {
        errs.push(format!(
            "limits.queries_per_second = {} must be a positive number",
            l.queries_per_second
        ));
    }
    for (key, v) in [
        ("limits.query_burst", l.query_burst as usize),
        ("limits.max_tracked_callers", l.max_tracked_callers),
        ("limits.max_concurrent_requests", l.max_concurrent_requests),
        ("limits.max_import_batch", l.max_import_batch),
    ] {
        if v == 0 {
            errs.push(format!("{key} must be positive"));
        }
    }
    if l.max_concurrent_requests > MAX_CONCURRENT_REQUESTS {
        errs.push(format!(
            "limits.max_concurrent_requests = {} is more than {MAX_CONCURRENT_REQUESTS}",
            l.max_concurrent_requests
        ));
    }
    if l.max_import_batch > MAX_IMPORT_BATCH {
        errs.push(format!(
            "limits.max_import_batch = {} is more than {MAX_IMPORT_BATCH} (a larger batch \
             does not fit in one request message)",
            l.max_import_batch
        ));
    }
}

fn required<T>(errs: &mut Vec<String>, key: &str, var: &str, flag: &str) -> Option<T> {
    errs.push(format!("{key} is required (in the file, {var} or {flag})"));
    None
}

fn address(errs: &mut Vec<String>, key: &str, value: &str) -> Option<SocketAddr> {
    match value.trim().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(format!("{key} {value:?} is not IP:PORT"));
            None
        }
    }
}
