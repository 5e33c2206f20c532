//! `config.json`: the architecture, the pixel normalisation, the vocabulary and the xxh3 of
//! the weights.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `format` value this crate reads.
pub const FORMAT: &str = "img2prompt-captioner/1";

/// Largest `config.json` read (the vocabulary is the bulk of it).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// One convolution of the image encoder (square kernel, symmetric zero padding), followed by
/// exact GELU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    /// Output channels.
    pub channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

/// A captioner's configuration (`config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionerConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// Images are resized to `image_size` x `image_size` RGB.
    pub image_size: usize,
    /// Pixels are mapped to `(value / 255 - pixel_mean) / pixel_std`.
    pub pixel_mean: f32,
    /// See `pixel_mean`.
    pub pixel_std: f32,
    /// The convolutions, in order; the last one's channels are `width`.
    pub convs: Vec<ConvSpec>,
    /// Transformer width.
    pub width: usize,
    /// Attention heads (divides `width`).
    pub heads: usize,
    /// Hidden width of the feed-forward blocks.
    pub mlp: usize,
    /// Transformer layers over the image tokens.
    pub encoder_layers: usize,
    /// Decoder layers (causal self-attention, cross-attention to the image, feed-forward).
    pub decoder_layers: usize,
    /// Longest token sequence, the start token included.
    pub max_tokens: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// The tokens, by id. A token made only of ASCII punctuation is written without a space
    /// before it.
    pub vocab: Vec<String>,
    /// Start token id.
    pub bos: u32,
    /// End token id.
    pub eos: u32,
    /// Padding token id (never generated).
    pub pad: u32,
    /// Unknown-word token id, if the vocabulary has one (never generated).
    #[serde(default)]
    pub unk: Option<u32>,
    /// xxh3 (16 hex digits) of `model.safetensors`.
    pub weights_xxh3: String,
}

impl CaptionerConfig {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// An unreadable or oversized file, invalid JSON, or a configuration [`Self::validate`]
    /// refuses, each naming `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(Error::Config {
                path: path.into(),
                message: format!(
                    "{} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
                    meta.len()
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: CaptionerConfig =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.into(),
                source,
            })?;
        config.validate().map_err(|message| Error::Config {
            path: path.into(),
            message,
        })?;
        Ok(config)
    }

    /// The side of the encoder's output grid, or `None` when a convolution shrinks the image to
    /// nothing.
    pub fn grid(&self) -> Option<usize> {
        let mut side = self.image_size;
        for c in &self.convs {
            let padded = side + 2 * c.padding;
            if padded < c.kernel || c.stride == 0 {
                return None;
            }
            side = (padded - c.kernel) / c.stride + 1;
        }
        Some(side)
    }

    /// Number of image tokens the decoder attends to (`grid()²`).
    pub fn image_tokens(&self) -> usize {
        self.grid().map_or(0, |g| g * g)
    }

    /// Checks that the configuration describes a model this crate can run, within sane sizes.
    ///
    /// # Errors
    /// A message naming the first field at fault.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {:?}, expected {FORMAT:?}", self.format));
        }
        if !(8..=1024).contains(&self.image_size) {
            return Err(format!(
                "image_size {} (expected 8 to 1024)",
                self.image_size
            ));
        }
        if !(self.pixel_std.is_finite() && self.pixel_std > 0.0 && self.pixel_mean.is_finite()) {
            return Err("pixel_mean must be finite and pixel_std positive".into());
        }
        if self.convs.is_empty() || self.convs.len() > 16 {
            return Err(format!(
                "{} convolutions (expected 1 to 16)",
                self.convs.len()
            ));
        }
        for (i, c) in self.convs.iter().enumerate() {
            if !(1..=4096).contains(&c.channels)
                || !(1..=15).contains(&c.kernel)
                || !(1..=8).contains(&c.stride)
                || c.padding >= c.kernel
            {
                return Err(format!("convs[{i}] {c:?} is out of range"));
            }
        }
        match self.grid() {
            Some(g) if (1..=64).contains(&g) => {}
            other => {
                return Err(format!(
                    "the convolutions leave a grid of {other:?} (expected 1 to 64)"
                ));
            }
        }
        if self.convs.last().map(|c| c.channels) != Some(self.width) {
            return Err(format!(
                "the last convolution's channels differ from width {}",
                self.width
            ));
        }
        if !(1..=4096).contains(&self.width)
            || self.heads == 0
            || !self.width.is_multiple_of(self.heads)
        {
            return Err(format!(
                "width {} and heads {} (heads must divide width)",
                self.width, self.heads
            ));
        }
        if !(1..=16384).contains(&self.mlp) {
            return Err(format!("mlp {} (expected 1 to 16384)", self.mlp));
        }
        if self.encoder_layers > 64 || !(1..=64).contains(&self.decoder_layers) {
            return Err("encoder_layers must be 0 to 64 and decoder_layers 1 to 64".into());
        }
        if !(2..=512).contains(&self.max_tokens) {
            return Err(format!(
                "max_tokens {} (expected 2 to 512)",
                self.max_tokens
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err("layer_norm_eps must be positive".into());
        }
        let v = self.vocab.len();
        if !(3..=1_000_000).contains(&v) {
            return Err(format!("{v} tokens in vocab (expected 3 to 1000000)"));
        }
        for (name, id) in [
            ("bos", Some(self.bos)),
            ("eos", Some(self.eos)),
            ("pad", Some(self.pad)),
            ("unk", self.unk),
        ] {
            if let Some(id) = id
                && id as usize >= v
            {
                return Err(format!("{name} id {id} is outside the {v}-token vocab"));
            }
        }
        if self.bos == self.eos || self.eos == self.pad {
            return Err("bos, eos and pad must be distinct tokens".into());
        }
        if self.weights_xxh3.len() != 16
            || !self.weights_xxh3.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!(
                "weights_xxh3 {:?} is not 16 hex digits",
                self.weights_xxh3
            ));
        }
        Ok(())
    }

    /// Joins generated tokens into text: words separated by spaces, punctuation-only tokens
    /// attached to the word before them (`["a", "star", ",", "blurred"]` -> `"a star, blurred"`).
    pub fn detokenize(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        for &id in ids {
            let Some(word) = self.vocab.get(id as usize) else {
                continue;
            };
            let punctuation = word.bytes().all(|b| b.is_ascii_punctuation());
            if !out.is_empty() && !punctuation {
                out.push(' ');
            }
            out.push_str(word);
        }
        out
    }
}
