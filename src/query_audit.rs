//! The audit trail of queries. Reads are served by any node after a read
//! barrier and never enter the raft log (a log entry per read would halve
//! read throughput), so each node records the queries it answered in its own
//! column family: who, what, when, on what, with what outcome — never an ID
//! number. A regulator reads each node's trail (`ListAudit` with `queries`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use oneid_storage::records::{AuditRecord, AUDIT_V};
use oneid_storage::rocksdb::IteratorMode;
use oneid_storage::schema::CF_QUERY_AUDIT;
use oneid_storage::{codec, Db, StorageError};

/// How long records wait in memory before they are written together: one
/// RocksDB write per interval instead of one per query.
const FLUSH_EVERY: Duration = Duration::from_millis(5);

/// Records not yet written, and the flusher's wake-up.
#[derive(Default)]
struct Queue {
    rows: Mutex<Vec<(u64, Vec<u8>)>>,
    /// Signalled when the first record of a batch arrives and at shutdown:
    /// an idle node's flusher sleeps instead of polling (it woke every 5 ms,
    /// ~0.3 % of a core per node with nothing to write).
    ready: Condvar,
}

impl Queue {
    fn rows(&self) -> MutexGuard<'_, Vec<(u64, Vec<u8>)>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Pending = Arc<Queue>;

pub struct QueryAudit {
    db: Arc<Db>,
    next: AtomicU64,
    pending: Pending,
    stop: Arc<AtomicBool>,
    flusher: Option<JoinHandle<()>>,
}

/// Writes everything pending as one batch.
fn flush(db: &Db, pending: &Pending) -> Result<(), StorageError> {
    let rows = std::mem::take(&mut *pending.rows());
    if rows.is_empty() {
        return Ok(());
    }
    let cf = db.cf(CF_QUERY_AUDIT)?;
    let mut batch = oneid_storage::rocksdb::WriteBatch::default();
    for (seq, bytes) in rows {
        batch.put_cf(cf, seq.to_be_bytes(), bytes);
    }
    db.raw().write_opt(batch, &Db::async_write())?;
    Ok(())
}

impl Drop for QueryAudit {
    fn drop(&mut self) {
        {
            // Set under the lock the flusher checks it under, so the flusher
            // either sees it or is already waiting for the signal below.
            let _rows = self.pending.rows();
            self.stop.store(true, Ordering::Relaxed);
        }
        self.pending.ready.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

impl QueryAudit {
    /// Continues the sequence after the last stored record.
    pub fn open(db: Arc<Db>) -> Result<QueryAudit, StorageError> {
        let cf = db.cf(CF_QUERY_AUDIT)?;
        let last = match db.raw().iterator_cf(cf, IteratorMode::End).next() {
            None => 0,
            Some(item) => {
                let (k, _) = item?;
                let arr: [u8; 8] = (*k).try_into().map_err(|_| StorageError::Corrupt {
                    cf: CF_QUERY_AUDIT,
                    key: codec::hex(&k),
                    reason: "query audit key is not 8 bytes".into(),
                })?;
                u64::from_be_bytes(arr)
            }
        };
        let pending: Pending = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let flusher = {
            let (db, pending, stop) = (db.clone(), pending.clone(), stop.clone());
            std::thread::Builder::new()
                .name("query-audit".into())
                .spawn(move || loop {
                    {
                        let mut rows = pending.rows();
                        while rows.is_empty() && !stop.load(Ordering::Relaxed) {
                            rows = pending.ready.wait(rows).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                    let last_round = stop.load(Ordering::Relaxed);
                    if !last_round {
                        // Let the queries of the next few milliseconds join.
                        std::thread::sleep(FLUSH_EVERY);
                    }
                    if let Err(e) = flush(&db, &pending) {
                        tracing::error!(error = %e, "writing the query audit trail");
                    }
                    if last_round {
                        return;
                    }
                })
                .map_err(|e| StorageError::io("query-audit thread", e))?
        };
        Ok(QueryAudit {
            db,
            next: AtomicU64::new(last + 1),
            pending,
            stop,
            flusher: Some(flusher),
        })
    }

    /// Appends one record. Records are written in batches every few
    /// milliseconds and not synced: a crash may lose the last milliseconds of
    /// the trail, never reorder or corrupt it.
    pub fn record(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        outcome: &str,
    ) -> Result<(), StorageError> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let rec = AuditRecord {
            at_ms: oneid_raft::replica::leader_stamp_ms(),
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            request_id: String::new(),
            outcome: outcome.into(),
        };
        let bytes = codec::encode(AUDIT_V, &rec)?;
        let mut rows = self.pending.rows();
        rows.push((seq, bytes));
        if rows.len() == 1 {
            self.pending.ready.notify_one();
        }
        Ok(())
    }

    /// Records after sequence number `after`, oldest first.
    pub fn list(&self, after: u64, limit: usize) -> Result<Vec<(u64, AuditRecord)>, StorageError> {
        // Whatever was served before this call is in the answer.
        flush(&self.db, &self.pending)?;
        let cf = self.db.cf(CF_QUERY_AUDIT)?;
        let start = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.db.raw().iterator_cf(
            cf,
            IteratorMode::From(&start, oneid_storage::rocksdb::Direction::Forward),
        ) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let Ok(arr) = <[u8; 8]>::try_from(&*k) else {
                continue;
            };
            let rec = codec::decode(AUDIT_V, &v, CF_QUERY_AUDIT, &k)?;
            out.push((u64::from_be_bytes(arr), rec));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records in the column family, read directly (`list` would flush
    /// them itself and hide whether the background writer did).
    fn stored(db: &Db) -> usize {
        let cf = db.cf(CF_QUERY_AUDIT).expect("cf");
        db.raw().iterator_cf(cf, IteratorMode::Start).count()
    }

    #[test]
    fn the_writer_wakes_for_records_and_writes_the_last_ones_at_shutdown() {
        let (_dir, db) = crate::apply::test_db();
        let trail = QueryAudit::open(db.clone()).expect("open");
        // An idle writer waits for the first record of a batch...
        std::thread::sleep(FLUSH_EVERY * 4);
        trail
            .record("query", "count_cards", "id:ab", "ok")
            .expect("record");
        trail
            .record("query", "count_cards", "id:cd", "ok")
            .expect("record");
        // ...and writes it on its own (bounded wait: this checks that it
        // happens, not how fast).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stored(&db) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(FLUSH_EVERY);
        }
        assert_eq!(stored(&db), 2);
        // Records pending at shutdown are written before the writer exits.
        trail
            .record("query", "count_cards", "id:ef", "ok")
            .expect("record");
        drop(trail);
        assert_eq!(stored(&db), 3);
        // The sequence continues after a reopen.
        let trail = QueryAudit::open(db.clone()).expect("reopen");
        trail
            .record("query", "count_cards", "id:gh", "ok")
            .expect("record");
        let all = trail.list(0, 10).expect("list");
        let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
    }
}
