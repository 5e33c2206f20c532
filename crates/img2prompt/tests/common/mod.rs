//! Helpers shared by the CLI integration tests.

#![allow(dead_code)]

use std::path::Path;

/// Reads a float32 `[n, d]` .npy file into rows.
pub fn read_rows(path: &Path) -> Vec<Vec<f32>> {
    let array: ndarray::Array2<f32> = ndarray_npy::read_npy(path).expect("read npy");
    array.outer_iter().map(|r| r.to_vec()).collect()
}

/// Cosine similarity of two vectors, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vector widths differ");
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
