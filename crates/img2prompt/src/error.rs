//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the img2prompt library and CLI. Displayed as one line that
/// names the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--backend` named no known backend.
    #[error("unknown backend {0:?} (expected ndarray, flex, cpu, wgpu or cuda)")]
    UnknownBackend(String),
    /// The backend exists but this build lacks its cargo feature.
    #[error("backend {0:?} is not compiled into this build (enable the cargo feature `{0}`)")]
    BackendNotCompiled(&'static str),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An input file is malformed; `line` is 1-based when known.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Input {
        /// The input file.
        path: PathBuf,
        /// The offending line (1-based), when the problem is on one line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A model name is neither a directory nor a known model.
    #[error("model {name:?}: {message}")]
    Model {
        /// The name or path given.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Putting a model into the cache failed.
    #[error("fetching {name}: {message}")]
    Fetch {
        /// The model name.
        name: String,
        /// Why every source failed.
        message: String,
    },
    /// The sentence encoder failed to load or run.
    #[error(transparent)]
    Sentence(#[from] sentence_encoder::Error),
    /// The CLIP encoder failed to load or run.
    #[error(transparent)]
    Clip(#[from] clip_encoder::Error),
    /// The backend failed to compute or read back a result.
    #[error("backend error: {0}")]
    Backend(String),
    /// The prompt index failed to load, build or search.
    #[error(transparent)]
    Index(#[from] knn_index::Error),
    /// Neighbour aggregation, blending or tuning rejected its input.
    #[error(transparent)]
    Fusion(#[from] prompt_fusion::FusionError),
    /// An argument or option value is unusable; `name` is the option (e.g. `--k`).
    #[error("{name}: {message}")]
    Invalid {
        /// The option or parameter at fault.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// Components that must agree do not (dimensions, model names).
    #[error("{what}: expected {expected}, found {found}")]
    Mismatch {
        /// What disagrees, naming the input (e.g. the index directory).
        what: String,
        /// What the other side requires.
        expected: String,
        /// What was found.
        found: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An unusable option value.
    pub fn invalid(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            name: name.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
