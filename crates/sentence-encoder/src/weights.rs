//! Loading Hugging Face BERT weights (`model.safetensors`) into [`BertModel`] with burn-store.
//!
//! The Burn fields are named after the HF keys, so the rename table is short:
//!
//! | HF key (after an optional `bert.` prefix) | Burn path |
//! | --- | --- |
//! | `*.LayerNorm.{weight,bias}` | `*.layer_norm.{gamma,beta}` |
//! | `encoder.layer.N.attention.self.*` | `encoder.layer.N.attention.self_attention.*` |
//! | `*.weight` of a `Linear` (`[out, in]`) | `*.weight` transposed to `[in, out]` |
//!
//! The LayerNorm parameter names and the Linear transposition are handled by burn-store's
//! `PyTorchToBurnAdapter`; the other two lines are regex remaps.

use std::path::Path;

use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use crate::error::{Error, Result};
use crate::model::BertModel;

/// Checkpoint tensors that are expected and deliberately unused.
fn is_ignorable(key: &str) -> bool {
    key.ends_with("position_ids") || key.starts_with("pooler.") || key.starts_with("bert.pooler.")
}

/// Loads `path` into `model`, failing with the names of missing, unexpected or mis-shaped tensors.
pub fn load_bert_weights(model: &mut BertModel, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.to_owned(),
            what: "model weights",
        });
    }
    let weights_error = |message: String| Error::Weights {
        path: path.to_owned(),
        message,
    };
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(r"^bert\.", "")
        .with_key_remapping(r"\.LayerNorm\.", ".layer_norm.")
        .with_key_remapping(r"\.attention\.self\.", ".attention.self_attention.")
        .allow_partial(true)
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| weights_error(format!("cannot read safetensors: {e}")))?;

    let mut problems = Vec::new();
    for error in &result.errors {
        problems.push(error.to_string());
    }
    for (name, _) in &result.missing {
        problems.push(format!("missing tensor '{name}'"));
    }
    for name in result.unused.iter().filter(|name| !is_ignorable(name)) {
        problems.push(format!("unexpected tensor '{name}'"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(weights_error(format!(
            "does not match the model config: {}",
            problems.join("; ")
        )))
    }
}
