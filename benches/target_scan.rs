//! The cost of `predict`'s default text: [`PromptIndex::nearest_by_target`], an exhaustive scan
//! of every stored sentence embedding for the prompt nearest a fused prediction (criterion).
//!
//! `cargo bench -p knn-index --bench target_scan`
//!
//! Environment: `TARGET_SCAN_N` (comma-separated corpus sizes, default `100000`, the demo's
//! index). Targets are 384 wide (all-MiniLM-L6-v2), synthetic unit vectors, in each encoding
//! (`f32`, `f16`, `int8`); queries are batches of 1 (one image) and 32 (`predict`'s default
//! batch). Criterion's throughput line is queries/s.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use knn_index::synth::unit_vectors;
use knn_index::{IndexConfig, IndexSpec, PromptIndex, TargetEncoding, build_index};

const TARGET_DIM: usize = 384;
const KEY_DIM: usize = 8;

fn bench(c: &mut Criterion) {
    let sizes = std::env::var("TARGET_SCAN_N").unwrap_or_else(|_| "100000".to_string());
    let queries = unit_vectors(3, 32, TARGET_DIM);
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = unit_vectors(1, n, KEY_DIM);
        let targets = unit_vectors(2, n, TARGET_DIM);
        let ids: Vec<u64> = (0..n as u64).collect();
        let prompts: Vec<String> = (0..n).map(|i| format!("prompt {i}")).collect();
        let mut g = c.benchmark_group(format!("target_scan/n={n}/d={TARGET_DIM}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        for encoding in [
            TargetEncoding::F32,
            TargetEncoding::F16,
            TargetEncoding::Int8,
        ] {
            let out = dir.path().join(encoding.to_string());
            let config =
                IndexConfig::new(KEY_DIM, TARGET_DIM, IndexSpec::Exact).with_targets(encoding);
            build_index(&out, config, &ids, &keys, &prompts, &targets).expect("build");
            let index = PromptIndex::open(&out).expect("open");
            for batch in [1usize, 32] {
                g.throughput(Throughput::Elements(batch as u64));
                g.bench_function(BenchmarkId::new(format!("{encoding}/batch"), batch), |b| {
                    b.iter(|| {
                        black_box(
                            index
                                .nearest_by_target(&queries[..batch * TARGET_DIM])
                                .expect("scan"),
                        )
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
