//! Column families and RocksDB tuning, declared once.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompactionStyle,
    DBCompressionType, Direction, FlushOptions, IteratorMode, Options, ReadOptions, SliceTransform,
    WriteBatch, WriteOptions, DB,
};

use crate::keys::SM_FORMAT;
use crate::{format, StorageError};

/// A raw key and its raw (envelope-encoded) value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Raft log entries, keyed by big-endian log index.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft vote, committed log id and last purged log id.
pub const CF_RAFT_META: &str = "raft_meta";
/// The replicated registry state (cards, holders, dedup, ...).
pub const CF_SM_DATA: &str = "sm_data";
/// The replicated records nearly every command looks for and seldom finds
/// (request ids, restrictions: `keys::CHECK_PREFIXES`), kept apart from
/// `sm_data` so that missing them is cheap. In `sm_data` every registration
/// probed a bloom filter per memtable, per level-0 file and per level for
/// each of them: skipping the two lookups (a measurement only) imported 3 M
/// cards 11 % faster.
pub const CF_SM_CHECKS: &str = "sm_checks";
/// State machine bookkeeping: last applied log id, membership, install marker.
pub const CF_SM_META: &str = "sm_meta";

/// This node's own audit trail of the queries it served, keyed by a
/// big-endian sequence number. Not replicated and not in snapshots: reads do
/// not go through raft, so each node records what it answered.
pub const CF_QUERY_AUDIT: &str = "query_audit";

pub const ALL_CFS: [&str; 6] = [
    CF_RAFT_LOG,
    CF_RAFT_META,
    CF_SM_DATA,
    CF_SM_CHECKS,
    CF_SM_META,
    CF_QUERY_AUDIT,
];

/// The column families that hold the state machine's records, which key
/// goes where decided by [`crate::keys::is_check_key`] alone: together they
/// are one key space.
pub const SM_RECORD_CFS: [&str; 2] = [CF_SM_DATA, CF_SM_CHECKS];

/// The column family a state machine record with `key` lives in.
pub fn sm_cf_name(key: &[u8]) -> &'static str {
    if crate::keys::is_check_key(key) {
        CF_SM_CHECKS
    } else {
        CF_SM_DATA
    }
}

/// `sm_data` values at least this long are kept in blob files.
pub const BLOB_MIN_BYTES: u64 = 16 << 10;

/// The name `sm_data`'s prefix extractor is recorded under in each table
/// file: files written under another name (or none) keep being read, but
/// their prefix filters are not used. Change it whenever
/// `keys::scan_prefix_len` changes.
const SCAN_PREFIX_EXTRACTOR: &str = "oneid.scan_prefix.v1";

fn scan_prefix(key: &[u8]) -> &[u8] {
    &key[..crate::keys::scan_prefix_len(key).unwrap_or(key.len())]
}

fn in_scan_group(key: &[u8]) -> bool {
    crate::keys::scan_prefix_len(key).is_some()
}

/// Memory bounds, sized so a node with 10 M cards stays well under 1 GiB.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
    pub max_write_buffers: i32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 32 << 20,
            max_write_buffers: 3,
        }
    }
}

/// A column family this build does not declare was added by a newer one
/// (RocksDB refuses to open a database without naming all of them, in
/// words that do not say why).
fn refuse_unknown_column_families(opts: &Options, path: &Path) -> Result<(), StorageError> {
    // A new data dir has no database to list yet.
    let Ok(existing) = DB::list_cf(opts, path) else {
        return Ok(());
    };
    let unknown: Vec<_> = existing
        .iter()
        .filter(|cf| *cf != "default" && !ALL_CFS.contains(&cf.as_str()))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(StorageError::NeedsNewerBuild(format!(
        "data dir {} holds column families this build does not know ({}), written by a \
         newer build; this build reads stored formats up to {}",
        path.display(),
        unknown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        format::STORE_FORMAT
    )))
}

/// The state machine's record column families, resolved once.
pub struct SmCfs<'a> {
    data: &'a ColumnFamily,
    checks: &'a ColumnFamily,
}

impl<'a> SmCfs<'a> {
    /// The column family of the record `key`.
    pub fn of(&self, key: &[u8]) -> &'a ColumnFamily {
        if crate::keys::is_check_key(key) {
            self.checks
        } else {
            self.data
        }
    }
}

/// An open oneid database.
pub struct Db {
    db: DB,
}

impl Db {
    pub fn open(path: &Path, tuning: Tuning) -> Result<Arc<Db>, StorageError> {
        std::fs::create_dir_all(path).map_err(|e| StorageError::io(path, e))?;
        let cache = Cache::new_lru_cache(tuning.block_cache_bytes);

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_bytes_per_sync(1 << 20);
        db_opts.set_keep_log_file_num(3);
        // The raft log is the recovery source; RocksDB's WAL must survive
        // every acknowledged append (appends are written with sync=true).
        db_opts.set_manual_wal_flush(false);
        // State machine applies skip the WAL (see `Db::apply_write`), so a
        // crash leaves the state machine as of its last flush. Flushing every
        // column family together keeps that state one consistent cut: the
        // applied index (CF_SM_META) always matches the data (CF_SM_DATA).
        db_opts.set_atomic_flush(true);

        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            o.set_write_buffer_size(tuning.write_buffer_bytes);
            o.set_max_write_buffer_number(tuning.max_write_buffers);
            o.set_compression_type(DBCompressionType::Lz4);
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            // Index and filter blocks stay in table-reader memory (about
            // 10 bits per key: ~50 MB at 10 M cards). Kept in the block cache
            // instead, data blocks evicted the megabyte-sized filters and
            // every read that missed re-read and re-checksummed one: imports
            // slowed fivefold as the data grew.
            t.set_cache_index_and_filter_blocks(false);
            t.set_optimize_filters_for_memory(true);
            t.set_bloom_filter(10.0, false);
            if *name == CF_SM_DATA {
                // Card keys are hashes, so every L0 file overlaps all of L1
                // and, levelled, each L0->L1 compaction rewrote the whole of
                // L1. Twice the memtable and twice the L0 files per
                // compaction cut what a 3 M-card import compacted from
                // ~1.3 GiB to 0.48 GiB per node and raised it from 32 k to
                // 38 k cards/s; reads check a few more files, each behind a
                // bloom filter.
                o.set_write_buffer_size(tuning.write_buffer_bytes * 2);
                o.set_level_zero_file_num_compaction_trigger(8);
                // Universal compaction merges sorted runs of similar size
                // instead of rewriting L1 for every few flushes: a 10 M-card
                // import compacted 1.8 GiB per node instead of 2.7 GiB and
                // took 170 s instead of 187 s (session 21). A database
                // written levelled opens as is: each non-empty level counts
                // as one sorted run.
                o.set_compaction_style(DBCompactionStyle::Universal);
                // Prefixes only for the group hot prefix scans read whole
                // (`keys::scan_prefix_len`): an extractor over every key
                // (the id prefix, until session 19) added an entry to every
                // filter and memtable bloom that no read used, and without
                // it 10 M cards loaded in 179.7 s against 182.2 s. Point
                // reads check whole-key filters either way.
                o.set_prefix_extractor(SliceTransform::create(
                    SCAN_PREFIX_EXTRACTOR,
                    scan_prefix,
                    Some(in_scan_group),
                ));
                // The memtable's bloom filter, as a share of its size: 2 %
                // is 1.3 MB, ~14 bits for each of the ~750 k prefixes and
                // keys a full memtable held then (1-2 % false positives).
                // At 10 % (6.4 MB, ~60 bits each) every insert's bit-set
                // missed the CPU caches: 1 M cards imported in 13.1-14.0 s
                // instead of 14.3-15.0 s; registrations and counts cost
                // the same (session 17, alternating runs).
                o.set_memtable_prefix_bloom_ratio(0.02);
                // Whole keys, so a lookup of a missing key (most number-index
                // lookups) skips the skiplist search.
                o.set_memtable_whole_key_filtering(true);
                t.set_whole_key_filtering(true);
                // Values this large are an entry's audit block (~66 bytes
                // per command; request-id age blocks are capped below it):
                // over a quarter of an import's bytes, never rewritten or
                // deleted. In blob files they are written once at flush and
                // compactions move only a pointer: a 10 M-card import
                // compacted 2.7 GiB per node instead of 3.4 GiB, measured.
                o.set_enable_blob_files(true);
                o.set_min_blob_size(BLOB_MIN_BYTES);
                o.set_blob_compression_type(DBCompressionType::Lz4);
            }
            if *name == CF_SM_CHECKS {
                // Few records: a small memtable, and a bloom filter in it
                // so a lookup of a missing key skips the skiplist search.
                o.set_write_buffer_size(tuning.write_buffer_bytes / 4);
                o.set_memtable_prefix_bloom_ratio(0.02);
                o.set_memtable_whole_key_filtering(true);
            }
            o.set_block_based_table_factory(&t);
            ColumnFamilyDescriptor::new(*name, o)
        });
        refuse_unknown_column_families(&db_opts, path)?;
        let db = Db {
            db: DB::open_cf_descriptors(&db_opts, path, cfs)?,
        };
        // Before anything reads or moves records: a layout this build does
        // not know must not be half understood.
        let stored = db.db.get_cf(db.cf(CF_SM_META)?, SM_FORMAT)?;
        if let Some(stored) = &stored {
            format::check(stored, &format!("data dir {}", path.display()))?;
        }
        db.move_check_records()?;
        let current = format::current_record()?;
        if stored.as_deref() != Some(&current[..]) {
            db.db
                .put_cf_opt(db.cf(CF_SM_META)?, SM_FORMAT, current, &Self::sync_write())?;
        }
        Ok(Arc::new(db))
    }

    /// Builds before session 19 kept the check records in `sm_data`. A
    /// database written by one moves them on open, before anything reads:
    /// each synced batch moves whole records (a put and a delete), so an
    /// interrupted move resumes on the next open and no record is ever in
    /// both places or neither.
    fn move_check_records(&self) -> Result<(), StorageError> {
        let (data, checks) = (self.cf(CF_SM_DATA)?, self.cf(CF_SM_CHECKS)?);
        for prefix in crate::keys::CHECK_PREFIXES {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let rows = self.scan_cf(data, prefix, after.as_deref(), 10_000)?;
                let Some((last, _)) = rows.last() else {
                    break;
                };
                after = Some(last.clone());
                let mut batch = WriteBatch::default();
                for (k, v) in &rows {
                    batch.put_cf(checks, k, v);
                    batch.delete_cf(data, k);
                }
                self.db.write_opt(batch, &Self::sync_write())?;
            }
        }
        Ok(())
    }

    pub fn raw(&self) -> &DB {
        &self.db
    }

    pub fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or(StorageError::MissingColumnFamily(name))
    }

    /// The column family of the state machine record `key`.
    pub fn sm_cf(&self, key: &[u8]) -> Result<&ColumnFamily, StorageError> {
        self.cf(sm_cf_name(key))
    }

    /// Both state machine record column families, for callers that route
    /// many keys.
    pub fn sm_cfs(&self) -> Result<SmCfs<'_>, StorageError> {
        Ok(SmCfs {
            data: self.cf(CF_SM_DATA)?,
            checks: self.cf(CF_SM_CHECKS)?,
        })
    }

    /// Write options for raft log and vote writes: durable before ack.
    pub fn sync_write() -> WriteOptions {
        let mut o = WriteOptions::default();
        o.set_sync(true);
        o
    }

    /// Write options for writes that need not be synced (the query trail,
    /// log writes a flusher syncs later).
    pub fn async_write() -> WriteOptions {
        WriteOptions::default()
    }

    /// Write options for state machine applies: not even written to the
    /// WAL. Every applied command is already in the synced raft log, so
    /// logging it again cost a second copy of every card in the WAL (and in
    /// each fsync of it): ~6 % of an import's throughput, measured. After
    /// a crash the state machine is what its last (atomic) flush holds, the
    /// applied index included, and raft applies the rest again from the
    /// log. That needs the log kept past the flushed applied index: logs are
    /// purged only up to a snapshot, and `flush_state_machine` runs before a
    /// snapshot is published.
    pub fn apply_write() -> WriteOptions {
        let mut o = WriteOptions::default();
        o.disable_wal(true);
        o
    }

    /// Forces everything written to the WAL so far onto disk.
    pub fn sync_wal(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Writes the state machine's memtables to disk (both its column
    /// families in one atomic flush) and waits for it: afterwards everything
    /// applied so far survives a crash.
    pub fn flush_state_machine(&self) -> Result<(), StorageError> {
        let mut opts = FlushOptions::default();
        opts.set_wait(true);
        let cfs = [
            self.cf(CF_SM_DATA)?,
            self.cf(CF_SM_CHECKS)?,
            self.cf(CF_SM_META)?,
        ];
        self.db.flush_cfs_opt(&cfs, &opts)?;
        Ok(())
    }

    /// Up to `limit` state machine entries whose keys start with `prefix`
    /// and sort after `after` (exclusive), in key order. Values are raw
    /// codec envelopes for the caller to decode.
    pub fn scan_sm(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        if !prefix.is_empty() {
            return self.scan_cf(self.sm_cf(prefix)?, prefix, after, limit);
        }
        // Every record: both column families, merged in key order.
        let mut all = Vec::new();
        for name in SM_RECORD_CFS {
            all.extend(self.scan_cf(self.cf(name)?, prefix, after, limit)?);
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        Ok(all)
    }

    fn scan_cf(
        &self,
        cf: &ColumnFamily,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let mut opts = ReadOptions::default();
        if crate::keys::scan_prefix_len(prefix) == Some(prefix.len()) {
            // One scan group: the prefix filters may rule files out.
            opts.set_prefix_same_as_start(true);
        } else {
            // Key order across prefixes, whatever prefix options a table
            // was built with.
            opts.set_total_order_seek(true);
        }
        if let Some(end) = prefix_end(prefix) {
            opts.set_iterate_upper_bound(end);
        }
        let start = after.unwrap_or(prefix);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(cf, opts, IteratorMode::From(start, Direction::Forward))
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if after.is_some_and(|a| &*k <= a) {
                continue;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// Approximate on-disk size in bytes of live data in all column families
    /// (table and blob files).
    pub fn approximate_size(&self) -> u64 {
        let files = [
            "rocksdb.total-sst-files-size",
            "rocksdb.total-blob-file-size",
        ];
        ALL_CFS
            .iter()
            .filter_map(|name| self.db.cf_handle(name))
            .flat_map(|cf| files.map(|p| (cf, p)))
            .filter_map(|(cf, p)| self.db.property_int_value_cf(cf, p).ok().flatten())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("blob".as_ref()))
            .count()
    }

    #[test]
    fn large_values_live_in_blob_files_and_read_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        // Incompressible, so the blob file's size shows in the total.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let big: Vec<u8> = (0..BLOB_MIN_BYTES * 2)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        {
            let db = Db::open(dir.path(), Tuning::default()).unwrap();
            let cf = db.cf(CF_SM_DATA).unwrap();
            db.raw().put_cf(cf, b"A-big", &big).unwrap();
            db.raw().put_cf(cf, b"c-small", b"small").unwrap();
            db.flush_state_machine().unwrap();
            assert_eq!(blob_files(dir.path()), 1);
            assert!(db.approximate_size() >= 2 * BLOB_MIN_BYTES);
        }
        let db = Db::open(dir.path(), Tuning::default()).unwrap();
        let cf = db.cf(CF_SM_DATA).unwrap();
        assert_eq!(db.raw().get_cf(cf, b"A-big").unwrap(), Some(big));
        assert_eq!(
            db.scan_sm(b"c", None, 10).unwrap(),
            vec![(b"c-small".to_vec(), b"small".to_vec())]
        );
    }

    #[test]
    fn group_scans_find_exactly_what_key_order_scans_find_across_files() {
        use crate::keys::{card_key, card_prefix, link_key, link_prefix, msisdn_key};
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Tuning::default()).unwrap();
        let cf = db.cf(CF_SM_DATA).unwrap();
        let numbers: Vec<String> = (0..12).map(|n| format!("1380000{n:04}")).collect();
        let ids: Vec<[u8; 32]> = (0..6u8).map(|i| [i * 40; 32]).collect();
        // Spread over five files and the memtable, each group in several.
        let mut written = Vec::new();
        for round in 0..6u8 {
            for (n, number) in numbers.iter().enumerate() {
                if (n + round as usize).is_multiple_of(3) {
                    continue;
                }
                let k = link_key(number, "wechat", &format!("acct-{round}-{n}"));
                written.push(k);
                written.push(msisdn_key(number));
            }
            for (i, id) in ids.iter().enumerate() {
                if (i + round as usize).is_multiple_of(2) {
                    written.push(card_key(id, &numbers[(i + round as usize) % 12]));
                }
            }
            for k in &written {
                db.raw().put_cf(cf, k, [round]).unwrap();
            }
            if round < 5 {
                db.flush_state_machine().unwrap();
            }
        }
        let everything = db.scan_sm(b"", None, usize::MAX).unwrap();
        let in_order = |prefix: &[u8]| -> Vec<KeyValue> {
            let rows = everything.iter().filter(|(k, _)| k.starts_with(prefix));
            rows.cloned().collect()
        };
        let mut groups: Vec<Vec<u8>> = numbers.iter().map(|n| link_prefix(n)).collect();
        groups.extend(ids.iter().map(card_prefix));
        groups.push(link_prefix("13999999999"));
        groups.push(card_prefix(&[255; 32]));
        for group in &groups {
            let want = in_order(group);
            assert_eq!(db.scan_sm(group, None, usize::MAX).unwrap(), want);
            assert_eq!(
                db.scan_sm(group, None, 2).unwrap(),
                want[..want.len().min(2)]
            );
            if let Some((first, _)) = want.first() {
                assert_eq!(
                    db.scan_sm(group, Some(first), usize::MAX).unwrap(),
                    want[1..]
                );
            }
        }
        assert!(groups.iter().take(12).all(|g| !in_order(g).is_empty()));
        assert_eq!(
            in_order(b"l").len(),
            db.scan_sm(b"l", None, usize::MAX).unwrap().len()
        );
    }

    #[test]
    fn check_records_of_older_builds_move_to_their_family_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let old_rows = [
            (crate::keys::dedup_key("req-1"), b"outcome".to_vec()),
            (
                crate::keys::restriction_key(&[7; 32]),
                b"restricted".to_vec(),
            ),
            (b"h-holder".to_vec(), b"summary".to_vec()),
            // Kept in sm_data until session 21.
            (crate::keys::lockout_key(&[7; 32]), b"lockout".to_vec()),
            (crate::keys::KEY_STATE.to_vec(), b"key state".to_vec()),
        ];
        {
            // Where builds before session 19 wrote them: all in sm_data.
            let db = Db::open(dir.path(), Tuning::default()).unwrap();
            let cf = db.cf(CF_SM_DATA).unwrap();
            for (k, v) in &old_rows {
                db.raw().put_cf(cf, k, v).unwrap();
            }
            db.flush_state_machine().unwrap();
        }
        let db = Db::open(dir.path(), Tuning::default()).unwrap();
        let in_cf = |name, k: &[u8]| db.raw().get_cf(db.cf(name).unwrap(), k).unwrap();
        for (k, v) in &old_rows {
            let home = sm_cf_name(k);
            assert_eq!(in_cf(home, k).as_ref(), Some(v), "{home}");
            let other = SM_RECORD_CFS.into_iter().find(|n| *n != home).unwrap();
            assert_eq!(in_cf(other, k), None, "{other}");
        }
        assert_eq!(sm_cf_name(&old_rows[0].0), CF_SM_CHECKS);
        assert_eq!(sm_cf_name(&old_rows[1].0), CF_SM_CHECKS);
        assert_eq!(sm_cf_name(&old_rows[3].0), CF_SM_CHECKS);
        assert_eq!(sm_cf_name(&old_rows[4].0), CF_SM_CHECKS);
        // Both families read as one key space, in key order.
        let mut want: Vec<_> = old_rows.to_vec();
        want.sort();
        assert_eq!(db.scan_sm(&[], None, 10).unwrap(), want);
        assert_eq!(db.scan_sm(&[], None, 2).unwrap(), want[..2].to_vec());
        assert_eq!(db.scan_sm(&[], None, 4).unwrap(), want[..4].to_vec());
        assert_eq!(
            db.scan_sm(b"r", None, 10).unwrap(),
            vec![old_rows[1].clone()]
        );
    }

    fn put_format(db: &Db, generation: u32) {
        let bytes = format::record_of(generation).unwrap();
        db.raw()
            .put_cf_opt(
                db.cf(CF_SM_META).unwrap(),
                SM_FORMAT,
                bytes,
                &Db::sync_write(),
            )
            .unwrap();
    }

    fn stored_format(db: &Db) -> Option<Vec<u8>> {
        db.raw()
            .get_cf(db.cf(CF_SM_META).unwrap(), SM_FORMAT)
            .unwrap()
    }

    #[test]
    fn a_store_is_stamped_with_this_builds_format_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let current = format::current_record().unwrap();
        {
            let db = Db::open(dir.path(), Tuning::default()).unwrap();
            assert_eq!(stored_format(&db), Some(current.clone()));
            // As a build before the gate left it: no marker at all.
            db.raw()
                .delete_cf_opt(db.cf(CF_SM_META).unwrap(), SM_FORMAT, &Db::sync_write())
                .unwrap();
        }
        let db = Db::open(dir.path(), Tuning::default()).unwrap();
        assert_eq!(stored_format(&db), Some(current));
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let row = (crate::keys::holder_key(&[3; 32]), b"summary".to_vec());
        let newer = format::STORE_FORMAT + 1;
        let before = {
            let db = Db::open(dir.path(), Tuning::default()).unwrap();
            let cf = db.cf(CF_SM_DATA).unwrap();
            db.raw()
                .put_cf_opt(cf, &row.0, &row.1, &Db::sync_write())
                .unwrap();
            // A record a build before session 19 left in `sm_data`: the
            // refused open must not move it either.
            let old_check = crate::keys::dedup_key("req-1");
            db.raw()
                .put_cf_opt(cf, &old_check, b"x", &Db::sync_write())
                .unwrap();
            put_format(&db, newer);
            stored_format(&db)
        };
        for _ in 0..2 {
            let e = Db::open(dir.path(), Tuning::default()).err().unwrap();
            assert!(matches!(e, StorageError::NeedsNewerBuild(_)), "{e}");
            let text = e.to_string();
            assert!(text.contains(&format!("stored format {newer}")), "{text}");
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
        }
        // Opened by RocksDB directly, the store is as the newer build left it.
        let cfs: Vec<_> = ALL_CFS.to_vec();
        let raw = DB::open_cf(&Options::default(), dir.path(), cfs).unwrap();
        let data = raw.cf_handle(CF_SM_DATA).unwrap();
        assert_eq!(raw.get_cf(data, &row.0).unwrap(), Some(row.1.clone()));
        let old_check = crate::keys::dedup_key("req-1");
        assert_eq!(raw.get_cf(data, &old_check).unwrap(), Some(b"x".to_vec()));
        let meta = raw.cf_handle(CF_SM_META).unwrap();
        assert_eq!(raw.get_cf(meta, SM_FORMAT).unwrap(), before);
    }

    #[test]
    fn a_store_with_a_column_family_this_build_lacks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let mut cfs: Vec<_> = ALL_CFS.to_vec();
            cfs.push("from_the_future");
            DB::open_cf(&opts, dir.path(), cfs).unwrap();
        }
        let e = Db::open(dir.path(), Tuning::default()).err().unwrap();
        assert!(matches!(e, StorageError::NeedsNewerBuild(_)), "{e}");
        assert!(e.to_string().contains("from_the_future"), "{e}");
    }
}
