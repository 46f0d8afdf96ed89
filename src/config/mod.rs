//! The settings of `oneid serve`: one TOML file, overridden by `ONEID_*`
//! environment variables, overridden by flags (defaults < file < env <
//! flags). `oneid config check` prints what [`Config::resolve`] yields.
//!
//! The pepper itself is never part of a `Config`: only the file it is read
//! from, so printing a config can never leak it.

mod overrides;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use overrides::Overrides;
pub use validate::Checked;

use crate::idkey::{IdHasher, PepperError};
use crate::observe::log::{LogFormat, DEFAULT_FILTER};

/// Where the pepper comes from when no file is configured.
pub const PEPPER_ENV: &str = "ONEID_PEPPER";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    pub raft: RaftSection,
    pub log: LogSection,
    pub runtime: RuntimeSection,
    pub limits: LimitsSection,
    pub tls: TlsSection,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Required: a positive integer, unique in the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Required: HOST:PORT for clients and peers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Required: this node's data, reused on restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `ID=HOST:PORT,...` of a brand-new cluster; empty to join later.
    pub initial_cluster: String,
    /// HOST:PORT for /metrics, /ready and /live; none opens no HTTP port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    /// HOST:PORT for the HTTP/JSON gateway over mTLS (needs TLS); none
    /// serves it only on `http_addr`, and only in insecure mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_addr: Option<String>,
    /// File holding the pepper; without it the pepper comes from
    /// `ONEID_PEPPER`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pepper_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSection {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How long a client request may wait for raft before failing.
    pub request_timeout_ms: u64,
    /// Entries between snapshots (log compaction), about: each member
    /// builds in its own turn (`oneid_raft::snapshot_turns`).
    pub snapshot_logs: u64,
    /// A leader that a quorum heard from within the last 0.9 × their
    /// `election_timeout_max_ms` answers linearizable reads without a
    /// round of heartbeats (see README → Design → Leader lease). Relies on
    /// the nodes' clocks advancing at the same rate, within 10 %.
    pub lease_reads: bool,
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            // openraft 0.9 uses the heartbeat as the AppendEntries timeout
            // too: at 50 ms, import batches timed out and caused elections
            // on a 2-core machine, so it stays at 100.
            heartbeat_ms: 100,
            // After a leader crash a follower waits out the old leader's
            // lease (openraft: the maximum) plus its own timeout (in [min,
            // max)) before it campaigns. 150/300 puts writes back within
            // ~0.6 s of a kill -9 (400/800: 1.6 s), and a heartbeat missed
            // 4 times over is still needed first: no elections were seen
            // under 64 registering clients or a bulk import on 2 busy cores.
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            request_timeout_ms: 3_000,
            snapshot_logs: 20_000,
            lease_reads: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    pub format: LogFormat,
    /// `tracing` filter directives, e.g. `info,openraft=warn`.
    pub filter: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Human,
            filter: DEFAULT_FILTER.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    /// Async worker threads; 0 means one per core.
    pub worker_threads: usize,
}

/// Abuse limits; see `crate::limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Queries (counts, 2.0 account counts, count-by-SMS) each caller may
    /// make per second on one node, after its burst.
    pub queries_per_second: f64,
    /// Queries a caller may make at once before the rate applies.
    pub query_burst: u32,
    /// Callers the rate limiter remembers at once (bounds its memory).
    pub max_tracked_callers: usize,
    /// Client requests served at once by one node; more are refused.
    pub max_concurrent_requests: usize,
    /// Cards in one ImportCards request.
    pub max_import_batch: usize,
    /// Callers (see `limits::caller_key`) the query rate does not apply to:
    /// by default this host, for tools and tests running beside the node.
    pub unlimited_callers: Vec<String>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            queries_per_second: 5.0,
            query_burst: 20,
            max_tracked_callers: 100_000,
            max_concurrent_requests: 1024,
            max_import_batch: 10_000,
            unlimited_callers: vec!["127.0.0.1".into(), "::1".into()],
        }
    }
}

/// mTLS on the node's port: its certificate and key, and the CA that signs
/// every node and client. Without them the node refuses to start unless
/// `insecure` asks for plaintext.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The CA's revocation lists (PEM), re-read when the file changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
    /// Plaintext, and every caller is trusted as an operator with every role.
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    // toml's message (the source) names the line, the column and the
    // offending key.
    #[error("config file {path}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("environment variable {var}={value:?}: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("printing the configuration: {0}")]
    Print(#[from] toml::ser::Error),
}

impl Config {
    /// The effective configuration: defaults, then `file`, then the
    /// environment as `var` reports it, then `flags`. Not yet validated.
    pub fn resolve(
        file: Option<&Path>,
        var: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        cfg.apply(&Overrides::from_env(var)?);
        cfg.apply(flags);
        Ok(cfg)
    }

    /// What a command other than `serve` needs before it starts: logging and
    /// worker threads, from defaults and the environment.
    pub fn for_client(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        cfg.apply(&Overrides::process_from_env(var)?);
        validate::process(&cfg).map_err(ConfigError::Invalid)?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Every setting `o` carries replaces this config's.
    pub fn apply(&mut self, o: &Overrides) {
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        fn set_opt<T: Clone>(slot: &mut Option<T>, v: &Option<T>) {
            if v.is_some() {
                slot.clone_from(v);
            }
        }
        set_opt(&mut self.node.id, &o.node_id);
        set_opt(&mut self.node.addr, &o.addr);
        set_opt(&mut self.node.data_dir, &o.data_dir);
        set(&mut self.node.initial_cluster, &o.initial_cluster);
        set_opt(&mut self.node.http_addr, &o.http_addr);
        set_opt(&mut self.node.gateway_addr, &o.gateway_addr);
        set_opt(&mut self.node.pepper_file, &o.pepper_file);
        set(&mut self.raft.heartbeat_ms, &o.heartbeat_ms);
        set(
            &mut self.raft.election_timeout_min_ms,
            &o.election_timeout_min_ms,
        );
        set(
            &mut self.raft.election_timeout_max_ms,
            &o.election_timeout_max_ms,
        );
        set(&mut self.raft.request_timeout_ms, &o.request_timeout_ms);
        set(&mut self.raft.snapshot_logs, &o.snapshot_logs);
        set(&mut self.raft.lease_reads, &o.lease_reads);
        set(&mut self.log.format, &o.log_format);
        set(&mut self.log.filter, &o.log_filter);
        set(&mut self.runtime.worker_threads, &o.worker_threads);
        set(&mut self.limits.queries_per_second, &o.queries_per_second);
        set(&mut self.limits.query_burst, &o.query_burst);
        set(&mut self.limits.max_tracked_callers, &o.max_tracked_callers);
        set(
            &mut self.limits.max_concurrent_requests,
            &o.max_concurrent_requests,
        );
        set(&mut self.limits.max_import_batch, &o.max_import_batch);
        if let Some(list) = &o.unlimited_callers {
            self.limits.unlimited_callers = list
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
        }
        set_opt(&mut self.tls.ca, &o.ca);
        set_opt(&mut self.tls.cert, &o.cert);
        set_opt(&mut self.tls.key, &o.key);
        set_opt(&mut self.tls.crl, &o.crl);
        set(&mut self.tls.insecure, &o.insecure.then_some(true));
    }

    /// The hasher keyed by the pepper in `node.pepper_file`, else in
    /// `ONEID_PEPPER` as `var` reports it.
    pub fn hasher(&self, var: impl Fn(&str) -> Option<String>) -> Result<IdHasher, PepperError> {
        IdHasher::load(self.node.pepper_file.as_deref(), var(PEPPER_ENV).as_deref())
    }

    /// The effective configuration as TOML, with where the pepper comes from
    /// as a closing comment (never the pepper).
    pub fn to_toml(&self, pepper_in_env: bool) -> Result<String, ConfigError> {
        let mut text = toml::to_string(self)?;
        let source = match (&self.node.pepper_file, pepper_in_env) {
            (Some(path), _) => format!("file {}", path.display()),
            (None, true) => format!("from env ({PEPPER_ENV})"),
            (None, false) => "none".into(),
        };
        text.push_str(&format!("\n# pepper: {source}\n"));
        Ok(text)
    }
}

/// The process environment, with empty variables treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
