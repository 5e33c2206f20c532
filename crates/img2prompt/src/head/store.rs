//! Storing a [`ClipHead`] in an index directory: `head.safetensors` (burn-store
//! `SafetensorsStore`), with the [`HeadConfig`] as JSON under the metadata key
//! [`CONFIG_METADATA_KEY`], so weights and shape travel in one file written atomically.
//!
//! Tensors: `fc1.weight` `[input_dim, hidden or output_dim]`, `fc1.bias`, and for the MLP
//! `fc2.weight` `[hidden, output_dim]`, `fc2.bias` (Burn's row layout: `y = x W + b`).
//! `knn_index::PromptIndex::open` ignores the extra file.

use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::model::{ClipHead, HeadConfig, HeadKind, HeadTraining};
use crate::error::{Error, Result};

/// The head's file name inside an index directory.
pub const HEAD_FILE: &str = "head.safetensors";

/// The safetensors metadata key holding the [`HeadConfig`] as JSON.
pub const CONFIG_METADATA_KEY: &str = "img2prompt.head_config";

/// The safetensors metadata key holding the [`HeadTraining`] record as JSON (absent in heads
/// written before it existed, or trained outside this crate's training functions).
pub const TRAINING_METADATA_KEY: &str = "img2prompt.head_training";

/// Largest safetensors header read (the header is JSON: names, shapes, offsets, metadata).
const MAX_HEADER_BYTES: u64 = 64 << 20;

/// The config as stored: the input mean as f64 (exact for f32 values, and an f64 survives a
/// JSON round trip closely enough to cast back to the same f32).
#[derive(Serialize, Deserialize)]
struct StoredConfig {
    kind: HeadKind,
    input_dim: usize,
    output_dim: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_mean: Option<Vec<f64>>,
}

impl From<&HeadConfig> for StoredConfig {
    fn from(c: &HeadConfig) -> Self {
        StoredConfig {
            kind: c.kind,
            input_dim: c.input_dim,
            output_dim: c.output_dim,
            input_mean: c
                .input_mean
                .as_ref()
                .map(|m| m.iter().map(|&x| f64::from(x)).collect()),
        }
    }
}

impl From<StoredConfig> for HeadConfig {
    fn from(c: StoredConfig) -> Self {
        HeadConfig {
            kind: c.kind,
            input_dim: c.input_dim,
            output_dim: c.output_dim,
            input_mean: c
                .input_mean
                .map(|m| m.into_iter().map(|x| x as f32).collect()),
        }
    }
}

fn bad_file(path: &Path, message: impl Into<String>) -> Error {
    Error::Input {
        path: path.to_owned(),
        line: None,
        message: message.into(),
    }
}

/// The `__metadata__` map of a safetensors file's header.
fn read_metadata(path: &Path, bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .ok_or_else(|| bad_file(path, "not a safetensors file (shorter than its header)"))?;
    if len > MAX_HEADER_BYTES || 8 + len > bytes.len() as u64 {
        return Err(bad_file(path, "not a safetensors file (bad header length)"));
    }
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len as usize])
        .map_err(|e| bad_file(path, format!("not a safetensors file (header: {e})")))?;
    Ok(header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .cloned()
        .unwrap_or_default())
}

impl ClipHead {
    /// Writes the head to `index_dir/head.safetensors` (temp file in the same directory, then
    /// rename) and returns the file's path. Refuses a head whose widths disagree with the
    /// index in `index_dir` (when it has a `manifest.json`).
    pub fn save(&self, index_dir: impl AsRef<Path>) -> Result<PathBuf> {
        let dir = index_dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            ));
        }
        check_against_index(self.config(), dir)?;
        self.write_file(dir.join(HEAD_FILE))
    }

    /// Writes the head to `path` (any name; temp file beside it, then rename).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = path.as_ref();
        let json = serde_json::to_string(&StoredConfig::from(self.config()))
            .map_err(|e| Error::invalid("head config", e.to_string()))?;
        let mut store = SafetensorsStore::from_bytes(None).metadata(CONFIG_METADATA_KEY, json);
        if let Some(training) = self.training() {
            let json = serde_json::to_string(training)
                .map_err(|e| Error::invalid("head training record", e.to_string()))?;
            store = store.metadata(TRAINING_METADATA_KEY, json);
        }
        self.save_into(&mut store)
            .map_err(|e| Error::Backend(format!("serialising the head: {e}")))?;
        let bytes = store
            .get_bytes()
            .map_err(|e| Error::Backend(format!("serialising the head: {e}")))?;
        crate::atomic::write_file_atomic(path, &bytes)?;
        Ok(path.to_owned())
    }

    /// Loads `index_dir/head.safetensors` onto `device`, checking its widths against the
    /// index's key and target dims (from `index_dir/manifest.json`, when present).
    ///
    /// Errors name the file: missing, not safetensors, no or bad config metadata, tensors
    /// missing, unexpected or of the wrong shape, widths that disagree with the index.
    pub fn load(index_dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = index_dir.as_ref();
        let head = Self::read_file(dir.join(HEAD_FILE), device)?;
        check_against_index(head.config(), dir)?;
        Ok(head)
    }

    /// Loads a head file (any name) onto `device`; see [`ClipHead::load`].
    pub fn read_file(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let metadata = read_metadata(path, &bytes)?;
        let json = metadata
            .get(CONFIG_METADATA_KEY)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                bad_file(
                    path,
                    format!(
                        "no {CONFIG_METADATA_KEY:?} metadata: not a head written by img2prompt"
                    ),
                )
            })?;
        let stored: StoredConfig = serde_json::from_str(json)
            .map_err(|e| bad_file(path, format!("bad head config metadata: {e}")))?;
        let config = HeadConfig::from(stored);
        config
            .validate()
            .map_err(|e| bad_file(path, format!("bad head config metadata: {e}")))?;
        let training = training_record(path, &metadata)?;
        let mut head = ClipHead::zeros(&config, device)?.with_training(training);
        let mut store = SafetensorsStore::from_bytes(Some(bytes))
            .allow_partial(true)
            .validate(false);
        let result = head
            .load_from(&mut store)
            .map_err(|e| bad_file(path, format!("cannot read the weights: {e}")))?;
        let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        problems.extend(
            result
                .missing
                .iter()
                .map(|(name, _)| format!("missing tensor {name:?}")),
        );
        problems.extend(
            result
                .unused
                .iter()
                .map(|name| format!("unexpected tensor {name:?}")),
        );
        if !problems.is_empty() {
            return Err(bad_file(
                path,
                format!(
                    "weights do not match its {} {} -> {} config: {}",
                    config.kind,
                    config.input_dim,
                    config.output_dim,
                    problems.join("; ")
                ),
            ));
        }
        Ok(head)
    }
}

/// The training record in a head file's metadata, if any (a present but unreadable record is
/// an error naming the file).
fn training_record(
    path: &Path,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<HeadTraining>> {
    match metadata.get(TRAINING_METADATA_KEY) {
        None => Ok(None),
        Some(value) => {
            let json = value.as_str().ok_or_else(|| {
                bad_file(
                    path,
                    format!("{TRAINING_METADATA_KEY:?} metadata is not a string"),
                )
            })?;
            serde_json::from_str(json)
                .map(Some)
                .map_err(|e| bad_file(path, format!("bad head training metadata: {e}")))
        }
    }
}

impl ClipHead {
    /// The training record of `index_dir/head.safetensors` without loading the weights:
    /// `Ok(None)` when the file has no record. Errors name the file (missing, not a head).
    pub fn read_training(index_dir: impl AsRef<Path>) -> Result<Option<HeadTraining>> {
        let path = index_dir.as_ref().join(HEAD_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let metadata = read_metadata(&path, &bytes)?;
        training_record(&path, &metadata)
    }
}

/// Fails with [`Error::Mismatch`] when `dir` holds an index whose key/target dims differ from
/// the head's input/output widths.
fn check_against_index(config: &HeadConfig, dir: &Path) -> Result<()> {
    if !dir.join(knn_index::MANIFEST_FILE).is_file() {
        return Ok(());
    }
    let manifest = knn_index::Manifest::read(dir)?;
    for (what, index_dim, head_dim) in [
        ("key", manifest.key_dim, config.input_dim),
        ("target", manifest.target_dim, config.output_dim),
    ] {
        if index_dim != head_dim {
            let side = if what == "key" { "input" } else { "output" };
            return Err(Error::Mismatch {
                what: format!("{}: CLIP head {side} width", dir.join(HEAD_FILE).display()),
                expected: format!("{index_dim} (the index's {what} dim)"),
                found: head_dim.to_string(),
            });
        }
    }
    Ok(())
}
