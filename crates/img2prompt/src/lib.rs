//! **img2prompt**: the prompt that likely produced an image, after "CLIP Model for Images to
//! Textual Prompts Based on Top-k Neighbors" (arXiv 2401.09763).
//!
//! This crate composes the workspace's libraries ([`sentence_encoder`], `clip-encoder`,
//! `knn-index`, `prompt-fusion`) and holds the `img2prompt` command line. Modules:
//!
//! - [`backend`]: the one mapping from a backend name to a Burn `Device`.
//! - [`cache`]: the model cache and `models fetch`.
//! - [`texts`]: reading `.txt` / `.jsonl` text inputs.
//! - [`npy`]: writing embeddings as `.npy`, atomically.
//! - [`cli`]: the command line.

pub mod backend;
pub mod cache;
pub mod cli;
pub mod error;
pub mod npy;
pub mod texts;

pub use backend::Backend;
pub use cache::{KNOWN_MODELS, KnownModel, ModelCache, ModelKind};
pub use clip_encoder;
pub use error::{Error, Result};
pub use sentence_encoder;
