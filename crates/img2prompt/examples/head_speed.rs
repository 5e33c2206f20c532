//! Head training speed per architecture (the numbers in docs/PERFORMANCE.md, "Head training"):
//! `cargo run --release -p img2prompt --example head_speed -- [ROWS] [EPOCHS] [IN] [HIDDEN...]`
//! (defaults: 100 000 rows, 3 epochs, input 64, hidden 0 (linear) 256 512 1024), batch 256,
//! output 384, random unit rows. Prints wall-clock and CPU seconds (user + system, all threads,
//! from /proc/self/stat on Linux) per run and per optimiser step. `HEAD_SPEED_BACKEND=ndarray`
//! runs another backend compiled in.

use img2prompt::head::{HeadKind, HeadTrainConfig, train_head};
use img2prompt::knn_index::synth;

/// CPU seconds (user + system) this process has used so far; NaN where /proc is missing.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name in parentheses; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

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
    // HEAD_SPEED_BACKEND=ndarray|flex|... picks a backend compiled in (default: the default CPU).
    let backend = match std::env::var("HEAD_SPEED_BACKEND") {
        Ok(name) => name.parse()?,
        Err(_) => img2prompt::Backend::default_cpu(),
    };
    let device = backend.device()?;
    println!("backend {backend:?}");
    for h in hidden {
        let mut config = HeadTrainConfig::default();
        config.kind = if h == 0 {
            HeadKind::Linear
        } else {
            HeadKind::Mlp { hidden: h }
        };
        config.epochs = epochs;
        config.validation_fraction = 0.0;
        let cpu = cpu_seconds();
        let (_, report) = train_head(&x, &y, rows, &config, &device)?;
        let cpu = cpu_seconds() - cpu;
        let steps = rows.div_ceil(config.batch_size) * epochs;
        println!(
            "{} {input} -> {out}: {rows} rows x {epochs} epochs in {:.2} s wall, {cpu:.2} s CPU \
             ({:.2} ms wall, {:.2} ms CPU per step)",
            config.kind,
            report.seconds,
            report.seconds * 1e3 / steps as f64,
            cpu * 1e3 / steps as f64
        );
    }
    Ok(())
}
