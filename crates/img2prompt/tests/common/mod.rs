//! Helpers shared by the library's integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// Cosine similarity of two equally wide vectors (the library's own metric).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    f64::from(img2prompt::prompt_fusion::cosine(a, b).expect("equally wide, finite vectors"))
}

/// The real all-MiniLM-L6-v2: `$IMG2PROMPT_MINILM_DIR`, else where the model cache keeps it.
pub fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("IMG2PROMPT_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| img2prompt::ModelCache::from_env().model_dir("all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 not in {}: run `img2prompt models fetch all-MiniLM-L6-v2`",
        dir.display()
    );
    dir
}
