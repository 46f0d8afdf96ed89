//! RocksDB storage for oneid: the one place where column families, key
//! encodings and on-disk record formats are declared.
//!
//! Every value written through this crate is a [`codec`] envelope (format
//! version + bincode body + crc32), checked on every read: a mismatch is a
//! typed [`StorageError::Corrupt`], never a panic and never a silently wrong
//! answer.

pub mod codec;
pub mod error;
pub mod format;
pub mod keys;
pub mod log_store;
pub mod records;
pub mod schema;
pub mod snapshot_file;

pub use error::StorageError;
/// Re-exported so callers use exactly this crate's RocksDB version.
pub use rocksdb;
pub use schema::Db;
