//! Quickstart: load a predictor from an index directory and predict one image's prompt.
//!
//! ```sh
//! cargo run --release --example quickstart -- INDEX_DIR IMAGE   # your index (see `index build`)
//! cargo run --release --example quickstart                      # self-contained, below
//! ```
//!
//! Without arguments it first makes a small index from 500 prompts of the procedural world with
//! the shipped world CLIP and all-MiniLM-L6-v2 (from the model cache: `img2prompt models fetch
//! all-MiniLM-L6-v2`), then predicts a rendered test image whose prompt is not in the index.

use std::path::PathBuf;

use img2prompt::{
    Backend, ClipTextEmbedder, IndexBuilder, IndexModels, ModelCache, OpenOptions, Predictor,
    SentenceTextEmbedder,
};
use img2prompt_world::shipped::world_clip_dir;
use img2prompt_world::{World, WorldConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Backend::default().device()?;
    let cache = ModelCache::from_env();
    let mut args = std::env::args().skip(1);
    let _tmp;
    let (index_dir, image, truth) = match (args.next(), args.next()) {
        (Some(index), Some(image)) => (
            PathBuf::from(index),
            img2prompt::decode_image_file(image)?,
            None,
        ),
        _ => {
            let world = World::generate(WorldConfig {
                corpus: 500,
                ..WorldConfig::tiny()
            });
            let prompts: Vec<String> = world.corpus.iter().map(|s| s.prompt()).collect();
            // The shipped world CLIP is written into the cache on first use.
            world_clip_dir(&cache)?;
            let clip = ClipTextEmbedder::load(cache.resolve("world-clip")?, &device)?;
            let minilm = SentenceTextEmbedder::load(cache.resolve("all-MiniLM-L6-v2")?, &device)?;
            _tmp = tempfile::tempdir()?;
            let dir = _tmp.path().join("index");
            IndexBuilder::new(&clip, &minilm)
                .build(prompts.iter().map(|p| Ok(p.as_str())), &dir)?;
            let scene = &world.test[0];
            let image = img2prompt::image::DynamicImage::ImageRgb8(world.render(scene, 0));
            (dir, image, Some(scene.prompt()))
        }
    };

    // The whole online stage: CLIP image tower + index + (head.safetensors if trained) + fusion.
    // The checkpoints are the ones the index records, looked up in the model cache.
    let models = IndexModels::resolve(&index_dir, &cache, None, None)?;
    let predictor = Predictor::open(&index_dir, &models, &OpenOptions::default(), &device)?;
    let prediction = predictor.predict(&image)?;
    if let Some(truth) = truth {
        println!("true prompt:      {truth}");
    }
    println!("predicted prompt: {}", prediction.prompt);
    for n in prediction.neighbours.iter().take(3) {
        println!(
            "  neighbour {:.3} (weight {:.3}): {}",
            n.score, n.weight, n.prompt
        );
    }
    Ok(())
}
