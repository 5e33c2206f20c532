//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a captioner or captioning images. Every variant
/// about a file names it; weight errors name the tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON of the expected shape.
    #[error("invalid captioner config {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The configuration parses but cannot be run (or is too large to be one).
    #[error("unsupported captioner config {path}: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The weights file's xxh3 differs from the one its config records.
    #[error("{path} is damaged or replaced: xxh3 {found}, config.json records {expected}")]
    Checksum {
        /// The weights file.
        path: PathBuf,
        /// The digest config.json records.
        expected: String,
        /// The digest of the file on disk.
        found: String,
    },
    /// The safetensors file could not be parsed, or a tensor is missing, extra or misshapen.
    #[error("cannot load weights from {path}: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong (names the tensor when one is at fault).
        message: String,
    },
    /// An image cannot be captioned (e.g. 0 pixels wide).
    #[error("cannot caption image #{index}: {message}")]
    Image {
        /// Position of the image in the batch.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A backend operation failed (e.g. reading a tensor back from the device).
    #[error("backend error: {0}")]
    Backend(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
