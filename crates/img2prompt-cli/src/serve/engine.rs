//! The inference engine behind `serve`: the loaded models, a bounded job queue, and worker
//! threads that gather concurrent image requests into batches (dynamic batching).
//!
//! Requests never run models on the async runtime: a handler submits a [`Work`] and awaits its
//! answer. A worker takes the first job waiting, then keeps gathering image jobs for at most
//! `max_wait` or until `max_batch` are in hand, decodes them in parallel, runs the image tower
//! once for the whole batch, and answers each job. The queue holds at most `queue` jobs: a job
//! that does not fit is refused at once ([`Busy`]), so memory stays bounded under any load.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use img2prompt::image::DynamicImage;
use img2prompt::prompt_fusion::FusionConfig;
use img2prompt::tuned_fusion::FusionSource;
use img2prompt::{Prediction, Predictor, TextEmbedder};
use rayon::prelude::*;
use tokio::sync::oneshot;

/// The models a server answers with.
pub struct Models {
    /// The index's predictor (image tower, index, head, fusion, prompt text).
    pub predictor: Predictor,
    /// The fusion the predictor was opened with (a request may ask for a smaller `k`).
    pub fusion: FusionConfig,
    /// Where that fusion came from (flags, the index's fusion.json, the paper's default).
    pub fusion_source: FusionSource,
    /// The index's sentence model (target space).
    pub sentence: Arc<dyn TextEmbedder>,
    /// The index's CLIP text tower (key space).
    pub clip_text: Arc<dyn TextEmbedder>,
}

/// How the engine batches and bounds its work.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Images run through the image tower at once, at most.
    pub max_batch: usize,
    /// How long a worker waits for more images once it holds one.
    pub max_wait: Duration,
    /// Jobs waiting for a worker, at most.
    pub queue: usize,
    /// Worker threads.
    pub workers: usize,
    /// Decoded-pixel limit per image.
    pub max_pixels: u64,
}

/// Which text tower embeds texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextTower {
    /// The index's sentence model (all-MiniLM-L6-v2: the prediction space).
    Sentence,
    /// The CLIP text tower (the index's key space).
    Clip,
}

/// One request's work.
pub enum Work {
    /// Predict an encoded image's prompt with the `k` nearest prompts.
    Predict {
        /// The encoded image.
        image: Bytes,
        /// A name for messages.
        name: String,
        /// Neighbours fused (at most the server's `k`).
        k: usize,
    },
    /// Embed an encoded image with the CLIP image tower.
    EmbedImage {
        /// The encoded image.
        image: Bytes,
        /// A name for messages.
        name: String,
    },
    /// Embed texts with one text tower.
    EmbedText {
        /// The texts.
        texts: Vec<String>,
        /// The tower.
        tower: TextTower,
    },
}

impl Work {
    fn image(&self) -> Option<(&Bytes, &str)> {
        match self {
            Work::Predict { image, name, .. } | Work::EmbedImage { image, name } => {
                Some((image, name))
            }
            Work::EmbedText { .. } => None,
        }
    }
}

/// A job's answer.
pub enum Output {
    /// A prediction.
    Prediction(Prediction),
    /// One image embedding.
    Embedding(Vec<f32>),
    /// Text embeddings, one row per text.
    Embeddings(Vec<Vec<f32>>),
}

/// Why a job failed.
#[derive(Debug)]
pub enum JobError {
    /// The input could not be used (an image that does not decode): the client's fault.
    BadInput(String),
    /// The models failed (or a bug): the server's fault.
    Internal(String),
}

/// The queue was full: the job was not taken.
#[derive(Debug)]
pub struct Busy;

type Reply = oneshot::Sender<Result<Output, JobError>>;

struct Job {
    work: Work,
    reply: Reply,
}

/// The models plus the queue and its workers. Dropping the engine closes the queue; the workers
/// finish the jobs already queued and exit.
pub struct Engine {
    models: Arc<Models>,
    sender: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Engine {
    /// Starts `options.workers` worker threads over `models`.
    pub fn start(models: Models, options: EngineOptions) -> std::io::Result<Self> {
        let models = Arc::new(models);
        let (sender, receiver) = mpsc::sync_channel(options.queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let depth = Arc::new(AtomicUsize::new(0));
        let workers = (0..options.workers.max(1))
            .map(|i| {
                let worker = Worker {
                    models: Arc::clone(&models),
                    receiver: Arc::clone(&receiver),
                    depth: Arc::clone(&depth),
                    options,
                };
                std::thread::Builder::new()
                    .name(format!("img2prompt-worker-{i}"))
                    .spawn(move || worker.run())
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            models,
            sender,
            depth,
            workers,
        })
    }

    /// The models.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Queues a job; its answer arrives on the returned channel. Refused when the queue is full.
    pub fn submit(&self, work: Work) -> Result<oneshot::Receiver<Result<Output, JobError>>, Busy> {
        let (reply, answer) = oneshot::channel();
        // Counted before sending, so that a worker never takes the depth below zero.
        let depth = self.depth.fetch_add(1, Ordering::SeqCst) + 1;
        match self.sender.try_send(Job { work, reply }) {
            Ok(()) => {
                metrics::gauge!("img2prompt_queue_depth").set(depth as f64);
                Ok(answer)
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                metrics::counter!("img2prompt_queue_rejected_total").increment(1);
                Err(Busy)
            }
        }
    }

    /// Closes the queue and waits until the workers have answered every queued job.
    pub fn shutdown(self) {
        let Engine {
            sender, workers, ..
        } = self;
        drop(sender);
        for worker in workers {
            // A worker that panicked outside a job has nothing left to answer.
            let _ = worker.join();
        }
    }
}

/// One worker thread's view of the engine.
struct Worker {
    models: Arc<Models>,
    receiver: Arc<Mutex<Receiver<Job>>>,
    depth: Arc<AtomicUsize>,
    options: EngineOptions,
}

impl Worker {
    fn run(self) {
        while let Some(batch) = self.next_batch() {
            let n = batch.len();
            let depth = self.depth.fetch_sub(n, Ordering::SeqCst).saturating_sub(n);
            metrics::gauge!("img2prompt_queue_depth").set(depth as f64);
            self.answer(batch);
        }
    }

    /// The next jobs to run together: the first job waiting and, when it is an image, the
    /// images that arrive within `max_wait`, up to `max_batch`. `None` once the queue is closed
    /// and empty.
    fn next_batch(&self) -> Option<Vec<Job>> {
        // A poisoned lock only means another worker panicked while waiting: the receiver is fine.
        let receiver = self.receiver.lock().unwrap_or_else(|p| p.into_inner());
        let first = receiver.recv().ok()?;
        let mut batch = vec![first];
        if batch[0].work.image().is_some() {
            let deadline = Instant::now() + self.options.max_wait;
            while batch.iter().filter(|j| j.work.image().is_some()).count() < self.options.max_batch
            {
                let left = deadline.saturating_duration_since(Instant::now());
                match receiver.recv_timeout(left) {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        Some(batch)
    }

    /// Runs a batch and answers every job in it. A panic in the models answers the batch's jobs
    /// with an internal error; the worker lives on.
    fn answer(&self, batch: Vec<Job>) {
        // A job whose request has gone (timed out, client hung up) is not worth computing.
        let (live, gone): (Vec<Job>, Vec<Job>) =
            batch.into_iter().partition(|j| !j.reply.is_closed());
        if !gone.is_empty() {
            metrics::counter!("img2prompt_jobs_abandoned_total").increment(gone.len() as u64);
        }
        let (works, replies): (Vec<Work>, Vec<Reply>) =
            live.into_iter().map(|j| (j.work, j.reply)).unzip();
        if works.is_empty() {
            return;
        }
        let start = Instant::now();
        let results = std::panic::catch_unwind(AssertUnwindSafe(|| self.compute(&works)))
            .unwrap_or_else(|_| {
                works
                    .iter()
                    .map(|_| Err(JobError::Internal("inference panicked".into())))
                    .collect()
            });
        metrics::histogram!("img2prompt_batch_seconds").record(start.elapsed().as_secs_f64());
        for (reply, result) in replies.into_iter().zip(results) {
            // The request may have timed out meanwhile: nobody to answer.
            let _ = reply.send(result);
        }
    }

    /// The answers to `works`, in order: images decoded in parallel and embedded as one batch,
    /// texts one job at a time.
    fn compute(&self, works: &[Work]) -> Vec<Result<Output, JobError>> {
        let mut results: Vec<Option<Result<Output, JobError>>> =
            works.iter().map(|_| None).collect();
        let images: Vec<(usize, Result<DynamicImage, JobError>)> = works
            .par_iter()
            .enumerate()
            .filter_map(|(i, w)| w.image().map(|(bytes, name)| (i, self.decode(bytes, name))))
            .collect();
        let mut decoded = Vec::with_capacity(images.len());
        let mut slots = Vec::with_capacity(images.len());
        for (i, image) in images {
            match image {
                Ok(image) => {
                    decoded.push(image);
                    slots.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !decoded.is_empty() {
            metrics::histogram!("img2prompt_batch_size").record(decoded.len() as f64);
            match self
                .embed_images(&decoded)
                .and_then(|rows| Ok((rows, self.caption(&decoded, &slots, works)?)))
            {
                Ok((rows, mut captions)) => {
                    for (j, (i, row)) in slots.into_iter().zip(rows).enumerate() {
                        let caption = captions.as_mut().map(|c| std::mem::take(&mut c[j]));
                        results[i] = Some(self.finish_image(&works[i], row, caption));
                    }
                }
                Err(e) => {
                    for i in slots {
                        results[i] = Some(Err(JobError::Internal(e.clone())));
                    }
                }
            }
        }
        for (i, work) in works.iter().enumerate() {
            if let Work::EmbedText { texts, tower } = work {
                results[i] = Some(self.embed_texts(texts, *tower));
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(JobError::Internal("job was not run".into()))))
            .collect()
    }

    fn decode(&self, bytes: &[u8], name: &str) -> Result<DynamicImage, JobError> {
        img2prompt::clip_encoder::decode_image_bytes(bytes, name, self.options.max_pixels)
            .map_err(|e| JobError::BadInput(e.to_string()))
    }

    /// The image tower's embeddings of `images`, one row each.
    fn embed_images(&self, images: &[DynamicImage]) -> Result<Vec<Vec<f32>>, String> {
        let encoder = self.models.predictor.image_encoder();
        let flat = encoder.embed_images(images).map_err(|e| e.to_string())?;
        split_rows(&flat, images.len(), encoder.dim(), "image encoder")
    }

    /// The predictor's captions of `images` (one per image; `None` when it does not caption or
    /// no job of the batch is a prediction).
    fn caption(
        &self,
        images: &[DynamicImage],
        slots: &[usize],
        works: &[Work],
    ) -> Result<Option<Vec<String>>, String> {
        if !slots
            .iter()
            .any(|&i| matches!(works[i], Work::Predict { .. }))
        {
            return Ok(None);
        }
        self.models
            .predictor
            .captions(images)
            .map_err(|e| e.to_string())
    }

    /// An image job's answer from its embedding (and its caption, the prompt text when given).
    fn finish_image(
        &self,
        work: &Work,
        row: Vec<f32>,
        caption: Option<String>,
    ) -> Result<Output, JobError> {
        match work {
            Work::Predict { k, .. } => {
                let models = &self.models;
                let predictor = if *k == models.fusion.k {
                    models.predictor.clone()
                } else {
                    models.predictor.with_fusion(FusionConfig {
                        k: *k,
                        ..models.fusion
                    })
                };
                let mut out = predictor
                    .predict_embeddings(&row)
                    .map_err(|e| JobError::Internal(e.to_string()))?;
                let mut prediction = out
                    .pop()
                    .ok_or_else(|| JobError::Internal("no prediction returned".into()))?;
                if let Some(caption) = caption {
                    prediction.prompt = caption;
                }
                Ok(Output::Prediction(prediction))
            }
            Work::EmbedImage { .. } => Ok(Output::Embedding(row)),
            Work::EmbedText { .. } => Err(JobError::Internal("not an image job".into())),
        }
    }

    fn embed_texts(&self, texts: &[String], tower: TextTower) -> Result<Output, JobError> {
        let embedder = match tower {
            TextTower::Sentence => &self.models.sentence,
            TextTower::Clip => &self.models.clip_text,
        };
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let flat = embedder
            .embed_texts(&refs)
            .map_err(|e| JobError::Internal(e.to_string()))?;
        split_rows(&flat, texts.len(), embedder.dim(), "text encoder")
            .map(Output::Embeddings)
            .map_err(JobError::Internal)
    }
}

/// A flat row-major batch from `encoder` as `n` rows of width `dim`, or why it is not one.
fn split_rows(flat: &[f32], n: usize, dim: usize, encoder: &str) -> Result<Vec<Vec<f32>>, String> {
    if dim == 0 || flat.len() != dim * n {
        return Err(format!(
            "the {encoder} returned {} floats for {n} inputs of width {dim}",
            flat.len()
        ));
    }
    Ok(flat.chunks_exact(dim).map(<[f32]>::to_vec).collect())
}
