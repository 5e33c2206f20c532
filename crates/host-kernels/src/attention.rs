//! Multi-head scaled dot-product attention over ragged batches.
//!
//! Sequences are packed back to back (`[tokens, ·]`, no padding), so a batch of texts of mixed
//! lengths costs the sum of their lengths in the dense layers and the sum of their squares here.
//! Q, K and V are read in place from one fused projection `[tokens, 3 · width]` (Q, then K, then
//! V, each split into heads of `width / heads` columns), and no transpose is materialised.

use rayon::prelude::*;

use crate::Threads;
use crate::simd::{self, dispatch, exp};

/// Where one sequence sits in a packed buffer: rows `start .. start + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceSpan {
    /// First row.
    pub start: usize,
    /// Number of rows (tokens).
    pub len: usize,
}

impl SequenceSpan {
    /// Spans for sequences of the given lengths, packed in order.
    pub fn packed(lengths: impl IntoIterator<Item = usize>) -> Vec<SequenceSpan> {
        let mut start = 0;
        lengths
            .into_iter()
            .map(|len| {
                let span = SequenceSpan { start, len };
                start += len;
                span
            })
            .collect()
    }
}

/// The shape of an attention block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attention {
    /// Model width (Q, K and V are each this wide).
    pub width: usize,
    /// Number of heads; `width` must be a multiple of it.
    pub heads: usize,
    /// Whether a position may only attend to itself and earlier positions (CLIP's text tower).
    pub causal: bool,
}

/// A raw pointer that may cross threads: every task writes a disjoint block of rows × columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (sequence, head) blocks of the output; see `attention`.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn ptr(&self) -> *mut f32 {
        self.0
    }
}

dispatch! {
    /// Row-wise softmax of a `[len, len]` score block, over the first `i + 1` keys of row `i`
    /// when `causal` (the rest set to 0), else over all `len`.
    fn softmax_rows(scores: &mut [f32], len: usize, causal: bool) {
        for (i, row) in scores.chunks_exact_mut(len).enumerate() {
            let keys = if causal { i + 1 } else { len };
            let (live, masked) = row.split_at_mut(keys);
            // Three passes, each free of a serial dependency so that it vectorises: the max,
            // the exponentials, their sum; then the scaling.
            let max = simd::max(live);
            for x in live.iter_mut() {
                *x = exp(*x - max);
            }
            let inv = 1.0 / simd::sum(live);
            for x in live.iter_mut() {
                *x *= inv;
            }
            masked.fill(0.0);
        }
    }
}

/// `softmax(Q Kᵀ / √d) V` per sequence and head. `qkv` is `[tokens, 3 · width]`; returns the
/// context `[tokens, width]`, heads side by side. Rows outside every span stay zero.
///
/// # Panics
/// If `qkv` is not `3 · width` wide, a span runs past it, or spans overlap.
pub fn attention(
    qkv: &[f32],
    spans: &[SequenceSpan],
    shape: &Attention,
    threads: Threads,
) -> Vec<f32> {
    let mut context = Vec::new();
    attention_into(qkv, spans, shape, &mut context, threads);
    context
}

thread_local! {
    /// Per-thread attention scores buffer, reused by every [`attention_into`] call on the
    /// thread (grown to the longest sequence seen, `len²` floats).
    static SCORES_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`attention`] written into `context`, resized to `[tokens, width]` (reusing one buffer
/// across layers saves a fresh allocation's page faults).
///
/// # Panics
/// As [`attention`].
pub fn attention_into(
    qkv: &[f32],
    spans: &[SequenceSpan],
    shape: &Attention,
    context: &mut Vec<f32>,
    threads: Threads,
) {
    let Attention {
        width,
        heads,
        causal,
    } = *shape;
    assert!(
        heads > 0 && width % heads == 0,
        "width {width} is not a multiple of {heads} heads"
    );
    let stride = 3 * width;
    assert!(
        qkv.len().is_multiple_of(stride),
        "Q/K/V rows are not {stride} wide"
    );
    let tokens = qkv.len() / stride;
    let mut sorted: Vec<SequenceSpan> = spans.to_vec();
    sorted.sort_by_key(|s| s.start);
    let mut end = 0;
    for s in &sorted {
        assert!(s.start >= end, "sequence spans overlap");
        end = s.start + s.len;
    }
    assert!(end <= tokens, "a sequence runs past the {tokens} rows");

    let head_dim = width / heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let covered: usize = spans.iter().map(|s| s.len).sum();
    context.resize(tokens * width, 0.0);
    if covered < tokens {
        // Rows outside every span are not written below.
        context.fill(0.0);
    }
    let out = SharedOut(context.as_mut_ptr());
    let task = |(s, h): (usize, usize)| {
        let SequenceSpan { start, len } = spans[s];
        if len == 0 {
            return;
        }
        let base = start * stride + h * head_dim;
        // The [len, len] scores live in this thread's scratch, kept across calls: a fresh
        // allocation per (sequence, head) costs its page faults every time (a 257-token ViT-L
        // sequence's scores are 264 KB, mapped and unmapped by the allocator on each task).
        SCORES_SCRATCH.with_borrow_mut(|scores| {
            scores.clear();
            scores.resize(len * len, 0.0);
            // SAFETY: Q, K and V blocks lie inside `qkv` (spans checked above); `scores` is
            // [len, len]; the output block (rows start..start+len, columns h*head_dim..+head_dim)
            // lies inside `context` and no other task writes it (spans do not overlap; one task
            // per head).
            unsafe {
                let q = qkv.as_ptr().add(base);
                let k = q.add(width);
                let v = q.add(2 * width);
                gemm::gemm(
                    len,
                    len,
                    head_dim,
                    scores.as_mut_ptr(),
                    1,
                    len as isize,
                    false,
                    q,
                    1,
                    stride as isize,
                    k,
                    stride as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                softmax_rows(scores, len, causal);
                gemm::gemm(
                    len,
                    head_dim,
                    len,
                    out.ptr().add(start * width + h * head_dim),
                    1,
                    width as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    len as isize,
                    v,
                    1,
                    stride as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
    };
    let tasks = (0..spans.len()).flat_map(|s| (0..heads).map(move |h| (s, h)));
    match threads {
        Threads::Pool => tasks.collect::<Vec<_>>().into_par_iter().for_each(task),
        Threads::One => tasks.for_each(task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward f64 attention for one padded-free sequence.
    fn reference(qkv: &[f32], span: SequenceSpan, shape: &Attention) -> Vec<f64> {
        let (w, hd) = (shape.width, shape.width / shape.heads);
        let at = |row: usize, col: usize| f64::from(qkv[(span.start + row) * 3 * w + col]);
        let mut out = vec![0f64; span.len * w];
        for h in 0..shape.heads {
            for i in 0..span.len {
                let keys = if shape.causal { i + 1 } else { span.len };
                let scores: Vec<f64> = (0..keys)
                    .map(|j| {
                        (0..hd)
                            .map(|c| at(i, h * hd + c) * at(j, w + h * hd + c))
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..hd {
                    out[i * w + h * hd + c] = (0..keys)
                        .map(|j| e[j] / sum * at(j, 2 * w + h * hd + c))
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn ragged_batches_match_per_sequence_attention() {
        let lengths = [5usize, 1, 17, 9, 131];
        let spans = SequenceSpan::packed(lengths);
        let tokens: usize = lengths.iter().sum();
        for causal in [false, true] {
            let shape = Attention {
                width: 24,
                heads: 3,
                causal,
            };
            let qkv: Vec<f32> = (0..tokens * 72)
                .map(|i| ((i * 2654435761usize) % 4001) as f32 / 1000.0 - 2.0)
                .collect();
            for threads in [Threads::Pool, Threads::One] {
                let got = attention(&qkv, &spans, &shape, threads);
                for &span in &spans {
                    let want = reference(&qkv, span, &shape);
                    let rows = &got[span.start * 24..(span.start + span.len) * 24];
                    for (g, w) in rows.iter().zip(&want) {
                        assert!(
                            (f64::from(*g) - w).abs() < 1e-5,
                            "{g} vs {w} (causal {causal})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_spans_are_refused() {
        let shape = Attention {
            width: 4,
            heads: 1,
            causal: false,
        };
        let spans = [
            SequenceSpan { start: 0, len: 3 },
            SequenceSpan { start: 2, len: 2 },
        ];
        attention(&[0.0; 5 * 12], &spans, &shape, Threads::One);
    }
}
