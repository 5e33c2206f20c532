//! Per-op timing of one transformer layer on host kernels (random weights):
//! `layer_profile [TOKENS_PER_SEQ] [SEQS] [WIDTH] [HEADS] [FF] [f32|bf16|bf16x3]` (default:
//! MiniLM, 32 × 64 tokens; `50 32 768 12 3072` is a ViT-B/32 block on 32 images; the last names
//! the dense layers' `Precision`). Buffers are reused across layers as the encoders do.

use std::time::Instant;

use host_kernels::{Attention, LayerNormWeights, Linear, Precision, SequenceSpan, Threads};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 2654435761) % 2001) as f32 / 20000.0 - 0.05)
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (len, seqs, w, heads, ff) = (
        get(0, 64),
        get(1, 32),
        get(2, 384),
        get(3, 12),
        get(4, 1536),
    );
    let tokens = len * seqs;
    let precision = std::env::args()
        .filter_map(|a| a.parse::<Precision>().ok())
        .next_back()
        .unwrap_or_default();
    let layer = |weight, bias, d_in, d_out| {
        Linear::new(weight, Some(bias), d_in, d_out)
            .with_precision(precision)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let qkv = layer(values(w * 3 * w, 1), values(3 * w, 2), w, 3 * w);
    let out = layer(values(w * w, 3), values(w, 4), w, w);
    let up = layer(values(w * ff, 5), values(ff, 6), w, ff);
    let down = layer(values(ff * w, 7), values(w, 8), ff, w);
    let norm = LayerNormWeights {
        gamma: vec![1.0; w],
        beta: vec![0.0; w],
        epsilon: 1e-12,
    };
    let spans = SequenceSpan::packed(std::iter::repeat_n(len, seqs));
    let shape = Attention {
        width: w,
        heads,
        causal: false,
    };
    let mut x = values(tokens * w, 9);
    let (mut q, mut c, mut i) = (Vec::new(), Vec::new(), Vec::new());
    for threads in [Threads::Pool, Threads::One] {
        let mut t = [0f64; 7];
        let reps = 5;
        for _ in 0..reps {
            let s = Instant::now();
            qkv.forward_into(&x, &mut q, threads);
            t[0] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            host_kernels::attention_into(&q, &spans, &shape, &mut c, threads);
            t[1] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            out.forward_add(&c, &mut x, threads);
            t[2] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            host_kernels::layer_norm(&mut x, &norm, threads);
            t[3] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            up.forward_into(&x, &mut i, threads);
            t[4] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            host_kernels::gelu_erf_inplace(&mut i, threads);
            t[5] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            down.forward_add(&i, &mut x, threads);
            host_kernels::layer_norm(&mut x, &norm, threads);
            t[6] += s.elapsed().as_secs_f64();
        }
        let names = [
            "qkv",
            "attention",
            "out+res",
            "norm",
            "up",
            "gelu",
            "down+res+norm",
        ];
        let total: f64 = t.iter().sum::<f64>() / reps as f64;
        let flops = 2.0 * tokens as f64 * (4.0 * (w * w) as f64 + 2.0 * (w * ff) as f64)
            + 4.0 * (seqs * len * len * w) as f64;
        println!(
            "{threads:?}: layer {:.2} ms = {:.1} GFLOP/s",
            total * 1e3,
            flops / total / 1e9
        );
        for (n, v) in names.iter().zip(t) {
            println!("  {n:>14}: {:7.2} ms", v / reps as f64 * 1e3);
        }
    }
}
