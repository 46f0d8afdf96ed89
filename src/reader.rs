//! Read side of the registry: point reads of the local state machine, done
//! after a read barrier for linearizability. Every value is crc-checked; a
//! corrupt record is an error, never a wrong answer.

use std::sync::Arc;

use oneid_storage::keys;
use oneid_storage::records::{HolderRecord, MsisdnRecord, HOLDER_V, MSISDN_V};
use oneid_storage::rocksdb::{IteratorMode, ReadOptions};
use oneid_storage::schema::CF_SM_DATA;
use oneid_storage::{codec, Db, StorageError};
use sha2::{Digest, Sha256};

use crate::command::IdKey;
use crate::state_machine::read_applied;

#[derive(Clone)]
pub struct Reader {
    db: Arc<Db>,
}

impl Reader {
    pub fn new(db: Arc<Db>) -> Reader {
        Reader { db }
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        version: u8,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let cf = self.db.cf(CF_SM_DATA)?;
        match self.db.raw().get_pinned_cf(cf, key)? {
            None => Ok(None),
            Some(v) => codec::decode(version, &v, CF_SM_DATA, key).map(Some),
        }
    }

    pub fn holder(&self, id_key: &IdKey) -> Result<HolderRecord, StorageError> {
        Ok(self
            .get(HOLDER_V, &keys::holder_key(id_key))?
            .unwrap_or_default())
    }

    /// True when `msisdn` is an active card under `id_key`.
    pub fn is_active_under(&self, msisdn: &str, id_key: &IdKey) -> Result<bool, StorageError> {
        let rec: Option<MsisdnRecord> = self.get(MSISDN_V, &keys::msisdn_key(msisdn))?;
        Ok(rec.is_some_and(|r| r.active && &r.id_key == id_key))
    }

    /// SHA-256 over every state machine record, from one consistent view, with
    /// the applied index it reflects. Replicas at the same index must agree.
    pub fn state_digest(&self) -> Result<(u64, String), StorageError> {
        let raw = self.db.raw();
        let snap = raw.snapshot();
        let cf = self.db.cf(CF_SM_DATA)?;
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snap);
        opts.fill_cache(false);
        opts.set_total_order_seek(true);
        let mut h = Sha256::new();
        for item in raw.iterator_cf_opt(cf, opts, IteratorMode::Start) {
            let (k, v) = item?;
            h.update((k.len() as u32).to_le_bytes());
            h.update(&k);
            h.update((v.len() as u32).to_le_bytes());
            h.update(&v);
        }
        // The applied index is read outside the RocksDB snapshot, but it
        // only labels the digest; callers compare digests once applies stop.
        let index = read_applied(&self.db)?
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        Ok((index, codec::hex(&h.finalize())))
    }
}
