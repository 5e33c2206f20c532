//! Grid search of `k`, the aggregation and the blend weights on validation queries.
//!
//! The search shares work across grid points: for each query and aggregation the neighbours'
//! weighted sum is built once, incrementally over the sorted `k` candidates, and each blend weight
//! is then scored in O(1) from three dot products, using
//! `cos(a·u + b·h, t) = (a·u·t + b·h·t) / (‖t‖·√(a² + b² + 2ab·u·h))` for unit `u`, `h`.
//! Queries are processed in fixed-size chunks, in parallel over the available cores; partial sums
//! are combined in chunk order, so the result does not depend on the number of threads.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregation, Neighbour};
use crate::blend::{BlendWeights, FusionConfig};
use crate::error::{FusionError, Operand};
use crate::vector::{axpy, dot_f64, norm_sq_f64};

/// One validation query: what the predictor sees for an image, and the true answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationQuery<'a> {
    /// The retrieved neighbours, best first (at least as many as the largest `k` of interest).
    pub neighbours: Vec<Neighbour<'a>>,
    /// The head's prediction (the paper's "CLIP" prediction), if there is a head. Without it the
    /// query's fused prediction is its KNN prediction, whatever the blend weights.
    pub head: Option<&'a [f32]>,
    /// The true target vector (the sentence embedding of the image's real prompt). An all-zero
    /// truth scores 0 everywhere, as in [`cosine`](crate::cosine).
    pub truth: &'a [f32],
}

/// The grid [`tune`] searches: every combination of the three axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningGrid {
    /// Candidate `k`s (each >= 1). A query with fewer neighbours than `k` uses all it has.
    pub ks: Vec<usize>,
    /// Candidate aggregations (softmax once per temperature to try).
    pub aggregations: Vec<Aggregation>,
    /// Candidate blend weights.
    pub weights: Vec<BlendWeights>,
}

impl Default for TuningGrid {
    /// `k` in {1, 10, 50, 100, 200}; similarity-weighted, uniform and softmax at
    /// T in {0.01, 0.02, 0.05, 0.1}; (KNN, head) weights (0.0, 1.0), (0.1, 0.9), ..., (1.0, 0.0).
    fn default() -> Self {
        Self {
            ks: vec![1, 10, 50, 100, 200],
            aggregations: vec![
                Aggregation::SimilarityWeighted,
                Aggregation::Uniform,
                Aggregation::Softmax { temperature: 0.01 },
                Aggregation::Softmax { temperature: 0.02 },
                Aggregation::Softmax { temperature: 0.05 },
                Aggregation::Softmax { temperature: 0.1 },
            ],
            weights: (0..=10u8)
                .map(|i| BlendWeights::new(f32::from(i) / 10.0, f32::from(10 - i) / 10.0))
                .collect(),
        }
    }
}

impl TuningGrid {
    /// Number of grid points.
    pub fn len(&self) -> usize {
        self.ks.len() * self.aggregations.len() * self.weights.len()
    }

    /// Whether the grid has no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The grid points in the order of [`TuningReport::scores`]: `k` outermost (in the order
    /// given), then aggregation, then weights.
    pub fn configs(&self) -> impl Iterator<Item = FusionConfig> + '_ {
        self.ks.iter().flat_map(move |&k| {
            self.aggregations.iter().flat_map(move |&aggregation| {
                self.weights.iter().map(move |&weights| FusionConfig {
                    k,
                    aggregation,
                    weights,
                })
            })
        })
    }

    /// Checks every axis is non-empty and every value valid.
    ///
    /// # Errors
    /// [`FusionError::Empty`], [`FusionError::ZeroK`], [`FusionError::InvalidTemperature`],
    /// [`FusionError::InvalidWeight`], [`FusionError::WeightsSumToZero`].
    pub fn validate(&self) -> Result<(), FusionError> {
        if self.ks.is_empty() {
            return Err(FusionError::Empty("k candidates"));
        }
        if self.aggregations.is_empty() {
            return Err(FusionError::Empty("aggregation candidates"));
        }
        if self.weights.is_empty() {
            return Err(FusionError::Empty("blend weight candidates"));
        }
        if self.ks.contains(&0) {
            return Err(FusionError::ZeroK);
        }
        for a in &self.aggregations {
            a.validate()?;
        }
        for w in &self.weights {
            w.validate()?;
        }
        Ok(())
    }
}

/// The score of one grid point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridScore {
    /// The grid point.
    pub config: FusionConfig,
    /// Mean cosine of its fused predictions to the true targets.
    pub mean_cosine: f64,
}

/// What [`tune`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningReport {
    /// The best grid point (the first in grid order among equal scores).
    pub best: GridScore,
    /// Every grid point's score, in [`TuningGrid::configs`] order.
    pub scores: Vec<GridScore>,
    /// Mean cosine of the head's predictions alone, when every query has one.
    pub head_only: Option<f64>,
    /// Number of validation queries.
    pub queries: usize,
}

impl TuningReport {
    /// The score of `config`, if it is a grid point.
    pub fn score(&self, config: &FusionConfig) -> Option<f64> {
        self.scores
            .iter()
            .find(|s| s.config == *config)
            .map(|s| s.mean_cosine)
    }
}

/// Mean cosine of `config`'s fused predictions to the true targets over `queries`: the score
/// [`tune`] gives that grid point, equal (up to rounding) to averaging
/// [`cosine`](crate::cosine)`(`[`FusionConfig::fuse`]`(..), truth)`.
///
/// # Errors
/// As [`tune`].
pub fn evaluate(
    queries: &[ValidationQuery<'_>],
    config: &FusionConfig,
) -> Result<f64, FusionError> {
    let grid = TuningGrid {
        ks: vec![config.k],
        aggregations: vec![config.aggregation],
        weights: vec![config.weights],
    };
    Ok(tune(queries, &grid)?.best.mean_cosine)
}

/// Grid search: scores every point of `grid` by the mean cosine of its fused predictions
/// ([`FusionConfig::fuse`]) to the true targets over `queries`, and returns the best point and
/// all scores.
///
/// # Errors
/// [`TuningGrid::validate`]'s; [`FusionError::Empty`] without queries; otherwise the first
/// (lowest-index) bad query's error wrapped in [`FusionError::Query`]: no neighbours, a
/// dimension mismatch (with the truth's length), a non-finite value, a zero-norm head, or a
/// KNN prediction or blend that cannot be formed at some grid point
/// ([`FusionError::NoPositiveWeight`], [`FusionError::ZeroNorm`]).
pub fn tune(
    queries: &[ValidationQuery<'_>],
    grid: &TuningGrid,
) -> Result<TuningReport, FusionError> {
    grid.validate()?;
    if queries.is_empty() {
        return Err(FusionError::Empty("validation queries"));
    }
    let plan = Plan::new(grid);
    let all_heads = queries.iter().all(|q| q.head.is_some());

    let chunks = queries.len().div_ceil(CHUNK);
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(chunks);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<ChunkSums>> = Mutex::new(Vec::with_capacity(chunks));

    let work = || {
        let mut scratch = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= chunks {
                break;
            }
            let start = c * CHUNK;
            let end = (start + CHUNK).min(queries.len());
            let mut sums = vec![0.0f64; plan.len + 1];
            let r = queries[start..end]
                .iter()
                .enumerate()
                .try_for_each(|(i, q)| {
                    plan.score_query(q, &mut scratch, &mut sums)
                        .map_err(|e| e.in_query(start + i))
                })
                .map(|()| sums);
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            // A poisoned lock only means another worker panicked; its data is still whole.
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((c, r));
        }
    };
    if threads <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }

    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|(c, _)| *c);
    let mut total = vec![0.0f64; plan.len + 1];
    for (_, r) in results {
        for (t, s) in total.iter_mut().zip(r?) {
            *t += s;
        }
    }

    let n = queries.len() as f64;
    let scores: Vec<GridScore> = grid
        .configs()
        .zip(&total)
        .map(|(config, s)| GridScore {
            config,
            mean_cosine: s / n,
        })
        .collect();
    let best = scores
        .iter()
        .copied()
        .reduce(|best, s| {
            if s.mean_cosine > best.mean_cosine {
                s
            } else {
                best
            }
        })
        .ok_or(FusionError::Empty("grid points"))?;
    Ok(TuningReport {
        best,
        scores,
        head_only: all_heads.then(|| total[plan.len] / n),
        queries: queries.len(),
    })
}

/// A chunk's index and its per-grid-point cosine sums (or its first error).
type ChunkSums = (usize, Result<Vec<f64>, FusionError>);

/// Queries per unit of parallel work (fixed, so results do not depend on the thread count).
const CHUNK: usize = 64;

/// The grid, arranged for the scoring loop.
struct Plan {
    /// `(k, index of k in the grid)`, sorted by `k`.
    ks: Vec<(usize, usize)>,
    aggregations: Vec<Aggregation>,
    /// `(knn, clip)` weights as `f64`.
    weights: Vec<(f64, f64)>,
    /// Number of grid points; `sums[len]` is the head-only sum.
    len: usize,
}

impl Plan {
    fn new(grid: &TuningGrid) -> Self {
        let mut ks: Vec<(usize, usize)> = grid.ks.iter().copied().zip(0..).collect();
        ks.sort_unstable();
        Self {
            ks,
            aggregations: grid.aggregations.clone(),
            weights: grid
                .weights
                .iter()
                .map(|w| (f64::from(w.knn), f64::from(w.clip)))
                .collect(),
            len: grid.len(),
        }
    }

    fn index(&self, ki: usize, ai: usize, wi: usize) -> usize {
        (ki * self.aggregations.len() + ai) * self.weights.len() + wi
    }

    /// Adds this query's cosine at every grid point to `sums` (and the head-only cosine to
    /// `sums[self.len]`).
    fn score_query(
        &self,
        q: &ValidationQuery<'_>,
        sum: &mut Vec<f32>,
        sums: &mut [f64],
    ) -> Result<(), FusionError> {
        let dim = q.truth.len();
        let n = q.neighbours.len();
        if n == 0 {
            return Err(FusionError::NoNeighbours);
        }
        let k_max = self.ks.last().map_or(1, |&(k, _)| k).min(n);
        let used = &q.neighbours[..k_max];
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
        }
        let t_norm = checked_norm(q.truth, Operand::Truth)?;
        let head = match q.head {
            None => None,
            Some(h) => {
                if h.len() != dim {
                    return Err(FusionError::DimensionMismatch {
                        operand: Operand::Head,
                        expected: dim,
                        found: h.len(),
                    });
                }
                let h_norm = checked_norm(h, Operand::Head)?;
                if h_norm == 0.0 {
                    return Err(FusionError::ZeroNorm {
                        operand: Operand::Head,
                    });
                }
                let ht = if t_norm > 0.0 {
                    dot_f64(h, q.truth) / (h_norm * t_norm)
                } else {
                    0.0
                };
                sums[self.len] += ht;
                Some((h, h_norm, ht))
            }
        };

        sum.clear();
        sum.resize(dim, 0.0);
        for (ai, agg) in self.aggregations.iter().enumerate() {
            sum.fill(0.0);
            let mut total = 0.0f64;
            let mut best = f32::NEG_INFINITY;
            let mut next_k = 0;
            for (j, nb) in used.iter().enumerate() {
                if let Aggregation::Softmax { temperature } = *agg
                    && nb.score > best
                {
                    // Online softmax: rescale what was summed relative to the new best score.
                    if total > 0.0 {
                        let r = ((f64::from(best) - f64::from(nb.score)) / f64::from(temperature))
                            .exp();
                        total *= r;
                        let r = r as f32;
                        sum.iter_mut().for_each(|x| *x *= r);
                    }
                    best = nb.score;
                }
                let w = agg.raw_weight(nb.score, best);
                if w > 0.0 {
                    axpy(sum, w as f32, nb.target);
                    total += w;
                }
                while let Some(&(k, ki)) = self.ks.get(next_k)
                    && k.min(n) == j + 1
                {
                    next_k += 1;
                    if total <= 0.0 {
                        return Err(FusionError::NoPositiveWeight { considered: j + 1 });
                    }
                    let s2 = norm_sq_f64(sum);
                    if !s2.is_finite() {
                        let culprit = used[..=j]
                            .iter()
                            .position(|nb| nb.target.iter().any(|x| !x.is_finite()));
                        return Err(FusionError::NonFinite {
                            operand: culprit.map_or(Operand::Aggregate, Operand::NeighbourTarget),
                        });
                    }
                    if s2 == 0.0 {
                        return Err(FusionError::ZeroNorm {
                            operand: Operand::Aggregate,
                        });
                    }
                    let s_norm = s2.sqrt();
                    let ut = if t_norm > 0.0 {
                        dot_f64(sum, q.truth) / (s_norm * t_norm)
                    } else {
                        0.0
                    };
                    let base = self.index(ki, ai, 0);
                    let out = &mut sums[base..base + self.weights.len()];
                    match head {
                        None => out.iter_mut().for_each(|s| *s += ut),
                        Some((h, h_norm, ht)) => {
                            let uh = dot_f64(sum, h) / (s_norm * h_norm);
                            for (s, &(a, b)) in out.iter_mut().zip(&self.weights) {
                                *s += if b == 0.0 {
                                    ut
                                } else if a == 0.0 {
                                    ht
                                } else {
                                    let den2 = a * a + b * b + 2.0 * a * b * uh;
                                    if den2 <= 0.0 {
                                        return Err(FusionError::ZeroNorm {
                                            operand: Operand::Blend,
                                        });
                                    }
                                    (a * ut + b * ht) / den2.sqrt()
                                };
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// `‖v‖` in `f64`, or [`FusionError::NonFinite`].
fn checked_norm(v: &[f32], operand: Operand) -> Result<f64, FusionError> {
    let n2 = norm_sq_f64(v);
    if n2.is_finite() {
        Ok(n2.sqrt())
    } else {
        Err(FusionError::NonFinite { operand })
    }
}
