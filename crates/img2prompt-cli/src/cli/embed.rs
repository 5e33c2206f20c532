//! `embed-text` and `embed-image`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use img2prompt::corpus::{Corpus, CorpusOptions};
use img2prompt::{Backend, Error, ModelKind, Result, clip_encoder, model_kind, sentence_encoder};

use super::{RuntimeArgs, check_output_path};
use crate::models::Models;
use crate::output::write_npy_atomic;

/// `embed-text` arguments.
#[derive(Debug, Args)]
pub struct EmbedTextArgs {
    /// A model directory in HF layout, or a known model name resolved in the cache.
    #[arg(long)]
    pub model: String,
    /// Input texts: .txt (one per line), .jsonl (field "text"), .csv or .parquet (column
    /// "text"). The same reader and rules as `index build`, without its cleaning: every text is
    /// embedded as it is, in order (empty lines too); a NUL byte is an error naming the line.
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

/// Every text of `path`, in order, through the corpus reader (NUL bytes refused), uncleaned.
/// An input without a single text is an error, as it is for `index build`.
fn read_texts(path: &std::path::Path) -> Result<Vec<String>> {
    let corpus = Corpus::open(
        std::slice::from_ref(&path.to_path_buf()),
        CorpusOptions::with_column(Some("text")),
    )?;
    let texts = corpus
        .map(|r| r.map(|r| r.text))
        .collect::<Result<Vec<_>>>()?;
    if texts.is_empty() {
        return Err(Error::Input {
            path: path.to_owned(),
            line: None,
            message: "holds no text".to_owned(),
        });
    }
    Ok(texts)
}

pub(crate) fn embed_text(models: &Models, args: &EmbedTextArgs) -> Result<()> {
    check_output_path(&args.output, "npy")?;
    let texts = read_texts(&args.input)?;
    let model_dir = models.resolve(&args.model)?;
    let backend = args.runtime.backend.unwrap_or_default();
    let device = backend.device()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (flat, dim, load_time, start) = match model_kind(&model_dir)? {
        ModelKind::Sentence => {
            let load_start = Instant::now();
            let encoder = sentence_encoder::SentenceEncoder::load(&model_dir, &device)?
                .with_batch_size(args.runtime.batch)
                .with_precision(args.runtime.precision)?;
            let load_time = load_start.elapsed();
            let start = Instant::now();
            let flat = encoder.encode_flat(&refs)?;
            (flat, encoder.dim(), load_time, start)
        }
        ModelKind::Clip => {
            let load_start = Instant::now();
            let model = clip_encoder::ClipTextModel::load(&model_dir, &device)?
                .with_batch_size(args.runtime.batch)
                .with_precision(args.runtime.precision)?;
            let load_time = load_start.elapsed();
            let start = Instant::now();
            let (flat, [_, dim]) = clip_encoder::tensor_to_vec(model.embed_texts(&refs)?)?;
            (flat, dim, load_time, start)
        }
    };
    let elapsed = start.elapsed();
    write_npy_atomic(&args.output, flat, texts.len(), dim)?;
    report(
        "texts",
        texts.len(),
        dim,
        elapsed,
        backend,
        args.runtime.batch,
        load_time,
    );
    Ok(())
}

pub(crate) fn embed_image(models: &Models, args: &EmbedImageArgs) -> Result<()> {
    check_output_path(&args.output, "npy")?;
    let model_dir = models.resolve(&args.model)?;
    if model_kind(&model_dir)? != ModelKind::Clip {
        return Err(Error::Model {
            name: args.model.clone(),
            message: "embed-image expects a CLIP model (config.json model_type \"clip\"), found \
                      a sentence-transformers model"
                .to_owned(),
        });
    }
    let backend = args.runtime.backend.unwrap_or_default();
    let device = backend.device()?;
    let load_start = Instant::now();
    let model = clip_encoder::ClipVisionModel::load(&model_dir, &device)?
        .with_batch_size(args.runtime.batch)
        .with_precision(args.runtime.precision)?;
    let load_time = load_start.elapsed();
    let start = Instant::now();
    let (flat, [rows, dim]) = clip_encoder::tensor_to_vec(model.embed_image_files(&args.images)?)?;
    let elapsed = start.elapsed();
    write_npy_atomic(&args.output, flat, rows, dim)?;
    report(
        "images",
        rows,
        dim,
        elapsed,
        backend,
        args.runtime.batch,
        load_time,
    );
    Ok(())
}

/// The one stats line of both commands (scripts parse it: xtask/bench/vs_torch.py).
fn report(
    what: &str,
    rows: usize,
    dim: usize,
    elapsed: std::time::Duration,
    backend: Backend,
    batch: usize,
    load: std::time::Duration,
) {
    eprintln!(
        "embedded {rows} {what} -> [{rows}, {dim}] in {:.2}s ({:.1} {what}/s on {backend}, batch \
         {batch}; model load {:.2}s)",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64().max(1e-9),
        load.as_secs_f64()
    );
}
