//! `head train`: fit the CLIP -> sentence head on an index's own corpus, or on image-prompt
//! pairs (`--pairs`, optionally `--text-too`).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use img2prompt::components::{ClipImageEmbedder, SentenceTextEmbedder};
use img2prompt::head::{
    ClipHead, EpochProgress, HeadKind, HeadTrainConfig, PairProgress, PairTrainOptions,
    image_cache_path,
};
use img2prompt::{Backend, Error, Result, clip_encoder, knn_index};

use super::{at_least_one, non_negative, parse_backend, positive};
use crate::models::Models;

/// `head` sub-commands.
#[derive(Debug, Subcommand)]
pub enum HeadAction {
    /// Train the head (CLIP text embedding -> sentence target, or with --pairs CLIP image
    /// embedding -> sentence target; loss 1 - cosine) and store it as `head.safetensors` in the
    /// index directory.
    Train(HeadTrainArgs),
}

/// `--kind` of `head train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeadKindArg {
    /// One linear map.
    Linear,
    /// Linear -> GELU -> Linear (width `--hidden`).
    Mlp,
}

/// Hidden width of `--kind mlp` when `--hidden` is not given.
pub const DEFAULT_HIDDEN: usize = 1024;

/// `head train` arguments.
#[derive(Debug, Args)]
pub struct HeadTrainArgs {
    /// Index directory (from `index build`); the head is written into it.
    #[arg(long)]
    pub index: PathBuf,
    /// Architecture: linear or mlp.
    #[arg(long, value_enum, default_value_t = HeadKindArg::Linear)]
    pub kind: HeadKindArg,
    /// Hidden width of the MLP (only with --kind mlp; default 1024).
    #[arg(long, value_parser = at_least_one)]
    pub hidden: Option<usize>,
    /// Passes over the corpus.
    #[arg(long, default_value_t = 10, value_parser = at_least_one)]
    pub epochs: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    pub lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4, value_parser = non_negative)]
    pub weight_decay: f32,
    /// Share of the corpus held out to pick the best epoch, in [0, 1).
    #[arg(long, default_value_t = 0.05)]
    pub validation_fraction: f64,
    /// Seed of the initialisation, validation split and shuffles.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend: ndarray, flex, cpu, wgpu or cuda (default: the fastest CPU backend compiled in).
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<Backend>,
    /// Rows per optimiser step.
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    pub batch: usize,
    /// Stop after this many epochs without a better validation cosine (default: run all).
    #[arg(long, value_parser = at_least_one)]
    pub patience: Option<usize>,
    /// Train on image-prompt pairs (.jsonl {"image","prompt"} or .csv, as `eval --pairs`):
    /// the images are embedded with the index's CLIP image tower (cached beside the index in
    /// image-embeddings.cache), the prompts' targets come from the index or its sentence model.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// With --pairs: also train on the index's own text-key rows, weighted by --text-weight.
    #[arg(long, requires = "pairs")]
    pub text_too: bool,
    /// Loss weight of one text row relative to one image pair (with --text-too).
    #[arg(long, default_value_t = DEFAULT_TEXT_WEIGHT, value_parser = positive)]
    pub text_weight: f64,
    /// With --text-too: train on the text rows as they are, without moving them into image
    /// space by the modality gap measured on the pairs' images.
    #[arg(long, requires = "text_too")]
    pub no_text_shift: bool,
    /// With --pairs: encode every image, neither reading nor writing the embedding cache.
    #[arg(long, requires = "pairs")]
    pub no_cache: bool,
    /// With --pairs: images run through the CLIP image tower at once.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub image_batch: usize,
    /// CLIP checkpoint (directory or cache name); default: the one the index manifest names.
    #[arg(long)]
    pub clip: Option<String>,
    /// Sentence model (directory or cache name); default: the one the index manifest names.
    #[arg(long)]
    pub sentence: Option<String>,
}

/// Default `--text-weight`.
pub const DEFAULT_TEXT_WEIGHT: f64 = 0.5;

impl HeadTrainArgs {
    /// The training config these options describe (validated).
    pub fn train_config(&self) -> Result<HeadTrainConfig> {
        let kind = match (self.kind, self.hidden) {
            (HeadKindArg::Linear, None) => HeadKind::Linear,
            (HeadKindArg::Linear, Some(_)) => {
                return Err(Error::invalid("--hidden", "only applies to --kind mlp"));
            }
            (HeadKindArg::Mlp, hidden) => HeadKind::Mlp {
                hidden: hidden.unwrap_or(DEFAULT_HIDDEN),
            },
        };
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(Error::invalid(
                "--validation-fraction",
                format!("must be in [0, 1) (got {})", self.validation_fraction),
            ));
        }
        let mut config = HeadTrainConfig::default();
        config.kind = kind;
        config.epochs = self.epochs;
        config.batch_size = self.batch;
        config.learning_rate = self.lr;
        config.weight_decay = self.weight_decay;
        config.validation_fraction = self.validation_fraction;
        config.seed = self.seed;
        config.patience = self.patience;
        config.validate()?;
        Ok(config)
    }
}

/// Prints one epoch's line on stderr.
fn print_epoch(p: &EpochProgress) {
    match p.validation_cosine {
        Some(cos) => eprintln!(
            "epoch {}/{}: train loss {:.6}, validation cosine {:.6}",
            p.epoch, p.epochs, p.train_loss, cos
        ),
        None => eprintln!(
            "epoch {}/{}: train loss {:.6}",
            p.epoch, p.epochs, p.train_loss
        ),
    }
}

/// Runs `head train`: per-epoch lines on stderr, one summary line on stdout.
pub(crate) fn train(models: &Models, args: &HeadTrainArgs) -> Result<()> {
    let config = args.train_config()?;
    let device = args.backend.unwrap_or_default().device()?;
    let index = knn_index::PromptIndex::open(&args.index)?;
    let (head, report) = match &args.pairs {
        None => img2prompt::head::train_head_on_index_with_progress(
            &index,
            &config,
            &device,
            &mut print_epoch,
        )?,
        Some(pairs_file) => {
            let pairs = img2prompt::eval::read_pairs(pairs_file)?;
            let checkpoints = models.of_index(
                &args.index,
                args.clip.as_deref(),
                args.sentence.as_deref(),
                true,
            )?;
            let images = ClipImageEmbedder::new(
                clip_encoder::ClipVisionModel::load(&checkpoints.clip, &device)?
                    .with_batch_size(args.image_batch),
                img2prompt::ModelId::of_dir(&checkpoints.clip)?,
            );
            let sentence =
                SentenceTextEmbedder::load(checkpoints.sentence_dir("pair training")?, &device)?;
            let mut options = PairTrainOptions::new(config.clone());
            options.text_weight = args.text_too.then_some(args.text_weight as f32);
            options.shift_text = !args.no_text_shift;
            options.cache = (!args.no_cache).then(|| image_cache_path(&args.index));
            let mut last_shown = 0usize;
            let (head, report) = img2prompt::head::train_head_from_pairs(
                &images,
                &sentence,
                &index,
                &pairs,
                pairs_file,
                &options,
                &device,
                &mut |p| match p {
                    PairProgress::Images { done, total } => {
                        if done == total || done >= last_shown + 2048 {
                            last_shown = done;
                            eprintln!("images: {done}/{total} encoded");
                        }
                    }
                    PairProgress::Epoch(e) => print_epoch(e),
                },
            )?;
            eprintln!(
                "pairs: {} ({} images encoded, {} from the cache [{:?}]; {} targets from the \
                 index, {} embedded; {} text rows mixed in; images {:.1} s)",
                report.pairs,
                report.images_encoded,
                report.images_cached,
                report.cache,
                report.targets_from_index,
                report.targets_embedded,
                report.text_rows,
                report.image_seconds,
            );
            (head, report.head)
        }
    };
    drop(index);
    // A fusion setting tuned with the previous head no longer holds once it is replaced.
    let stored = img2prompt::tuned_fusion::load_fusion(&args.index)
        .ok()
        .flatten()
        .filter(|f| f.config.weights.clip > 0.0);
    let path = ClipHead::save(&head, &args.index)?;
    if let Some(stored) = stored
        && stored.head_xxh3 != img2prompt::tuned_fusion::head_fingerprint(&args.index)?
    {
        eprintln!(
            "note: {} was tuned with the previous head: predict and serve use the paper's \
             fusion until `img2prompt eval --save-tuned` tunes it again",
            args.index
                .join(img2prompt::tuned_fusion::FUSION_FILE)
                .display()
        );
    }
    let trained_on = head
        .training()
        .map(|t| format!("trained on {t}"))
        .unwrap_or_default();
    println!(
        "{}: {} head {} -> {}, {trained_on}, {} train / {} validation rows, {:.1} s",
        path.display(),
        head.config().kind,
        head.config().input_dim,
        head.config().output_dim,
        report.n_train,
        report.n_val,
        report.seconds,
    );
    Ok(())
}
