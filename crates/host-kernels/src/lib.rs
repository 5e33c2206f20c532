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
//! - [`attention()`]: multi-head attention over *ragged* batches (sequences packed back to back,
//!   no padding computed), reading Q, K and V straight out of one fused projection;
//! - [`activation`]: exact (erf) GELU, tanh GELU and quick-GELU, vectorised.
//!
//! With the `burn` feature, `from_burn` copies weights out of burn modules.
//!
//! Elementwise kernels are compiled for AVX-512, for AVX2+FMA and for the baseline, and chosen at
//! run time. Work is split across rayon's threads unless [`Threads::One`] asks for one thread (for
//! callers that run several streams themselves).

pub mod activation;
pub mod amx;
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

/// The arithmetic of the dense layers (80% of an encoder's time). LayerNorm, attention and the
/// activations stay f32 at every precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 throughout (the default).
    #[default]
    F32,
    /// Dense-layer inputs and weights rounded to bf16 (8 significant bits), products summed in
    /// f32, on Intel AMX tiles (x86-64 Linux, Xeon Sapphire Rapids or later: see
    /// [`amx::available`]). The fastest; embeddings within cosine ~0.9998 of f32's.
    Bf16,
    /// Each input and weight split into two bf16 parts (16 significant bits) and three bf16
    /// products summed in f32 on the AMX tiles: near f32 accuracy (cosine >= 0.9999 against the
    /// references, as f32) at three times [`Precision::Bf16`]'s tile work.
    Bf16x3,
}

impl Precision {
    /// Whether this machine computes at this precision.
    pub fn is_available(self) -> bool {
        match self {
            Precision::F32 => true,
            Precision::Bf16 | Precision::Bf16x3 => amx::available(),
        }
    }

    fn check(self) -> Result<(), PrecisionUnavailable> {
        if self.is_available() {
            Ok(())
        } else {
            Err(PrecisionUnavailable(self))
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Bf16x3 => "bf16x3",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "bf16x3" => Ok(Precision::Bf16x3),
            other => Err(format!(
                "precision must be f32, bf16x3 or bf16, got {other:?}"
            )),
        }
    }
}

/// Sets `precision` on a model's host weights through `set`. A model without host weights runs
/// burn's ops, which compute in f32 only: any other precision is refused, with a message saying
/// why.
///
/// # Errors
/// The message for the caller's error type.
pub fn set_host_precision<H>(
    host: Option<&mut H>,
    precision: Precision,
    set: impl FnOnce(&mut H, Precision) -> Result<(), PrecisionUnavailable>,
) -> Result<(), String> {
    match host {
        Some(host) => set(host, precision).map_err(|e| e.to_string()),
        None if precision == Precision::F32 => Ok(()),
        None => Err(format!(
            "precision {precision} runs on the host kernels, which are off for this model (a GPU \
             device, or with_host_kernels(false))"
        )),
    }
}

/// A [`Precision`] this machine cannot compute at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrecisionUnavailable(pub Precision);

impl std::fmt::Display for PrecisionUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Precision::F32 => f.write_str("f32 is always available"),
            p => write!(
                f,
                "precision {p} needs Intel AMX-BF16 tiles (x86-64 Linux, Xeon Sapphire Rapids \
                 or later); this CPU or OS has none"
            ),
        }
    }
}

impl std::error::Error for PrecisionUnavailable {}

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
