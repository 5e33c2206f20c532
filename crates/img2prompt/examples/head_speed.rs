//! Head training speed per architecture (the numbers in docs/PERFORMANCE.md, "Head training"):
//! `cargo run --release -p img2prompt --example head_speed -- [ROWS] [EPOCHS] [IN] [HIDDEN...]`
//! (defaults: 100 000 rows, 3 epochs, input 64, hidden 0 (linear) 256 512 1024), batch 256,
//! output 384, random unit rows. Prints seconds per run and per optimiser step.

use img2prompt::head::{HeadKind, HeadTrainConfig, train_head};
use img2prompt::knn_index::synth;

fn main() -> img2prompt::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or(0))
        .collect();
    let rows = args.first().copied().unwrap_or(100_000);
    let epochs = args.get(1).copied().unwrap_or(3);
    let input = args.get(2).copied().unwrap_or(64);
    let hidden: Vec<usize> = if args.len() > 3 {
        args[3..].to_vec()
    } else {
        vec![0, 256, 512, 1024]
    };
    let out = 384;
    let x = synth::gaussian(1, rows, input);
    let y = synth::gaussian(2, rows, out);
    let device = img2prompt::Backend::default_cpu().device()?;
    for h in hidden {
        let mut config = HeadTrainConfig::default();
        config.kind = if h == 0 {
            HeadKind::Linear
        } else {
            HeadKind::Mlp { hidden: h }
        };
        config.epochs = epochs;
        config.validation_fraction = 0.0;
        let (_, report) = train_head(&x, &y, rows, &config, &device)?;
        let steps = rows.div_ceil(config.batch_size) * epochs;
        println!(
            "{} {input} -> {out}: {rows} rows x {epochs} epochs in {:.2} s ({:.2} ms per step)",
            config.kind,
            report.seconds,
            report.seconds * 1e3 / steps as f64
        );
    }
    Ok(())
}
