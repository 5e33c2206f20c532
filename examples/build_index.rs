//! The offline stage through the library: builds a prompt index from `examples/data/prompts.txt`
//! with the tiny random CLIP fixture (keys) and the cached all-MiniLM-L6-v2 (targets) into a
//! temporary directory, then prints the build report and a sanity search.
//!
//! ```sh
//! cargo run --release --example build_index
//! ```
//!
//! The sentence model comes from the model cache (`img2prompt models fetch all-MiniLM-L6-v2`).

use std::path::Path;

use img2prompt::corpus::{Corpus, CorpusOptions};
use img2prompt::knn_index::PromptIndex;
use img2prompt::{
    Backend, ClipTextEmbedder, IndexBuilder, ModelCache, SentenceTextEmbedder, TextEmbedder,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let prompts = root.join("examples/data/prompts.txt");
    let clip_dir = root.join("crates/clip-encoder/tests/fixtures/clip/clip_a");
    let minilm_dir = ModelCache::from_env().resolve("all-MiniLM-L6-v2")?;

    let device = Backend::default().device()?;
    let clip = ClipTextEmbedder::load(&clip_dir, &device)?;
    let minilm = SentenceTextEmbedder::load(&minilm_dir, &device)?;

    let corpus = Corpus::open(&[prompts], CorpusOptions::default())?;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("index");
    let report = IndexBuilder::new(&clip, &minilm)
        .batch_size(8)
        .build_corpus(corpus, &out)?;
    println!("{report}");
    println!("{}", serde_json::to_string_pretty(&report)?);

    // Every prompt's own CLIP text embedding finds it first.
    let index = PromptIndex::open(&out)?;
    for id in 0..index.len() as u64 {
        let prompt = index.prompt(id)?;
        let hits = index.search(&clip.embed_texts(&[prompt])?, 1)?;
        println!(
            "{id}: top hit {} (cosine {:.4}) {prompt:?}",
            hits[0][0].0, hits[0][0].1
        );
    }
    Ok(())
}
