//! A small image captioner in Burn: a convolutional encoder, a transformer over its image
//! tokens and a transformer decoder that writes the text greedily, token by token.
//!
//! A captioner is a directory with `config.json` ([`CaptionerConfig`]: architecture, pixel
//! normalisation, vocabulary, and the xxh3 of the weights) and `model.safetensors` (PyTorch
//! names and layouts; f16, bf16 or f32). img2prompt uses one, when an index directory holds it,
//! to write the prompt text of a prediction.
//!
//! ```no_run
//! # fn main() -> image_captioner::Result<()> {
//! use image_captioner::Captioner;
//! let device = burn::tensor::Device::default();
//! let captioner = Captioner::load("index/captioner", &device)?;
//! let image = image::open("photo.png").expect("an image");
//! let texts = captioner.caption(&[image])?;
//! println!("{}", texts[0]);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod model;

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ChainAdapter, FloatCastAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use image::DynamicImage;
use image::imageops::FilterType;

pub use config::{CaptionerConfig, ConvSpec, FORMAT};
pub use error::{Error, Result};
pub use model::CaptionerModel;

/// The configuration file of a captioner directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file of a captioner directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Images captioned at once.
pub const BATCH_SIZE: usize = 64;

/// Whether `dir` looks like a captioner directory (its `config.json` says [`FORMAT`]); it may
/// still fail to load.
pub fn is_captioner_dir(dir: impl AsRef<Path>) -> bool {
    std::fs::read_to_string(dir.as_ref().join(CONFIG_FILE)).is_ok_and(|t| t.contains(FORMAT))
}

/// The xxh3 of a file, streamed, as 16 hex digits (what `config.json`'s `weights_xxh3` holds).
///
/// # Errors
/// The file cannot be read.
pub fn file_xxh3(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:016x}", hasher.digest()))
}

/// A loaded captioner: images in, texts out. Deterministic (greedy decoding).
#[derive(Debug)]
pub struct Captioner {
    model: CaptionerModel,
    config: CaptionerConfig,
    device: Device,
    dir: PathBuf,
}

impl Captioner {
    /// Loads `dir/config.json` and `dir/model.safetensors` onto `device`.
    ///
    /// # Errors
    /// A missing, oversized or invalid config; weights whose xxh3 differs from the config's; a
    /// weights file that is not safetensors, or lacks, adds or misshapes a tensor (named).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = CaptionerConfig::read(&dir.join(CONFIG_FILE))?;
        let weights = dir.join(WEIGHTS_FILE);
        let found = file_xxh3(&weights)?;
        if !found.eq_ignore_ascii_case(&config.weights_xxh3) {
            return Err(Error::Checksum {
                path: weights,
                expected: config.weights_xxh3.clone(),
                found,
            });
        }
        let mut model = CaptionerModel::new(&config, device);
        load_weights(&mut model, &weights)?;
        Ok(Self {
            model,
            config,
            device: device.clone(),
            dir: dir.to_path_buf(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CaptionerConfig {
        &self.config
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model (for custom decoding).
    pub fn model(&self) -> &CaptionerModel {
        &self.model
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Images as normalised pixels `[b, 3, size, size]`: RGB, resized (triangle filter) when
    /// not already `image_size` square.
    ///
    /// # Errors
    /// An image with no pixels.
    pub fn pixels(&self, images: &[DynamicImage]) -> Result<Tensor<4>> {
        let size = self.config.image_size;
        let (mean, std) = (self.config.pixel_mean, self.config.pixel_std);
        let mut data = Vec::with_capacity(images.len() * 3 * size * size);
        for (index, image) in images.iter().enumerate() {
            if image.width() == 0 || image.height() == 0 {
                return Err(Error::Image {
                    index,
                    message: format!("{}x{} pixels", image.width(), image.height()),
                });
            }
            let mut rgb = image.to_rgb8();
            if rgb.width() as usize != size || rgb.height() as usize != size {
                rgb = image::imageops::resize(&rgb, size as u32, size as u32, FilterType::Triangle);
            }
            let raw = rgb.as_raw();
            for c in 0..3 {
                data.extend(
                    raw.iter()
                        .skip(c)
                        .step_by(3)
                        .map(|&v| (f32::from(v) / 255.0 - mean) / std),
                );
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(data, [images.len(), 3, size, size]),
            &self.device,
        ))
    }

    /// Captions images, [`BATCH_SIZE`] at a time, in order.
    ///
    /// # Errors
    /// An image with no pixels; a backend failure.
    pub fn caption(&self, images: &[DynamicImage]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(BATCH_SIZE) {
            let tokens = self.generate(self.pixels(chunk)?)?;
            out.extend(tokens.iter().map(|t| self.config.detokenize(t)));
        }
        Ok(out)
    }

    /// Greedy decoding from normalised pixels: per image, the generated token ids (without the
    /// start and end tokens). Padding, start and unknown tokens are never generated; a text
    /// stops at the end token or at `max_tokens`.
    ///
    /// # Errors
    /// A backend failure.
    pub fn generate(&self, pixels: Tensor<4>) -> Result<Vec<Vec<u32>>> {
        let rows = pixels.dims()[0];
        let memory = self.model.encode(pixels);
        let c = &self.config;
        let vocab = c.vocab.len();
        let banned: Vec<usize> = [Some(c.pad), Some(c.bos), c.unk]
            .into_iter()
            .flatten()
            .map(|t| t as usize)
            .collect();
        let mut sequences: Vec<Vec<u32>> = vec![vec![c.bos]; rows];
        let mut done = vec![false; rows];
        for t in 1..c.max_tokens {
            let ids: Vec<i64> = sequences
                .iter()
                .flat_map(|s| s.iter().map(|&x| i64::from(x)))
                .collect();
            let ids: Tensor<2, Int> =
                Tensor::from_data(TensorData::new(ids, [rows, t]), &self.device);
            let logits = self
                .model
                .decode(memory.clone(), ids)
                .narrow(1, t - 1, 1)
                .reshape([rows, vocab]);
            let logits = logits
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("{e:?}")))?;
            for (row, sequence) in sequences.iter_mut().enumerate() {
                if done[row] {
                    sequence.push(c.pad);
                    continue;
                }
                let scores = &logits[row * vocab..(row + 1) * vocab];
                let next = argmax_allowed(scores, &banned).unwrap_or(c.eos as usize) as u32;
                sequence.push(next);
                done[row] = next == c.eos;
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(sequences
            .into_iter()
            .map(|s| {
                s.into_iter()
                    .skip(1)
                    .take_while(|&x| x != c.eos && x != c.pad)
                    .collect()
            })
            .collect())
    }
}

/// The first index of the largest finite score outside `banned`.
fn argmax_allowed(scores: &[f32], banned: &[usize]) -> Option<usize> {
    scores
        .iter()
        .enumerate()
        .filter(|(i, s)| s.is_finite() && !banned.contains(i))
        .fold(None, |best: Option<(usize, f32)>, (i, &s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((i, s)),
        })
        .map(|(i, _)| i)
}

/// Loads `path` into `model`: every tensor present, none extra, shapes matching (f16 and bf16
/// cast to f32; Linear weights transposed from PyTorch's layout).
fn load_weights(model: &mut CaptionerModel, path: &Path) -> Result<()> {
    let fail = |message: String| Error::Weights {
        path: path.into(),
        message,
    };
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(ChainAdapter::new(
            FloatCastAdapter::to(DType::F32),
            PyTorchToBurnAdapter,
        ))
        .allow_partial(true)
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| fail(e.to_string()))?;
    if let Some(e) = result.errors.first() {
        let tensor = match e {
            ApplyError::ShapeMismatch { path, .. }
            | ApplyError::DTypeMismatch { path, .. }
            | ApplyError::AdapterError { path, .. }
            | ApplyError::LoadError { path, .. } => torch_name(path),
        };
        return Err(fail(format!("tensor `{tensor}`: {e}")));
    }
    if let Some((missing, _)) = result.missing.first() {
        return Err(fail(format!("tensor `{}` is missing", torch_name(missing))));
    }
    if let Some(unused) = result.unused.first() {
        return Err(fail(format!(
            "tensor `{}` is not part of the model config.json describes",
            torch_name(unused)
        )));
    }
    Ok(())
}

/// The PyTorch name of a Burn parameter path (LayerNorm `gamma`/`beta` are `weight`/`bias`).
fn torch_name(path: &str) -> String {
    if let Some(p) = path.strip_suffix(".gamma") {
        format!("{p}.weight")
    } else if let Some(p) = path.strip_suffix(".beta") {
        format!("{p}.bias")
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_skips_banned_and_non_finite_scores() {
        assert_eq!(argmax_allowed(&[3.0, 1.0, 2.0], &[0]), Some(2));
        assert_eq!(argmax_allowed(&[f32::NAN, 1.0, 1.0], &[]), Some(1));
        assert_eq!(argmax_allowed(&[1.0, 2.0], &[0, 1]), None);
    }

    #[test]
    fn torch_names_of_norm_parameters() {
        assert_eq!(torch_name("dec.0.ln1.gamma"), "dec.0.ln1.weight");
        assert_eq!(torch_name("enc_ln.beta"), "enc_ln.bias");
        assert_eq!(torch_name("head.weight"), "head.weight");
    }
}
