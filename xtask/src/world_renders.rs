//! `cargo xtask world-renders`: the training and evaluation images of the world captioner, as
//! raw RGB for `xtask/captioner/train_world.py`. For each split it writes `NAME.u8` (images of
//! `size x size x 3` bytes, one after another) and `NAME.txt` (their prompts, one per line):
//! `train` is every corpus prompt rendered with `--variants` random-variant renders each (the
//! prompts CLIP and the index see; validation, test and cross-domain prompts are never in it),
//! `val`, `test` and `cross` their splits at variant 0, as the demo renders them.

use std::io::Write;
use std::path::{Path, PathBuf};

use img2prompt::{Error, Result};
use img2prompt_world::{Scene, World, WorldConfig};
use rayon::prelude::*;

/// Options of `world-renders`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderOptions {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Renders per corpus prompt (variants 1000, 1001, ...).
    #[arg(long, default_value_t = 3)]
    pub variants: u64,
}

/// Writes the four splits (see the module doc).
pub fn run(opts: &RenderOptions) -> Result<()> {
    if opts.variants == 0 {
        return Err(Error::invalid("--variants", "must be at least 1"));
    }
    let world = World::generate(WorldConfig::demo());
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let train: Vec<(&Scene, u64)> = (0..opts.variants)
        .flat_map(|v| world.corpus.iter().map(move |s| (s, 1000 + v)))
        .collect();
    write_split(&world, &train, &opts.out, "train")?;
    for (name, scenes) in [
        ("val", &world.validation),
        ("test", &world.test),
        ("cross", &world.cross_domain),
    ] {
        let items: Vec<(&Scene, u64)> = scenes.iter().map(|s| (s, 0)).collect();
        write_split(&world, &items, &opts.out, name)?;
    }
    Ok(())
}

/// Renders `items` into `dir/NAME.u8` and lists their prompts in `dir/NAME.txt`, each through a
/// temporary file renamed into place (the `.txt` last).
fn write_split(world: &World, items: &[(&Scene, u64)], dir: &Path, name: &str) -> Result<()> {
    let pixels = dir.join(format!("{name}.u8"));
    let mut out = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    for chunk in items.chunks(10_000) {
        let images: Vec<Vec<u8>> = chunk
            .par_iter()
            .map(|(scene, variant)| world.render(scene, *variant).into_raw())
            .collect();
        for image in images {
            out.write_all(&image).map_err(|e| Error::io(&pixels, e))?;
        }
    }
    out.persist(&pixels)
        .map_err(|e| Error::io(&pixels, e.error))?;
    let prompts = dir.join(format!("{name}.txt"));
    let text: String = items.iter().map(|(s, _)| s.prompt() + "\n").collect();
    let mut out = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(&prompts, e))?;
    out.persist(&prompts)
        .map_err(|e| Error::io(&prompts, e.error))?;
    eprintln!("{}: {} images", pixels.display(), items.len());
    Ok(())
}
