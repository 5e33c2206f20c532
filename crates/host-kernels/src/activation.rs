//! Activations applied in place: exact (erf) GELU for BERT checkpoints and quick-GELU for
//! CLIP's OpenAI checkpoints.

use crate::simd::{dispatch, exp};
use crate::{Threads, for_row_chunks};

/// The error function as a rational approximation on `[-4, 4]` (clamped outside, where `erf`
/// is ±1 in f32): `x · P(x²) / Q(x²)` with the float coefficients used by Eigen and XLA.
/// Within 1e-6 of libm's `erff` everywhere.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906_3e-4;
    p = x2 * p - 2.954_600_2e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329_2e-3;
    q = x2 * q - 1.426_474e-2;
    x * p / q
}

/// `0.5 · x · (1 + erf(x / √2))`, the GELU that BERT checkpoints declare as `"gelu"`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `x · σ(1.702 x)`, the `"quick_gelu"` of OpenAI's CLIP checkpoints.
#[inline(always)]
pub fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

/// `0.5 · x · (1 + tanh(√(2/π) (x + 0.044715 x³)))`, HF's `gelu_new` / `gelu_pytorch_tanh`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let y = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    // tanh(y) = 1 - 2 / (e^{2y} + 1), saturating correctly at both ends.
    let tanh = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
    0.5 * x * (1.0 + tanh)
}

dispatch! {
    fn gelu_slice(values: &mut [f32]) {
        for x in values {
            *x = gelu_erf(*x);
        }
    }
}

dispatch! {
    fn quick_gelu_slice(values: &mut [f32]) {
        for x in values {
            *x = quick_gelu(*x);
        }
    }
}

/// Applies [`gelu_erf`] to every value, split across threads.
pub fn gelu_erf_inplace(values: &mut [f32], threads: Threads) {
    for_row_chunks(values, 1, threads, gelu_slice);
}

dispatch! {
    fn gelu_tanh_slice(values: &mut [f32]) {
        for x in values {
            *x = gelu_tanh(*x);
        }
    }
}

/// Applies [`gelu_tanh`] to every value, split across threads.
pub fn gelu_tanh_inplace(values: &mut [f32], threads: Threads) {
    for_row_chunks(values, 1, threads, gelu_tanh_slice);
}

/// Applies [`quick_gelu`] to every value, split across threads.
pub fn quick_gelu_inplace(values: &mut [f32], threads: Threads) {
    for_row_chunks(values, 1, threads, quick_gelu_slice);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its Maclaurin series (accurate to ~1e-10 for |x| <= 4, where the terms'
    /// cancellation stays small): the reference the f32 approximation is held to.
    fn erf_f64(x: f64) -> f64 {
        assert!(x.abs() <= 4.0);
        let mut sum = 0f64;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 400.0 {
                break;
            }
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    #[test]
    fn erf_is_within_1e6_on_a_dense_grid() {
        let mut worst = 0f64;
        for i in -4_000..=4_000 {
            let x = i as f32 * 1e-3;
            worst = worst.max((f64::from(erf(x)) - erf_f64(f64::from(x))).abs());
        }
        assert!(worst < 1e-6, "max |erf error| = {worst:e}");
        assert!((erf(10.0) - 1.0).abs() <= 1e-6 && (erf(-10.0) + 1.0).abs() <= 1e-6);
    }

    #[test]
    fn inplace_kernels_match_the_scalar_definitions() {
        let values: Vec<f32> = (0..100_003).map(|i| (i as f32 - 50_000.0) * 1e-4).collect();
        for threads in [Threads::Pool, Threads::One] {
            let mut g = values.clone();
            gelu_erf_inplace(&mut g, threads);
            let mut q = values.clone();
            quick_gelu_inplace(&mut q, threads);
            let mut t = values.clone();
            gelu_tanh_inplace(&mut t, threads);
            for (((&x, &g), &q), &t) in values.iter().zip(&g).zip(&q).zip(&t) {
                let x64 = f64::from(x);
                let g_ref = 0.5 * x64 * (1.0 + erf_f64(x64 / 2f64.sqrt()));
                let q_ref = x64 / (1.0 + (-1.702 * x64).exp());
                assert!(
                    (f64::from(g) - g_ref).abs() < 2e-6,
                    "gelu({x}) = {g}, want {g_ref}"
                );
                assert!(
                    (f64::from(q) - q_ref).abs() < 2e-6,
                    "quick_gelu({x}) = {q}, want {q_ref}"
                );
                let t_ref = 0.5
                    * x64
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3)))
                            .tanh());
                assert!(
                    (f64::from(t) - t_ref).abs() < 2e-6,
                    "gelu_tanh({x}) = {t}, want {t_ref}"
                );
            }
        }
    }
}
