//! Swapping a component: the predictor is assembled from small traits, so any part can be
//! replaced. Here the FAISS index is replaced by a brute-force search over an in-memory table and
//! the trained head by a "prior" head that always predicts the corpus' mean target, while the
//! image embedder stays the real CLIP image tower (the committed test fixture `clip_a`).
//!
//! ```sh
//! cargo run --release --example swap_component
//! ```
//! Needs all-MiniLM-L6-v2 in the model cache (`scripts/img2prompt models fetch all-MiniLM-L6-v2`).

use std::path::PathBuf;

use img2prompt::{
    Backend, ClipImageEmbedder, ClipTextEmbedder, EmbeddingHead, Hit, ModelCache, ModelId,
    NeighbourSearch, Predictor, SentenceTextEmbedder, TextEmbedder,
};

/// Exact cosine search over a table held in memory.
struct BruteForce {
    prompts: Vec<String>,
    keys: Vec<Vec<f32>>,
    targets: Vec<Vec<f32>>,
    key_model: ModelId,
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

impl NeighbourSearch for BruteForce {
    fn key_dim(&self) -> usize {
        self.keys[0].len()
    }
    fn target_dim(&self) -> usize {
        self.targets[0].len()
    }
    fn len(&self) -> usize {
        self.prompts.len()
    }
    fn key_model(&self) -> Option<&ModelId> {
        Some(&self.key_model)
    }
    fn target_model(&self) -> Option<&ModelId> {
        None
    }
    fn search(&self, queries: &[f32], k: usize) -> img2prompt::Result<Vec<Vec<Hit>>> {
        Ok(queries
            .chunks_exact(self.key_dim())
            .map(|q| {
                let q = unit(q);
                let mut hits: Vec<Hit> = self
                    .keys
                    .iter()
                    .enumerate()
                    .map(|(i, key)| Hit {
                        id: i as u64,
                        score: key.iter().zip(&q).map(|(a, b)| a * b).sum(),
                        prompt: self.prompts[i].clone(),
                        target: self.targets[i].clone(),
                    })
                    .collect();
                hits.sort_by(|a, b| b.score.total_cmp(&a.score));
                hits.truncate(k);
                hits
            })
            .collect())
    }
}

/// Predicts the corpus' mean target whatever the image.
struct PriorHead {
    input_dim: usize,
    mean: Vec<f32>,
}

impl EmbeddingHead for PriorHead {
    fn input_dim(&self) -> usize {
        self.input_dim
    }
    fn output_dim(&self) -> usize {
        self.mean.len()
    }
    fn predict(&self, embeddings: &[f32]) -> img2prompt::Result<Vec<f32>> {
        let n = embeddings.len() / self.input_dim;
        Ok((0..n).flat_map(|_| self.mean.clone()).collect())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let clip_dir = root.join("crates/clip-encoder/tests/fixtures/clip/clip_a");
    let device = Backend::default().device()?;
    let cache = ModelCache::from_env();
    let sentence = SentenceTextEmbedder::load(cache.resolve("all-MiniLM-L6-v2")?, &device)?;
    let clip_text = ClipTextEmbedder::load(&clip_dir, &device)?;

    let prompts: Vec<String> = std::fs::read_to_string(root.join("examples/data/prompts.txt"))?
        .lines()
        .map(str::to_string)
        .collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let keys: Vec<Vec<f32>> = clip_text
        .embed_texts(&refs)?
        .chunks_exact(clip_text.dim())
        .map(unit)
        .collect();
    let targets: Vec<Vec<f32>> = sentence
        .embed_texts(&refs)?
        .chunks_exact(sentence.dim())
        .map(<[f32]>::to_vec)
        .collect();
    let mut mean = vec![0.0; sentence.dim()];
    for t in &targets {
        mean.iter_mut().zip(t).for_each(|(m, x)| *m += x);
    }

    let image_encoder = ClipImageEmbedder::load(&clip_dir, &device)?;
    let head = PriorHead {
        input_dim: img2prompt::ImageEmbedder::dim(&image_encoder),
        mean,
    };
    let search = BruteForce {
        prompts,
        keys,
        targets,
        key_model: clip_text.model_id().clone(),
    };
    let predictor = Predictor::builder()
        .image_encoder(image_encoder)
        .index(search)
        .head(head)
        .build()?;
    let image = img2prompt::decode_image_file(
        root.join("crates/clip-encoder/tests/fixtures/clip/images/chelsea.png"),
    )?;
    let prediction = predictor.predict(&image)?;
    println!("prompt: {}", prediction.prompt);
    for n in &prediction.neighbours {
        println!("  {:.3} (weight {:.3})  {}", n.score, n.weight, n.prompt);
    }
    Ok(())
}
