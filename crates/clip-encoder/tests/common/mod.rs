//! Shared helpers for the clip-encoder integration tests (fixtures from xtask/fixtures/clip.py).
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use ndarray::{Array2, Array4};

/// `tests/fixtures/clip`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
}

/// A temporary copy of a fixture model directory, with `tokenizer.json.gz` unpacked.
pub fn model_dir(name: &str) -> tempfile::TempDir {
    let src = fixtures().join(name);
    let dst = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&src).expect("fixture dir") {
        let entry = entry.expect("entry");
        let file = entry.file_name().to_string_lossy().to_string();
        if file == "tokenizer.json.gz" {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(entry.path()).expect("open"))
                .read_to_end(&mut text)
                .expect("gunzip");
            std::fs::write(dst.path().join("tokenizer.json"), text).expect("write");
        } else if file.ends_with(".json") || file.ends_with(".safetensors") {
            std::fs::copy(entry.path(), dst.path().join(&file)).expect("copy");
        }
    }
    dst
}

/// The fixture prompts.
pub fn prompts() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("prompts.json")).expect("prompts");
    serde_json::from_str(&text).expect("prompts json")
}

/// HF token ids of the fixture prompts.
pub fn tokens() -> Vec<Vec<u32>> {
    let text = std::fs::read_to_string(fixtures().join("tokens.json")).expect("tokens");
    serde_json::from_str(&text).expect("tokens json")
}

/// The fixture image file names, in embedding order.
pub fn image_names() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("images.json")).expect("images");
    serde_json::from_str(&text).expect("images json")
}

/// Paths of the fixture images.
pub fn image_paths() -> Vec<PathBuf> {
    image_names()
        .iter()
        .map(|n| fixtures().join("images").join(n))
        .collect()
}

/// Reads a float32 `.npy` matrix.
pub fn npy2(path: impl AsRef<Path>) -> Array2<f32> {
    ndarray_npy::read_npy(path.as_ref()).expect("npy")
}

/// Reads a uint8 `.npy` `[n, 3, h, w]` array.
pub fn npy4_u8(path: impl AsRef<Path>) -> Array4<u8> {
    ndarray_npy::read_npy(path.as_ref()).expect("npy")
}

/// Rows of a tensor.
pub fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let (v, [n, d]) = clip_encoder::tensor_to_vec(t).expect("readback");
    (0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Row-wise cosine between our rows and a reference matrix.
pub fn row_cosines(ours: &[Vec<f32>], reference: &Array2<f32>) -> Vec<f64> {
    assert_eq!(ours.len(), reference.nrows(), "row count");
    ours.iter()
        .zip(reference.rows())
        .map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "embedding width");
            cosine(a, &b.to_vec())
        })
        .collect()
}

/// The CPU devices enabled by the crate features, fastest first.
pub fn cpu_devices() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut v: Vec<(&'static str, Device)> = Vec::new();
    #[cfg(feature = "flex")]
    v.push(("flex", Device::flex()));
    #[cfg(feature = "ndarray")]
    {
        #[allow(deprecated)]
        v.push(("ndarray", Device::ndarray()));
    }
    v
}

/// The default test device.
pub fn device() -> Device {
    cpu_devices()
        .into_iter()
        .next()
        .expect("a CPU backend feature")
        .1
}
