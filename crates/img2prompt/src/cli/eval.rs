//! `eval`: the paper's ablation table on image-prompt pairs.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::{FusionArgs, RuntimeArgs, check_output_path, decode_images};
use crate::cache::ModelCache;
use crate::components::{SentenceTextEmbedder, TextEmbedder};
use crate::compose::{ComposeOptions, compose_prompt};
use crate::error::{Error, Result};
use crate::eval::{EvalOptions, EvalSet, read_pairs};
use crate::index_models::{IndexModel, resolve_index_model};
use crate::predictor::Predictor;

/// `eval` arguments.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Index directory.
    #[arg(long)]
    pub index: PathBuf,
    /// Image-prompt pairs: .jsonl {"image","prompt"} or .csv with image,prompt columns.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Also write the table as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Score composed prompt texts (see `predict --compose`) instead of the best neighbour's.
    #[arg(long)]
    pub compose: bool,
    /// Model overrides; `--k` is the k of the fused rows (weights are the table's columns).
    #[command(flatten)]
    pub fusion: FusionArgs,
    /// Backend and batch size.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `eval`: prints the table on stdout, writes `--json` atomically.
pub(crate) fn run(cache: &ModelCache, args: &EvalArgs) -> Result<()> {
    if let Some(path) = &args.json {
        check_output_path(path, "json")?;
    }
    let options = args.fusion.open_options(None)?;
    let fusion = options.fusion;
    let pairs = read_pairs(&args.pairs)?;
    let device = args.runtime.backend.unwrap_or_default().device()?;
    let predictor = Predictor::open(&args.index, &options, cache, &device)?;
    let sentence_dir = resolve_index_model(
        &args.index,
        IndexModel::Sentence,
        args.fusion.sentence.as_deref(),
        cache,
    )?;
    let sentence = SentenceTextEmbedder::load(&sentence_dir, &device)?;
    let start = Instant::now();
    let paths: Vec<PathBuf> = pairs.iter().map(|p| p.image.clone()).collect();
    let mut queries = Vec::new();
    for chunk in paths.chunks(args.runtime.batch.max(1)) {
        queries.extend(
            predictor
                .image_encoder()
                .embed_images(&decode_images(chunk)?)?,
        );
    }
    let prompts: Vec<&str> = pairs.iter().map(|p| p.prompt.as_str()).collect();
    let truths = sentence.embed_texts(&prompts)?;
    let eval_options = EvalOptions {
        fused_k: fusion.k,
        ..EvalOptions::default()
    };
    let set = EvalSet::gather(
        &queries,
        &truths,
        predictor.index(),
        predictor.head(),
        eval_options.max_k(),
    )?;
    let texts = if args.compose {
        let mut composed = Vec::with_capacity(set.len());
        let queries = set.queries();
        for (q, hits) in queries.iter().zip(&set.hits) {
            let fused = fusion.fuse(&q.neighbours, q.head)?;
            let prompts: Vec<&str> = hits.iter().map(|h| h.prompt.as_str()).collect();
            composed.push(
                compose_prompt(
                    &fused.embedding,
                    &prompts,
                    &sentence,
                    &ComposeOptions::default(),
                )?
                .text,
            );
        }
        let refs: Vec<&str> = composed.iter().map(String::as_str).collect();
        Some(sentence.embed_texts(&refs)?)
    } else {
        None
    };
    let report = set.report(&eval_options, texts.as_deref())?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json =
            serde_json::to_string_pretty(&report).map_err(|e| Error::Backend(e.to_string()))?;
        crate::atomic::write_file_atomic(path, json.as_bytes())?;
    }
    eprintln!(
        "evaluated {} pairs in {:.2}s",
        report.n,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
