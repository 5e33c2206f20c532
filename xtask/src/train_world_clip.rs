//! `cargo xtask train-world-clip`: trains a small CLIP on freshly rendered (prompt, image) pairs
//! of the procedural world, with the inference towers of `clip-encoder`, and writes it as an
//! HF-format checkpoint (`config.json`, `model.safetensors`, `tokenizer.json`,
//! `preprocessor_config.json`, `TRAINING.md`) that `clip_encoder::ClipModel::load` reads.
//!
//! Loss: symmetric InfoNCE with a learnable temperature (`logit_scale`, initialised to
//! `ln(1/0.07)`, clamped at `ln 100`). Optimiser: AdamW (betas 0.9/0.98, eps 1e-6, weight
//! decay on everything but biases, LayerNorms, the class token and the logit scale), linear
//! warm-up then cosine decay. Batches: distinct corpus prompts (no false negatives), each
//! rendered with a random variant on a producer thread while the previous step runs.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use burn::module::{Module, Param, ParamGroup};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clip_encoder::{
    ClipConfig, ClipModel, ClipTextModel, ClipTextTower, ClipTokenizer, ClipVisionModel,
    ClipVisionTower, ImagePreprocessor, PreprocessorConfig, pooling_position, tensor_to_vec,
};
use image::DynamicImage;
use img2prompt::{Backend, Error, Result};
use img2prompt_world::{Scene, World, WorldConfig, vocabulary};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::checkpoint::{
    self, CheckpointFiles, LOGIT_SCALE_INIT, WorldClipShape, WorldVocab, config_json,
    preprocessor_json,
};
use crate::plot::{self, EvalPoint, StepPoint};

/// `ln(100)`: the largest logit scale (temperature 0.01).
pub const LOGIT_SCALE_MAX: f64 = 4.605_170_185_988_091;

/// Which world to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorldSize {
    /// `WorldConfig::demo()`: 100 000 corpus prompts.
    Demo,
    /// `WorldConfig::tiny()`: 2 000 corpus prompts (smoke runs).
    Tiny,
}

/// Options of `train-world-clip`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainOptions {
    /// Optimiser steps.
    #[arg(long, default_value_t = 1500)]
    pub steps: usize,
    /// Pairs per batch (distinct prompts).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Seed of the weights, the batches and the variants.
    #[arg(long, default_value_t = 240_109_763)]
    pub seed: u64,
    /// Backend (ndarray, flex, cpu, wgpu, cuda).
    #[arg(long, default_value_t = Backend::default_cpu())]
    pub backend: Backend,
    /// Checkpoint directory to write (replaced atomically).
    #[arg(long, default_value = "crates/img2prompt-world/assets/world-clip")]
    pub out: PathBuf,
    /// Where the loss/accuracy curve is drawn (PNG).
    #[arg(long, default_value = "docs/img/world-clip-loss.png")]
    pub plot: PathBuf,
    /// Directory for the training logs (CSV).
    #[arg(long, default_value = "target/world-clip")]
    pub log_dir: PathBuf,
    /// The world.
    #[arg(long, value_enum, default_value_t = WorldSize::Demo)]
    pub world: WorldSize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    /// Warm-up steps (linear from 0).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// AdamW weight decay (not applied to biases, norms, class token, logit scale).
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f32,
    /// Width of both transformers.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Layers of each transformer.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Patch size of the vision tower.
    #[arg(long, default_value_t = 8)]
    pub patch: usize,
    /// Width of the joint embedding space.
    #[arg(long, default_value_t = 64)]
    pub projection_dim: usize,
    /// Log every this many steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Zero-shot validation retrieval every this many steps (and at the end).
    #[arg(long, default_value_t = 250)]
    pub eval_every: usize,
    /// Validation pairs used for retrieval.
    #[arg(long, default_value_t = 500)]
    pub eval_pairs: usize,
    /// Stop early (at a step boundary) after this many minutes; the checkpoint is still written.
    #[arg(long)]
    pub max_minutes: Option<f64>,
}

/// The trained module: both inference towers plus the learnable temperature.
#[derive(Module, Debug)]
pub struct WorldClip {
    /// Vision tower (`vision_model.*`, `visual_projection`).
    pub vision: ClipVisionTower,
    /// Text tower (`text_model.*`, `text_projection`).
    pub text: ClipTextTower,
    /// `ln` of the logit scale, `[1]`.
    pub logit_scale: Param<Tensor<1>>,
}

impl WorldClip {
    /// Randomly initialised towers (their own initialisers) and `logit_scale = ln(1/0.07)`.
    pub fn new(config: &ClipConfig, device: &Device) -> Self {
        Self {
            vision: ClipVisionTower::new(config, device),
            text: ClipTextTower::new(config, device),
            logit_scale: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![LOGIT_SCALE_INIT as f32], [1]),
                device,
            )),
        }
    }

    /// Symmetric InfoNCE loss `[1]` and the `[b, b]` logits (image rows, text columns).
    pub fn loss(
        &self,
        pixels: Tensor<4>,
        ids: Tensor<2, Int>,
        pools: &[usize],
    ) -> (Tensor<1>, Tensor<2>) {
        let img = l2_normalize(self.vision.forward(pixels));
        let txt = l2_normalize(self.text.forward(ids, pools));
        let [b, _] = img.dims();
        let scale = self
            .logit_scale
            .val()
            .clamp_max(LOGIT_SCALE_MAX)
            .exp()
            .reshape([1, 1]);
        let logits = img.matmul(txt.transpose()) * scale;
        let eye = Tensor::<2>::eye(b, &logits.device());
        let n = b as f64;
        let l_img = (log_softmax(logits.clone(), 1) * eye.clone()).sum() * (-1.0 / n);
        let l_txt = (log_softmax(logits.clone(), 0) * eye).sum() * (-1.0 / n);
        ((l_img + l_txt) * 0.5, logits)
    }
}

fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// The shape asked for, with the context length of the world's prompts.
fn shape(opts: &TrainOptions, image_size: usize, context: usize) -> WorldClipShape {
    WorldClipShape {
        image_size,
        patch_size: opts.patch,
        hidden: opts.hidden,
        layers: opts.layers,
        heads: opts.heads,
        projection_dim: opts.projection_dim,
        context,
    }
}

/// One batch, ready for the device.
struct Batch {
    pixels: Vec<f32>,
    ids: Vec<i64>,
    len: usize,
    pools: Vec<usize>,
}

/// Renders and preprocesses the picked `(scene index, variant)` pairs and pads their ids.
fn make_batch(
    world: &World,
    token_ids: &[Vec<u32>],
    picks: &[(usize, u64)],
    pre: &ImagePreprocessor,
    pad: u32,
    eos: i64,
) -> Batch {
    let images: Vec<Vec<f32>> = picks
        .par_iter()
        .map(|&(i, v)| pre.normalize(&world.render(&world.corpus[i], v)))
        .collect();
    let pixels = images.concat();
    let pools: Vec<usize> = picks
        .iter()
        .map(|&(i, _)| pooling_position(&token_ids[i], eos))
        .collect();
    let len = pools.iter().copied().max().unwrap_or(0) + 1;
    let mut ids = Vec::with_capacity(picks.len() * len);
    for &(i, _) in picks {
        let row = &token_ids[i];
        ids.extend((0..len).map(|j| i64::from(row.get(j).copied().unwrap_or(pad))));
    }
    Batch {
        pixels,
        ids,
        len,
        pools,
    }
}

/// Zero-shot retrieval top-1 both ways (image -> text, text -> image) of row-aligned
/// embeddings `[n, d]`.
pub fn retrieval_top1(img: &[f32], txt: &[f32], d: usize) -> (f64, f64) {
    let n = img.len() / d.max(1);
    if n == 0 {
        return (0.0, 0.0);
    }
    let unit = |v: &[f32]| -> Vec<f32> {
        v.chunks(d)
            .flat_map(|r| {
                let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                r.iter().map(move |x| x / norm)
            })
            .collect()
    };
    let (a, b) = (unit(img), unit(txt));
    let mut sims = vec![0f32; n * n];
    sims.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let ai = &a[i * d..(i + 1) * d];
        for (j, s) in row.iter_mut().enumerate() {
            *s = ai
                .iter()
                .zip(&b[j * d..(j + 1) * d])
                .map(|(x, y)| x * y)
                .sum();
        }
    });
    let argmax = |it: &mut dyn Iterator<Item = (usize, f32)>| {
        it.fold((usize::MAX, f32::NEG_INFINITY), |best, (j, s)| {
            if s > best.1 { (j, s) } else { best }
        })
        .0
    };
    let i2t = (0..n)
        .filter(|&i| argmax(&mut (0..n).map(|j| (j, sims[i * n + j]))) == i)
        .count();
    let t2i = (0..n)
        .filter(|&j| argmax(&mut (0..n).map(|i| (i, sims[i * n + j]))) == j)
        .count();
    (i2t as f64 / n as f64, t2i as f64 / n as f64)
}

/// Held-out pairs rendered once (variant 0).
struct EvalSet {
    images: Vec<DynamicImage>,
    prompts: Vec<String>,
}

impl EvalSet {
    fn new(world: &World, scenes: &[Scene], n: usize) -> Self {
        let scenes = &scenes[..n.min(scenes.len())];
        let images = scenes
            .par_iter()
            .map(|s| DynamicImage::ImageRgb8(world.render(s, 0)))
            .collect();
        let prompts = scenes.iter().map(Scene::prompt).collect();
        Self { images, prompts }
    }

    /// Image and text embeddings `[n, d]`, flat, and `d`.
    fn embed(
        &self,
        vision: &ClipVisionModel,
        text: &ClipTextModel,
    ) -> Result<(Vec<f32>, Vec<f32>, usize)> {
        let (img, [_, d]) = tensor_to_vec(vision.embed_images(&self.images)?)?;
        let prompts: Vec<&str> = self.prompts.iter().map(String::as_str).collect();
        let (txt, _) = tensor_to_vec(text.embed_texts(&prompts)?)?;
        Ok((img, txt, d))
    }

    fn top1(&self, vision: &ClipVisionModel, text: &ClipTextModel) -> Result<(f64, f64)> {
        let (img, txt, d) = self.embed(vision, text)?;
        Ok(retrieval_top1(&img, &txt, d))
    }
}

/// Inference models (no autodiff) sharing the trained weights.
fn inference_models(
    model: &WorldClip,
    config: &ClipConfig,
    pre: &ImagePreprocessor,
    tokenizer: &ClipTokenizer,
    device: &Device,
) -> (ClipVisionModel, ClipTextModel) {
    let m = model.valid();
    (
        ClipVisionModel::from_parts(m.vision, config.clone(), pre.clone(), device)
            .with_batch_size(128),
        ClipTextModel::from_parts(m.text, config.clone(), tokenizer.clone(), device)
            .with_batch_size(256),
    )
}

/// Smallest cosine between matching rows of two `[n, d]` matrices.
fn min_row_cosine(a: &[f32], b: &[f32], d: usize) -> f64 {
    a.chunks(d)
        .zip(b.chunks(d))
        .map(|(x, y)| {
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum();
            let nx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny).max(1e-30)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Learning rate at `step` (0-based): linear warm-up, then cosine to 0.
pub fn lr_at(step: usize, steps: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = (steps - warmup).max(1) as f64;
    let t = ((step - warmup) as f64 / span).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// Writes `text` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn write_logs(dir: &Path, steps: &[StepPoint], evals: &[EvalPoint]) -> Result<()> {
    let mut s = String::from("step,loss,accuracy,logit_scale,lr,elapsed_s\n");
    for p in steps {
        s.push_str(&format!(
            "{},{:.5},{:.4},{:.4},{:.3e},{:.1}\n",
            p.step, p.loss, p.accuracy, p.logit_scale, p.lr, p.elapsed_s
        ));
    }
    write_atomic(&dir.join("train_log.csv"), s.as_bytes())?;
    let mut e = String::from("step,val_i2t,val_t2i\n");
    for p in evals {
        e.push_str(&format!("{},{:.4},{:.4}\n", p.step, p.i2t, p.t2i));
    }
    write_atomic(&dir.join("eval_log.csv"), e.as_bytes())
}

/// Runs the whole training and writes the checkpoint, the logs and the curve.
pub fn run(opts: &TrainOptions, command_line: &str) -> Result<()> {
    if opts.batch < 2 || opts.steps == 0 {
        return Err(Error::invalid(
            "--batch/--steps",
            "need a batch of at least 2 and at least 1 step",
        ));
    }
    let started = Instant::now();
    let world_config = match opts.world {
        WorldSize::Demo => WorldConfig::demo(),
        WorldSize::Tiny => WorldConfig::tiny(),
    };
    let world = World::generate(world_config);
    if opts.batch > world.corpus.len() {
        return Err(Error::invalid(
            "--batch",
            format!(
                "{} exceeds the corpus ({} prompts)",
                opts.batch,
                world.corpus.len()
            ),
        ));
    }
    let vocab = WorldVocab::new(&vocabulary())?;
    let tmp = checkpoint::temp_dir_for(&opts.out)?;
    checkpoint::write_json(&tmp.join("tokenizer.json"), &vocab.tokenizer_json())?;
    let all_scenes: Vec<&Scene> = world
        .corpus
        .iter()
        .chain(&world.validation)
        .chain(&world.test)
        .chain(&world.cross_domain)
        .collect();
    // Context: the longest prompt with BOS/EOS, rounded up to a multiple of 8.
    let probe = ClipTokenizer::from_file(tmp.join("tokenizer.json"), 4096)?;
    let mut longest = 0;
    for chunk in all_scenes.chunks(4096) {
        let prompts: Vec<String> = chunk.iter().map(|s| s.prompt()).collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        longest = probe
            .encode_batch(&refs)?
            .iter()
            .map(Vec::len)
            .fold(longest, usize::max);
    }
    let context = longest.div_ceil(8) * 8;
    let image_size = world.config.image_size as usize;
    let shape = shape(opts, image_size, context);
    let config_value = config_json(&shape, &vocab);
    let config = ClipConfig::from_json_str(&config_value.to_string(), "world-clip config.json")?;
    let tokenizer = ClipTokenizer::from_file(tmp.join("tokenizer.json"), context)?;
    let pre = ImagePreprocessor::new(PreprocessorConfig::for_image_size(image_size));

    // Tokenize every prompt once; the tokenizer must round-trip them all, without [UNK].
    let tokenize = |scenes: &[Scene]| -> Result<Vec<Vec<u32>>> {
        let prompts: Vec<String> = scenes.iter().map(Scene::prompt).collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let ids = tokenizer.encode_batch(&refs)?;
        for (p, row) in prompts.iter().zip(&ids) {
            if row.contains(&vocab.unk_id()) || vocab.decode(row) != *p || row.len() > context {
                return Err(Error::Mismatch {
                    what: "world tokenizer round trip".into(),
                    expected: p.clone(),
                    found: vocab.decode(row),
                });
            }
        }
        Ok(ids)
    };
    let corpus_ids = tokenize(&world.corpus)?;
    tokenize(&world.validation)?;
    tokenize(&world.test)?;
    tokenize(&world.cross_domain)?;

    let device = opts.backend.device()?;
    device.seed(opts.seed);
    let ad = device.clone().autodiff();
    let model = WorldClip::new(&config, &ad);
    let n_params = model.num_params();
    let warmup = opts
        .warmup
        .unwrap_or((opts.steps / 20).max(1))
        .min(opts.steps);
    let adamw = |wd: f32| {
        AdamWConfig::new()
            .with_beta_2(0.98)
            .with_epsilon(1e-6)
            .with_weight_decay(wd)
    };
    let mut optim = adamw(opts.weight_decay).init().with_group(
        ParamGroup::from_any_predicates(vec![
            "bias",
            "gamma",
            "beta",
            "class_embedding",
            "logit_scale",
        ]),
        adamw(0.0).build(),
        None,
    );
    println!(
        "world {:?}: {} corpus prompts, context {context}, vocab {}; model {shape:?}, {n_params} parameters; \
         {} steps x {} pairs, warm-up {warmup}, lr {}, backend {}",
        opts.world,
        world.corpus.len(),
        vocab.size(),
        opts.steps,
        opts.batch,
        opts.lr,
        opts.backend.name()
    );

    let val = EvalSet::new(&world, &world.validation, opts.eval_pairs);
    let mut step_log: Vec<StepPoint> = Vec::new();
    let mut eval_log: Vec<EvalPoint> = Vec::new();
    let eos = config.text.eos_token_id;
    let pad = vocab.pad_id();
    let b = opts.batch;
    let train_start = Instant::now();
    let mut steps_done = 0;

    let outcome: Result<WorldClip> = std::thread::scope(|scope| {
        let mut model = model;
        let (tx, rx) = mpsc::sync_channel::<Batch>(2);
        let (world_ref, ids_ref, pre_ref) = (&world, &corpus_ids, &pre);
        let (steps, seed) = (opts.steps, opts.seed);
        scope.spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_DA7A);
            for _ in 0..steps {
                let picks: Vec<(usize, u64)> =
                    rand::seq::index::sample(&mut rng, world_ref.corpus.len(), b)
                        .into_iter()
                        .map(|i| (i, rng.random::<u64>()))
                        .collect();
                let batch = make_batch(world_ref, ids_ref, &picks, pre_ref, pad, eos);
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        let labels: Vec<i64> = (0..b as i64).collect();
        let mut window = Instant::now();
        for step in 0..opts.steps {
            let batch = rx
                .recv()
                .map_err(|_| Error::Backend("the batch producer stopped".into()))?;
            let lr = lr_at(step, opts.steps, warmup, opts.lr);
            let pixels = Tensor::<4>::from_data(
                TensorData::new(batch.pixels, [b, 3, image_size, image_size]),
                &ad,
            );
            let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.ids, [b, batch.len]), &ad);
            let (loss, logits) = model.loss(pixels, ids, &batch.pools);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            steps_done = step + 1;
            let loss_v = checkpoint::scalar(loss.detach())?;
            let hits = logits.detach().argmax(1).reshape([b]);
            let (pred, _) = tensor_to_vec(hits.float().reshape([1, b]))?;
            let acc = pred
                .iter()
                .zip(&labels)
                .filter(|(p, l)| **p as i64 == **l)
                .count() as f64
                / b as f64;
            let ls = checkpoint::scalar(model.logit_scale.val())?;
            let elapsed = train_start.elapsed().as_secs_f64();
            step_log.push(StepPoint {
                step: steps_done,
                loss: f64::from(loss_v),
                accuracy: acc,
                logit_scale: f64::from(ls).min(LOGIT_SCALE_MAX),
                lr,
                elapsed_s: elapsed,
            });
            if !loss_v.is_finite() {
                return Err(Error::Backend(format!(
                    "loss is {loss_v} at step {steps_done}"
                )));
            }
            if steps_done % opts.log_every == 0 || steps_done == 1 {
                let per_step = window.elapsed().as_secs_f64()
                    / if steps_done == 1 {
                        1.0
                    } else {
                        opts.log_every as f64
                    };
                window = Instant::now();
                println!(
                    "step {steps_done:>5}/{}  loss {loss_v:.4}  acc {acc:.3}  temp {:.4}  lr {lr:.2e}  {per_step:.2} s/step  {:.0} s",
                    opts.steps,
                    1.0 / f64::from(ls).min(LOGIT_SCALE_MAX).exp(),
                    elapsed
                );
            }
            let out_of_time = opts.max_minutes.is_some_and(|m| elapsed > m * 60.0);
            let last = steps_done == opts.steps || out_of_time;
            if steps_done % opts.eval_every == 0 || last {
                let (v, t) = inference_models(&model, &config, &pre, &tokenizer, &device);
                let (i2t, t2i) = val.top1(&v, &t)?;
                println!(
                    "eval step {steps_done}: val zero-shot top-1 ({} pairs) image->text {i2t:.3}, text->image {t2i:.3}",
                    val.prompts.len()
                );
                eval_log.push(EvalPoint {
                    step: steps_done,
                    i2t,
                    t2i,
                });
                write_logs(&opts.log_dir, &step_log, &eval_log)?;
            }
            if out_of_time {
                println!("stopping after {steps_done} steps: --max-minutes reached");
                break;
            }
        }
        drop(rx);
        Ok(model)
    });
    let model = outcome?;
    let train_secs = train_start.elapsed().as_secs_f64();

    // Write the checkpoint, reload it with clip-encoder, check it matches the in-memory model.
    let (v_mem, t_mem) = inference_models(&model, &config, &pre, &tokenizer, &device);
    let logit_scale = checkpoint::scalar(model.logit_scale.val())?.min(LOGIT_SCALE_MAX as f32);
    let (weights, f16) = checkpoint::model_safetensors(v_mem.tower(), t_mem.tower(), logit_scale)?;
    let files = CheckpointFiles {
        config: config_value,
        tokenizer: vocab.tokenizer_json(),
        preprocessor: preprocessor_json(image_size),
        weights,
    };
    checkpoint::write_files(&tmp, &files)?;
    let loaded = ClipModel::load(&tmp, &device)?;
    let (img_a, txt_a, d) = val.embed(&v_mem, &t_mem)?;
    let (img_b, txt_b, _) = val.embed(loaded.vision(), loaded.text())?;
    let cos = min_row_cosine(&img_a, &img_b, d).min(min_row_cosine(&txt_a, &txt_b, d));
    println!(
        "saved vs in-memory embeddings: min cosine {cos:.7} ({} pairs)",
        val.prompts.len()
    );
    if cos.is_nan() || cos <= 0.9999 {
        return Err(Error::Mismatch {
            what: format!("{} reloaded with clip-encoder", tmp.display()),
            expected: "embeddings with cosine > 0.9999 to the trained model".into(),
            found: format!("min cosine {cos}"),
        });
    }
    let (val_i2t, val_t2i) = retrieval_top1(&img_b, &txt_b, d);
    let test = EvalSet::new(&world, &world.test, world.test.len());
    let (test_i2t, test_t2i) = test.top1(loaded.vision(), loaded.text())?;
    println!(
        "final: val top-1 i2t {val_i2t:.3} t2i {val_t2i:.3} ({} pairs); test top-1 i2t {test_i2t:.3} t2i {test_t2i:.3} ({} pairs)",
        val.prompts.len(),
        test.prompts.len()
    );

    let tail = step_log.len().saturating_sub(50);
    let recent = &step_log[tail..];
    let mean =
        |f: fn(&StepPoint) -> f64| recent.iter().map(f).sum::<f64>() / recent.len().max(1) as f64;
    let summary = TrainingSummary {
        command_line: command_line.to_string(),
        opts: opts.clone(),
        world: format!(
            "seed {}, {} px, corpus {} prompts (validation/test/cross-domain {}/{}/{})",
            world.config.seed,
            world.config.image_size,
            world.corpus.len(),
            world.validation.len(),
            world.test.len(),
            world.cross_domain.len()
        ),
        shape,
        vocab_len: vocab.size(),
        n_params,
        steps_done,
        warmup,
        train_secs,
        total_secs: started.elapsed().as_secs_f64(),
        final_loss: mean(|p| p.loss),
        final_acc: mean(|p| p.accuracy),
        logit_scale: f64::from(logit_scale),
        val: (val_i2t, val_t2i, val.prompts.len()),
        test: (test_i2t, test_t2i, test.prompts.len()),
        parity_cos: cos,
        f16,
        weights_bytes: files.weights.len(),
    };
    std::fs::write(tmp.join("TRAINING.md"), summary.markdown())
        .map_err(|e| Error::io(tmp.join("TRAINING.md"), e))?;
    checkpoint::publish_dir(&tmp, &opts.out, &[])?;
    write_logs(&opts.log_dir, &step_log, &eval_log)?;
    let png = plot::draw(&step_log, &eval_log, (test_i2t, test_t2i))?;
    plot::save_png(&png, &opts.plot)?;
    println!(
        "wrote {} ({} bytes of weights, {}), {} and {}",
        opts.out.display(),
        files.weights.len(),
        if f16 { "f16" } else { "f32" },
        opts.plot.display(),
        opts.log_dir.display()
    );
    Ok(())
}

/// What `TRAINING.md` reports.
struct TrainingSummary {
    command_line: String,
    opts: TrainOptions,
    world: String,
    shape: WorldClipShape,
    vocab_len: usize,
    n_params: usize,
    steps_done: usize,
    warmup: usize,
    train_secs: f64,
    total_secs: f64,
    final_loss: f64,
    final_acc: f64,
    logit_scale: f64,
    val: (f64, f64, usize),
    test: (f64, f64, usize),
    parity_cos: f64,
    f16: bool,
    weights_bytes: usize,
}

impl TrainingSummary {
    fn markdown(&self) -> String {
        let o = &self.opts;
        let s = &self.shape;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        format!(
            "# World CLIP: training record\n\n\
             A small CLIP trained from scratch on the procedural world (`img2prompt_world`), with\n\
             the inference towers of `clip-encoder` (`ClipVisionTower`, `ClipTextTower`), by\n\
             `xtask/src/train_world_clip.rs`. HF layout: `transformers.CLIPModel.from_pretrained`\n\
             and `clip_encoder::ClipModel::load` both read this directory.\n\n\
             ## Command\n\n```\n{cmd}\n```\n\n\
             ## Setup\n\n\
             | | |\n| --- | --- |\n\
             | world | {world} |\n\
             | seed | {seed} (weights: backend seed; batches and variants: ChaCha8) |\n\
             | backend | {backend}, {cores} cores (machine shared with builds) |\n\
             | vision | {size} px, patch {patch}, width {h}, {l} layers, {heads} heads, MLP {mlp}, quick_gelu |\n\
             | text | word-level tokenizer, vocab {vocab}, context {ctx}, width {h}, {l} layers, {heads} heads, MLP {mlp}, causal, pooled at the first `<|endoftext|>` |\n\
             | projection | {proj} |\n\
             | parameters | {params} |\n\
             | weights | {wbytes} bytes, {dtype} |\n\
             | loss | symmetric InfoNCE, learnable logit scale (init ln(1/0.07), clamped at ln 100) |\n\
             | optimiser | AdamW (0.9, 0.98, eps 1e-6), peak lr {lr}, weight decay {wd} (not on biases, norms, class token, logit scale), warm-up {warmup} steps, cosine to 0 |\n\
             | batches | {batch} distinct corpus prompts per step, each rendered with a random variant |\n\
             | steps | {steps} of {asked} asked |\n\
             | wall time | {train:.0} s training ({per:.2} s/step), {total:.0} s in all |\n\n\
             ## Results\n\n\
             | metric | value |\n| --- | --- |\n\
             | final loss (mean of the last 50 steps) | {loss:.4} |\n\
             | in-batch accuracy (image -> text, last 50 steps, chance {chance:.4}) | {acc:.3} |\n\
             | temperature | {temp:.4} (logit scale {ls:.3}) |\n\
             | validation zero-shot top-1, image -> text ({vn} pairs, chance {vch:.4}) | {vi:.3} |\n\
             | validation zero-shot top-1, text -> image | {vt:.3} |\n\
             | test zero-shot top-1, image -> text ({tn} pairs, chance {tch:.4}) | {ti:.3} |\n\
             | test zero-shot top-1, text -> image | {tt:.3} |\n\
             | reloaded with `ClipModel::load` vs in-memory (min cosine) | {cos:.7} |\n\n\
             Zero-shot retrieval: each held-out image (variant 0) against all the split's prompts,\n\
             and each prompt against all its images. The curve is `docs/img/world-clip-loss.png`.\n",
            cmd = self.command_line,
            world = self.world,
            size = s.image_size,
            seed = o.seed,
            backend = o.backend.name(),
            patch = s.patch_size,
            h = s.hidden,
            l = s.layers,
            heads = s.heads,
            mlp = 4 * s.hidden,
            vocab = self.vocab_len,
            ctx = s.context,
            proj = s.projection_dim,
            params = self.n_params,
            wbytes = self.weights_bytes,
            dtype = if self.f16 { "f16" } else { "f32" },
            lr = o.lr,
            wd = o.weight_decay,
            warmup = self.warmup,
            batch = o.batch,
            steps = self.steps_done,
            asked = o.steps,
            train = self.train_secs,
            per = self.train_secs / self.steps_done.max(1) as f64,
            total = self.total_secs,
            loss = self.final_loss,
            chance = 1.0 / o.batch as f64,
            acc = self.final_acc,
            temp = 1.0 / self.logit_scale.exp(),
            ls = self.logit_scale,
            vn = self.val.2,
            vch = 1.0 / self.val.2.max(1) as f64,
            vi = self.val.0,
            vt = self.val.1,
            tn = self.test.2,
            tch = 1.0 / self.test.2.max(1) as f64,
            ti = self.test.0,
            tt = self.test.1,
            cos = self.parity_cos,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{lr_at, retrieval_top1};

    #[test]
    fn retrieval_counts_matching_rows_both_ways() {
        // Image 0 matches text 0; image 1 is closest to text 0 (a miss); image 2 matches text 2.
        let img = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0];
        let txt = [1.0, 0.0, 0.6, 0.8, 0.0, 1.0];
        let (i2t, t2i) = retrieval_top1(&img, &txt, 2);
        assert!((i2t - 2.0 / 3.0).abs() < 1e-12, "{i2t}");
        // Text 1 (0.6, 0.8) is closest to image 2 (0.8 against 0.69 for image 1): a miss too.
        assert!((t2i - 2.0 / 3.0).abs() < 1e-12, "{t2i}");
    }

    #[test]
    fn lr_warms_up_then_decays_to_zero() {
        assert!((lr_at(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert!(lr_at(99, 100, 10, 1.0) < 1e-3);
    }
}
