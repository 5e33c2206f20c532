//! Host weights copied out of burn modules (feature `burn`), and the test for the CPU devices
//! where the host kernels run. Shared by the encoders, which copy their loaded models here.

use burn::module::Param;
use burn::tensor::{Device, Tensor};

use crate::{LayerNormWeights, Linear};

/// Whether `device` runs on this machine's CPU (flex, ndarray): where the encoders use the host
/// kernels instead of burn's ops.
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

/// `Ok` on a CPU device ([`is_host_cpu`]); otherwise the message that the host kernels cannot
/// run on `device`, for the encoders' errors.
pub fn require_host_cpu(device: &Device) -> Result<(), String> {
    if is_host_cpu(device) {
        Ok(())
    } else {
        Err(format!(
            "host kernels run on CPU devices only, not {device:?}"
        ))
    }
}

/// A parameter's values as `f32` (converted from its dtype), or `None` if they cannot be read.
pub fn values<const D: usize>(param: &Param<Tensor<D>>) -> Option<Vec<f32>> {
    param
        .val()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .ok()
}

/// A burn `Linear` (weight `[d_in, d_out]`, optional bias) as a host [`Linear`].
pub fn linear(layer: &burn::nn::Linear) -> Option<Linear> {
    let [d_in, d_out] = layer.weight.dims();
    let bias = match &layer.bias {
        Some(b) => Some(values(b)?),
        None => None,
    };
    Some(Linear::new(values(&layer.weight)?, bias, d_in, d_out))
}

/// A burn `LayerNorm` as host [`LayerNormWeights`]. burn keeps the epsilon private, so the
/// caller passes the one from the model's configuration.
pub fn layer_norm(norm: &burn::nn::LayerNorm, epsilon: f64) -> Option<LayerNormWeights> {
    let gamma = values(&norm.gamma)?;
    let beta = match &norm.beta {
        Some(b) => values(b)?,
        None => vec![0.0; gamma.len()],
    };
    Some(LayerNormWeights {
        gamma,
        beta,
        epsilon: epsilon as f32,
    })
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::nn::{LayerNormConfig, LinearConfig};

    #[test]
    fn burn_layers_copied_out_compute_what_burn_computes() {
        let device = Device::flex();
        assert!(is_host_cpu(&device));
        assert_eq!(require_host_cpu(&device), Ok(()));
        let layer = LinearConfig::new(5, 3).init(&device);
        let norm = LayerNormConfig::new(3).with_epsilon(1e-5).init(&device);
        let x: Vec<f32> = (0..10).map(|i| i as f32 * 0.3 - 1.0).collect();
        let input =
            Tensor::<2>::from_data(burn::tensor::TensorData::new(x.clone(), [2, 5]), &device);
        let want = norm
            .forward(layer.forward(input))
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let mut got = linear(&layer).unwrap().forward(&x, crate::Threads::One);
        crate::layer_norm(
            &mut got,
            &layer_norm(&norm, 1e-5).unwrap(),
            crate::Threads::One,
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }
}
