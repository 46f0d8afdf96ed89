//! The replicated state machine: the only writer of registry state.
//!
//! Apply is deterministic: it reads only the log entries and the stored state,
//! uses the leader's stamp as the time (made monotonic across leaders), and
//! writes each apply call's effects — data, dedup records and the applied
//! marker — in one RocksDB write batch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use oneid_raft::types::commands_in;
use oneid_raft::{ProposalOutcome, SnapshotFile, TypeConfig};
use oneid_storage::keys::SM_APPLIED;
use oneid_storage::log_store::blocking;
use oneid_storage::records::{SM_META_V, SNAPSHOT_HEADER_V};
use oneid_storage::schema::CF_SM_META;
use oneid_storage::{codec, snapshot_file, Db, StorageError};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::apply::{self, Tx};
use crate::command;
use crate::domain::Policy;

type RaftStorageError = openraft::StorageError<u64>;
type Meta = SnapshotMeta<u64, BasicNode>;

/// Bookkeeping stored under `sm_meta/applied`, in the same batch as the data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRecord {
    pub last_applied: Option<LogId<u64>>,
    pub last_membership: StoredMembership<u64, BasicNode>,
    /// The replicated clock: the largest leader stamp applied so far.
    pub clock_ms: u64,
}

fn sm_err(e: StorageError) -> RaftStorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err(e: StorageError) -> RaftStorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

/// Reads the applied record, if any.
pub fn read_applied(db: &Db) -> Result<AppliedRecord, StorageError> {
    let cf = db.cf(CF_SM_META)?;
    match db.raw().get_pinned_cf(cf, SM_APPLIED)? {
        None => Ok(AppliedRecord::default()),
        Some(v) => codec::decode_serde(SM_META_V, &v, CF_SM_META, SM_APPLIED),
    }
}

// ---------------------------------------------------------------------------
// Snapshot files on disk.

/// The snapshot directory: at most one published snapshot (`snap-*.snap`),
/// plus files being received or built.
pub struct SnapshotStore {
    dir: PathBuf,
    current: Mutex<Option<(Meta, PathBuf)>>,
    seq: AtomicU64,
}

fn read_header(path: &Path) -> Result<Meta, StorageError> {
    let (_, header) = snapshot_file::SnapshotReader::open(path)?;
    codec::decode_serde(
        SNAPSHOT_HEADER_V,
        &header,
        "snapshot",
        path.to_string_lossy().as_bytes(),
    )
}

impl SnapshotStore {
    pub fn open(dir: &Path) -> Result<SnapshotStore, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut best: Option<(Meta, PathBuf)> = None;
        let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !(name.starts_with("snap-") && name.ends_with(".snap")) {
                // Leftovers of an interrupted build or receive.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match read_header(&path) {
                Ok(meta) => {
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| meta.last_log_id > b.last_log_id)
                    {
                        best = Some((meta, path));
                    }
                }
                Err(e) => tracing::warn!("ignoring unreadable snapshot {}: {e}", path.display()),
            }
        }
        let store = SnapshotStore {
            dir: dir.to_path_buf(),
            current: Mutex::new(None),
            seq: AtomicU64::new(0),
        };
        if let Some((meta, path)) = best {
            store.publish(meta, path);
        }
        Ok(store)
    }

    fn new_path(&self, meta_hint: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        self.dir.join(format!("snap-{meta_hint}-{pid}-{n}.snap"))
    }

    pub fn current(&self) -> Option<(Meta, PathBuf)> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `path` the current snapshot and deletes older published ones.
    fn publish(&self, meta: Meta, path: PathBuf) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let p = e.path();
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if p != path && name.starts_with("snap-") {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        *cur = Some((meta, path));
    }
}

// ---------------------------------------------------------------------------
// Apply.

pub struct StateMachine {
    db: Arc<Db>,
    snapshots: Arc<SnapshotStore>,
    applied: AppliedRecord,
    policy: Policy,
}

impl StateMachine {
    /// Opens the state machine, finishing a snapshot install that a crash
    /// interrupted before anything is served.
    pub fn open(db: Arc<Db>, snapshot_dir: &Path) -> Result<StateMachine, StorageError> {
        let snapshots = Arc::new(SnapshotStore::open(snapshot_dir)?);
        if let Some(path) = snapshot_file::interrupted_install(&db)? {
            tracing::warn!(
                "finishing interrupted snapshot install from {}",
                path.display()
            );
            snapshot_file::install(&db, &path)?;
        }
        let applied = read_applied(&db)?;
        let policy = apply::load_policy(&db)?;
        Ok(StateMachine {
            db,
            snapshots,
            applied,
            policy,
        })
    }

    fn apply_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<Vec<ProposalOutcome>, StorageError> {
        let mut tx = Tx::new(&self.db);
        let mut applied = self.applied.clone();
        let mut outcomes = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => outcomes.push(ProposalOutcome::default()),
                EntryPayload::Membership(m) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    outcomes.push(ProposalOutcome::default());
                }
                EntryPayload::Normal(p) => {
                    // Leaders' clocks differ; the replicated clock never runs back.
                    applied.clock_ms = applied.clock_ms.max(p.stamp_ms);
                    let mut results = Vec::with_capacity(p.commands.len());
                    let decoded: Vec<_> = p
                        .commands
                        .iter()
                        .map(|c| command::Envelope::decode(c))
                        .collect();
                    let mut reads = Vec::new();
                    for e in decoded.iter().flatten() {
                        apply::reads(e, &mut reads);
                    }
                    tx.prefetch(reads)?;
                    for (position, envelope) in decoded.into_iter().enumerate() {
                        let a = apply::apply_decoded(
                            &mut tx,
                            &mut self.policy,
                            (entry.log_id.index, position as u32),
                            applied.clock_ms,
                            envelope,
                        )?;
                        let encoded =
                            command::encode(&a).map_err(|e| StorageError::Encode(e.to_string()))?;
                        results.push(encoded.into());
                    }
                    outcomes.push(ProposalOutcome { results });
                }
            }
        }
        let meta_cf = self.db.cf(CF_SM_META)?;
        let mut batch = tx.into_batch()?;
        batch.put_cf(
            meta_cf,
            SM_APPLIED,
            codec::encode_serde(SM_META_V, &applied)?,
        );
        self.db.raw().write_opt(batch, &Db::apply_write())?;
        self.applied = applied;
        Ok(outcomes)
    }
}

pub struct SnapshotBuilder {
    db: Arc<Db>,
    snapshots: Arc<SnapshotStore>,
}

impl SnapshotBuilder {
    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let path = self.snapshots.new_path("build");
        let mut meta_out = None;
        snapshot_file::build(&self.db, &path, |applied_raw| {
            let applied: AppliedRecord = match applied_raw {
                None => AppliedRecord::default(),
                Some(v) => codec::decode_serde(SM_META_V, v, CF_SM_META, SM_APPLIED)?,
            };
            let id = match applied.last_applied {
                Some(l) => format!(
                    "{}-{}-{}",
                    l.leader_id.term,
                    l.index,
                    self.snapshots.seq.load(Ordering::Relaxed)
                ),
                None => format!("empty-{}", self.snapshots.seq.load(Ordering::Relaxed)),
            };
            let meta = Meta {
                last_log_id: applied.last_applied,
                last_membership: applied.last_membership,
                snapshot_id: id,
            };
            let header = codec::encode_serde(SNAPSHOT_HEADER_V, &meta)?;
            meta_out = Some(meta);
            Ok(header)
        })?;
        let meta =
            meta_out.ok_or_else(|| StorageError::Encode("snapshot header not built".into()))?;
        // Logs up to this snapshot may be purged once it is published, and
        // applies skip the WAL: everything it covers (and possibly more,
        // applied during the build) must be flushed first, or a crash could
        // leave a state machine behind a log that no longer holds the gap.
        self.db.flush_state_machine()?;
        self.snapshots.publish(meta.clone(), path.clone());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path }),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        blocking(|| self.build()).map_err(snap_err)
    }
}

/// Commands per apply call above which apply leaves the async worker.
const INLINE_APPLY_MAX: usize = 256;

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), RaftStorageError> {
        Ok((
            self.applied.last_applied,
            self.applied.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalOutcome>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let commands: usize = entries.iter().map(commands_in).sum();
        // A few commands are cheaper applied inline than handed to another
        // thread. A big batch (an import) makes thousands of RocksDB reads,
        // some from disk: on a worker thread that would starve the raft
        // core and the network handlers queued behind it for long enough to
        // miss heartbeats, so it moves off the worker.
        let multi_thread = tokio::runtime::Handle::try_current()
            .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .unwrap_or(false);
        if commands >= INLINE_APPLY_MAX && multi_thread {
            tokio::task::block_in_place(|| self.apply_entries(entries)).map_err(sm_err)
        } else {
            self.apply_entries(entries).map_err(sm_err)
        }
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, RaftStorageError> {
        Ok(Box::new(SnapshotFile {
            path: self.snapshots.new_path("recv"),
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), RaftStorageError> {
        let result = blocking(|| -> Result<(), StorageError> {
            let header = read_header(&snapshot.path)?;
            if &header != meta {
                return Err(StorageError::BadSnapshot {
                    path: snapshot.path.clone(),
                    reason: format!("file holds snapshot {header}, raft installs {meta}"),
                });
            }
            // Keep the installed file as our current snapshot: move it into
            // our directory (copy when it lives elsewhere, e.g. in tests).
            let dest = self
                .snapshots
                .new_path(&oneid_raft::service::sanitize(&meta.snapshot_id));
            if std::fs::rename(&snapshot.path, &dest).is_err() {
                std::fs::copy(&snapshot.path, &dest).map_err(|e| StorageError::io(&dest, e))?;
            }
            snapshot_file::install(&self.db, &dest)?;
            self.applied = read_applied(&self.db)?;
            self.policy = apply::load_policy(&self.db)?;
            self.snapshots.publish(meta.clone(), dest);
            Ok(())
        });
        result.map_err(snap_err)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        Ok(self.snapshots.current().map(|(meta, path)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path }),
        }))
    }
}

// ---------------------------------------------------------------------------
// Backups (`oneid snapshot save|verify|restore`).

/// What a verified snapshot file holds.
#[derive(Debug, Clone)]
pub struct SnapshotFileInfo {
    pub meta: Meta,
    /// Key-value entries (both state machine column families).
    pub entries: u64,
}

/// Reads a snapshot file end to end, checking its crc32 and entry count,
/// and decodes the raft snapshot meta from its header. Nothing else reads
/// a backup before this has passed on it.
pub fn verify_snapshot_file(path: &Path) -> Result<SnapshotFileInfo, StorageError> {
    let (reader, header) = snapshot_file::SnapshotReader::open(path)?;
    let entries = reader.for_each(|_, _, _| Ok(()))?;
    let meta = codec::decode_serde(
        SNAPSHOT_HEADER_V,
        &header,
        "snapshot",
        path.to_string_lossy().as_bytes(),
    )?;
    Ok(SnapshotFileInfo { meta, entries })
}

/// Seeds the empty state machine in `db` with a backup, for a new cluster
/// whose members are `membership`, and publishes a snapshot of the result
/// in `snapshot_dir`. Returns that snapshot's meta.
///
/// The data keeps the backup's last applied log id: the new node's raft log
/// then starts after it (the caller marks it purged), so any member that
/// joins empty is sent this data as a raft snapshot instead of replaying a
/// log that does not contain it. Only the membership is replaced: the old
/// cluster's members and addresses mean nothing to the new one.
pub fn restore_backup(
    db: &Arc<Db>,
    snapshot_dir: &Path,
    backup: &Path,
    membership: openraft::Membership<u64, BasicNode>,
) -> Result<Meta, StorageError> {
    let bad = |reason: String| StorageError::BadSnapshot {
        path: backup.to_path_buf(),
        reason,
    };
    // `install` checks the whole file before it touches anything.
    let header = read_header(backup)?;
    let last = header.last_log_id.ok_or_else(|| {
        bad("it covers no log entry (taken from a node that never joined a cluster)".into())
    })?;
    snapshot_file::install(db, backup)?;
    let mut applied = read_applied(db)?;
    if applied.last_applied != Some(last) {
        return Err(bad(format!(
            "header says it covers {last}, its data was applied up to {:?}",
            applied.last_applied
        )));
    }
    applied.last_membership = StoredMembership::new(Some(last), membership);
    let meta_cf = db.cf(CF_SM_META)?;
    db.raw().put_cf_opt(
        meta_cf,
        SM_APPLIED,
        codec::encode_serde(SM_META_V, &applied)?,
        &Db::sync_write(),
    )?;
    // Built from the restored data, so its header carries the new
    // membership: this is what the node sends to members that join empty.
    let builder = SnapshotBuilder {
        db: db.clone(),
        snapshots: Arc::new(SnapshotStore::open(snapshot_dir)?),
    };
    Ok(builder.build()?.meta)
}

#[cfg(test)]
mod suite {
    //! openraft's own conformance suite for the log store and state machine.

    use super::*;
    use oneid_storage::log_store::LogStore;
    use oneid_storage::schema::Tuning;
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore<TypeConfig>, StateMachine), RaftStorageError>
        {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
            let db = Db::open(&dir.path().join("db"), Tuning::default()).map_err(sm_err)?;
            let sm =
                StateMachine::open(db.clone(), &dir.path().join("snapshots")).map_err(sm_err)?;
            let log = LogStore::new(db).map_err(sm_err)?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        if let Err(e) = Suite::test_all(Builder) {
            panic!("storage suite failed: {e}");
        }
    }
}

#[cfg(test)]
mod proposal_order {
    //! One caller's commands apply in the order it sent them, however many
    //! log entries the proposer cuts them into, on the leader and when a
    //! follower forwards them.

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use oneid_raft::pb::raft_service_server::RaftServiceServer;
    use oneid_raft::replica::{Replica, ReplicaConfig};
    use oneid_raft::service::RaftRpc;
    use oneid_raft::unapplied::Unapplied;
    use oneid_storage::log_store::LogStore;
    use oneid_storage::schema::Tuning;

    /// A replica serving raft on `listener`, with entries of four commands
    /// and two in flight: a call of 64 commands spans sixteen entries.
    async fn start_replica(
        node_id: u64,
        dir: &std::path::Path,
        listener: tokio::net::TcpListener,
    ) -> Arc<Replica> {
        let dir = dir.join(node_id.to_string());
        let db = Db::open(&dir.join("db"), Tuning::default()).expect("db");
        let sm = StateMachine::open(db.clone(), &dir.join("snapshots")).expect("sm");
        let unapplied = Arc::new(Unapplied::new(crate::footprint::of_command));
        let log = LogStore::new(db)
            .and_then(|l| l.observed_by(unapplied.clone()))
            .expect("log store");
        let replica = Replica::start(
            ReplicaConfig {
                node_id,
                raft: openraft::Config::default(),
                max_batch: 4,
                max_inflight: 2,
                request_timeout: Duration::from_secs(5),
                peer_tls: None,
                rules_supported: crate::domain::LATEST_RULES,
                unapplied,
                lease_reads: true,
            },
            log,
            sm,
        )
        .await
        .expect("start");
        let service = RaftServiceServer::new(RaftRpc::new(replica.clone(), dir.join("received")));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(
                    // Nagle on these sockets would stall each forward ~40 ms.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                ),
        );
        replica
    }

    async fn listener() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        (listener, addr)
    }

    /// Sends `rounds` calls of 64 commands through `replica` and checks each
    /// call's commands were applied at non-decreasing log indexes.
    async fn calls_apply_in_order(replica: Arc<Replica>, caller: u8, rounds: u8) {
        for round in 0..rounds {
            // Not valid commands: each is applied as a refusal, in order,
            // at the index of its entry.
            let commands: Vec<Vec<u8>> = (0..64u8).map(|i| vec![0xff, caller, round, i]).collect();
            let indexes: Vec<u64> = replica
                .propose_many(commands)
                .await
                .into_iter()
                .map(|r| r.expect("applied").0)
                .collect();
            assert!(
                indexes.windows(2).all(|w| w[0] <= w[1]),
                "caller {caller} round {round}: commands applied out of order at indexes {indexes:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_callers_commands_apply_in_order_across_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (l1, a1) = listener().await;
        let replica = start_replica(1, dir.path(), l1).await;
        replica.initialize(vec![(1, a1)]).await.expect("initialize");
        replica
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .current_leader(1, "single-node leader")
            .await
            .expect("leader");
        calls_apply_in_order(replica, 0, 20).await;
    }

    /// Through a follower: its forwarded batches are in flight side by side
    /// unless one continues a call, and several callers (plus single
    /// commands) interleave in its queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwarded_calls_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (l1, a1) = listener().await;
        let (l2, a2) = listener().await;
        let one = start_replica(1, dir.path(), l1).await;
        let two = start_replica(2, dir.path(), l2).await;
        one.initialize(vec![(1, a1), (2, a2)])
            .await
            .expect("initialize");
        let leader = one
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .expect("leader")
            .current_leader;
        let follower = if leader == Some(1) { two } else { one };
        follower
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.current_leader == leader,
                "the follower knows the leader",
            )
            .await
            .expect("follower");
        let singles = {
            let follower = follower.clone();
            tokio::spawn(async move {
                for i in 0..400u32 {
                    let mut command = vec![0xfe];
                    command.extend_from_slice(&i.to_be_bytes());
                    follower.propose(command).await.expect("applied");
                }
            })
        };
        let callers: Vec<_> = (0..3u8)
            .map(|caller| tokio::spawn(calls_apply_in_order(follower.clone(), caller, 10)))
            .collect();
        for caller in callers {
            caller.await.expect("caller");
        }
        singles.await.expect("single commands");
    }
}
