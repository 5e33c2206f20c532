//! Pure math of the image-to-prompt method of arXiv 2401.09763 ("CLIP + top-k neighbours"):
//! no model code, only `f32` slices.
//!
//! - **Aggregation** ([`aggregate`]): the top-k neighbours of an image (prompts whose CLIP text
//!   key is close to the image's CLIP embedding) are averaged into one target (sentence) vector,
//!   the *KNN prediction*: similarity-weighted mean (default), softmax with a temperature, or
//!   uniform ([`Aggregation`]). Neighbours with weight `<= 0` are ignored; the result is
//!   L2-normalised and comes with the normalised weight each neighbour got.
//! - **Blending** ([`blend`]): any number of predictions, each L2-normalised, mixed with weights
//!   and normalised again. The method blends the KNN prediction with a CLIP head's prediction,
//!   0.6 / 0.4 ([`BlendWeights::default`]); [`FusionConfig::fuse`] does both steps.
//! - **Metrics** ([`cosine`], [`mean_cosine`]): the method's score is the mean cosine of the
//!   predictions to the true prompts' sentence embeddings.
//! - **Tuning** ([`tune`]): grid search of `k`, the aggregation (softmax temperature) and the
//!   blend weights on validation queries, maximising mean cosine; the full, serialisable grid of
//!   scores comes back for an evaluation table. [`evaluate`] scores one setting.
//!
//! Every failure on bad input (no neighbours, `k = 0`, weights summing to 0, mismatched
//! dimensions, NaN) is a [`FusionError`]; nothing panics.
//!
//! # Example
//!
//! ```
//! use prompt_fusion::{Aggregation, FusionConfig, Neighbour, ValidationQuery, aggregate, blend,
//!                     cosine, tune, TuningGrid, BlendWeights};
//!
//! // Two neighbours' 3-d targets with their similarity scores, best first.
//! let (a, b) = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]);
//! let neighbours = [Neighbour::new(0.3, &a), Neighbour::new(0.1, &b)];
//!
//! // KNN prediction: weights 0.3 : 0.1, i.e. 0.75 / 0.25, then L2-normalised.
//! let knn = aggregate(&neighbours, 10, Aggregation::SimilarityWeighted)?;
//! assert!((knn.weights[0] - 0.75).abs() < 1e-6);
//! assert!((knn.vector[0] - 3.0 / 10f32.sqrt()).abs() < 1e-6);
//!
//! // Blend with a head's prediction, 0.6 / 0.4 (what `FusionConfig::default()` does, k = 100).
//! let head = [0.0, 0.0, 2.0];
//! let fused = blend(&[(&knn.vector, 0.6), (&head, 0.4)])?;
//! assert_eq!(fused, FusionConfig::default().fuse(&neighbours, Some(&head))?.embedding);
//! let norm: f32 = fused.iter().map(|x| x * x).sum::<f32>().sqrt();
//! assert!((norm - 1.0).abs() < 1e-6);
//!
//! // Tune on validation data: here the truth is the first neighbour's target, so k = 1 with
//! // all weight on the KNN prediction scores a perfect 1.
//! let queries = [ValidationQuery { neighbours: neighbours.to_vec(), head: Some(&head), truth: &a }];
//! let grid = TuningGrid {
//!     ks: vec![1, 2],
//!     aggregations: vec![Aggregation::Uniform],
//!     weights: vec![BlendWeights::knn_share(0.5), BlendWeights::knn_share(1.0)],
//! };
//! let report = tune(&queries, &grid)?;
//! assert_eq!(report.best.config.k, 1);
//! assert_eq!(report.best.config.weights, BlendWeights::new(1.0, 0.0));
//! assert!((report.best.mean_cosine - 1.0).abs() < 1e-6);
//! assert_eq!(report.scores.len(), 4);
//!
//! // The score of a prediction: cos(fused, a) = (0.6 * 3/sqrt(10)) / |0.6 u + 0.4 e3|.
//! let expected = 0.6 * 3.0 / 10f32.sqrt() / (0.36f32 + 0.16).sqrt();
//! assert!((cosine(&fused, &a)? - expected).abs() < 1e-6);
//! # Ok::<(), prompt_fusion::FusionError>(())
//! ```

mod aggregate;
mod blend;
mod error;
mod tune;
mod vector;

pub use aggregate::{Aggregated, Aggregation, Neighbour, aggregate, aggregate_into};
pub use blend::{BlendWeights, Fused, FusionConfig, blend, blend_into};
pub use error::{FusionError, Operand};
pub use tune::{GridScore, TuningGrid, TuningReport, ValidationQuery, evaluate, tune};
pub use vector::{UNIT_TOLERANCE, cosine, mean_cosine, normalise};
