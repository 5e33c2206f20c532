//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a sentence encoder.
///
/// Every variant that concerns a file names it, so a CLI can print the error as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the checkpoint could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A required file of the checkpoint is absent.
    #[error("{path}: missing ({what})")]
    MissingFile {
        /// The file that was expected.
        path: PathBuf,
        /// What the file is for.
        what: &'static str,
    },
    /// A JSON configuration file is malformed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration file is well-formed but describes something this crate cannot run.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The tokenizer file could not be loaded or failed on an input.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer's message.
        message: String,
    },
    /// The weights file is unreadable or does not match the model (names the tensors).
    #[error("{path}: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Which tensors are missing, unexpected or mis-shaped.
        message: String,
    },
    /// The backend failed to run or read back a computation.
    #[error("backend error: {0}")]
    Backend(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
