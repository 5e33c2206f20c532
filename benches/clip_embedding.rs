//! CLIP embedding throughput at ViT-B/32 and ViT-L/14 shapes (random weights), batch 8.
//!
//! `cargo bench --workspace --bench clip_embedding [-- FILTER]`
//! Backends: `IMG2PROMPT_BENCH_BACKENDS=flex,ndarray,wgpu` (default flex,ndarray). CPU backends
//! run the host kernels; each also gets a `-burn-ops` row with burn's own ops, for comparison,
//! and on CPUs with AMX a `-bf16` row (`Precision::Bf16`).
//! Images are preprocessed once outside the timed loop (the tower alone is measured);
//! texts are tokenized inside it. `texts_prompts` are typical SD prompts (9-40 tokens, the
//! padding after EOS is never computed), `texts_77` fill the whole 77-token context.

use burn::tensor::Device;
use clip_encoder::{ClipConfig, ClipModel, ImagePreprocessor, PreprocessorConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 8;

/// The backends to measure: `IMG2PROMPT_BENCH_BACKENDS` (comma-separated: flex, ndarray, wgpu),
/// as the sentence-encoding bench reads it; flex and ndarray by default.
fn devices() -> Vec<(&'static str, Device)> {
    let wanted =
        std::env::var("IMG2PROMPT_BENCH_BACKENDS").unwrap_or_else(|_| "flex,ndarray".into());
    let mut v: Vec<(&'static str, Device)> = Vec::new();
    for name in wanted.split(',').map(str::trim) {
        match name {
            "flex" => v.push(("flex", Device::flex())),
            #[allow(deprecated)]
            "ndarray" => v.push(("ndarray", Device::ndarray())),
            "wgpu" => v.push((
                "wgpu",
                Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            )),
            other => eprintln!("IMG2PROMPT_BENCH_BACKENDS: unknown backend {other:?}, skipped"),
        }
    }
    v
}

fn prompts() -> Vec<String> {
    let base = [
        "a portrait of an old fisherman, oil painting",
        "a cyberpunk city at night, neon lights, rain, highly detailed, 8k, trending on artstation",
        "a cute corgi wearing a crown",
        "an astronaut riding a horse on mars, cinematic lighting, octane render, unreal engine 5, by greg rutkowski",
        "a bowl of ramen, studio ghibli style",
        "a lighthouse in a storm, dramatic sky, waves crashing, photorealistic, 35mm, f/1.8",
        "a dragon made of glass",
        "a cozy cabin in the snowy woods at dusk, warm light in the windows, watercolor, concept art",
    ];
    base.iter().map(|s| s.to_string()).collect()
}

fn bench(c: &mut Criterion) {
    let shapes = [
        ("vit_b32", ClipConfig::vit_b_32()),
        ("vit_l14", ClipConfig::vit_l_14()),
    ];
    let long = vec!["word ".repeat(100); BATCH];
    for (shape, config) in shapes {
        for (backend, device) in devices() {
            let model = ClipModel::random(&config, &device).expect("random model");
            // CPU devices run the host kernels by default; burn's own ops are the comparison.
            let mut variants = vec![(backend.to_string(), model)];
            if variants[0].1.vision().uses_host_kernels() {
                let (vision, text) = ClipModel::random(&config, &device)
                    .expect("random model")
                    .into_parts();
                if let (Ok(v), Ok(t)) = (
                    vision.with_host_kernels(false),
                    text.with_host_kernels(false),
                ) {
                    variants.push((format!("{backend}-burn-ops"), ClipModel::from_parts(v, t)));
                }
            }
            // On CPUs with AMX: the bf16 dense layers (`--precision bf16`) as another row.
            if variants[0].1.vision().uses_host_kernels()
                && clip_encoder::Precision::Bf16.is_available()
            {
                let (vision, text) = ClipModel::random(&config, &device)
                    .expect("random model")
                    .into_parts();
                if let (Ok(v), Ok(t)) = (
                    vision.with_precision(clip_encoder::Precision::Bf16),
                    text.with_precision(clip_encoder::Precision::Bf16),
                ) {
                    variants.push((format!("{backend}-bf16"), ClipModel::from_parts(v, t)));
                }
            }
            for (backend, model) in &variants {
                let mut group = c.benchmark_group(format!("clip/{shape}/{backend}"));
                group.sample_size(10);
                group.warm_up_time(Duration::from_secs(1));
                group.measurement_time(Duration::from_secs(if shape == "vit_l14" {
                    30
                } else {
                    10
                }));
                group.throughput(Throughput::Elements(BATCH as u64));

                let size = config.vision.image_size;
                let pre = ImagePreprocessor::new(PreprocessorConfig::for_image_size(size));
                let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(
                    size as u32 + 37,
                    size as u32,
                    |x, y| image::Rgb([(x % 255) as u8, (y % 255) as u8, ((x + y) % 255) as u8]),
                ));
                let images = vec![img; BATCH];
                let (pixels, shape4) = pre.preprocess_batch(&images).expect("preprocess");
                group.bench_function("images", |b| {
                    b.iter(|| {
                        let out = model
                            .vision()
                            .embed_pixels(pixels.clone(), shape4)
                            .expect("embed");
                        black_box(out.into_data());
                    })
                });
                let p = prompts();
                let texts: Vec<&str> = p.iter().map(String::as_str).collect();
                group.bench_function("texts_prompts", |b| {
                    b.iter(|| black_box(model.embed_texts(&texts).expect("texts").into_data()))
                });
                let texts77: Vec<&str> = long.iter().map(String::as_str).collect();
                group.bench_function("texts_77", |b| {
                    b.iter(|| black_box(model.embed_texts(&texts77).expect("texts").into_data()))
                });
                group.finish();
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
