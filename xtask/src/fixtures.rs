//! `cargo xtask world-clip-fixtures`: the inputs of the world-CLIP parity fixture. Renders the
//! first images of the demo world's test split (variant 0) as PNGs and lists them with the
//! first test prompts in `inputs.json`; `xtask/fixtures/world_clip.py` embeds them with HF
//! transformers into `expected.json`.

use std::path::PathBuf;

use img2prompt::{Error, Result};
use img2prompt_world::{World, WorldConfig};
use serde_json::json;

use crate::train_world_clip::write_atomic;

/// Options of `world-clip-fixtures`.
#[derive(Debug, Clone, clap::Args)]
pub struct FixtureOptions {
    /// Output directory.
    #[arg(
        long,
        default_value = "crates/img2prompt-world/tests/fixtures/world-clip"
    )]
    pub out: PathBuf,
    /// Number of rendered images.
    #[arg(long, default_value_t = 4)]
    pub images: usize,
    /// Number of prompts.
    #[arg(long, default_value_t = 8)]
    pub prompts: usize,
}

/// Writes `out/test_{i}.png` and `out/inputs.json` (`{"images": [...], "prompts": [...],
/// "image_prompts": [...]}`).
pub fn run(opts: &FixtureOptions) -> Result<()> {
    let world = World::generate(WorldConfig::demo());
    let n = opts.images.max(opts.prompts);
    if n > world.test.len() {
        return Err(Error::invalid(
            "--images/--prompts",
            format!("the test split has only {} scenes", world.test.len()),
        ));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let mut images = Vec::new();
    for (i, scene) in world.test.iter().take(opts.images).enumerate() {
        let name = format!("test_{i}.png");
        let path = opts.out.join(&name);
        let mut bytes = Vec::new();
        world
            .render(scene, 0)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .map_err(|e| Error::Backend(format!("{}: {e}", path.display())))?;
        write_atomic(&path, &bytes)?;
        images.push(name);
    }
    let prompts: Vec<String> = world
        .test
        .iter()
        .take(opts.prompts)
        .map(|s| s.prompt())
        .collect();
    let image_prompts: Vec<String> = world
        .test
        .iter()
        .take(opts.images)
        .map(|s| s.prompt())
        .collect();
    let doc = json!({
        "source": "img2prompt_world demo world, test split, variant 0 (cargo xtask world-clip-fixtures)",
        "images": images,
        "image_prompts": image_prompts,
        "prompts": prompts,
    });
    let mut text = serde_json::to_string_pretty(&doc)
        .map_err(|e| Error::Backend(format!("inputs.json: {e}")))?;
    text.push('\n');
    write_atomic(&opts.out.join("inputs.json"), text.as_bytes())?;
    println!(
        "wrote {} images and {} prompts to {}",
        images.len(),
        prompts.len(),
        opts.out.display()
    );
    Ok(())
}
