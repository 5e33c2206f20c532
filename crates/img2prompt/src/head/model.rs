//! [`ClipHead`]: the CLIP -> sentence-space head as a Burn module, and its [`HeadConfig`].

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::components::EmbeddingHead;
use crate::error::{Error, Result};

/// Rows run through the head at once by [`EmbeddingHead::predict`] (bounds the temporaries).
const PREDICT_ROWS: usize = 4096;

/// The head's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HeadKind {
    /// One affine map `input_dim -> output_dim`.
    Linear,
    /// `Linear(input_dim -> hidden) -> GELU -> Linear(hidden -> output_dim)`, no residual.
    Mlp {
        /// Width of the hidden layer.
        hidden: usize,
    },
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadKind::Linear => f.write_str("linear"),
            HeadKind::Mlp { hidden } => write!(f, "mlp(hidden {hidden})"),
        }
    }
}

/// Shape of a [`ClipHead`]; stored beside its weights (see [`crate::head::store`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// Linear or MLP.
    pub kind: HeadKind,
    /// Width of an input (the index's key dimension, e.g. 512 for CLIP ViT-B/32).
    pub input_dim: usize,
    /// Width of a prediction (the index's target dimension, e.g. 384 for all-MiniLM-L6-v2).
    pub output_dim: usize,
    /// Optional mean subtracted from every input before the first layer (`input_dim` floats).
    ///
    /// Meant for the CLIP image/text modality gap: the caller trains on centred text keys
    /// (keys minus their mean) and then sets this to the mean of unlabeled *image* embeddings,
    /// so that image queries are centred the same way at predict time. The head only stores and
    /// applies it (in [`ClipHead::forward`], training included); choosing it is the caller's
    /// job. `None` (the default) applies the head to the raw embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_mean: Option<Vec<f32>>,
}

impl HeadConfig {
    /// A config without input centring.
    pub fn new(kind: HeadKind, input_dim: usize, output_dim: usize) -> Self {
        HeadConfig {
            kind,
            input_dim,
            output_dim,
            input_mean: None,
        }
    }

    /// Checks that the widths are positive and the input mean (if any) is `input_dim` finite
    /// floats.
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err(Error::invalid(
                "head config",
                format!(
                    "input and output widths must be positive (got {} -> {})",
                    self.input_dim, self.output_dim
                ),
            ));
        }
        if let HeadKind::Mlp { hidden: 0 } = self.kind {
            return Err(Error::invalid(
                "hidden",
                "the MLP hidden width must be positive",
            ));
        }
        if let Some(mean) = &self.input_mean {
            if mean.len() != self.input_dim {
                return Err(Error::Mismatch {
                    what: "CLIP head input mean".to_owned(),
                    expected: format!("{} floats (the input width)", self.input_dim),
                    found: format!("{} floats", mean.len()),
                });
            }
            if mean.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid(
                    "CLIP head input mean",
                    "contains NaN or an infinity",
                ));
            }
        }
        Ok(())
    }
}

/// What a head was trained on (the `source` of [`HeadTraining`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainingSource {
    /// The corpus's CLIP *text* embeddings (the index keys) -> their sentence targets.
    Text,
    /// CLIP *image* embeddings of image-prompt pairs -> the prompts' sentence targets.
    Pairs,
    /// Image-prompt pairs plus the corpus's text-embedding rows, weighted.
    #[serde(rename = "pairs+text")]
    PairsAndText,
}

impl std::fmt::Display for TrainingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrainingSource::Text => "text",
            TrainingSource::Pairs => "pairs",
            TrainingSource::PairsAndText => "pairs+text",
        })
    }
}

/// The data a head was trained on, stored beside its weights (safetensors metadata key
/// [`crate::head::TRAINING_METADATA_KEY`]) and shown by `eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeadTraining {
    /// Text rows, image pairs or both.
    pub source: TrainingSource,
    /// Image-prompt pairs trained on (after the validation hold-out).
    pub pair_rows: usize,
    /// Corpus text-embedding rows trained on (after the validation hold-out, if any).
    pub text_rows: usize,
    /// Loss weight of each text row relative to an image pair (only for `pairs+text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_weight: Option<f32>,
    /// Rows held out to pick the best epoch (image pairs when pairs were given, else text).
    pub validation_rows: usize,
    /// Mean cosine on those rows with the kept weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_cosine: Option<f64>,
    /// The epoch whose weights were kept (1-based) and the epochs run.
    pub best_epoch: usize,
    /// Epochs run (fewer than configured when early stopping ended the run).
    pub epochs_run: usize,
}

impl HeadTraining {
    /// A record of `source` with the given row counts; the rest zero / absent.
    pub fn new(source: TrainingSource, pair_rows: usize, text_rows: usize) -> Self {
        HeadTraining {
            source,
            pair_rows,
            text_rows,
            text_weight: None,
            validation_rows: 0,
            validation_cosine: None,
            best_epoch: 0,
            epochs_run: 0,
        }
    }
}

impl std::fmt::Display for HeadTraining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.source {
            TrainingSource::Text => write!(f, "text: {} corpus text rows", self.text_rows)?,
            TrainingSource::Pairs => write!(f, "pairs: {} image-prompt pairs", self.pair_rows)?,
            TrainingSource::PairsAndText => write!(
                f,
                "pairs+text: {} image-prompt pairs + {} corpus text rows (weight {})",
                self.pair_rows,
                self.text_rows,
                self.text_weight.unwrap_or(1.0)
            )?,
        }
        let held = if self.source == TrainingSource::Text {
            "text rows"
        } else {
            "pairs"
        };
        match self.validation_cosine {
            Some(c) => write!(
                f,
                "; validation cosine {c:.6} on {} held-out {held}, epoch {}/{}",
                self.validation_rows, self.best_epoch, self.epochs_run
            ),
            None => write!(f, "; no validation split, {} epochs", self.epochs_run),
        }
    }
}

/// The CLIP -> sentence-space head: `Linear` or `Linear -> GELU -> Linear`.
///
/// [`ClipHead::forward`] returns raw (unnormalised) outputs; the training loss normalises them,
/// and [`EmbeddingHead::predict`] L2-normalises each predicted row. The head holds the
/// [`Device`] it predicts on. `Send + Sync`: share it between threads (e.g. in an `Arc`).
#[derive(Module, Debug)]
pub struct ClipHead {
    /// First layer (`input_dim -> output_dim` for the linear head, `-> hidden` for the MLP).
    pub fc1: Linear,
    /// Second layer of the MLP (`hidden -> output_dim`); `None` for the linear head.
    pub fc2: Option<Linear>,
    #[module(skip)]
    config: HeadConfig,
    #[module(skip)]
    device: Device,
    #[module(skip)]
    training: Option<HeadTraining>,
}

/// A `Linear` with the given weights (`[d_in, d_out]` row-major) and bias.
pub(crate) fn linear(weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Linear {
    let (d_out, d_in) = (bias.len(), weight.len() / bias.len().max(1));
    Linear {
        weight: Param::from_data(TensorData::new(weight, [d_in, d_out]), device),
        bias: Some(Param::from_data(TensorData::new(bias, [d_out]), device)),
    }
}

impl ClipHead {
    /// A head of shape `config` whose layers are made by `layer(d_in, d_out)`.
    pub(crate) fn with_layers(
        config: &HeadConfig,
        device: &Device,
        mut layer: impl FnMut(usize, usize) -> Linear,
    ) -> Result<Self> {
        config.validate()?;
        let (fc1, fc2) = match config.kind {
            HeadKind::Linear => (layer(config.input_dim, config.output_dim), None),
            HeadKind::Mlp { hidden } => (
                layer(config.input_dim, hidden),
                Some(layer(hidden, config.output_dim)),
            ),
        };
        Ok(ClipHead {
            fc1,
            fc2,
            config: config.clone(),
            device: device.clone(),
            training: None,
        })
    }

    /// A head of shape `config` with zero weights (what loading fills in).
    pub(crate) fn zeros(config: &HeadConfig, device: &Device) -> Result<Self> {
        Self::with_layers(config, device, |d_in, d_out| {
            linear(vec![0.0; d_in * d_out], vec![0.0; d_out], device)
        })
    }

    /// The head's shape.
    pub fn config(&self) -> &HeadConfig {
        &self.config
    }

    /// What the head was trained on, when recorded (heads trained by this crate's training
    /// functions, and stored heads that carry the record).
    pub fn training(&self) -> Option<&HeadTraining> {
        self.training.as_ref()
    }

    /// The same head with `training` recorded as its training data (saved with it).
    pub fn with_training(mut self, training: Option<HeadTraining>) -> Self {
        self.training = training;
        self
    }

    /// The device [`EmbeddingHead::predict`] runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The same head, moved to `device` (predictions then run there).
    pub fn with_device(self, device: &Device) -> Self {
        let mut head = self.to_device(device);
        head.device = device.clone();
        head
    }

    /// The same head with `mean` subtracted from every input (see [`HeadConfig::input_mean`]);
    /// `None` removes the centring. Fails unless `mean` has `input_dim` finite floats.
    pub fn with_input_mean(mut self, mean: Option<Vec<f32>>) -> Result<Self> {
        let config = HeadConfig {
            input_mean: mean,
            ..self.config.clone()
        };
        config.validate()?;
        self.config = config;
        Ok(self)
    }

    /// Raw outputs `[n, output_dim]` for inputs `[n, input_dim]`: each input row is L2-normalised,
    /// then centred by `input_mean` when set; outputs are not normalised.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        // The head is defined on unit CLIP embeddings (the index keys it trains on are
        // L2-normalised); image embeddings arrive raw, so normalise every row first.
        let norm = input
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-12);
        let input = input / norm;
        let input = match &self.config.input_mean {
            Some(mean) => {
                let mean = Tensor::<1>::from_data(
                    TensorData::new(mean.clone(), [mean.len()]),
                    &input.device(),
                );
                input - mean.unsqueeze::<2>()
            }
            None => input,
        };
        let x = self.fc1.forward(input);
        match &self.fc2 {
            Some(fc2) => fc2.forward(gelu(x)),
            None => x,
        }
    }

    /// Unit-length predictions for `n` rows (flat row-major, checked to be `input_dim` wide).
    pub(crate) fn predict_rows(&self, embeddings: &[f32]) -> Result<Vec<f32>> {
        let d = self.config.input_dim;
        if !embeddings.len().is_multiple_of(d) {
            return Err(Error::Mismatch {
                what: format!("CLIP head ({}) input", self.config.kind),
                expected: format!("rows of {d} floats"),
                found: format!("{} floats, not a whole number of rows", embeddings.len()),
            });
        }
        let mut out = Vec::with_capacity(embeddings.len() / d * self.config.output_dim);
        for chunk in embeddings.chunks(PREDICT_ROWS * d) {
            let rows = chunk.len() / d;
            let x =
                Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [rows, d]), &self.device);
            let y = self
                .forward(x)
                .try_into_data()
                .map_err(|e| Error::Backend(format!("reading back the head's output: {e:?}")))?
                .try_into_vec::<f32>()
                .map_err(|e| Error::Backend(format!("reading back the head's output: {e:?}")))?;
            out.extend(y);
        }
        for (row, v) in out.chunks_exact_mut(self.config.output_dim).enumerate() {
            if !knn_index::l2_normalize(v) {
                return Err(Error::Backend(format!(
                    "CLIP head output row {row} is not finite"
                )));
            }
        }
        Ok(out)
    }
}

impl EmbeddingHead for ClipHead {
    fn input_dim(&self) -> usize {
        self.config.input_dim
    }

    fn output_dim(&self) -> usize {
        self.config.output_dim
    }

    fn predict(&self, embeddings: &[f32]) -> Result<Vec<f32>> {
        self.predict_rows(embeddings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const _: () = {
        const fn send_sync<T: Send + Sync>() {}
        send_sync::<ClipHead>();
    };

    fn cpu() -> Device {
        crate::backend::Backend::default_cpu()
            .device()
            .expect("default CPU backend")
    }

    #[test]
    fn linear_head_computes_normalised_x_minus_mean_times_w_plus_b() {
        let config = HeadConfig::new(HeadKind::Linear, 3, 2);
        let head = ClipHead::init(&config, 1, &cpu()).unwrap();
        let w = head
            .fc1
            .weight
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let b = head
            .fc1
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let x = [0.5f32, -1.0, 2.0];
        let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        let affine = |mean: [f32; 3]| {
            let mut out: Vec<f32> = (0..2)
                .map(|j| {
                    b[j] + (0..3)
                        .map(|i| (x[i] / norm - mean[i]) * w[i * 2 + j])
                        .sum::<f32>()
                })
                .collect();
            assert!(knn_index::l2_normalize(&mut out));
            out
        };
        let close = |got: &[f32], want: &[f32]| {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        };
        // Inputs are L2-normalised first: scaling a row changes nothing.
        close(&head.predict(&x).unwrap(), &affine([0.0; 3]));
        close(
            &head.predict(&x.map(|v| v * 7.0)).unwrap(),
            &affine([0.0; 3]),
        );
        // input_mean is subtracted after normalisation.
        let mean = [0.1f32, -0.2, 0.3];
        let centred = head.with_input_mean(Some(mean.to_vec())).unwrap();
        close(&centred.predict(&x).unwrap(), &affine(mean));
        let err = centred.with_input_mean(Some(vec![0.0; 2])).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    }

    #[test]
    fn wrong_width_names_the_head() {
        let head = ClipHead::init(&HeadConfig::new(HeadKind::Linear, 4, 2), 0, &cpu()).unwrap();
        let err = head.predict(&[0.0; 6]).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("CLIP head"), "{err}");
        assert!(head.predict(&[]).unwrap().is_empty());
    }

    #[test]
    fn invalid_configs_are_errors() {
        let device = cpu();
        assert!(ClipHead::init(&HeadConfig::new(HeadKind::Linear, 0, 2), 0, &device).is_err());
        assert!(
            ClipHead::init(
                &HeadConfig::new(HeadKind::Mlp { hidden: 0 }, 3, 2),
                0,
                &device
            )
            .is_err()
        );
    }
}
