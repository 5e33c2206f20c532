//! Training the head on image-prompt pairs from files: any [`ImageEmbedder`] embeds the pairs'
//! images (through the [`super::image_cache`]), the prompts' targets come from the index
//! (a prompt stored in it) or the sentence model, then [`train_head_on_pairs`] fits the head.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use knn_index::PromptIndex;
use serde::{Deserialize, Serialize};

use super::image_cache::{CacheState, embed_pair_images};
use super::model::ClipHead;
use super::train::{EpochProgress, HeadReport, HeadTrainConfig, TextMix, train_head_on_pairs};
use crate::components::{ImageEmbedder, TextEmbedder};
use crate::error::{Error, Result};
use crate::eval::EvalPair;
use crate::model_id::ModelId;

/// How [`train_head_from_pairs`] trains.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PairTrainOptions {
    /// The optimiser, architecture, epochs, validation share and seed.
    pub train: HeadTrainConfig,
    /// Mix in the index's own text-key rows with this loss weight per row (`--text-too`);
    /// `None` trains on the pairs alone.
    pub text_weight: Option<f32>,
    /// With text rows: move them into image space by the modality gap measured on the pairs'
    /// images (see [`TextMix::shift_to_images`]).
    pub shift_text: bool,
    /// The image-embedding cache file; `None` encodes every image and writes no cache.
    pub cache: Option<PathBuf>,
}

impl PairTrainOptions {
    /// Pairs alone, no cache, with `train`.
    pub fn new(train: HeadTrainConfig) -> Self {
        PairTrainOptions {
            train,
            text_weight: None,
            shift_text: true,
            cache: None,
        }
    }
}

/// What [`train_head_from_pairs`] did besides training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairTrainReport {
    /// The training run.
    pub head: HeadReport,
    /// Pairs read.
    pub pairs: usize,
    /// Distinct images encoded by the image model.
    pub images_encoded: usize,
    /// Distinct images whose embedding came from the cache.
    pub images_cached: usize,
    /// What became of the cache file.
    pub cache: CacheState,
    /// Prompt targets read from the index (prompts it stores).
    pub targets_from_index: usize,
    /// Prompt targets computed with the sentence model.
    pub targets_embedded: usize,
    /// Text rows mixed in.
    pub text_rows: usize,
    /// Seconds spent embedding images (encoding or reading the cache).
    pub image_seconds: f64,
}

/// A progress event of [`train_head_from_pairs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PairProgress<'a> {
    /// Distinct images encoded so far, of how many need encoding.
    Images {
        /// Encoded so far.
        done: usize,
        /// To encode in all.
        total: usize,
    },
    /// A training epoch finished.
    Epoch(&'a EpochProgress),
}

/// Checks `found` against the identity an index manifest records (nothing to check when it
/// records none).
fn check_recorded(recorded: &str, what: &str, found: &ModelId) -> Result<()> {
    if recorded.is_empty() {
        return Ok(());
    }
    ModelId::parse(recorded).check(what, found)
}

/// Sentence targets of `prompts`: the stored target when the index holds the exact prompt,
/// else `sentence`'s embedding (which must be the index's target model). Returns the targets
/// (row-major) and how many came from the index.
pub fn prompt_targets(
    index: &PromptIndex,
    prompts: &[&str],
    sentence: &dyn TextEmbedder,
) -> Result<(Vec<f32>, usize)> {
    let payload = index.payload();
    let dim = payload.target_dim();
    let wanted: std::collections::HashSet<&str> = prompts.iter().copied().collect();
    let mut stored: HashMap<&str, usize> = HashMap::new();
    for row in 0..payload.len() {
        let p = payload.prompt(row)?;
        if wanted.contains(p) {
            stored.entry(p).or_insert(row);
        }
    }
    let missing: Vec<&str> = prompts
        .iter()
        .copied()
        .filter(|p| !stored.contains_key(p))
        .collect();
    let embedded = if missing.is_empty() {
        Vec::new()
    } else {
        check_recorded(
            &index.manifest().target_model,
            &format!(
                "{}: the index's sentence model (targets)",
                index.dir().display()
            ),
            sentence.model_id(),
        )?;
        let rows = sentence.embed_texts(&missing)?;
        if rows.len() != missing.len() * dim {
            return Err(Error::Mismatch {
                what: format!("sentence embeddings of {}", sentence.model_id()),
                expected: format!("{} rows of {dim} (the index's target width)", missing.len()),
                found: format!("{} floats", rows.len()),
            });
        }
        rows
    };
    let mut targets = Vec::with_capacity(prompts.len() * dim);
    let mut next = embedded.chunks_exact(dim.max(1));
    for p in prompts {
        match stored.get(p) {
            Some(&row) => targets.extend_from_slice(&payload.target(row)?),
            None => targets.extend_from_slice(next.next().ok_or_else(|| {
                Error::Backend("prompt targets: fewer embeddings than prompts".into())
            })?),
        }
    }
    Ok((targets, prompts.len() - missing.len()))
}

/// Trains the head of `index` on image-prompt `pairs` (read by [`crate::eval::read_pairs`]
/// from `pairs_file`, which errors name): `images` embeds the pairs' images (it must be the
/// index's CLIP model: its identity is checked against the index's key model), with the
/// cache of `options.cache`; the prompts' targets come from the index or `sentence`;
/// optionally the index's own text rows are mixed in. `progress` sees the image encoding and
/// every epoch. The head records its training data.
#[allow(clippy::too_many_arguments)]
pub fn train_head_from_pairs(
    images: &dyn ImageEmbedder,
    sentence: &dyn TextEmbedder,
    index: &PromptIndex,
    pairs: &[EvalPair],
    pairs_file: &Path,
    options: &PairTrainOptions,
    device: &burn::tensor::Device,
    progress: &mut dyn FnMut(PairProgress<'_>),
) -> Result<(ClipHead, PairTrainReport)> {
    options.train.validate()?;
    if pairs.is_empty() {
        return Err(Error::Input {
            path: pairs_file.to_owned(),
            line: None,
            message: "no image-prompt pairs".to_owned(),
        });
    }
    check_recorded(
        &index.manifest().key_model,
        &format!("{}: the index's CLIP model (keys)", index.dir().display()),
        images.model_id(),
    )?;
    let t = Instant::now();
    let embedded = embed_pair_images(
        images,
        pairs,
        pairs_file,
        options.cache.as_deref(),
        &mut |done, total| progress(PairProgress::Images { done, total }),
    )?;
    let image_seconds = t.elapsed().as_secs_f64();
    let prompts: Vec<&str> = pairs.iter().map(|p| p.prompt.as_str()).collect();
    let (targets, from_index) = prompt_targets(index, &prompts, sentence)?;
    let text_keys;
    let text_targets;
    let text = match options.text_weight {
        Some(weight) => {
            let n = index.len();
            text_keys = index.keys_in_rows(0, n)?.1;
            text_targets = index.payload().targets();
            Some(TextMix {
                keys: &text_keys,
                targets: &text_targets,
                n,
                weight,
                shift_to_images: options.shift_text,
            })
        }
        None => None,
    };
    let text_rows = text.map_or(0, |t| t.n);
    let (head, report) = train_head_on_pairs(
        &embedded.embeddings,
        &targets,
        pairs.len(),
        text,
        &options.train,
        device,
        &mut |e| progress(PairProgress::Epoch(e)),
    )?;
    Ok((
        head,
        PairTrainReport {
            head: report,
            pairs: pairs.len(),
            images_encoded: embedded.encoded,
            images_cached: embedded.reused,
            cache: embedded.cache,
            targets_from_index: from_index,
            targets_embedded: pairs.len() - from_index,
            text_rows,
            image_seconds,
        },
    ))
}
