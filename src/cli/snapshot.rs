//! `oneid snapshot save|verify|restore`: backups of the state machine and
//! new clusters seeded from them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use clap::{Args, Subcommand};
use oneid_raft::TypeConfig;
use oneid_storage::log_store::LogStore;
use oneid_storage::schema::Tuning;
use oneid_storage::Db;
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Membership, Vote};
use sha2::{Digest, Sha256};

use super::client::{connect, explain, Target};
use crate::node::parse_cluster;
use crate::pb;
use crate::pb::admin_client::AdminClient;
use crate::state_machine::{self, SnapshotFileInfo};

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: SnapshotAction,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotAction {
    /// Save a consistent snapshot of a node's state machine to FILE.
    Save(SaveArgs),
    /// Check FILE completely and print what it holds.
    Verify { file: PathBuf },
    /// Seed an empty data directory from FILE for a new cluster.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Save what the node has applied without a read barrier (no quorum
    /// needed: for disaster recovery). Otherwise the snapshot holds every
    /// write acknowledged before the command started.
    #[arg(long)]
    pub local: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    pub file: PathBuf,
    /// The new node's data directory: absent or empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new node's id.
    #[arg(long)]
    pub node_id: u64,
    /// The address the new node will serve on (HOST:PORT).
    #[arg(long)]
    pub addr: SocketAddr,
    /// Members of the new cluster, ID=HOST:PORT,...; it must name this node
    /// at --addr. Default: this node alone.
    #[arg(long, default_value = "")]
    pub initial_cluster: String,
}

/// Longest wait for the node to build its snapshot and send the first byte.
const FIRST_PIECE_WAIT: Duration = Duration::from_secs(660);
/// Longest silence between two pieces of the file once it flows.
const PIECE_WAIT: Duration = Duration::from_secs(60);

pub async fn run(a: SnapshotArgs) -> anyhow::Result<()> {
    match a.action {
        SnapshotAction::Save(a) => save(a).await,
        SnapshotAction::Verify { file } => verify(&file),
        SnapshotAction::Restore(a) => restore(a).await,
    }
}

/// `FILE.tmp`, next to FILE (so the final rename stays on one filesystem).
fn tmp_path(file: &Path) -> PathBuf {
    let mut name = OsString::from(file.as_os_str());
    name.push(".tmp");
    PathBuf::from(name)
}

/// Makes a rename or a new directory entry in `path`'s parent durable.
fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", parent.display()))
}

fn check(file: &Path) -> anyhow::Result<SnapshotFileInfo> {
    state_machine::verify_snapshot_file(file).map_err(|e| {
        if e.is_corruption() {
            anyhow!(
                "{} is corrupt or truncated, refusing it: {e}",
                file.display()
            )
        } else {
            anyhow!("cannot read {}: {e}", file.display())
        }
    })
}

fn sha256_of(file: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", file.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hex::encode(h.finalize())))
}

fn describe(info: &SnapshotFileInfo) -> String {
    let (index, term) = info
        .meta
        .last_log_id
        .map(|l| (l.index, l.leader_id.term))
        .unwrap_or((0, 0));
    let members: Vec<String> = info
        .meta
        .last_membership
        .membership()
        .nodes()
        .map(|(id, n)| format!("{id}={}", n.addr))
        .collect();
    format!(
        "last_log_index={index} term={term} entries={} members={}",
        info.entries,
        members.join(",")
    )
}

async fn save(a: SaveArgs) -> anyhow::Result<()> {
    let tmp = tmp_path(&a.file);
    let result = save_to(&a, &tmp).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let (size, sha, info) = result?;
    std::fs::rename(&tmp, &a.file)
        .with_context(|| format!("renaming {} to {}", tmp.display(), a.file.display()))?;
    sync_parent(&a.file)?;
    println!(
        "saved {}: {} bytes={size} sha256={sha}",
        a.file.display(),
        describe(&info)
    );
    Ok(())
}

/// Receives the snapshot into `tmp`, synced and verified; returns its
/// length, SHA-256 and contents.
async fn save_to(a: &SaveArgs, tmp: &Path) -> anyhow::Result<(u64, String, SnapshotFileInfo)> {
    let mut client = AdminClient::new(connect(&a.target).await?);
    let mut stream = client
        .save_snapshot(pb::SaveSnapshotRequest { local: a.local })
        .await
        .map_err(explain)?
        .into_inner();
    let first = tokio::time::timeout(FIRST_PIECE_WAIT, stream.message())
        .await
        .map_err(|_| anyhow!("the node built no snapshot within {FIRST_PIECE_WAIT:?}"))?
        .map_err(explain)?
        .ok_or_else(|| anyhow!("the node closed the stream before sending anything"))?;
    let info = first
        .info
        .ok_or_else(|| anyhow!("the node's first message carries no snapshot info"))?;

    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let mut h = Sha256::new();
    let mut len = 0u64;
    loop {
        let piece = tokio::time::timeout(PIECE_WAIT, stream.message())
            .await
            .map_err(|_| anyhow!("the node sent nothing for {PIECE_WAIT:?}"))?
            .map_err(explain)?;
        let Some(piece) = piece else { break };
        h.update(&piece.data);
        len += piece.data.len() as u64;
        out.write_all(&piece.data)
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    ensure!(
        len == info.size_bytes,
        "received {len} bytes, the node announced {}",
        info.size_bytes
    );
    let file = out
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {}", tmp.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    drop(file);

    // The file is checked on this side too, so a bad save fails here rather
    // than on the day of the restore.
    let tmp_owned = tmp.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || check(&tmp_owned))
        .await
        .context("verifying the received snapshot")??;
    let got = checked.meta.last_log_id.map(|l| l.index).unwrap_or(0);
    ensure!(
        got == info.last_log_index,
        "the received file covers index {got}, the node announced {}",
        info.last_log_index
    );
    Ok((len, hex::encode(h.finalize()), checked))
}

fn verify(file: &Path) -> anyhow::Result<()> {
    let info = check(file)?;
    let (size, sha) = sha256_of(file)?;
    println!(
        "ok {}: {} snapshot_id={} bytes={size} sha256={sha}",
        file.display(),
        describe(&info),
        info.meta.snapshot_id
    );
    Ok(())
}

/// The new cluster's members: `--initial-cluster`, or this node alone.
fn new_members(a: &RestoreArgs) -> anyhow::Result<BTreeMap<u64, BasicNode>> {
    ensure!(a.node_id > 0, "--node-id must be positive");
    let spec = if a.initial_cluster.trim().is_empty() {
        vec![(a.node_id, a.addr.to_string())]
    } else {
        parse_cluster(&a.initial_cluster)?
    };
    let me = spec
        .iter()
        .find(|(id, _)| *id == a.node_id)
        .ok_or_else(|| anyhow!("--initial-cluster does not contain --node-id {}", a.node_id))?;
    let my_addr: SocketAddr = me.1.parse().context("address in --initial-cluster")?;
    ensure!(
        my_addr == a.addr,
        "--initial-cluster gives node {} the address {}, --addr says {}",
        a.node_id,
        me.1,
        a.addr
    );
    Ok(spec
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect())
}

/// Refuses a data directory that holds anything: restoring never merges
/// into, or replaces, a node's data.
fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "data dir {} is not empty; restore only seeds a new node",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("data dir {}: {e}", dir.display())),
    }
}

// Restore design: the new node keeps the backup's last applied log id X
// and starts its raft log right after it (X marked purged, vote at X's
// term, the restored data published as its current snapshot); only the
// membership is replaced by the new cluster's. The alternative, data
// installed at index 0 with an empty log and `initialize` as usual, is
// simpler but unsafe: a member that starts empty would replay the log from
// index 0, which does not contain the restored data, and diverge silently.
// With the log starting after X, raft itself sends every empty member
// (another --initial-cluster node started without data, or a later
// `member add`) the restored data as a snapshot.
async fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let members = new_members(&a)?;
    let info = check(&a.file)?;
    ensure!(
        info.meta.last_log_id.is_some(),
        "{} covers no log entry (taken from a node that never joined a cluster); nothing to restore",
        a.file.display()
    );
    check_empty(&a.data_dir)?;

    // Everything is built in a sibling directory and renamed into place, so
    // a restore that fails or is killed midway leaves --data-dir as it was.
    let name = a
        .data_dir
        .file_name()
        .ok_or_else(|| anyhow!("--data-dir {} has no name", a.data_dir.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match a.data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = parent.join(format!(".{name}.restore-{}", std::process::id()));
    std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;

    let seeded = seed(&staging, &a, members).await;
    let placed = seeded.and_then(|meta| {
        // Renaming over an empty directory replaces it in one step.
        std::fs::rename(&staging, &a.data_dir)
            .with_context(|| format!("moving {} to {}", staging.display(), a.data_dir.display()))?;
        sync_parent(&a.data_dir)?;
        Ok(meta)
    });
    let meta = match placed {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let members: Vec<String> = meta
        .last_membership
        .membership()
        .nodes()
        .map(|(id, n)| format!("{id}={}", n.addr))
        .collect();
    println!(
        "restored {} into {}: last_log_index={} entries={} members={}",
        a.file.display(),
        a.data_dir.display(),
        meta.last_log_id.map(|l| l.index).unwrap_or(0),
        info.entries,
        members.join(",")
    );
    println!(
        "start it with: oneid serve --node-id {} --addr {} --data-dir {} (same ONEID_PEPPER as the old cluster)",
        a.node_id,
        a.addr,
        a.data_dir.display()
    );
    Ok(())
}

/// Writes a node's data (`db/`, `snapshots/`) into `dir` from the backup.
async fn seed(
    dir: &Path,
    a: &RestoreArgs,
    members: BTreeMap<u64, BasicNode>,
) -> anyhow::Result<openraft::SnapshotMeta<u64, BasicNode>> {
    let db_dir = dir.join("db");
    let db: Arc<Db> = Db::open(&db_dir, Tuning::default())
        .with_context(|| format!("opening database in {}", db_dir.display()))?;
    let voters: BTreeSet<u64> = members.keys().copied().collect();
    let membership = Membership::new(vec![voters], members);
    let meta = state_machine::restore_backup(&db, &dir.join("snapshots"), &a.file, membership)
        .with_context(|| format!("restoring {}", a.file.display()))?;
    let last = meta
        .last_log_id
        .ok_or_else(|| anyhow!("the restored snapshot covers no log entry"))?;

    let mut log = LogStore::<TypeConfig>::new(db.clone()).context("opening the raft log")?;
    let raft_err =
        |what: &'static str| move |e: openraft::StorageError<u64>| anyhow!("{what}: {e}");
    // Elections start from the vote's term: a term below X's would give new
    // entries log ids that sort before X's.
    log.save_vote(&Vote::new(last.leader_id.term, a.node_id))
        .await
        .map_err(raft_err("writing the vote"))?;
    // Nothing at or before X is in this node's log; X is covered by the snapshot.
    log.purge(last)
        .await
        .map_err(raft_err("starting the raft log after the snapshot"))?;
    log.save_committed(Some(last))
        .await
        .map_err(raft_err("writing the commit index"))?;
    drop(log);
    db.sync_wal().context("syncing the database")?;
    Ok(meta)
}
