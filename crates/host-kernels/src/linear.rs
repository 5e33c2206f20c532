//! Dense layers: `x · W + b` through the `gemm` crate, on row-major buffers.

use crate::amx::{PackedBf16, Split};
use crate::{Precision, PrecisionUnavailable, Threads};

/// A dense layer's weights, `[d_in, d_out]` row-major (burn's `Linear` layout), and bias.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    d_in: usize,
    d_out: usize,
    /// The weight packed for bf16 tiles, when [`Precision::Bf16`] or [`Precision::Bf16x3`] was
    /// asked for.
    bf16: Option<PackedBf16>,
}

impl Linear {
    /// A layer from its `[d_in, d_out]` weight and optional `[d_out]` bias.
    ///
    /// # Panics
    /// If the lengths do not match the shape.
    pub fn new(weight: Vec<f32>, bias: Option<Vec<f32>>, d_in: usize, d_out: usize) -> Self {
        assert_eq!(
            weight.len(),
            d_in * d_out,
            "weight is not [{d_in}, {d_out}]"
        );
        if let Some(b) = &bias {
            assert_eq!(b.len(), d_out, "bias is not [{d_out}]");
        }
        Self {
            weight,
            bias,
            d_in,
            d_out,
            bf16: None,
        }
    }

    /// The layer computing at `precision` (see [`Self::set_precision`]).
    ///
    /// # Errors
    /// [`PrecisionUnavailable`] when this CPU cannot compute at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self, PrecisionUnavailable> {
        self.set_precision(precision)?;
        Ok(self)
    }

    /// Computes at `precision` from now on: [`Precision::Bf16`] and [`Precision::Bf16x3`] pack
    /// the weight for the AMX tiles (the f32 weight is kept, for [`Precision::F32`] again).
    ///
    /// # Errors
    /// [`PrecisionUnavailable`] when this CPU cannot compute at `precision` (nothing changes).
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), PrecisionUnavailable> {
        precision.check()?;
        let split = match precision {
            Precision::F32 => None,
            Precision::Bf16 => Some(Split::One),
            Precision::Bf16x3 => Some(Split::Three),
        };
        if split != self.bf16.as_ref().map(PackedBf16::split) {
            self.bf16 =
                split.map(|split| PackedBf16::new(&self.weight, self.d_in, self.d_out, split));
        }
        Ok(())
    }

    /// The precision the layer computes at.
    pub fn precision(&self) -> Precision {
        match self.bf16.as_ref().map(PackedBf16::split) {
            None => Precision::F32,
            Some(Split::One) => Precision::Bf16,
            Some(Split::Three) => Precision::Bf16x3,
        }
    }

    /// One layer computing all of `parts` side by side: outputs concatenated in order (Q, K and
    /// V projections as one GEMM). Missing biases count as zeros.
    ///
    /// # Panics
    /// If `parts` is empty or their input widths differ.
    pub fn concat(parts: &[Linear]) -> Self {
        let d_in = parts.first().expect("at least one layer").d_in;
        assert!(parts.iter().all(|p| p.d_in == d_in), "input widths differ");
        let d_out: usize = parts.iter().map(|p| p.d_out).sum();
        let mut weight = Vec::with_capacity(d_in * d_out);
        for row in 0..d_in {
            for p in parts {
                weight.extend_from_slice(&p.weight[row * p.d_out..(row + 1) * p.d_out]);
            }
        }
        let bias = parts.iter().any(|p| p.bias.is_some()).then(|| {
            parts
                .iter()
                .flat_map(|p| p.bias.clone().unwrap_or_else(|| vec![0.0; p.d_out]))
                .collect()
        });
        Self::new(weight, bias, d_in, d_out)
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// `x · W + b` for the rows of `x` (`[rows, d_in]`), as a new `[rows, d_out]` buffer.
    pub fn forward(&self, x: &[f32], threads: Threads) -> Vec<f32> {
        let mut out = Vec::new();
        self.forward_into(x, &mut out, threads);
        out
    }

    /// `x · W + b` written into `out`, resized to `[rows, d_out]`. Reusing one `out` across
    /// calls saves the page faults of a fresh allocation (measured: a third of the time of
    /// MiniLM's `[2048, 384] · [384, 1536]`).
    pub fn forward_into(&self, x: &[f32], out: &mut Vec<f32>, threads: Threads) {
        let rows = self.rows(x);
        // Every value is overwritten below, so a reused buffer needs no clearing.
        out.resize(rows * self.d_out, 0.0);
        self.run(x, out, Mode::Overwrite, threads);
    }

    /// `acc += x · W + b`: the layer added onto a residual stream `acc` (`[rows, d_out]`).
    pub fn forward_add(&self, x: &[f32], acc: &mut [f32], threads: Threads) {
        let rows = self.rows(x);
        assert_eq!(
            acc.len(),
            rows * self.d_out,
            "accumulator is not [{rows}, {}]",
            self.d_out
        );
        self.run(x, acc, Mode::Accumulate, threads);
    }

    fn rows(&self, x: &[f32]) -> usize {
        assert!(
            self.d_in > 0 && x.len().is_multiple_of(self.d_in),
            "input rows are not {} wide",
            self.d_in
        );
        x.len() / self.d_in
    }

    /// Runs the layer over the rows of `x` into `out` (shapes checked by the callers). With
    /// [`Threads::Pool`], the rows are split into one block per thread, each a single-threaded
    /// GEMM: gemm's own threading splits the output columns and measured no faster than one
    /// thread for MiniLM's `[2048, 384] · [384, 1536]`, the row split 1.9x (docs/PERFORMANCE.md).
    fn run(&self, x: &[f32], out: &mut [f32], mode: Mode, threads: Threads) {
        use rayon::prelude::*;
        let rows = x.len() / self.d_in;
        if rows == 0 || self.d_out == 0 {
            return;
        }
        let parts = match threads {
            Threads::Pool => rayon::current_num_threads().min(rows / MIN_ROWS_PER_THREAD),
            Threads::One => 1,
        };
        if parts <= 1 {
            return self.block(x, out, mode, threads.gemm());
        }
        let block = rows.div_ceil(parts);
        x.par_chunks(block * self.d_in)
            .zip(out.par_chunks_mut(block * self.d_out))
            .for_each(|(x, out)| self.block(x, out, mode, gemm::Parallelism::None));
    }

    /// One block of rows: the bias written or added, then the product accumulated.
    fn block(&self, x: &[f32], out: &mut [f32], mode: Mode, parallelism: gemm::Parallelism) {
        let rows = x.len() / self.d_in;
        debug_assert_eq!(out.len(), rows * self.d_out);
        if let Some(packed) = &self.bf16 {
            // The bias and the residual are applied as each tile block is written out.
            let epilogue = crate::amx::Epilogue {
                accumulate: matches!(mode, Mode::Accumulate),
                bias: self.bias.as_deref(),
            };
            return crate::amx::gemm(x, packed, out, epilogue);
        }
        let read_dst = match (mode, &self.bias) {
            (Mode::Overwrite, None) => false,
            (Mode::Overwrite, Some(b)) => {
                out.chunks_exact_mut(self.d_out)
                    .for_each(|row| row.copy_from_slice(b));
                true
            }
            (Mode::Accumulate, None) => true,
            (Mode::Accumulate, Some(b)) => {
                for row in out.chunks_exact_mut(self.d_out) {
                    row.iter_mut().zip(b).for_each(|(o, &b)| *o += b);
                }
                true
            }
        };
        // SAFETY: `x` is [rows, d_in], `W` is [d_in, d_out] and `out` is [rows, d_out], all
        // row-major (checked by the callers); the buffers do not overlap (`out` is borrowed
        // mutably).
        unsafe {
            gemm::gemm(
                rows,
                self.d_out,
                self.d_in,
                out.as_mut_ptr(),
                1,
                self.d_out as isize,
                read_dst,
                x.as_ptr(),
                1,
                self.d_in as isize,
                self.weight.as_ptr(),
                1,
                self.d_out as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

/// Whether a dense layer overwrites its output or adds onto it.
#[derive(Clone, Copy)]
enum Mode {
    Overwrite,
    Accumulate,
}

/// Below this many rows per thread, a dense layer is left to gemm's own threading.
const MIN_ROWS_PER_THREAD: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], b: &[f32], d_in: usize, d_out: usize) -> Vec<f64> {
        let rows = x.len() / d_in;
        let mut out = vec![0f64; rows * d_out];
        for r in 0..rows {
            for o in 0..d_out {
                let mut s = f64::from(b[o]);
                for i in 0..d_in {
                    s += f64::from(x[r * d_in + i]) * f64::from(w[i * d_out + o]);
                }
                out[r * d_out + o] = s;
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 2654435761) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn forward_and_concat_match_a_naive_product() {
        let (d_in, rows) = (37, 23);
        let parts: Vec<Linear> = [5usize, 11, 7]
            .iter()
            .enumerate()
            .map(|(s, &d_out)| {
                let bias = (s != 1).then(|| values(d_out, s + 100));
                Linear::new(values(d_in * d_out, s), bias, d_in, d_out)
            })
            .collect();
        let fused = Linear::concat(&parts);
        let x = values(rows * d_in, 7);
        for threads in [Threads::Pool, Threads::One] {
            let got = fused.forward(&x, threads);
            let mut col = 0;
            for p in &parts {
                let zeros = vec![0.0; p.d_out];
                let want = naive(
                    &x,
                    &p.weight,
                    p.bias.as_deref().unwrap_or(&zeros),
                    d_in,
                    p.d_out,
                );
                for r in 0..rows {
                    for o in 0..p.d_out {
                        let g = f64::from(got[r * fused.d_out() + col + o]);
                        assert!((g - want[r * p.d_out + o]).abs() < 1e-4);
                    }
                }
                col += p.d_out;
            }
            // A reused, larger buffer gives the same values.
            let mut reused = vec![7.0f32; 3 * rows * fused.d_out()];
            fused.forward_into(&x, &mut reused, threads);
            assert_eq!(reused, got);
            // The residual form adds onto what is there.
            let mut acc = vec![1.5f32; rows * fused.d_out()];
            fused.forward_add(&x, &mut acc, threads);
            for (a, g) in acc.iter().zip(&got) {
                assert!((a - 1.5 - g).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn bf16_precision_is_close_to_f32_and_reversible() {
        let (d_in, d_out, rows) = (96, 80, 70);
        let layer = Linear::new(values(d_in * d_out, 1), Some(values(d_out, 2)), d_in, d_out);
        let x = values(rows * d_in, 3);
        let exact = layer.forward(&x, Threads::Pool);
        if !Precision::Bf16.is_available() {
            let err = layer.with_precision(Precision::Bf16).expect_err("no AMX");
            assert!(err.to_string().contains("AMX"), "{err}");
            return;
        }
        let bf16 = layer.clone().with_precision(Precision::Bf16).expect("bf16");
        assert_eq!(bf16.precision(), Precision::Bf16);
        for threads in [Threads::Pool, Threads::One] {
            let got = bf16.forward(&x, threads);
            assert_ne!(got, exact, "bf16 in use");
            // bf16 keeps 8 bits: each product is within ~2^-8 relative, summed over 96 terms.
            for (g, e) in got.iter().zip(&exact) {
                assert!((g - e).abs() < 0.05, "{g} vs {e}");
            }
            let mut acc = vec![1.5f32; rows * d_out];
            bf16.forward_add(&x, &mut acc, threads);
            for (a, g) in acc.iter().zip(&got) {
                assert!((a - 1.5 - g).abs() < 1e-4);
            }
        }
        // Three products: near f32.
        let split = bf16
            .clone()
            .with_precision(Precision::Bf16x3)
            .expect("bf16x3");
        assert_eq!(split.precision(), Precision::Bf16x3);
        for (g, e) in split.forward(&x, Threads::Pool).iter().zip(&exact) {
            assert!((g - e).abs() < 2e-4, "{g} vs {e}");
        }
        let back = bf16.with_precision(Precision::F32).expect("f32");
        assert_eq!(back.precision(), Precision::F32);
        assert_eq!(back.forward(&x, Threads::Pool), exact);
    }
}
