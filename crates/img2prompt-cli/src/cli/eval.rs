//! `eval`: the paper's ablation table on image-prompt pairs.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use img2prompt::compose::{ComposeOptions, compose_prompt};
use img2prompt::eval::{EvalOptions, EvalPair, EvalSet, OutputTexts, read_pairs};
use img2prompt::prompt_fusion::{BlendWeights, FusionConfig, TuningGrid};
use img2prompt::tuned_fusion::{FUSION_FILE, StoredFusion, head_fingerprint, save_fusion};
use img2prompt::{Error, Predictor, Result, SentenceTextEmbedder, TextEmbedder};

use super::{FusionArgs, RuntimeArgs, check_output_path};
use crate::models::Models;
use crate::output::write_json_atomic;

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
    /// Also score composed prompt texts (see `predict --compose`); the table always has the
    /// text score of each `--text` choice.
    #[arg(long)]
    pub compose: bool,
    /// Tune the fusion setting on these pairs (grid search: k, weighting, blend) and keep the
    /// best in the index's fusion.json, which `predict` and `serve` then use by default. Tune
    /// on validation pairs, then evaluate on others: the tuned score is optimistic.
    #[arg(long)]
    pub save_tuned: bool,
    /// Model overrides; `--k` is the k of the fused rows (weights are the table's columns);
    /// the text rows aim at the fusion `predict` uses (flags, else the index's, else the paper's).
    #[command(flatten)]
    pub fusion: FusionArgs,
    /// Backend and batch size.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `eval`: prints the table on stdout, writes `--json` atomically.
pub(crate) fn run(models: &Models, args: &EvalArgs) -> Result<()> {
    if let Some(path) = &args.json {
        check_output_path(path, "json")?;
    }
    let (options, fusion, source) = args.fusion.open_options(&args.index, None)?;
    let options = options.with_precision(args.runtime.precision);
    let pairs = read_pairs(&args.pairs)?;
    let device = args.runtime.backend.unwrap_or_default().device()?;
    let checkpoints = args.fusion.index_models(models, &args.index, true)?;
    let predictor = Predictor::open(&args.index, &checkpoints, &options, &device)?;
    let sentence = SentenceTextEmbedder::load(checkpoints.sentence_dir("evaluation")?, &device)?
        .with_precision(options.precision)?;
    let start = Instant::now();
    let mut queries = Vec::new();
    let mut captions = Vec::new();
    let mut caption_time = std::time::Duration::ZERO;
    for chunk in pairs.chunks(args.runtime.batch.max(1)) {
        let images = decode_pair_images(&args.pairs, chunk)?;
        queries.extend(predictor.image_encoder().embed_images(&images)?);
        let start = Instant::now();
        if let Some(texts) = predictor.captions(&images)? {
            captions.extend(texts);
            caption_time += start.elapsed();
        }
    }
    let prompts: Vec<&str> = pairs.iter().map(|p| p.prompt.as_str()).collect();
    let truths = sentence.embed_texts(&prompts)?;
    let eval_options = EvalOptions {
        fused_k: args.fusion.k.unwrap_or(FusionConfig::default().k),
        text_fusion: Some(fusion),
        text_choice: args.fusion.text.unwrap_or_default(),
        ..EvalOptions::default()
    };
    let set = EvalSet::gather(
        &queries,
        &truths,
        predictor.index(),
        predictor.head(),
        eval_options.max_k(),
    )?;
    let composed = if args.compose {
        let start = Instant::now();
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
        let seconds = start.elapsed().as_secs_f64() / set.len().max(1) as f64;
        let refs: Vec<&str> = composed.iter().map(String::as_str).collect();
        Some((sentence.embed_texts(&refs)?, seconds))
    } else {
        None
    };
    let captioned = if captions.is_empty() {
        None
    } else {
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        Some(sentence.embed_texts(&refs)?)
    };
    // The text `predict` prints comes first: composed when asked, else the caption.
    let mut texts = Vec::new();
    if let Some((embeddings, seconds_per_image)) = &composed {
        texts.push(OutputTexts {
            mode: "compose",
            embeddings,
            seconds_per_image: *seconds_per_image,
        });
    }
    if let Some(embeddings) = &captioned {
        texts.push(OutputTexts {
            mode: "caption",
            embeddings,
            seconds_per_image: caption_time.as_secs_f64() / pairs.len().max(1) as f64,
        });
    }
    let mut report = set.report(&eval_options, &texts, predictor.index())?;
    report.head_training = head_training(&args.index, &args.fusion)?;
    print!("{}", report.table());
    eprintln!("fusion for the texts: {}", source.describe());
    if let Some(path) = &args.json {
        write_json_atomic(path, &report)?;
    }
    if args.save_tuned {
        save_tuned(&args.index, &args.pairs, &set, predictor.head().is_some())?;
    }
    eprintln!(
        "evaluated {} pairs in {:.2}s",
        report.n,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Tunes the fusion on `set` and keeps the best setting in the index's fusion.json.
fn save_tuned(
    index: &std::path::Path,
    pairs: &std::path::Path,
    set: &EvalSet,
    with_head: bool,
) -> Result<()> {
    let mut grid = TuningGrid::default();
    if !with_head {
        // Without a head only the KNN prediction exists: a stored head weight would only make
        // the setting stale once a head is added.
        grid.weights = vec![BlendWeights::knn_share(1.0)];
    }
    let tuning = set.tune(&grid)?;
    let best = tuning.best.config;
    let stored = StoredFusion {
        config: best,
        tuned_on: format!("{}: {} pairs", pairs.display(), set.len()),
        score: Some(tuning.best.mean_cosine),
        head_xxh3: if with_head {
            head_fingerprint(index)?
        } else {
            None
        },
    };
    save_fusion(index, &stored)?;
    eprintln!(
        "tuned on {} pairs: k {}, w_knn {}, w_clip {}, {} -> {:.4}; kept in {}",
        set.len(),
        best.k,
        best.weights.knn,
        best.weights.clip,
        best.aggregation,
        tuning.best.mean_cosine,
        index.join(FUSION_FILE).display()
    );
    Ok(())
}

/// What the index's head was trained on, when it is used and its file records it.
fn head_training(
    index: &std::path::Path,
    fusion: &super::FusionArgs,
) -> Result<Option<img2prompt::head::HeadTraining>> {
    if fusion.no_head || !index.join(img2prompt::head::HEAD_FILE).is_file() {
        return Ok(None);
    }
    img2prompt::head::ClipHead::read_training(index)
}

/// Decodes the images of `pairs` in parallel; a failure names the pairs file and the line of
/// the pair, then the image and what is wrong with it.
fn decode_pair_images(
    pairs_file: &std::path::Path,
    pairs: &[EvalPair],
) -> Result<Vec<img2prompt::image::DynamicImage>> {
    use rayon::prelude::*;
    pairs
        .par_iter()
        .map(|pair| {
            img2prompt::decode_image_file(&pair.image).map_err(|e| Error::Input {
                path: pairs_file.to_owned(),
                line: Some(pair.line),
                message: e.to_string(),
            })
        })
        .collect()
}
