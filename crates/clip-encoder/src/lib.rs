//! CLIP image and text towers in Burn, loading HF-format checkpoints.
//!
//! - [`ClipModel::load`] reads a checkpoint directory in HF layout (`config.json`,
//!   `model.safetensors`, optional `preprocessor_config.json` and `tokenizer.json`) and gives
//!   the projected (not normalised) image and text embeddings HF transformers gives:
//!   [`ClipModel::embed_images`], [`ClipModel::embed_texts`].
//! - [`ClipVisionModel`] and [`ClipTextModel`] load one tower each (the online stage needs only
//!   vision, the offline stage only text).
//! - [`ClipTokenizer`]: the checkpoint's `tokenizer.json`, or the built-in OpenAI CLIP BPE.
//! - [`ImagePreprocessor`]: decoding and `CLIPImageProcessor`'s preprocessing, with PIL's
//!   bicubic filter re-implemented bit-exactly.
//!
//! The backend is the `burn::tensor::Device` passed in (`Device::flex()`, `Device::ndarray()`,
//! `Device::wgpu(..)`), chosen at run time.

#![warn(missing_docs)]

pub mod config;
pub mod error;
mod host;
pub mod model;
pub mod preprocess;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use burn::store::{
    ApplyError, ChainAdapter, FloatCastAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use host::{HostText, HostVision};
use host_kernels::Threads;
use image::DynamicImage;

pub use config::{
    Activation, ClipConfig, ClipTextConfig, ClipVisionConfig, PreprocessorConfig, Resample,
};
pub use error::{Error, Result};
pub use host::is_host_cpu;
pub use host_kernels::Precision;
pub use model::{ClipTextTower, ClipVisionTower, pooling_position};
pub use preprocess::{
    DEFAULT_MAX_PIXELS, ImagePreprocessor, decode_image_bytes, decode_image_file,
};
pub use tokenizer::ClipTokenizer;

/// Default number of images or texts run through a tower at once.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Whether `dir/config.json` describes a CLIP model (`model_type` `clip`, `clip_vision_model`
/// or `clip_text_model`). Unreadable or absent configs give `false`.
pub fn is_clip_checkpoint(dir: impl AsRef<Path>) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.as_ref().join("config.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    v.get("model_type")
        .and_then(|m| m.as_str())
        .is_some_and(is_clip_model_type)
}

/// Whether a `config.json` `model_type` names a CLIP checkpoint (`clip`, `clip_vision_model`
/// or `clip_text_model`).
pub fn is_clip_model_type(model_type: &str) -> bool {
    matches!(model_type, "clip" | "clip_vision_model" | "clip_text_model")
}

/// Reads a `[rows, cols]` tensor back into a row-major `Vec<f32>`.
pub fn tensor_to_vec(t: Tensor<2>) -> Result<(Vec<f32>, [usize; 2])> {
    let dims = t.dims();
    let data = t
        .try_into_data()
        .map_err(|e| Error::Backend(format!("{e:?}")))?;
    let v = data
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Backend(format!("{e:?}")))?;
    Ok((v, dims))
}

/// The HF name of a Burn parameter path (LayerNorm `gamma`/`beta` are `weight`/`bias` in HF).
fn hf_name(path: &str) -> String {
    if let Some(p) = path.strip_suffix(".gamma") {
        format!("{p}.weight")
    } else if let Some(p) = path.strip_suffix(".beta") {
        format!("{p}.bias")
    } else {
        path.to_string()
    }
}

/// Loads the tensors of `path` whose names start with one of `prefixes` into `module`
/// (HF names = Burn field paths; Linear weights transposed, f16/bf16 cast to f32).
/// Missing tensors, shape/dtype mismatches and unused tensors under `prefixes` are errors
/// naming the tensor.
fn load_weights<M: ModuleSnapshot>(module: &mut M, path: &Path, prefixes: &[&str]) -> Result<()> {
    if !path.is_file() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(ChainAdapter::new(
            FloatCastAdapter::to(DType::F32),
            PyTorchToBurnAdapter,
        ))
        .allow_partial(true)
        .validate(false);
    let result = module.load_from(&mut store).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(e) = result.errors.first() {
        let tensor = match e {
            ApplyError::ShapeMismatch { path, .. }
            | ApplyError::DTypeMismatch { path, .. }
            | ApplyError::AdapterError { path, .. }
            | ApplyError::LoadError { path, .. } => hf_name(path),
        };
        return Err(Error::BadTensor {
            path: path.to_path_buf(),
            tensor,
            message: e.to_string(),
        });
    }
    if let Some((missing, _)) = result.missing.first() {
        return Err(Error::MissingTensor {
            path: path.to_path_buf(),
            tensor: hf_name(missing),
        });
    }
    if let Some(unused) = result
        .unused
        .iter()
        .find(|u| prefixes.iter().any(|p| u.starts_with(p)) && !u.ends_with("position_ids"))
    {
        return Err(Error::BadTensor {
            path: path.to_path_buf(),
            tensor: hf_name(unused),
            message: "present in the checkpoint but not in the model its config.json describes"
                .into(),
        });
    }
    Ok(())
}

/// Host weights built by `build`, or an error when `device` is not a CPU or the weights
/// cannot be read as f32.
fn host_for<T>(device: &Device, build: impl FnOnce() -> Option<T>) -> Result<T> {
    host_kernels::from_burn::require_host_cpu(device).map_err(Error::Backend)?;
    build().ok_or_else(|| Error::Backend("the tower's weights are not readable as f32".into()))
}

/// The CLIP image tower with its preprocessing: images in, projected embeddings out.
#[derive(Debug)]
pub struct ClipVisionModel {
    tower: ClipVisionTower,
    /// The same weights as host buffers, run instead of `tower` on CPU devices.
    host: Option<HostVision>,
    config: ClipConfig,
    preprocessor: ImagePreprocessor,
    device: Device,
    batch_size: usize,
}

impl ClipVisionModel {
    /// Loads the vision half of a checkpoint directory: `config.json`, `model.safetensors`
    /// (only `vision_model.*` and `visual_projection.*` are read) and
    /// `preprocessor_config.json` (HF `CLIPImageProcessor` defaults when absent).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = ClipConfig::from_file(dir.join("config.json"))?;
        let mut tower = ClipVisionTower::new(&config, device);
        load_weights(
            &mut tower,
            &dir.join("model.safetensors"),
            &["vision_model.", "visual_projection."],
        )?;
        let preprocessor = load_preprocessor(dir, &config)?;
        Ok(Self::from_parts(tower, config, preprocessor, device))
    }

    /// A vision tower with random weights (benchmarks, tests) and default preprocessing.
    pub fn random(config: &ClipConfig, device: &Device) -> Self {
        let tower = ClipVisionTower::new(config, device);
        let pre =
            ImagePreprocessor::new(PreprocessorConfig::for_image_size(config.vision.image_size));
        Self::from_parts(tower, config.clone(), pre, device)
    }

    /// Assembles a model from its parts.
    pub fn from_parts(
        tower: ClipVisionTower,
        config: ClipConfig,
        preprocessor: ImagePreprocessor,
        device: &Device,
    ) -> Self {
        let host = is_host_cpu(device)
            .then(|| HostVision::from_tower(&tower, &config))
            .flatten();
        Self {
            tower,
            host,
            config,
            preprocessor,
            device: device.clone(),
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// Whether images run through the host kernels ([`host_kernels`]: one GEMM for the patch
    /// embedding and for Q/K/V, fused multi-threaded LayerNorm, attention and activations)
    /// instead of burn's ops. On by default on CPU devices (flex, ndarray), where it is the
    /// faster path (docs/PERFORMANCE.md); GPU devices always use burn. The two agree to
    /// cosine >= 0.9999.
    ///
    /// # Errors
    /// [`Error::Backend`] when enabling it on a device that is not a CPU.
    pub fn with_host_kernels(mut self, enabled: bool) -> Result<Self> {
        if !enabled {
            self.host = None;
        } else if self.host.is_none() {
            self.host = Some(host_for(&self.device, || {
                HostVision::from_tower(&self.tower, &self.config)
            })?);
        }
        Ok(self)
    }

    /// Whether images run through the host kernels (see [`Self::with_host_kernels`]).
    pub fn uses_host_kernels(&self) -> bool {
        self.host.is_some()
    }

    /// Runs the dense layers at `precision` on AMX tiles ([`Precision::Bf16x3`]: cosine >= 0.9999
    /// to the reference on the fixtures, as f32; [`Precision::Bf16`]: >= 0.9998, faster). The
    /// host kernels must be in use; [`Self::with_host_kernels`] `(false)` and back returns to
    /// f32.
    ///
    /// # Errors
    /// [`Error::Backend`] when the host kernels are off (a GPU device) for a precision other
    /// than f32, or this CPU cannot compute at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        host_kernels::set_host_precision(self.host.as_mut(), precision, HostVision::set_precision)
            .map_err(Error::Backend)?;
        Ok(self)
    }

    /// The dense layers' precision (f32 on burn's ops).
    pub fn precision(&self) -> Precision {
        self.host.as_ref().map_or(Precision::F32, |h| h.precision())
    }

    /// Sets how many images go through the tower at once (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The image preprocessor.
    pub fn preprocessor(&self) -> &ImagePreprocessor {
        &self.preprocessor
    }

    /// Replaces the image preprocessor (e.g. to change the pixel limit).
    pub fn set_preprocessor(&mut self, preprocessor: ImagePreprocessor) {
        self.preprocessor = preprocessor;
    }

    /// The Burn module.
    pub fn tower(&self) -> &ClipVisionTower {
        &self.tower
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Width of the embeddings.
    pub fn projection_dim(&self) -> usize {
        self.config.projection_dim
    }

    /// Projected embeddings `[images.len(), projection_dim]` of decoded images (preprocessed in
    /// parallel). Errors name the image by its index.
    pub fn embed_images(&self, images: &[DynamicImage]) -> Result<Tensor<2>> {
        let chunks: Vec<&[DynamicImage]> = images.chunks(self.batch_size).collect();
        let pre = &self.preprocessor;
        self.pipelined(chunks.len(), |i| pre.preprocess_batch(chunks[i]))
    }

    /// Projected embeddings of image files, decoded and preprocessed in parallel (and
    /// overlapped with the model). Errors name the file.
    pub fn embed_image_files<P: AsRef<Path> + Sync>(&self, paths: &[P]) -> Result<Tensor<2>> {
        let chunks: Vec<&[P]> = paths.chunks(self.batch_size).collect();
        let pre = &self.preprocessor;
        self.pipelined(chunks.len(), |i| pre.preprocess_files(chunks[i]))
    }

    /// Runs `prepare(i)` for chunk `i + 1` on a helper thread while the tower runs chunk `i`.
    fn pipelined<F>(&self, n_chunks: usize, prepare: F) -> Result<Tensor<2>>
    where
        F: Fn(usize) -> Result<(Vec<f32>, [usize; 4])> + Sync,
    {
        if n_chunks == 0 {
            return Ok(Tensor::zeros([0, self.projection_dim()], &self.device));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::scope(|s| {
            let prepare = &prepare;
            s.spawn(move || {
                for i in 0..n_chunks {
                    let item = prepare(i);
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        break;
                    }
                }
            });
            let mut outs = Vec::with_capacity(n_chunks);
            for item in rx.iter() {
                let (pixels, shape) = item?;
                outs.push(self.embed_pixels(pixels, shape)?);
            }
            if outs.len() != n_chunks {
                return Err(Error::Backend(
                    "image preprocessing thread stopped early".into(),
                ));
            }
            Ok(Tensor::cat(outs, 0))
        })
    }

    /// Projected embeddings of already preprocessed pixels (`[n, 3, h, w]`, row-major).
    pub fn embed_pixels(&self, pixels: Vec<f32>, shape: [usize; 4]) -> Result<Tensor<2>> {
        let v = &self.config.vision;
        if shape[1] != v.num_channels || shape[2] != v.image_size || shape[3] != v.image_size {
            return Err(Error::InvalidInput(format!(
                "pixels of shape {shape:?}, the model takes [n, {}, {}, {}]",
                v.num_channels, v.image_size, v.image_size
            )));
        }
        if pixels.len() != shape.iter().product::<usize>() {
            return Err(Error::InvalidInput(format!(
                "{} pixel values for shape {shape:?}",
                pixels.len()
            )));
        }
        if let Some(host) = &self.host {
            let out = host.forward(&pixels, shape[0], Threads::Pool);
            return Ok(Tensor::from_data(
                TensorData::new(out, [shape[0], self.projection_dim()]),
                &self.device,
            ));
        }
        let x = Tensor::<4>::from_data(TensorData::new(pixels, shape), &self.device);
        Ok(self.tower.forward(x))
    }

    /// The tower on normalised pixels `[n, 3, size, size]` (the burn module, whichever
    /// kernels [`Self::embed_pixels`] uses).
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.tower.forward(pixels)
    }
}

fn load_preprocessor(dir: &Path, config: &ClipConfig) -> Result<ImagePreprocessor> {
    let p = dir.join("preprocessor_config.json");
    let pc = if p.is_file() {
        PreprocessorConfig::from_file(&p, config.vision.image_size)?
    } else {
        PreprocessorConfig::for_image_size(config.vision.image_size)
    };
    Ok(ImagePreprocessor::new(pc))
}

/// The CLIP text tower with its tokenizer: texts in, projected embeddings out.
#[derive(Debug)]
pub struct ClipTextModel {
    tower: ClipTextTower,
    /// The same weights as host buffers, run instead of `tower` on CPU devices.
    host: Option<HostText>,
    config: ClipConfig,
    tokenizer: ClipTokenizer,
    device: Device,
    batch_size: usize,
}

impl ClipTextModel {
    /// Loads the text half of a checkpoint directory: `config.json`, `model.safetensors`
    /// (only `text_model.*` and `text_projection.*` are read) and `tokenizer.json` (the
    /// built-in OpenAI CLIP tokenizer when absent).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = ClipConfig::from_file(dir.join("config.json"))?;
        let mut tower = ClipTextTower::new(&config, device);
        load_weights(
            &mut tower,
            &dir.join("model.safetensors"),
            &["text_model.", "text_projection."],
        )?;
        let tokenizer = ClipTokenizer::from_dir(dir, config.text.max_position_embeddings)?;
        Ok(Self::from_parts(tower, config, tokenizer, device))
    }

    /// A text tower with random weights (benchmarks, tests) and the built-in tokenizer.
    pub fn random(config: &ClipConfig, device: &Device) -> Result<Self> {
        let tower = ClipTextTower::new(config, device);
        let tokenizer = ClipTokenizer::builtin(config.text.max_position_embeddings)?;
        Ok(Self::from_parts(tower, config.clone(), tokenizer, device))
    }

    /// Assembles a model from its parts.
    pub fn from_parts(
        tower: ClipTextTower,
        config: ClipConfig,
        tokenizer: ClipTokenizer,
        device: &Device,
    ) -> Self {
        let host = is_host_cpu(device)
            .then(|| HostText::from_tower(&tower, &config))
            .flatten();
        Self {
            tower,
            host,
            config,
            tokenizer,
            device: device.clone(),
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// Whether texts run through the host kernels ([`host_kernels`]: ragged batches, each text
    /// cut after its pooling position; fused multi-threaded LayerNorm, causal attention and
    /// activations) instead of burn's ops. On by default on CPU devices; GPU devices always use
    /// burn. The two agree to cosine >= 0.9999.
    ///
    /// # Errors
    /// [`Error::Backend`] when enabling it on a device that is not a CPU.
    pub fn with_host_kernels(mut self, enabled: bool) -> Result<Self> {
        if !enabled {
            self.host = None;
        } else if self.host.is_none() {
            self.host = Some(host_for(&self.device, || {
                HostText::from_tower(&self.tower, &self.config)
            })?);
        }
        Ok(self)
    }

    /// Whether texts run through the host kernels (see [`Self::with_host_kernels`]).
    pub fn uses_host_kernels(&self) -> bool {
        self.host.is_some()
    }

    /// Runs the dense layers at `precision` on AMX tiles ([`Precision::Bf16x3`]: cosine >= 0.9999
    /// to the reference on the fixtures, as f32; [`Precision::Bf16`]: >= 0.9998, faster). The
    /// host kernels must be in use; [`Self::with_host_kernels`] `(false)` and back returns to
    /// f32.
    ///
    /// # Errors
    /// [`Error::Backend`] when the host kernels are off (a GPU device) for a precision other
    /// than f32, or this CPU cannot compute at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        host_kernels::set_host_precision(self.host.as_mut(), precision, HostText::set_precision)
            .map_err(Error::Backend)?;
        Ok(self)
    }

    /// The dense layers' precision (f32 on burn's ops).
    pub fn precision(&self) -> Precision {
        self.host.as_ref().map_or(Precision::F32, |h| h.precision())
    }

    /// Sets how many texts go through the tower at once (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The Burn module.
    pub fn tower(&self) -> &ClipTextTower {
        &self.tower
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Width of the embeddings.
    pub fn projection_dim(&self) -> usize {
        self.config.projection_dim
    }

    /// Projected embeddings `[texts.len(), projection_dim]`, truncated to the context length.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor<2>> {
        let ids = self.tokenizer.encode_batch(texts)?;
        self.embed_token_ids(&ids)
    }

    /// Projected embeddings of tokenized texts (each with BOS/EOS, at most the context length).
    ///
    /// Rows are run in batches of similar length, each cut just after its last pooling
    /// position: with the causal mask, later tokens cannot change the pooled state.
    pub fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        let t = &self.config.text;
        for (i, row) in ids.iter().enumerate() {
            if row.is_empty() || row.len() > t.max_position_embeddings {
                return Err(Error::InvalidInput(format!(
                    "text #{i} has {} tokens, must have 1..={}",
                    row.len(),
                    t.max_position_embeddings
                )));
            }
            if let Some(bad) = row.iter().find(|&&id| id as usize >= t.vocab_size) {
                return Err(Error::InvalidInput(format!(
                    "text #{i} has token id {bad}, vocabulary size is {}",
                    t.vocab_size
                )));
            }
        }
        if ids.is_empty() {
            return Ok(Tensor::zeros([0, self.projection_dim()], &self.device));
        }
        let pools: Vec<usize> = ids
            .iter()
            .map(|r| pooling_position(r, t.eos_token_id))
            .collect();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| pools[i]);
        if let Some(host) = &self.host {
            let dim = self.projection_dim();
            let mut out = vec![0f32; ids.len() * dim];
            for chunk in order.chunks(self.batch_size) {
                let rows: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
                let pool: Vec<usize> = chunk.iter().map(|&i| pools[i]).collect();
                let embedded = host.forward(&rows, &pool, Threads::Pool);
                for (&i, e) in chunk.iter().zip(embedded.chunks_exact(dim)) {
                    out[i * dim..(i + 1) * dim].copy_from_slice(e);
                }
            }
            return Ok(Tensor::from_data(
                TensorData::new(out, [ids.len(), dim]),
                &self.device,
            ));
        }
        let mut outs = Vec::new();
        for chunk in order.chunks(self.batch_size) {
            let len = chunk.iter().map(|&i| pools[i]).max().unwrap_or(0) + 1;
            let mut flat = Vec::with_capacity(chunk.len() * len);
            for &i in chunk {
                let row = &ids[i];
                flat.extend((0..len).map(|j| i64::from(row.get(j).copied().unwrap_or(0))));
            }
            let x = Tensor::<2, Int>::from_data(
                TensorData::new(flat, [chunk.len(), len]),
                &self.device,
            );
            let pool: Vec<usize> = chunk.iter().map(|&i| pools[i]).collect();
            outs.push(self.tower.forward(x, &pool));
        }
        let sorted = Tensor::cat(outs, 0);
        let mut inverse = vec![0i64; order.len()];
        for (pos, &i) in order.iter().enumerate() {
            inverse[i] = pos as i64;
        }
        let index =
            Tensor::<1, Int>::from_data(TensorData::new(inverse, [ids.len()]), &self.device);
        Ok(sorted.select(0, index))
    }
}

/// A whole CLIP checkpoint: both towers, the tokenizer and the image preprocessor.
#[derive(Debug)]
pub struct ClipModel {
    vision: ClipVisionModel,
    text: ClipTextModel,
}

impl ClipModel {
    /// Loads a checkpoint directory in HF layout (`config.json`, `model.safetensors`, optional
    /// `preprocessor_config.json` and `tokenizer.json`).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        Ok(Self {
            vision: ClipVisionModel::load(dir, device)?,
            text: ClipTextModel::load(dir, device)?,
        })
    }

    /// Random weights, default preprocessing, built-in tokenizer (benchmarks, tests).
    pub fn random(config: &ClipConfig, device: &Device) -> Result<Self> {
        Ok(Self {
            vision: ClipVisionModel::random(config, device),
            text: ClipTextModel::random(config, device)?,
        })
    }

    /// Assembles a model from its towers.
    pub fn from_parts(vision: ClipVisionModel, text: ClipTextModel) -> Self {
        Self { vision, text }
    }

    /// Splits into the two towers.
    pub fn into_parts(self) -> (ClipVisionModel, ClipTextModel) {
        (self.vision, self.text)
    }

    /// The vision tower.
    pub fn vision(&self) -> &ClipVisionModel {
        &self.vision
    }

    /// The text tower.
    pub fn text(&self) -> &ClipTextModel {
        &self.text
    }

    /// The configuration.
    pub fn config(&self) -> &ClipConfig {
        self.vision.config()
    }

    /// Width of the joint embedding space.
    pub fn projection_dim(&self) -> usize {
        self.vision.projection_dim()
    }

    /// See [`ClipVisionModel::embed_images`].
    pub fn embed_images(&self, images: &[DynamicImage]) -> Result<Tensor<2>> {
        self.vision.embed_images(images)
    }

    /// See [`ClipVisionModel::embed_image_files`].
    pub fn embed_image_files<P: AsRef<Path> + Sync>(&self, paths: &[P]) -> Result<Tensor<2>> {
        self.vision.embed_image_files(paths)
    }

    /// See [`ClipTextModel::embed_texts`].
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor<2>> {
        self.text.embed_texts(texts)
    }
}

/// The weights file of a checkpoint directory.
pub fn weights_path(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join("model.safetensors")
}
