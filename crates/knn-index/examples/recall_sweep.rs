//! Recall@10 and search speed of the approximate presets as their knob varies, on random unit
//! vectors (the data of tests/recall.rs and benches/knn_search.rs).
//!
//! `cargo run --release -p knn-index --example recall_sweep -- [N] [DIM] [NQ]`
//! (defaults 100000 512 200).

use std::time::Instant;

use knn_index::synth::unit_vectors;
use knn_index::{IndexSpec, KeyIndex, SearchParams, ivf_nlist};

fn main() -> knn_index::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let d = args.get(1).copied().unwrap_or(512);
    let nq = args.get(2).copied().unwrap_or(200);
    let k = 10;
    let keys = unit_vectors(42, n, d);
    let queries = unit_vectors(43, nq, d);
    let ids: Vec<u64> = (0..n as u64).collect();
    let mut exact = KeyIndex::new(d, &IndexSpec::Exact, n)?;
    exact.add(&ids, &keys)?;
    let truth = exact.search(&queries, k)?;
    drop(exact);
    let recall = |got: &[Vec<(u64, f32)>]| {
        let hit: usize = got
            .iter()
            .zip(&truth)
            .map(|(g, t)| {
                g.iter()
                    .filter(|(id, _)| t.iter().any(|(x, _)| x == id))
                    .count()
            })
            .sum();
        hit as f64 / (nq * k) as f64
    };
    let nlist = ivf_nlist(n);
    for (spec, knobs) in [
        (
            IndexSpec::Ivf,
            [1, 8, 16, 32, 64, nlist / 4, nlist / 3, nlist / 2]
                .map(SearchParams::nprobe)
                .to_vec(),
        ),
        (
            IndexSpec::Hnsw,
            [16, 64, 128, 256, 512]
                .map(SearchParams::ef_search)
                .to_vec(),
        ),
    ] {
        let t = Instant::now();
        let mut idx = KeyIndex::new(d, &spec, n)?;
        idx.add(&ids, &keys)?;
        println!(
            "{spec} {} n={n} d={d}: build {:.1?}",
            idx.factory(),
            t.elapsed()
        );
        for p in knobs {
            let t = Instant::now();
            let got = idx.search_with(&queries, k, &p)?;
            let dt = t.elapsed();
            println!(
                "  {p:?}: recall@{k} {:.4}, {:.0} q/s (batch {nq})",
                recall(&got),
                nq as f64 / dt.as_secs_f64()
            );
        }
    }
    Ok(())
}
