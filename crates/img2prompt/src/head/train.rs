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

use super::model::{ClipHead, HeadConfig, HeadKind};
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
/// best epoch's weights are the ones returned. Same data, config and device: same weights.
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
    if n == 0 {
        return Err(Error::invalid("head training data", "no rows to train on"));
    }
    if keys.is_empty() || !keys.len().is_multiple_of(n) {
        return Err(Error::Mismatch {
            what: "head training keys".to_owned(),
            expected: format!("{n} rows of equal width"),
            found: format!("{} floats", keys.len()),
        });
    }
    if targets.is_empty() || !targets.len().is_multiple_of(n) {
        return Err(Error::Mismatch {
            what: "head training targets".to_owned(),
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
            "head training keys",
            format!("row {row} contains NaN or an infinity"),
        ));
    }
    let mut unit_targets = targets.to_vec();
    for (row, t) in unit_targets.chunks_exact_mut(out_dim).enumerate() {
        if !knn_index::l2_normalize(t) {
            return Err(Error::invalid(
                "head training targets",
                format!("row {row} contains NaN or an infinity"),
            ));
        }
    }

    // Validation split, then per-epoch shuffles, all from one seeded stream.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let n_val = if config.validation_fraction > 0.0 && n >= 2 {
        ((n as f64 * config.validation_fraction).round() as usize).clamp(1, n - 1)
    } else {
        0
    };
    let (val_rows, train_rows) = order.split_at(n_val);
    let mut train_rows = train_rows.to_vec();

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
    let mut best: Option<(f64, ClipHead)> = None;
    for epoch in 1..=config.epochs {
        train_rows.shuffle(&mut rng);
        let mut loss_sum = 0f64;
        for batch in train_rows.chunks(config.batch_size) {
            let b = batch.len();
            let x = Tensor::<2>::from_data(
                TensorData::new(gather(keys, in_dim, batch), [b, in_dim]),
                &ad,
            );
            let y = Tensor::<2>::from_data(
                TensorData::new(gather(&unit_targets, out_dim, batch), [b, out_dim]),
                &ad,
            );
            let pred = model.forward(x);
            let norm = pred.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
            let cosine = (pred / norm * y).sum_dim(1);
            let loss = cosine.mean().neg().add_scalar(1.0);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let value: f32 = loss
                .try_into_scalar()
                .map_err(|e| Error::Backend(format!("reading back the training loss: {e:?}")))?;
            loss_sum += f64::from(value) * b as f64;
            model = optim.step(config.learning_rate, model, grads);
        }
        report
            .train_loss
            .push(loss_sum / train_rows.len().max(1) as f64);
        let snapshot = model.valid().with_device(&plain);
        if n_val > 0 {
            let cos = mean_cosine(&snapshot, keys, &unit_targets, in_dim, out_dim, val_rows)?;
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
    }
    let (_, head) = best.ok_or_else(|| Error::invalid("epochs", "must be at least 1"))?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok((head, report))
}

/// Trains a head on an index's own corpus: inputs = its keys (the CLIP text embeddings, read
/// back from FAISS: the L2-normalised keys, exact for `exact`/`hnsw`/`ivf`, approximate for
/// quantised specs such as `ivf-pq`), targets = its target vectors (same row order).
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
    train_head_with_progress(&keys, targets, n, config, device, progress)
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
