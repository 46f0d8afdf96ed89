use std::path::PathBuf;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A stored record failed its checksum, version or decode check. The data
    /// it holds must not be served.
    #[error("corrupt record in {cf} at key {key}: {reason}")]
    Corrupt {
        cf: &'static str,
        key: String,
        reason: String,
    },
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("encode: {0}")]
    Encode(String),
    #[error("io on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot file {path}: {reason}")]
    BadSnapshot { path: PathBuf, reason: String },
    #[error("column family {0} missing")]
    MissingColumnFamily(&'static str),
    /// The log or the store asks for something only a newer build does:
    /// this node must stop applying rather than apply it differently from
    /// its peers.
    #[error("needs a newer build of oneid: {0}")]
    NeedsNewerBuild(String),
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. } | StorageError::BadSnapshot { .. }
        )
    }
}
