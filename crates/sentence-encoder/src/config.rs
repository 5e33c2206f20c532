//! Checkpoint configuration: `config.json` (the BERT shape), `sentence_bert_config.json`,
//! `modules.json` and the pooling module's `config.json`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The BERT architecture as declared by a Hugging Face `config.json` (`model_type: bert`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Size of the word-piece vocabulary.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block (`gelu`, `gelu_new`, `relu`).
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Number of learned positions.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// `model_type` as written in the file (`bert` is the one supported).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Only `absolute` position embeddings are supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_hidden_act() -> String {
    "gelu".to_owned()
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// The configuration of all-MiniLM-L6-v2 (`nreimers/MiniLM-L6-H384-uncased`).
    pub fn minilm_l6() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            hidden_act: "gelu".to_owned(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            model_type: Some("bert".to_owned()),
            position_embedding_type: Some("absolute".to_owned()),
        }
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let value: serde_json::Value = read_json(path, "model configuration")?;
        // The kind first: a valid config of another model (a CLIP checkpoint, say) is named as
        // such, not reported as a BERT config with missing fields.
        if let Some(kind) = value.get("model_type").and_then(|v| v.as_str())
            && kind != "bert"
        {
            return Err(Error::Config {
                path: path.to_owned(),
                message: format!(
                    "model_type {kind:?}: expected a BERT sentence-transformers model \
                     (model_type \"bert\", e.g. all-MiniLM-L6-v2){}",
                    if kind.starts_with("clip") {
                        ", found a CLIP checkpoint"
                    } else {
                        ""
                    }
                ),
            });
        }
        let config: Self = serde_json::from_value(value).map_err(|source| Error::Json {
            path: path.to_owned(),
            source,
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let fail = |message: String| {
            Err(Error::Config {
                path: path.to_owned(),
                message,
            })
        };
        if let Some(kind) = &self.model_type
            && kind != "bert"
        {
            return fail(format!(
                "model_type {kind:?} is not supported (only BERT-family checkpoints are)"
            ));
        }
        if let Some(kind) = &self.position_embedding_type
            && kind != "absolute"
        {
            return fail(format!(
                "position_embedding_type {kind:?} is not supported (only \"absolute\")"
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return fail(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if Activation::parse(&self.hidden_act).is_none() {
            return fail(format!(
                "hidden_act {:?} is not supported (gelu, gelu_new, relu)",
                self.hidden_act
            ));
        }
        Ok(())
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> Activation {
        Activation::parse(&self.hidden_act).unwrap_or(Activation::Gelu)
    }
}

/// Feed-forward activation functions found in BERT checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU, HF's `gelu`.
    Gelu,
    /// Tanh-approximated GELU, HF's `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    /// ReLU.
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }
}

/// `sentence_bert_config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SentenceBertConfig {
    /// Inputs are truncated to this many word pieces (special tokens included).
    pub max_seq_length: usize,
    /// Whether the Transformer module lower-cases input itself (the tokenizer usually does).
    #[serde(default)]
    pub do_lower_case: bool,
}

/// How token embeddings are pooled into one sentence embedding (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// Mean over the attention mask (all-MiniLM-L6-v2).
    Mean,
    /// The `[CLS]` token's hidden state.
    Cls,
    /// Element-wise max over the attention mask.
    Max,
    /// Sum over the mask divided by sqrt(length).
    MeanSqrtLen,
}

#[derive(Debug, Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode: Option<String>,
}

impl PoolingMode {
    /// Reads a sentence-transformers Pooling module config; exactly one mode must be set.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file: PoolingFile = read_json(path, "pooling configuration")?;
        if let Some(mode) = &file.pooling_mode {
            return match mode.as_str() {
                "mean" => Ok(Self::Mean),
                "cls" => Ok(Self::Cls),
                "max" => Ok(Self::Max),
                "mean_sqrt_len_tokens" => Ok(Self::MeanSqrtLen),
                other => Err(Error::Config {
                    path: path.to_owned(),
                    message: format!("pooling_mode {other:?} is not supported"),
                }),
            };
        }
        let modes = [
            (file.pooling_mode_mean_tokens, Self::Mean),
            (file.pooling_mode_cls_token, Self::Cls),
            (file.pooling_mode_max_tokens, Self::Max),
            (file.pooling_mode_mean_sqrt_len_tokens, Self::MeanSqrtLen),
        ];
        let chosen: Vec<Self> = modes
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, m)| *m)
            .collect();
        match chosen.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::Config {
                path: path.to_owned(),
                message: "no pooling mode is enabled".to_owned(),
            }),
            _ => Err(Error::Config {
                path: path.to_owned(),
                message: "several pooling modes at once (concatenation) are not supported"
                    .to_owned(),
            }),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The sentence-transformers pipeline declared by `modules.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Pooling applied to the transformer's token embeddings.
    pub pooling: PoolingMode,
    /// Whether a `Normalize` module L2-normalises the pooled embedding.
    pub normalize: bool,
}

impl Pipeline {
    /// Reads `modules.json` in `dir` and the pooling config it points to.
    ///
    /// Supported pipelines: `Transformer`, `Pooling`, then optionally `Normalize`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("modules.json");
        let entries: Vec<ModuleEntry> = read_json(&path, "sentence-transformers module list")?;
        let mut pooling = None;
        let mut normalize = false;
        for (position, entry) in entries.iter().enumerate() {
            let kind = entry.kind.rsplit('.').next().unwrap_or(&entry.kind);
            match (position, kind) {
                (0, "Transformer") => {}
                (1, "Pooling") => {
                    pooling = Some(PoolingMode::from_file(
                        &dir.join(&entry.path).join("config.json"),
                    )?);
                }
                (2, "Normalize") => normalize = true,
                _ => {
                    return Err(Error::Config {
                        path,
                        message: format!(
                            "module {position} of type {:?} is not supported \
                             (expected Transformer, Pooling, optional Normalize)",
                            entry.kind
                        ),
                    });
                }
            }
        }
        let pooling = pooling.ok_or_else(|| Error::Config {
            path: path.clone(),
            message: "no Pooling module".to_owned(),
        })?;
        Ok(Self { pooling, normalize })
    }
}

/// Reads a JSON file, mapping a missing file and bad JSON to errors naming it.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T> {
    let text = read_to_string(path, what)?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn read_to_string(path: &Path, what: &'static str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| io_error(path.to_owned(), source, what))
}

pub(crate) fn io_error(path: PathBuf, source: std::io::Error, what: &'static str) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::MissingFile { path, what }
    } else {
        Error::Io { path, source }
    }
}
