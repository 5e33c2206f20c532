//! What kind of model a checkpoint directory (Hugging Face layout) holds.

use std::path::Path;

use crate::error::{Error, Result};

/// What kind of model a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A sentence-transformers checkpoint (BERT + pooling).
    Sentence,
    /// A CLIP checkpoint (`model_type: clip`).
    Clip,
}

/// The files a checkpoint of `kind` must contain.
pub fn required_files(kind: ModelKind) -> &'static [&'static str] {
    match kind {
        ModelKind::Sentence => &[
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "modules.json",
            "1_Pooling/config.json",
        ],
        ModelKind::Clip => &["config.json", "model.safetensors"],
    }
}

/// Reads `config.json` in `dir` and tells which kind of model it is.
pub fn model_kind(dir: &Path) -> Result<ModelKind> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Input {
        path: path.clone(),
        line: None,
        message: format!("invalid JSON: {e}"),
    })?;
    match value.get("model_type").and_then(|v| v.as_str()) {
        Some(kind) if clip_encoder::is_clip_model_type(kind) => Ok(ModelKind::Clip),
        Some(_) | None if dir.join("modules.json").is_file() => Ok(ModelKind::Sentence),
        Some(other) => Err(Error::Input {
            path,
            line: None,
            message: format!(
                "model_type {other:?} is neither CLIP nor a sentence-transformers model"
            ),
        }),
        None => Err(Error::Input {
            path,
            line: None,
            message: "no model_type, and no modules.json beside it".to_owned(),
        }),
    }
}
