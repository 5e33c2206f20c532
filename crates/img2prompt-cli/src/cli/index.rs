//! `index build`, `index train`, `index merge`: the offline stage, on one machine or sharded.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use img2prompt::builder::{DEFAULT_CHUNK, Shard, check_output, train_quantizer};
use img2prompt::corpus::{Corpus, CorpusOptions};
use img2prompt::knn_index::{IndexSpec, TargetEncoding};
use img2prompt::{ClipTextEmbedder, Error, IndexBuilder, Result, SentenceTextEmbedder};

use super::{RuntimeArgs, at_least_one};
use crate::models::Models;
use crate::progress::BuildDisplay;

/// `index` sub-commands.
#[derive(Debug, Subcommand)]
pub enum IndexAction {
    /// Encode a prompt corpus with CLIP's text tower (keys) and a sentence encoder (targets)
    /// into an index directory. Re-running after an interruption resumes. With --shard, encode
    /// only one shard of the corpus (then `index merge` the shards).
    Build(IndexBuildArgs),
    /// Train the IVF quantizer of a sharded ivf/ivf-pq build once, on a sample of the corpus;
    /// every shard then uses it (`index build --shard I/N --trained DIR`).
    Train(IndexTrainArgs),
    /// Merge the shard directories of a sharded build into one index directory.
    Merge(IndexMergeArgs),
    /// Copy an index with its target vectors stored in another encoding (f32, f16, int8).
    Convert(IndexConvertArgs),
}

/// `index convert` arguments.
#[derive(Debug, Args)]
pub struct IndexConvertArgs {
    /// The index directory to convert (left as it is).
    pub index: PathBuf,
    /// Output index directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Target encoding of the copy: f32, f16 (half the bytes) or int8 (a quarter).
    #[arg(long)]
    pub targets: TargetEncoding,
    /// Replace an existing index at --out (atomically, once the new one is complete).
    #[arg(long)]
    pub overwrite: bool,
}

/// `index train` arguments.
#[derive(Debug, Args)]
pub struct IndexTrainArgs {
    /// CLIP checkpoint (HF layout directory or known name): makes the keys (as in `index build`).
    #[arg(long)]
    pub clip: String,
    /// Prompt corpora, exactly as given to every shard's `index build`.
    #[arg(long, required = true, num_args = 1..)]
    pub prompts: Vec<PathBuf>,
    /// JSONL field / CSV or Parquet column holding the prompt (default: "prompt", else "text").
    #[arg(long)]
    pub column: Option<String>,
    /// FAISS index: ivf, ivf-pq or an IVF factory string.
    #[arg(long)]
    pub spec: String,
    /// Prompts to train on (a uniform sample of the cleaned corpus).
    #[arg(long, default_value_t = 65_536, value_parser = at_least_one)]
    pub sample: usize,
    /// Output directory of the trained quantizer.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a trained quantizer at --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Backend and batch size.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `index merge` arguments.
#[derive(Debug, Args)]
pub struct IndexMergeArgs {
    /// Output index directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The shard directories (all N shards of one build, in any order).
    #[arg(required = true, num_args = 1..)]
    pub shards: Vec<PathBuf>,
    /// Replace an existing index at --out (atomically, once the merged one is complete).
    #[arg(long)]
    pub overwrite: bool,
}

/// `index build` arguments.
#[derive(Debug, Args)]
pub struct IndexBuildArgs {
    /// CLIP checkpoint (HF layout directory or known name): makes the search keys.
    #[arg(long)]
    pub clip: String,
    /// Sentence-transformers model (directory or known name): makes the targets.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub sentence: String,
    /// Prompt corpora: .txt, .jsonl, .csv or .parquet files (or directories of them). Prompts
    /// are trimmed, whitespace runs collapsed, empty ones and exact duplicates dropped.
    #[arg(long, required = true, num_args = 1..)]
    pub prompts: Vec<PathBuf>,
    /// Output index directory.
    #[arg(long)]
    pub out: PathBuf,
    /// FAISS index: exact, hnsw, ivf, ivf-pq or a FAISS factory string (default: exact up to
    /// 200k records, hnsw up to 5M, ivf-pq above).
    #[arg(long)]
    pub spec: Option<String>,
    /// JSONL field / CSV or Parquet column holding the prompt (default: "prompt", else "text").
    #[arg(long)]
    pub column: Option<String>,
    /// Replace an existing index at --out (atomically, once the new one is complete).
    #[arg(long)]
    pub overwrite: bool,
    /// Discard an interrupted build at --out instead of resuming it.
    #[arg(long)]
    pub fresh: bool,
    /// Encode only shard I of N (0-based, e.g. 0/4) of the cleaned corpus, into a shard
    /// directory for `index merge`. Prompts are split by a hash of their text; ids stay those
    /// of a single build.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// A trained quantizer directory (`index train`): add the keys to it instead of training
    /// one (needed by ivf/ivf-pq shards; sets --spec).
    #[arg(long)]
    pub trained: Option<PathBuf>,
    /// How the index stores the 384-d targets: f32 (exact), f16 (half the bytes) or int8
    /// (per-row scale, about a quarter).
    #[arg(long, default_value_t = TargetEncoding::F32)]
    pub targets: TargetEncoding,
    /// Prompts per chunk: each is durable once written, so an interruption loses at most one.
    #[arg(long, default_value_t = DEFAULT_CHUNK, value_parser = at_least_one)]
    pub chunk: usize,
    /// Backend and batch size.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `index build`.
pub(crate) fn build(models: &Models, args: &IndexBuildArgs) -> Result<()> {
    let spec = match args.spec.as_deref().map(str::trim) {
        Some("") => return Err(Error::invalid("--spec", "is empty")),
        Some(s) => {
            let Ok(spec) = s.parse::<IndexSpec>();
            Some(spec)
        }
        None => None,
    };
    // Every input check runs before a model is loaded.
    let corpus = Corpus::open(
        &args.prompts,
        CorpusOptions::with_column(args.column.as_deref()),
    )?;
    check_output(&args.out, args.overwrite)?;
    corpus.ensure_prompt()?;
    let records = corpus.count_records()?;
    let clip_dir = models.resolve(&args.clip)?;
    let sentence_dir = models.resolve(&args.sentence)?;
    let device = args.runtime.backend.unwrap_or_default().device()?;
    let clip = ClipTextEmbedder::load(&clip_dir, &device)?
        .with_batch_size(args.runtime.batch)
        .with_precision(args.runtime.precision)?;
    let sentence = SentenceTextEmbedder::load(&sentence_dir, &device)?
        .with_batch_size(args.runtime.batch)
        .with_precision(args.runtime.precision)?;

    let display = BuildDisplay::auto();
    let mut builder = IndexBuilder::new(&clip, &sentence)
        .expected_records(records)
        .chunk_size(args.chunk)
        .observer(&display)
        .overwrite(args.overwrite)
        .fresh(args.fresh);
    if let Some(spec) = spec {
        builder = builder.spec(spec);
    }
    if let Some(shard) = args.shard {
        builder = builder.shard(shard);
    }
    if let Some(trained) = &args.trained {
        builder = builder.trained(trained);
    }
    builder = builder.targets(args.targets);
    let report = builder.build_corpus(corpus, &args.out)?;
    eprintln!("index build: {report}");
    Ok(())
}

/// Runs `index train`.
pub(crate) fn train(models: &Models, args: &IndexTrainArgs) -> Result<()> {
    let spec = match args.spec.trim() {
        "" => return Err(Error::invalid("--spec", "is empty")),
        s => {
            let Ok(spec) = s.parse::<IndexSpec>();
            spec
        }
    };
    let corpus = Corpus::open(
        &args.prompts,
        CorpusOptions::with_column(args.column.as_deref()),
    )?;
    check_trained_output(&args.out, args.overwrite)?;
    corpus.ensure_prompt()?;
    let clip_dir = models.resolve(&args.clip)?;
    let device = args.runtime.backend.unwrap_or_default().device()?;
    let clip = ClipTextEmbedder::load(&clip_dir, &device)?
        .with_batch_size(args.runtime.batch)
        .with_precision(args.runtime.precision)?;
    let report = train_quantizer(&clip, corpus, &spec, args.sample, &args.out)?;
    eprintln!("index train: {report}");
    Ok(())
}

/// The trained directory may be new, empty, or (with `overwrite`) a trained quantizer.
fn check_trained_output(out: &std::path::Path, overwrite: bool) -> Result<()> {
    let bad = |message: &str| Error::Input {
        path: out.to_owned(),
        line: None,
        message: message.to_owned(),
    };
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(out, e)),
        Ok(meta) if !meta.is_dir() => Err(bad("exists and is not a directory")),
        Ok(_)
            if out
                .join(img2prompt::knn_index::TRAINED_MANIFEST_FILE)
                .is_file() =>
        {
            if overwrite {
                Ok(())
            } else {
                Err(bad(
                    "holds a trained quantizer already (--overwrite replaces it)",
                ))
            }
        }
        Ok(_) => {
            let mut entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
            if entries.next().is_none() {
                Ok(())
            } else {
                Err(bad(
                    "exists and is not a trained quantizer directory (refusing to replace it)",
                ))
            }
        }
    }
}

/// Runs `index merge`.
pub(crate) fn merge(args: &IndexMergeArgs) -> Result<()> {
    let start = std::time::Instant::now();
    check_output(&args.out, args.overwrite)?;
    for shard in &args.shards {
        if shard == &args.out {
            return Err(Error::invalid(
                "--out",
                format!("{} is also given as a shard", shard.display()),
            ));
        }
    }
    let manifest = img2prompt::knn_index::merge_shards(&args.out, &args.shards)?;
    eprintln!(
        "index merge: {} prompts from {} shards in {} in {:.1} s; spec {} ({})",
        manifest.count,
        args.shards.len(),
        args.out.display(),
        start.elapsed().as_secs_f64(),
        manifest.spec,
        manifest.faiss_factory
    );
    Ok(())
}

/// Runs `index convert`.
pub(crate) fn convert(args: &IndexConvertArgs) -> Result<()> {
    let start = std::time::Instant::now();
    check_output(&args.out, args.overwrite)?;
    if args.out == args.index {
        return Err(Error::invalid(
            "--out",
            "must differ from the index converted (write a copy, then rename it)",
        ));
    }
    let manifest = img2prompt::knn_index::convert_targets(&args.index, &args.out, args.targets)?;
    eprintln!(
        "index convert: {} prompts with {} targets in {} in {:.1} s",
        manifest.count,
        manifest.target_encoding,
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
