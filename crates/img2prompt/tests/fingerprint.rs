//! A checkpoint changed anywhere is another model: flipping 4 bytes at the very end of a CLIP
//! checkpoint's `model.safetensors` (the vision side, past the text tower and past the first
//! MiB) changes its fingerprint, and an index built with the original refuses it.

use std::path::{Path, PathBuf};

use img2prompt::{
    ClipTextEmbedder, Error, IndexBuilder, IndexModels, ModelId, OpenOptions, Predictor,
    TextEmbedder,
};

fn clip_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip-encoder/tests/fixtures/clip/clip_a")
}

/// Targets from the prompt's bytes: a stand-in sentence model (the targets play no part here).
struct ByteCounts(ModelId);

impl TextEmbedder for ByteCounts {
    fn model_id(&self) -> &ModelId {
        &self.0
    }
    fn dim(&self) -> usize {
        4
    }
    fn embed_texts(&self, texts: &[&str]) -> img2prompt::Result<Vec<f32>> {
        Ok(texts
            .iter()
            .flat_map(|t| {
                let mut v = [1.0f32; 4];
                for (i, b) in t.bytes().enumerate() {
                    v[i % 4] += f32::from(b) / 255.0;
                }
                v
            })
            .collect())
    }
}

/// The name of the tensor whose bytes end the safetensors file.
fn last_tensor(weights: &Path) -> String {
    let bytes = std::fs::read(weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data_len = (bytes.len() - 8 - header_len) as u64;
    header
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| v["data_offsets"][1].as_u64() == Some(data_len))
        .map(|(name, _)| name.clone())
        .expect("a tensor ends the file")
}

#[test]
fn flipping_four_bytes_of_the_vision_tower_is_refused() {
    let device = img2prompt::Backend::default().device().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let clip = ClipTextEmbedder::load(clip_dir(), &device).unwrap();
    let targets = ByteCounts(ModelId::new("bytes", ""));
    let prompts: Vec<String> = (0..20).map(|i| format!("a red star number {i}")).collect();
    let index = tmp.path().join("index");
    IndexBuilder::new(&clip, &targets)
        .build(prompts.iter().map(|p| Ok(p.as_str())), &index)
        .unwrap();
    let options = OpenOptions::default();
    Predictor::open(&index, &IndexModels::clip(clip_dir()), &options, &device)
        .expect("the original checkpoint opens");

    // A copy, same length, its last 4 bytes flipped.
    let changed = tmp.path().join("clip_a");
    std::fs::create_dir(&changed).unwrap();
    for entry in std::fs::read_dir(clip_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), changed.join(entry.file_name())).unwrap();
    }
    let weights = changed.join("model.safetensors");
    let last = last_tensor(&weights);
    assert!(
        last.starts_with("vision_model.") || last.starts_with("visual_projection"),
        "the file ends with {last}, not the vision side"
    );
    let mut bytes = std::fs::read(&weights).unwrap();
    assert!(bytes.len() > 1 << 20, "the change lies past the first MiB");
    let n = bytes.len();
    for b in &mut bytes[n - 4..] {
        *b ^= 0x5a;
    }
    std::fs::write(&weights, &bytes).unwrap();

    let err = Predictor::open(&index, &IndexModels::clip(&changed), &options, &device)
        .err()
        .expect("the changed checkpoint is refused");
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("built with another model"), "{msg}");
    assert!(
        msg.contains(&ModelId::of_dir(clip_dir()).unwrap().to_string()),
        "{msg}"
    );
}
