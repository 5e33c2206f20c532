//! The CLIP -> sentence-space head (the paper's "CLIP prediction"): model, training, storage.
//!
//! The head maps a CLIP embedding (the index's key space) straight to the sentence embedding
//! of the prompt (the index's target space), loss `1 - cosine`. Two ways to train it:
//!
//! - on the index corpus itself (no images needed): input = the CLIP *text* embedding of each
//!   corpus prompt (the index keys, read back from FAISS), target = the prompt's sentence
//!   embedding (the index targets). At predict time the head is applied to CLIP *image*
//!   embeddings, which sit elsewhere on the sphere (the modality gap): the caller sets
//!   [`HeadConfig::input_mean`] to shift them.
//! - on image-prompt pairs (`train_head_on_pairs`, `train_head_from_pairs`): input = the CLIP
//!   *image* embedding, target = the prompt's sentence embedding, optionally with the corpus's
//!   text rows mixed in, weighted. No shift is needed at predict time.
//!
//! Every trained head records what it was trained on ([`HeadTraining`]), stored with it.
//!
//! - [`model`]: [`ClipHead`] (a Burn module, `Linear` or `Linear -> GELU -> Linear`) and its
//!   [`HeadConfig`]; it implements [`crate::components::EmbeddingHead`].
//! - `train` (cargo feature `train`): `train_head` / `train_head_on_index` /
//!   `train_head_on_pairs` (AdamW on `device.autodiff()`, seeded, held-out validation,
//!   best-validation weights kept, optional early stopping) and the `HeadReport`.
//! - `pairs` (feature `train`): `train_head_from_pairs`, from pairs files through any
//!   [`crate::components::ImageEmbedder`].
//! - [`image_cache`]: the pairs' image embeddings cached beside the index, checksummed.
//! - [`store`]: [`ClipHead::save`] / [`ClipHead::load`]: `head.safetensors` in the index
//!   directory, the [`HeadConfig`] and [`HeadTraining`] as JSON in the safetensors metadata.

pub mod image_cache;
pub mod model;
#[cfg(feature = "train")]
pub mod pairs;
pub mod store;
#[cfg(feature = "train")]
pub mod train;

pub use image_cache::{
    CacheState, IMAGE_CACHE_FILE, PairImageEmbeddings, embed_pair_images, image_cache_path,
};
pub use model::{ClipHead, HeadConfig, HeadKind, HeadTraining, TrainingSource};
#[cfg(feature = "train")]
pub use pairs::{
    PairProgress, PairTrainOptions, PairTrainReport, prompt_targets, train_head_from_pairs,
};
pub use store::{CONFIG_METADATA_KEY, HEAD_FILE, TRAINING_METADATA_KEY};
#[cfg(feature = "train")]
pub use train::{
    EpochProgress, HeadReport, HeadTrainConfig, TextMix, mean_unit_rows, train_head,
    train_head_on_index, train_head_on_index_with_progress, train_head_on_pairs,
    train_head_with_progress,
};
