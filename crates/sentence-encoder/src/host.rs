//! The BERT encoder on host buffers for CPU devices ([`host_kernels`]): ragged batches (no
//! padding computed), Q/K/V as one GEMM, fused multi-threaded GELU, LayerNorm and attention.
//! Built from a loaded [`BertModel`]'s weights; GPU devices keep the burn model.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use host_kernels::{
    Attention, LayerNormWeights, Precision, PrecisionUnavailable, SequenceSpan, Threads, from_burn,
};

use crate::config::{Activation, BertConfig, PoolingMode};
use crate::error::{Error, Result};
use crate::model::BertModel;
use crate::tokenize::TokenizedText;

/// One post-LN layer's weights.
#[derive(Debug, Clone)]
struct HostLayer {
    qkv: host_kernels::Linear,
    attention_out: host_kernels::Linear,
    attention_norm: LayerNormWeights,
    up: host_kernels::Linear,
    down: host_kernels::Linear,
    output_norm: LayerNormWeights,
}

/// A BERT encoder's weights as host buffers.
#[derive(Debug, Clone)]
pub(crate) struct HostBert {
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    /// Segment 0's embedding (sentence-transformers encodes single sentences).
    token_type: Vec<f32>,
    embedding_norm: LayerNormWeights,
    layers: Vec<HostLayer>,
    attention: Attention,
    activation: Activation,
    max_positions: usize,
}

/// A burn parameter, layer or norm copied out, or an error naming what could not be read.
fn copied<T>(what: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::Backend(format!("{what}: weights not readable as f32")))
}

fn param<const D: usize>(p: &Param<Tensor<D>>) -> Result<Vec<f32>> {
    copied("embedding", from_burn::values(p))
}

fn linear(l: &Linear) -> Result<host_kernels::Linear> {
    copied("dense layer", from_burn::linear(l))
}

fn norm(n: &LayerNorm, epsilon: f64) -> Result<LayerNormWeights> {
    copied("LayerNorm", from_burn::layer_norm(n, epsilon))
}

impl HostBert {
    /// Copies `model`'s weights to host buffers.
    pub(crate) fn from_model(model: &BertModel, config: &BertConfig) -> Result<Self> {
        let eps = config.layer_norm_eps;
        let e = &model.embeddings;
        let h = config.hidden_size;
        let layers = model
            .encoder
            .layer
            .iter()
            .map(|l| {
                let a = &l.attention.self_attention;
                Ok(HostLayer {
                    qkv: host_kernels::Linear::concat(&[
                        linear(&a.query)?,
                        linear(&a.key)?,
                        linear(&a.value)?,
                    ]),
                    attention_out: linear(&l.attention.output.dense)?,
                    attention_norm: norm(&l.attention.output.layer_norm, eps)?,
                    up: linear(&l.intermediate.dense)?,
                    down: linear(&l.output.dense)?,
                    output_norm: norm(&l.output.layer_norm, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let token_types = param(&e.token_type_embeddings.weight)?;
        Ok(Self {
            word_embeddings: param(&e.word_embeddings.weight)?,
            position_embeddings: param(&e.position_embeddings.weight)?,
            token_type: token_types[..h].to_vec(),
            embedding_norm: norm(&e.layer_norm, eps)?,
            layers,
            attention: Attention {
                width: h,
                heads: config.num_attention_heads,
                causal: false,
            },
            activation: config.activation(),
            max_positions: config.max_position_embeddings,
        })
    }

    /// Every dense layer at `precision`.
    pub(crate) fn set_precision(
        &mut self,
        precision: Precision,
    ) -> Result<(), PrecisionUnavailable> {
        for l in &mut self.layers {
            for dense in [&mut l.qkv, &mut l.attention_out, &mut l.up, &mut l.down] {
                dense.set_precision(precision)?;
            }
        }
        Ok(())
    }

    /// The dense layers' precision.
    pub(crate) fn precision(&self) -> Precision {
        self.layers
            .first()
            .map_or(Precision::F32, |l| l.qkv.precision())
    }

    fn width(&self) -> usize {
        self.attention.width
    }

    /// Last hidden states of the texts, packed back to back as `spans` says: `[Σ len, width]`.
    fn forward(
        &self,
        texts: &[&TokenizedText],
        spans: &[SequenceSpan],
        threads: Threads,
    ) -> Result<Vec<f32>> {
        let w = self.width();
        let vocab = self.word_embeddings.len() / w;
        let tokens: usize = texts.iter().map(|t| t.ids.len()).sum();
        let mut x = Vec::with_capacity(tokens * w);
        for text in texts {
            if text.ids.len() > self.max_positions {
                return Err(Error::Backend(format!(
                    "a text of {} tokens exceeds the model's {} positions",
                    text.ids.len(),
                    self.max_positions
                )));
            }
            for (pos, &id) in text.ids.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    return Err(Error::Backend(format!(
                        "token id {id} is outside the vocabulary of {vocab}"
                    )));
                }
                let word = &self.word_embeddings[id * w..(id + 1) * w];
                let position = &self.position_embeddings[pos * w..(pos + 1) * w];
                x.extend(
                    word.iter()
                        .zip(position)
                        .zip(&self.token_type)
                        .map(|((a, b), c)| a + b + c),
                );
            }
        }
        host_kernels::layer_norm(&mut x, &self.embedding_norm, threads);
        // One set of buffers for every layer: fresh allocations would page-fault each time.
        let (mut qkv, mut context, mut inner) = (Vec::new(), Vec::new(), Vec::new());
        for layer in &self.layers {
            layer.qkv.forward_into(&x, &mut qkv, threads);
            host_kernels::attention_into(&qkv, spans, &self.attention, &mut context, threads);
            // Post-LN: x = LN(x + context · Wo + bo), then x = LN(x + down(act(up(x)))).
            layer.attention_out.forward_add(&context, &mut x, threads);
            host_kernels::layer_norm(&mut x, &layer.attention_norm, threads);
            layer.up.forward_into(&x, &mut inner, threads);
            match self.activation {
                Activation::Gelu => host_kernels::gelu_erf_inplace(&mut inner, threads),
                Activation::GeluTanh => host_kernels::gelu_tanh_inplace(&mut inner, threads),
                Activation::Relu => inner.iter_mut().for_each(|v| *v = v.max(0.0)),
            }
            layer.down.forward_add(&inner, &mut x, threads);
            host_kernels::layer_norm(&mut x, &layer.output_norm, threads);
        }
        Ok(x)
    }

    /// Pooled (and, with `normalize`, L2-normalised) embeddings `[texts.len(), width]`.
    pub(crate) fn encode(
        &self,
        texts: &[&TokenizedText],
        pooling: PoolingMode,
        normalize: bool,
        threads: Threads,
    ) -> Result<Vec<f32>> {
        let w = self.width();
        let spans = SequenceSpan::packed(texts.iter().map(|t| t.ids.len()));
        let hidden = self.forward(texts, &spans, threads)?;
        let mut out = vec![0f32; texts.len() * w];
        for (row, span) in out.chunks_exact_mut(w).zip(spans) {
            let rows = &hidden[span.start * w..(span.start + span.len) * w];
            match pooling {
                PoolingMode::Cls => {
                    if span.len > 0 {
                        row.copy_from_slice(&rows[..w]);
                    }
                }
                PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                    for token in rows.chunks_exact(w) {
                        for (o, &v) in row.iter_mut().zip(token) {
                            *o += v;
                        }
                    }
                    let count = (span.len as f32).max(1e-9);
                    let divisor = if pooling == PoolingMode::Mean {
                        count
                    } else {
                        count.sqrt()
                    };
                    row.iter_mut().for_each(|o| *o /= divisor);
                }
                PoolingMode::Max => {
                    row.fill(f32::NEG_INFINITY);
                    for token in rows.chunks_exact(w) {
                        for (o, &v) in row.iter_mut().zip(token) {
                            *o = o.max(v);
                        }
                    }
                    if span.len == 0 {
                        row.fill(0.0);
                    }
                }
            }
            if normalize {
                let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|v| *v /= n);
            }
        }
        Ok(out)
    }
}
