//! Models shipped inside the crate, the defaults of `img2prompt demo`:
//! - the world CLIP trained by `cargo xtask train-world-clip` (see
//!   `assets/world-clip/TRAINING.md`);
//! - the world captioner trained by `xtask/captioner/train_world.py` (see
//!   `assets/world-captioner/TRAINING.md`), which the demo keeps in its index to write
//!   `predict`'s prompt text.
//!
//! Their files are embedded in the binary and written to the model cache on first use
//! ([`world_clip_dir`], [`world_captioner_dir`]), after which the names [`WORLD_CLIP`] and
//! [`WORLD_CAPTIONER`] resolve like any cached model (`ModelCache::resolve`).

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

/// Name of the shipped world captioner in the model cache.
pub const WORLD_CAPTIONER: &str = "world-captioner";

/// The embedded captioner, file by file (an `image_captioner` directory).
const WORLD_CAPTIONER_FILES: [(&str, &[u8]); 2] = [
    (
        "config.json",
        include_bytes!("../assets/world-captioner/config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../assets/world-captioner/model.safetensors"),
    ),
];

/// The world CLIP's directory in `cache`, (re)written from the embedded files when missing or
/// different (a stale copy from another build is replaced). Written to a temp dir and renamed.
pub fn world_clip_dir(cache: &ModelCache) -> Result<PathBuf> {
    shipped_dir(cache, WORLD_CLIP, &WORLD_CLIP_FILES)
}

/// The world captioner's directory in `cache`, written as [`world_clip_dir`] writes the CLIP.
pub fn world_captioner_dir(cache: &ModelCache) -> Result<PathBuf> {
    shipped_dir(cache, WORLD_CAPTIONER, &WORLD_CAPTIONER_FILES)
}

fn shipped_dir(cache: &ModelCache, name: &str, files: &[(&str, &[u8])]) -> Result<PathBuf> {
    let dir = cache.model_dir(name);
    if is_current(&dir, files) {
        return Ok(dir);
    }
    let (dir, ()) = cache.install(name, |staging| {
        for (file, bytes) in files {
            let path = staging.join(file);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    })?;
    Ok(dir)
}

fn is_current(dir: &Path, files: &[(&str, &[u8])]) -> bool {
    files
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
        assert!(is_current(&dir, &WORLD_CLIP_FILES));
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        assert_eq!(world_clip_dir(&cache).unwrap(), dir);
        assert!(is_current(&dir, &WORLD_CLIP_FILES));
        let leftovers = std::fs::read_dir(home.path().join("models"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 1);
    }

    #[test]
    fn world_captioner_is_written_and_loads() {
        let home = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(home.path());
        let dir = world_captioner_dir(&cache).unwrap();
        assert_eq!(cache.resolve(WORLD_CAPTIONER).unwrap(), dir);
        assert!(img2prompt::image_captioner::is_captioner_dir(&dir));
        img2prompt::image_captioner::Captioner::load(
            &dir,
            &img2prompt::Backend::default().device().unwrap(),
        )
        .unwrap();
    }
}
