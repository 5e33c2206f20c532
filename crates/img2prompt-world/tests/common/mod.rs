//! Helpers shared by the world crate's tests.

/// Cosine similarity of two equally wide vectors (the library's own metric).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    f64::from(img2prompt::prompt_fusion::cosine(a, b).expect("equally wide, finite vectors"))
}
