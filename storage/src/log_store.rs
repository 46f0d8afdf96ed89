//! The raft log and vote on RocksDB, implementing openraft's storage-v2
//! `RaftLogStorage`. Generic over the raft type config so this crate knows
//! nothing of the registry's commands.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageIOError,
    Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::keys::{log_key, META_COMMITTED, META_LAST_PURGED, META_VOTE};
use crate::records::{RAFT_ENTRY_V, RAFT_META_V};
use crate::schema::{CF_RAFT_LOG, CF_RAFT_META};
use crate::{Db, StorageError};

type OrStorageError<T, C> = Result<T, openraft::StorageError<<C as RaftTypeConfig>::NodeId>>;

/// Runs long blocking work (an fsync, a snapshot) without starving the async
/// runtime's other tasks on a multi-threaded runtime (on a current-thread
/// runtime, as in some tests, it simply runs inline). Short RocksDB calls run
/// inline: a hand-off costs more than they do.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The raft log store. Cheap to clone: clones share the database.
///
/// Appends are written to RocksDB without waiting for the disk, so they are
/// readable at once and the leader can replicate them while its own fsync
/// runs; a flusher thread then syncs the WAL and only then tells openraft the
/// entries are durable. Appends queued during one fsync share the next one.
pub struct LogStore<C: RaftTypeConfig> {
    db: Arc<Db>,
    flusher: Arc<Flusher<C>>,
    observer: Option<Arc<dyn LogObserver<C>>>,
    _c: PhantomData<C>,
}

/// Told of every change to the log's contents and commit index, in the
/// order raft makes them, so a node can know what its unapplied entries
/// hold without reading them back.
pub trait LogObserver<C: RaftTypeConfig>: Send + Sync + 'static {
    /// The log held entries up to `last_index`, committed up to
    /// `committed` as last saved, before the observer was attached (what
    /// those entries hold is not known to it).
    fn restored(&self, last_index: u64, committed: u64);
    /// `entries` (consecutive, in order) were written (not yet synced);
    /// any entry at or after the first one's index was replaced.
    fn appended(&self, entries: Vec<Entry<C>>);
    /// Entries from `since` on are being removed (an uncommitted tail a new
    /// leader overwrote).
    fn truncating(&self, since: u64);
    /// Raft committed the log up to `index`.
    fn committed(&self, index: u64);
}

/// The flusher thread's handle. Dropped with the last `LogStore` clone: it
/// closes the queue and joins the thread, so the thread's database handle is
/// released before the store's owner closes the database. A flusher still
/// syncing while the process exits would race RocksDB's static destructors
/// (and abort with "pthread lock: Invalid argument").
struct Flusher<C: RaftTypeConfig> {
    tx: Option<std::sync::mpsc::Sender<LogFlushed<C>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<C: RaftTypeConfig> Flusher<C> {
    fn send(&self, cb: LogFlushed<C>) -> Result<(), LogFlushed<C>> {
        match &self.tx {
            Some(tx) => tx.send(cb).map_err(|e| e.0),
            None => Err(cb),
        }
    }
}

impl<C: RaftTypeConfig> Drop for Flusher<C> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            flusher: self.flusher.clone(),
            observer: self.observer.clone(),
            _c: PhantomData,
        }
    }
}

/// Syncs the WAL for every batch of waiting appends, then acknowledges them
/// in order. Exits when the last `LogStore` clone drops the queue.
fn run_flusher<C: RaftTypeConfig>(db: Arc<Db>, rx: std::sync::mpsc::Receiver<LogFlushed<C>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let result = db.sync_wal();
        for cb in waiting {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            cb.log_io_completed(r);
        }
    }
}

fn io_read(e: StorageError) -> StorageIOError<u64> {
    StorageIOError::read_logs(AnyError::new(&e))
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    Entry<C>: Serialize + DeserializeOwned,
{
    /// Writes `entries` to the log: readable at once, durable after the
    /// next [`Db::sync_wal`] (the flusher's, for appends through raft).
    pub fn write_entries(&self, entries: &[Entry<C>]) -> Result<(), StorageError> {
        let cf = self.db.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = codec::encode_serde(RAFT_ENTRY_V, entry)?;
            batch.put_cf(cf, log_key(entry.get_log_id().index), bytes);
        }
        self.db.raw().write_opt(batch, &Db::async_write())?;
        Ok(())
    }

    pub fn new(db: Arc<Db>) -> Result<Self, StorageError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let flusher_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-fsync".into())
            .spawn(move || run_flusher::<C>(flusher_db, rx))
            .map_err(|e| StorageError::io("raft-log-fsync thread", e))?;
        Ok(LogStore {
            db,
            flusher: Arc::new(Flusher {
                tx: Some(tx),
                thread: Some(thread),
            }),
            observer: None,
            _c: PhantomData,
        })
    }

    /// This store, telling `observer` of every change from now on (and,
    /// at once, how far the log already reaches).
    pub fn observed_by(mut self, observer: Arc<dyn LogObserver<C>>) -> Result<Self, StorageError> {
        let last = self.last_entry_log_id()?.map_or(0, |l| l.index);
        let committed: Option<Option<LogId<u64>>> = self.get_meta(META_COMMITTED)?;
        observer.restored(last, committed.flatten().map_or(0, |l| l.index));
        self.observer = Some(observer);
        Ok(self)
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &'static [u8]) -> Result<Option<T>, StorageError> {
        let cf = self.db.cf(CF_RAFT_META)?;
        match self.db.raw().get_pinned_cf(cf, key)? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode_serde(
                RAFT_META_V,
                &v,
                CF_RAFT_META,
                key,
            )?)),
        }
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &'static [u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let cf = self.db.cf(CF_RAFT_META)?;
        let bytes = codec::encode_serde(RAFT_META_V, value)?;
        let opts = if sync {
            Db::sync_write()
        } else {
            Db::async_write()
        };
        self.db.raw().put_cf_opt(cf, key, bytes, &opts)?;
        Ok(())
    }

    fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry<C>, StorageError> {
        codec::decode_serde(RAFT_ENTRY_V, value, CF_RAFT_LOG, key)
    }

    fn read_range(&self, start: u64, end_exclusive: u64) -> Result<Vec<Entry<C>>, StorageError> {
        let cf = self.db.cf(CF_RAFT_LOG)?;
        let mut out = Vec::new();
        if start >= end_exclusive {
            return Ok(out);
        }
        let start_key = log_key(start);
        let iter = self
            .db
            .raw()
            .iterator_cf(cf, IteratorMode::From(&start_key, Direction::Forward));
        let mut expected = None;
        for item in iter {
            let (k, v) = item?;
            let index = crate::keys::log_index(&k).ok_or_else(|| StorageError::Corrupt {
                cf: CF_RAFT_LOG,
                key: codec::hex(&k),
                reason: "log key is not 8 bytes".into(),
            })?;
            if index >= end_exclusive {
                break;
            }
            // The log is contiguous from its first entry; stop at a hole
            // rather than hand openraft entries that skip an index.
            if expected.is_some_and(|e| e != index) {
                break;
            }
            let entry = Self::decode_entry(&k, &v)?;
            if entry.get_log_id().index != index {
                return Err(StorageError::Corrupt {
                    cf: CF_RAFT_LOG,
                    key: codec::hex(&k),
                    reason: format!("entry claims index {}", entry.get_log_id().index),
                });
            }
            out.push(entry);
            expected = Some(index + 1);
        }
        Ok(out)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<u64>>, StorageError> {
        let cf = self.db.cf(CF_RAFT_LOG)?;
        let mut iter = self.db.raw().iterator_cf(cf, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                Ok(Some(*Self::decode_entry(&k, &v)?.get_log_id()))
            }
        }
    }
}

fn range_to_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    Entry<C>: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> OrStorageError<Vec<Entry<C>>, C> {
        let (start, end) = range_to_bounds(&range);
        self.read_range(start, end).map_err(|e| io_read(e).into())
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    Entry<C>: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> OrStorageError<LogState<C>, C> {
        let purged: Option<LogId<u64>> = self.get_meta(META_LAST_PURGED).map_err(io_read)?;
        let last = self.last_entry_log_id().map_err(io_read)?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> OrStorageError<(), C> {
        blocking(|| self.put_meta(META_VOTE, vote, true))
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> OrStorageError<Option<Vote<u64>>, C> {
        self.get_meta(META_VOTE)
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> OrStorageError<(), C> {
        if let (Some(o), Some(c)) = (&self.observer, &committed) {
            o.committed(c.index);
        }
        // Not synced: committed is a hint to re-apply faster after restart;
        // losing it only means re-learning it from the leader.
        self.put_meta(META_COMMITTED, &committed, false)
            .map_err(|e| StorageIOError::write(AnyError::new(&e)).into())
    }

    async fn read_committed(&mut self) -> OrStorageError<Option<LogId<u64>>, C> {
        let v: Option<Option<LogId<u64>>> = self.get_meta(META_COMMITTED).map_err(io_read)?;
        Ok(v.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> OrStorageError<(), C>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        // No fsync here (the flusher does it), so this is a short memtable
        // write: run it inline rather than pay a thread hand-off per append.
        match self.write_entries(&entries) {
            Ok(()) => {
                if let Some(o) = &self.observer {
                    o.appended(entries);
                }
                if let Err(callback) = self.flusher.send(callback) {
                    callback.log_io_completed(Err(std::io::Error::other("log flusher stopped")));
                }
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(AnyError::new(&e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> OrStorageError<(), C> {
        if let Some(o) = &self.observer {
            o.truncating(log_id.index);
        }
        blocking(|| -> Result<(), StorageError> {
            let cf = self.db.cf(CF_RAFT_LOG)?;
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(cf, log_key(log_id.index), log_key(u64::MAX));
            batch.delete_cf(cf, log_key(u64::MAX));
            self.db.raw().write_opt(batch, &Db::sync_write())?;
            Ok(())
        })
        .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> OrStorageError<(), C> {
        blocking(|| -> Result<(), StorageError> {
            let log_cf = self.db.cf(CF_RAFT_LOG)?;
            let meta_cf = self.db.cf(CF_RAFT_META)?;
            // The purge marker and the range delete land atomically, so
            // get_log_state never sees a gap without knowing its cause.
            let mut batch = WriteBatch::default();
            batch.put_cf(
                meta_cf,
                META_LAST_PURGED,
                codec::encode_serde(RAFT_META_V, &log_id)?,
            );
            batch.delete_range_cf(log_cf, log_key(0), log_key(log_id.index.saturating_add(1)));
            self.db.raw().write_opt(batch, &Db::async_write())?;
            Ok(())
        })
        .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }
}
