//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a CLIP checkpoint, tokenizing text or
/// decoding and preprocessing images.
///
/// Every variant that concerns a file names it, and every weight error names the tensor.
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
    /// A JSON file (config.json, preprocessor_config.json) is not valid or not the expected shape.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The configuration is readable but describes something this crate cannot run.
    #[error("unsupported configuration in {path}: {message}")]
    Config {
        /// The configuration file (or a description of where the configuration came from).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The safetensors file could not be opened or parsed (corrupt, truncated, not safetensors).
    #[error("cannot read weights from {path}: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// The store's message.
        message: String,
    },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("tensor `{tensor}` missing from {path}")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The HF name of the missing tensor.
        tensor: String,
    },
    /// A tensor of the checkpoint could not be applied (shape or dtype mismatch, bad data),
    /// or belongs to the model but is not used by the configuration (e.g. an extra layer).
    #[error("tensor `{tensor}` in {path}: {message}")]
    BadTensor {
        /// The weights file.
        path: PathBuf,
        /// The HF name of the tensor.
        tensor: String,
        /// What is wrong with it.
        message: String,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer error{}: {message}", path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    Tokenizer {
        /// The tokenizer.json file, when one was used.
        path: Option<PathBuf>,
        /// The tokenizers crate's message.
        message: String,
    },
    /// An image could not be decoded or is unusable (truncated, not an image, 0x0, too large).
    #[error("cannot use image {name}: {message}")]
    Image {
        /// The file name, or `image #i` for in-memory images.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A backend operation failed (e.g. reading a tensor back from the device).
    #[error("backend error: {0}")]
    Backend(String),
    /// The caller passed an argument that cannot be used (e.g. an empty batch dimension mismatch).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Result alias with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
