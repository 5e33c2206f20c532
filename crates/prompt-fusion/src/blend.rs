//! Blending predictions, and the whole fusion (aggregate, then blend with the head).

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregation, Neighbour, aggregate};
use crate::error::{FusionError, Operand};
use crate::vector::{axpy, normalise_as, unit_scale};

/// Blends predictions: the L2-normalised weighted sum of the L2-normalised `predictions`,
/// each given as `(vector, weight)`.
///
/// Only the ratios of the weights matter. Each prediction is normalised first, so a weight means
/// the same whatever the scale of its vector. A prediction with weight 0 contributes nothing
/// (only its length is checked), so weights `(1, 0)` return the first prediction normalised
/// (bit for bit the prediction itself if it is unit-norm, see
/// [`normalise`](crate::normalise)), and blending equal vectors returns that vector.
///
/// # Errors
/// [`FusionError::NoPredictions`]; [`FusionError::InvalidWeight`] (negative or not finite);
/// [`FusionError::WeightsSumToZero`]; [`FusionError::DimensionMismatch`] (lengths differ from the
/// first prediction's); [`FusionError::NonFinite`] and [`FusionError::ZeroNorm`] (a prediction
/// with a positive weight, or the weighted sum).
pub fn blend(predictions: &[(&[f32], f32)]) -> Result<Vec<f32>, FusionError> {
    let first = predictions.first().ok_or(FusionError::NoPredictions)?;
    let mut out = vec![0.0; first.0.len()];
    blend_into(predictions, &mut out)?;
    Ok(out)
}

/// [`blend`] without allocating: writes into `out`, whose length is the expected dimension (its
/// previous contents are ignored; on error they are unspecified).
///
/// # Errors
/// As [`blend`]; a prediction whose length differs from `out.len()` is a
/// [`FusionError::DimensionMismatch`].
pub fn blend_into(predictions: &[(&[f32], f32)], out: &mut [f32]) -> Result<(), FusionError> {
    if predictions.is_empty() {
        return Err(FusionError::NoPredictions);
    }
    let mut total = 0.0f64;
    for (i, &(v, w)) in predictions.iter().enumerate() {
        if !(w.is_finite() && w >= 0.0) {
            return Err(FusionError::InvalidWeight {
                operand: Operand::Weight(i),
                weight: w,
            });
        }
        if v.len() != out.len() {
            return Err(FusionError::DimensionMismatch {
                operand: Operand::Prediction(i),
                expected: out.len(),
                found: v.len(),
            });
        }
        total += f64::from(w);
    }
    if total <= 0.0 {
        return Err(FusionError::WeightsSumToZero);
    }
    out.fill(0.0);
    for (i, &(v, w)) in predictions.iter().enumerate() {
        if w > 0.0 {
            let scale = unit_scale(v, Operand::Prediction(i))?;
            axpy(out, (f64::from(w) / total * scale) as f32, v);
        }
    }
    normalise_as(out, Operand::Blend)
}

/// The weights of the two predictions the method blends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlendWeights {
    /// Weight of the KNN prediction (aggregated neighbours).
    pub knn: f32,
    /// Weight of the CLIP head's prediction.
    pub clip: f32,
}

impl Default for BlendWeights {
    /// The method's 0.6 (KNN) / 0.4 (CLIP head).
    fn default() -> Self {
        Self {
            knn: 0.6,
            clip: 0.4,
        }
    }
}

impl BlendWeights {
    /// Weights `knn` and `clip`.
    pub const fn new(knn: f32, clip: f32) -> Self {
        Self { knn, clip }
    }

    /// `knn` for the KNN prediction and `1 - knn` for the head (`knn` in `[0, 1]`).
    pub fn knn_share(knn: f32) -> Self {
        Self {
            knn,
            clip: 1.0 - knn,
        }
    }

    /// Checks both weights are finite and `>= 0` with a positive sum.
    ///
    /// # Errors
    /// [`FusionError::InvalidWeight`] (`Weight(0)` is `knn`, `Weight(1)` is `clip`),
    /// [`FusionError::WeightsSumToZero`].
    pub fn validate(&self) -> Result<(), FusionError> {
        for (i, w) in [self.knn, self.clip].into_iter().enumerate() {
            if !(w.is_finite() && w >= 0.0) {
                return Err(FusionError::InvalidWeight {
                    operand: Operand::Weight(i),
                    weight: w,
                });
            }
        }
        if f64::from(self.knn) + f64::from(self.clip) <= 0.0 {
            return Err(FusionError::WeightsSumToZero);
        }
        Ok(())
    }
}

/// A complete fusion setting: how many neighbours, how to weigh them, how to blend the result
/// with the head's prediction. What [`tune`](crate::tune) picks and a predictor applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FusionConfig {
    /// Number of neighbours used (the first `k` of the list).
    pub k: usize,
    /// How the neighbours are weighed.
    pub aggregation: Aggregation,
    /// KNN / head blend weights.
    pub weights: BlendWeights,
}

impl Default for FusionConfig {
    /// `k = 100`, similarity-weighted mean, blend 0.6 / 0.4.
    fn default() -> Self {
        Self {
            k: 100,
            aggregation: Aggregation::default(),
            weights: BlendWeights::default(),
        }
    }
}

/// The result of [`FusionConfig::fuse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// The fused, L2-normalised prediction.
    pub embedding: Vec<f32>,
    /// The KNN prediction alone (L2-normalised).
    pub knn: Vec<f32>,
    /// The normalised aggregation weight of each of the first `min(k, len)` neighbours
    /// (0 for ignored ones), as in [`Aggregated::weights`](crate::Aggregated::weights).
    pub weights: Vec<f32>,
}

impl FusionConfig {
    /// Checks `k >= 1`, the aggregation's parameters and the blend weights.
    ///
    /// # Errors
    /// [`FusionError::ZeroK`], [`FusionError::InvalidTemperature`],
    /// [`FusionError::InvalidWeight`], [`FusionError::WeightsSumToZero`].
    pub fn validate(&self) -> Result<(), FusionError> {
        if self.k == 0 {
            return Err(FusionError::ZeroK);
        }
        self.aggregation.validate()?;
        self.weights.validate()
    }

    /// Fuses one query: [`aggregate`] the first `k` neighbours (the KNN prediction), then
    /// [`blend`] it with the head's prediction using `weights`. Without a head prediction the
    /// KNN prediction is the result, whatever the weights.
    ///
    /// # Errors
    /// [`FusionConfig::validate`]'s, [`aggregate`]'s and [`blend`]'s (the head is
    /// `Prediction(1)`).
    pub fn fuse(
        &self,
        neighbours: &[Neighbour<'_>],
        head: Option<&[f32]>,
    ) -> Result<Fused, FusionError> {
        self.validate()?;
        let agg = aggregate(neighbours, self.k, self.aggregation)?;
        let embedding = match head {
            Some(h) => blend(&[(&agg.vector, self.weights.knn), (h, self.weights.clip)])?,
            None => agg.vector.clone(),
        };
        Ok(Fused {
            embedding,
            knn: agg.vector,
            weights: agg.weights,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blend_of_orthogonal_unit_vectors_follows_the_weights() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 5.0]; // normalised before weighting
        let r = blend(&[(&a, 0.6), (&b, 0.4)]).unwrap();
        let n = (0.36f32 + 0.16).sqrt();
        assert!((r[0] - 0.6 / n).abs() < 1e-6, "{r:?}");
        assert!((r[1] - 0.4 / n).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn blend_three_predictions() {
        let a = [1.0f32, 0.0, 0.0];
        let b = [0.0f32, 1.0, 0.0];
        let c = [0.0f32, 0.0, 2.0];
        let r = blend(&[(&a, 1.0), (&b, 1.0), (&c, 2.0)]).unwrap();
        let n = 6f32.sqrt();
        let want = [1.0 / n, 1.0 / n, 2.0 / n];
        for (x, y) in r.iter().zip(want) {
            assert!((x - y).abs() < 1e-6, "{r:?}");
        }
    }

    #[test]
    fn blend_errors() {
        let a = [1.0f32, 0.0];
        let z = [0.0f32, 0.0];
        let short = [1.0f32];
        assert_eq!(blend(&[]), Err(FusionError::NoPredictions));
        assert_eq!(
            blend(&[(&a, 0.0), (&a, 0.0)]),
            Err(FusionError::WeightsSumToZero)
        );
        assert_eq!(
            blend(&[(&a, 1.0), (&a, -0.5)]),
            Err(FusionError::InvalidWeight {
                operand: Operand::Weight(1),
                weight: -0.5
            })
        );
        assert!(matches!(
            blend(&[(&a, f32::NAN)]),
            Err(FusionError::InvalidWeight { .. })
        ));
        assert_eq!(
            blend(&[(&a, 1.0), (&short, 1.0)]),
            Err(FusionError::DimensionMismatch {
                operand: Operand::Prediction(1),
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            blend(&[(&a, 1.0), (&z, 1.0)]),
            Err(FusionError::ZeroNorm {
                operand: Operand::Prediction(1)
            })
        );
        // A zero vector with weight 0 is never normalised.
        assert_eq!(blend(&[(&a, 1.0), (&z, 0.0)]).unwrap(), a.to_vec());
        let minus = [-1.0f32, 0.0];
        assert_eq!(
            blend(&[(&a, 1.0), (&minus, 1.0)]),
            Err(FusionError::ZeroNorm {
                operand: Operand::Blend
            })
        );
    }

    #[test]
    fn config_validation() {
        assert!(FusionConfig::default().validate().is_ok());
        let mut c = FusionConfig {
            k: 0,
            ..FusionConfig::default()
        };
        assert_eq!(c.validate(), Err(FusionError::ZeroK));
        c.k = 5;
        c.weights = BlendWeights::new(0.0, 0.0);
        assert_eq!(c.validate(), Err(FusionError::WeightsSumToZero));
        c.weights = BlendWeights::new(-1.0, 2.0);
        assert!(matches!(
            c.validate(),
            Err(FusionError::InvalidWeight {
                operand: Operand::Weight(0),
                ..
            })
        ));
        c.weights = BlendWeights::knn_share(0.7);
        c.aggregation = Aggregation::Softmax {
            temperature: f32::NAN,
        };
        assert!(matches!(
            c.validate(),
            Err(FusionError::InvalidTemperature { .. })
        ));
    }

    #[test]
    fn fuse_blends_knn_with_head() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let nbs = [Neighbour::new(0.9, &a)];
        let cfg = FusionConfig::default();
        let f = cfg.fuse(&nbs, Some(&b)).unwrap();
        assert_eq!(f.knn, vec![1.0, 0.0]);
        assert_eq!(f.weights, vec![1.0]);
        let n = (0.36f32 + 0.16).sqrt();
        assert!((f.embedding[0] - 0.6 / n).abs() < 1e-6);
        assert!((f.embedding[1] - 0.4 / n).abs() < 1e-6);
        // No head: the KNN prediction.
        let f = cfg.fuse(&nbs, None).unwrap();
        assert_eq!(f.embedding, f.knn);
        // The head's dimension is checked.
        assert!(matches!(
            cfg.fuse(&nbs, Some(&[1.0])),
            Err(FusionError::DimensionMismatch {
                operand: Operand::Prediction(1),
                ..
            })
        ));
    }
}
