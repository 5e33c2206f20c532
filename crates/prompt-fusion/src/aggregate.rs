//! Neighbour aggregation: the KNN prediction.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{FusionError, Operand};
use crate::vector::{axpy, normalise_as};

/// How the neighbours' scores become averaging weights.
///
/// Neighbours whose weight is `<= 0` are ignored. Only the similarity weighting can produce such
/// weights from finite scores (a score `<= 0`); softmax weights are positive unless they
/// underflow to 0, uniform weights are always 1.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Aggregation {
    /// Weight = the neighbour's similarity score (the method's default).
    #[default]
    SimilarityWeighted,
    /// Weight = `exp(score / temperature)` (computed relative to the best score, so it never
    /// overflows). A small temperature approaches taking the best neighbour only, a large
    /// one approaches [`Aggregation::Uniform`].
    Softmax {
        /// The temperature, finite and `> 0`.
        temperature: f32,
    },
    /// Every neighbour weighs 1: the plain mean.
    Uniform,
}

impl Aggregation {
    /// Checks the parameters (a softmax temperature must be finite and `> 0`).
    ///
    /// # Errors
    /// [`FusionError::InvalidTemperature`].
    pub fn validate(&self) -> Result<(), FusionError> {
        match *self {
            Self::Softmax { temperature } if !(temperature.is_finite() && temperature > 0.0) => {
                Err(FusionError::InvalidTemperature { temperature })
            }
            _ => Ok(()),
        }
    }

    /// The unnormalised weight of a neighbour with score `score`, `best` being the highest score
    /// in the list (used by softmax only). Negative means "ignored".
    #[inline]
    pub(crate) fn raw_weight(&self, score: f32, best: f32) -> f64 {
        match *self {
            Self::SimilarityWeighted => f64::from(score),
            Self::Softmax { temperature } => {
                ((f64::from(score) - f64::from(best)) / f64::from(temperature)).exp()
            }
            Self::Uniform => 1.0,
        }
    }
}

impl fmt::Display for Aggregation {
    /// `similarity`, `softmax(T=0.05)` or `uniform`, for tables.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SimilarityWeighted => f.write_str("similarity"),
            Self::Softmax { temperature } => write!(f, "softmax(T={temperature})"),
            Self::Uniform => f.write_str("uniform"),
        }
    }
}

/// One retrieved neighbour: its similarity to the query and its target (sentence) vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour<'a> {
    /// Similarity of the neighbour's key to the query (cosine / inner product).
    pub score: f32,
    /// The neighbour's target vector (e.g. its prompt's 384-d sentence embedding).
    pub target: &'a [f32],
}

impl<'a> Neighbour<'a> {
    /// A neighbour with this score and target vector.
    pub const fn new(score: f32, target: &'a [f32]) -> Self {
        Self { score, target }
    }
}

/// The result of [`aggregate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregated {
    /// The L2-normalised weighted mean of the neighbours' targets (the KNN prediction).
    pub vector: Vec<f32>,
    /// The normalised weight actually given to each of the first `min(k, len)` neighbours, in
    /// their order: they sum to 1 (up to rounding), and ignored neighbours have 0.
    pub weights: Vec<f32>,
}

/// Aggregates the first `k` neighbours (all of them if there are fewer) into one L2-normalised
/// vector: the weighted mean of their targets, with weights from `aggregation`.
///
/// The neighbour list is expected best first (as a top-k search returns it); the order does not
/// change the result beyond rounding, but truncation to `k` keeps the first `k`.
///
/// # Errors
/// [`FusionError::ZeroK`], [`FusionError::NoNeighbours`], [`FusionError::InvalidTemperature`],
/// [`FusionError::NonFinite`] (a score, a target, or overflow), [`FusionError::DimensionMismatch`]
/// (the targets' lengths differ from the first one's), [`FusionError::NoPositiveWeight`] and
/// [`FusionError::ZeroNorm`] (the weighted targets cancel out).
pub fn aggregate(
    neighbours: &[Neighbour<'_>],
    k: usize,
    aggregation: Aggregation,
) -> Result<Aggregated, FusionError> {
    if k == 0 {
        return Err(FusionError::ZeroK);
    }
    let first = neighbours.first().ok_or(FusionError::NoNeighbours)?;
    let mut vector = vec![0.0; first.target.len()];
    let mut weights = Vec::with_capacity(k.min(neighbours.len()));
    aggregate_into(neighbours, k, aggregation, &mut vector, &mut weights)?;
    Ok(Aggregated { vector, weights })
}

/// [`aggregate`] without allocating: writes the vector into `out` (whose length is the expected
/// dimension; its previous contents are ignored) and the weights into `weights` (cleared first).
///
/// On error the contents of `out` and `weights` are unspecified.
///
/// # Errors
/// As [`aggregate`]; a target whose length differs from `out.len()` is a
/// [`FusionError::DimensionMismatch`].
pub fn aggregate_into(
    neighbours: &[Neighbour<'_>],
    k: usize,
    aggregation: Aggregation,
    out: &mut [f32],
    weights: &mut Vec<f32>,
) -> Result<(), FusionError> {
    if k == 0 {
        return Err(FusionError::ZeroK);
    }
    aggregation.validate()?;
    if neighbours.is_empty() {
        return Err(FusionError::NoNeighbours);
    }
    let used = &neighbours[..k.min(neighbours.len())];
    let dim = out.len();

    let mut best = f32::NEG_INFINITY;
    for (i, nb) in used.iter().enumerate() {
        if !nb.score.is_finite() {
            return Err(FusionError::NonFinite {
                operand: Operand::NeighbourScore(i),
            });
        }
        if nb.target.len() != dim {
            return Err(FusionError::DimensionMismatch {
                operand: Operand::NeighbourTarget(i),
                expected: dim,
                found: nb.target.len(),
            });
        }
        best = best.max(nb.score);
    }

    let total: f64 = used
        .iter()
        .map(|nb| aggregation.raw_weight(nb.score, best))
        .filter(|w| *w > 0.0)
        .sum();
    if total <= 0.0 {
        return Err(FusionError::NoPositiveWeight {
            considered: used.len(),
        });
    }

    out.fill(0.0);
    weights.clear();
    for nb in used {
        let raw = aggregation.raw_weight(nb.score, best);
        let w = if raw > 0.0 { (raw / total) as f32 } else { 0.0 };
        weights.push(w);
        if w > 0.0 {
            axpy(out, w, nb.target);
        }
    }

    normalise_as(out, Operand::Aggregate).map_err(|e| match e {
        // Point at the neighbour that brought the NaN/infinity in, if one did (else: overflow).
        FusionError::NonFinite { .. } => used
            .iter()
            .zip(weights.iter())
            .position(|(nb, w)| *w > 0.0 && nb.target.iter().any(|x| !x.is_finite()))
            .map_or(e, |i| FusionError::NonFinite {
                operand: Operand::NeighbourTarget(i),
            }),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nbs<'a>(items: &[(f32, &'a [f32])]) -> Vec<Neighbour<'a>> {
        items.iter().map(|&(s, t)| Neighbour::new(s, t)).collect()
    }

    #[test]
    fn similarity_weighted_mean_of_two_orthogonal_targets() {
        // Weights 3:1 -> direction (3, 1)/sqrt(10); normalised weights 0.75 / 0.25.
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let r = aggregate(
            &nbs(&[(0.3, &a), (0.1, &b)]),
            10,
            Aggregation::SimilarityWeighted,
        )
        .unwrap();
        let s = 10f32.sqrt();
        assert!((r.vector[0] - 3.0 / s).abs() < 1e-6, "{:?}", r.vector);
        assert!((r.vector[1] - 1.0 / s).abs() < 1e-6, "{:?}", r.vector);
        assert!((r.weights[0] - 0.75).abs() < 1e-6);
        assert!((r.weights[1] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn non_positive_scores_are_ignored_by_similarity_weighting() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let r = aggregate(
            &nbs(&[(0.5, &a), (0.0, &b), (-0.2, &b)]),
            3,
            Aggregation::SimilarityWeighted,
        )
        .unwrap();
        assert_eq!(r.vector, vec![1.0, 0.0]);
        assert_eq!(r.weights, vec![1.0, 0.0, 0.0]);
        // Uniform weighting does not look at the scores.
        let r = aggregate(&nbs(&[(0.5, &a), (-0.2, &b)]), 3, Aggregation::Uniform).unwrap();
        assert_eq!(r.weights, vec![0.5, 0.5]);
    }

    #[test]
    fn truncates_to_k() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let r = aggregate(&nbs(&[(0.5, &a), (0.4, &b)]), 1, Aggregation::Uniform).unwrap();
        assert_eq!(r.vector, vec![1.0, 0.0]);
        assert_eq!(r.weights, vec![1.0]);
    }

    #[test]
    fn softmax_weights_follow_the_formula() {
        // exp(0.5/0.1) : exp(0.4/0.1) = e : 1.
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let r = aggregate(
            &nbs(&[(0.4, &b), (0.5, &a)]),
            2,
            Aggregation::Softmax { temperature: 0.1 },
        )
        .unwrap();
        let e = std::f32::consts::E;
        assert!(
            (r.weights[1] - e / (1.0 + e)).abs() < 1e-6,
            "{:?}",
            r.weights
        );
        assert!(
            (r.weights[0] - 1.0 / (1.0 + e)).abs() < 1e-6,
            "{:?}",
            r.weights
        );
        let n = (1.0 + e * e).sqrt();
        assert!((r.vector[0] - e / n).abs() < 1e-6);
        assert!((r.vector[1] - 1.0 / n).abs() < 1e-6);
    }

    #[test]
    fn errors() {
        let a = [1.0f32, 0.0];
        let short = [1.0f32];
        let nan = [f32::NAN, 0.0];
        let agg = Aggregation::SimilarityWeighted;
        assert_eq!(
            aggregate(&nbs(&[(0.5, &a)]), 0, agg),
            Err(FusionError::ZeroK)
        );
        assert_eq!(aggregate(&[], 3, agg), Err(FusionError::NoNeighbours));
        assert_eq!(
            aggregate(&nbs(&[(0.0, &a), (-1.0, &a)]), 3, agg),
            Err(FusionError::NoPositiveWeight { considered: 2 })
        );
        assert_eq!(
            aggregate(&nbs(&[(0.5, &a), (0.4, &short)]), 3, agg),
            Err(FusionError::DimensionMismatch {
                operand: Operand::NeighbourTarget(1),
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            aggregate(&nbs(&[(0.5, &a), (f32::NAN, &a)]), 3, agg),
            Err(FusionError::NonFinite {
                operand: Operand::NeighbourScore(1)
            })
        );
        assert_eq!(
            aggregate(&nbs(&[(0.5, &a), (0.4, &nan)]), 3, agg),
            Err(FusionError::NonFinite {
                operand: Operand::NeighbourTarget(1)
            })
        );
        // A NaN target that is ignored (weight 0) does no harm.
        assert!(aggregate(&nbs(&[(0.5, &a), (-0.4, &nan)]), 3, agg).is_ok());
        assert_eq!(
            aggregate(
                &nbs(&[(0.5, &a)]),
                3,
                Aggregation::Softmax { temperature: 0.0 }
            ),
            Err(FusionError::InvalidTemperature { temperature: 0.0 })
        );
        let minus = [-1.0f32, 0.0];
        assert_eq!(
            aggregate(&nbs(&[(0.5, &a), (0.5, &minus)]), 3, agg),
            Err(FusionError::ZeroNorm {
                operand: Operand::Aggregate
            })
        );
        let mut out = [0.0f32; 3];
        assert!(matches!(
            aggregate_into(&nbs(&[(0.5, &a)]), 1, agg, &mut out, &mut Vec::new()),
            Err(FusionError::DimensionMismatch {
                expected: 3,
                found: 2,
                ..
            })
        ));
    }

    #[test]
    fn aggregation_serde_and_display() {
        let s = Aggregation::Softmax { temperature: 0.05 };
        assert_eq!(s.to_string(), "softmax(T=0.05)");
        assert_eq!(Aggregation::default(), Aggregation::SimilarityWeighted);
        assert_eq!(Aggregation::Uniform.to_string(), "uniform");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"kind":"softmax","temperature":0.05}"#);
        assert_eq!(serde_json::from_str::<Aggregation>(&json).unwrap(), s);
        assert_eq!(
            serde_json::to_string(&Aggregation::SimilarityWeighted).unwrap(),
            r#"{"kind":"similarity_weighted"}"#
        );
    }
}
