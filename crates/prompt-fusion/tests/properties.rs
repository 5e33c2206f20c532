//! Property tests of aggregation and blending, against independent `f64` reference formulas.

use prompt_fusion::{
    Aggregation, BlendWeights, FusionConfig, Neighbour, aggregate, blend, normalise,
};
use proptest::prelude::*;

/// A target vector whose first coordinate is in [0.5, 1): any positive combination of such
/// vectors is non-zero, so normalisation is always defined.
fn target(dim: usize) -> impl Strategy<Value = Vec<f32>> {
    (0.5f32..1.0, prop::collection::vec(-1.0f32..1.0, dim - 1)).prop_map(|(h, mut rest)| {
        rest.insert(0, h);
        rest
    })
}

/// `(dim, [(score, target)])` with positive scores, 1..=12 neighbours.
fn neighbour_list() -> impl Strategy<Value = (usize, Vec<(f32, Vec<f32>)>)> {
    (1usize..=16).prop_flat_map(|dim| {
        (
            Just(dim),
            prop::collection::vec((0.05f32..1.0, target(dim)), 1..=12),
        )
    })
}

fn aggregation() -> impl Strategy<Value = Aggregation> {
    prop_oneof![
        Just(Aggregation::SimilarityWeighted),
        Just(Aggregation::Uniform),
        (0.01f32..2.0).prop_map(|temperature| Aggregation::Softmax { temperature }),
    ]
}

fn as_neighbours(list: &[(f32, Vec<f32>)]) -> Vec<Neighbour<'_>> {
    list.iter().map(|(s, t)| Neighbour::new(*s, t)).collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

/// Reference: the normalised weighted mean, in `f64`.
fn reference(list: &[(f32, Vec<f32>)], weights: &[f64]) -> Vec<f64> {
    let dim = list[0].1.len();
    let mut acc = vec![0.0f64; dim];
    for ((_, t), w) in list.iter().zip(weights) {
        for (a, x) in acc.iter_mut().zip(t) {
            *a += w * f64::from(*x);
        }
    }
    let n = acc.iter().map(|x| x * x).sum::<f64>().sqrt();
    acc.iter().map(|x| x / n).collect()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= tol,
            "component {i}: {g} vs {w}\n got {got:?}\nwant {want:?}"
        );
    }
}

proptest! {
    #[test]
    fn aggregate_is_unit_norm_with_weights_summing_to_one(
        (_, list) in neighbour_list(), k in 1usize..=15, agg in aggregation()
    ) {
        let r = aggregate(&as_neighbours(&list), k, agg).unwrap();
        prop_assert!((norm(&r.vector) - 1.0).abs() < 1e-6);
        prop_assert_eq!(r.weights.len(), k.min(list.len()));
        prop_assert!(r.weights.iter().all(|w| *w >= 0.0));
        let sum: f32 = r.weights.iter().sum();
        prop_assert!((sum - 1.0).abs() < 1e-5, "weights sum to {}", sum);
    }

    #[test]
    fn aggregate_is_invariant_under_permutation(
        ((_, list), perm) in neighbour_list().prop_flat_map(|(dim, list)| {
            let n = list.len();
            (Just((dim, list)), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        }),
        agg in aggregation(),
    ) {
        let permuted: Vec<_> = perm.iter().map(|&i| list[i].clone()).collect();
        let k = list.len();
        let a = aggregate(&as_neighbours(&list), k, agg).unwrap();
        let b = aggregate(&as_neighbours(&permuted), k, agg).unwrap();
        for (x, y) in a.vector.iter().zip(&b.vector) {
            prop_assert!((x - y).abs() < 1e-5, "{:?} vs {:?}", a.vector, b.vector);
        }
        for (j, &i) in perm.iter().enumerate() {
            prop_assert!((b.weights[j] - a.weights[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn k_one_gives_the_first_neighbours_vector_normalised(
        (_, list) in neighbour_list(), agg in aggregation()
    ) {
        let r = aggregate(&as_neighbours(&list), 1, agg).unwrap();
        prop_assert_eq!(&r.weights, &vec![1.0f32]);
        let mut own = list[0].1.clone();
        normalise(&mut own).unwrap();
        prop_assert_eq!(&r.vector, &own);
        let n = norm(&list[0].1);
        let want: Vec<f64> = list[0].1.iter().map(|x| f64::from(*x) / n).collect();
        assert_close(&r.vector, &want, 1e-6);
    }

    #[test]
    fn truncation_keeps_the_first_k((_, list) in neighbour_list(), k in 1usize..=12, agg in aggregation()) {
        let k = k.min(list.len());
        let all = aggregate(&as_neighbours(&list), k, agg).unwrap();
        let prefix = aggregate(&as_neighbours(&list[..k]), 100, agg).unwrap();
        prop_assert_eq!(all, prefix);
    }

    #[test]
    fn uniform_is_the_plain_mean((_, list) in neighbour_list()) {
        let r = aggregate(&as_neighbours(&list), list.len(), Aggregation::Uniform).unwrap();
        assert_close(&r.vector, &reference(&list, &vec![1.0; list.len()]), 1e-5);
        let n = list.len() as f32;
        prop_assert!(r.weights.iter().all(|w| (w - 1.0 / n).abs() < 1e-7));
    }

    #[test]
    fn similarity_weighting_uses_positive_scores_only(
        (dim, mut list) in neighbour_list(),
        negatives in prop::collection::vec(-1.0f32..=0.0, 0..6),
    ) {
        // Interleave neighbours with scores <= 0, which must get weight 0.
        for (i, s) in negatives.iter().enumerate() {
            let t: Vec<f32> = (0..dim).map(|j| if j == i % dim { -5.0 } else { 3.0 }).collect();
            list.insert((2 * i).min(list.len()), (*s, t));
        }
        let r = aggregate(&as_neighbours(&list), list.len(), Aggregation::SimilarityWeighted)
            .unwrap();
        let w: Vec<f64> = list.iter().map(|(s, _)| f64::from(s.max(0.0))).collect();
        assert_close(&r.vector, &reference(&list, &w), 1e-5);
        let total: f64 = w.iter().sum();
        for (got, w) in r.weights.iter().zip(&w) {
            prop_assert!((f64::from(*got) - w / total).abs() < 1e-6);
        }
    }

    #[test]
    fn softmax_matches_its_formula((_, list) in neighbour_list(), t in 0.05f32..2.0) {
        let agg = Aggregation::Softmax { temperature: t };
        let r = aggregate(&as_neighbours(&list), list.len(), agg).unwrap();
        let w: Vec<f64> = list
            .iter()
            .map(|(s, _)| (f64::from(*s) / f64::from(t)).exp())
            .collect();
        assert_close(&r.vector, &reference(&list, &w), 1e-5);
    }

    #[test]
    fn softmax_with_tiny_temperature_approaches_argmax(
        (_, mut list) in neighbour_list(), best in any::<prop::sample::Index>()
    ) {
        let best = best.index(list.len());
        let top = list.iter().map(|(s, _)| *s).fold(f32::MIN, f32::max);
        list[best].0 = top + 0.05;
        let agg = Aggregation::Softmax { temperature: 1e-3 };
        let r = aggregate(&as_neighbours(&list), list.len(), agg).unwrap();
        let n = norm(&list[best].1);
        let want: Vec<f64> = list[best].1.iter().map(|x| f64::from(*x) / n).collect();
        assert_close(&r.vector, &want, 1e-6);
        prop_assert!((r.weights[best] - 1.0).abs() < 1e-6);
        // And a huge temperature approaches the plain mean.
        let hot = aggregate(&as_neighbours(&list), list.len(), Aggregation::Softmax { temperature: 1e4 })
            .unwrap();
        assert_close(&hot.vector, &reference(&list, &vec![1.0; list.len()]), 1e-4);
    }

    #[test]
    fn blend_weight_one_zero_gives_the_knn_prediction_exactly(
        (dim, list) in neighbour_list(), agg in aggregation(), k in 1usize..=12,
        head in prop::collection::vec(-2.0f32..2.0, 16),
    ) {
        let head = &head[..dim];
        let nbs = as_neighbours(&list);
        let knn = aggregate(&nbs, k, agg).unwrap().vector;
        prop_assert_eq!(&blend(&[(&knn, 1.0), (head, 0.0)]).unwrap(), &knn);
        let config = FusionConfig { k, aggregation: agg, weights: BlendWeights::new(1.0, 0.0) };
        let fused = config.fuse(&nbs, Some(head)).unwrap();
        prop_assert_eq!(&fused.embedding, &knn);
        prop_assert_eq!(&fused.knn, &knn);
    }

    #[test]
    fn blending_equal_vectors_returns_them(
        v in target(8), scale in 0.1f32..10.0,
        weights in prop::collection::vec(0.0f32..10.0, 1..6),
    ) {
        prop_assume!(weights.iter().any(|w| *w > 0.01));
        let mut unit = v.clone();
        normalise(&mut unit).unwrap();
        let preds: Vec<(&[f32], f32)> = weights.iter().map(|w| (&unit[..], *w)).collect();
        let got = blend(&preds).unwrap();
        let u64: Vec<f64> = unit.iter().map(|x| f64::from(*x)).collect();
        assert_close(&got, &u64, 1e-6);
        // Scaled copies blend to the unit vector too.
        let scaled: Vec<f32> = v.iter().map(|x| x * scale).collect();
        let preds: Vec<(&[f32], f32)> = weights.iter().map(|w| (&scaled[..], *w)).collect();
        let n = norm(&v);
        let want: Vec<f64> = v.iter().map(|x| f64::from(*x) / n).collect();
        assert_close(&blend(&preds).unwrap(), &want, 1e-6);
    }

    #[test]
    fn blend_is_the_normalised_weighted_sum_of_normalised_inputs(
        preds in prop::collection::vec((target(6), 0.0f32..5.0), 1..5)
    ) {
        prop_assume!(preds.iter().any(|(_, w)| *w > 0.01));
        let refs: Vec<(&[f32], f32)> = preds.iter().map(|(v, w)| (&v[..], *w)).collect();
        let got = blend(&refs).unwrap();
        prop_assert!((norm(&got) - 1.0).abs() < 1e-6);
        let mut acc = [0.0f64; 6];
        for (v, w) in &preds {
            let n = norm(v);
            for (a, x) in acc.iter_mut().zip(v) {
                *a += f64::from(*w) * f64::from(*x) / n;
            }
        }
        let n = acc.iter().map(|x| x * x).sum::<f64>().sqrt();
        let want: Vec<f64> = acc.iter().map(|x| x / n).collect();
        assert_close(&got, &want, 1e-5);
    }
}
