//! `predict`: the online stage, JSONL on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use img2prompt::compose::ComposeOptions;
use img2prompt::prompt_fusion::{BlendWeights, FusionConfig};
use img2prompt::tuned_fusion::{FusionSource, resolve_fusion};
use img2prompt::{Error, OpenOptions, PredictedNeighbour, Predictor, Result};
use serde::Serialize;

use super::{FusionArgs, RuntimeArgs, check_output_path, decode_images};
use crate::models::Models;
use crate::output::write_npy_atomic;

/// `predict` arguments.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Index directory (from `index build`; `head.safetensors` from `head train` is used when
    /// present).
    #[arg(long)]
    pub index: PathBuf,
    /// Neighbours and blend weights.
    #[command(flatten)]
    pub fusion: FusionArgs,
    /// Compose the prompt text from the neighbours' phrases (greedy, maximising the sentence
    /// cosine to the predicted embedding) instead of printing a neighbour's prompt (`--text`).
    #[arg(long)]
    pub compose: bool,
    /// Also write the predicted embeddings as float32 .npy [n, d], rows in argument order.
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// Backend and batch size.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// One line of `predict`'s output (the CLI contract; `serve` answers with the same JSON).
#[derive(Serialize)]
pub(crate) struct PredictionLine<'a> {
    /// The image's path (or upload name).
    pub image: String,
    /// The predicted sentence-space embedding.
    pub embedding: &'a [f32],
    /// The prompt text.
    pub prompt: &'a str,
    /// The neighbours, best first.
    pub neighbors: &'a [PredictedNeighbour],
}

/// Runs `predict`: every image is decoded and predicted before anything is written, so bad
/// input leaves no partial output.
pub(crate) fn run(models: &Models, args: &PredictArgs) -> Result<()> {
    if let Some(path) = &args.embeddings {
        check_output_path(path, "npy")?;
    }
    let (options, fusion, source) = args
        .fusion
        .open_options(&args.index, args.compose.then(ComposeOptions::default))?;
    let options = options.with_precision(args.runtime.precision);
    let device = args.runtime.backend.unwrap_or_default().device()?;
    let start = Instant::now();
    let checkpoints = args
        .fusion
        .index_models(models, &args.index, args.compose)?;
    let predictor = Predictor::open(&args.index, &checkpoints, &options, &device)?;
    if predictor.head().is_none() && !args.fusion.no_head {
        eprintln!(
            "note: {} has no head.safetensors (run `img2prompt head train`): KNN prediction only",
            args.index.display()
        );
    }
    let load = start.elapsed();
    let start = Instant::now();
    let mut predictions = Vec::with_capacity(args.images.len());
    for chunk in args.images.chunks(args.runtime.batch.max(1)) {
        let images = decode_images(chunk)?;
        predictions.extend(predictor.predict_batch(&images)?);
    }
    let elapsed = start.elapsed();
    let mut out = String::new();
    for (path, p) in args.images.iter().zip(&predictions) {
        let line = PredictionLine {
            image: path.display().to_string(),
            embedding: &p.embedding,
            prompt: &p.prompt,
            neighbors: &p.neighbours,
        };
        out += &serde_json::to_string(&line).map_err(|e| Error::Backend(e.to_string()))?;
        out.push('\n');
    }
    if let Some(path) = &args.embeddings {
        let dim = predictions.first().map_or(0, |p| p.embedding.len());
        let flat: Vec<f32> = predictions
            .iter()
            .flat_map(|p| p.embedding.clone())
            .collect();
        write_npy_atomic(path, flat, predictions.len(), dim)?;
    }
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .map_err(|e| Error::io("<stdout>", e))?;
    eprintln!(
        "predicted {} images in {:.2}s ({:.1} images/s; text: {}; fusion {}: k {}, w_knn {}, \
         w_clip {}, {}; load {:.2}s)",
        predictions.len(),
        elapsed.as_secs_f64(),
        predictions.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        predictor.text_mode(),
        source.describe(),
        fusion.k,
        fusion.weights.knn,
        fusion.weights.clip,
        fusion.aggregation,
        load.as_secs_f64()
    );
    Ok(())
}

impl FusionArgs {
    /// The fusion setting the flags give, validated (k >= 1, weights >= 0 and not both 0):
    /// `None` without --k, --w-knn and --w-clip; else the paper's setting with those values.
    pub fn config(&self) -> Result<Option<FusionConfig>> {
        if self.k.is_none() && self.w_knn.is_none() && self.w_clip.is_none() {
            return Ok(None);
        }
        let paper = FusionConfig::default();
        let config = FusionConfig {
            k: self.k.unwrap_or(paper.k),
            weights: BlendWeights::new(
                self.w_knn.unwrap_or(paper.weights.knn),
                self.w_clip.unwrap_or(paper.weights.clip),
            ),
            ..paper
        };
        config
            .validate()
            .map_err(|e| Error::invalid("--w-knn/--w-clip", e.to_string()))?;
        Ok(Some(config))
    }

    /// How to open the predictor of `index` with these options (the fusion resolved: the
    /// flags', else the index's tuned one, else the paper's; model overrides, head on/off)
    /// and the given prompt composition, with the fusion setting and where it came from.
    pub(crate) fn open_options(
        &self,
        index: &std::path::Path,
        compose: Option<ComposeOptions>,
    ) -> Result<(OpenOptions, FusionConfig, FusionSource)> {
        let (fusion, source) = resolve_fusion(index, self.config()?, self.no_head)?;
        let options = OpenOptions::default()
            .with_fusion(fusion)
            .with_no_head(self.no_head)
            .with_compose(compose)
            .with_prompt(self.text.unwrap_or_default())
            .with_no_captioner(self.text.is_some());
        Ok((options, fusion, source))
    }

    /// The index's checkpoints: `--clip` / `--sentence` or the ones its manifest records (the
    /// sentence model only `with_sentence`).
    pub(crate) fn index_models(
        &self,
        models: &Models,
        index: &std::path::Path,
        with_sentence: bool,
    ) -> Result<img2prompt::IndexModels> {
        models.of_index(
            index,
            self.clip.as_deref(),
            self.sentence.as_deref(),
            with_sentence,
        )
    }
}
