//! Training the head on image-prompt pairs: determinism, the image-embedding cache (reuse and
//! invalidation), errors naming the pairs file and line, and the stored training record.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::Device;
use img2prompt::eval::{EvalPair, read_pairs};
use img2prompt::head::{
    CacheState, ClipHead, HeadKind, HeadTrainConfig, PairTrainOptions, TextMix, TrainingSource,
    embed_pair_images, train_head_from_pairs, train_head_on_pairs,
};
use img2prompt::image::{DynamicImage, RgbImage};
use img2prompt::knn_index::{self, IndexConfig, IndexSpec, PromptIndex, build_index, synth};
use img2prompt::{EmbeddingHead, Error, ImageEmbedder, ModelId, Result, TextEmbedder};

const IN: usize = 12;
const OUT: usize = 8;

fn device() -> Device {
    img2prompt::Backend::default_cpu().device().unwrap()
}

/// An image embedder whose embedding is a fixed function of the pixels (mean of each channel
/// over a few regions), counting the images it is asked to embed.
struct PixelEmbedder {
    id: ModelId,
    calls: AtomicUsize,
}

impl PixelEmbedder {
    fn new(fingerprint: &str) -> Self {
        PixelEmbedder {
            id: ModelId::new("pixel-clip", fingerprint),
            calls: AtomicUsize::new(0),
        }
    }

    fn embedded(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ImageEmbedder for PixelEmbedder {
    fn model_id(&self) -> &ModelId {
        &self.id
    }
    fn dim(&self) -> usize {
        IN
    }
    fn embed_images(&self, images: &[DynamicImage]) -> Result<Vec<f32>> {
        self.calls.fetch_add(images.len(), Ordering::SeqCst);
        Ok(images
            .iter()
            .flat_map(|img| {
                let rgb = img.to_rgb8();
                let (w, h) = rgb.dimensions();
                // 4 quadrants x 3 channels.
                let mut sums = [0f32; IN];
                for (x, y, p) in rgb.enumerate_pixels() {
                    let q = usize::from(x >= w / 2) + 2 * usize::from(y >= h / 2);
                    for c in 0..3 {
                        sums[q * 3 + c] += f32::from(p[c]) / 255.0 + 0.01;
                    }
                }
                sums.to_vec()
            })
            .collect())
    }
}

/// Writes `n` small PNGs of random colours and a `pairs.jsonl` naming them; returns the file.
fn write_pairs(dir: &Path, n: usize) -> PathBuf {
    let colours = synth::gaussian(5, n, 12);
    let mut jsonl = String::new();
    for i in 0..n {
        let c = &colours[i * 12..(i + 1) * 12];
        let img = RgbImage::from_fn(8, 8, |x, y| {
            let q = (usize::from(x >= 4) + 2 * usize::from(y >= 4)) * 3;
            let v = |k: usize| ((c[q + k] * 60.0 + 128.0).clamp(0.0, 255.0)) as u8;
            img2prompt::image::Rgb([v(0), v(1), v(2)])
        });
        img.save(dir.join(format!("img{i}.png"))).unwrap();
        jsonl.push_str(&format!(
            "{{\"image\": \"img{i}.png\", \"prompt\": \"prompt {i}\"}}\n"
        ));
    }
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, jsonl).unwrap();
    path
}

fn config(seed: u64) -> HeadTrainConfig {
    let mut c = HeadTrainConfig::default();
    c.kind = HeadKind::Mlp { hidden: 16 };
    c.epochs = 4;
    c.batch_size = 16;
    c.learning_rate = 1e-2;
    c.validation_fraction = 0.2;
    c.seed = seed;
    c
}

/// Targets: a fixed linear map of the inputs, normalised.
fn targets_of(x: &[f32]) -> Vec<f32> {
    let w = synth::gaussian(99, IN, OUT);
    let mut y: Vec<f32> = x
        .chunks_exact(IN)
        .flat_map(|row| {
            (0..OUT)
                .map(|j| (0..IN).map(|i| row[i] * w[i * OUT + j]).sum::<f32>())
                .collect::<Vec<_>>()
        })
        .collect();
    for r in y.chunks_exact_mut(OUT) {
        assert!(knn_index::l2_normalize(r));
    }
    y
}

fn weights(head: &ClipHead) -> Vec<f32> {
    head.predict(&synth::gaussian(3, 20, IN)).unwrap()
}

#[test]
fn pair_training_is_deterministic_for_a_seed_and_records_its_data() {
    let n = 200;
    let x = synth::gaussian(1, n, IN);
    let y = targets_of(&x);
    let text_x = synth::gaussian(2, 100, IN);
    let text_y = targets_of(&text_x);
    let mix = TextMix {
        keys: &text_x,
        targets: &text_y,
        n: 100,
        weight: 0.5,
        shift_to_images: true,
    };
    let run = |seed: u64, text: Option<TextMix<'_>>| {
        train_head_on_pairs(&x, &y, n, text, &config(seed), &device(), &mut |_| {}).unwrap()
    };
    let (a, report) = run(7, None);
    let (b, _) = run(7, None);
    let (c, _) = run(8, None);
    assert_eq!(weights(&a), weights(&b), "same seed, same head");
    assert_ne!(weights(&a), weights(&c), "another seed, another head");
    assert_eq!((report.n_train, report.n_val), (160, 40));
    let record = a.training().unwrap();
    assert_eq!(record.source, TrainingSource::Pairs);
    assert_eq!((record.pair_rows, record.text_rows), (160, 0));
    assert_eq!(record.validation_rows, 40);
    assert_eq!(record.validation_cosine, report.best_validation_cosine());

    let (m1, mixed) = run(7, Some(mix));
    let (m2, _) = run(7, Some(mix));
    assert_eq!(weights(&m1), weights(&m2));
    assert_ne!(weights(&m1), weights(&a), "the text rows change the head");
    // Validation is held out of the pairs only; every text row is trained on.
    assert_eq!((mixed.n_train, mixed.n_val), (260, 40));
    let record = m1.training().unwrap();
    assert_eq!(record.source, TrainingSource::PairsAndText);
    assert_eq!((record.pair_rows, record.text_rows), (160, 100));
    assert_eq!(record.text_weight, Some(0.5));
    assert!(m1.config().input_mean.is_none(), "no modality-gap shift");

    // The record survives a save / load round trip, and is readable without the weights.
    let dir = tempfile::tempdir().unwrap();
    m1.save(dir.path()).unwrap();
    let loaded = ClipHead::load(dir.path(), &device()).unwrap();
    assert_eq!(loaded.training(), m1.training());
    assert_eq!(
        ClipHead::read_training(dir.path()).unwrap().as_ref(),
        m1.training()
    );
    assert_eq!(weights(&loaded), weights(&m1));
}

#[test]
fn early_stopping_ends_the_run_after_patience_epochs_without_progress() {
    let n = 100;
    let x = synth::gaussian(1, n, IN);
    let y = targets_of(&x);
    let mut c = config(0);
    c.epochs = 60;
    c.learning_rate = 0.5; // noisy enough that the best epoch comes early
    c.patience = Some(2);
    let (_, report) = train_head_on_pairs(&x, &y, n, None, &c, &device(), &mut |_| {}).unwrap();
    let run = report.train_loss.len();
    assert!(run < 60, "ran all {run} epochs");
    assert_eq!(run, report.best_epoch + 2, "{report:?}");
    c.patience = Some(0);
    assert!(train_head_on_pairs(&x, &y, n, None, &c, &device(), &mut |_| {}).is_err());
}

#[test]
fn the_embedding_cache_is_reused_and_invalidated_by_content_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_pairs(dir.path(), 30);
    let pairs = read_pairs(&file).unwrap();
    let cache = dir.path().join("cache.bin");
    let model = PixelEmbedder::new("00000000000000000000000000000001");
    let embed = |m: &PixelEmbedder, pairs: &[EvalPair]| {
        embed_pair_images(m, pairs, &file, Some(&cache), &mut |_, _| {}).unwrap()
    };

    let first = embed(&model, &pairs);
    assert_eq!((first.encoded, first.reused), (30, 0));
    assert_eq!(first.cache, CacheState::Missing);
    assert_eq!(model.embedded(), 30);

    // Same images: nothing encoded, the same embeddings.
    let again = embed(&model, &pairs);
    assert_eq!((again.encoded, again.reused), (0, 30));
    assert_eq!(again.cache, CacheState::Used);
    assert_eq!(again.embeddings, first.embeddings);
    assert_eq!(model.embedded(), 30);

    // A renamed file keeps its entry (the key is the content); changed pixels do not.
    std::fs::rename(dir.path().join("img0.png"), dir.path().join("moved.png")).unwrap();
    let mut moved = pairs.clone();
    moved[0].image = dir.path().join("moved.png");
    RgbImage::from_pixel(8, 8, img2prompt::image::Rgb([1, 2, 3]))
        .save(&pairs[1].image)
        .unwrap();
    let changed = embed(&model, &moved);
    assert_eq!((changed.encoded, changed.reused), (1, 29));
    assert_eq!(model.embedded(), 31);
    assert_eq!(changed.embeddings[..IN], first.embeddings[..IN]);
    assert_ne!(changed.embeddings[IN..2 * IN], first.embeddings[IN..2 * IN]);
    let direct = embed_pair_images(&model, &moved, &file, None, &mut |_, _| {}).unwrap();
    assert_eq!(direct.cache, CacheState::Off);
    assert_eq!(
        direct.embeddings, changed.embeddings,
        "cached rows are exact"
    );

    // Another model: the cache is dropped whole.
    let other = PixelEmbedder::new("00000000000000000000000000000002");
    let swapped = embed(&other, &moved);
    assert_eq!(swapped.cache, CacheState::OtherModel);
    assert_eq!((swapped.encoded, swapped.reused), (30, 0));
    assert_eq!(other.embedded(), 30);

    // A damaged cache is not trusted.
    let mut bytes = std::fs::read(&cache).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&cache, bytes).unwrap();
    let repaired = embed(&other, &moved);
    assert_eq!(repaired.cache, CacheState::Damaged);
    assert_eq!(repaired.encoded, 30);
    assert_eq!(repaired.embeddings, swapped.embeddings);
    // And the rewritten cache is whole again.
    assert_eq!(embed(&other, &moved).cache, CacheState::Used);
}

fn expect_input_error(err: Error, file: &Path, line: usize) -> String {
    let text = err.to_string();
    match &err {
        Error::Input {
            path, line: got, ..
        } => {
            assert_eq!(path, file, "{text}");
            assert_eq!(*got, Some(line), "{text}");
        }
        other => panic!("expected an input error, got {other}"),
    }
    assert!(
        text.contains(&format!("{}:{line}", file.display())),
        "{text}"
    );
    text
}

#[test]
fn bad_pairs_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_pairs(dir.path(), 5);
    let model = PixelEmbedder::new("00000000000000000000000000000001");

    // A missing image: line 3.
    std::fs::remove_file(dir.path().join("img2.png")).unwrap();
    let pairs = read_pairs(&file).unwrap();
    let err = embed_pair_images(&model, &pairs, &file, None, &mut |_, _| {}).unwrap_err();
    let text = expect_input_error(err, &file, 3);
    assert!(text.contains("img2.png"), "{text}");

    // An image that does not decode: line 4.
    std::fs::write(dir.path().join("img2.png"), b"\x89PNG not really").unwrap();
    let pairs = read_pairs(&file).unwrap();
    let err = embed_pair_images(&model, &pairs, &file, None, &mut |_, _| {}).unwrap_err();
    expect_input_error(err, &file, 3);

    // A line that is not a pair.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"image\": \"img1.png\"}\n");
    std::fs::write(&file, text).unwrap();
    let err = read_pairs(&file).unwrap_err();
    expect_input_error(err, &file, 6);
}

/// A sentence "model" for prompts missing from the index: the target is the pixel embedder's
/// width mapped through the fixed linear map (never called in the index-hit case).
struct NoSentence;

impl TextEmbedder for NoSentence {
    fn model_id(&self) -> &ModelId {
        static ID: std::sync::OnceLock<ModelId> = std::sync::OnceLock::new();
        ID.get_or_init(|| ModelId::new("no-sentence", ""))
    }
    fn dim(&self) -> usize {
        OUT
    }
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        Err(Error::invalid(
            "sentence",
            format!("asked to embed {} texts", texts.len()),
        ))
    }
}

#[test]
fn training_from_pair_files_uses_the_index_targets_and_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let n = 60;
    let file = write_pairs(dir.path(), n);
    let pairs = read_pairs(&file).unwrap();
    let model = PixelEmbedder::new("00000000000000000000000000000001");
    // An index holding every pair's prompt, with targets a linear map of the image embedding.
    let images = embed_pair_images(&model, &pairs, &file, None, &mut |_, _| {}).unwrap();
    let targets = targets_of(&images.embeddings);
    let mut keys = images.embeddings.clone();
    for k in keys.chunks_exact_mut(IN) {
        assert!(knn_index::l2_normalize(k));
    }
    let prompts: Vec<String> = pairs.iter().map(|p| p.prompt.clone()).collect();
    let ids: Vec<u64> = (0..n as u64).collect();
    let index_dir = dir.path().join("index");
    let config_ = IndexConfig::new(IN, OUT, IndexSpec::Exact)
        .with_models(model.model_id().to_string(), "no-sentence");
    build_index(&index_dir, config_, &ids, &keys, &prompts, &targets).unwrap();
    let index = PromptIndex::open(&index_dir).unwrap();

    let mut options = PairTrainOptions::new(config(1));
    options.cache = Some(img2prompt::head::image_cache_path(&index_dir));
    let before = model.embedded();
    let (head, report) = train_head_from_pairs(
        &model,
        &NoSentence,
        &index,
        &pairs,
        &file,
        &options,
        &device(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.targets_from_index, n);
    assert_eq!((report.images_encoded, report.images_cached), (n, 0));
    assert_eq!(model.embedded(), before + n);
    let (again, report2) = train_head_from_pairs(
        &model,
        &NoSentence,
        &index,
        &pairs,
        &file,
        &options,
        &device(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((report2.images_encoded, report2.images_cached), (0, n));
    assert_eq!(weights(&head), weights(&again));
    assert_eq!(head.training().unwrap().source, TrainingSource::Pairs);

    // Another image model than the index's keys: refused, naming the index.
    let other = PixelEmbedder::new("00000000000000000000000000000002");
    let err = train_head_from_pairs(
        &other,
        &NoSentence,
        &index,
        &pairs,
        &file,
        &options,
        &device(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    // A prompt the index lacks needs the sentence model (here one that refuses).
    let mut unknown = pairs.clone();
    unknown[0].prompt = "not in the index".into();
    let err = train_head_from_pairs(
        &model,
        &NoSentence,
        &index,
        &unknown,
        &file,
        &options,
        &device(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("asked to embed 1 texts"), "{err}");
}
