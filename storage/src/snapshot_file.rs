//! Snapshot files: a consistent dump of the state machine column families,
//! streamed to disk (never held in memory), checksummed end to end, and
//! installed atomically with respect to crashes.
//!
//! ```text
//! "ONEIDSNP" [format: u8] [header len: u32 LE] [header bytes]
//! repeated: [1: u8] [cf: u8] [key len: u32 LE] [key] [value len: u32 LE] [value]
//! end:      [0: u8] [entry count: u64 LE] [crc32 of every preceding byte: u32 LE]
//! ```
//! The header is opaque here (the state machine stores its snapshot meta).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rocksdb::{IteratorMode, ReadOptions, WriteBatch};

use crate::keys::{SM_APPLIED, SM_FORMAT, SM_INSTALLING};
use crate::schema::{CF_SM_DATA, CF_SM_META, SM_RECORD_CFS};
use crate::{format, Db, StorageError};

const MAGIC: &[u8; 8] = b"ONEIDSNP";
const FORMAT: u8 = 1;
const FRAME_ENTRY: u8 = 1;
const FRAME_END: u8 = 0;
/// What a snapshot carries, by its index in the file: the state machine's
/// records (every [`SM_RECORD_CFS`] family under the index of `sm_data`,
/// placed by key on install, so snapshots read the same whichever column
/// family a build keeps a record in) and its bookkeeping.
const SNAPSHOT_CFS: [&str; 2] = [CF_SM_DATA, CF_SM_META];
/// Upper bound on a single key or value, so a corrupt length cannot make the
/// reader allocate gigabytes.
const MAX_FIELD: u32 = 64 << 20;
/// Bytes of writes gathered before a batch is written during install.
const INSTALL_BATCH_BYTES: usize = 4 << 20;
/// Bytes of a snapshot file written between syncs while it is built.
/// Synced only at the end, the whole file (~250 MB at a million records)
/// reached the disk in one burst that every raft log fsync on the machine
/// queued behind: followers acknowledged appends late, the leader's
/// AppendEntries timed out (openraft bounds them by one heartbeat) and
/// writes stopped for ~120 ms at a snapshot. Synced in slices, the disk
/// serves the log's fsyncs between them.
const SYNC_EVERY_BYTES: u64 = 8 << 20;

struct CrcWriter {
    inner: BufWriter<File>,
    crc: crc32fast::Hasher,
    bytes: u64,
    synced: u64,
}

impl CrcWriter {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.crc.update(buf);
        self.bytes += buf.len() as u64;
        self.inner.write_all(buf)
    }

    /// Syncs what was written so far once a slice's worth is waiting.
    fn sync_slice(&mut self) -> std::io::Result<()> {
        if self.bytes - self.synced < SYNC_EVERY_BYTES {
            return Ok(());
        }
        self.inner.flush()?;
        self.inner.get_ref().sync_data()?;
        self.synced = self.bytes;
        Ok(())
    }
}

/// What a finished snapshot file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Dumps the state machine from one consistent RocksDB snapshot into `path`.
///
/// `make_header` receives the raw `applied` record as of that same snapshot,
/// so the header's log id always matches the data.
pub fn build(
    db: &Db,
    path: &Path,
    make_header: impl FnOnce(Option<&[u8]>) -> Result<Vec<u8>, StorageError>,
) -> Result<SnapshotStats, StorageError> {
    let raw = db.raw();
    let snap = raw.snapshot();
    let meta_cf = db.cf(CF_SM_META)?;
    let applied = snap.get_cf(meta_cf, SM_APPLIED)?;
    let header = make_header(applied.as_deref())?;

    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
        bytes: 0,
        synced: 0,
    };
    let io = |e| StorageError::io(&tmp, e);
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&[FORMAT]).map_err(io)?;
    w.write_all(&(header.len() as u32).to_le_bytes())
        .map_err(io)?;
    w.write_all(&header).map_err(io)?;

    let mut entries = 0u64;
    // Index 0 (`sm_data`) carries every record column family's rows.
    let sources = SM_RECORD_CFS
        .iter()
        .map(|name| (0u8, *name))
        .chain([(1u8, CF_SM_META)]);
    for (cf_index, cf_name) in sources {
        let cf = db.cf(cf_name)?;
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snap);
        // A full scan must not evict the hot working set from the cache.
        opts.fill_cache(false);
        opts.set_total_order_seek(true);
        for item in raw.iterator_cf_opt(cf, opts, IteratorMode::Start) {
            let (k, v) = item?;
            if cf_name == CF_SM_META && &*k == SM_INSTALLING {
                continue;
            }
            w.write_all(&[FRAME_ENTRY, cf_index]).map_err(io)?;
            w.write_all(&(k.len() as u32).to_le_bytes()).map_err(io)?;
            w.write_all(&k).map_err(io)?;
            w.write_all(&(v.len() as u32).to_le_bytes()).map_err(io)?;
            w.write_all(&v).map_err(io)?;
            w.sync_slice().map_err(io)?;
            entries += 1;
        }
    }
    w.write_all(&[FRAME_END]).map_err(io)?;
    w.write_all(&entries.to_le_bytes()).map_err(io)?;
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes()).map_err(io)?;
    let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e))?;
    sync_dir(path)?;
    Ok(SnapshotStats {
        entries,
        bytes: w.bytes + 4,
    })
}

fn sync_dir(path: &Path) -> Result<(), StorageError> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io(dir, e))?;
    }
    Ok(())
}

/// A reader over a snapshot file.
pub struct SnapshotReader {
    path: PathBuf,
    r: BufReader<File>,
    crc: crc32fast::Hasher,
}

impl SnapshotReader {
    fn bad(&self, reason: impl Into<String>) -> StorageError {
        StorageError::BadSnapshot {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StorageError> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.crc.update(buf);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.bad("truncated")),
            Err(e) => Err(StorageError::io(&self.path, e)),
        }
    }

    fn read_u8(&mut self) -> Result<u8, StorageError> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn read_u32(&mut self) -> Result<u32, StorageError> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_field(&mut self) -> Result<Vec<u8>, StorageError> {
        let len = self.read_u32()?;
        if len > MAX_FIELD {
            return Err(self.bad(format!("field length {len} exceeds {MAX_FIELD}")));
        }
        let mut v = vec![0u8; len as usize];
        self.read_exact(&mut v)?;
        Ok(v)
    }

    /// Opens a snapshot and returns its header.
    pub fn open(path: &Path) -> Result<(SnapshotReader, Vec<u8>), StorageError> {
        let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
        let mut r = SnapshotReader {
            path: path.to_path_buf(),
            r: BufReader::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(r.bad("not a oneid snapshot (bad magic)"));
        }
        let format = r.read_u8()?;
        if format != FORMAT {
            return Err(r.bad(format!("format {format}, this build reads {FORMAT}")));
        }
        let header = r.read_field()?;
        Ok((r, header))
    }

    /// Calls `f(cf, key, value)` for every entry, then checks the trailer.
    /// Callers that must not act on a bad file call [`verify`] first.
    pub fn for_each(
        mut self,
        mut f: impl FnMut(&'static str, Vec<u8>, Vec<u8>) -> Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        let mut entries = 0u64;
        loop {
            match self.read_u8()? {
                FRAME_ENTRY => {
                    let cf_index = self.read_u8()?;
                    let cf = *SNAPSHOT_CFS
                        .get(cf_index as usize)
                        .ok_or_else(|| self.bad(format!("unknown column family {cf_index}")))?;
                    let k = self.read_field()?;
                    let v = self.read_field()?;
                    f(cf, k, v)?;
                    entries += 1;
                }
                FRAME_END => {
                    let mut n = [0u8; 8];
                    self.read_exact(&mut n)?;
                    let count = u64::from_le_bytes(n);
                    let expected = self.crc.clone().finalize();
                    let mut c = [0u8; 4];
                    self.r
                        .read_exact(&mut c)
                        .map_err(|_| self.bad("truncated trailer"))?;
                    if u32::from_le_bytes(c) != expected {
                        return Err(self.bad("crc32 mismatch"));
                    }
                    if count != entries {
                        return Err(
                            self.bad(format!("trailer says {count} entries, read {entries}"))
                        );
                    }
                    let mut rest = [0u8; 1];
                    if self
                        .r
                        .read(&mut rest)
                        .map_err(|e| StorageError::io(&self.path, e))?
                        != 0
                    {
                        return Err(self.bad("bytes after the trailer"));
                    }
                    return Ok(entries);
                }
                other => return Err(self.bad(format!("unknown frame type {other}"))),
            }
        }
    }
}

/// Reads a whole snapshot file and checks every checksum and the stored
/// format it was taken under (see [`crate::format`]), returning its header.
pub fn verify(path: &Path) -> Result<Vec<u8>, StorageError> {
    let (r, header) = SnapshotReader::open(path)?;
    let what = format!("snapshot {}", path.display());
    r.for_each(|cf, k, v| {
        if cf == CF_SM_META && k == SM_FORMAT {
            format::check(&v, &what)?;
        }
        Ok(())
    })?;
    Ok(header)
}

/// Replaces the state machine with the snapshot's contents.
///
/// The file is verified before anything is touched. The install then runs in
/// several write batches (a snapshot can be gigabytes), bracketed by the
/// `installing` marker: a node that crashes midway finds the marker on
/// restart and must call this again with the same file before serving.
pub fn install(db: &Db, path: &Path) -> Result<u64, StorageError> {
    verify(path)?;
    let raw = db.raw();
    let records = db.sm_cfs()?;
    let meta_cf = db.cf(CF_SM_META)?;

    let mut batch = WriteBatch::default();
    batch.put_cf(meta_cf, SM_INSTALLING, path.to_string_lossy().as_bytes());
    for name in SM_RECORD_CFS {
        batch.delete_range_cf(db.cf(name)?, [0u8].as_slice(), [0xffu8; 64].as_slice());
    }
    batch.delete_cf(meta_cf, SM_APPLIED);
    raw.write_opt(batch, &Db::sync_write())?;

    let (r, _) = SnapshotReader::open(path)?;
    let mut batch = WriteBatch::default();
    let entries = r.for_each(|cf, k, v| {
        let handle = if cf == CF_SM_DATA {
            records.of(&k)
        } else {
            meta_cf
        };
        batch.put_cf(handle, k, v);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            raw.write_opt(std::mem::take(&mut batch), &Db::async_write())?;
        }
        Ok(())
    })?;
    batch.delete_cf(meta_cf, SM_INSTALLING);
    // The snapshot's generation (if it has one) is this build's or older,
    // and what this build writes from now on is this build's.
    batch.put_cf(meta_cf, SM_FORMAT, format::current_record()?);
    raw.write_opt(batch, &Db::sync_write())?;
    // Later applies skip the WAL; flushed here, the installed state never
    // depends on replaying the WAL under them.
    db.flush_state_machine()?;
    Ok(entries)
}

/// The snapshot file whose install was interrupted, if any.
pub fn interrupted_install(db: &Db) -> Result<Option<PathBuf>, StorageError> {
    let meta_cf = db.cf(CF_SM_META)?;
    Ok(db
        .raw()
        .get_cf(meta_cf, SM_INSTALLING)?
        .map(|v| PathBuf::from(String::from_utf8_lossy(&v).into_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Tuning, CF_SM_CHECKS};

    /// `n` records in each of three key spaces, two of them check records.
    fn fill(db: &Db, n: u32) {
        for i in 0..n {
            for tag in ["h", "d", "r"] {
                let key = format!("{tag}{i:05}");
                let cf = db.sm_cf(key.as_bytes()).unwrap();
                db.raw().put_cf(cf, key, format!("v{i}")).unwrap();
            }
        }
        let meta = db.cf(CF_SM_META).unwrap();
        db.raw()
            .put_cf(meta, SM_APPLIED, b"applied-record")
            .unwrap();
    }

    /// Every state machine row with the column family it is in.
    fn dump(db: &Db) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for name in SM_RECORD_CFS.into_iter().chain([CF_SM_META]) {
            let cf = db.cf(name).unwrap();
            for item in db.raw().iterator_cf(cf, IteratorMode::Start) {
                let (k, v) = item.unwrap();
                out.push((name, k.to_vec(), v.to_vec()));
            }
        }
        out
    }

    #[test]
    fn build_then_install_reproduces_state() {
        let dir = tempfile::tempdir().unwrap();
        let a = Db::open(&dir.path().join("a"), Tuning::default()).unwrap();
        let b = Db::open(&dir.path().join("b"), Tuning::default()).unwrap();
        fill(&a, 1000);
        // b has stale data that the install must remove.
        for key in ["zzz-stale", "d-stale"] {
            let cf = b.sm_cf(key.as_bytes()).unwrap();
            b.raw().put_cf(cf, key, "x").unwrap();
        }
        let path = dir.path().join("s.snap");
        let stats = build(&a, &path, |applied| {
            assert_eq!(applied, Some(&b"applied-record"[..]));
            Ok(b"hdr".to_vec())
        })
        .unwrap();
        // The records, the applied record and the stored format.
        assert_eq!(stats.entries, 3002);
        assert_eq!(verify(&path).unwrap(), b"hdr");
        assert_eq!(install(&b, &path).unwrap(), 3002);
        let installed = dump(&b);
        assert_eq!(dump(&a), installed);
        let checks = installed.iter().filter(|r| r.0 == CF_SM_CHECKS).count();
        assert_eq!(
            checks, 2000,
            "check records are installed in their own family"
        );
        assert_eq!(interrupted_install(&b).unwrap(), None);
    }

    #[test]
    fn corrupt_or_truncated_files_are_refused_before_install() {
        let dir = tempfile::tempdir().unwrap();
        let a = Db::open(&dir.path().join("a"), Tuning::default()).unwrap();
        fill(&a, 50);
        let path = dir.path().join("s.snap");
        build(&a, &path, |_| Ok(vec![])).unwrap();
        let good = std::fs::read(&path).unwrap();

        let b = target_with_one_record(dir.path());
        for i in [0, 9, 20, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                install(&b, &path).unwrap_err().is_corruption(),
                "flip at {i}"
            );
        }
        for len in [0, 5, 13, good.len() - 3] {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(install(&b, &path).unwrap_err().is_corruption(), "len {len}");
        }
        // Nothing was touched.
        assert_eq!(dump(&b), kept_and_stamped());
    }

    /// The database a refused install must leave alone: one record.
    fn target_with_one_record(dir: &Path) -> std::sync::Arc<Db> {
        let b = Db::open(&dir.join("b"), Tuning::default()).unwrap();
        b.raw()
            .put_cf(b.cf(CF_SM_DATA).unwrap(), "keep", "me")
            .unwrap();
        b
    }

    /// What [`target_with_one_record`] holds: the record and its stamp.
    fn kept_and_stamped() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
        vec![
            (CF_SM_DATA, b"keep".to_vec(), b"me".to_vec()),
            (
                CF_SM_META,
                SM_FORMAT.to_vec(),
                format::current_record().unwrap(),
            ),
        ]
    }

    #[test]
    fn a_snapshot_of_a_newer_format_is_refused_before_install() {
        let dir = tempfile::tempdir().unwrap();
        let a = Db::open(&dir.path().join("a"), Tuning::default()).unwrap();
        fill(&a, 50);
        let newer = format::record_of(format::STORE_FORMAT + 1).unwrap();
        a.raw()
            .put_cf(a.cf(CF_SM_META).unwrap(), SM_FORMAT, newer)
            .unwrap();
        let path = dir.path().join("s.snap");
        build(&a, &path, |_| Ok(vec![])).unwrap();

        let b = target_with_one_record(dir.path());
        let e = install(&b, &path).unwrap_err();
        assert!(matches!(e, StorageError::NeedsNewerBuild(_)), "{e}");
        assert!(e.to_string().contains("s.snap"), "{e}");
        assert_eq!(dump(&b), kept_and_stamped());
        assert_eq!(interrupted_install(&b).unwrap(), None);
    }

    #[test]
    fn an_install_stamps_this_builds_format_over_an_older_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let a = Db::open(&dir.path().join("a"), Tuning::default()).unwrap();
        fill(&a, 5);
        // As a build before the gate took it: no generation at all.
        a.raw()
            .delete_cf(a.cf(CF_SM_META).unwrap(), SM_FORMAT)
            .unwrap();
        let path = dir.path().join("s.snap");
        build(&a, &path, |_| Ok(vec![])).unwrap();
        let b = Db::open(&dir.path().join("b"), Tuning::default()).unwrap();
        assert_eq!(install(&b, &path).unwrap(), 16);
        let meta = b.cf(CF_SM_META).unwrap();
        assert_eq!(
            b.raw().get_cf(meta, SM_FORMAT).unwrap(),
            Some(format::current_record().unwrap())
        );
    }
}
