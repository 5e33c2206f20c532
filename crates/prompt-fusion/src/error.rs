//! The crate's error type.

use std::fmt;

/// Names the input a [`FusionError`] is about, so a message can point at the culprit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operand {
    /// The similarity score of the neighbour at this position of the (truncated) list.
    NeighbourScore(usize),
    /// The target vector of the neighbour at this position of the (truncated) list.
    NeighbourTarget(usize),
    /// The weighted sum of the neighbours' targets (before normalisation).
    Aggregate,
    /// The prediction at this position of a blend.
    Prediction(usize),
    /// The weight at this position of a blend.
    Weight(usize),
    /// The weighted sum of the blended predictions (before normalisation).
    Blend,
    /// The head (CLIP) prediction of a validation query.
    Head,
    /// The true target vector of a validation query.
    Truth,
    /// The first vector of a cosine.
    Left,
    /// The second vector of a cosine.
    Right,
    /// A vector given to [`normalise`](crate::normalise).
    Vector,
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeighbourScore(i) => write!(f, "score of neighbour {i}"),
            Self::NeighbourTarget(i) => write!(f, "target vector of neighbour {i}"),
            Self::Aggregate => f.write_str("weighted sum of the neighbours' targets"),
            Self::Prediction(i) => write!(f, "prediction {i}"),
            Self::Weight(i) => write!(f, "weight {i}"),
            Self::Blend => f.write_str("weighted sum of the predictions"),
            Self::Head => f.write_str("head prediction"),
            Self::Truth => f.write_str("true target vector"),
            Self::Left => f.write_str("first vector"),
            Self::Right => f.write_str("second vector"),
            Self::Vector => f.write_str("vector"),
        }
    }
}

/// Everything that can go wrong in this crate. All variants describe bad input; nothing panics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FusionError {
    /// `k` (the number of neighbours to use) was 0.
    #[error("k must be at least 1, got 0")]
    ZeroK,
    /// The neighbour list was empty.
    #[error("no neighbours to aggregate")]
    NoNeighbours,
    /// Every neighbour among the first `considered` had a weight <= 0, so there is nothing to
    /// average (with similarity weighting: no neighbour with a positive score).
    #[error("all {considered} neighbour weights are <= 0; nothing to aggregate")]
    NoPositiveWeight {
        /// How many neighbours were considered (the list truncated to `k`).
        considered: usize,
    },
    /// A vector's length differs from the others'.
    #[error("dimension mismatch: {operand} has {found} values, expected {expected}")]
    DimensionMismatch {
        /// The offending input.
        operand: Operand,
        /// The length the other inputs have.
        expected: usize,
        /// The length this input has.
        found: usize,
    },
    /// A NaN or infinite value (in an input, or an overflow in a sum).
    #[error("non-finite value in the {operand}")]
    NonFinite {
        /// Where the value was found.
        operand: Operand,
    },
    /// A vector that must be normalised has norm 0.
    #[error("the {operand} has zero norm and cannot be normalised")]
    ZeroNorm {
        /// The vector.
        operand: Operand,
    },
    /// A softmax temperature that is not finite and > 0.
    #[error("softmax temperature must be finite and > 0, got {temperature}")]
    InvalidTemperature {
        /// The temperature given.
        temperature: f32,
    },
    /// A blend weight that is negative or not finite.
    #[error("blend weights must be finite and >= 0; {operand} is {weight}")]
    InvalidWeight {
        /// Which weight.
        operand: Operand,
        /// Its value.
        weight: f32,
    },
    /// The blend weights sum to 0 (all are 0).
    #[error("blend weights sum to 0")]
    WeightsSumToZero,
    /// [`blend`](crate::blend) was given no predictions.
    #[error("no predictions to blend")]
    NoPredictions,
    /// A required list was empty (no validation queries, no pairs, an empty grid axis).
    #[error("empty input: no {0}")]
    Empty(&'static str),
    /// An error in one pair of [`mean_cosine`](crate::mean_cosine).
    #[error("pair {index}: {source}")]
    Pair {
        /// Position of the pair.
        index: usize,
        /// What went wrong.
        source: Box<FusionError>,
    },
    /// An error in one validation query of [`tune`](crate::tune) or [`evaluate`](crate::evaluate).
    #[error("validation query {index}: {source}")]
    Query {
        /// Position of the query.
        index: usize,
        /// What went wrong.
        source: Box<FusionError>,
    },
}

impl FusionError {
    pub(crate) fn in_pair(self, index: usize) -> Self {
        Self::Pair {
            index,
            source: Box::new(self),
        }
    }

    pub(crate) fn in_query(self, index: usize) -> Self {
        Self::Query {
            index,
            source: Box::new(self),
        }
    }
}
