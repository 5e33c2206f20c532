//! Models shipped inside the crate: the world CLIP trained by `cargo xtask train-world-clip`
//! (see `assets/world-clip/TRAINING.md`), the default CLIP of `img2prompt demo`. Its files are
//! embedded in the binary and written to the model cache on first use ([`world_clip_dir`]),
//! after which the name [`WORLD_CLIP`] resolves like any cached checkpoint
//! (`ModelCache::resolve`).

use std::path::{Path, PathBuf};

use img2prompt::ModelCache;

use crate::{Error, Result};

/// Name of the shipped world CLIP in the model cache.
pub const WORLD_CLIP: &str = "world-clip";

/// The embedded checkpoint, file by file (HF layout).
const WORLD_CLIP_FILES: [(&str, &[u8]); 4] = [
    (
        "config.json",
        include_bytes!("../assets/world-clip/config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../assets/world-clip/model.safetensors"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../assets/world-clip/tokenizer.json"),
    ),
    (
        "preprocessor_config.json",
        include_bytes!("../assets/world-clip/preprocessor_config.json"),
    ),
];

/// The world CLIP's directory in `cache`, (re)written from the embedded files when missing or
/// different (a stale copy from another build is replaced). Written to a temp dir and renamed.
pub fn world_clip_dir(cache: &ModelCache) -> Result<PathBuf> {
    let dir = cache.model_dir(WORLD_CLIP);
    if is_current(&dir) {
        return Ok(dir);
    }
    let (dir, ()) = cache.install(WORLD_CLIP, |staging| {
        for (name, bytes) in WORLD_CLIP_FILES {
            let path = staging.join(name);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    })?;
    Ok(dir)
}

fn is_current(dir: &Path) -> bool {
    WORLD_CLIP_FILES
        .iter()
        .all(|(name, bytes)| std::fs::read(dir.join(name)).is_ok_and(|b| b == *bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_clip_is_written_once_and_repaired() {
        let home = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(home.path());
        let dir = world_clip_dir(&cache).unwrap();
        assert_eq!(cache.resolve(WORLD_CLIP).unwrap(), dir);
        assert!(img2prompt::clip_encoder::is_clip_checkpoint(&dir));
        assert!(is_current(&dir));
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        assert_eq!(world_clip_dir(&cache).unwrap(), dir);
        assert!(is_current(&dir));
        let leftovers = std::fs::read_dir(home.path().join("models"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 1);
    }
}
