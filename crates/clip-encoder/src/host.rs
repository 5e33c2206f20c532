//! The CLIP towers on host buffers for CPU devices ([`host_kernels`]): ragged text batches
//! (each text cut after its pooling position), Q/K/V as one GEMM, the patch embedding as one
//! GEMM over unfolded patches, and fused multi-threaded LayerNorm, attention and activations.
//! Built from the loaded burn towers' weights; GPU devices keep the burn towers.

pub use host_kernels::from_burn::is_host_cpu;
use host_kernels::from_burn::{layer_norm as norm, linear, values};
use host_kernels::{
    Attention, LayerNormWeights, Precision, PrecisionUnavailable, SequenceSpan, Threads,
};

use crate::config::{Activation, ClipConfig};
use crate::model::{ClipEncoder, ClipTextTower, ClipVisionTower};

/// One pre-LN block.
#[derive(Debug, Clone)]
struct HostLayer {
    norm1: LayerNormWeights,
    qkv: host_kernels::Linear,
    out: host_kernels::Linear,
    norm2: LayerNormWeights,
    fc1: host_kernels::Linear,
    fc2: host_kernels::Linear,
}

/// The stack of pre-LN blocks shared by both towers.
#[derive(Debug, Clone)]
struct HostEncoder {
    layers: Vec<HostLayer>,
    attention: Attention,
    activation: Activation,
}

impl HostEncoder {
    fn new(
        encoder: &ClipEncoder,
        width: usize,
        heads: usize,
        activation: Activation,
        eps: f64,
        causal: bool,
    ) -> Option<Self> {
        let layers = encoder
            .layers
            .iter()
            .map(|l| {
                let a = &l.self_attn;
                Some(HostLayer {
                    norm1: norm(&l.layer_norm1, eps)?,
                    qkv: host_kernels::Linear::concat(&[
                        linear(&a.q_proj)?,
                        linear(&a.k_proj)?,
                        linear(&a.v_proj)?,
                    ]),
                    out: linear(&a.out_proj)?,
                    norm2: norm(&l.layer_norm2, eps)?,
                    fc1: linear(&l.mlp.fc1)?,
                    fc2: linear(&l.mlp.fc2)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            layers,
            attention: Attention {
                width,
                heads,
                causal,
            },
            activation,
        })
    }

    /// Every dense layer at `precision`.
    fn set_precision(&mut self, precision: Precision) -> Result<(), PrecisionUnavailable> {
        for l in &mut self.layers {
            for dense in [&mut l.qkv, &mut l.out, &mut l.fc1, &mut l.fc2] {
                dense.set_precision(precision)?;
            }
        }
        Ok(())
    }

    /// The dense layers' precision.
    fn precision(&self) -> Precision {
        self.layers
            .first()
            .map_or(Precision::F32, |l| l.qkv.precision())
    }

    /// Runs every block over the packed sequences `x` (`[Σ len, width]`) in place.
    fn forward(&self, x: &mut [f32], spans: &[SequenceSpan], threads: Threads) {
        // One set of buffers for every block: fresh allocations would page-fault each time.
        let mut h = vec![0f32; x.len()];
        let (mut qkv, mut context, mut inner) = (Vec::new(), Vec::new(), Vec::new());
        for layer in &self.layers {
            h.copy_from_slice(x);
            host_kernels::layer_norm(&mut h, &layer.norm1, threads);
            layer.qkv.forward_into(&h, &mut qkv, threads);
            host_kernels::attention_into(&qkv, spans, &self.attention, &mut context, threads);
            layer.out.forward_add(&context, x, threads);
            h.copy_from_slice(x);
            host_kernels::layer_norm(&mut h, &layer.norm2, threads);
            layer.fc1.forward_into(&h, &mut inner, threads);
            match self.activation {
                Activation::QuickGelu => host_kernels::quick_gelu_inplace(&mut inner, threads),
                Activation::Gelu => host_kernels::gelu_erf_inplace(&mut inner, threads),
                Activation::GeluTanh => host_kernels::gelu_tanh_inplace(&mut inner, threads),
            }
            layer.fc2.forward_add(&inner, x, threads);
        }
    }
}

/// The vision tower's weights as host buffers.
#[derive(Debug, Clone)]
pub(crate) struct HostVision {
    /// The patch convolution as a dense layer over unfolded `(channel, y, x)` patches.
    patch: host_kernels::Linear,
    class: Vec<f32>,
    positions: Vec<f32>,
    pre_norm: LayerNormWeights,
    encoder: HostEncoder,
    post_norm: LayerNormWeights,
    projection: host_kernels::Linear,
    channels: usize,
    image_size: usize,
    patch_size: usize,
}

impl HostVision {
    /// Copies the tower's weights, or `None` if they cannot be read as f32.
    pub(crate) fn from_tower(tower: &ClipVisionTower, config: &ClipConfig) -> Option<Self> {
        let v = &config.vision;
        let m = &tower.vision_model;
        let (d, p, c) = (v.hidden_size, v.patch_size, v.num_channels);
        // Conv weight [d, c, p, p] -> dense [c·p·p, d].
        let conv = values(&m.embeddings.patch_embedding.weight)?;
        let k = c * p * p;
        let mut dense = vec![0f32; k * d];
        for o in 0..d {
            for i in 0..k {
                dense[i * d + o] = conv[o * k + i];
            }
        }
        let conv_bias = match &m.embeddings.patch_embedding.bias {
            Some(b) => Some(values(b)?),
            None => None,
        };
        Some(Self {
            patch: host_kernels::Linear::new(dense, conv_bias, k, d),
            class: values(&m.embeddings.class_embedding)?,
            positions: values(&m.embeddings.position_embedding.weight)?,
            pre_norm: norm(&m.pre_layrnorm, v.layer_norm_eps)?,
            encoder: HostEncoder::new(
                &m.encoder,
                d,
                v.num_attention_heads,
                v.hidden_act,
                v.layer_norm_eps,
                false,
            )?,
            post_norm: norm(&m.post_layernorm, v.layer_norm_eps)?,
            projection: linear(&tower.visual_projection)?,
            channels: c,
            image_size: v.image_size,
            patch_size: p,
        })
    }

    /// Every dense layer (patch embedding, blocks, projection) at `precision`.
    pub(crate) fn set_precision(
        &mut self,
        precision: Precision,
    ) -> Result<(), PrecisionUnavailable> {
        self.patch.set_precision(precision)?;
        self.encoder.set_precision(precision)?;
        self.projection.set_precision(precision)
    }

    /// The dense layers' precision.
    pub(crate) fn precision(&self) -> Precision {
        self.encoder.precision()
    }

    /// Normalised pixels `[n, channels, size, size]` (shape checked by the caller) -> projected
    /// embeddings `[n, projection_dim]`.
    pub(crate) fn forward(&self, pixels: &[f32], n: usize, threads: Threads) -> Vec<f32> {
        let (c, s, p) = (self.channels, self.image_size, self.patch_size);
        let grid = s / p;
        let patches = grid * grid;
        let k = c * p * p;
        let d = self.class.len();
        // Unfold each image into rows of (channel, y, x) patch values, the conv weight's order.
        let mut unfolded = vec![0f32; n * patches * k];
        for (img, rows) in unfolded.chunks_exact_mut(patches * k).enumerate() {
            let image = &pixels[img * c * s * s..(img + 1) * c * s * s];
            for (g, row) in rows.chunks_exact_mut(k).enumerate() {
                let (gy, gx) = (g / grid, g % grid);
                for ch in 0..c {
                    for y in 0..p {
                        let src = ch * s * s + (gy * p + y) * s + gx * p;
                        let dst = (ch * p + y) * p;
                        row[dst..dst + p].copy_from_slice(&image[src..src + p]);
                    }
                }
            }
        }
        let embedded = self.patch.forward(&unfolded, threads);
        drop(unfolded);
        let tokens = patches + 1;
        let mut x = vec![0f32; n * tokens * d];
        for (img, seq) in x.chunks_exact_mut(tokens * d).enumerate() {
            seq[..d].copy_from_slice(&self.class);
            seq[d..].copy_from_slice(&embedded[img * patches * d..(img + 1) * patches * d]);
            for (v, &pos) in seq.iter_mut().zip(&self.positions) {
                *v += pos;
            }
        }
        drop(embedded);
        host_kernels::layer_norm(&mut x, &self.pre_norm, threads);
        let spans = SequenceSpan::packed(std::iter::repeat_n(tokens, n));
        self.encoder.forward(&mut x, &spans, threads);
        let mut pooled: Vec<f32> = spans
            .iter()
            .flat_map(|s| x[s.start * d..(s.start + 1) * d].iter().copied())
            .collect();
        host_kernels::layer_norm(&mut pooled, &self.post_norm, threads);
        self.projection.forward(&pooled, threads)
    }
}

/// The text tower's weights as host buffers.
#[derive(Debug, Clone)]
pub(crate) struct HostText {
    tokens: Vec<f32>,
    positions: Vec<f32>,
    encoder: HostEncoder,
    final_norm: LayerNormWeights,
    projection: host_kernels::Linear,
}

impl HostText {
    /// Copies the tower's weights, or `None` if they cannot be read as f32.
    pub(crate) fn from_tower(tower: &ClipTextTower, config: &ClipConfig) -> Option<Self> {
        let t = &config.text;
        let m = &tower.text_model;
        Some(Self {
            tokens: values(&m.embeddings.token_embedding.weight)?,
            positions: values(&m.embeddings.position_embedding.weight)?,
            encoder: HostEncoder::new(
                &m.encoder,
                t.hidden_size,
                t.num_attention_heads,
                t.hidden_act,
                t.layer_norm_eps,
                true,
            )?,
            final_norm: norm(&m.final_layer_norm, t.layer_norm_eps)?,
            projection: linear(&tower.text_projection)?,
        })
    }

    /// Every dense layer (blocks, projection) at `precision`.
    pub(crate) fn set_precision(
        &mut self,
        precision: Precision,
    ) -> Result<(), PrecisionUnavailable> {
        self.encoder.set_precision(precision)?;
        self.projection.set_precision(precision)
    }

    /// The dense layers' precision.
    pub(crate) fn precision(&self) -> Precision {
        self.encoder.precision()
    }

    /// Token ids (validated by the caller: in the vocabulary, within the context) and each
    /// text's pooling position -> projected embeddings `[ids.len(), projection_dim]`. Each
    /// text runs only up to its pooling position: the causal mask makes later tokens irrelevant.
    pub(crate) fn forward(&self, ids: &[&[u32]], pools: &[usize], threads: Threads) -> Vec<f32> {
        let d = self.encoder.attention.width;
        let lengths: Vec<usize> = pools.iter().map(|&p| p + 1).collect();
        let spans = SequenceSpan::packed(lengths.iter().copied());
        let mut x = Vec::with_capacity(lengths.iter().sum::<usize>() * d);
        for (row, &len) in ids.iter().zip(&lengths) {
            for pos in 0..len {
                // Padding id 0 past the end, as the burn path pads (it cannot reach the pool).
                let id = row.get(pos).copied().unwrap_or(0) as usize;
                let token = &self.tokens[id * d..(id + 1) * d];
                let position = &self.positions[pos * d..(pos + 1) * d];
                x.extend(token.iter().zip(position).map(|(a, b)| a + b));
            }
        }
        self.encoder.forward(&mut x, &spans, threads);
        let mut pooled: Vec<f32> = spans
            .iter()
            .flat_map(|s| {
                let last = s.start + s.len - 1;
                x[last * d..(last + 1) * d].iter().copied()
            })
            .collect();
        host_kernels::layer_norm(&mut pooled, &self.final_norm, threads);
        self.projection.forward(&pooled, threads)
    }
}
