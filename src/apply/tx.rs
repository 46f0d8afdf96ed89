//! The writes of one apply call, readable before they are committed so that
//! later commands in the same batch see earlier ones, with an undo log so a
//! refused command leaves no partial writes.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};

use bincode::{Decode, Encode};
use oneid_storage::keys;
use oneid_storage::records::{
    AuditRecord, HolderRecord, MsisdnRecord, StatDelta, StatsRecord, STATS_V,
};
use oneid_storage::rocksdb::WriteBatch;
use oneid_storage::schema::{sm_cf_name, KeyValue};
use oneid_storage::{codec, Db, StorageError};

/// A staged value: `None` is a delete.
type Staged = Option<Vec<u8>>;
/// Hash maps, not ordered ones: an import's apply call stages tens of
/// thousands of keys, and keeping them sorted on every write cost more than
/// sorting once at commit (and in the rare scan). The random seed is fine:
/// nothing replicated depends on the iteration order.
type KeyMap<V> = HashMap<Vec<u8>, V, foldhash::fast::RandomState>;
/// Where a written key sits in [`Tx::undo_keys`], and its overlay entry
/// before the write (`None`: it had none).
type Undo = (std::ops::Range<usize>, Option<Staged>);

pub struct Tx<'a> {
    db: &'a Db,
    writes: KeyMap<Staged>,
    /// What the database held for each key looked up during this apply
    /// call. Nothing is written to the database until the batch is, so one
    /// lookup per key is enough (the key state is read by every command).
    stored: RefCell<KeyMap<Option<Vec<u8>>>>,
    /// For each write since `begin`: its key and the overlay entry before.
    undo: Vec<Undo>,
    /// The keys `undo` names, end to end: one buffer instead of a copy of
    /// each key on the heap (registrations write three or four keys each).
    undo_keys: Vec<u8>,
    /// Statistics changes, folded into the one stats record at commit so a
    /// batch of thousands of commands rewrites it once.
    stats: Vec<StatDelta>,
    /// `stats.len()` when the current command began.
    stats_mark: usize,
    /// Audit rows (index, position, row), written at commit as one block
    /// per log entry.
    audit: Vec<(u64, u32, AuditRecord)>,
    /// Request ids remembered, with the log index and clock they were
    /// applied at: one age block per log entry at commit.
    aged: Vec<(u64, u64, String)>,
    /// For each of [`keys::CHECK_PREFIXES`]: whether the database held no
    /// record under it when first asked. Nothing but this transaction
    /// writes while it lives, so such a key space holds only what the
    /// transaction itself staged, and its keys need no lookup. A registry
    /// being loaded has no request-id or restriction records yet, and
    /// looking both up for every card was ~6 % of a 3 M-card import.
    checks_empty: OnceCell<CheckSpaces>,
}

/// One flag per check key space.
type CheckSpaces = [bool; keys::CHECK_PREFIXES.len()];

impl<'a> Tx<'a> {
    pub fn new(db: &'a Db) -> Tx<'a> {
        Tx {
            db,
            writes: KeyMap::default(),
            stored: RefCell::default(),
            undo: Vec::new(),
            undo_keys: Vec::new(),
            stats: Vec::new(),
            stats_mark: 0,
            audit: Vec::new(),
            aged: Vec::new(),
            checks_empty: OnceCell::new(),
        }
    }

    /// For each check key space, whether it held nothing when first asked.
    fn checks_empty(&self) -> Result<CheckSpaces, StorageError> {
        if let Some(e) = self.checks_empty.get() {
            return Ok(*e);
        }
        let mut e = CheckSpaces::default();
        for (flag, prefix) in e.iter_mut().zip(keys::CHECK_PREFIXES) {
            *flag = self.db.scan_sm(prefix, None, 1)?.is_empty();
        }
        Ok(*self.checks_empty.get_or_init(|| e))
    }

    /// True when `key` is sure to have no stored value: it is in a check
    /// key space that held nothing.
    fn surely_unstored(&self, key: &[u8]) -> Result<bool, StorageError> {
        Ok(match keys::check_space(key) {
            Some(space) => self.checks_empty()?[space],
            None => false,
        })
    }

    /// `key`'s value in this transaction's view, handed to `f` without a
    /// copy.
    fn with_value<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        if let Some(v) = self.writes.get(key) {
            return f(v.as_deref());
        }
        if let Some(v) = self.stored.borrow().get(key) {
            return f(v.as_deref());
        }
        if self.surely_unstored(key)? {
            return f(None);
        }
        let v = self
            .db
            .raw()
            .get_pinned_cf(self.db.sm_cf(key)?, key)?
            .map(|v| v.to_vec());
        let r = f(v.as_deref());
        self.stored.borrow_mut().insert(key.to_vec(), v);
        r
    }

    /// Looks up `keys` in one batched read, so the commands that follow
    /// find them without a lookup each.
    pub fn prefetch(&self, mut keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        {
            let empty = self.checks_empty()?;
            let stored = self.stored.borrow();
            keys.retain(|k| {
                let unstored = keys::check_space(k).is_some_and(|space| empty[space]);
                !unstored && !stored.contains_key(k) && !self.writes.contains_key(k)
            });
        }
        let mut keys: Vec<(u64, Vec<u8>)> = keys.into_iter().map(|k| (head(&k), k)).collect();
        sort_by_key_bytes(&mut keys, |k| k);
        keys.dedup_by(|a, b| a.1 == b.1);
        // One batched read per column family; sorted stays sorted.
        let (checks, data): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .map(|(_, k)| k)
            .partition(|k| keys::is_check_key(k));
        let mut stored = self.stored.borrow_mut();
        for part in [data, checks] {
            let Some(first) = part.first() else {
                continue;
            };
            let cf = self.db.sm_cf(first)?;
            let found = self.db.raw().batched_multi_get_cf(cf, &part, true);
            for (k, v) in part.into_iter().zip(found) {
                stored.insert(k, v?.map(|v| v.to_vec()));
            }
        }
        Ok(())
    }

    pub fn get<T: Decode<()>>(&self, version: u8, key: &[u8]) -> Result<Option<T>, StorageError> {
        self.with_value(key, |v| {
            v.map(|v| codec::decode(version, v, sm_cf_name(key), key))
                .transpose()
        })
    }

    /// The number index record under `key` (stored in more than one
    /// version).
    pub fn number(&self, key: &[u8]) -> Result<Option<MsisdnRecord>, StorageError> {
        self.with_value(key, |v| v.map(|v| MsisdnRecord::decode(v, key)).transpose())
    }

    /// The holder summary under `key` (stored in more than one version).
    pub fn holder(&self, key: &[u8]) -> Result<Option<HolderRecord>, StorageError> {
        self.with_value(key, |v| v.map(|v| HolderRecord::decode(v, key)).transpose())
    }

    /// True when `key` holds a value in this transaction's view.
    pub fn contains(&self, key: &[u8]) -> Result<bool, StorageError> {
        self.with_value(key, |v| Ok(v.is_some()))
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let start = self.undo_keys.len();
        self.undo_keys.extend_from_slice(&key);
        let before = self.writes.insert(key, value);
        self.undo.push((start..self.undo_keys.len(), before));
    }

    pub fn put<T: Encode>(
        &mut self,
        version: u8,
        key: Vec<u8>,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = codec::encode(version, value)?;
        self.set(key, Some(bytes));
        Ok(())
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None);
    }

    /// The first `limit` entries under `prefix` as this transaction sees
    /// them, decoded.
    pub fn scan<T: Decode<()>>(
        &self,
        version: u8,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StorageError> {
        self.scan_raw(prefix, limit)?
            .into_iter()
            .map(|(k, v)| {
                let value = codec::decode(version, &v, sm_cf_name(&k), &k)?;
                Ok((k, value))
            })
            .collect()
    }

    /// [`Tx::scan`] undecoded, for a key space with more than one format.
    pub fn scan_raw(&self, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>, StorageError> {
        let overlay: Vec<_> = self
            .writes
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect();
        // Each overlay delete can hide at most one stored key, so reading
        // `limit + overlay` stored keys is enough to fill `limit`.
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .db
            .scan_sm(prefix, None, limit + overlay.len())?
            .into_iter()
            .collect();
        for (k, v) in overlay {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    /// Starts a command: `rollback` undoes writes made after this point.
    pub fn begin(&mut self) {
        self.undo.clear();
        self.undo_keys.clear();
        self.stats_mark = self.stats.len();
    }

    pub fn stat(&mut self, delta: StatDelta) {
        self.stats.push(delta);
    }

    /// Records the audit row of the command at (`index`, `position`).
    pub fn audit(&mut self, index: u64, position: u32, row: AuditRecord) {
        self.audit.push((index, position, row));
    }

    /// Marks `request_id`, remembered by the entry at `index` at `at_ms`,
    /// for trimming.
    pub fn age(&mut self, index: u64, at_ms: u64, request_id: &str) {
        self.aged.push((index, at_ms, request_id.to_string()));
    }

    pub fn rollback(&mut self) {
        self.stats.truncate(self.stats_mark);
        while let Some((at, before)) = self.undo.pop() {
            let key = &self.undo_keys[at];
            match before {
                Some(v) => self.writes.insert(key.to_vec(), v),
                None => self.writes.remove(key),
            };
        }
        self.undo_keys.clear();
    }

    /// The staged writes as one RocksDB batch.
    pub fn into_batch(mut self) -> Result<WriteBatch, StorageError> {
        if !self.stats.is_empty() {
            let mut stats: StatsRecord = self.get(STATS_V, keys::STATS)?.unwrap_or_default();
            for d in std::mem::take(&mut self.stats) {
                stats.apply(d);
            }
            self.put(STATS_V, keys::STATS.to_vec(), &stats)?;
        }
        let rows = std::mem::take(&mut self.audit);
        super::audit::write_blocks(&mut self, rows)?;
        let aged = std::mem::take(&mut self.aged);
        super::dedup::write_age_blocks(&mut self, aged)?;
        let cfs = self.db.sm_cfs()?;
        // Sized up front: an import's batch runs to megabytes, and growing
        // it by doubling copies it over and over.
        let bytes: usize = self
            .writes
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 16)
            .sum();
        let mut batch = WriteBatch::with_capacity_bytes(bytes + 64);
        // In key order: the memtable resumes each insert's search where the
        // previous one ended, so neighbouring keys insert cheaply.
        let mut rows: Vec<(u64, (Vec<u8>, Staged))> =
            self.writes.into_iter().map(|r| (head(&r.0), r)).collect();
        sort_by_key_bytes(&mut rows, |r| &r.0);
        for (_, (k, v)) in rows {
            let cf = cfs.of(&k);
            match v {
                Some(v) => batch.put_cf(cf, k, v),
                None => batch.delete_cf(cf, k),
            }
        }
        Ok(batch)
    }
}

/// A key's first eight bytes as one integer, zero-padded: ordering by it
/// never contradicts ordering by the whole key.
fn head(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// Sorts `(head(key), item)` pairs into key order. Keys start with a tag
/// and a hash, so the heads kept beside the items settle nearly every
/// comparison; comparing the keys themselves read each from the heap, a
/// cache miss per comparison over the tens of thousands of keys of an
/// import's apply call (sorting was ~3 % of a follower's CPU). Only keys
/// with equal heads are compared whole.
fn sort_by_key_bytes<T>(items: &mut [(u64, T)], key: impl Fn(&T) -> &[u8]) {
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(&a.1).cmp(key(&b.1))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneid_storage::schema::{Tuning, CF_SM_DATA};
    use proptest::prelude::*;

    #[test]
    fn scan_merges_staged_writes_and_rollback_restores() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Tuning::default()).unwrap();
        let mut batch = WriteBatch::default();
        let cf = db.cf(CF_SM_DATA).unwrap();
        for k in [b"pa", b"pc", b"pe", b"qz"] {
            batch.put_cf(cf, k, codec::encode(1, &k.to_vec()).unwrap());
        }
        db.raw().write(batch).unwrap();

        let mut tx = Tx::new(&db);
        tx.begin();
        tx.delete(b"pa".to_vec());
        tx.put(1, b"pb".to_vec(), &b"pb".to_vec()).unwrap();
        let keys = |tx: &Tx, limit| -> Vec<Vec<u8>> {
            tx.scan::<Vec<u8>>(1, b"p", limit)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(&tx, 2), vec![b"pb".to_vec(), b"pc".to_vec()]);
        assert_eq!(keys(&tx, 10).len(), 3);
        tx.rollback();
        assert_eq!(
            keys(&tx, 10),
            vec![b"pa".to_vec(), b"pc".to_vec(), b"pe".to_vec()]
        );
        assert!(tx.get::<Vec<u8>>(1, b"pb").unwrap().is_none());
    }

    #[test]
    fn remembered_and_prefetched_lookups_never_hide_staged_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Tuning::default()).unwrap();
        let cf = db.cf(CF_SM_DATA).unwrap();
        let val = |v: &[u8]| codec::encode(1, &v.to_vec()).unwrap();
        db.raw().put_cf(cf, b"a", val(b"old-a")).unwrap();
        db.raw().put_cf(cf, b"b", val(b"old-b")).unwrap();
        let read = |tx: &Tx, k: &[u8]| tx.get::<Vec<u8>>(1, k).unwrap();

        let mut tx = Tx::new(&db);
        tx.prefetch(vec![
            b"b".to_vec(),
            b"a".to_vec(),
            b"a".to_vec(),
            b"zz".to_vec(),
        ])
        .unwrap();
        // The database changing under the transaction is not something
        // apply does; it shows the lookups are answered from memory.
        db.raw().put_cf(cf, b"a", val(b"changed")).unwrap();
        db.raw().put_cf(cf, b"zz", val(b"changed")).unwrap();
        assert_eq!(read(&tx, b"a"), Some(b"old-a".to_vec()));
        assert_eq!(read(&tx, b"zz"), None);

        tx.begin();
        tx.put(1, b"a".to_vec(), &b"new-a".to_vec()).unwrap();
        tx.delete(b"b".to_vec());
        assert_eq!(read(&tx, b"a"), Some(b"new-a".to_vec()));
        assert_eq!(read(&tx, b"b"), None);
        tx.rollback();
        assert_eq!(read(&tx, b"a"), Some(b"old-a".to_vec()));
        assert_eq!(read(&tx, b"b"), Some(b"old-b".to_vec()));

        // A key first read without a prefetch is remembered too.
        db.raw().put_cf(cf, b"c", val(b"first")).unwrap();
        assert_eq!(read(&tx, b"c"), Some(b"first".to_vec()));
        db.raw().put_cf(cf, b"c", val(b"second")).unwrap();
        assert_eq!(read(&tx, b"c"), Some(b"first".to_vec()));
    }

    proptest! {
        // Short keys over few byte values: ties, keys that are prefixes of
        // others and zero bytes that look like padding all turn up.
        #[test]
        fn sorting_by_heads_is_sorting_by_keys(
            keys in prop::collection::vec(
                prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8)], 0..12),
                0..64,
            )
        ) {
            let mut by_head: Vec<(u64, Vec<u8>)> = keys.iter().map(|k| (head(k), k.clone())).collect();
            sort_by_key_bytes(&mut by_head, |k| k);
            let mut plain = keys;
            plain.sort_unstable();
            let by_head: Vec<Vec<u8>> = by_head.into_iter().map(|(_, k)| k).collect();
            prop_assert_eq!(by_head, plain);
        }
    }

    #[test]
    fn empty_check_spaces_skip_lookups_but_never_hide_records() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Tuning::default()).unwrap();
        let val = |v: &[u8]| codec::encode(1, &v.to_vec()).unwrap();
        let read = |tx: &Tx, k: &[u8]| tx.get::<Vec<u8>>(1, k).unwrap();
        let (dedup, restriction) = (keys::dedup_key("req-1"), keys::restriction_key(&[7; 32]));

        // Both spaces empty: nothing to find, but staged writes are seen.
        let mut tx = Tx::new(&db);
        tx.prefetch(vec![dedup.clone(), restriction.clone()])
            .unwrap();
        assert_eq!(read(&tx, &dedup), None);
        tx.begin();
        tx.put(1, dedup.clone(), &b"staged".to_vec()).unwrap();
        assert_eq!(read(&tx, &dedup), Some(b"staged".to_vec()));
        tx.rollback();
        assert_eq!(read(&tx, &dedup), None);

        // A request id on record: found, with or without a prefetch, while
        // the still empty restriction space is not looked at.
        let key = keys::dedup_key("req-2");
        db.raw()
            .put_cf(db.sm_cf(&key).unwrap(), &key, val(b"outcome"))
            .unwrap();
        let tx = Tx::new(&db);
        assert_eq!(read(&tx, &key), Some(b"outcome".to_vec()));
        let tx = Tx::new(&db);
        tx.prefetch(vec![key.clone(), restriction.clone()]).unwrap();
        assert_eq!(read(&tx, &key), Some(b"outcome".to_vec()));
        assert_eq!(read(&tx, &restriction), None);
        assert_eq!(read(&tx, &dedup), None);
    }
}
