//! `embed-text` and `embed-image`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::{RuntimeArgs, check_output_path};
use crate::cache::{ModelCache, ModelKind, model_kind};
use crate::error::{Error, Result};
use crate::npy::write_npy_atomic;
use crate::texts::read_texts;

/// `embed-text` arguments.
#[derive(Debug, Args)]
pub struct EmbedTextArgs {
    /// A model directory in HF layout, or a known model name resolved in the cache.
    #[arg(long)]
    pub model: String,
    /// Input texts: .txt (one per line) or .jsonl (field "text").
    #[arg(long)]
    pub input: PathBuf,
    /// Output .npy file (float32, [n, d]).
    #[arg(long)]
    pub output: PathBuf,
    /// Backend and batch size.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `embed-image` arguments.
#[derive(Debug, Args)]
pub struct EmbedImageArgs {
    /// A CLIP model directory in HF layout, or a known model name resolved in the cache.
    #[arg(long)]
    pub model: String,
    /// Output .npy file (float32, [n, d]).
    #[arg(long)]
    pub output: PathBuf,
    /// Backend and batch size.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Image files (PNG, JPEG, GIF, WebP, BMP, TIFF).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub(crate) fn embed_text(cache: &ModelCache, args: &EmbedTextArgs) -> Result<()> {
    check_output_path(&args.output, "npy")?;
    let texts = read_texts(&args.input, &["text"])?;
    let model_dir = cache.resolve(&args.model)?;
    let backend = args.runtime.backend.unwrap_or_default();
    let device = backend.device()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (flat, dim, load_time, start) = match model_kind(&model_dir)? {
        ModelKind::Sentence => {
            let load_start = Instant::now();
            let encoder = sentence_encoder::SentenceEncoder::load(&model_dir, &device)?
                .with_batch_size(args.runtime.batch);
            let load_time = load_start.elapsed();
            let start = Instant::now();
            let flat = encoder.encode_flat(&refs)?;
            (flat, encoder.dim(), load_time, start)
        }
        ModelKind::Clip => {
            let load_start = Instant::now();
            let model = clip_encoder::ClipTextModel::load(&model_dir, &device)?
                .with_batch_size(args.runtime.batch);
            let load_time = load_start.elapsed();
            let start = Instant::now();
            let (flat, [_, dim]) = clip_encoder::tensor_to_vec(model.embed_texts(&refs)?)?;
            (flat, dim, load_time, start)
        }
    };
    let elapsed = start.elapsed();
    write_npy_atomic(&args.output, flat, texts.len(), dim)?;
    let rate = texts.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "embedded {} texts -> [{}, {}] in {:.2}s ({rate:.1} texts/s on {backend}, batch {}; model load {:.2}s)",
        texts.len(),
        texts.len(),
        dim,
        elapsed.as_secs_f64(),
        args.runtime.batch,
        load_time.as_secs_f64()
    );
    Ok(())
}

pub(crate) fn embed_image(cache: &ModelCache, args: &EmbedImageArgs) -> Result<()> {
    check_output_path(&args.output, "npy")?;
    let model_dir = cache.resolve(&args.model)?;
    if model_kind(&model_dir)? != ModelKind::Clip {
        return Err(Error::Model {
            name: args.model.clone(),
            message: "embed-image needs a CLIP model (config.json model_type \"clip\")".to_owned(),
        });
    }
    let backend = args.runtime.backend.unwrap_or_default();
    let device = backend.device()?;
    let load_start = Instant::now();
    let model = clip_encoder::ClipVisionModel::load(&model_dir, &device)?
        .with_batch_size(args.runtime.batch);
    let load_time = load_start.elapsed();
    let start = Instant::now();
    let (flat, [rows, dim]) = clip_encoder::tensor_to_vec(model.embed_image_files(&args.images)?)?;
    let elapsed = start.elapsed();
    write_npy_atomic(&args.output, flat, rows, dim)?;
    eprintln!(
        "embedded {rows} images -> [{rows}, {dim}] in {:.2}s ({:.1} images/s on {backend}, batch {}; model load {:.2}s)",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64().max(1e-9),
        args.runtime.batch,
        load_time.as_secs_f64()
    );
    Ok(())
}
