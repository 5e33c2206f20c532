//! Exact (erf) GELU computed on the host for CPU devices, for the burn model path.
//!
//! In burn 0.22 the CPU backends (flex, ndarray) evaluate `gelu` one element at a time on one
//! thread through libm's `erff`: ~8.5 ms for one `[32 × 20, 1536]` feed-forward activation,
//! a fifth of a MiniLM layer (docs/PERFORMANCE.md). Here the same function runs over the
//! tensor's host buffer with a branch-free rational approximation of erf that the compiler
//! vectorises, split across rayon's threads. GPU devices keep burn's own kernel.

use burn::tensor::{DType, Tensor, TensorData};

/// Whether `device` is a CPU device (flex, ndarray), where [`gelu`] takes the host path.
pub use host_kernels::from_burn::is_host_cpu;

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
    host_kernels::gelu_erf_inplace(&mut values, host_kernels::Threads::Pool);
    Tensor::from_data(TensorData::new(values, shape), &device)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn erf_matches_libm_on_a_dense_grid() {
        let grid: Vec<f32> = (-60_000..=60_000).map(|i| i as f32 * 1e-4).collect();
        let reference = libm_erf(&grid);
        let (mut worst, mut at) = (0f32, 0f32);
        for (&x, &r) in grid.iter().zip(&reference) {
            let err = (host_kernels::activation::erf(x) - r).abs();
            if err > worst {
                (worst, at) = (err, x);
            }
        }
        assert!(worst < 1e-6, "max |erf - erff| = {worst:e} at {at}");
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
