//! Training the head: AdamW on `device.autodiff()`, loss `1 - cosine`, seeded shuffles, a
//! held-out validation split and the best-validation weights kept.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use knn_index::PromptIndex;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::model::{ClipHead, HeadConfig, HeadKind, HeadTraining, TrainingSource};
use crate::error::{Error, Result};

impl ClipHead {
    /// A freshly initialised head of shape `config` on `device`: weights drawn from
    /// `U(-1/√fan_in, 1/√fan_in)` (PyTorch's and Burn's default bound) by a ChaCha8 stream seeded
    /// with `seed`, so the same seed gives the same weights on any backend.
    pub fn init(config: &HeadConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self::with_layers(config, device, |d_in, d_out| {
            let bound = 1.0 / (d_in as f32).sqrt();
            let mut draw = |n: usize| -> Vec<f32> {
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            };
            let weight = draw(d_in * d_out);
            let bias = draw(d_out);
            super::model::linear(weight, bias, device)
        })
    }
}

/// How to train a head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeadTrainConfig {
    /// Linear or MLP.
    pub kind: HeadKind,
    /// Passes over the training rows (at least 1).
    pub epochs: usize,
    /// Rows per optimiser step (at least 1).
    pub batch_size: usize,
    /// AdamW learning rate (positive).
    pub learning_rate: f64,
    /// AdamW decoupled weight decay (non-negative).
    pub weight_decay: f32,
    /// Share of the rows held out for validation, in `[0, 1)`; at least one row is held out
    /// when positive. With 0 nothing is held out, the report has no validation cosines and the
    /// last epoch's weights are kept.
    pub validation_fraction: f64,
    /// Seeds the weight initialisation, the validation split and the shuffles (ChaCha8), and
    /// the backend (`Device::seed`).
    pub seed: u64,
    /// Early stopping: end the run after this many epochs without a better validation cosine
    /// (at least 1); `None` runs every epoch. Either way the best epoch's weights are kept.
    #[serde(default)]
    pub patience: Option<usize>,
}

impl Default for HeadTrainConfig {
    fn default() -> Self {
        HeadTrainConfig {
            kind: HeadKind::Linear,
            epochs: 10,
            batch_size: 256,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            validation_fraction: 0.05,
            seed: 0,
            patience: None,
        }
    }
}

impl HeadTrainConfig {
    /// Checks every field (errors name the field).
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::invalid(
                "learning_rate",
                format!("must be a positive number (got {})", self.learning_rate),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid(
                "weight_decay",
                format!("must be a non-negative number (got {})", self.weight_decay),
            ));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(Error::invalid(
                "validation_fraction",
                format!("must be in [0, 1) (got {})", self.validation_fraction),
            ));
        }
        if let HeadKind::Mlp { hidden: 0 } = self.kind {
            return Err(Error::invalid("hidden", "must be at least 1"));
        }
        if self.patience == Some(0) {
            return Err(Error::invalid("patience", "must be at least 1"));
        }
        Ok(())
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadReport {
    /// Mean training loss (`1 - cosine`) of each epoch, over its batches.
    pub train_loss: Vec<f64>,
    /// Mean cosine of the (normalised) predictions to the validation targets after each epoch;
    /// empty when nothing was held out.
    pub validation_cosine: Vec<f64>,
    /// The epoch (1-based) whose weights were kept: the best validation cosine, or the last
    /// epoch without validation.
    pub best_epoch: usize,
    /// Rows trained on.
    pub n_train: usize,
    /// Rows held out for validation.
    pub n_val: usize,
    /// Wall-clock seconds of the whole run (including validation).
    pub seconds: f64,
}

impl HeadReport {
    /// The validation cosine of the kept weights, if there was a validation split.
    pub fn best_validation_cosine(&self) -> Option<f64> {
        self.best_epoch
            .checked_sub(1)
            .and_then(|i| self.validation_cosine.get(i))
            .copied()
    }
}

/// Rows of `data` (width `dim`) at `rows`, gathered into one flat buffer.
fn gather(data: &[f32], dim: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * dim);
    for &r in rows {
        out.extend_from_slice(&data[r * dim..(r + 1) * dim]);
    }
    out
}

/// Mean cosine of `head`'s predictions for `rows` to their (unit) targets.
fn mean_cosine(
    head: &ClipHead,
    keys: &[f32],
    targets: &[f32],
    in_dim: usize,
    out_dim: usize,
    rows: &[usize],
) -> Result<f64> {
    let preds = head.predict_rows(&gather(keys, in_dim, rows))?;
    let truth = gather(targets, out_dim, rows);
    let total: f64 = preds
        .chunks_exact(out_dim)
        .zip(truth.chunks_exact(out_dim))
        .map(|(p, t)| {
            p.iter()
                .zip(t)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum::<f64>()
        })
        .sum();
    Ok(total / rows.len().max(1) as f64)
}

/// Trains a head from `n` rows of `keys` (CLIP embeddings, row-major) to `targets` (sentence
/// embeddings, row-major; normalised here), minimising `1 - cosine(head(key), target)`.
///
/// The rows are shuffled once by `config.seed` and the first `validation_fraction` of them held
/// out; each epoch visits the others in a fresh seeded order, in batches of `batch_size`, with
/// AdamW on `device.autodiff()`. After every epoch the validation cosine is measured and the
/// best epoch's weights are the ones returned (training stops early after `patience` epochs
/// without a better one, when set). Same data, config and device: same weights.
/// The returned head predicts on `device` (without autodiff).
pub fn train_head(
    keys: &[f32],
    targets: &[f32],
    n: usize,
    config: &HeadTrainConfig,
    device: &Device,
) -> Result<(ClipHead, HeadReport)> {
    train_head_with_progress(keys, targets, n, config, device, &mut |_| {})
}

/// One finished epoch, as passed to the `progress` callback of [`train_head_with_progress`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochProgress {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Of how many.
    pub epochs: usize,
    /// Its mean training loss.
    pub train_loss: f64,
    /// The validation cosine after it, when rows are held out.
    pub validation_cosine: Option<f64>,
}

/// Widths of `n` rows of keys and targets, checked: equal row counts, finite keys.
fn row_widths(what: &str, keys: &[f32], targets: &[f32], n: usize) -> Result<(usize, usize)> {
    if n == 0 {
        return Err(Error::invalid(
            format!("{what} data"),
            "no rows to train on",
        ));
    }
    if keys.is_empty() || !keys.len().is_multiple_of(n) {
        return Err(Error::Mismatch {
            what: format!("{what} keys"),
            expected: format!("{n} rows of equal width"),
            found: format!("{} floats", keys.len()),
        });
    }
    if targets.is_empty() || !targets.len().is_multiple_of(n) {
        return Err(Error::Mismatch {
            what: format!("{what} targets"),
            expected: format!("{n} rows of equal width"),
            found: format!("{} floats", targets.len()),
        });
    }
    let (in_dim, out_dim) = (keys.len() / n, targets.len() / n);
    if let Some(row) = keys
        .chunks_exact(in_dim)
        .position(|r| r.iter().any(|x| !x.is_finite()))
    {
        return Err(Error::invalid(
            format!("{what} keys"),
            format!("row {row} contains NaN or an infinity"),
        ));
    }
    Ok((in_dim, out_dim))
}

/// `targets` with every row L2-normalised (a non-finite or zero row is an error naming `what`).
fn unit_rows(what: &str, targets: &[f32], out_dim: usize) -> Result<Vec<f32>> {
    let mut unit = targets.to_vec();
    for (row, t) in unit.chunks_exact_mut(out_dim).enumerate() {
        if !knn_index::l2_normalize(t) {
            return Err(Error::invalid(
                format!("{what} targets"),
                format!("row {row} contains NaN or an infinity"),
            ));
        }
    }
    Ok(unit)
}

/// Rows held out of `n` for `fraction` (at least one when positive, never all).
fn held_out(n: usize, fraction: f64) -> usize {
    if fraction > 0.0 && n >= 2 {
        ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
    } else {
        0
    }
}

/// [`train_head`], calling `progress` after every epoch (e.g. to print it).
pub fn train_head_with_progress(
    keys: &[f32],
    targets: &[f32],
    n: usize,
    config: &HeadTrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(&EpochProgress),
) -> Result<(ClipHead, HeadReport)> {
    let start = Instant::now();
    config.validate()?;
    let (in_dim, out_dim) = row_widths("head training", keys, targets, n)?;
    let unit_targets = unit_rows("head training", targets, out_dim)?;

    // Validation split, then per-epoch shuffles, all from one seeded stream.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let n_val = held_out(n, config.validation_fraction);
    let (val_rows, train_rows) = order.split_at(n_val);
    let rows = Rows {
        keys,
        targets: &unit_targets,
        weights: None,
        in_dim,
        out_dim,
    };
    fit(
        &rows,
        train_rows.to_vec(),
        val_rows,
        config,
        device,
        &mut rng,
        start,
        progress,
    )
}

/// Training rows: keys, unit targets, optional per-row loss weights.
struct Rows<'a> {
    keys: &'a [f32],
    targets: &'a [f32],
    weights: Option<&'a [f32]>,
    in_dim: usize,
    out_dim: usize,
}

/// The training loop shared by every entry point: AdamW over `train_rows` (reshuffled each
/// epoch by `rng`), validation on `val_rows`, best weights kept, early stop on `patience`.
#[allow(clippy::too_many_arguments)]
fn fit(
    rows: &Rows<'_>,
    mut train_rows: Vec<usize>,
    val_rows: &[usize],
    config: &HeadTrainConfig,
    device: &Device,
    rng: &mut ChaCha8Rng,
    start: Instant,
    progress: &mut dyn FnMut(&EpochProgress),
) -> Result<(ClipHead, HeadReport)> {
    let (in_dim, out_dim) = (rows.in_dim, rows.out_dim);
    let n_val = val_rows.len();
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    plain.seed(config.seed);
    ad.seed(config.seed);
    let head_config = HeadConfig::new(config.kind, in_dim, out_dim);
    let mut model = ClipHead::init(&head_config, config.seed, &ad)?;
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .init();

    let mut report = HeadReport {
        train_loss: Vec::with_capacity(config.epochs),
        validation_cosine: Vec::with_capacity(config.epochs),
        best_epoch: 0,
        n_train: train_rows.len(),
        n_val,
        seconds: 0.0,
    };
    let total_weight: f64 = match rows.weights {
        Some(w) => train_rows.iter().map(|&r| f64::from(w[r])).sum(),
        None => train_rows.len() as f64,
    };
    let mut best: Option<(f64, ClipHead)> = None;
    for epoch in 1..=config.epochs {
        train_rows.shuffle(rng);
        let mut loss_sum = 0f64;
        for batch in train_rows.chunks(config.batch_size) {
            let b = batch.len();
            let x = Tensor::<2>::from_data(
                TensorData::new(gather(rows.keys, in_dim, batch), [b, in_dim]),
                &ad,
            );
            let y = Tensor::<2>::from_data(
                TensorData::new(gather(rows.targets, out_dim, batch), [b, out_dim]),
                &ad,
            );
            let pred = model.forward(x);
            let norm = pred.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
            let cosine = (pred / norm * y).sum_dim(1);
            let (loss, batch_weight) = match rows.weights {
                None => (cosine.mean().neg().add_scalar(1.0), b as f64),
                Some(all) => {
                    // Weighted mean of 1 - cosine over the batch.
                    let w: Vec<f32> = batch.iter().map(|&r| all[r]).collect();
                    let sum: f64 = w.iter().map(|&x| f64::from(x)).sum();
                    let w = Tensor::<2>::from_data(TensorData::new(w, [b, 1]), &ad);
                    let loss = (w * cosine.neg().add_scalar(1.0))
                        .sum()
                        .div_scalar(sum.max(f64::MIN_POSITIVE) as f32);
                    (loss, sum)
                }
            };
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let value: f32 = loss
                .try_into_scalar()
                .map_err(|e| Error::Backend(format!("reading back the training loss: {e:?}")))?;
            loss_sum += f64::from(value) * batch_weight;
            model = optim.step(config.learning_rate, model, grads);
        }
        report.train_loss.push(loss_sum / total_weight.max(1e-12));
        let snapshot = model.valid().with_device(&plain);
        if n_val > 0 {
            let cos = mean_cosine(
                &snapshot,
                rows.keys,
                rows.targets,
                in_dim,
                out_dim,
                val_rows,
            )?;
            report.validation_cosine.push(cos);
            if best.as_ref().is_none_or(|(b, _)| cos > *b) {
                best = Some((cos, snapshot));
                report.best_epoch = epoch;
            }
        } else {
            best = Some((f64::NAN, snapshot));
            report.best_epoch = epoch;
        }
        progress(&EpochProgress {
            epoch,
            epochs: config.epochs,
            train_loss: report.train_loss[epoch - 1],
            validation_cosine: report.validation_cosine.last().copied(),
        });
        if let Some(patience) = config.patience
            && n_val > 0
            && epoch - report.best_epoch >= patience
        {
            break;
        }
    }
    let (_, head) = best.ok_or_else(|| Error::invalid("epochs", "must be at least 1"))?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok((head, report))
}

impl HeadReport {
    /// The record stored with a head trained this way: `source`, the rows trained on, the
    /// validation outcome.
    pub fn training_record(
        &self,
        source: TrainingSource,
        pair_rows: usize,
        text_rows: usize,
        text_weight: Option<f32>,
    ) -> HeadTraining {
        let mut t = HeadTraining::new(source, pair_rows, text_rows);
        t.text_weight = text_weight;
        t.validation_rows = self.n_val;
        t.validation_cosine = self.best_validation_cosine();
        t.best_epoch = self.best_epoch;
        t.epochs_run = self.train_loss.len();
        t
    }
}

/// Trains a head on an index's own corpus: inputs = its keys (the CLIP text embeddings, read
/// back from FAISS: the L2-normalised keys, exact for `exact`/`hnsw`/`ivf`, approximate for
/// quantised specs such as `ivf-pq`), targets = its target vectors (same row order). The head
/// records its training data ([`TrainingSource::Text`]).
pub fn train_head_on_index(
    index: &PromptIndex,
    config: &HeadTrainConfig,
    device: &Device,
) -> Result<(ClipHead, HeadReport)> {
    train_head_on_index_with_progress(index, config, device, &mut |_| {})
}

/// [`train_head_on_index`], calling `progress` after every epoch.
pub fn train_head_on_index_with_progress(
    index: &PromptIndex,
    config: &HeadTrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(&EpochProgress),
) -> Result<(ClipHead, HeadReport)> {
    let n = index.len();
    if n == 0 {
        return Err(Error::invalid(
            index.dir().display().to_string(),
            "the index is empty: nothing to train the head on",
        ));
    }
    let (_, keys) = index.keys_in_rows(0, n)?;
    let targets = index.payload().targets();
    let (head, report) = train_head_with_progress(&keys, &targets, n, config, device, progress)?;
    let record = report.training_record(TrainingSource::Text, 0, report.n_train, None);
    Ok((head.with_training(Some(record)), report))
}

/// Corpus text-embedding rows mixed into pair training (`head train --text-too`).
#[derive(Debug, Clone, Copy)]
pub struct TextMix<'a> {
    /// CLIP text embeddings (e.g. the index keys), row-major.
    pub keys: &'a [f32],
    /// Their sentence targets, row-major.
    pub targets: &'a [f32],
    /// Rows.
    pub n: usize,
    /// Loss weight of a text row relative to an image pair (positive).
    pub weight: f32,
    /// Move the text rows into image space before training: add mean(unit image embedding) -
    /// mean(unit text key) to each unit text key (CLIP's modality gap, measured on the pairs'
    /// own images), so that text rows and image rows describe the same inputs.
    pub shift_to_images: bool,
}

/// Trains a head on image-prompt pairs: inputs = the `n` pairs' CLIP *image* embeddings,
/// targets = their prompts' sentence embeddings; optionally with `text` rows mixed in, weighted.
///
/// The validation hold-out (`config.validation_fraction`, seeded) is taken from the *pairs*
/// only, so the best epoch is the one that predicts held-out images best; text rows are all
/// trained on. The head needs no modality-gap shift at predict time (it has seen images) and
/// carries none. The head records its data ([`TrainingSource::Pairs`] or
/// [`TrainingSource::PairsAndText`] with the counts). Same data, config and device: same
/// weights.
pub fn train_head_on_pairs(
    image_embeddings: &[f32],
    targets: &[f32],
    n: usize,
    text: Option<TextMix<'_>>,
    config: &HeadTrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(&EpochProgress),
) -> Result<(ClipHead, HeadReport)> {
    let start = Instant::now();
    config.validate()?;
    let (in_dim, out_dim) = row_widths("pair training", image_embeddings, targets, n)?;
    let mut keys = image_embeddings.to_vec();
    let mut unit_targets = unit_rows("pair training", targets, out_dim)?;
    let mut weights = None;
    let mut n_text = 0;
    if let Some(mix) = text {
        if !(mix.weight.is_finite() && mix.weight > 0.0) {
            return Err(Error::invalid(
                "text weight",
                format!("must be a positive number (got {})", mix.weight),
            ));
        }
        let (t_in, t_out) = row_widths("text rows of pair training", mix.keys, mix.targets, mix.n)?;
        if (t_in, t_out) != (in_dim, out_dim) {
            return Err(Error::Mismatch {
                what: "text rows of pair training".to_owned(),
                expected: format!("{in_dim} -> {out_dim} wide rows (as the pairs)"),
                found: format!("{t_in} -> {t_out}"),
            });
        }
        let mut text_keys = mix.keys.to_vec();
        for (row, k) in text_keys.chunks_exact_mut(in_dim).enumerate() {
            if !knn_index::l2_normalize(k) {
                return Err(Error::invalid(
                    "text rows of pair training keys",
                    format!("row {row} is zero"),
                ));
            }
        }
        if mix.shift_to_images {
            let gap: Vec<f32> = mean_unit_rows(&keys, in_dim)
                .iter()
                .zip(mean_unit_rows(&text_keys, in_dim))
                .map(|(i, t)| i - t)
                .collect();
            for k in text_keys.chunks_exact_mut(in_dim) {
                k.iter_mut().zip(&gap).for_each(|(x, g)| *x += g);
            }
        }
        keys.extend_from_slice(&text_keys);
        unit_targets.extend(unit_rows(
            "text rows of pair training",
            mix.targets,
            out_dim,
        )?);
        let mut w = vec![1.0f32; n];
        w.resize(n + mix.n, mix.weight);
        weights = Some(w);
        n_text = mix.n;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let n_val = held_out(n, config.validation_fraction);
    let (val_rows, pair_rows) = order.split_at(n_val);
    let mut train_rows = pair_rows.to_vec();
    train_rows.extend(n..n + n_text);
    let rows = Rows {
        keys: &keys,
        targets: &unit_targets,
        weights: weights.as_deref(),
        in_dim,
        out_dim,
    };
    let (head, report) = fit(
        &rows, train_rows, val_rows, config, device, &mut rng, start, progress,
    )?;
    let record = match text {
        Some(mix) => report.training_record(
            TrainingSource::PairsAndText,
            pair_rows.len(),
            n_text,
            Some(mix.weight),
        ),
        None => report.training_record(TrainingSource::Pairs, pair_rows.len(), 0, None),
    };
    Ok((head.with_training(Some(record)), report))
}

/// Mean of the L2-normalised rows of `flat` (rows of zero length are skipped).
pub fn mean_unit_rows(flat: &[f32], dim: usize) -> Vec<f32> {
    let mut mean = vec![0.0f64; dim];
    let mut n = 0usize;
    for row in flat.chunks_exact(dim) {
        let norm = row
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 && norm.is_finite() {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, x)| *m += f64::from(*x) / norm);
            n += 1;
        }
    }
    mean.iter().map(|m| (m / n.max(1) as f64) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_name_the_field() {
        let ok = HeadTrainConfig::default();
        assert!(ok.validate().is_ok());
        for (bad, option) in [
            (
                HeadTrainConfig {
                    epochs: 0,
                    ..ok.clone()
                },
                "epochs",
            ),
            (
                HeadTrainConfig {
                    batch_size: 0,
                    ..ok.clone()
                },
                "batch_size",
            ),
            (
                HeadTrainConfig {
                    learning_rate: 0.0,
                    ..ok.clone()
                },
                "learning_rate",
            ),
            (
                HeadTrainConfig {
                    learning_rate: f64::NAN,
                    ..ok.clone()
                },
                "learning_rate",
            ),
            (
                HeadTrainConfig {
                    weight_decay: -1.0,
                    ..ok.clone()
                },
                "weight_decay",
            ),
            (
                HeadTrainConfig {
                    validation_fraction: 1.0,
                    ..ok.clone()
                },
                "validation_fraction",
            ),
            (
                HeadTrainConfig {
                    kind: HeadKind::Mlp { hidden: 0 },
                    ..ok.clone()
                },
                "hidden",
            ),
        ] {
            let err = bad.validate().unwrap_err();
            assert!(err.to_string().starts_with(option), "{err}");
        }
    }

    #[test]
    fn bad_data_is_an_error() {
        let device = crate::backend::Backend::default_cpu().device().unwrap();
        let c = HeadTrainConfig::default();
        assert!(train_head(&[], &[], 0, &c, &device).is_err());
        assert!(train_head(&[1.0; 5], &[1.0; 4], 2, &c, &device).is_err());
        assert!(train_head(&[1.0, f32::NAN], &[1.0; 2], 2, &c, &device).is_err());
    }
}
