//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the img2prompt library. Displayed as one line that names the
/// input at fault (a file, a parameter, a model).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A backend name that is not one of ndarray, flex, cpu, wgpu, cuda.
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
    /// A finished index is already at the output of a build that may not overwrite it.
    #[error("{}: an index already exists here (overwrite it to replace it)", path.display())]
    OutputExists {
        /// The output index directory.
        path: PathBuf,
    },
    /// An interrupted build cannot be resumed (other models, spec or prompts, or a damaged
    /// staging directory); a fresh build discards it.
    #[error("{}: cannot resume the interrupted build: {reason}", path.display())]
    Resume {
        /// The staging directory (or its state file).
        path: PathBuf,
        /// Why it does not fit.
        reason: String,
    },
    /// A model name or checkpoint is unusable (not found, the wrong kind of model).
    #[error("model {name:?}: {message}")]
    Model {
        /// The name or path given.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A model an index was built with could not be found (see
    /// [`crate::IndexModels::resolve`]).
    #[error("{}: {} it was built with ({recorded}) is not found: {reason}", index.display(), which.describe())]
    IndexModelNotFound {
        /// The index directory.
        index: PathBuf,
        /// Which of its models.
        which: crate::index_models::IndexModel,
        /// The identity its manifest records.
        recorded: String,
        /// Why the lookup failed.
        reason: String,
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
    /// The image captioner failed to load or run.
    #[error(transparent)]
    Captioner(#[from] image_captioner::Error),
    /// The backend failed to compute or read back a result.
    #[error("backend error: {0}")]
    Backend(String),
    /// The prompt index failed to load, build or search.
    #[error(transparent)]
    Index(#[from] knn_index::Error),
    /// Neighbour aggregation, blending or tuning rejected its input.
    #[error(transparent)]
    Fusion(#[from] prompt_fusion::FusionError),
    /// A parameter value is unusable; `name` is the parameter (e.g. `k`, `batch_size`).
    #[error("{name}: {message}")]
    Invalid {
        /// The parameter at fault.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// Components that must agree do not (dimensions, model identities, row counts).
    #[error("{what}: expected {expected}, found {found}")]
    Mismatch {
        /// What disagrees, naming the input (e.g. the index directory).
        what: String,
        /// What the other side requires.
        expected: String,
        /// What was found.
        found: String,
    },
    /// An error of a component supplied by the caller (a custom embedder, search or head).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An unusable parameter value.
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

    /// A malformed input file, at `line` (1-based) when known.
    pub fn input(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Error::Input {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// Wraps the error of a caller-supplied component.
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Other(error.into())
    }
}
