//! The operations of one MLP-head training step, timed one by one on the default CPU device
//! (docs/PERFORMANCE.md, "Head training"): `cargo run --release -p img2prompt --example
//! head_ops -- [HIDDEN...]` (default 256 384 512 1024; batch 256, input 64, output 384).
//! Each line is the median of 50 runs in microseconds.

use std::time::Instant;

use img2prompt::burn::tensor::activation::gelu;
use img2prompt::burn::tensor::{Device, Tensor, TensorData};

const BATCH: usize = 256;
const IN: usize = 64;
const OUT: usize = 384;

fn tensor(rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let data: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0) - 0.5)
        .collect();
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

/// Median microseconds of `f` (which must read its result back to force the work).
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..50)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn sync(t: Tensor<2>) {
    let _ = t.into_data();
}

fn main() -> img2prompt::Result<()> {
    let hidden: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let hidden = if hidden.is_empty() {
        vec![256, 384, 512, 1024]
    } else {
        hidden
    };
    let device = img2prompt::Backend::default_cpu().device()?;
    for h in hidden {
        let x = tensor(BATCH, IN, &device);
        let w1 = tensor(IN, h, &device);
        let a = tensor(BATCH, h, &device);
        let w2 = tensor(h, OUT, &device);
        let g = tensor(BATCH, OUT, &device);
        let rows = [
            (
                format!("x[{BATCH},{IN}] . W1[{IN},{h}]"),
                time(|| sync(x.clone().matmul(w1.clone()))),
            ),
            (
                format!("gelu [{BATCH},{h}]"),
                time(|| sync(gelu(a.clone()))),
            ),
            (
                format!("a[{BATCH},{h}] . W2[{h},{OUT}]"),
                time(|| sync(a.clone().matmul(w2.clone()))),
            ),
            (
                format!("x^T[{IN},{BATCH}] . g[{BATCH},{h}] (dW1)"),
                time(|| sync(x.clone().transpose().matmul(a.clone()))),
            ),
            (
                format!("a^T[{h},{BATCH}] . g[{BATCH},{OUT}] (dW2)"),
                time(|| sync(a.clone().transpose().matmul(g.clone()))),
            ),
            (
                format!("g[{BATCH},{OUT}] . W2^T[{OUT},{h}] (da)"),
                time(|| sync(g.clone().matmul(w2.clone().transpose()))),
            ),
        ];
        for (what, us) in rows {
            println!("hidden {h:>5}: {what:<40} {us:>9.1} us");
        }
    }
    Ok(())
}
