//! Predictor latency and throughput, and index build rate (criterion).
//!
//! `cargo bench --workspace --bench predictor`
//!
//! - `predictor/.../batch=1` and `batch=32`: a whole prediction (preprocessing, CLIP ViT-B/32
//!   image tower with random weights, FAISS top-100 over `PREDICT_BENCH_KEYS` keys (default
//!   1 000 000, d = 512, clustered unit vectors, `exact` unless `PREDICT_BENCH_SPEC`), a linear
//!   512 -> 384 head, similarity-weighted fusion 0.6 / 0.4). Throughput = images/s.
//! - `index_build`: `IndexBuilder` over `PREDICT_BENCH_BUILD` prompts (default 256) with the
//!   ViT-B/32 text tower (random weights) and the real all-MiniLM-L6-v2 from the model cache
//!   (skipped when absent). Throughput = prompts/s.
//! - Backends: the default CPU device (flex); wgpu as well when `PREDICT_BENCH_WGPU=1`.
//!
//! The index is built once per run in a temp dir (1M keys: ~2 GiB of keys, 1.5 GiB of targets).

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::Device;
use clip_encoder::{ClipConfig, ClipTextModel, ClipVisionModel};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use img2prompt::IndexBuilder;
use img2prompt::head::{ClipHead, HeadConfig, HeadKind};
use img2prompt::{
    ClipImageEmbedder, ClipTextEmbedder, IndexSearch, ModelCache, ModelId, Predictor,
    SentenceTextEmbedder,
};
use knn_index::synth::{clustered_unit_vectors, unit_vectors};
use knn_index::{IndexConfig, IndexSpec, build_index};

const KEY_DIM: usize = 512;
const TARGET_DIM: usize = 384;
const MODEL_ID: &str = "vit-b-32-random@00000000000000000000000000000000";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn devices() -> Vec<(&'static str, Device)> {
    let mut v = vec![("flex", Device::flex())];
    if std::env::var("PREDICT_BENCH_WGPU").is_ok_and(|v| v == "1") {
        v.push((
            "wgpu",
            Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        ));
    }
    v
}

fn images(n: usize) -> Vec<image::DynamicImage> {
    (0..n)
        .map(|i| {
            image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(320, 240, |x, y| {
                image::Rgb([
                    (x * 3 + i as u32) as u8,
                    (y * 5) as u8,
                    ((x ^ y) + i as u32) as u8,
                ])
            }))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = env_usize("PREDICT_BENCH_KEYS", 1_000_000);
    let spec: IndexSpec = std::env::var("PREDICT_BENCH_SPEC")
        .unwrap_or_else(|_| "exact".into())
        .parse()
        .expect("spec");
    let dir = tempfile::tempdir().expect("temp dir");
    let index_dir = dir.path().join("index");
    {
        let keys = clustered_unit_vectors(1, 2, n, KEY_DIM, (n / 100).max(1), 1.0);
        let targets = unit_vectors(3, n, TARGET_DIM);
        let ids: Vec<u64> = (0..n as u64).collect();
        let prompts: Vec<String> = (0..n).map(|i| format!("prompt number {i}")).collect();
        let config = IndexConfig::new(KEY_DIM, TARGET_DIM, spec.clone()).with_models(MODEL_ID, "");
        build_index(&index_dir, config, &ids, &keys, &prompts, &targets).expect("index");
    }
    for (name, device) in devices() {
        let vision = ClipVisionModel::random(&ClipConfig::vit_b_32(), &device).with_batch_size(32);
        let head = ClipHead::init(
            &HeadConfig::new(HeadKind::Linear, KEY_DIM, TARGET_DIM),
            0,
            &device,
        )
        .expect("head");
        let predictor = Predictor::builder()
            .image_encoder(ClipImageEmbedder::new(vision, ModelId::parse(MODEL_ID)))
            .index(IndexSearch::open(&index_dir).expect("open index"))
            .head(head)
            .build()
            .expect("predictor");
        let mut g = c.benchmark_group(format!("predictor/{name}/vit_b32/{spec}/keys={n}/k=100"));
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(10));
        for batch in [1usize, 32] {
            let imgs = images(batch);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new("batch", batch), |b| {
                b.iter(|| black_box(predictor.predict_batch(&imgs).expect("predict")))
            });
        }
        g.finish();

        let minilm = ModelCache::from_env().model_dir("all-MiniLM-L6-v2");
        if !minilm.join("model.safetensors").is_file() {
            eprintln!("index_build skipped: all-MiniLM-L6-v2 not in the model cache");
            continue;
        }
        let text = ClipTextEmbedder::new(
            ClipTextModel::random(&ClipConfig::vit_b_32(), &device).expect("text tower"),
            ModelId::parse(MODEL_ID),
        );
        let sentence = SentenceTextEmbedder::load(&minilm, &device).expect("MiniLM");
        let count = env_usize("PREDICT_BENCH_BUILD", 256);
        let prompts: Vec<String> = (0..count)
            .map(|i| {
                format!(
                    "a small red star number {i} left of a blue ring, striped background, pixel art"
                )
            })
            .collect();
        let mut g = c.benchmark_group(format!("index_build/{name}/vit_b32+minilm"));
        g.sample_size(10).warm_up_time(Duration::from_secs(1));
        g.throughput(Throughput::Elements(count as u64));
        g.bench_function(BenchmarkId::new("prompts", count), |b| {
            b.iter(|| {
                let out = tempfile::tempdir().expect("temp dir");
                let report = IndexBuilder::new(&text, &sentence)
                    .build(
                        prompts.iter().map(|p| Ok(p.as_str())),
                        &out.path().join("i"),
                    )
                    .expect("build");
                black_box(report)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
