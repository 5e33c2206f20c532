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
//! - [`components`]: the traits at the seams (image/text embedders, neighbour search, head,
//!   fusion) and their shipped implementations.
//! - [`model_id`]: model identities recorded in index manifests.
//! - [`corpus`], [`builder`]: the offline stage (`IndexBuilder`).
//! - [`head`]: the CLIP -> sentence head (training, storage).
//! - [`predictor`], [`compose`], [`index_models`]: the online stage (`Predictor`).
//! - [`eval`]: the paper's ablation table; [`demo`], [`world`], [`shipped`]: the offline demo.
//! - [`atomic`]: atomic file writes.
//! - [`cli`]: the command line.

pub mod atomic;
pub mod backend;
pub mod builder;
pub mod cache;
pub mod cli;
pub mod components;
pub mod compose;
pub mod corpus;
pub mod demo;
pub mod error;
pub mod eval;
pub mod head;
pub mod index_models;
pub mod model_id;
pub mod npy;
pub mod predictor;
pub mod shipped;
pub mod texts;
pub mod world;

pub use backend::Backend;
pub use cache::{KNOWN_MODELS, KnownModel, ModelCache, ModelKind};
pub use clip_encoder;
pub use components::{
    ClipImageEmbedder, ClipTextEmbedder, EmbeddingHead, Fusion, FusionOutput, Hit, ImageEmbedder,
    IndexSearch, NeighbourSearch, SentenceTextEmbedder, TextEmbedder,
};
pub use error::{Error, Result};
pub use knn_index;
pub use model_id::ModelId;
pub use predictor::{OpenOptions, PredictedNeighbour, Prediction, Predictor, PredictorBuilder};
pub use prompt_fusion;
pub use sentence_encoder;
