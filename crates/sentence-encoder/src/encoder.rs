//! [`SentenceEncoder`]: a loaded checkpoint that turns texts into sentence embeddings.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{BertConfig, Pipeline, SentenceBertConfig};
use crate::error::{Error, Result};
use crate::host::HostBert;
use crate::model::{AttentionKernel, BertModel};
use crate::pooling::{l2_normalize, pool};
use crate::tokenize::{SentenceTokenizer, TokenizedText};
use crate::weights::load_bert_weights;
pub use host_kernels::Precision;

/// Default number of texts run through the model at once (32 measured fastest on flex for
/// 10-25-token prompts, ahead of 64, 128 and 256: see docs/PERFORMANCE.md).
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// A sentence-transformers BERT checkpoint loaded on a Burn device.
///
/// Texts are tokenised with the checkpoint's tokenizer, truncated at `max_seq_length`, sorted by
/// length into batches padded to their own longest text, encoded, pooled as the checkpoint's
/// `modules.json` declares (mean pooling, then `Normalize`, for all-MiniLM-L6-v2) and returned in
/// input order.
#[derive(Debug)]
pub struct SentenceEncoder {
    model: BertModel,
    /// The same weights as host buffers, run by [`host_kernels`] instead of `model` on CPU
    /// devices (see [`SentenceEncoder::with_host_kernels`]).
    host: Option<HostBert>,
    tokenizer: SentenceTokenizer,
    pipeline: Pipeline,
    config: BertConfig,
    device: Device,
    batch_size: usize,
    threads: usize,
    dir: PathBuf,
}

/// A batch's position in the sorted batch list and its embeddings, row-major.
type EncodedBatch = (usize, Vec<f32>);

/// Default number of batches encoded at once on CPU devices: the machine's cores (at most 8).
///
/// Each stream runs its batches' kernels on its own thread. With burn's ops (elementwise work
/// serial per op) two streams on 2 cores measured +22%; with the host kernels two single-threaded
/// streams still beat one stream using both threads (~2 x 106 against 177 GFLOP/s per MiniLM
/// layer, docs/PERFORMANCE.md).
fn default_threads(device: &Device) -> usize {
    if crate::host_gelu::is_host_cpu(device) {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    } else {
        1
    }
}

impl SentenceEncoder {
    /// Loads a sentence-transformers checkpoint in Hugging Face layout from `dir`:
    /// `config.json`, `model.safetensors`, `tokenizer.json`, `modules.json`, the pooling
    /// module's `config.json` and (optionally) `sentence_bert_config.json`.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                path: dir.to_owned(),
                what: "model directory",
            });
        }
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let pipeline = Pipeline::from_dir(dir)?;
        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length = if st_path.is_file() {
            let st: SentenceBertConfig =
                crate::config::read_json(&st_path, "sentence-transformers configuration")?;
            st.max_seq_length
        } else {
            config.max_position_embeddings
        }
        .min(config.max_position_embeddings);
        let tokenizer = SentenceTokenizer::from_file(&dir.join("tokenizer.json"), max_seq_length)?;
        let mut model = BertModel::new(&config, device);
        load_bert_weights(&mut model, &dir.join("model.safetensors"))?;
        let host = crate::host_gelu::is_host_cpu(device)
            .then(|| HostBert::from_model(&model, &config))
            .transpose()?;
        Ok(Self {
            model,
            host,
            tokenizer,
            pipeline,
            config,
            device: device.clone(),
            batch_size: DEFAULT_BATCH_SIZE,
            threads: default_threads(device),
            dir: dir.to_owned(),
        })
    }

    /// Whether texts run through the host kernels ([`host_kernels`]: ragged batches, fused
    /// multi-threaded LayerNorm, attention and GELU) instead of burn's ops. On by default on
    /// CPU devices (flex, ndarray), where it is the faster path (docs/PERFORMANCE.md); GPU
    /// devices always use burn. The embeddings agree to cosine >= 0.9999 either way.
    ///
    /// # Errors
    /// [`Error::Backend`] when enabling it on a device that is not a CPU.
    pub fn with_host_kernels(mut self, enabled: bool) -> Result<Self> {
        if !enabled {
            self.host = None;
        } else if self.host.is_none() {
            host_kernels::from_burn::require_host_cpu(&self.device).map_err(Error::Backend)?;
            self.host = Some(HostBert::from_model(&self.model, &self.config)?);
        }
        Ok(self)
    }

    /// Whether texts run through the host kernels (see [`Self::with_host_kernels`]).
    pub fn uses_host_kernels(&self) -> bool {
        self.host.is_some()
    }

    /// Runs the dense layers at `precision` on AMX tiles ([`Precision::Bf16x3`]: cosine >= 0.9999
    /// to the reference on the fixtures, as f32; [`Precision::Bf16`]: >= 0.9998, faster). The
    /// host kernels must be in use; [`Self::with_host_kernels`] `(false)` and back returns to
    /// f32.
    ///
    /// # Errors
    /// [`Error::Backend`] when the host kernels are off (a GPU device) for a precision other
    /// than f32, or this CPU cannot compute at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        host_kernels::set_host_precision(self.host.as_mut(), precision, HostBert::set_precision)
            .map_err(Error::Backend)?;
        Ok(self)
    }

    /// The dense layers' precision (f32 on burn's ops).
    pub fn precision(&self) -> Precision {
        self.host.as_ref().map_or(Precision::F32, |h| h.precision())
    }

    /// Sets how many texts are run through the model at once (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets how many batches are encoded at once, each on its own thread (at least 1). The
    /// default is the number of cores (at most 8) on CPU devices and 1 on GPUs. Results do not
    /// depend on it.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The number of batches encoded at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Selects how burn's ops compute attention (default [`AttentionKernel::Unfused`], the
    /// faster on flex for short texts; the fused op is kept for other backends and comparison).
    /// The host kernels ([`Self::with_host_kernels`]) have their own attention.
    pub fn with_attention_kernel(mut self, kernel: AttentionKernel) -> Self {
        self.model = self.model.with_attention_kernel(kernel);
        self
    }

    /// The number of texts run through the model at once.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Width of the sentence embeddings (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// The model's architecture.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The pooling/normalisation pipeline read from `modules.json`.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The tokenizer, configured with the model's truncation length.
    pub fn tokenizer(&self) -> &SentenceTokenizer {
        &self.tokenizer
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The checkpoint directory this encoder was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Encodes `texts` into a `[texts.len(), dim]` tensor, rows in input order.
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor<2>> {
        if self.parallel(texts.len()) {
            let flat = self.encode_flat(texts)?;
            return Ok(Tensor::from_data(
                TensorData::new(flat, [texts.len(), self.dim()]),
                &self.device,
            ));
        }
        self.encode_serial(texts)
    }

    /// Whether `count` texts are encoded on several threads.
    fn parallel(&self, count: usize) -> bool {
        self.threads > 1 && count > self.batch_size
    }

    /// Tokenises `texts` and groups them into batches of similar length (longest first) to
    /// minimise padding; each batch lists input positions.
    fn batches(&self, texts: &[&str]) -> Result<(Vec<TokenizedText>, Vec<Vec<usize>>)> {
        let tokens = self.tokenizer.encode_all(texts)?;
        let mut order: Vec<usize> = (0..tokens.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].ids.len()));
        let batches = order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        Ok((tokens, batches))
    }

    /// One stream of batches on the device, results concatenated and put back in input order.
    fn encode_serial(&self, texts: &[&str]) -> Result<Tensor<2>> {
        if texts.is_empty() {
            return Ok(Tensor::zeros([0, self.dim()], &self.device));
        }
        let (tokens, batches) = self.batches(texts)?;
        let pieces = batches
            .iter()
            .map(|batch| {
                let rows: Vec<&TokenizedText> = batch.iter().map(|&i| &tokens[i]).collect();
                match &self.host {
                    Some(host) => {
                        let flat = host.encode(
                            &rows,
                            self.pipeline.pooling,
                            self.pipeline.normalize,
                            host_kernels::Threads::Pool,
                        )?;
                        Ok(Tensor::from_data(
                            TensorData::new(flat, [rows.len(), self.dim()]),
                            &self.device,
                        ))
                    }
                    None => Ok(self.encode_tokenized(&rows)),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let sorted = Tensor::cat(pieces, 0);
        // Row r of `sorted` holds input order[r]; invert the permutation to restore input order.
        let mut inverse = vec![0i64; texts.len()];
        for (row, &input) in batches.iter().flatten().enumerate() {
            inverse[input] = row as i64;
        }
        let inverse =
            Tensor::<1, Int>::from_data(TensorData::new(inverse, [texts.len()]), &self.device);
        Ok(sorted.select(0, inverse))
    }

    /// `threads` streams of batches, each thread taking the next batch (longest first) as it
    /// finishes one; rows are written straight to their input position.
    fn encode_parallel(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let dim = self.dim();
        let (tokens, batches) = self.batches(texts)?;
        let next = AtomicUsize::new(0);
        let work = || -> Result<Vec<EncodedBatch>> {
            let mut done = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(b) else {
                    return Ok(done);
                };
                let rows: Vec<&TokenizedText> = batch.iter().map(|&i| &tokens[i]).collect();
                let values = match &self.host {
                    // Each stream runs its kernels on its own thread.
                    Some(host) => host.encode(
                        &rows,
                        self.pipeline.pooling,
                        self.pipeline.normalize,
                        host_kernels::Threads::One,
                    )?,
                    None => self
                        .encode_tokenized(&rows)
                        .into_data()
                        .try_into_vec::<f32>()
                        .map_err(|e| Error::Backend(format!("{e:?}")))?,
                };
                done.push((b, values));
            }
        };
        let results: Vec<Result<Vec<EncodedBatch>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..self.threads.min(batches.len()))
                .map(|_| scope.spawn(work))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(Error::Backend("an encoder thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut out = vec![0f32; texts.len() * dim];
        for result in results {
            for (b, values) in result? {
                for (row, &input) in batches[b].iter().enumerate() {
                    out[input * dim..(input + 1) * dim]
                        .copy_from_slice(&values[row * dim..(row + 1) * dim]);
                }
            }
        }
        Ok(out)
    }

    /// Encodes `texts` and copies the embeddings to host memory, one `Vec` per text.
    pub fn encode_vecs(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let dim = self.dim();
        let flat = self.encode_flat(texts)?;
        Ok(flat.chunks(dim.max(1)).map(<[f32]>::to_vec).collect())
    }

    /// Encodes `texts` into one row-major `texts.len() × dim` buffer.
    pub fn encode_flat(&self, texts: &[&str]) -> Result<Vec<f32>> {
        if self.parallel(texts.len()) {
            return self.encode_parallel(texts);
        }
        let tensor = self.encode_serial(texts)?;
        tensor
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Backend(format!("{e:?}")))
    }

    /// Runs one padded batch: `[batch.len(), dim]` pooled (and, if declared, normalised).
    fn encode_tokenized(&self, batch: &[&TokenizedText]) -> Tensor<2> {
        let rows = batch.len();
        let seq = batch.iter().map(|t| t.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; rows * seq];
        let mut mask = vec![0f32; rows * seq];
        for (r, text) in batch.iter().enumerate() {
            for (c, &id) in text.ids.iter().enumerate() {
                ids[r * seq + c] = i64::from(id);
                mask[r * seq + c] = 1.0;
            }
        }
        let padded = batch.iter().any(|t| t.ids.len() < seq);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, seq]), &self.device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, seq]), &self.device);
        // Batches whose texts all have the same length (common after sorting by length) need
        // no attention mask at all.
        let hidden = self.model.forward(ids, padded.then(|| mask.clone()));
        let pooled = pool(hidden, mask, self.pipeline.pooling);
        if self.pipeline.normalize {
            l2_normalize(pooled)
        } else {
            pooled
        }
    }
}
