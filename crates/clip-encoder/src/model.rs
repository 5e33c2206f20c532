//! The CLIP towers as Burn modules, with fields named after the HF checkpoint keys so that
//! loading needs no rename table (`vision_model.encoder.layers.3.self_attn.q_proj.weight` is
//! the field path `vision_model.encoder.layers.3.self_attn.q_proj.weight`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{gelu, gelu_approximate, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use crate::config::{Activation, ClipConfig, ClipTextConfig, ClipVisionConfig};

/// Applies an [`Activation`].
pub fn activate<const D: usize>(act: Activation, x: Tensor<D>) -> Tensor<D> {
    match act {
        Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
    }
}

fn linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device)
}

fn layer_norm(d: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(eps).init(device)
}

/// Multi-head self-attention (`self_attn`): `q_proj`, `k_proj`, `v_proj`, `out_proj`.
#[derive(Module, Debug)]
pub struct ClipAttention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
}

impl ClipAttention {
    /// A randomly initialised attention block of width `d` with `num_heads` heads.
    pub fn new(d: usize, num_heads: usize, device: &Device) -> Self {
        Self {
            q_proj: linear(d, d, true, device),
            k_proj: linear(d, d, true, device),
            v_proj: linear(d, d, true, device),
            out_proj: linear(d, d, true, device),
            num_heads,
        }
    }

    /// `[batch, seq, d] -> [batch, seq, d]`; `causal` masks future positions.
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        let split = |t: Tensor<3>| t.reshape([b, l, h, hd]).swap_dims(1, 2);
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let options = AttentionModuleOptions {
            scale: Some(1.0 / (hd as f64).sqrt()),
            softcap: None,
            is_causal: causal,
        };
        let out = attention(q, k, v, None, None, options);
        let out = out.swap_dims(1, 2).reshape([b, l, d]);
        self.out_proj.forward(out)
    }
}

/// The feed-forward block (`mlp`): `fc1`, activation, `fc2`.
#[derive(Module, Debug)]
pub struct ClipMlp {
    /// First projection (width -> intermediate).
    pub fc1: Linear,
    /// Second projection (intermediate -> width).
    pub fc2: Linear,
    /// Activation between them.
    #[module(skip)]
    pub act: Activation,
}

impl ClipMlp {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(activate(self.act, self.fc1.forward(x)))
    }
}

/// A pre-LayerNorm transformer block (`encoder.layers.N`).
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    /// Attention.
    pub self_attn: ClipAttention,
    /// LayerNorm before attention.
    pub layer_norm1: LayerNorm,
    /// Feed-forward block.
    pub mlp: ClipMlp,
    /// LayerNorm before the feed-forward block.
    pub layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    /// A randomly initialised block.
    pub fn new(
        d: usize,
        inter: usize,
        heads: usize,
        act: Activation,
        eps: f64,
        device: &Device,
    ) -> Self {
        Self {
            self_attn: ClipAttention::new(d, heads, device),
            layer_norm1: layer_norm(d, eps, device),
            mlp: ClipMlp {
                fc1: linear(d, inter, true, device),
                fc2: linear(inter, d, true, device),
                act,
            },
            layer_norm2: layer_norm(d, eps, device),
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let h = self
            .self_attn
            .forward(self.layer_norm1.forward(x.clone()), causal);
        let x = x + h;
        let h = self.mlp.forward(self.layer_norm2.forward(x.clone()));
        x + h
    }
}

/// The stack of transformer blocks (`encoder`).
#[derive(Module, Debug)]
pub struct ClipEncoder {
    /// The blocks, addressed `layers.N` as in HF.
    pub layers: Vec<ClipEncoderLayer>,
}

impl ClipEncoder {
    /// Applies every block in order.
    pub fn forward(&self, mut x: Tensor<3>, causal: bool) -> Tensor<3> {
        for layer in &self.layers {
            x = layer.forward(x, causal);
        }
        x
    }
}

/// Patch, class and position embeddings of the vision tower (`vision_model.embeddings`).
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    /// The learned class token, `[hidden]`.
    pub class_embedding: Param<Tensor<1>>,
    /// Patch convolution, kernel = stride = patch size, no bias.
    pub patch_embedding: Conv2d,
    /// Learned positions, `[patches + 1, hidden]`.
    pub position_embedding: Embedding,
}

/// The vision transformer (`vision_model`), up to the post-LayerNormed class token.
#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    /// Embeddings.
    pub embeddings: ClipVisionEmbeddings,
    /// LayerNorm before the encoder (HF spells it `pre_layrnorm`).
    pub pre_layrnorm: LayerNorm,
    /// Encoder blocks.
    pub encoder: ClipEncoder,
    /// LayerNorm of the pooled class token.
    pub post_layernorm: LayerNorm,
}

impl ClipVisionTransformer {
    /// A randomly initialised vision transformer of the given shape.
    pub fn new(c: &ClipVisionConfig, device: &Device) -> Self {
        let d = c.hidden_size;
        Self {
            embeddings: ClipVisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::random(
                    [d],
                    Distribution::Normal(0.0, 0.02),
                    device,
                )),
                patch_embedding: Conv2dConfig::new(
                    [c.num_channels, d],
                    [c.patch_size, c.patch_size],
                )
                .with_stride([c.patch_size, c.patch_size])
                .with_bias(false)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
                position_embedding: EmbeddingConfig::new(c.num_positions(), d)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: 0.02,
                    })
                    .init(device),
            },
            pre_layrnorm: layer_norm(d, c.layer_norm_eps, device),
            encoder: ClipEncoder {
                layers: (0..c.num_hidden_layers)
                    .map(|_| {
                        ClipEncoderLayer::new(
                            d,
                            c.intermediate_size,
                            c.num_attention_heads,
                            c.hidden_act,
                            c.layer_norm_eps,
                            device,
                        )
                    })
                    .collect(),
            },
            post_layernorm: layer_norm(d, c.layer_norm_eps, device),
        }
    }

    /// `[batch, channels, size, size]` normalised pixels -> pooled `[batch, hidden]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let patches = self.embeddings.patch_embedding.forward(pixels);
        let [b, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let class = self
            .embeddings
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([b, 1, d]);
        let x = Tensor::cat(vec![class, patches], 1);
        let pos = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .unsqueeze_dim::<3>(0);
        let x = self.pre_layrnorm.forward(x + pos);
        let x = self.encoder.forward(x, false);
        let pooled = x.narrow(1, 0, 1).reshape([b, d]);
        self.post_layernorm.forward(pooled)
    }
}

/// Token and position embeddings of the text tower (`text_model.embeddings`).
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    /// Token table, `[vocab, hidden]`.
    pub token_embedding: Embedding,
    /// Learned positions, `[context, hidden]`.
    pub position_embedding: Embedding,
}

/// The causal text transformer (`text_model`), up to the final LayerNorm.
#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    /// Embeddings.
    pub embeddings: ClipTextEmbeddings,
    /// Encoder blocks (run with a causal mask).
    pub encoder: ClipEncoder,
    /// Final LayerNorm.
    pub final_layer_norm: LayerNorm,
}

impl ClipTextTransformer {
    /// A randomly initialised text transformer of the given shape.
    pub fn new(c: &ClipTextConfig, device: &Device) -> Self {
        let d = c.hidden_size;
        let emb = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        Self {
            embeddings: ClipTextEmbeddings {
                token_embedding: emb(c.vocab_size),
                position_embedding: emb(c.max_position_embeddings),
            },
            encoder: ClipEncoder {
                layers: (0..c.num_hidden_layers)
                    .map(|_| {
                        ClipEncoderLayer::new(
                            d,
                            c.intermediate_size,
                            c.num_attention_heads,
                            c.hidden_act,
                            c.layer_norm_eps,
                            device,
                        )
                    })
                    .collect(),
            },
            final_layer_norm: layer_norm(d, c.layer_norm_eps, device),
        }
    }

    /// `ids` `[batch, len]` -> the final-LayerNormed hidden state at `pool[i]` of each row,
    /// `[batch, hidden]`. Positions after `pool[i]` cannot influence it (causal mask), so
    /// callers may cut `len` to `max(pool) + 1`.
    pub fn forward_pooled(&self, ids: Tensor<2, Int>, pool: &[usize]) -> Tensor<2> {
        let [b, l] = ids.dims();
        let x = self.embeddings.token_embedding.forward(ids);
        let d = x.dims()[2];
        let pos = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .narrow(0, 0, l)
            .unsqueeze_dim::<3>(0);
        let x = self.encoder.forward(x + pos, true);
        let flat_index: Vec<i64> = pool
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * l + p) as i64)
            .collect();
        let device = x.device();
        let index = Tensor::<1, Int>::from_data(TensorData::new(flat_index, [b]), &device);
        let pooled = x.reshape([b * l, d]).select(0, index);
        self.final_layer_norm.forward(pooled)
    }
}

/// Vision transformer plus `visual_projection`: the module a checkpoint's vision half loads into.
#[derive(Module, Debug)]
pub struct ClipVisionTower {
    /// The transformer.
    pub vision_model: ClipVisionTransformer,
    /// Projection into the joint space (no bias).
    pub visual_projection: Linear,
}

impl ClipVisionTower {
    /// Randomly initialised (for benchmarks and tests).
    pub fn new(c: &ClipConfig, device: &Device) -> Self {
        Self {
            vision_model: ClipVisionTransformer::new(&c.vision, device),
            visual_projection: linear(c.vision.hidden_size, c.projection_dim, false, device),
        }
    }

    /// Normalised pixels `[batch, 3, size, size]` -> projected embeddings `[batch, projection_dim]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.visual_projection
            .forward(self.vision_model.forward(pixels))
    }
}

/// Text transformer plus `text_projection`: the module a checkpoint's text half loads into.
#[derive(Module, Debug)]
pub struct ClipTextTower {
    /// The transformer.
    pub text_model: ClipTextTransformer,
    /// Projection into the joint space (no bias).
    pub text_projection: Linear,
}

impl ClipTextTower {
    /// Randomly initialised (for benchmarks and tests).
    pub fn new(c: &ClipConfig, device: &Device) -> Self {
        Self {
            text_model: ClipTextTransformer::new(&c.text, device),
            text_projection: linear(c.text.hidden_size, c.projection_dim, false, device),
        }
    }

    /// Token ids `[batch, len]` and pooling positions -> projected embeddings.
    pub fn forward(&self, ids: Tensor<2, Int>, pool: &[usize]) -> Tensor<2> {
        self.text_projection
            .forward(self.text_model.forward_pooled(ids, pool))
    }
}

/// The position HF pools the text tower at: with the legacy `eos_token_id == 2`, the first
/// position of the largest id; otherwise the first position of `eos_token_id` (0 if absent,
/// as `argmax` over all-false gives in PyTorch).
pub fn pooling_position(ids: &[u32], eos_token_id: i64) -> usize {
    if eos_token_id == 2 {
        let mut best = 0;
        for (i, &t) in ids.iter().enumerate() {
            if t > ids[best] {
                best = i;
            }
        }
        best
    } else {
        ids.iter()
            .position(|&t| i64::from(t) == eos_token_id)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::pooling_position;

    #[test]
    fn pooling_follows_hf() {
        // Legacy eos 2: first position of the largest id.
        assert_eq!(pooling_position(&[49406, 320, 49407, 49407], 2), 2);
        // Real eos id: first position of it.
        assert_eq!(pooling_position(&[49406, 320, 49407, 49407], 49407), 2);
        // A new token above eos: legacy pooling follows the largest id, new pooling the eos.
        assert_eq!(pooling_position(&[49406, 49500, 7, 49407], 2), 1);
        assert_eq!(pooling_position(&[49406, 49500, 7, 49407], 49407), 3);
        // No eos: position 0, as argmax over all-false gives.
        assert_eq!(pooling_position(&[49406, 320], 49407), 0);
    }
}
