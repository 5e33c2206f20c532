//! Pooling token embeddings into one sentence embedding, and L2 normalisation.

use burn::tensor::Tensor;

use crate::config::PoolingMode;

/// Pools `hidden` (`[batch, seq, width]`) over `mask` (`[batch, seq]`, 1.0 for real tokens).
pub fn pool(hidden: Tensor<3>, mask: Tensor<2>, mode: PoolingMode) -> Tensor<2> {
    let [batch, seq, width] = hidden.dims();
    match mode {
        PoolingMode::Cls => hidden.narrow(1, 0, 1).reshape([batch, width]),
        PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
            let mask3 = mask.clone().reshape([batch, seq, 1]);
            let summed = (hidden * mask3).sum_dim(1).reshape([batch, width]);
            let counts = mask.sum_dim(1).clamp_min(1e-9);
            let counts = if mode == PoolingMode::Mean {
                counts
            } else {
                counts.sqrt()
            };
            summed / counts
        }
        PoolingMode::Max => {
            // Padding positions get a very negative value so they never win the max,
            // as sentence-transformers does with -1e9.
            let mask3 = mask.reshape([batch, seq, 1]);
            let penalty = (mask3.clone().neg() + 1.0).mul_scalar(-1.0e9_f32);
            (hidden * mask3 + penalty)
                .max_dim(1)
                .reshape([batch, width])
        }
    }
}

/// Divides each row by its L2 norm (clamped at 1e-12, as `torch.nn.functional.normalize`).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
