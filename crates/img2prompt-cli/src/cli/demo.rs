//! `demo`: the whole method offline on the shipped procedural world.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use img2prompt::Result;
use img2prompt::head::{HeadKind, HeadTrainConfig};
use img2prompt_world::WorldConfig;
use img2prompt_world::demo::{DemoOptions, DemoPairs, run_demo};
use img2prompt_world::shipped::{WORLD_CAPTIONER, WORLD_CLIP};

use super::RuntimeArgs;
use super::head::HeadKindArg;
use crate::models::Models;
use crate::progress::BuildDisplay;

/// Which world to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorldSize {
    /// 100 000 corpus prompts, 1 000 validation / test / cross-domain pairs.
    Demo,
    /// 2 000 corpus prompts, 100 pairs per split (a smoke test).
    Tiny,
}

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output directory: index/, report.json, contact-sheet.png, pairs/.
    #[arg(long, default_value = "img2prompt-demo")]
    pub out: PathBuf,
    /// World size.
    #[arg(long, value_enum, default_value_t = WorldSize::Demo)]
    pub world: WorldSize,
    /// Override the corpus size of the world.
    #[arg(long, value_parser = super::at_least_one)]
    pub corpus: Option<usize>,
    /// CLIP checkpoint (directory or cache name); default: the shipped world CLIP.
    #[arg(long, default_value = WORLD_CLIP)]
    pub clip: String,
    /// Sentence model (directory or cache name).
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub sentence: String,
    /// Captioner kept in the index to write `predict`'s prompt text (directory or cache name);
    /// default: the shipped world captioner.
    #[arg(long, default_value = WORLD_CAPTIONER)]
    pub captioner: String,
    /// Keep no captioner in the index: `predict` then picks the text from the corpus.
    #[arg(long, conflicts_with = "captioner")]
    pub no_captioner: bool,
    /// Head architecture.
    #[arg(long, value_enum, default_value_t = HeadKindArg::Linear)]
    pub head: HeadKindArg,
    /// Head training epochs.
    #[arg(long, default_value_t = 10, value_parser = super::at_least_one)]
    pub head_epochs: usize,
    /// Test images on the contact sheet.
    #[arg(long, default_value_t = 24)]
    pub sheet: usize,
    /// Pair head: render this many training pairs (pairs/train.jsonl) and also train a head on
    /// their image embeddings; reported beside the text head, and stored as the index's head
    /// (0: off).
    #[arg(long, default_value_t = 0)]
    pub pairs: usize,
    /// Pair head architecture.
    #[arg(long, value_enum, default_value_t = HeadKindArg::Mlp)]
    pub pair_head: HeadKindArg,
    /// Pair head: MLP hidden width.
    #[arg(long, default_value_t = DEFAULT_PAIR_HIDDEN, value_parser = super::at_least_one)]
    pub pair_hidden: usize,
    /// Pair head: epochs (at most: training stops after 8 epochs without a better validation
    /// cosine).
    #[arg(long, default_value_t = 80, value_parser = super::at_least_one)]
    pub pair_epochs: usize,
    /// Pair head: AdamW learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = super::positive)]
    pub pair_lr: f64,
    /// Pair head: also train on the corpus's text rows with this weight per row (0: pairs
    /// alone).
    #[arg(long, default_value_t = 0.0)]
    pub pair_text_weight: f64,
    /// Backend and batch size.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Default `--pair-hidden`.
pub const DEFAULT_PAIR_HIDDEN: usize = 512;

/// Runs `demo`: stage lines on stderr, the ablation table on stdout.
pub(crate) fn run(models: &Models, args: &DemoArgs) -> Result<()> {
    let mut world = match args.world {
        WorldSize::Demo => WorldConfig::demo(),
        WorldSize::Tiny => WorldConfig::tiny(),
    };
    if let Some(n) = args.corpus {
        world.corpus = n;
    }
    let kind = match args.head {
        HeadKindArg::Linear => HeadKind::Linear,
        HeadKindArg::Mlp => HeadKind::Mlp {
            hidden: super::head::DEFAULT_HIDDEN,
        },
    };
    let mut head = HeadTrainConfig::default();
    head.kind = kind;
    head.epochs = args.head_epochs;
    head.validate()?;
    let pairs = if args.pairs > 0 {
        let mut train = HeadTrainConfig::default();
        train.kind = match args.pair_head {
            HeadKindArg::Linear => HeadKind::Linear,
            HeadKindArg::Mlp => HeadKind::Mlp {
                hidden: args.pair_hidden,
            },
        };
        train.epochs = args.pair_epochs;
        train.learning_rate = args.pair_lr;
        train.validation_fraction = 0.05;
        train.patience = Some(8);
        train.validate()?;
        if !(args.pair_text_weight.is_finite() && args.pair_text_weight >= 0.0) {
            return Err(img2prompt::Error::invalid(
                "--pair-text-weight",
                "must be a non-negative number",
            ));
        }
        Some(DemoPairs {
            n: args.pairs,
            train,
            text_weight: (args.pair_text_weight > 0.0).then_some(args.pair_text_weight as f32),
        })
    } else {
        None
    };
    let options = DemoOptions {
        out: args.out.clone(),
        world,
        clip: models.resolve(&args.clip)?,
        sentence: models.resolve(&args.sentence)?,
        captioner: if args.no_captioner {
            None
        } else {
            Some(models.resolve(&args.captioner)?)
        },
        device: args.runtime.backend.unwrap_or_default().device()?,
        batch: args.runtime.batch,
        precision: args.runtime.precision,
        head,
        sheet_images: args.sheet,
        pairs,
    };
    let start = Instant::now();
    let display = BuildDisplay::auto();
    let report = run_demo(&options, Some(&display), &mut |line| {
        eprintln!("[{:>6.1}s] {line}", start.elapsed().as_secs_f64());
    })?;
    print!("{}", report.table());
    eprintln!(
        "wrote {}, {} and {} in {:.1}s",
        args.out.join("report.json").display(),
        args.out.join("contact-sheet.png").display(),
        args.out.join("pairs").display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
