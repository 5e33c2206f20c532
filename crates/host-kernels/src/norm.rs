//! LayerNorm over the rows of a row-major buffer, in place.

use crate::simd::{self, dispatch};
use crate::{Threads, for_row_chunks};

/// A LayerNorm's scale, shift and epsilon.
#[derive(Debug, Clone)]
pub struct LayerNormWeights {
    /// Scale (γ), one per column.
    pub gamma: Vec<f32>,
    /// Shift (β), one per column (zeros when the checkpoint has none).
    pub beta: Vec<f32>,
    /// Added to the variance.
    pub epsilon: f32,
}

impl LayerNormWeights {
    /// The row width this LayerNorm applies to.
    pub fn width(&self) -> usize {
        self.gamma.len()
    }
}

dispatch! {
    fn norm_rows(rows: &mut [f32], gamma: &[f32], beta: &[f32], epsilon: f32) {
        let width = gamma.len();
        for row in rows.chunks_exact_mut(width) {
            // Two passes (mean, then variance about it), as PyTorch does, in f32.
            let mean = simd::sum(row) / width as f32;
            let mut centred = [0f32; 8];
            for chunk in row.chunks(8) {
                for (c, &x) in centred.iter_mut().zip(chunk) {
                    *c += (x - mean) * (x - mean);
                }
            }
            let var = centred.iter().sum::<f32>() / width as f32;
            let inv = 1.0 / (var + epsilon).sqrt();
            for ((x, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
                *x = (*x - mean) * inv * g + b;
            }
        }
    }
}

/// Normalises every `norm.width()`-wide row of `x` in place: `(x - mean) / sqrt(var + eps) · γ + β`.
///
/// # Panics
/// If `x.len()` is not a multiple of the width or `gamma` and `beta` differ in length.
pub fn layer_norm(x: &mut [f32], norm: &LayerNormWeights, threads: Threads) {
    let width = norm.width();
    assert_eq!(
        norm.beta.len(),
        width,
        "LayerNorm gamma and beta differ in length"
    );
    assert!(
        width > 0 && x.len().is_multiple_of(width),
        "rows of {width} expected"
    );
    for_row_chunks(x, width, threads, |rows| {
        norm_rows(rows, &norm.gamma, &norm.beta, norm.epsilon)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_float64_reference() {
        let width = 384;
        let rows = 97;
        let x: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 0.01 + (i / width) as f32)
            .collect();
        let norm = LayerNormWeights {
            gamma: (0..width).map(|i| 0.5 + i as f32 * 0.01).collect(),
            beta: (0..width).map(|i| i as f32 * -0.003).collect(),
            epsilon: 1e-12,
        };
        for threads in [Threads::Pool, Threads::One] {
            let mut y = x.clone();
            layer_norm(&mut y, &norm, threads);
            for (r, (row, out)) in x.chunks(width).zip(y.chunks(width)).enumerate() {
                let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / width as f64;
                let var = row
                    .iter()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum::<f64>()
                    / width as f64;
                for c in 0..width {
                    let want = (f64::from(row[c]) - mean) / (var + 1e-12).sqrt()
                        * f64::from(norm.gamma[c])
                        + f64::from(norm.beta[c]);
                    assert!(
                        (f64::from(out[c]) - want).abs() < 1e-4,
                        "row {r} col {c}: {} vs {want}",
                        out[c]
                    );
                }
            }
        }
    }
}
