//! `index build`: the offline stage.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use img2prompt::builder::{DEFAULT_CHUNK, check_output};
use img2prompt::corpus::{Corpus, CorpusOptions};
use img2prompt::knn_index::IndexSpec;
use img2prompt::{ClipTextEmbedder, Error, IndexBuilder, Result, SentenceTextEmbedder};

use super::{RuntimeArgs, at_least_one};
use crate::models::Models;
use crate::progress::BuildDisplay;

/// `index` sub-commands.
#[derive(Debug, Subcommand)]
pub enum IndexAction {
    /// Encode a prompt corpus with CLIP's text tower (keys) and a sentence encoder (targets)
    /// into an index directory. Re-running after an interruption resumes.
    Build(IndexBuildArgs),
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
    let clip = ClipTextEmbedder::load(&clip_dir, &device)?.with_batch_size(args.runtime.batch);
    let sentence =
        SentenceTextEmbedder::load(&sentence_dir, &device)?.with_batch_size(args.runtime.batch);

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
    let report = builder.build_corpus(corpus, &args.out)?;
    eprintln!("index build: {report}");
    Ok(())
}
