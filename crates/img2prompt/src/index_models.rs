//! Finding the models an index was built with: its manifest records their identities
//! (`name@fingerprint`, see [`crate::model_id`]); the name is resolved in the model cache unless
//! the caller names a checkpoint, and the checkpoint's fingerprint must match either way.

use std::path::{Path, PathBuf};

use knn_index::Manifest;

use crate::cache::ModelCache;
use crate::error::{Error, Result};
use crate::model_id::ModelId;

/// Which of an index's two models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexModel {
    /// The CLIP checkpoint that made the keys (its image tower embeds queries).
    Clip,
    /// The sentence model that made the targets.
    Sentence,
}

impl IndexModel {
    /// The CLI option that names this model.
    pub fn option(self) -> &'static str {
        match self {
            IndexModel::Clip => "--clip",
            IndexModel::Sentence => "--sentence",
        }
    }
}

/// Resolves the checkpoint of `which` model of the index in `index_dir`: `given` when set
/// (directory or cache name), else the name recorded in the manifest, looked up in `cache`.
///
/// # Errors
/// An unreadable manifest; a model that cannot be found (the message says which option to pass);
/// a checkpoint whose fingerprint differs from the one recorded.
pub fn resolve_index_model(
    index_dir: &Path,
    which: IndexModel,
    given: Option<&str>,
    cache: &ModelCache,
) -> Result<PathBuf> {
    let manifest = Manifest::read(index_dir)?;
    let recorded = match which {
        IndexModel::Clip => &manifest.key_model,
        IndexModel::Sentence => &manifest.target_model,
    };
    resolve_one(index_dir, which.option(), recorded, given, cache)
}

fn resolve_one(
    index_dir: &Path,
    option: &str,
    recorded: &str,
    given: Option<&str>,
    cache: &ModelCache,
) -> Result<PathBuf> {
    let recorded_id = ModelId::parse(recorded);
    let dir = match given {
        Some(name) => cache.resolve(name)?,
        None => {
            if recorded_id.name.is_empty() {
                return Err(Error::invalid(
                    option,
                    format!(
                        "{} records no model name: pass {option}",
                        index_dir.display()
                    ),
                ));
            }
            cache.resolve(&recorded_id.name).map_err(|e| {
                Error::invalid(
                    option,
                    format!(
                        "{} was built with {recorded}, not found in the model cache ({e}): pass {option} DIR",
                        index_dir.display()
                    ),
                )
            })?
        }
    };
    let actual = ModelId::of_dir(&dir)?.to_string();
    if !ModelId::matches(recorded, &actual) {
        return Err(Error::Mismatch {
            what: format!(
                "{}: model for {option} (the index was built with another model)",
                index_dir.display()
            ),
            expected: recorded.to_string(),
            found: actual,
        });
    }
    Ok(dir)
}
