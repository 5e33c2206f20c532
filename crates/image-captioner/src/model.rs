//! The captioner as Burn modules. Field paths are the weight names in `model.safetensors`
//! (PyTorch layout: `dec.0.cross_attn.q.weight`, LayerNorm `weight`/`bias`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, Int, Tensor};

use crate::config::CaptionerConfig;

/// Multi-head attention of a query sequence over a key/value sequence: `q`, `k`, `v`, `o`.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
    /// Number of heads.
    pub heads: usize,
}

impl Attention {
    fn new(d: usize, heads: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(d, d).init(device);
        Self {
            q: linear(),
            k: linear(),
            v: linear(),
            o: linear(),
            heads,
        }
    }

    /// `x [b, t, d]` attends to `memory [b, s, d]`; `causal` masks later positions (self-attention).
    pub fn forward(&self, x: Tensor<3>, memory: Tensor<3>, causal: bool) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let s = memory.dims()[1];
        let hd = d / self.heads;
        let q = self
            .q
            .forward(x)
            .reshape([b, t, self.heads, hd])
            .swap_dims(1, 2);
        let k = self
            .k
            .forward(memory.clone())
            .reshape([b, s, self.heads, hd])
            .swap_dims(1, 2);
        let v = self
            .v
            .forward(memory)
            .reshape([b, s, self.heads, hd])
            .swap_dims(1, 2);
        let options = AttentionModuleOptions {
            scale: Some(1.0 / (hd as f64).sqrt()),
            softcap: None,
            is_causal: causal,
        };
        let out = attention(q, k, v, None, None, options);
        self.o.forward(out.swap_dims(1, 2).reshape([b, t, d]))
    }
}

/// Feed-forward block: `fc1`, exact GELU, `fc2`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Width -> hidden.
    pub fc1: Linear,
    /// Hidden -> width.
    pub fc2: Linear,
}

impl Mlp {
    fn new(d: usize, hidden: usize, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(d, hidden).init(device),
            fc2: LinearConfig::new(hidden, d).init(device),
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// A pre-LayerNorm transformer layer over the image tokens.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Norm before attention.
    pub ln1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the feed-forward block.
    pub ln2: LayerNorm,
    /// Feed-forward block.
    pub mlp: Mlp,
}

impl EncoderLayer {
    /// Applies the layer.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.ln1.forward(x.clone());
        let x = x + self.attn.forward(h.clone(), h, false);
        x.clone() + self.mlp.forward(self.ln2.forward(x))
    }
}

/// A pre-LayerNorm decoder layer: causal self-attention, cross-attention to the image tokens,
/// feed-forward.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Norm before self-attention.
    pub ln1: LayerNorm,
    /// Causal self-attention.
    pub self_attn: Attention,
    /// Norm before cross-attention.
    pub ln2: LayerNorm,
    /// Cross-attention to the image tokens.
    pub cross_attn: Attention,
    /// Norm before the feed-forward block.
    pub ln3: LayerNorm,
    /// Feed-forward block.
    pub mlp: Mlp,
}

impl DecoderLayer {
    /// Applies the layer to `x [b, t, d]` given the image tokens `memory [b, s, d]`.
    pub fn forward(&self, x: Tensor<3>, memory: Tensor<3>) -> Tensor<3> {
        let h = self.ln1.forward(x.clone());
        let x = x + self.self_attn.forward(h.clone(), h, true);
        let x = x.clone() + self.cross_attn.forward(self.ln2.forward(x), memory, false);
        x.clone() + self.mlp.forward(self.ln3.forward(x))
    }
}

/// The whole captioner: convolutions, image-token transformer, token decoder.
#[derive(Module, Debug)]
pub struct CaptionerModel {
    /// The convolutions (each followed by GELU).
    pub conv: Vec<Conv2d>,
    /// Learned position embedding of the image tokens `[tokens, width]`.
    pub img_pos: Param<Tensor<2>>,
    /// Transformer layers over the image tokens.
    pub enc: Vec<EncoderLayer>,
    /// Final norm of the image tokens.
    pub enc_ln: LayerNorm,
    /// Token embedding `[vocab, width]`.
    pub tok: Embedding,
    /// Learned position embedding of the text tokens `[max_tokens, width]`.
    pub pos: Param<Tensor<2>>,
    /// Decoder layers.
    pub dec: Vec<DecoderLayer>,
    /// Final norm before the output projection.
    pub ln: LayerNorm,
    /// Output projection to the vocabulary.
    pub head: Linear,
}

impl CaptionerModel {
    /// A randomly initialised model of shape `c` (weights are then loaded over it).
    pub fn new(c: &CaptionerConfig, device: &Device) -> Self {
        let norm = || {
            LayerNormConfig::new(c.width)
                .with_epsilon(c.layer_norm_eps)
                .init(device)
        };
        let mut channels = 3;
        let conv = c
            .convs
            .iter()
            .map(|s| {
                let layer = Conv2dConfig::new([channels, s.channels], [s.kernel, s.kernel])
                    .with_stride([s.stride, s.stride])
                    .with_padding(PaddingConfig2d::Explicit(
                        s.padding, s.padding, s.padding, s.padding,
                    ))
                    .init(device);
                channels = s.channels;
                layer
            })
            .collect();
        let random = |rows: usize| {
            Param::from_tensor(Tensor::random(
                [rows, c.width],
                Distribution::Normal(0.0, 0.02),
                device,
            ))
        };
        Self {
            conv,
            img_pos: random(c.image_tokens()),
            enc: (0..c.encoder_layers)
                .map(|_| EncoderLayer {
                    ln1: norm(),
                    attn: Attention::new(c.width, c.heads, device),
                    ln2: norm(),
                    mlp: Mlp::new(c.width, c.mlp, device),
                })
                .collect(),
            enc_ln: norm(),
            tok: EmbeddingConfig::new(c.vocab.len(), c.width).init(device),
            pos: random(c.max_tokens),
            dec: (0..c.decoder_layers)
                .map(|_| DecoderLayer {
                    ln1: norm(),
                    self_attn: Attention::new(c.width, c.heads, device),
                    ln2: norm(),
                    cross_attn: Attention::new(c.width, c.heads, device),
                    ln3: norm(),
                    mlp: Mlp::new(c.width, c.mlp, device),
                })
                .collect(),
            ln: norm(),
            head: LinearConfig::new(c.width, c.vocab.len()).init(device),
        }
    }

    /// Normalised pixels `[b, 3, size, size]` -> image tokens `[b, grid², width]`.
    pub fn encode(&self, pixels: Tensor<4>) -> Tensor<3> {
        let mut x = pixels;
        for conv in &self.conv {
            x = gelu(conv.forward(x));
        }
        let [b, d, h, w] = x.dims();
        let mut x =
            x.reshape([b, d, h * w]).swap_dims(1, 2) + self.img_pos.val().unsqueeze_dim::<3>(0);
        for layer in &self.enc {
            x = layer.forward(x);
        }
        self.enc_ln.forward(x)
    }

    /// Token ids `[b, t]` (start token first, `t <= max_tokens`) and image tokens -> logits
    /// `[b, t, vocab]` for the token after each position.
    pub fn decode(&self, memory: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<3> {
        let t = tokens.dims()[1];
        let mut x = self.tok.forward(tokens) + self.pos.val().narrow(0, 0, t).unsqueeze_dim::<3>(0);
        for layer in &self.dec {
            x = layer.forward(x, memory.clone());
        }
        self.head.forward(self.ln.forward(x))
    }
}
