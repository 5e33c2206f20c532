//! Scratch throughput harness for the sentence encoder (all-MiniLM-L6-v2) on short prompts.
//!
//! `$CARGO_TARGET_DIR/release/examples/minilm_speed [COUNT] [REPEATS]` encodes COUNT prompts
//! (default 512) per measurement on the default backend, for each attention kernel and batch
//! size, interleaving the variants within each repeat (default 3) so that load from other jobs
//! spreads over all of them; prints the median texts/s per variant. Prompt sets: "world"
//! (templated scene descriptions, ~12-25 word pieces, mixed lengths) and fixed 16 / 24 word
//! pieces (no padding). The model directory is `IMG2PROMPT_MINILM_DIR` or the model cache.

use std::path::PathBuf;
use std::time::Instant;

use img2prompt::Backend;
use sentence_encoder::{AttentionKernel, SentenceEncoder};

const COUNTS: &[&str] = &["one", "two", "three", "four", "five"];
const SIZES: &[&str] = &["small", "large", "tiny", "huge", "medium"];
const COLOURS: &[&str] = &[
    "red", "blue", "yellow", "green", "purple", "orange", "white",
];
const SHAPES: &[&str] = &[
    "stars",
    "rings",
    "squares",
    "circles",
    "triangles",
    "hearts",
];
const PLACES: &[&str] = &["left of", "right of", "above", "below", "next to"];
const BACKGROUNDS: &[&str] = &["striped", "dotted", "plain", "checkered", "gradient"];
const STYLES: &[&str] = &[
    "pixel art",
    "watercolor",
    "flat vector",
    "oil painting",
    "sketch",
];

/// Scene prompts like the demo world's, e.g. "two small red stars left of a large blue ring,
/// striped yellow background, pixel art"; `i` selects a deterministic variant.
fn world_prompt(i: usize) -> String {
    let pick = |list: &[&'static str], salt: usize| list[(i / (salt + 1) + i * salt) % list.len()];
    let first = format!(
        "{} {} {} {}",
        pick(COUNTS, 1),
        pick(SIZES, 2),
        pick(COLOURS, 3),
        pick(SHAPES, 4)
    );
    match i % 3 {
        0 => format!(
            "{first} {} a {} {} {}, {} {} background, {}",
            pick(PLACES, 5),
            pick(SIZES, 6),
            pick(COLOURS, 7),
            pick(SHAPES, 8).trim_end_matches('s'),
            pick(BACKGROUNDS, 9),
            pick(COLOURS, 10),
            pick(STYLES, 11)
        ),
        1 => format!("{first}, {} background", pick(BACKGROUNDS, 9)),
        _ => format!(
            "{first}, {} {} background, {}",
            pick(BACKGROUNDS, 9),
            pick(COLOURS, 10),
            pick(STYLES, 11)
        ),
    }
}

/// World prompts trimmed (word by word) or extended to exactly `tokens` word pieces.
fn fixed_prompts(encoder: &SentenceEncoder, count: usize, tokens: usize) -> Vec<String> {
    let len = |t: &str| {
        encoder
            .tokenizer()
            .encode(t)
            .map(|e| e.ids.len())
            .unwrap_or(0)
    };
    (0..count)
        .map(|i| {
            let mut words: Vec<String> = world_prompt(i).split(' ').map(str::to_owned).collect();
            let mut k = i;
            while len(&words.join(" ")) < tokens {
                words.push(
                    world_prompt(k + 1)
                        .split(' ')
                        .nth(k % 5)
                        .unwrap_or("art")
                        .to_owned(),
                );
                k += 1;
            }
            while len(&words.join(" ")) > tokens {
                words.pop();
            }
            while len(&words.join(" ")) < tokens {
                words.push("a".to_owned());
            }
            words.join(" ")
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(512);
    let repeats: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let dir = std::env::var_os("IMG2PROMPT_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| img2prompt::ModelCache::from_env().model_dir("all-MiniLM-L6-v2"));
    let device = Backend::default().device()?;
    let mut encoder = SentenceEncoder::load(&dir, &device)?;

    let world: Vec<String> = (0..count).map(world_prompt).collect();
    let lens: Vec<usize> = world
        .iter()
        .map(|t| {
            encoder
                .tokenizer()
                .encode(t)
                .map(|e| e.ids.len())
                .unwrap_or(0)
        })
        .collect();
    println!(
        "world prompts: {}..={} word pieces, mean {:.1}; e.g. {:?}",
        lens.iter().min().unwrap_or(&0),
        lens.iter().max().unwrap_or(&0),
        lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64,
        world[0]
    );
    let sets = [
        ("world", world.clone()),
        ("fixed16", fixed_prompts(&encoder, count, 16)),
        ("fixed24", fixed_prompts(&encoder, count, 24)),
    ];
    let kernels = [AttentionKernel::Unfused, AttentionKernel::Fused];
    let batches = [32usize, 64, 128, 256];
    for (name, prompts) in &sets {
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let mut rates = vec![vec![Vec::new(); batches.len()]; kernels.len()];
        for _ in 0..repeats {
            for (ki, &kernel) in kernels.iter().enumerate() {
                for (bi, &batch) in batches.iter().enumerate() {
                    encoder = encoder.with_attention_kernel(kernel).with_batch_size(batch);
                    let start = Instant::now();
                    encoder.encode_flat(&refs)?;
                    rates[ki][bi].push(refs.len() as f64 / start.elapsed().as_secs_f64());
                }
            }
        }
        for (ki, kernel) in kernels.iter().enumerate() {
            let line: Vec<String> = batches
                .iter()
                .zip(&rates[ki])
                .map(|(b, r)| format!("b{b}: {:6.1}", median(r.clone())))
                .collect();
            println!("{name:8} {kernel:?}: {} texts/s", line.join("  "));
        }
    }
    Ok(())
}
