//! The cost of `predict`'s default text on an index that keeps a captioner: greedy captioning
//! with the shipped world captioner (criterion). Issue 14's budget is 0.6 s per image on 2
//! cores; criterion's throughput line is images/s.
//!
//! `cargo bench -p img2prompt-world --bench captioning`
//!
//! Images are the demo world's first 32 test scenes, rendered as the demo renders them (64 x
//! 64, variant 0), in batches of 1 (one image) and 32 (`predict`'s default batch), on the
//! default backend (`img2prompt::Backend::default()`, flex).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use img2prompt::image::DynamicImage;
use img2prompt::image_captioner::Captioner;
use img2prompt_world::{World, WorldConfig};

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/world-captioner");
    let device = img2prompt::Backend::default()
        .device()
        .expect("the default CPU backend");
    let captioner = Captioner::load(&dir, &device).expect("the shipped world captioner");
    let world = World::generate(WorldConfig::demo());
    let images: Vec<DynamicImage> = world.test[..32]
        .iter()
        .map(|scene| DynamicImage::ImageRgb8(world.render(scene, 0)))
        .collect();
    let mut g = c.benchmark_group("caption/world-captioner");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for batch in [1usize, 32] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new("batch", batch), |b| {
            b.iter(|| black_box(captioner.caption(&images[..batch]).expect("caption")))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
