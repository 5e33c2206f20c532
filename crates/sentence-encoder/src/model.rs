//! The BERT encoder, with fields named after the Hugging Face checkpoint keys so that loading
//! needs only a short rename table (see [`crate::weights`]).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu_approximate, relu, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::config::{Activation, BertConfig};

/// Token, position and segment embeddings followed by a LayerNorm.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `embeddings.word_embeddings`.
    pub word_embeddings: Embedding,
    /// `embeddings.position_embeddings`.
    pub position_embeddings: Embedding,
    /// `embeddings.token_type_embeddings`.
    pub token_type_embeddings: Embedding,
    /// `embeddings.LayerNorm`.
    pub layer_norm: LayerNorm,
}

/// Multi-head self-attention projections (`attention.self`).
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
}

/// Output projection and residual LayerNorm (`attention.output` and `output`).
#[derive(Module, Debug)]
pub struct BertResidualOutput {
    /// Projection back to the hidden width.
    pub dense: Linear,
    /// LayerNorm over `dense(x) + residual`.
    pub layer_norm: LayerNorm,
}

/// The attention block (`attention`).
#[derive(Module, Debug)]
pub struct BertAttention {
    /// Q/K/V projections (`attention.self` in HF checkpoints).
    pub self_attention: BertSelfAttention,
    /// Output projection + residual LayerNorm.
    pub output: BertResidualOutput,
}

/// The feed-forward expansion (`intermediate`).
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// Expansion to `intermediate_size`.
    pub dense: Linear,
}

/// One post-LN transformer layer (`encoder.layer.N`).
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention block.
    pub attention: BertAttention,
    /// Feed-forward expansion.
    pub intermediate: BertIntermediate,
    /// Feed-forward contraction + residual LayerNorm.
    pub output: BertResidualOutput,
}

/// The stack of layers (`encoder`).
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// `encoder.layer.N`.
    pub layer: Vec<BertLayer>,
}

/// A BERT encoder without the pooler head (sentence-transformers does not use it).
#[derive(Module, Debug)]
pub struct BertModel {
    /// Input embeddings.
    pub embeddings: BertEmbeddings,
    /// Transformer layers.
    pub encoder: BertEncoder,
    num_heads: usize,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    attention_kernel: AttentionKernel,
}

/// How the scaled dot-product attention inside each layer is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionKernel {
    /// Burn's fused attention op (`burn::tensor::module::attention`): one backend call per layer
    /// instead of matmul, scale, bias add, softmax and matmul; padding is a boolean mask.
    /// Same results (parity tests pass) but measured 0-20% slower than
    /// [`AttentionKernel::Unfused`] on flex for 10-25-token batches (docs/PERFORMANCE.md).
    Fused,
    /// The explicit matmul / additive bias / softmax / matmul chain: the default, the faster
    /// of the two on flex for short texts.
    #[default]
    Unfused,
}

/// Padding information for one batch, prepared once and shared by every layer.
#[derive(Clone)]
enum AttentionMask {
    /// No padding: attention runs without mask or bias.
    None,
    /// `[batch, 1, 1, seq]`, `true` for padding keys (fused kernel).
    Bool(Tensor<4, Bool>),
    /// `[batch, 1, 1, seq]`, 0 for real keys and -1e9 for padding (unfused kernel).
    Bias(Tensor<4>),
}

impl BertModel {
    /// Creates a randomly initialised model of the given shape on `device`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let norm = || LayerNormConfig::new(h).with_epsilon(eps).init(device);
        let layers = (0..config.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attention: BertSelfAttention {
                        query: linear(h, h),
                        key: linear(h, h),
                        value: linear(h, h),
                    },
                    output: BertResidualOutput {
                        dense: linear(h, h),
                        layer_norm: norm(),
                    },
                },
                intermediate: BertIntermediate {
                    dense: linear(h, config.intermediate_size),
                },
                output: BertResidualOutput {
                    dense: linear(config.intermediate_size, h),
                    layer_norm: norm(),
                },
            })
            .collect();
        Self {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(config.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(config.max_position_embeddings, h)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(config.type_vocab_size, h).init(device),
                layer_norm: norm(),
            },
            encoder: BertEncoder { layer: layers },
            num_heads: config.num_attention_heads,
            activation: config.activation(),
            attention_kernel: AttentionKernel::default(),
        }
    }

    /// Selects how attention is computed (default [`AttentionKernel::Unfused`]).
    pub fn with_attention_kernel(mut self, kernel: AttentionKernel) -> Self {
        self.attention_kernel = kernel;
        self
    }

    /// The attention computation in use.
    pub fn attention_kernel(&self) -> AttentionKernel {
        self.attention_kernel
    }

    /// Runs the encoder.
    ///
    /// `input_ids` is `[batch, seq]`; `mask` is `[batch, seq]` with 1.0 for real tokens and 0.0
    /// for padding, or `None` when no row is padded (every text fills `seq`), which lets
    /// attention skip masking entirely. Returns the last hidden states `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>, mask: Option<Tensor<2>>) -> Tensor<3> {
        let device = input_ids.device();
        let [batch, seq] = input_ids.dims();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .expand([batch, seq]);
        let segments = Tensor::<2, Int>::zeros([batch, seq], &device);
        let e = &self.embeddings;
        let hidden = e.word_embeddings.forward(input_ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(segments);
        let mut hidden = e.layer_norm.forward(hidden);

        let mask = match (mask, self.attention_kernel) {
            (None, _) => AttentionMask::None,
            (Some(mask), AttentionKernel::Fused) => {
                AttentionMask::Bool(mask.lower_elem(0.5).reshape([batch, 1, 1, seq]))
            }
            // Additive attention bias: 0 for real keys, a large negative number for padding,
            // as HF does with (1 - mask) * finfo(float32).min.
            (Some(mask), AttentionKernel::Unfused) => AttentionMask::Bias(
                (mask.neg() + 1.0)
                    .mul_scalar(-1.0e9_f32)
                    .reshape([batch, 1, 1, seq]),
            ),
        };
        for layer in &self.encoder.layer {
            hidden = self.layer_forward(layer, hidden, &mask);
        }
        hidden
    }

    fn layer_forward(&self, layer: &BertLayer, x: Tensor<3>, mask: &AttentionMask) -> Tensor<3> {
        let [batch, seq, width] = x.dims();
        let heads = self.num_heads;
        let head_dim = width / heads;
        // Dense layers run on [batch * seq, width]: one large GEMM instead of `batch` small ones.
        let x = x.reshape([batch * seq, width]);
        let split = |t: Tensor<2>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
        let attn = &layer.attention.self_attention;
        let q = split(attn.query.forward(x.clone()));
        let k = split(attn.key.forward(x.clone()));
        let v = split(attn.value.forward(x.clone()));
        let context = match (self.attention_kernel, mask) {
            (AttentionKernel::Fused, AttentionMask::Bool(m)) => attention(
                q,
                k,
                v,
                Some(m.clone()),
                None,
                AttentionModuleOptions::default(),
            ),
            (AttentionKernel::Fused, _) => {
                attention(q, k, v, None, None, AttentionModuleOptions::default())
            }
            (AttentionKernel::Unfused, mask) => {
                let scores = q
                    .matmul(k.swap_dims(2, 3))
                    .mul_scalar(1.0 / (head_dim as f64).sqrt());
                let scores = match mask {
                    AttentionMask::Bias(bias) => scores + bias.clone(),
                    _ => scores,
                };
                softmax(scores, 3).matmul(v)
            }
        };
        let context = context.swap_dims(1, 2).reshape([batch * seq, width]);
        let out = &layer.attention.output;
        let x = out.layer_norm.forward(out.dense.forward(context) + x);
        let inner = layer.intermediate.dense.forward(x.clone());
        let inner = match self.activation {
            Activation::Gelu => crate::host_gelu::gelu(inner),
            Activation::GeluTanh => gelu_approximate(inner),
            Activation::Relu => relu(inner),
        };
        let out = &layer.output;
        out.layer_norm
            .forward(out.dense.forward(inner) + x)
            .reshape([batch, seq, width])
    }
}
