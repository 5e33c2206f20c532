//! Deterministic synthetic unit vectors for tests and benchmarks.
//!
//! The generator is counter-based so that `xtask/bench/knn_faiss_python.py` reproduces the same
//! data with numpy: element `e` (row-major index) of a matrix drawn with `seed` is a standard
//! normal from Box–Muller on two uniforms `u(2e)`, `u(2e+1)`, where
//! `u(c) = (splitmix64(seed · 0x9E3779B97F4A7C15 + c) >> 11) · 2⁻⁵³`, and
//! `z = sqrt(-2 ln(1 - u₁)) · cos(2π u₂)`; rows are then L2-normalised. (Values agree with numpy to
//! float rounding, not bit for bit.)

/// SplitMix64 finaliser (Steele, Lea, Flood 2014).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn uniform(base: u64, c: u64) -> f64 {
    (splitmix64(base.wrapping_add(c)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// `n × dim` standard normal values (row-major), deterministic in `seed`.
pub fn gaussian(seed: u64, n: usize, dim: usize) -> Vec<f32> {
    let base = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..(n * dim) as u64)
        .map(|e| {
            let u1 = uniform(base, 2 * e);
            let u2 = uniform(base, 2 * e + 1);
            ((-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// `n` random unit vectors of width `dim` (uniform on the sphere), row-major.
pub fn unit_vectors(seed: u64, n: usize, dim: usize) -> Vec<f32> {
    let mut v = gaussian(seed, n, dim);
    for row in v.chunks_exact_mut(dim.max(1)) {
        crate::keys::l2_normalize(row);
    }
    v
}

/// `n` unit vectors with cluster structure, like real embeddings: row `i` is
/// `normalise(centre[i % clusters] + sigma · noise_i)` where the centres are
/// `unit_vectors(centre_seed, clusters, dim)` and the noise directions
/// `unit_vectors(noise_seed, n, dim)`. Draw queries with the same `centre_seed` and another
/// `noise_seed`. With `sigma = 1` a point's cosine to its centre is about 0.7.
pub fn clustered_unit_vectors(
    centre_seed: u64,
    noise_seed: u64,
    n: usize,
    dim: usize,
    clusters: usize,
    sigma: f32,
) -> Vec<f32> {
    let clusters = clusters.max(1);
    let centres = unit_vectors(centre_seed, clusters, dim);
    let mut v = unit_vectors(noise_seed, n, dim);
    for (i, row) in v.chunks_exact_mut(dim.max(1)).enumerate() {
        let c = &centres[(i % clusters) * dim..(i % clusters + 1) * dim];
        for (x, m) in row.iter_mut().zip(c) {
            *x = m + sigma * *x;
        }
        crate::keys::l2_normalize(row);
    }
    v
}

#[cfg(test)]
mod tests {
    /// Values printed by `xtask/bench/knn_faiss_python.py`'s numpy port of this generator.
    #[test]
    fn matches_the_numpy_port() {
        let close = |a: &[f32], b: &[f64]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (f64::from(*x) - y).abs() < 1e-5)
        };
        let u = super::unit_vectors(42, 2, 4);
        assert!(
            close(
                &u,
                &[
                    0.017693305388092995,
                    -0.028539594262838364,
                    -0.05839551240205765,
                    -0.9977286458015442,
                    -0.03266100957989693,
                    0.36039113998413086,
                    0.7929648160934448,
                    -0.4901615083217621
                ]
            ),
            "{u:?}"
        );
        let c = super::clustered_unit_vectors(1, 2, 3, 4, 2, 1.0);
        assert!(
            close(
                &c,
                &[
                    0.10154654830694199,
                    -0.7509865760803223,
                    0.12228410691022873,
                    0.6409009099006653,
                    -0.11848177015781403,
                    -0.3415752053260803,
                    -0.9270502328872681,
                    -0.09932894259691238,
                    -0.3891194760799408,
                    -0.5340306162834167,
                    -0.2927050292491913,
                    0.6911736726760864
                ]
            ),
            "{c:?}"
        );
    }
}
