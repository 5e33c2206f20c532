//! knn-index search throughput and build time (criterion).
//!
//! `cargo bench -p knn-index --bench knn_search`
//!
//! Environment (defaults give a short run):
//! * `KNN_BENCH_N`: comma-separated corpus sizes (default `20000`; the numbers in
//!   docs/SCALING.md use `100000` and `1000000`).
//! * `KNN_BENCH_DIM`: key width (default 512).
//! * `KNN_BENCH_SPECS`: comma-separated presets or factory strings (default `exact,hnsw,ivf`).
//! * `KNN_BENCH_THREADS`: threads for the concurrent batch-1 case (default 2).
//! * `KNN_BENCH_DATA`: `clustered` (default: `synth::clustered_unit_vectors`, n/100 centres,
//!   sigma 1, centre seed 1, noise seeds 2 for keys and 3 for queries) or `uniform`
//!   (`synth::unit_vectors`, seeds 1 and 2).
//!
//! The data is what `xtask/bench/knn_faiss_python.py` generates for Python faiss-cpu. Search is top-100 with the
//! presets' default knobs. Criterion's throughput line is queries/s. Build time and resident
//! memory (VmRSS growth while building, from /proc) are printed as `KNN_BUILD` lines.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use knn_index::synth::{clustered_unit_vectors, unit_vectors};
use knn_index::{IndexSpec, KeyIndex};

const K: usize = 100;
const NQ: usize = 1024;

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Resident set size of this process in MiB (Linux), 0 elsewhere.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench(c: &mut Criterion) {
    let dim = env_usize("KNN_BENCH_DIM", 512);
    let threads = env_usize("KNN_BENCH_THREADS", 2).max(1);
    let uniform = std::env::var("KNN_BENCH_DATA").is_ok_and(|v| v == "uniform");
    for n in env_list("KNN_BENCH_N", "20000") {
        let Ok(n) = n.parse::<usize>() else { continue };
        let clusters = (n / 100).max(1);
        let (keys, queries) = if uniform {
            (unit_vectors(1, n, dim), unit_vectors(2, NQ, dim))
        } else {
            (
                clustered_unit_vectors(1, 2, n, dim, clusters, 1.0),
                clustered_unit_vectors(1, 3, NQ, dim, clusters, 1.0),
            )
        };
        let data = if uniform { "uniform" } else { "clustered" };
        let ids: Vec<u64> = (0..n as u64).collect();
        for spec in env_list("KNN_BENCH_SPECS", "exact,hnsw,ivf") {
            let Ok(spec) = spec.parse::<IndexSpec>();
            let rss0 = rss_mib();
            let t = Instant::now();
            let mut index = KeyIndex::new(dim, &spec, n).expect("index");
            index.add(&ids, &keys).expect("add");
            let build = t.elapsed();
            let rss1 = rss_mib();
            println!(
                "KNN_BUILD data={data} spec={spec} factory={} n={n} d={dim} build_s={:.2} rss_growth_mib={:.0} rss_mib={:.0} knobs={:?}",
                index.factory(),
                build.as_secs_f64(),
                rss1 - rss0,
                rss1,
                index.default_params()
            );
            let mut g = c.benchmark_group(format!("knn_search/{data}/{spec}/n={n}/d={dim}/k={K}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(4));
            for batch in [1usize, 256] {
                g.throughput(Throughput::Elements(batch as u64));
                let mut at = 0usize;
                g.bench_function(BenchmarkId::new("batch", batch), |b| {
                    b.iter(|| {
                        let start = at % (NQ - batch + 1);
                        at += batch;
                        black_box(
                            index
                                .search(&queries[start * dim..(start + batch) * dim], K)
                                .expect("search"),
                        )
                    })
                });
            }
            // batch-1 queries from several threads at once through one &KeyIndex
            g.throughput(Throughput::Elements(1));
            g.bench_function(
                BenchmarkId::new(format!("batch1_threads{threads}"), 1),
                |b| {
                    b.iter_custom(|iters| {
                        let per = iters.div_ceil(threads as u64) as usize;
                        let t = Instant::now();
                        std::thread::scope(|s| {
                            for th in 0..threads {
                                let index = &index;
                                let queries = &queries;
                                s.spawn(move || {
                                    for i in 0..per {
                                        let q = (th * 7919 + i) % NQ;
                                        black_box(
                                            index
                                                .search(&queries[q * dim..(q + 1) * dim], K)
                                                .expect("search"),
                                        );
                                    }
                                });
                            }
                        });
                        // iters queries in total were asked for; per*threads >= iters were run
                        t.elapsed().mul_f64(iters as f64 / (per * threads) as f64)
                    })
                },
            );
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
