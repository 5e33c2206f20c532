//! Sentence encoding throughput (all-MiniLM-L6-v2): batch 32 of prompts of exactly 16 and 64
//! word pieces (special tokens included), on every backend compiled in.
//!
//! `cargo bench -p img2prompt --bench sentence_encoding` (needs the model in the cache:
//! `img2prompt models fetch all-MiniLM-L6-v2`). `IMG2PROMPT_BENCH_BACKENDS=flex,ndarray`
//! restricts the backends. The Python counterpart is `xtask/bench/minilm_python.py`; both
//! build the same prompts (see `bench_prompts`).
//! CPU backends also get a `-burn-ops` row (burn's own ops) and, on CPUs with AMX, a `-bf16` row.

use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use img2prompt::Backend;
use sentence_encoder::SentenceEncoder;

const WORDS: &[&str] = &[
    "portrait",
    "of",
    "a",
    "knight",
    "in",
    "golden",
    "armor",
    "standing",
    "on",
    "a",
    "cliff",
    "at",
    "sunset",
    "highly",
    "detailed",
    "digital",
    "painting",
    "artstation",
    "concept",
    "art",
    "sharp",
    "focus",
    "illustration",
    "dramatic",
    "lighting",
    "volumetric",
    "fog",
    "cinematic",
    "composition",
    "by",
    "greg",
    "rutkowski",
    "and",
    "alphonse",
    "mucha",
    "8k",
    "octane",
    "render",
    "trending",
    "wide",
    "angle",
    "lens",
    "misty",
    "forest",
    "background",
];

/// `count` prompts of exactly `tokens` word pieces each, special tokens included.
fn bench_prompts(encoder: &SentenceEncoder, count: usize, tokens: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let mut words: Vec<&str> = Vec::new();
            let mut k = i;
            loop {
                words.push(WORDS[k % WORDS.len()]);
                k += 7;
                let text = words.join(" ");
                let len = encoder
                    .tokenizer()
                    .encode(&text)
                    .map(|t| t.ids.len())
                    .unwrap_or(0);
                if len >= tokens {
                    if len > tokens {
                        words.pop();
                    }
                    break;
                }
            }
            words.join(" ")
        })
        .collect()
}

fn model_dir() -> PathBuf {
    std::env::var_os("IMG2PROMPT_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| img2prompt::ModelCache::from_env().model_dir("all-MiniLM-L6-v2"))
}

fn backends() -> Vec<Backend> {
    match std::env::var("IMG2PROMPT_BENCH_BACKENDS") {
        Ok(list) => list.split(',').filter_map(|b| b.parse().ok()).collect(),
        Err(_) => Backend::compiled(),
    }
}

fn sentence_encoding(c: &mut Criterion) {
    let dir = model_dir();
    let mut group = c.benchmark_group("sentence_encoding");
    group.sample_size(10);
    for backend in backends() {
        let Ok(device) = backend.device() else {
            continue;
        };
        let encoder = match SentenceEncoder::load(&dir, &device) {
            Ok(e) => e.with_batch_size(32),
            Err(e) => {
                eprintln!("skipping {backend}: {e}");
                continue;
            }
        };
        // CPU devices run the host kernels by default; burn's own ops are the comparison row.
        let mut variants = vec![(backend.to_string(), encoder)];
        if variants[0].1.uses_host_kernels()
            && let Ok(e) = SentenceEncoder::load(&dir, &device)
                .and_then(|e| e.with_batch_size(32).with_host_kernels(false))
        {
            variants.push((format!("{backend}-burn-ops"), e));
        }
        // On CPUs with AMX: the bf16 dense layers (`--precision bf16`) as another row.
        if variants[0].1.uses_host_kernels()
            && sentence_encoder::Precision::Bf16.is_available()
            && let Ok(e) = SentenceEncoder::load(&dir, &device).and_then(|e| {
                e.with_batch_size(32)
                    .with_precision(sentence_encoder::Precision::Bf16)
            })
        {
            variants.push((format!("{backend}-bf16"), e));
        }
        for (label, encoder) in &variants {
            for tokens in [16usize, 64] {
                let prompts = bench_prompts(encoder, 32, tokens);
                let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
                group.throughput(Throughput::Elements(refs.len() as u64));
                group.bench_with_input(
                    BenchmarkId::new(format!("{label}/tokens{tokens}"), 32),
                    &refs,
                    |b, refs| b.iter(|| encoder.encode_flat(refs).expect("encode")),
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, sentence_encoding);
criterion_main!(benches);
