//! The checkpoints an index was built with.
//!
//! An index manifest records the identities of its two models (`name@fingerprint`, see
//! [`crate::model_id`]). [`crate::Predictor::open`] takes their checkpoint directories as an
//! [`IndexModels`], already resolved: the library never looks anything up or downloads behind
//! the caller's back. Resolving the recorded names is an explicit, optional step,
//! [`IndexModels::resolve`], through any [`ResolveModel`] (a model cache, the caller's own
//! table); the fingerprints are checked when the models are loaded.

use std::path::{Path, PathBuf};

use knn_index::Manifest;

use crate::error::{Error, Result};
use crate::model_id::ModelId;

/// Maps a model name to a checkpoint directory (HF layout). Implemented by
/// `ModelCache` (cargo feature `cache`) and by anything a caller wants to look models up in.
pub trait ResolveModel {
    /// The checkpoint directory of the model called `name` (or `name` itself when it is one).
    fn resolve_model(&self, name: &str) -> Result<PathBuf>;
}

/// The checkpoint directories of an index's two models.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexModels {
    /// The CLIP checkpoint that made the keys (its image tower embeds queries).
    pub clip: PathBuf,
    /// The sentence model that made the targets (needed to compose prompt texts and to embed
    /// true prompts for evaluation); `None` when the caller has no use for it.
    pub sentence: Option<PathBuf>,
}

/// Which of an index's two models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexModel {
    /// The CLIP checkpoint that made the keys.
    Clip,
    /// The sentence model that made the targets.
    Sentence,
}

impl IndexModel {
    /// What the model is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            IndexModel::Clip => "the CLIP model (keys)",
            IndexModel::Sentence => "the sentence model (targets)",
        }
    }
}

impl IndexModels {
    /// The CLIP checkpoint alone.
    pub fn clip(clip: impl Into<PathBuf>) -> Self {
        Self {
            clip: clip.into(),
            sentence: None,
        }
    }

    /// Both checkpoints.
    pub fn new(clip: impl Into<PathBuf>, sentence: impl Into<PathBuf>) -> Self {
        Self {
            clip: clip.into(),
            sentence: Some(sentence.into()),
        }
    }

    /// Resolves both models of the index in `index_dir` through `resolver`: `clip` / `sentence`
    /// when given (a directory or a name), else the names its manifest records. Fingerprints
    /// are checked when the models are loaded (a different checkpoint is an error there).
    ///
    /// # Errors
    /// See [`IndexModels::resolve_one`].
    pub fn resolve(
        index_dir: &Path,
        resolver: &dyn ResolveModel,
        clip: Option<&str>,
        sentence: Option<&str>,
    ) -> Result<Self> {
        Ok(Self {
            clip: Self::resolve_one(index_dir, IndexModel::Clip, resolver, clip)?,
            sentence: Some(Self::resolve_one(
                index_dir,
                IndexModel::Sentence,
                resolver,
                sentence,
            )?),
        })
    }

    /// Resolves one model of the index in `index_dir`: `given` (a directory or a name) when
    /// set, else the name its manifest records, through `resolver`.
    ///
    /// # Errors
    /// An unreadable manifest; a manifest that records no name for a model not given; the
    /// resolver's error, naming the index and the model.
    pub fn resolve_one(
        index_dir: &Path,
        which: IndexModel,
        resolver: &dyn ResolveModel,
        given: Option<&str>,
    ) -> Result<PathBuf> {
        let manifest = Manifest::read(index_dir)?;
        let recorded = match which {
            IndexModel::Clip => &manifest.key_model,
            IndexModel::Sentence => &manifest.target_model,
        };
        let name = match given {
            Some(name) => name.to_owned(),
            None => {
                let id = ModelId::parse(recorded);
                if id.name().is_empty() {
                    return Err(Error::Model {
                        name: index_dir.display().to_string(),
                        message: format!(
                            "the index records no name for {}: name its checkpoint",
                            which.describe()
                        ),
                    });
                }
                id.name().to_owned()
            }
        };
        resolver
            .resolve_model(&name)
            .map_err(|e| Error::IndexModelNotFound {
                index: index_dir.to_owned(),
                which,
                recorded: recorded.clone(),
                reason: e.to_string(),
            })
    }

    /// The sentence checkpoint, or an error saying what needs it.
    pub fn sentence_dir(&self, needed_for: &str) -> Result<&Path> {
        self.sentence.as_deref().ok_or_else(|| {
            Error::invalid(
                "IndexModels::sentence",
                format!("{needed_for} needs the index's sentence model"),
            )
        })
    }
}
