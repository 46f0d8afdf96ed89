//! The audit trail of queries. Reads are served by any node after a read
//! barrier and never enter the raft log (a log entry per read would halve
//! read throughput), so each node records the queries it answered in its own
//! column family: who, what, when, on what, with what outcome — never an ID
//! number. A regulator reads each node's trail (`ListAudit` with `queries`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oneid_storage::records::{AuditRecord, AUDIT_V};
use oneid_storage::rocksdb::IteratorMode;
use oneid_storage::schema::CF_QUERY_AUDIT;
use oneid_storage::{codec, Db, StorageError};

pub struct QueryAudit {
    db: Arc<Db>,
    next: AtomicU64,
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
        Ok(QueryAudit {
            db,
            next: AtomicU64::new(last + 1),
        })
    }

    /// Appends one record. Not synced: a crash may lose the last
    /// milliseconds of the trail, never reorder or corrupt it.
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
        let cf = self.db.cf(CF_QUERY_AUDIT)?;
        self.db.raw().put_cf_opt(
            cf,
            seq.to_be_bytes(),
            codec::encode(AUDIT_V, &rec)?,
            &Db::async_write(),
        )?;
        Ok(())
    }

    /// Records after sequence number `after`, oldest first.
    pub fn list(&self, after: u64, limit: usize) -> Result<Vec<(u64, AuditRecord)>, StorageError> {
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
