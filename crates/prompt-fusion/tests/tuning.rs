//! Tuning on constructed validation sets whose optimum and scores follow from geometry, plus
//! agreement of the tuner's fast scoring with the plain `fuse` + `cosine` path.

use prompt_fusion::{
    Aggregation, BlendWeights, FusionConfig, FusionError, Neighbour, Operand, TuningGrid,
    TuningReport, ValidationQuery, cosine, evaluate, tune,
};

fn e(i: usize, dim: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    v[i] = 1.0;
    v
}

fn knn_shares(steps: u8) -> Vec<BlendWeights> {
    (0..=steps)
        .map(|i| {
            BlendWeights::new(
                f32::from(i) / f32::from(steps),
                f32::from(steps - i) / f32::from(steps),
            )
        })
        .collect()
}

fn score(report: &TuningReport, k: usize, aggregation: Aggregation, weights: BlendWeights) -> f64 {
    report
        .score(&FusionConfig {
            k,
            aggregation,
            weights,
        })
        .expect("grid point")
}

/// The truth is the best neighbour's target; nine runners-up and the head point elsewhere.
/// So k = 1 with all weight on KNN is perfect, and every other score follows from the angles.
#[test]
fn finds_the_best_k() {
    let dim = 3;
    let (e0, e1, e2) = (e(0, dim), e(1, dim), e(2, dim));
    let mut q1 = vec![Neighbour::new(0.9, &e0)];
    q1.extend(std::iter::repeat_n(Neighbour::new(0.8, &e1), 9));
    // Same geometry on other axes.
    let mut q2 = vec![Neighbour::new(0.9, &e2)];
    q2.extend(std::iter::repeat_n(Neighbour::new(0.8, &e0), 9));
    let queries = [
        ValidationQuery {
            neighbours: q1,
            head: Some(&e1),
            truth: &e0,
        },
        ValidationQuery {
            neighbours: q2,
            head: Some(&e0),
            truth: &e2,
        },
    ];
    let sim = Aggregation::SimilarityWeighted;
    let grid = TuningGrid {
        ks: vec![10, 1],
        aggregations: vec![sim, Aggregation::Uniform],
        weights: knn_shares(2),
    };
    let r = tune(&queries, &grid).unwrap();
    assert_eq!(r.queries, 2);
    assert_eq!(r.scores.len(), 12);
    // Ties at k = 1 (both aggregations give the neighbour itself): the first in grid order wins,
    // and k = 10 comes first in this grid, so the winner is k = 1 with similarity weighting.
    assert_eq!(
        r.best.config,
        FusionConfig {
            k: 1,
            aggregation: sim,
            weights: BlendWeights::new(1.0, 0.0)
        }
    );
    assert!((r.best.mean_cosine - 1.0).abs() < 1e-9);
    // The grid is reported in grid order: k = 10 first.
    assert_eq!(r.scores[0].config.k, 10);

    let (knn, half, clip) = (
        BlendWeights::new(1.0, 0.0),
        BlendWeights::new(0.5, 0.5),
        BlendWeights::new(0.0, 1.0),
    );
    let eps = 1e-6;
    for agg in [sim, Aggregation::Uniform] {
        // k = 1: u = truth. Half/half: (u + head)/sqrt(2) -> 1/sqrt(2). Head only: orthogonal.
        assert!((score(&r, 1, agg, knn) - 1.0).abs() < eps);
        assert!((score(&r, 1, agg, half) - std::f64::consts::FRAC_1_SQRT_2).abs() < eps);
        assert!(score(&r, 1, agg, clip).abs() < eps);
        assert!(score(&r, 10, agg, clip).abs() < eps);
    }
    // k = 10, similarity: sum = 0.9 truth + 7.2 head-direction.
    let n: f64 = (0.81f64 + 51.84).sqrt();
    let (ut, uh) = (0.9 / n, 7.2 / n);
    assert!((score(&r, 10, sim, knn) - ut).abs() < eps);
    assert!((score(&r, 10, sim, half) - ut / (2.0 + 2.0 * uh).sqrt()).abs() < eps);
    // k = 10, uniform: sum = truth + 9 head-direction.
    let n = 82f64.sqrt();
    let (ut, uh) = (1.0 / n, 9.0 / n);
    let uni = Aggregation::Uniform;
    assert!((score(&r, 10, uni, knn) - ut).abs() < eps);
    assert!((score(&r, 10, uni, half) - ut / (2.0 + 2.0 * uh).sqrt()).abs() < eps);
    // Head alone is orthogonal to the truth in both queries.
    assert!(r.head_only.unwrap().abs() < eps);
}

/// KNN prediction a, head prediction b orthogonal to it, truth ∝ 0.6 a + 0.4 b: the blend
/// weights (0.6, 0.4) reproduce the truth's direction exactly; every other weight is off.
#[test]
fn finds_the_best_blend_weights() {
    let dim = 3;
    let (e0, e1, e2) = (e(0, dim), e(1, dim), e(2, dim));
    let t1 = [0.6f32, 0.4, 0.0];
    let head2 = [3.0f32, 0.0, 0.0]; // a head output need not be unit-norm
    let t2 = [0.4f32, 0.0, 0.6];
    let queries = [
        ValidationQuery {
            neighbours: vec![Neighbour::new(0.5, &e0)],
            head: Some(&e1),
            truth: &t1,
        },
        ValidationQuery {
            neighbours: vec![Neighbour::new(0.7, &e2), Neighbour::new(0.1, &e1)],
            head: Some(&head2),
            truth: &t2,
        },
    ];
    let grid = TuningGrid {
        ks: vec![1],
        aggregations: vec![Aggregation::Uniform],
        weights: knn_shares(10),
    };
    let r = tune(&queries, &grid).unwrap();
    assert_eq!(r.best.config.weights, BlendWeights::new(0.6, 0.4));
    assert!((r.best.mean_cosine - 1.0).abs() < 1e-6);
    let t_norm = 0.52f64.sqrt();
    for s in &r.scores {
        let (a, b) = (
            f64::from(s.config.weights.knn),
            f64::from(s.config.weights.clip),
        );
        let want = (0.6 * a + 0.4 * b) / ((a * a + b * b).sqrt() * t_norm);
        assert!(
            (s.mean_cosine - want).abs() < 1e-6,
            "{:?}: {} vs {want}",
            s.config.weights,
            s.mean_cosine
        );
    }
    assert!((r.head_only.unwrap() - 0.4 / t_norm).abs() < 1e-6);
}

/// Two neighbours with scores 0.5 and 0.4 and orthogonal targets; the truth is their softmax
/// mix at T = 0.05, i.e. (1, exp(-0.1/0.05)). That temperature must win, and each candidate's
/// score is the cosine between (1, c) and (1, c*), c its own weight ratio.
#[test]
fn finds_the_best_temperature() {
    let dim = 2;
    let (e0, e1) = (e(0, dim), e(1, dim));
    let c_star = (-2.0f64).exp();
    let truth = [1.0f32, c_star as f32];
    let queries = [ValidationQuery {
        neighbours: vec![Neighbour::new(0.5, &e0), Neighbour::new(0.4, &e1)],
        head: None,
        truth: &truth,
    }];
    let temps = [0.01f32, 0.05, 0.2];
    let mut aggregations = vec![Aggregation::SimilarityWeighted, Aggregation::Uniform];
    aggregations.extend(temps.map(|temperature| Aggregation::Softmax { temperature }));
    let grid = TuningGrid {
        ks: vec![2],
        aggregations,
        // Without a head the weights make no difference.
        weights: vec![BlendWeights::default(), BlendWeights::new(0.0, 1.0)],
    };
    let r = tune(&queries, &grid).unwrap();
    assert_eq!(
        r.best.config.aggregation,
        Aggregation::Softmax { temperature: 0.05 }
    );
    assert_eq!(r.best.config.weights, BlendWeights::default());
    assert!((r.best.mean_cosine - 1.0).abs() < 1e-6);
    assert_eq!(r.head_only, None);
    let cos = |c: f64| (1.0 + c * c_star) / ((1.0 + c * c).sqrt() * (1.0 + c_star * c_star).sqrt());
    let mut expected = vec![
        (Aggregation::SimilarityWeighted, cos(0.8)),
        (Aggregation::Uniform, cos(1.0)),
    ];
    for t in temps {
        expected.push((
            Aggregation::Softmax { temperature: t },
            cos((-0.1 / f64::from(t)).exp()),
        ));
    }
    for (agg, want) in expected {
        for w in &grid.weights {
            let got = score(&r, 2, agg, *w);
            assert!((got - want).abs() < 1e-6, "{agg}: {got} vs {want}");
        }
    }
}

/// Small deterministic generator (xorshift64*), so the test needs no extra dependency.
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }
}

/// Random data stored flat; queries borrow from it.
struct Data {
    dim: usize,
    targets: Vec<f32>,
    scores: Vec<Vec<(f32, usize)>>,
    heads: Vec<Option<Vec<f32>>>,
    truths: Vec<Vec<f32>>,
}

impl Data {
    fn new(seed: u64, queries: usize, dim: usize, pool: usize, with_heads: bool) -> Self {
        let mut rng = Rng(seed);
        let vec = |rng: &mut Rng| -> Vec<f32> { (0..dim).map(|_| rng.range(-1.0, 1.0)).collect() };
        let targets: Vec<f32> = (0..pool).flat_map(|_| vec(&mut rng)).collect();
        let mut scores = Vec::new();
        let mut heads = Vec::new();
        let mut truths = Vec::new();
        for q in 0..queries {
            let n = 1 + (rng.next_f32() * 25.0) as usize;
            let mut s: Vec<(f32, usize)> = (0..n)
                .map(|_| {
                    (
                        rng.range(-0.2, 0.9),
                        (rng.next_f32() * pool as f32) as usize % pool,
                    )
                })
                .collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0));
            s[0].0 = s[0].0.abs() + 0.05; // at least one positive score
            scores.push(s);
            heads.push((with_heads && q % 7 != 3).then(|| vec(&mut rng)));
            truths.push(vec(&mut rng));
        }
        Self {
            dim,
            targets,
            scores,
            heads,
            truths,
        }
    }

    fn queries(&self) -> Vec<ValidationQuery<'_>> {
        (0..self.truths.len())
            .map(|q| ValidationQuery {
                neighbours: self.scores[q]
                    .iter()
                    .map(|&(s, i)| {
                        Neighbour::new(s, &self.targets[i * self.dim..(i + 1) * self.dim])
                    })
                    .collect(),
                head: self.heads[q].as_deref(),
                truth: &self.truths[q],
            })
            .collect()
    }
}

/// The tuner's O(1)-per-weight scoring must equal fusing each query with the public API and
/// averaging the cosines, at every grid point. 300 queries: several parallel chunks.
#[test]
fn grid_scores_equal_fuse_then_cosine() {
    let data = Data::new(0x5EED, 300, 24, 200, true);
    let queries = data.queries();
    let grid = TuningGrid {
        ks: vec![3, 1, 10, 50],
        aggregations: vec![
            Aggregation::SimilarityWeighted,
            Aggregation::Uniform,
            Aggregation::Softmax { temperature: 0.05 },
            Aggregation::Softmax { temperature: 1.0 },
        ],
        weights: knn_shares(4),
    };
    let r = tune(&queries, &grid).unwrap();
    assert_eq!(r.scores.len(), grid.len());
    assert_eq!(r.head_only, None, "some queries have no head");
    for (s, config) in r.scores.iter().zip(grid.configs()) {
        assert_eq!(s.config, config);
        let mut sum = 0.0f64;
        for q in &queries {
            let fused = config.fuse(&q.neighbours, q.head).unwrap();
            sum += f64::from(cosine(&fused.embedding, q.truth).unwrap());
        }
        let want = sum / queries.len() as f64;
        assert!(
            (s.mean_cosine - want).abs() < 1e-5,
            "{config:?}: {} vs {want}",
            s.mean_cosine
        );
        assert!((evaluate(&queries, &config).unwrap() - s.mean_cosine).abs() < 1e-12);
    }
    let max = r
        .scores
        .iter()
        .map(|s| s.mean_cosine)
        .fold(f64::MIN, f64::max);
    assert_eq!(r.best.mean_cosine, max);
    // Deterministic.
    assert_eq!(tune(&queries, &grid).unwrap(), r);
}

#[test]
fn head_only_is_the_mean_cosine_of_the_heads() {
    let data = Data::new(7, 40, 8, 30, true);
    let mut queries = data.queries();
    let heads: Vec<Vec<f32>> = queries.iter().map(|q| q.truth.to_vec()).collect();
    // Give every query a head: half of them the truth itself (cosine 1), half its negation (-1).
    let negated: Vec<Vec<f32>> = heads
        .iter()
        .map(|h| h.iter().map(|x| -x).collect())
        .collect();
    for (i, q) in queries.iter_mut().enumerate() {
        q.head = Some(if i % 2 == 0 { &heads[i] } else { &negated[i] });
    }
    let r = tune(&queries, &TuningGrid::default()).unwrap();
    assert!(r.head_only.unwrap().abs() < 1e-6);
    // With weight 0 on KNN the score is the head's alone, at every k and aggregation.
    for s in &r.scores {
        if s.config.weights.knn == 0.0 {
            assert!(s.mean_cosine.abs() < 1e-6, "{s:?}");
        }
    }
}

#[test]
fn default_grid_shape_and_serialisation() {
    let g = TuningGrid::default();
    assert_eq!(g.ks, vec![1, 10, 50, 100, 200]);
    assert_eq!(g.weights.len(), 11);
    assert_eq!(g.weights[6], BlendWeights::new(0.6, 0.4));
    assert_eq!(g.len(), 5 * 6 * 11);
    assert_eq!(g.configs().count(), g.len());

    let data = Data::new(99, 10, 4, 20, true);
    let r = tune(&data.queries(), &g).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""aggregation":{"kind":"softmax","temperature":0.05}"#));
    assert!(json.contains(r#""aggregation":{"kind":"similarity_weighted"}"#));
    assert!(json.contains(r#""weights":{"knn":0.6,"clip":0.4}"#));
    // serde_json (without its `float_roundtrip` feature) may parse an f64 1 ulp off: compare
    // configs exactly, scores to 1e-15.
    let back: TuningReport = serde_json::from_str(&json).unwrap();
    assert_eq!((back.queries, back.head_only), (r.queries, r.head_only));
    assert_eq!(back.best.config, r.best.config);
    assert_eq!(back.scores.len(), r.scores.len());
    for (b, s) in back.scores.iter().zip(&r.scores) {
        assert_eq!(b.config, s.config);
        assert!((b.mean_cosine - s.mean_cosine).abs() < 1e-15);
    }
}

#[test]
fn errors_name_the_bad_query() {
    let (a, b): (&[f32], &[f32]) = (&[1.0, 0.0], &[0.0, 1.0]);
    let short: &[f32] = &[1.0];
    let zero: &[f32] = &[0.0, 0.0];
    let good = ValidationQuery {
        neighbours: vec![Neighbour::new(0.5, a)],
        head: Some(b),
        truth: a,
    };
    let grid = TuningGrid::default();
    let with = |bad: ValidationQuery<'static>| tune(&[good.clone(), good.clone(), bad], &grid);
    let query_err = |source| FusionError::Query {
        index: 2,
        source: Box::new(source),
    };

    assert_eq!(
        tune(&[], &grid),
        Err(FusionError::Empty("validation queries"))
    );
    assert_eq!(
        with(ValidationQuery {
            neighbours: vec![],
            ..good.clone()
        }),
        Err(query_err(FusionError::NoNeighbours))
    );
    assert_eq!(
        with(ValidationQuery {
            neighbours: vec![Neighbour::new(0.5, a), Neighbour::new(0.4, short)],
            ..good.clone()
        }),
        Err(query_err(FusionError::DimensionMismatch {
            operand: Operand::NeighbourTarget(1),
            expected: 2,
            found: 1
        }))
    );
    assert_eq!(
        with(ValidationQuery {
            truth: short,
            ..good.clone()
        }),
        Err(query_err(FusionError::DimensionMismatch {
            operand: Operand::NeighbourTarget(0),
            expected: 1,
            found: 2
        }))
    );
    assert_eq!(
        with(ValidationQuery {
            head: Some(zero),
            ..good.clone()
        }),
        Err(query_err(FusionError::ZeroNorm {
            operand: Operand::Head
        }))
    );
    assert_eq!(
        with(ValidationQuery {
            neighbours: vec![Neighbour::new(-0.1, a), Neighbour::new(-0.3, b)],
            ..good.clone()
        }),
        Err(query_err(FusionError::NoPositiveWeight { considered: 1 }))
    );
    assert_eq!(
        with(ValidationQuery {
            neighbours: vec![Neighbour::new(f32::NAN, a)],
            ..good.clone()
        }),
        Err(query_err(FusionError::NonFinite {
            operand: Operand::NeighbourScore(0)
        }))
    );
    let inf: &[f32] = &[f32::INFINITY, 0.0];
    assert_eq!(
        with(ValidationQuery {
            neighbours: vec![Neighbour::new(0.5, a), Neighbour::new(0.4, inf)],
            ..good.clone()
        }),
        Err(query_err(FusionError::NonFinite {
            operand: Operand::NeighbourTarget(1)
        }))
    );

    let one = [good.clone()];
    let bad_grid = |f: fn(&mut TuningGrid)| {
        let mut g = TuningGrid::default();
        f(&mut g);
        tune(&one, &g)
    };
    assert_eq!(
        bad_grid(|g| g.ks.clear()),
        Err(FusionError::Empty("k candidates"))
    );
    assert_eq!(bad_grid(|g| g.ks.push(0)), Err(FusionError::ZeroK));
    assert_eq!(
        bad_grid(|g| g.aggregations.clear()),
        Err(FusionError::Empty("aggregation candidates"))
    );
    assert_eq!(
        bad_grid(|g| g
            .aggregations
            .push(Aggregation::Softmax { temperature: -1.0 })),
        Err(FusionError::InvalidTemperature { temperature: -1.0 })
    );
    assert_eq!(
        bad_grid(|g| g.weights.push(BlendWeights::new(0.0, 0.0))),
        Err(FusionError::WeightsSumToZero)
    );
    assert!(matches!(
        bad_grid(|g| g.weights.push(BlendWeights::new(-0.5, 1.0))),
        Err(FusionError::InvalidWeight { .. })
    ));
    assert_eq!(
        evaluate(
            &one,
            &FusionConfig {
                k: 0,
                ..FusionConfig::default()
            }
        ),
        Err(FusionError::ZeroK)
    );
    // The message names the query.
    let msg = with(ValidationQuery {
        neighbours: vec![],
        ..good.clone()
    })
    .unwrap_err()
    .to_string();
    assert_eq!(msg, "validation query 2: no neighbours to aggregate");
}
