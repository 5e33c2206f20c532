//! prompt-fusion speed at the method's shapes: 384-d sentence targets, k up to 200.
//!
//! `cargo bench -p prompt-fusion --bench fusion`. Measures one KNN aggregation (k = 100), one
//! 2-way blend, and a grid search over 1000 validation queries with 200 neighbours each on the
//! default grid (5 ks x 6 aggregations x 11 weights = 330 points). Data is synthetic and
//! deterministic (the values do not change the amount of work).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prompt_fusion::{
    Aggregation, FusionConfig, Neighbour, TuningGrid, ValidationQuery, aggregate, blend, tune,
};
use std::hint::black_box;

const DIM: usize = 384;
const POOL: usize = 20_000;
const QUERIES: usize = 1000;
const NEIGHBOURS: usize = 200;

/// Deterministic uniform numbers in [0, 1) (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }
}

struct Data {
    targets: Vec<f32>,
    /// Per query: `(score, pool index)`, best first.
    lists: Vec<Vec<(f32, usize)>>,
    heads: Vec<f32>,
    truths: Vec<f32>,
}

fn data() -> Data {
    let mut rng = Rng(0x0F05_1011);
    let mut vecs = |n: usize| -> Vec<f32> { (0..n * DIM).map(|_| rng.next() - 0.5).collect() };
    let targets = vecs(POOL);
    let heads = vecs(QUERIES);
    let truths = vecs(QUERIES);
    let mut rng = Rng(42);
    let lists = (0..QUERIES)
        .map(|_| {
            let mut l: Vec<(f32, usize)> = (0..NEIGHBOURS)
                .map(|_| {
                    (
                        0.15 + 0.2 * rng.next(),
                        (rng.next() * POOL as f32) as usize % POOL,
                    )
                })
                .collect();
            l.sort_by(|a, b| b.0.total_cmp(&a.0));
            l
        })
        .collect();
    Data {
        targets,
        lists,
        heads,
        truths,
    }
}

fn row(v: &[f32], i: usize) -> &[f32] {
    &v[i * DIM..(i + 1) * DIM]
}

fn benches(c: &mut Criterion) {
    let d = data();
    let queries: Vec<ValidationQuery<'_>> = (0..QUERIES)
        .map(|q| ValidationQuery {
            neighbours: d.lists[q]
                .iter()
                .map(|&(s, i)| Neighbour::new(s, row(&d.targets, i)))
                .collect(),
            head: Some(row(&d.heads, q)),
            truth: row(&d.truths, q),
        })
        .collect();
    let nbs = &queries[0].neighbours;

    let mut g = c.benchmark_group("fusion");
    g.throughput(Throughput::Elements(1));
    g.bench_function("aggregate_k100_similarity", |b| {
        b.iter(|| aggregate(black_box(nbs), 100, Aggregation::SimilarityWeighted).unwrap())
    });
    g.bench_function("aggregate_k100_softmax", |b| {
        b.iter(|| {
            aggregate(
                black_box(nbs),
                100,
                Aggregation::Softmax { temperature: 0.05 },
            )
            .unwrap()
        })
    });
    let knn = aggregate(nbs, 100, Aggregation::SimilarityWeighted)
        .unwrap()
        .vector;
    let head = row(&d.heads, 0);
    g.bench_function("blend_2", |b| {
        b.iter(|| blend(black_box(&[(&knn[..], 0.6), (head, 0.4)])).unwrap())
    });
    g.bench_function("fuse_default", |b| {
        let cfg = FusionConfig::default();
        b.iter(|| cfg.fuse(black_box(nbs), Some(head)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("tune");
    g.sample_size(10);
    g.throughput(Throughput::Elements(QUERIES as u64));
    let grid = TuningGrid::default();
    g.bench_function("default_grid_1000q_200nb", |b| {
        b.iter(|| tune(black_box(&queries), &grid).unwrap())
    });
    g.finish();
}

criterion_group!(fusion, benches);
criterion_main!(fusion);
