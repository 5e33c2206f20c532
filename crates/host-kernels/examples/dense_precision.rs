//! One dense layer at each available precision, on one thread:
//! `dense_precision [ROWS] [D_IN] [D_OUT]` (default `1024 384 1152`, MiniLM's Q/K/V projection of
//! 1 024 tokens). Prints milliseconds and GFLOP/s per precision, and each result's largest
//! difference from f32's.

use host_kernels::{Linear, Precision, Threads};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (rows, d_in, d_out) = (get(0, 1024), get(1, 384), get(2, 1152));
    let weight: Vec<f32> = (0..d_in * d_out)
        .map(|i| ((i * 2654435761) % 2001) as f32 / 20000.0 - 0.05)
        .collect();
    let x: Vec<f32> = (0..rows * d_in)
        .map(|i| ((i * 40503) % 1999) as f32 / 1000.0 - 1.0)
        .collect();
    let flops = 2.0 * (rows * d_in * d_out) as f64;
    let mut exact = Vec::new();
    for precision in [Precision::F32, Precision::Bf16x3, Precision::Bf16] {
        if !precision.is_available() {
            println!("{precision}: not available on this CPU");
            continue;
        }
        let layer = Linear::new(weight.clone(), None, d_in, d_out)
            .with_precision(precision)
            .expect("available");
        let mut out = Vec::new();
        layer.forward_into(&x, &mut out, Threads::One);
        let reps = 20;
        let start = std::time::Instant::now();
        for _ in 0..reps {
            layer.forward_into(&x, &mut out, Threads::One);
        }
        let seconds = start.elapsed().as_secs_f64() / f64::from(reps);
        if precision == Precision::F32 {
            exact = out.clone();
        }
        let diff = out
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "{precision:>6}: {:7.2} ms  {:6.0} GFLOP/s  max |diff| to f32 {diff:.2e}",
            seconds * 1e3,
            flops / seconds / 1e9
        );
    }
}
