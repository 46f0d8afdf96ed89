//! The Prometheus metrics of one node, in a registry of its own (not the
//! process-global default) so several nodes can live in one test process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use oneid_storage::schema::ALL_CFS;
use oneid_storage::Db;
use openraft::{BasicNode, RaftMetrics, ServerState};
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::api::cluster::role_name;

/// gRPC latency buckets in seconds: sub-millisecond reads up to requests
/// that ran into the server's 30 s timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Distinct `method` label values kept before the rest become "other": the
/// path comes from the client, and unknown methods must not grow the
/// registry without bound.
const MAX_METHOD_LABELS: usize = 128;

/// The `method` label of malformed paths and of methods past the cap.
const OTHER_METHOD: &str = "other";

/// RocksDB properties exported per column family: (property, metric, help).
const ROCKSDB_PROPERTIES: [(&str, &str, &str); 3] = [
    (
        "rocksdb.estimate-num-keys",
        "oneid_rocksdb_estimate_num_keys",
        "RocksDB's estimate of the keys in a column family",
    ),
    (
        "rocksdb.total-sst-files-size",
        "oneid_rocksdb_total_sst_files_size_bytes",
        "Bytes of all SST files of a column family",
    ),
    (
        "rocksdb.cur-size-all-mem-tables",
        "oneid_rocksdb_cur_size_all_mem_tables_bytes",
        "Bytes of the active and unflushed immutable memtables of a column family",
    ),
];

const ROLES: [ServerState; 4] = [
    ServerState::Leader,
    ServerState::Follower,
    ServerState::Candidate,
    ServerState::Learner,
];

pub struct Metrics {
    registry: Registry,
    pub raft_term: IntGauge,
    pub raft_leader_id: IntGauge,
    pub raft_is_leader: IntGauge,
    pub raft_role: IntGaugeVec,
    pub raft_last_log_index: IntGauge,
    pub raft_last_applied_index: IntGauge,
    pub raft_committed_index: IntGauge,
    pub raft_snapshot_index: IntGauge,
    pub raft_purged_index: IntGauge,
    pub raft_voters: IntGauge,
    pub raft_members: IntGauge,
    pub raft_leader_changes: IntCounter,
    raft_apply_holds: IntCounter,
    raft_apply_held_seconds: Counter,
    raft_read_indexes: IntCounterVec,
    /// Concurrent scrapes must not both add the same part of a running
    /// total (apply holds, read indexes).
    totals_sync: Mutex<()>,
    pub ready: IntGauge,
    grpc_requests: IntCounterVec,
    grpc_duration: HistogramVec,
    rocksdb: Vec<IntGaugeVec>,
    process_rss: IntGauge,
    revoked_certificates: IntGauge,
    revocation_list_stale: IntGauge,
    /// Each method's metric handles by request path, resolved on its first
    /// request.
    methods: RwLock<HashMap<String, Arc<MethodMetrics>>>,
}

/// One gRPC method's metric handles. Looked up once per request by path
/// (a read lock, no allocation) instead of by label values in the metric
/// vectors, which hashes the labels and takes the vectors' own locks twice
/// per request.
pub struct MethodMetrics {
    /// The `method` label: the request path, or "other".
    pub label: String,
    duration: Histogram,
    ok: IntCounter,
    requests: IntCounterVec,
}

impl MethodMetrics {
    fn new(label: &str, requests: &IntCounterVec, durations: &HistogramVec) -> MethodMetrics {
        MethodMetrics {
            label: label.to_string(),
            duration: durations.with_label_values(&[label]),
            ok: requests.with_label_values(&[label, "OK"]),
            requests: requests.clone(),
        }
    }

    /// Counts one finished request under its status code name and times it.
    pub fn record(&self, code: &str, elapsed: Duration) {
        if code == "OK" {
            self.ok.inc();
        } else {
            self.requests
                .with_label_values(&[self.label.as_str(), code])
                .inc();
        }
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// Log indexes and sizes are u64; Prometheus' integer gauges are i64. A value
/// past i64::MAX is not reachable in practice, so saturate rather than wrap.
pub fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new(node_id: u64) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };

        let node = gauge("oneid_node_id", "This node's raft id")?;
        node.set(gauge_value(node_id));

        let raft_role = IntGaugeVec::new(
            Opts::new(
                "oneid_raft_role",
                "1 for this node's current raft role, 0 for the others",
            ),
            &["role"],
        )?;
        registry.register(Box::new(raft_role.clone()))?;

        let raft_leader_changes = IntCounter::new(
            "oneid_raft_leader_changes_total",
            "Leader changes (new leader or new term) this node has seen since it started",
        )?;
        registry.register(Box::new(raft_leader_changes.clone()))?;

        let raft_apply_holds = IntCounter::new(
            "oneid_raft_apply_holds_total",
            "AppendEntries this node held back while far behind in applying committed entries",
        )?;
        registry.register(Box::new(raft_apply_holds.clone()))?;
        let raft_apply_held_seconds = Counter::new(
            "oneid_raft_apply_held_seconds_total",
            "Time AppendEntries were held back while this node caught up in applying",
        )?;
        registry.register(Box::new(raft_apply_held_seconds.clone()))?;
        let raft_read_indexes = IntCounterVec::new(
            Opts::new(
                "oneid_raft_read_indexes_total",
                "Read indexes this node answered as leader: from its lease (how=\"lease\") \
                 or after a quorum round of heartbeats (how=\"round\")",
            ),
            &["how"],
        )?;
        registry.register(Box::new(raft_read_indexes.clone()))?;

        let grpc_requests = IntCounterVec::new(
            Opts::new(
                "oneid_grpc_requests_total",
                "gRPC requests served, by method and status code",
            ),
            &["method", "code"],
        )?;
        registry.register(Box::new(grpc_requests.clone()))?;

        let grpc_duration = HistogramVec::new(
            HistogramOpts::new(
                "oneid_grpc_request_duration_seconds",
                "gRPC request latency until the response is complete, by method",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )?;
        registry.register(Box::new(grpc_duration.clone()))?;

        let mut rocksdb = Vec::new();
        for (_, name, help) in ROCKSDB_PROPERTIES {
            let g = IntGaugeVec::new(Opts::new(name, help), &["cf"])?;
            registry.register(Box::new(g.clone()))?;
            rocksdb.push(g);
        }

        Ok(Metrics {
            raft_term: gauge("oneid_raft_term", "Current raft term")?,
            raft_leader_id: gauge(
                "oneid_raft_leader_id",
                "Id of the leader this node knows, 0 if none",
            )?,
            raft_is_leader: gauge("oneid_raft_is_leader", "1 if this node is the raft leader")?,
            raft_role,
            raft_last_log_index: gauge(
                "oneid_raft_last_log_index",
                "Index of the last entry in this node's raft log",
            )?,
            raft_last_applied_index: gauge(
                "oneid_raft_last_applied_index",
                "Index of the last entry applied to this node's state machine",
            )?,
            raft_committed_index: gauge(
                "oneid_raft_committed_index",
                "Commit index as this node knows it",
            )?,
            raft_snapshot_index: gauge(
                "oneid_raft_snapshot_index",
                "Last log index covered by this node's snapshot",
            )?,
            raft_purged_index: gauge(
                "oneid_raft_purged_index",
                "Last log index purged from this node's raft log",
            )?,
            raft_voters: gauge("oneid_raft_voters", "Voters in the current membership")?,
            raft_members: gauge(
                "oneid_raft_members",
                "Members (voters and learners) in the current membership",
            )?,
            raft_leader_changes,
            raft_apply_holds,
            raft_apply_held_seconds,
            raft_read_indexes,
            totals_sync: Mutex::new(()),
            ready: gauge(
                "oneid_ready",
                "1 when this node is ready for client traffic (as /ready reports)",
            )?,
            grpc_requests,
            grpc_duration,
            rocksdb,
            process_rss: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            )?,
            revoked_certificates: gauge(
                "oneid_tls_revoked_certificates",
                "Certificates the revocation lists in force name (tls.crl)",
            )?,
            revocation_list_stale: gauge(
                "oneid_tls_revocation_list_stale",
                "1 while the tls.crl file on disk failed to load and older lists stay in force",
            )?,
            methods: RwLock::new(HashMap::new()),
            registry,
        })
    }

    pub fn observe_raft(&self, m: &RaftMetrics<u64, BasicNode>) {
        self.raft_term.set(gauge_value(m.current_term));
        self.raft_leader_id
            .set(gauge_value(m.current_leader.unwrap_or(0)));
        let leading = m.state == ServerState::Leader && m.current_leader == Some(m.id);
        self.raft_is_leader.set(i64::from(leading));
        for role in ROLES {
            self.raft_role
                .with_label_values(&[role_name(role)])
                .set(i64::from(m.state == role));
        }
        self.raft_last_log_index
            .set(gauge_value(m.last_log_index.unwrap_or(0)));
        self.raft_last_applied_index
            .set(gauge_value(m.last_applied.map(|l| l.index).unwrap_or(0)));
        self.raft_snapshot_index
            .set(gauge_value(m.snapshot.map(|l| l.index).unwrap_or(0)));
        self.raft_purged_index
            .set(gauge_value(m.purged.map(|l| l.index).unwrap_or(0)));
        let membership = m.membership_config.membership();
        self.raft_voters
            .set(gauge_value(membership.voter_ids().count() as u64));
        self.raft_members
            .set(gauge_value(membership.nodes().count() as u64));
    }

    /// The revocation lists in force; called per scrape.
    pub fn observe_revocations(&self, r: &crate::security::revocation::Revocations) {
        self.revoked_certificates
            .set(gauge_value(r.revoked() as u64));
        self.revocation_list_stale.set(i64::from(r.stale()));
    }

    /// Reads RocksDB properties and the process RSS; called per scrape, as
    /// these are cheap in-memory reads with nothing to push them.
    pub fn observe_storage(&self, db: &Db) {
        let raw = db.raw();
        for cf_name in ALL_CFS {
            let Some(cf) = raw.cf_handle(cf_name) else {
                continue;
            };
            for ((property, _, _), gauge) in ROCKSDB_PROPERTIES.iter().zip(&self.rocksdb) {
                if let Ok(Some(v)) = raw.property_int_value_cf(cf, *property) {
                    gauge.with_label_values(&[cf_name]).set(gauge_value(v));
                }
            }
        }
        if let Some(rss) = resident_bytes() {
            self.process_rss.set(gauge_value(rss));
        }
    }

    /// The metric handles for a request path `/package.Service/Method`.
    pub fn method(&self, path: &str) -> Arc<MethodMetrics> {
        let well_formed = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(service, method)| {
                !service.is_empty() && !method.is_empty() && !method.contains('/')
            });
        let wanted = if well_formed { path } else { OTHER_METHOD };
        // A poisoned lock only means another request panicked mid-insert;
        // the map is still a valid map.
        if let Some(m) = self
            .methods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(wanted)
        {
            return m.clone();
        }
        let mut methods = self
            .methods
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(m) = methods.get(wanted) {
            return m.clone();
        }
        // "other" itself is not counted against the cap.
        let named = methods.len() - usize::from(methods.contains_key(OTHER_METHOD));
        let label = if named >= MAX_METHOD_LABELS {
            OTHER_METHOD
        } else {
            wanted
        };
        methods
            .entry(label.to_string())
            .or_insert_with(|| {
                Arc::new(MethodMetrics::new(
                    label,
                    &self.grpc_requests,
                    &self.grpc_duration,
                ))
            })
            .clone()
    }

    /// Brings the hold counters up to the replica's running totals.
    pub fn observe_apply_holds(&self, holds: u64, held: Duration) {
        let _one_at_a_time = self.totals_sync.lock().unwrap_or_else(|p| p.into_inner());
        self.raft_apply_holds
            .inc_by(holds.saturating_sub(self.raft_apply_holds.get()));
        let seconds = held.as_secs_f64() - self.raft_apply_held_seconds.get();
        if seconds > 0.0 {
            self.raft_apply_held_seconds.inc_by(seconds);
        }
    }

    /// Brings the read index counters up to the replica's running totals.
    pub fn observe_read_indexes(&self, lease: u64, round: u64) {
        let _one_at_a_time = self.totals_sync.lock().unwrap_or_else(|p| p.into_inner());
        for (how, total) in [("lease", lease), ("round", round)] {
            let c = self.raft_read_indexes.with_label_values(&[how]);
            c.inc_by(total.saturating_sub(c.get()));
        }
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Resident set size from /proc (Linux); None where that is not available.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        let m = Metrics::new(1).expect("metrics");
        let label = |path: &str| m.method(path).label.clone();
        assert_eq!(
            label("/oneid.v1.Registry/CountCards"),
            "/oneid.v1.Registry/CountCards"
        );
        assert_eq!(label("/nonsense"), "other");
        assert_eq!(label("/a/b/c"), "other");
        for i in 0..(2 * MAX_METHOD_LABELS) {
            label(&format!("/x.Y/M{i}"));
        }
        assert_eq!(label("/x.Y/Fresh"), "other");
        // Labels seen before the cap keep their name.
        assert_eq!(
            label("/oneid.v1.Registry/CountCards"),
            "/oneid.v1.Registry/CountCards"
        );
        assert_eq!(m.methods.read().unwrap().len(), MAX_METHOD_LABELS + 1);
    }

    #[test]
    fn method_handles_count_by_code_and_time() {
        let m = Metrics::new(1).expect("metrics");
        let count = m.method("/oneid.v1.Registry/CountCards");
        count.record("OK", Duration::from_millis(2));
        count.record("OK", Duration::from_millis(3));
        m.method("/oneid.v1.Registry/CountCards")
            .record("NotFound", Duration::from_millis(1));
        let text = m.render().expect("render");
        let line = |code: &str| {
            format!(
                "oneid_grpc_requests_total{{code=\"{code}\",method=\"/oneid.v1.Registry/CountCards\"}} "
            )
        };
        assert!(text.contains(&(line("OK") + "2")), "{text}");
        assert!(text.contains(&(line("NotFound") + "1")), "{text}");
        assert!(
            text.contains(
                "oneid_grpc_request_duration_seconds_count{method=\"/oneid.v1.Registry/CountCards\"} 3"
            ),
            "{text}"
        );
    }

    #[test]
    fn renders_exposition_text() {
        let m = Metrics::new(7).expect("metrics");
        m.observe_raft(&RaftMetrics::new_initial(7));
        let text = m.render().expect("render");
        assert!(text.contains("oneid_node_id 7"), "{text}");
        assert!(text.contains("oneid_raft_is_leader 0"), "{text}");
        assert!(text.contains("# TYPE oneid_raft_leader_changes_total counter"));
        m.observe_apply_holds(3, Duration::from_millis(1500));
        m.observe_apply_holds(5, Duration::from_millis(2000));
        m.observe_read_indexes(4, 1);
        m.observe_read_indexes(9, 1);
        let text = m.render().expect("render");
        assert!(text.contains("oneid_raft_apply_holds_total 5"), "{text}");
        assert!(
            text.contains("oneid_raft_read_indexes_total{how=\"lease\"} 9"),
            "{text}"
        );
        assert!(
            text.contains("oneid_raft_read_indexes_total{how=\"round\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("oneid_raft_apply_held_seconds_total 2\n"),
            "{text}"
        );
    }
}
