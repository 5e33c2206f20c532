//! **img2prompt**: the prompt that likely produced an image, after "CLIP Model for Images to
//! Textual Prompts Based on Top-k Neighbors" (arXiv 2401.09763).
//!
//! The library composes the workspace's crates ([`sentence_encoder`], [`clip_encoder`],
//! [`knn_index`], [`prompt_fusion`]) into the method. It has no side effects of its own: it
//! prints nothing, downloads nothing and reads no environment unless a call asks
//! ([`ModelCache::from_env`], [`ModelCache::fetch`]). Modules:
//!
//! - [`components`]: the traits at the seams (image/text embedders, neighbour search, head,
//!   fusion) and their shipped implementations; [`model_id`]: the typed model identity.
//! - [`corpus`], [`builder`]: the offline stage ([`IndexBuilder`]).
//! - [`head`]: the CLIP -> sentence head (storage; training with feature `train`).
//! - [`predictor`], [`compose`], [`index_models`]: the online stage ([`Predictor`]).
//! - [`eval`]: the paper's ablation table; [`tuned_fusion`]: the tuned setting kept with an
//!   index.
//! - [`backend`]: backend names to Burn devices; [`checkpoint`]: what a checkpoint holds.
//! - `cache` (feature `cache`): the model cache and fetching into it (`hub` for the hub).
//!
//! Cargo features: one CPU backend by default (`flex`; also `ndarray`, and opt-in `wgpu`,
//! `cpu`, `cuda`), `train` (Burn autodiff + AdamW, head training), `csv` and `parquet`
//! (corpus and pairs readers), `cache` and `hub`.
//!
//! ```no_run
#![doc = include_str!("../../../tests/downstream/src/main.rs")]
//! ```

mod atomic;
pub mod backend;
pub mod builder;
#[cfg(feature = "cache")]
pub mod cache;
pub mod caption;
pub mod checkpoint;
pub mod components;
pub mod compose;
pub mod corpus;
pub mod error;
pub mod eval;
pub mod head;
pub mod index_models;
pub mod model_id;
pub mod predictor;
pub mod shard;
pub mod tuned_fusion;

pub use backend::Backend;
pub use builder::{BuildObserver, BuildProgress, BuildReport, IndexBuilder};
#[cfg(feature = "cache")]
pub use cache::{Fetched, KNOWN_MODELS, KnownModel, ModelCache};
pub use checkpoint::{ModelKind, model_kind};
pub use components::Precision;
pub use components::{
    ClipImageEmbedder, ClipTextEmbedder, EmbeddingHead, Fusion, FusionOutput, Hit, ImageCaptioner,
    ImageEmbedder, IndexSearch, NeighbourSearch, SentenceTextEmbedder, TextEmbedder,
};
pub use error::{Error, Result};
pub use index_models::{IndexModels, ResolveModel};
pub use model_id::ModelId;
pub use predictor::{OpenOptions, PredictedNeighbour, Prediction, Predictor, PredictorBuilder};

// Crates whose types appear in this crate's signatures.
pub use burn;
pub use clip_encoder;
pub use image;
pub use image_captioner;
pub use knn_index;
pub use prompt_fusion;
pub use sentence_encoder;

/// Decodes an image file the one way every part of the workspace does (format from the
/// content, pixel limit before allocation, truncated files refused): a bad image gets the same
/// message from every command and service. See [`clip_encoder::decode_image_file`].
pub fn decode_image_file(path: impl AsRef<std::path::Path>) -> Result<image::DynamicImage> {
    Ok(clip_encoder::decode_image_file(
        path,
        clip_encoder::DEFAULT_MAX_PIXELS,
    )?)
}

/// Decodes an encoded image held in memory (an upload), as [`decode_image_file`] does; `name`
/// is used in messages.
pub fn decode_image_bytes(bytes: &[u8], name: &str) -> Result<image::DynamicImage> {
    Ok(clip_encoder::decode_image_bytes(
        bytes,
        name,
        clip_encoder::DEFAULT_MAX_PIXELS,
    )?)
}
