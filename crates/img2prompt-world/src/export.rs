//! Writing a split as image files plus a `.jsonl` of `{"image", "prompt"}` pairs.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::World;
use crate::atomic::write_file_atomic;
use crate::grammar::Scene;
use crate::{Error, Result};

/// Renders `scenes` (variant `variant`) to `dir/images/{split}_{i:05}.png` and writes
/// `dir/{split}.jsonl`, one `{"image": <absolute path>, "prompt": <prompt>}` line per scene in
/// order (the `img2prompt eval --pairs` format). Every file is written to a temp file and
/// renamed, the `.jsonl` last, so a present `.jsonl` names only complete images. `split` must
/// be non-empty ASCII letters, digits, `_` or `-`. Returns the `.jsonl` path.
pub fn export_pairs(
    world: &World,
    split: &str,
    scenes: &[Scene],
    variant: u64,
    dir: &Path,
) -> Result<PathBuf> {
    let items: Vec<(&Scene, u64)> = scenes.iter().map(|s| (s, variant)).collect();
    export_rendered(world, split, &items, dir)
}

/// Writes the training split ([`crate::splits::training_split`] of `n` pairs) as
/// `dir/images/train_{i:05}.png` and `dir/train.jsonl`, like [`export_pairs`]. Returns the
/// `.jsonl` path.
pub fn export_training_pairs(world: &World, n: usize, dir: &Path) -> Result<PathBuf> {
    let items = crate::splits::training_split(world, n);
    if items.is_empty() {
        return Err(Error::invalid(
            "training pairs",
            "need a non-empty corpus and at least one pair",
        ));
    }
    export_rendered(world, "train", &items, dir)
}

/// [`export_pairs`] for scenes each with its own render variant.
fn export_rendered(
    world: &World,
    split: &str,
    scenes: &[(&Scene, u64)],
    dir: &Path,
) -> Result<PathBuf> {
    if split.is_empty()
        || !split
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid(
            "split",
            format!("{split:?}: expected ASCII letters, digits, '_' or '-'"),
        ));
    }
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| Error::io(&images, e))?;
    let images = std::path::absolute(&images).map_err(|e| Error::io(&images, e))?;
    let paths: Vec<PathBuf> = (0..scenes.len())
        .map(|i| images.join(format!("{split}_{i:05}.png")))
        .collect();
    scenes
        .par_iter()
        .zip(&paths)
        .try_for_each(|((scene, variant), path)| -> Result<()> {
            let img = world.render(scene, *variant);
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| Error::Input {
                    path: path.clone(),
                    line: None,
                    message: format!("cannot encode PNG: {e}"),
                })?;
            write_file_atomic(path, &png)
        })?;
    let mut jsonl = String::new();
    for ((scene, _), path) in scenes.iter().zip(&paths) {
        let image = path.to_str().ok_or_else(|| {
            Error::invalid("dir", format!("{}: path is not valid UTF-8", dir.display()))
        })?;
        let line = serde_json::json!({ "image": image, "prompt": scene.prompt() });
        jsonl.push_str(&line.to_string());
        jsonl.push('\n');
    }
    let out = dir.join(format!("{split}.jsonl"));
    write_file_atomic(&out, jsonl.as_bytes())?;
    Ok(out)
}
