//! The CLIP -> sentence-space head (the paper's "CLIP prediction"): model, training, storage.
//!
//! The head maps a CLIP embedding (the index's key space) straight to the sentence embedding
//! of the prompt (the index's target space). It is trained on the index corpus itself: input =
//! the CLIP *text* embedding of each corpus prompt (the index keys, read back from FAISS),
//! target = the prompt's sentence embedding (the index targets), loss = `1 - cosine`. No images
//! are needed; at predict time the head is applied to CLIP *image* embeddings.
//!
//! - [`model`]: [`ClipHead`] (a Burn module, `Linear` or `Linear -> GELU -> Linear`) and its
//!   [`HeadConfig`]; it implements [`crate::components::EmbeddingHead`].
//! - `train` (cargo feature `train`): `train_head` / `train_head_on_index` (AdamW on
//!   `device.autodiff()`, seeded, held-out validation, best-validation weights kept) and the
//!   `HeadReport`.
//! - [`store`]: [`ClipHead::save`] / [`ClipHead::load`]: `head.safetensors` in the index
//!   directory, the [`HeadConfig`] as JSON in the safetensors metadata.

pub mod model;
pub mod store;
#[cfg(feature = "train")]
pub mod train;

pub use model::{ClipHead, HeadConfig, HeadKind};
pub use store::{CONFIG_METADATA_KEY, HEAD_FILE};
#[cfg(feature = "train")]
pub use train::{
    EpochProgress, HeadReport, HeadTrainConfig, train_head, train_head_on_index,
    train_head_on_index_with_progress, train_head_with_progress,
};
