//! Search correctness: exact search equals brute force, normalisation invariants, ids and
//! payload round-trip through save/load, many threads.

use std::collections::HashSet;
use std::sync::Arc;

use knn_index::synth::{gaussian, unit_vectors};
use knn_index::{
    Error, IndexConfig, IndexSpec, KeyIndex, PromptIndex, SearchParams, build_index, l2_normalize,
};
use proptest::prelude::*;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Brute-force top-k `(row, cosine)` best first.
fn brute_force(keys: &[f32], q: &[f32], dim: usize, k: usize) -> Vec<(usize, f64)> {
    let mut all: Vec<(usize, f64)> = keys
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, key)| (i, cosine(key, q)))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.truncate(k);
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Exact search returns the brute-force top-k (compared by score, so ties do not matter),
    /// each score is the true cosine of the returned id, ids are distinct, and k beyond the
    /// index size returns every key and no placeholder.
    #[test]
    fn exact_equals_brute_force(
        n in 1usize..80, dim in 1usize..24, k in 1usize..100, nq in 1usize..5, seed in any::<u64>(),
        scale in 0.01f32..100.0,
    ) {
        let mut keys = gaussian(seed, n, dim);
        keys.iter_mut().for_each(|x| *x *= scale);
        let queries = gaussian(seed ^ 0xABCD, nq, dim);
        let ids: Vec<u64> = (0..n as u64).map(|i| i * 7 + 3).collect();
        let mut index = KeyIndex::new(dim, &IndexSpec::Exact, n).unwrap();
        index.add(&ids, &keys).unwrap();
        prop_assert_eq!(index.len(), n);
        let results = index.search(&queries, k).unwrap();
        prop_assert_eq!(results.len(), nq);
        for (qi, hits) in results.iter().enumerate() {
            let q = &queries[qi * dim..(qi + 1) * dim];
            let truth = brute_force(&keys, q, dim, k);
            prop_assert_eq!(hits.len(), k.min(n));
            let distinct: HashSet<u64> = hits.iter().map(|h| h.0).collect();
            prop_assert_eq!(distinct.len(), hits.len());
            for (j, (id, score)) in hits.iter().enumerate() {
                prop_assert!((id - 3) % 7 == 0 && (id - 3) / 7 < n as u64, "bad id {}", id);
                let row = ((id - 3) / 7) as usize;
                let true_score = cosine(&keys[row * dim..(row + 1) * dim], q);
                prop_assert!((f64::from(*score) - true_score).abs() < 1e-4,
                    "score {} vs cosine {}", score, true_score);
                prop_assert!((f64::from(*score) - truth[j].1).abs() < 1e-4,
                    "rank {}: {} vs brute force {}", j, score, truth[j].1);
                if j > 0 {
                    prop_assert!(hits[j - 1].1 >= *score - 1e-6, "not best first");
                }
            }
        }
    }

    /// l2_normalize gives unit norm, is idempotent, and keeps direction.
    #[test]
    fn normalisation_invariants(v in prop::collection::vec(-1e3f32..1e3, 1..64)) {
        let mut a = v.clone();
        prop_assert!(l2_normalize(&mut a));
        let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        if v.iter().any(|x| *x != 0.0) {
            prop_assert!((norm - 1.0).abs() < 1e-5, "norm {}", norm);
            prop_assert!((cosine(&a, &v) - 1.0).abs() < 1e-5);
            let mut b = a.clone();
            l2_normalize(&mut b);
            for (x, y) in a.iter().zip(&b) {
                prop_assert!((x - y).abs() < 1e-6);
            }
        } else {
            prop_assert_eq!(norm, 0.0);
        }
    }

    /// The caller never normalises: scaling keys or queries changes nothing, and a stored key
    /// used as query finds itself with score 1.
    #[test]
    fn scale_invariance(
        n in 2usize..50, dim in 2usize..16, seed in any::<u64>(), s1 in 0.001f32..1000.0,
        s2 in 0.001f32..1000.0,
    ) {
        let keys = gaussian(seed, n, dim);
        let scaled: Vec<f32> = keys.iter().map(|x| x * s1).collect();
        let ids: Vec<u64> = (0..n as u64).collect();
        let mut a = KeyIndex::new(dim, &IndexSpec::Exact, n).unwrap();
        a.add(&ids, &keys).unwrap();
        let mut b = KeyIndex::new(dim, &IndexSpec::Exact, n).unwrap();
        b.add(&ids, &scaled).unwrap();
        let q = &keys[0..dim];
        let qs: Vec<f32> = q.iter().map(|x| x * s2).collect();
        let ra = a.search(q, n).unwrap();
        let rb = b.search(&qs, n).unwrap();
        prop_assert_eq!(ra[0][0].0, 0);
        prop_assert!((ra[0][0].1 - 1.0).abs() < 1e-5);
        for (x, y) in ra[0].iter().zip(&rb[0]) {
            prop_assert!((x.1 - y.1).abs() < 1e-4);
        }
    }

    /// Arbitrary u64 ids survive save/load; payload rows match ids.
    #[test]
    fn ids_and_payload_round_trip(
        ids in prop::collection::hash_set(any::<u64>(), 1..40), seed in any::<u64>(),
    ) {
        let ids: Vec<u64> = ids.into_iter().collect();
        let n = ids.len();
        let (kd, td) = (8, 5);
        let keys = unit_vectors(seed, n, kd);
        let targets = gaussian(seed ^ 1, n, td);
        let prompts: Vec<String> = ids.iter().map(|i| format!("prompt #{i}, ünïcode\nline 2")).collect();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let config = IndexConfig::new(kd, td, IndexSpec::Exact).with_models("clip", "minilm");
        let m = build_index(&dir, config, &ids, &keys, &prompts, &targets).unwrap();
        prop_assert_eq!(m.count, n as u64);
        let idx = PromptIndex::open(&dir).unwrap();
        idx.check_models("clip", "minilm").unwrap();
        prop_assert!(idx.check_models("clip", "other").is_err());
        prop_assert_eq!(idx.len(), n);
        for (row, &id) in ids.iter().enumerate() {
            prop_assert_eq!(idx.id_at(row), Some(id));
            prop_assert_eq!(idx.row_of(id), Some(row));
            prop_assert_eq!(idx.prompt(id).unwrap(), prompts[row].as_str());
            prop_assert_eq!(idx.target(id).unwrap(), &targets[row * td..(row + 1) * td]);
        }
        // each key finds itself first, with its own payload
        let nb = idx.neighbours(&keys, 1, &SearchParams::default()).unwrap();
        for (row, hits) in nb.iter().enumerate() {
            prop_assert_eq!(hits[0].id, ids[row]);
            prop_assert_eq!(hits[0].row, row);
            prop_assert_eq!(hits[0].prompt, prompts[row].as_str());
            prop_assert_eq!(&*hits[0].target, &targets[row * td..(row + 1) * td]);
        }
        let missing = (0..).find(|x| !ids.contains(x)).unwrap();
        prop_assert!(matches!(idx.prompt(missing), Err(Error::UnknownId(_))));
    }
}

#[test]
fn empty_index_and_degenerate_inputs() {
    let idx = KeyIndex::new(4, &IndexSpec::Exact, 0).unwrap();
    assert_eq!(idx.search(&[1.0, 0.0, 0.0, 0.0], 10).unwrap(), vec![vec![]]);
    assert!(idx.search(&[1.0, 0.0, 0.0], 10).is_err(), "wrong width");
    assert!(matches!(
        idx.search(&[f32::NAN, 0.0, 0.0, 0.0], 1),
        Err(Error::NonFinite {
            what: "query",
            row: 0
        })
    ));
    let mut idx = KeyIndex::new(2, &IndexSpec::Exact, 0).unwrap();
    assert!(idx.add(&[1], &[f32::INFINITY, 0.0]).is_err());
    assert!(
        idx.add(&[1, 2], &[1.0, 0.0]).is_err(),
        "ids/keys length mismatch"
    );
    idx.add(&[1], &[1.0, 0.0]).unwrap();
    assert_eq!(
        idx.search(&[0.0, 1.0], 0).unwrap(),
        vec![Vec::<(u64, f32)>::new()]
    );
    assert_eq!(idx.search(&[], 3).unwrap(), Vec::<Vec<(u64, f32)>>::new());
    let huge = idx.search(&[0.0, 1.0], usize::MAX).unwrap();
    assert_eq!(huge[0].len(), 1);
    assert!(KeyIndex::from_factory(8, "NotAnIndex").is_err());
    assert!(matches!(
        KeyIndex::from_factory(0, "Flat"),
        Err(Error::Spec { .. })
    ));
}

#[test]
fn per_query_knobs() {
    let (n, d) = (2000, 16);
    let keys = unit_vectors(1, n, d);
    let ids: Vec<u64> = (0..n as u64).collect();
    let q = unit_vectors(2, 8, d);

    let mut ivf = KeyIndex::new(d, &IndexSpec::Ivf, n).unwrap();
    assert_eq!(ivf.factory(), "IVF45,Flat");
    ivf.add(&ids, &keys).unwrap();
    let mut exact = KeyIndex::new(d, &IndexSpec::Exact, n).unwrap();
    exact.add(&ids, &keys).unwrap();
    let truth = exact.search(&q, 10).unwrap();
    // nprobe = nlist visits every list: IVF-Flat is then exact
    let full = ivf.search_with(&q, 10, &SearchParams::nprobe(45)).unwrap();
    for (a, b) in full.iter().zip(&truth) {
        let sa: Vec<f32> = a.iter().map(|h| h.1).collect();
        let sb: Vec<f32> = b.iter().map(|h| h.1).collect();
        for (x, y) in sa.iter().zip(&sb) {
            assert!((x - y).abs() < 1e-5);
        }
    }
    // nprobe=1 works and returns results
    assert!(!ivf.search_with(&q, 10, &SearchParams::nprobe(1)).unwrap()[0].is_empty());

    let mut hnsw = KeyIndex::new(d, &IndexSpec::Hnsw, n).unwrap();
    hnsw.add(&ids, &keys).unwrap();
    for ef in [16, 64, 512] {
        let r = hnsw
            .search_with(&q, 10, &SearchParams::ef_search(ef))
            .unwrap();
        assert_eq!(r[0].len(), 10);
    }
    assert!(matches!(
        hnsw.search_with(&q, 10, &SearchParams::nprobe(3)),
        Err(Error::Param { name: "nprobe", .. })
    ));
}

#[test]
fn many_threads_search_concurrently() {
    let (n, d) = (5000, 32);
    let keys = unit_vectors(7, n, d);
    let ids: Vec<u64> = (0..n as u64).collect();
    let queries = unit_vectors(8, 64, d);
    for spec in [IndexSpec::Exact, IndexSpec::Hnsw, IndexSpec::Ivf] {
        let mut idx = KeyIndex::new(d, &spec, n).unwrap();
        idx.add(&ids, &keys).unwrap();
        let idx = Arc::new(idx);
        let expected = idx.search(&queries, 20).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let idx = Arc::clone(&idx);
                let queries = queries.clone();
                let expected = expected.clone();
                let spec = spec.clone();
                std::thread::spawn(move || {
                    for round in 0..20 {
                        // alternate knob values on the approximate indexes to exercise the
                        // write-lock path, then check default results are unchanged
                        let params = match (&spec, (t + round) % 3) {
                            (IndexSpec::Hnsw, 0) => SearchParams::ef_search(64),
                            (IndexSpec::Ivf, 0) => SearchParams::nprobe(2),
                            _ => SearchParams::default(),
                        };
                        let got = idx.search_with(&queries, 20, &params).unwrap();
                        if params == SearchParams::default() {
                            for (g, e) in got.iter().zip(&expected) {
                                assert_eq!(g.len(), e.len());
                                for (a, b) in g.iter().zip(e) {
                                    assert!(
                                        (a.1 - b.1).abs() < 1e-5,
                                        "{spec}: thread {t} round {round}: {a:?} vs {b:?}"
                                    );
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
