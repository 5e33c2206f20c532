//! Transformer-encoder kernels on host buffers, for CPU inference.
//!
//! burn's CPU backends run each tensor op as its own pass: elementwise work (GELU's erf,
//! softmax's exp, LayerNorm) on one thread, transposes materialised, padding computed. The
//! encoders in this workspace use these kernels instead on CPU devices, over plain row-major
//! `f32` buffers:
//!
//! - [`Linear`]: `x · W + b` through the `gemm` crate (the GEMM burn's flex backend uses), with
//!   the bias and an optional residual accumulated in place;
//! - [`layer_norm`]: LayerNorm over rows, in place;
//! - [`attention`]: multi-head attention over *ragged* batches (sequences packed back to back,
//!   no padding computed), reading Q, K and V straight out of one fused projection;
//! - [`activation`]: exact (erf) GELU, tanh GELU and quick-GELU, vectorised.
//!
//! With the `burn` feature, `from_burn` copies weights out of burn modules.
//!
//! Elementwise kernels are compiled for AVX-512, for AVX2+FMA and for the baseline, and chosen at
//! run time. Work is split across rayon's threads unless [`Threads::One`] asks for one thread (for
//! callers that run several streams themselves).

pub mod activation;
pub mod attention;
#[cfg(feature = "burn")]
pub mod from_burn;
pub mod linear;
pub mod norm;
mod simd;

pub use activation::{gelu_erf_inplace, gelu_tanh_inplace, quick_gelu_inplace};
pub use attention::{Attention, SequenceSpan, attention, attention_into};
pub use linear::Linear;
pub use norm::{LayerNormWeights, layer_norm};

/// How many threads a kernel may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// rayon's global pool (the default).
    #[default]
    Pool,
    /// The calling thread only.
    One,
}

impl Threads {
    fn gemm(self) -> gemm::Parallelism {
        match self {
            Threads::Pool => gemm::Parallelism::Rayon(0),
            Threads::One => gemm::Parallelism::None,
        }
    }
}

/// Runs `f` over `rows`-row chunks of `data` (rows of `width` values), in parallel for
/// [`Threads::Pool`].
pub(crate) fn for_row_chunks(
    data: &mut [f32],
    width: usize,
    threads: Threads,
    f: impl Fn(&mut [f32]) + Sync + Send,
) {
    use rayon::prelude::*;
    if width == 0 || data.is_empty() {
        return;
    }
    // ~16k values per task: large enough that scheduling is negligible.
    let rows = (16 * 1024 / width).max(1);
    match threads {
        Threads::Pool => data.par_chunks_mut(rows * width).for_each(f),
        Threads::One => data.chunks_mut(rows * width).for_each(f),
    }
}
