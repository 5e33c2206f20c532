//! `head train`: fit the CLIP -> sentence head on an index's own corpus.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use img2prompt::head::{ClipHead, EpochProgress, HeadKind, HeadTrainConfig};
use img2prompt::{Backend, Error, Result, knn_index};

use super::{at_least_one, non_negative, parse_backend, positive};

/// `head` sub-commands.
#[derive(Debug, Subcommand)]
pub enum HeadAction {
    /// Train the head (CLIP text embedding -> sentence target, loss 1 - cosine) and store it as
    /// `head.safetensors` in the index directory.
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
}

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
        config.validate()?;
        Ok(config)
    }
}

/// Runs `head train`: per-epoch lines on stderr, one summary line on stdout.
pub(crate) fn train(args: &HeadTrainArgs) -> Result<()> {
    let config = args.train_config()?;
    let device = args.backend.unwrap_or_default().device()?;
    let index = knn_index::PromptIndex::open(&args.index)?;
    let mut print = |p: &EpochProgress| match p.validation_cosine {
        Some(cos) => eprintln!(
            "epoch {}/{}: train loss {:.6}, validation cosine {:.6}",
            p.epoch, p.epochs, p.train_loss, cos
        ),
        None => eprintln!(
            "epoch {}/{}: train loss {:.6}",
            p.epoch, p.epochs, p.train_loss
        ),
    };
    let (head, report) =
        img2prompt::head::train_head_on_index_with_progress(&index, &config, &device, &mut print)?;
    drop(index);
    let path = ClipHead::save(&head, &args.index)?;
    let cosine = report
        .best_validation_cosine()
        .map(|c| format!("validation cosine {c:.6}"))
        .unwrap_or_else(|| "no validation split".to_owned());
    println!(
        "{}: {} head {} -> {}, best epoch {}/{}, {cosine}, {} train / {} validation rows, {:.1} s",
        path.display(),
        head.config().kind,
        head.config().input_dim,
        head.config().output_dim,
        report.best_epoch,
        config.epochs,
        report.n_train,
        report.n_val,
        report.seconds,
    );
    Ok(())
}
