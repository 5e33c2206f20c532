//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `knn-index`.
///
/// Errors about a file of an index directory always carry the file's path, so a message such as
/// `/data/idx/targets.f32: size 1000 bytes, expected 1536` names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another build holds the lock on this output (advisory lock file beside it).
    #[error(
        "{out}: another build is writing this index (lock {lock} is held); wait for it to finish \
         or stop it"
    )]
    Locked {
        /// The index directory being built.
        out: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file the index needs does not exist.
    #[error("{path}: missing file")]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file's size disagrees with the manifest or with the index dimensions.
    #[error("{path}: size {found} bytes, expected {expected} (truncated or wrong file)")]
    Size {
        /// The file.
        path: PathBuf,
        /// Size the manifest (or the dimensions) imply.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// A file's content hash differs from the one recorded in the manifest.
    #[error("{path}: checksum mismatch (manifest xxh3 {expected}, file {found}): corrupted file")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Hash recorded in the manifest.
        expected: String,
        /// Hash of the bytes on disk.
        found: String,
    },
    /// The manifest has a format version this build cannot read.
    #[error(
        "{path}: format version {found} is not supported (this build reads version {supported})"
    )]
    Version {
        /// The manifest file.
        path: PathBuf,
        /// Version found in the manifest.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The manifest is not valid JSON or misses a field or holds an impossible value.
    #[error("{path}: invalid manifest: {reason}")]
    Manifest {
        /// The manifest (or staging state) file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file's content is inconsistent (bad offsets, unsorted id table, unreadable FAISS index...).
    #[error("{path}: corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A vector or matrix has the wrong width.
    #[error("dimension mismatch for {what}: expected {expected}, got {found}")]
    Dimension {
        /// What was being checked (e.g. "query", "key", "target").
        what: &'static str,
        /// Expected width or length.
        expected: usize,
        /// Width or length given.
        found: usize,
    },
    /// A key or query contains NaN or an infinity.
    #[error("{what} row {row} contains a non-finite value")]
    NonFinite {
        /// "key" or "query".
        what: &'static str,
        /// Row index within the batch.
        row: usize,
    },
    /// The same id was given to two rows.
    #[error("duplicate id {0}")]
    DuplicateId(u64),
    /// An id that is not in the index.
    #[error("id {0} is not in the index")]
    UnknownId(u64),
    /// An index spec (preset name or FAISS factory string) that cannot be built.
    #[error("index spec {spec:?}: {reason}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A search knob (nprobe, efSearch) that the index does not have.
    #[error("search parameter {name} cannot be set on index {factory:?}: {reason}")]
    Param {
        /// Knob name as FAISS spells it.
        name: &'static str,
        /// The FAISS factory string of the index.
        factory: String,
        /// FAISS's message.
        reason: String,
    },
    /// The index models or dimensions are not the ones the caller expects.
    #[error("{path}: index was built with {what} {found:?}, expected {expected:?}")]
    Mismatch {
        /// The manifest file.
        path: PathBuf,
        /// What disagrees ("key model", "target model", "key dim"...).
        what: &'static str,
        /// What the caller expects.
        expected: String,
        /// What the manifest says.
        found: String,
    },
    /// Shards that cannot be merged into one index (missing, overlapping, from another
    /// corpus, models, spec or trained quantizer).
    #[error("cannot merge the shards: {0}")]
    Merge(String),
    /// Any other invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An error raised inside FAISS.
    #[error("faiss: {0}")]
    Faiss(String),
    /// A thread panicked while holding the index lock.
    #[error("index lock poisoned by a panicking thread")]
    Poisoned,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::Missing { path }
        } else {
            Error::Io { path, source }
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn manifest(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Manifest {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. }
            | Error::Missing { path }
            | Error::Size { path, .. }
            | Error::Checksum { path, .. }
            | Error::Version { path, .. }
            | Error::Manifest { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Mismatch { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl From<faiss::error::Error> for Error {
    fn from(e: faiss::error::Error) -> Self {
        Error::Faiss(e.to_string())
    }
}
