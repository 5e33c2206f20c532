//! Vector kernels (dot products, normalisation) and the cosine metrics.
//!
//! Sums are vectorisable (independent accumulators, no fused multiply-add); dot products and
//! norms accumulate in `f64`, where every product of two `f32`s is exact.

use crate::error::{FusionError, Operand};

/// How far `‖v‖²` may be from 1 for `v` to count as unit-norm already. An `f32` vector
/// normalised by [`normalise`] has `|‖v‖² − 1| ≤ 2⁻²³ ≈ 1.2e-7`, well inside this, so
/// normalisation is idempotent bit for bit.
pub const UNIT_TOLERANCE: f64 = 1e-6;

/// `Σ aᵢ·bᵢ` accumulated in `f64` (each product is exact in `f64`).
#[inline]
pub(crate) fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let (ca, ra) = a.as_chunks::<4>();
    let (cb, rb) = b.as_chunks::<4>();
    let mut acc = [0.0f64; 4];
    for (x, y) in ca.iter().zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += f64::from(*x) * f64::from(*y);
        }
    }
    let tail: f64 = ra
        .iter()
        .zip(rb)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// `‖a‖²` accumulated in `f64`.
#[inline]
pub(crate) fn norm_sq_f64(a: &[f32]) -> f64 {
    dot_f64(a, a)
}

/// `out += w · x`, element-wise (a plain multiply then add, no fused multiply-add, so
/// `0 + 1·x == x` exactly).
#[inline]
pub(crate) fn axpy(out: &mut [f32], w: f32, x: &[f32]) {
    debug_assert_eq!(out.len(), x.len());
    for (o, x) in out.iter_mut().zip(x) {
        *o += w * x;
    }
}

/// The factor that makes `v` unit-norm: `1/‖v‖`, or exactly 1 when `v` is unit-norm already
/// (within [`UNIT_TOLERANCE`]).
pub(crate) fn unit_scale(v: &[f32], operand: Operand) -> Result<f64, FusionError> {
    let n2 = norm_sq_f64(v);
    if !n2.is_finite() {
        return Err(FusionError::NonFinite { operand });
    }
    if n2 == 0.0 {
        return Err(FusionError::ZeroNorm { operand });
    }
    if (n2 - 1.0).abs() <= UNIT_TOLERANCE {
        Ok(1.0)
    } else {
        Ok(1.0 / n2.sqrt())
    }
}

pub(crate) fn normalise_as(v: &mut [f32], operand: Operand) -> Result<(), FusionError> {
    let scale = unit_scale(v, operand)?;
    if scale != 1.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) * scale) as f32;
        }
    }
    Ok(())
}

/// L2-normalises `v` in place.
///
/// A vector whose squared norm is within [`UNIT_TOLERANCE`] of 1 is left unchanged, so
/// normalising a normalised vector returns it bit for bit.
///
/// # Errors
/// [`FusionError::NonFinite`] if `v` holds NaN or infinity, [`FusionError::ZeroNorm`] if it is
/// all zeros (or empty).
pub fn normalise(v: &mut [f32]) -> Result<(), FusionError> {
    normalise_as(v, Operand::Vector)
}

/// Cosine similarity of `a` and `b`, computed in `f64`.
///
/// By convention the cosine with an all-zero vector is 0 (it points nowhere).
///
/// # Errors
/// [`FusionError::DimensionMismatch`] if the lengths differ, [`FusionError::NonFinite`] if
/// either holds NaN or infinity.
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f32, FusionError> {
    if a.len() != b.len() {
        return Err(FusionError::DimensionMismatch {
            operand: Operand::Right,
            expected: a.len(),
            found: b.len(),
        });
    }
    let na = norm_sq_f64(a);
    if !na.is_finite() {
        return Err(FusionError::NonFinite {
            operand: Operand::Left,
        });
    }
    let nb = norm_sq_f64(b);
    if !nb.is_finite() {
        return Err(FusionError::NonFinite {
            operand: Operand::Right,
        });
    }
    if na == 0.0 || nb == 0.0 {
        return Ok(0.0);
    }
    let c = dot_f64(a, b) / (na.sqrt() * nb.sqrt());
    Ok(c.clamp(-1.0, 1.0) as f32)
}

/// Mean cosine similarity over `(prediction, truth)` pairs, accumulated in `f64`: the score of
/// the method (and of the Kaggle "Stable Diffusion - Image to Prompts" competition).
///
/// # Errors
/// [`FusionError::Empty`] if there are no pairs; a [`cosine`] error of a pair, wrapped in
/// [`FusionError::Pair`] with its position.
pub fn mean_cosine<'a, I>(pairs: I) -> Result<f64, FusionError>
where
    I: IntoIterator<Item = (&'a [f32], &'a [f32])>,
{
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for (index, (a, b)) in pairs.into_iter().enumerate() {
        sum += f64::from(cosine(a, b).map_err(|e| e.in_pair(index))?);
        count += 1;
    }
    if count == 0 {
        return Err(FusionError::Empty("pairs"));
    }
    Ok(sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_kernels_match_naive_sum_for_all_tail_lengths() {
        for len in 0..40 {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos() - 0.2).collect();
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((dot_f64(&a, &b) - naive).abs() < 1e-12, "len {len}");
        }
    }

    #[test]
    fn normalise_scales_to_unit_and_is_idempotent() {
        let mut v = vec![3.0f32, 4.0];
        normalise(&mut v).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
        let before = v.clone();
        normalise(&mut v).unwrap();
        assert_eq!(v, before);
    }

    #[test]
    fn normalise_rejects_zero_and_non_finite() {
        assert_eq!(
            normalise(&mut [0.0, 0.0]),
            Err(FusionError::ZeroNorm {
                operand: Operand::Vector
            })
        );
        assert_eq!(
            normalise(&mut []),
            Err(FusionError::ZeroNorm {
                operand: Operand::Vector
            })
        );
        assert_eq!(
            normalise(&mut [1.0, f32::NAN]),
            Err(FusionError::NonFinite {
                operand: Operand::Vector
            })
        );
    }

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[0.0, 2.0]).unwrap()).abs() < 1e-7);
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]).unwrap() - 1.0).abs() < 1e-7);
        assert!((cosine(&[1.0, 0.0], &[-3.0, 0.0]).unwrap() + 1.0).abs() < 1e-7);
        // 45 degrees.
        let c = cosine(&[1.0, 0.0], &[1.0, 1.0]).unwrap();
        assert!((c - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-7);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]).unwrap(), 0.0);
    }

    #[test]
    fn cosine_errors() {
        assert_eq!(
            cosine(&[1.0, 0.0], &[1.0]),
            Err(FusionError::DimensionMismatch {
                operand: Operand::Right,
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            cosine(&[f32::INFINITY, 0.0], &[1.0, 0.0]),
            Err(FusionError::NonFinite {
                operand: Operand::Left
            })
        );
        assert_eq!(
            cosine(&[1.0, 0.0], &[f32::NAN, 0.0]),
            Err(FusionError::NonFinite {
                operand: Operand::Right
            })
        );
    }

    #[test]
    fn mean_cosine_averages_and_reports_the_bad_pair() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let m = mean_cosine([(&a[..], &a[..]), (&a[..], &b[..])]).unwrap();
        assert!((m - 0.5).abs() < 1e-12);
        assert_eq!(
            mean_cosine(std::iter::empty::<(&[f32], &[f32])>()),
            Err(FusionError::Empty("pairs"))
        );
        let short = [1.0f32];
        let err = mean_cosine([(&a[..], &a[..]), (&a[..], &short[..])]).unwrap_err();
        assert!(matches!(err, FusionError::Pair { index: 1, .. }), "{err}");
    }
}
