//! The files of the world CLIP checkpoint in HF layout: the word-level `tokenizer.json`, the
//! `config.json` (HF `CLIPConfig`), `preprocessor_config.json` (`CLIPImageProcessor`) and
//! `model.safetensors` (HF `CLIPModel` keys, PyTorch layouts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Tensor;
use clip_encoder::config::{OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use clip_encoder::{ClipTextTower, ClipVisionTower};
use img2prompt::{Error, Result};
use serde_json::{Value, json};

/// Padding token (id 0).
pub const PAD_TOKEN: &str = "[PAD]";
/// Unknown-word token (id 1).
pub const UNK_TOKEN: &str = "[UNK]";
/// Beginning of text (second-to-last id).
pub const BOS_TOKEN: &str = "<|startoftext|>";
/// End of text (last id): the text tower pools at its first position.
pub const EOS_TOKEN: &str = "<|endoftext|>";

/// The world tokenizer's vocabulary: `[PAD]`, `[UNK]`, the world's words (in the order
/// `words` gives them), `<|startoftext|>`, `<|endoftext|>`; ids are positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldVocab {
    /// Every token, by id.
    pub tokens: Vec<String>,
}

impl WorldVocab {
    /// The vocabulary over the given words (duplicates and the special tokens are rejected).
    pub fn new(words: &[&str]) -> Result<Self> {
        let mut tokens: Vec<String> = vec![PAD_TOKEN.into(), UNK_TOKEN.into()];
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for &w in words {
            // The pre-tokenizer splits at whitespace and punctuation: a word must be all
            // alphanumeric, a punctuation token a single character, or it could never match.
            let word = !w.is_empty() && w.chars().all(char::is_alphanumeric);
            let punct = w.chars().count() == 1 && w.chars().all(|c| c.is_ascii_punctuation());
            if !word && !punct {
                return Err(Error::invalid(
                    "world vocabulary",
                    format!("token {w:?} is neither a word nor one punctuation mark"),
                ));
            }
            if [PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN].contains(&w) || !seen.insert(w) {
                return Err(Error::invalid(
                    "world vocabulary",
                    format!("token {w:?} is duplicated or reserved"),
                ));
            }
            tokens.push(w.to_string());
        }
        tokens.push(BOS_TOKEN.into());
        tokens.push(EOS_TOKEN.into());
        Ok(Self { tokens })
    }

    /// Number of tokens (the text tower's `vocab_size`).
    pub fn size(&self) -> usize {
        self.tokens.len()
    }

    /// Id of `[PAD]`.
    pub fn pad_id(&self) -> u32 {
        0
    }

    /// Id of `[UNK]`.
    pub fn unk_id(&self) -> u32 {
        1
    }

    /// Id of `<|startoftext|>`.
    pub fn bos_id(&self) -> u32 {
        (self.tokens.len() - 2) as u32
    }

    /// Id of `<|endoftext|>`.
    pub fn eos_id(&self) -> u32 {
        (self.tokens.len() - 1) as u32
    }

    /// The HF `tokenizers` document: WordLevel model, lowercase normaliser, whitespace then
    /// punctuation pre-tokenizer (so `ring,` is `ring` `,`), and a template adding
    /// `<|startoftext|>` / `<|endoftext|>` around every text.
    pub fn tokenizer_json(&self) -> Value {
        let vocab: serde_json::Map<String, Value> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let special = |id: u32, content: &str| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        };
        let (bos, eos) = (self.bos_id(), self.eos_id());
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [
                special(self.pad_id(), PAD_TOKEN),
                special(self.unk_id(), UNK_TOKEN),
                special(bos, BOS_TOKEN),
                special(eos, EOS_TOKEN),
            ],
            "normalizer": {"type": "Lowercase"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "WhitespaceSplit"},
                {"type": "Punctuation", "behavior": "Isolated"}
            ]},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [
                    {"SpecialToken": {"id": BOS_TOKEN, "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": EOS_TOKEN, "type_id": 0}}
                ],
                "pair": [
                    {"SpecialToken": {"id": BOS_TOKEN, "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": EOS_TOKEN, "type_id": 0}},
                    {"Sequence": {"id": "B", "type_id": 1}},
                    {"SpecialToken": {"id": EOS_TOKEN, "type_id": 1}}
                ],
                "special_tokens": {
                    BOS_TOKEN: {"id": BOS_TOKEN, "ids": [bos], "tokens": [BOS_TOKEN]},
                    EOS_TOKEN: {"id": EOS_TOKEN, "ids": [eos], "tokens": [EOS_TOKEN]}
                }
            },
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK_TOKEN}
        })
    }

    /// The text of token ids, BOS/EOS/PAD dropped, words joined by spaces and commas glued
    /// to the word before (the inverse of the tokenizer on world prompts).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        for &id in ids {
            if id == self.pad_id() || id == self.bos_id() || id == self.eos_id() {
                continue;
            }
            let tok = self
                .tokens
                .get(id as usize)
                .map(String::as_str)
                .unwrap_or(UNK_TOKEN);
            if !out.is_empty() && tok != "," {
                out.push(' ');
            }
            out.push_str(tok);
        }
        out
    }
}

/// Shape of the world CLIP (both towers share width, depth and heads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldClipShape {
    /// Input resolution.
    pub image_size: usize,
    /// Patch size.
    pub patch_size: usize,
    /// Width of both transformers.
    pub hidden: usize,
    /// Layers of each transformer.
    pub layers: usize,
    /// Attention heads of each transformer.
    pub heads: usize,
    /// Width of the joint embedding space.
    pub projection_dim: usize,
    /// Text context length (`max_position_embeddings`).
    pub context: usize,
}

/// `ln(1 / 0.07)`, CLIP's initial logit scale.
pub const LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778_4;

/// The HF `config.json` of a world CLIP (`model_type` `clip`, quick_gelu, MLP 4x).
pub fn config_json(shape: &WorldClipShape, vocab: &WorldVocab) -> Value {
    let tower = |extra: Value| {
        let mut m = json!({
            "hidden_size": shape.hidden,
            "intermediate_size": 4 * shape.hidden,
            "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "projection_dim": shape.projection_dim,
            "attention_dropout": 0.0,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut m, extra) {
            m.extend(e);
        }
        m
    };
    json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": shape.projection_dim,
        "logit_scale_init_value": LOGIT_SCALE_INIT,
        "initializer_factor": 1.0,
        "dtype": "float32",
        "text_config": tower(json!({
            "model_type": "clip_text_model",
            "vocab_size": vocab.size(),
            "max_position_embeddings": shape.context,
            "bos_token_id": vocab.bos_id(),
            "eos_token_id": vocab.eos_id(),
            "pad_token_id": vocab.pad_id(),
        })),
        "vision_config": tower(json!({
            "model_type": "clip_vision_model",
            "image_size": shape.image_size,
            "patch_size": shape.patch_size,
            "num_channels": 3,
        })),
    })
}

/// `preprocessor_config.json`: HF `CLIPImageProcessor` at the model's resolution (a 64 px
/// world image passes resize and crop unchanged), OpenAI mean/std.
pub fn preprocessor_json(image_size: usize) -> Value {
    json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": true,
        "size": {"shortest_edge": image_size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": OPENAI_CLIP_MEAN,
        "image_std": OPENAI_CLIP_STD,
        "do_convert_rgb": true
    })
}

/// Serialises a tower's parameters as safetensors bytes with PyTorch names and layouts.
fn tower_bytes<M: Module + ModuleSnapshot>(module: &M, what: &str) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None).with_to_adapter(BurnToPyTorchAdapter);
    module
        .save_into(&mut store)
        .map_err(|e| Error::Backend(format!("saving the {what} tower: {e}")))?;
    store
        .get_bytes()
        .map_err(|e| Error::Backend(format!("saving the {what} tower: {e}")))
}

/// Whether the checkpoint is stored as f16 (f32 when it would fit in this many bytes).
pub const F32_LIMIT_BYTES: usize = 6 * 1024 * 1024;

/// The `model.safetensors` bytes of both towers plus the scalar `logit_scale`, keys as HF
/// `CLIPModel` (`text_model.*`, `vision_model.*`, `visual_projection.weight`,
/// `text_projection.weight`, `logit_scale`), Linear weights as PyTorch `[out, in]`. Stored
/// in f32, or f16 when f32 would exceed [`F32_LIMIT_BYTES`]; returns the bytes and whether
/// they are f16.
pub fn model_safetensors(
    vision: &ClipVisionTower,
    text: &ClipTextTower,
    logit_scale: f32,
) -> Result<(Vec<u8>, bool)> {
    let parts = [tower_bytes(vision, "vision")?, tower_bytes(text, "text")?];
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for bytes in &parts {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Backend(format!("re-reading saved tensors: {e}")))?;
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(Error::Backend(format!(
                    "tensor {name} saved as {:?}, expected F32",
                    view.dtype()
                )));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push((name, view.shape().to_vec(), data));
        }
    }
    tensors.push(("logit_scale".into(), vec![], vec![logit_scale]));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let total: usize = tensors.iter().map(|t| t.2.len() * 4).sum();
    let f16 = total > F32_LIMIT_BYTES;
    let raw: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| {
            if f16 {
                d.iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect()
            } else {
                d.iter().flat_map(|&x| x.to_le_bytes()).collect()
            }
        })
        .collect();
    let dtype = if f16 {
        safetensors::Dtype::F16
    } else {
        safetensors::Dtype::F32
    };
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), bytes) in tensors.iter().zip(&raw) {
        let view = safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)
            .map_err(|e| Error::Backend(format!("tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Backend(format!("serialising model.safetensors: {e}")))?;
    Ok((bytes, f16))
}

/// Everything a checkpoint directory holds, ready to write.
pub struct CheckpointFiles {
    /// `config.json`.
    pub config: Value,
    /// `tokenizer.json`.
    pub tokenizer: Value,
    /// `preprocessor_config.json`.
    pub preprocessor: Value,
    /// `model.safetensors`.
    pub weights: Vec<u8>,
}

/// Writes a JSON document to `path` (pretty, trailing newline).
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Backend(format!("{}: {e}", path.display())))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// A fresh temporary directory next to `out` (`.<name>.tmp-<pid>`), emptied if it exists.
pub fn temp_dir_for(out: &Path) -> Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    Ok(tmp)
}

/// Writes the checkpoint's files into `dir`.
pub fn write_files(dir: &Path, files: &CheckpointFiles) -> Result<()> {
    write_json(&dir.join("config.json"), &files.config)?;
    write_json(&dir.join("tokenizer.json"), &files.tokenizer)?;
    write_json(&dir.join("preprocessor_config.json"), &files.preprocessor)?;
    let w = dir.join("model.safetensors");
    std::fs::write(&w, &files.weights).map_err(|e| Error::io(&w, e))
}

/// Replaces `out` by the finished directory `tmp` (rename; an existing `out` is moved aside
/// first and removed after). Files of `out` not in `tmp` are carried over (e.g. TRAINING.md
/// written by an earlier run) only when `keep` names them.
pub fn publish_dir(tmp: &Path, out: &Path, keep: &[&str]) -> Result<()> {
    if out.exists() {
        for name in keep {
            let src = out.join(name);
            let dst = tmp.join(name);
            if src.is_file() && !dst.exists() {
                std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
            }
        }
        let old = tmp.with_extension("old");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        std::fs::rename(tmp, out).map_err(|e| Error::io(tmp, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        std::fs::rename(tmp, out).map_err(|e| Error::io(tmp, e))?;
    }
    Ok(())
}

/// The value of a one-element tensor.
pub fn scalar(t: Tensor<1>) -> Result<f32> {
    let data = t
        .try_into_data()
        .map_err(|e| Error::Backend(format!("{e:?}")))?;
    let v = data
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Backend(format!("{e:?}")))?;
    v.first()
        .copied()
        .ok_or_else(|| Error::Backend("empty tensor where a scalar was expected".into()))
}

#[cfg(test)]
mod tests {
    use super::WorldVocab;

    #[test]
    fn vocab_ids_and_decoding() {
        let v = WorldVocab::new(&[",", "a", "red", "star"]).expect("valid words");
        assert_eq!(v.size(), 8);
        assert_eq!(
            (v.pad_id(), v.unk_id(), v.bos_id(), v.eos_id()),
            (0, 1, 6, 7)
        );
        assert_ne!(v.eos_id(), 2, "eos 2 means legacy pooling in HF");
        assert_eq!(v.decode(&[6, 3, 4, 5, 2, 3, 7, 0]), "a red star, a");
        let json = v.tokenizer_json();
        assert_eq!(json["model"]["vocab"]["star"], 5);
        assert_eq!(
            json["post_processor"]["special_tokens"]["<|endoftext|>"]["ids"][0],
            7
        );
    }

    #[test]
    fn vocab_rejects_unmatchable_tokens() {
        assert!(WorldVocab::new(&["top-left"]).is_err());
        assert!(WorldVocab::new(&["a", "a"]).is_err());
        assert!(WorldVocab::new(&["[UNK]"]).is_err());
    }
}
