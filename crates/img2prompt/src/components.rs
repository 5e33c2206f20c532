//! The seams of the method: one small trait per component, so that any one can be swapped (another
//! CLIP, a remote index, a different head) without touching the others.
//!
//! | trait | offline (index build) | online (predict) | shipped implementation |
//! | --- | --- | --- | --- |
//! | [`TextEmbedder`] | CLIP text tower (keys), sentence encoder (targets) | composing prompt text | [`ClipTextEmbedder`], [`SentenceTextEmbedder`] |
//! | [`ImageEmbedder`] | | CLIP image tower (the query) | [`ClipImageEmbedder`] |
//! | [`NeighbourSearch`] | | top-k prompts with their targets | [`IndexSearch`] over a `knn_index::PromptIndex` |
//! | [`EmbeddingHead`] | | CLIP embedding -> sentence space | `crate::head::ClipHead` |
//! | [`Fusion`] | | neighbours + head -> one embedding | `prompt_fusion::FusionConfig` |
//!
//! Every vector batch crosses these seams as a flat row-major `Vec<f32>` (`n * dim`), so an
//! implementation needs no tensor library.

use std::path::Path;

use image::DynamicImage;
use knn_index::{PromptIndex, SearchParams};
use prompt_fusion::FusionConfig;

use crate::error::{Error, Result};
use crate::model_id::ModelId;
pub use clip_encoder::Precision;

/// Maps images to embeddings in the index's key space (CLIP's image tower).
pub trait ImageEmbedder: Send + Sync {
    /// The model's identity, as recorded in index manifests (see [`ModelId`]).
    fn model_id(&self) -> &ModelId;
    /// Width of one embedding.
    fn dim(&self) -> usize;
    /// One embedding per image, in order, flat row-major (`images.len() * dim`).
    fn embed_images(&self, images: &[DynamicImage]) -> Result<Vec<f32>>;
}

/// Maps texts to embeddings: CLIP's text tower (index keys) or a sentence encoder (targets).
pub trait TextEmbedder: Send + Sync {
    /// The model's identity, as recorded in index manifests (see [`ModelId`]).
    fn model_id(&self) -> &ModelId;
    /// Width of one embedding.
    fn dim(&self) -> usize;
    /// One embedding per text, in order, flat row-major (`texts.len() * dim`).
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>>;
}

/// Writes a prompt text for each image directly (a captioner trained on image-prompt pairs),
/// instead of choosing one of the index's prompts.
pub trait ImageCaptioner: Send + Sync {
    /// One text per image, in order.
    fn caption(&self, images: &[DynamicImage]) -> Result<Vec<String>>;
}

/// One neighbour found by a [`NeighbourSearch`]: a corpus prompt, its similarity to the query
/// and its sentence-space target vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The prompt's id in the index.
    pub id: u64,
    /// Cosine similarity of the query to the prompt's key.
    pub score: f32,
    /// The prompt text.
    pub prompt: String,
    /// The prompt's target (sentence) embedding.
    pub target: Vec<f32>,
}

/// Finds the prompts whose keys are nearest a query embedding.
pub trait NeighbourSearch: Send + Sync {
    /// Width of a query / key.
    fn key_dim(&self) -> usize;
    /// Width of a target vector.
    fn target_dim(&self) -> usize;
    /// Number of prompts searchable.
    fn len(&self) -> usize;
    /// Whether there is nothing to search.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Identity of the model that made the keys, when recorded.
    fn key_model(&self) -> Option<&ModelId>;
    /// Identity of the model that made the targets, when recorded.
    fn target_model(&self) -> Option<&ModelId>;
    /// Top-`k` hits per query (queries flat row-major, `key_dim` wide), best first. Fewer than
    /// `k` come back when the corpus is smaller.
    fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>>;
    /// For each target-space query (flat rows, `target_dim` wide; e.g. fused predictions), the
    /// stored prompt whose target is most similar to it by cosine, searched over the whole
    /// corpus rather than the key neighbours; the [`Hit`]'s `score` is that cosine. `None` for a
    /// query with no answer. The default answers `None` for every query (a search that cannot
    /// scan its targets): callers then fall back to picking among the neighbours.
    fn nearest_by_target(&self, queries: &[f32]) -> Result<Vec<Option<Hit>>> {
        let rows = queries.len() / self.target_dim().max(1);
        Ok(vec![None; rows])
    }
}

/// Maps a key-space (CLIP) embedding straight into the target (sentence) space: the paper's
/// "CLIP prediction".
pub trait EmbeddingHead: Send + Sync {
    /// Width of an input embedding.
    fn input_dim(&self) -> usize;
    /// Width of a prediction.
    fn output_dim(&self) -> usize;
    /// One prediction per input row, flat row-major (`n * output_dim`).
    fn predict(&self, embeddings: &[f32]) -> Result<Vec<f32>>;
}

/// What a [`Fusion`] makes of one query's neighbours and head prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct FusionOutput {
    /// The predicted target-space embedding (unit length).
    pub embedding: Vec<f32>,
    /// The normalised aggregation weight each neighbour got, in the order given (0 for those
    /// not used).
    pub weights: Vec<f32>,
}

/// Turns one query's neighbours (and optionally the head's prediction) into one embedding.
pub trait Fusion: Send + Sync {
    /// Fuses `hits` (best first) and the head's prediction, if any.
    fn fuse(&self, hits: &[Hit], head: Option<&[f32]>) -> Result<FusionOutput>;
    /// How many neighbours this fusion wants from the search.
    fn k(&self) -> usize;
}

impl Fusion for FusionConfig {
    fn fuse(&self, hits: &[Hit], head: Option<&[f32]>) -> Result<FusionOutput> {
        let neighbours: Vec<prompt_fusion::Neighbour<'_>> = hits
            .iter()
            .map(|h| prompt_fusion::Neighbour::new(h.score, &h.target))
            .collect();
        let fused = FusionConfig::fuse(self, &neighbours, head)?;
        let mut weights = fused.weights;
        weights.resize(hits.len(), 0.0);
        Ok(FusionOutput {
            embedding: fused.embedding,
            weights,
        })
    }

    fn k(&self) -> usize {
        self.k
    }
}

/// CLIP's image tower as an [`ImageEmbedder`].
pub struct ClipImageEmbedder {
    model: clip_encoder::ClipVisionModel,
    id: ModelId,
}

impl ClipImageEmbedder {
    /// Loads the image tower of the CLIP checkpoint in `dir`.
    pub fn load(dir: impl AsRef<Path>, device: &burn::tensor::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let model = clip_encoder::ClipVisionModel::load(dir, device)?;
        Ok(Self {
            model,
            id: ModelId::of_dir(dir)?,
        })
    }

    /// Wraps a loaded model under the given identity.
    pub fn new(model: clip_encoder::ClipVisionModel, id: ModelId) -> Self {
        Self { model, id }
    }

    /// Runs the tower's dense layers at `precision` (see
    /// [`clip_encoder::ClipVisionModel::with_precision`]).
    ///
    /// # Errors
    /// This CPU or device cannot compute at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        self.model = self.model.with_precision(precision)?;
        Ok(self)
    }

    /// The wrapped model.
    pub fn model(&self) -> &clip_encoder::ClipVisionModel {
        &self.model
    }
}

impl ImageEmbedder for ClipImageEmbedder {
    fn model_id(&self) -> &ModelId {
        &self.id
    }

    fn dim(&self) -> usize {
        self.model.projection_dim()
    }

    fn embed_images(&self, images: &[DynamicImage]) -> Result<Vec<f32>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let (v, _) = clip_encoder::tensor_to_vec(self.model.embed_images(images)?)?;
        Ok(v)
    }
}

/// CLIP's text tower as a [`TextEmbedder`] (index keys).
pub struct ClipTextEmbedder {
    model: clip_encoder::ClipTextModel,
    id: ModelId,
}

impl ClipTextEmbedder {
    /// Loads the text tower of the CLIP checkpoint in `dir`.
    pub fn load(dir: impl AsRef<Path>, device: &burn::tensor::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let model = clip_encoder::ClipTextModel::load(dir, device)?;
        Ok(Self {
            model,
            id: ModelId::of_dir(dir)?,
        })
    }

    /// Wraps a loaded model under the given identity.
    pub fn new(model: clip_encoder::ClipTextModel, id: ModelId) -> Self {
        Self { model, id }
    }

    /// Sets how many texts the model runs at once (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.model = self.model.with_batch_size(batch_size);
        self
    }

    /// Runs the tower's dense layers at `precision` (see
    /// [`clip_encoder::ClipTextModel::with_precision`]).
    ///
    /// # Errors
    /// This CPU or device cannot compute at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        self.model = self.model.with_precision(precision)?;
        Ok(self)
    }

    /// The wrapped model.
    pub fn model(&self) -> &clip_encoder::ClipTextModel {
        &self.model
    }
}

impl TextEmbedder for ClipTextEmbedder {
    fn model_id(&self) -> &ModelId {
        &self.id
    }

    fn dim(&self) -> usize {
        self.model.projection_dim()
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (v, _) = clip_encoder::tensor_to_vec(self.model.embed_texts(texts)?)?;
        Ok(v)
    }
}

/// A sentence-transformers encoder as a [`TextEmbedder`] (index targets).
pub struct SentenceTextEmbedder {
    encoder: sentence_encoder::SentenceEncoder,
    id: ModelId,
}

impl SentenceTextEmbedder {
    /// Loads the sentence-transformers model in `dir`.
    pub fn load(dir: impl AsRef<Path>, device: &burn::tensor::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let encoder = sentence_encoder::SentenceEncoder::load(dir, device)?;
        Ok(Self {
            encoder,
            id: ModelId::of_dir(dir)?,
        })
    }

    /// Wraps a loaded encoder under the given identity.
    pub fn new(encoder: sentence_encoder::SentenceEncoder, id: ModelId) -> Self {
        Self { encoder, id }
    }

    /// Sets how many texts the model runs at once (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.encoder = self.encoder.with_batch_size(batch_size);
        self
    }

    /// Runs the encoder's dense layers at `precision` (see
    /// [`sentence_encoder::SentenceEncoder::with_precision`]).
    ///
    /// # Errors
    /// This CPU or device cannot compute at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        self.encoder = self.encoder.with_precision(precision)?;
        Ok(self)
    }

    /// The wrapped encoder.
    pub fn encoder(&self) -> &sentence_encoder::SentenceEncoder {
        &self.encoder
    }
}

impl TextEmbedder for SentenceTextEmbedder {
    fn model_id(&self) -> &ModelId {
        &self.id
    }

    fn dim(&self) -> usize {
        self.encoder.dim()
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.encoder.encode_flat(texts)?)
    }
}

/// A [`knn_index::PromptIndex`] as a [`NeighbourSearch`], with its search knobs.
pub struct IndexSearch {
    index: PromptIndex,
    params: SearchParams,
    key_model: Option<ModelId>,
    target_model: Option<ModelId>,
}

impl IndexSearch {
    /// Opens (and verifies) the index directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let index = PromptIndex::open(dir)?;
        Ok(Self::new(index))
    }

    /// Wraps an open index, searching with its default knobs.
    pub fn new(index: PromptIndex) -> Self {
        let params = index.keys().default_params();
        let recorded = |s: &str| Some(s).filter(|s| !s.is_empty()).map(ModelId::parse);
        let key_model = recorded(&index.manifest().key_model);
        let target_model = recorded(&index.manifest().target_model);
        Self {
            index,
            params,
            key_model,
            target_model,
        }
    }

    /// Searches with these knobs (nprobe, efSearch) instead.
    pub fn with_params(mut self, params: SearchParams) -> Self {
        self.params = params;
        self
    }

    /// The wrapped index.
    pub fn index(&self) -> &PromptIndex {
        &self.index
    }
}

impl NeighbourSearch for IndexSearch {
    fn key_dim(&self) -> usize {
        self.index.manifest().key_dim
    }

    fn target_dim(&self) -> usize {
        self.index.manifest().target_dim
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn key_model(&self) -> Option<&ModelId> {
        self.key_model.as_ref()
    }

    fn target_model(&self) -> Option<&ModelId> {
        self.target_model.as_ref()
    }

    fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>> {
        if k == 0 {
            return Err(Error::invalid("k", "must be at least 1"));
        }
        let found = self.index.neighbours(queries, k, &self.params)?;
        Ok(found
            .into_iter()
            .map(|hits| {
                hits.into_iter()
                    .map(|n| Hit {
                        id: n.id,
                        score: n.score,
                        prompt: n.prompt.to_string(),
                        target: n.target.to_vec(),
                    })
                    .collect()
            })
            .collect())
    }

    fn nearest_by_target(&self, queries: &[f32]) -> Result<Vec<Option<Hit>>> {
        self.index
            .nearest_by_target(queries)?
            .into_iter()
            .map(|found| {
                found
                    .map(|(id, cosine)| {
                        Ok(Hit {
                            id,
                            score: cosine,
                            prompt: self.index.prompt(id)?.to_string(),
                            target: self.index.target(id)?.to_vec(),
                        })
                    })
                    .transpose()
            })
            .collect()
    }
}

/// Helpers shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Hit;

    /// What a scanning [`NeighbourSearch::nearest_by_target`](super::NeighbourSearch) answers
    /// over a small table: for each query (`dim` wide), the hit whose target has the highest
    /// cosine to it.
    pub(crate) fn nearest_by_cosine(
        table: &[Hit],
        queries: &[f32],
        dim: usize,
    ) -> Vec<Option<Hit>> {
        queries
            .chunks_exact(dim)
            .map(|q| {
                let cos = |h: &Hit| prompt_fusion::cosine(q, &h.target).unwrap_or(-2.0);
                table
                    .iter()
                    .max_by(|a, b| cos(a).total_cmp(&cos(b)))
                    .cloned()
            })
            .collect()
    }
}
