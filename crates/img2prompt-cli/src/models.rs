//! How the command line finds checkpoints: `--model`, `--clip` and `--sentence` take a directory
//! in Hugging Face layout or a name in the model cache (`$IMG2PROMPT_HOME/models`); the shipped
//! world CLIP is written into the cache on first use, and a known model that is missing is
//! fetched into it, with a note on stderr. The library itself never does either unasked.

use std::path::{Path, PathBuf};

use img2prompt::index_models::IndexModel;
use img2prompt::{IndexModels, KnownModel, ModelCache, ResolveModel, Result};
use img2prompt_world::shipped::{WORLD_CAPTIONER, WORLD_CLIP, world_captioner_dir, world_clip_dir};

/// The model cache as the command line uses it.
pub struct Models {
    cache: ModelCache,
}

impl Models {
    /// The cache under `$IMG2PROMPT_HOME` (default `~/.cache/img2prompt`).
    pub fn from_env() -> Self {
        Self {
            cache: ModelCache::from_env(),
        }
    }

    /// The cache.
    pub fn cache(&self) -> &ModelCache {
        &self.cache
    }

    /// A directory as is; the shipped world CLIP or captioner; a cached model; or a known model fetched now.
    pub fn resolve(&self, name: &str) -> Result<PathBuf> {
        if Path::new(name).is_dir() {
            return Ok(PathBuf::from(name));
        }
        // A path (absolute, or starting with ./ or ../) is never a hub or cache name.
        if looks_like_path(name) {
            return Err(img2prompt::Error::invalid(
                "model",
                format!("{name} is not a directory (a model directory, or a cache or hub name)"),
            ));
        }
        if name == WORLD_CLIP {
            return world_clip_dir(&self.cache);
        }
        if name == WORLD_CAPTIONER {
            return world_captioner_dir(&self.cache);
        }
        match self.cache.resolve(name) {
            Ok(dir) => Ok(dir),
            Err(_) if KnownModel::find(name).is_some() || name.contains('/') => {
                eprintln!("model {name} is not in the cache; fetching it");
                let fetched = self.cache.fetch(name, None)?;
                eprintln!(
                    "{name}: fetched from {} into {}",
                    fetched.source,
                    fetched.dir.display()
                );
                Ok(fetched.dir)
            }
            Err(e) => Err(e),
        }
    }

    /// The CLIP checkpoint of an index (`--clip` or the one it records), and its sentence model
    /// (`--sentence` or the recorded one) when `with_sentence`.
    pub fn of_index(
        &self,
        index: &Path,
        clip: Option<&str>,
        sentence: Option<&str>,
        with_sentence: bool,
    ) -> Result<IndexModels> {
        let clip = IndexModels::resolve_one(index, IndexModel::Clip, self, clip)?;
        Ok(if with_sentence {
            let sentence = IndexModels::resolve_one(index, IndexModel::Sentence, self, sentence)?;
            IndexModels::new(clip, sentence)
        } else {
            IndexModels::clip(clip)
        })
    }
}

impl ResolveModel for Models {
    fn resolve_model(&self, name: &str) -> Result<PathBuf> {
        self.resolve(name)
    }
}

/// Whether a model argument is a file-system path rather than a name (`/x`, `./x`, `../x`,
/// `~/x`).
fn looks_like_path(name: &str) -> bool {
    ["/", "./", "../", "~/"].iter().any(|p| name.starts_with(p))
}
