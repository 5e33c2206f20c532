//! Exact (erf) GELU computed on the host for CPU devices.
//!
//! In burn 0.22 the CPU backends (flex, ndarray) evaluate `gelu` one element at a time on one
//! thread through libm's `erff`: ~8.5 ms for one `[32 × 20, 1536]` feed-forward activation,
//! a fifth of a MiniLM layer (docs/PERFORMANCE.md). Here the same function runs over the
//! tensor's host buffer with a branch-free rational approximation of erf that the compiler
//! vectorises, split across rayon's threads. GPU devices keep burn's own kernel.

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// Elements per rayon task: large enough that scheduling is negligible.
const CHUNK: usize = 16 * 1024;

/// The error function, as a rational approximation on `[-4, 4]` (clamped outside, where
/// `erf` is ±1 in f32): `x · P(x²) / Q(x²)` with the float coefficients used by Eigen and XLA.
/// Within 1e-6 of libm's `erff` everywhere (tested on a dense grid).
#[inline]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906_3e-4;
    p = x2 * p - 2.954_600_2e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329_2e-3;
    q = x2 * q - 1.426_474e-2;
    x * p / q
}

/// `0.5 · x · (1 + erf(x / √2))`, the GELU that BERT checkpoints declare as `"gelu"`.
#[inline]
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Whether `device` runs tensor ops on this machine's CPU with burn's scalar elementwise
/// kernels (flex, ndarray), where [`gelu`] takes the host path.
pub fn is_host_cpu(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if *device == Device::ndarray() {
        return true;
    }
    let _ = device;
    false
}

/// Exact GELU of an f32 tensor: on the host, vectorised and multi-threaded, for CPU devices;
/// burn's `gelu` elsewhere.
pub fn gelu<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    let device = tensor.device();
    // Half-precision models keep burn's kernel, which handles every dtype.
    if !is_host_cpu(&device) || tensor.dtype() != DType::F32 {
        return burn::tensor::activation::gelu(tensor);
    }
    let shape = tensor.shape();
    let Ok(mut values) = tensor.into_data().try_into_vec::<f32>() else {
        unreachable!("an f32 tensor's data converts to Vec<f32>")
    };
    values.par_chunks_mut(CHUNK).for_each(|chunk| {
        for x in chunk {
            *x = gelu_scalar(*x);
        }
    });
    Tensor::from_data(TensorData::new(values, shape), &device)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_libm_on_a_dense_grid() {
        let grid: Vec<f32> = (-60_000..=60_000).map(|i| i as f32 * 1e-4).collect();
        let reference = libm_erf(&grid);
        let (mut worst, mut at) = (0f32, 0f32);
        for (&x, &r) in grid.iter().zip(&reference) {
            let err = (erf(x) - r).abs();
            if err > worst {
                (worst, at) = (err, x);
            }
        }
        assert!(worst < 1e-6, "max |erf - erff| = {worst:e} at {at}");
        // Saturated far from 0, like erff.
        assert!((erf(10.0) - 1.0).abs() <= 1e-6 && (erf(-10.0) + 1.0).abs() <= 1e-6);
    }

    #[test]
    fn host_gelu_matches_burn_gelu() {
        let device = Device::flex();
        let values: Vec<f32> = (0..40_000).map(|i| (i as f32 - 20_000.0) * 4e-4).collect();
        let x = Tensor::<2>::from_data(TensorData::new(values, [200, 200]), &device);
        let ours = gelu(x.clone()).into_data().try_into_vec::<f32>().unwrap();
        let burn = burn::tensor::activation::gelu(x)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let worst = ours
            .iter()
            .zip(&burn)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "max |host gelu - burn gelu| = {worst:e}");
    }

    /// libm's erff, through burn's element-by-element kernel on flex.
    fn libm_erf(xs: &[f32]) -> Vec<f32> {
        let t = Tensor::<1>::from_data(TensorData::new(xs.to_vec(), [xs.len()]), &Device::flex());
        t.erf().into_data().try_into_vec::<f32>().unwrap()
    }
}
