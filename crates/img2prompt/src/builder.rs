//! The offline stage: [`IndexBuilder`] encodes a prompt corpus into a knn-index directory.
//!
//! Every cleaned prompt (see [`crate::corpus`]) is encoded twice: by CLIP's text tower (the
//! search key) and by a sentence encoder (the target the online stage averages); both go into a
//! [`knn_index::IndexWriter`] together with the prompt text. A prompt's id is its ordinal in the
//! cleaned stream (0, 1, 2, ...), which makes a build resumable: cleaning is deterministic, so a
//! re-run after a kill re-reads the corpus, checks that the prompts already staged are the
//! corpus's first ones, and encodes only the rest.
//!
//! Work proceeds in chunks of [`DEFAULT_CHUNK`] prompts whose boundaries are multiples of the
//! chunk size in id space; each chunk is durable once appended, so a kill loses at most the
//! chunk being encoded. While a chunk is encoded (keys and targets on two threads at once), the
//! next one is read and cleaned, and the previous one is appended.
//!
//! The index spec, unless set, is chosen from the number of records expected (an upper bound:
//! [`crate::corpus::Corpus::count_records`], or the iterator's size hint): `exact` up to
//! [`AUTO_EXACT_MAX`] records, `hnsw` up to [`AUTO_HNSW_MAX`] or when the count is unknown,
//! `ivf-pq` above (keys of 100M prompts do not fit in RAM as f32).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use knn_index::{
    BuildLock, IndexConfig, IndexSpec, IndexWriter, MANIFEST_FILE, ShardInfo, TargetEncoding,
    TrainedQuantizer,
};
use xxhash_rust::xxh3::Xxh3;

use crate::components::TextEmbedder;
use crate::corpus::{CleanStats, Cleaner, Corpus, empty_corpus};
use crate::error::{Error, Result};
pub use crate::shard::Shard;

/// Prompts per chunk: the unit of encoding, appending and of what a kill can lose.
pub const DEFAULT_CHUNK: usize = 4096;
/// Prompts per encoder call. Each encoder sorts one call's texts by length and runs them in
/// model batches of its own size, so a call of many texts pads far less than one of a model
/// batch (all-MiniLM-L6-v2 on world prompts: 77 -> 200+ prompts/s); progress advances per call.
pub const DEFAULT_BATCH: usize = 512;
/// The automatic spec is `exact` (brute force) up to this many records.
pub const AUTO_EXACT_MAX: u64 = 200_000;
/// The automatic spec is `hnsw` up to this many records, `ivf-pq` above.
pub const AUTO_HNSW_MAX: u64 = 5_000_000;

/// The index spec used when none is given, for a corpus of `records` records (`None`:
/// unknown): `exact` up to [`AUTO_EXACT_MAX`], `hnsw` up to [`AUTO_HNSW_MAX`] or when unknown,
/// else `ivf-pq`.
pub fn auto_spec(records: Option<u64>) -> IndexSpec {
    match records {
        Some(n) if n <= AUTO_EXACT_MAX => IndexSpec::Exact,
        Some(n) if n > AUTO_HNSW_MAX => IndexSpec::IvfPq,
        _ => IndexSpec::Hnsw,
    }
}

/// How far a build is, as reported to a [`BuildObserver`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BuildProgress {
    /// Prompts in the index so far: resumed plus encoded by this run.
    pub indexed: u64,
    /// Prompts staged by an interrupted build and kept (0: a fresh build).
    pub resumed: u64,
    /// Prompts encoded (keys and targets both) by this run.
    pub encoded: u64,
    /// Corpus records read so far, before cleaning.
    pub records_read: u64,
    /// At most this many records in the corpus, when known (a progress total).
    pub expected_records: Option<u64>,
    /// Time since the build started.
    pub elapsed: Duration,
}

impl BuildProgress {
    /// Prompts encoded per second by this run so far.
    pub fn prompts_per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.encoded as f64 / s
        } else {
            0.0
        }
    }
}

/// Receives the progress of an [`IndexBuilder`] build, from its reading and encoding threads
/// (so implementations are `Sync`). The library prints nothing itself: a command line draws a
/// bar or writes log lines from these calls.
pub trait BuildObserver: Send + Sync {
    /// Called whenever prompts are read, resumed or encoded (once per encoder call at most).
    fn progress(&self, progress: &BuildProgress);
    /// Called once when the build ends, successfully or not.
    fn finished(&self) {}
}

/// Checks that an index may be built at `out`: it does not exist, is an empty directory, or
/// holds a finished index and `overwrite` is set. Anything else (a file, a directory that is not
/// an index) is refused: the final swap would delete it.
///
/// # Errors
/// [`Error::OutputExists`] for a finished index without `overwrite`; [`Error::Input`] naming
/// `out` for the rest.
pub fn check_output(out: &Path, overwrite: bool) -> Result<()> {
    let bad = |message: &str| Error::Input {
        path: out.to_owned(),
        line: None,
        message: message.to_owned(),
    };
    if out.file_name().is_none() {
        return Err(bad("the output index directory needs a name"));
    }
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(out, e)),
        Ok(meta) if !meta.is_dir() => Err(bad("exists and is not a directory")),
        Ok(_) => {
            if out.join(MANIFEST_FILE).is_file() {
                if overwrite {
                    Ok(())
                } else {
                    Err(Error::OutputExists {
                        path: out.to_owned(),
                    })
                }
            } else {
                let mut entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
                if entries.next().is_none() {
                    Ok(())
                } else {
                    Err(bad(
                        "exists and is not an index directory (refusing to replace it)",
                    ))
                }
            }
        }
    }
}

/// What a build did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BuildReport {
    /// The index directory.
    pub out: PathBuf,
    /// Prompts in the index.
    pub prompts: u64,
    /// Cleaning counts over the whole corpus (also when resumed).
    pub clean: CleanStats,
    /// Prompts already staged by an interrupted build and not encoded again (0: fresh build).
    pub resumed_from: u64,
    /// Prompts encoded by this run.
    pub encoded: u64,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
    /// `encoded / seconds`.
    pub prompts_per_second: f64,
    /// The index spec built (`exact`, `hnsw`, ... or a factory string).
    pub spec: String,
    /// The FAISS factory string it resolved to.
    pub faiss_factory: String,
    /// Identity of the key (CLIP) model, as recorded in the manifest.
    pub key_model: String,
    /// Identity of the target (sentence) model, as recorded in the manifest.
    pub target_model: String,
    /// The shard built (`I/N`), for a shard of a sharded build.
    pub shard: Option<String>,
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} prompts in {} ({} read: {} empty, {} duplicates dropped); {} encoded in {:.1} s, \
             {:.1} prompts/s",
            self.prompts,
            self.out.display(),
            self.clean.read,
            self.clean.empty,
            self.clean.duplicates,
            self.encoded,
            self.seconds,
            self.prompts_per_second
        )?;
        if self.resumed_from > 0 {
            write!(f, ", resumed from {}", self.resumed_from)?;
        }
        write!(f, "; spec {} ({})", self.spec, self.faiss_factory)?;
        if let Some(shard) = &self.shard {
            write!(f, "; shard {shard}")?;
        }
        Ok(())
    }
}

/// Builds a prompt index: keys from one [`TextEmbedder`] (CLIP's text tower), targets from
/// another (a sentence encoder). See the [module documentation](self).
///
/// ```no_run
/// # use img2prompt::builder::IndexBuilder;
/// # use img2prompt::corpus::{Corpus, CorpusOptions};
/// # fn main() -> img2prompt::Result<()> {
/// # let (clip, minilm): (img2prompt::ClipTextEmbedder, img2prompt::SentenceTextEmbedder) = todo!();
/// let files = [std::path::PathBuf::from("prompts.jsonl")];
/// let corpus = Corpus::open(&files, CorpusOptions::default())?;
/// let report = IndexBuilder::new(&clip, &minilm)
///     .batch_size(64)
///     .build_corpus(corpus, std::path::Path::new("my-index"))?;
/// println!("{report}");
/// # Ok(()) }
/// ```
pub struct IndexBuilder<'a> {
    key_encoder: &'a dyn TextEmbedder,
    target_encoder: &'a dyn TextEmbedder,
    spec: Option<IndexSpec>,
    expected: Option<u64>,
    batch_size: usize,
    chunk_size: usize,
    observer: Option<&'a dyn BuildObserver>,
    overwrite: bool,
    fresh: bool,
    label: String,
    shard: Option<Shard>,
    trained: Option<PathBuf>,
    targets: TargetEncoding,
}

impl fmt::Debug for IndexBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexBuilder")
            .field("key_encoder", &self.key_encoder.model_id())
            .field("target_encoder", &self.target_encoder.model_id())
            .field("spec", &self.spec)
            .field("expected", &self.expected)
            .field("batch_size", &self.batch_size)
            .field("chunk_size", &self.chunk_size)
            .field("observer", &self.observer.is_some())
            .field("overwrite", &self.overwrite)
            .field("fresh", &self.fresh)
            .field("shard", &self.shard)
            .field("trained", &self.trained)
            .finish()
    }
}

impl<'a> IndexBuilder<'a> {
    /// A builder with keys from `key_encoder` and targets from `target_encoder`; automatic spec,
    /// batches of [`DEFAULT_BATCH`], chunks of [`DEFAULT_CHUNK`], no progress reports.
    pub fn new(key_encoder: &'a dyn TextEmbedder, target_encoder: &'a dyn TextEmbedder) -> Self {
        Self {
            key_encoder,
            target_encoder,
            spec: None,
            expected: None,
            batch_size: DEFAULT_BATCH,
            chunk_size: DEFAULT_CHUNK,
            observer: None,
            overwrite: false,
            fresh: false,
            label: "the prompt stream".to_owned(),
            shard: None,
            trained: None,
            targets: TargetEncoding::F32,
        }
    }

    /// How the index stores the targets (default `f32`; see [`TargetEncoding`]).
    pub fn targets(mut self, encoding: TargetEncoding) -> Self {
        self.targets = encoding;
        self
    }

    /// Encode only `shard` of the cleaned corpus, as one process of a sharded build (see
    /// [`Shard`]); the index directory is then a shard for [`knn_index::merge_shards`]. Ids
    /// stay those of a single build. Default: the whole corpus.
    pub fn shard(mut self, shard: Shard) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Add the keys to the trained quantizer in `dir` (a [`TrainedQuantizer`] directory)
    /// instead of training one on this build's keys; its spec is the build's spec unless one
    /// is set. The shards of a sharded IVF build share one, so that they can be merged.
    pub fn trained(mut self, dir: impl Into<PathBuf>) -> Self {
        self.trained = Some(dir.into());
        self
    }

    /// The FAISS index to build (default: [`auto_spec`] of the expected record count).
    pub fn spec(mut self, spec: IndexSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// How many records the stream holds, at most (for the progress total and [`auto_spec`]);
    /// by default the iterator's size hint.
    pub fn expected_records(mut self, records: u64) -> Self {
        self.expected = Some(records);
        self
    }

    /// Prompts per encoder call (default [`DEFAULT_BATCH`]).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Prompts per chunk, the unit a kill can lose (default [`DEFAULT_CHUNK`]).
    pub fn chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Reports progress to `observer` (default: none).
    pub fn observer(mut self, observer: &'a dyn BuildObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Replace a finished index at the output (atomically, when the new one is complete);
    /// otherwise one is an error.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Discard an interrupted build at the output instead of resuming it.
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }

    /// How to name the inputs in messages (e.g. an empty corpus); [`Self::build_corpus`] sets it.
    pub fn inputs_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Builds the index of `corpus` at `out`, naming its files in messages and counting its
    /// records first (cheap, see [`Corpus::count_records`]) unless
    /// [`Self::expected_records`] was set.
    pub fn build_corpus(self, corpus: Corpus, out: &Path) -> Result<BuildReport> {
        let expected = match self.expected {
            Some(n) => n,
            None => corpus.count_records()?,
        };
        let label = corpus.label();
        self.expected_records(expected)
            .inputs_label(label)
            .build(corpus, out)
    }

    /// Cleans `prompts` (see [`crate::corpus::Cleaner`]), encodes them and writes the index
    /// directory `out`, resuming an interrupted build of it unless [`Self::fresh`]. The build
    /// holds `out`'s [`BuildLock`] from start to end.
    ///
    /// Errors: a finished index at `out` without [`Self::overwrite`]; another build of `out`
    /// running ([`knn_index::Error::Locked`]); an empty corpus after cleaning (nothing is
    /// written); the first error of the stream (after staging the prompts before it, so that a
    /// re-run resumes there); an encoder error; an interrupted build at `out` made with other
    /// models, spec or prompts ([`Error::Resume`]).
    pub fn build<I, P>(&self, prompts: I, out: &Path) -> Result<BuildReport>
    where
        I: IntoIterator<Item = Result<P>>,
        P: AsRef<str>,
    {
        let start = Instant::now();
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if self.chunk_size == 0 {
            return Err(Error::invalid("chunk_size", "must be at least 1"));
        }
        check_output(out, self.overwrite)?;
        let lock = BuildLock::acquire(out)?;
        let mut stream = prompts.into_iter();
        let expected = self
            .expected
            .or_else(|| stream.size_hint().1.map(|n| n as u64));
        let trained = self
            .trained
            .as_ref()
            .map(TrainedQuantizer::open)
            .transpose()?;
        let spec = match (&self.spec, &trained) {
            (Some(spec), _) => spec.clone(),
            (None, Some(t)) => t.spec(),
            (None, None) => auto_spec(expected),
        };
        if self.shard.is_some()
            && trained.is_none()
            && knn_index::is_ivf_factory(&spec.factory_string(1024, self.key_encoder.dim()))
        {
            return Err(Error::invalid(
                "trained",
                format!(
                    "the shards of a {spec} index must share one trained quantizer (train it \
                     once with `index train`, then pass it to every shard)"
                ),
            ));
        }
        let mut config = IndexConfig::new(self.key_encoder.dim(), self.target_encoder.dim(), spec)
            .with_models(
                self.key_encoder.model_id().to_string(),
                self.target_encoder.model_id().to_string(),
            );
        if let Some(dir) = &self.trained {
            config = config.with_trained(dir);
        }
        config = config.with_targets(self.targets);
        let tracker = Tracker::new(self.observer, expected);
        let mut cleaner = Selector::new(self.shard);

        let mut writer = None;
        let mut lock = Some(lock);
        if IndexWriter::has_staging(out)
            && !self.fresh
            && let Some(lock) = lock.take()
        {
            let w = IndexWriter::resume_locked(lock, config.clone()).map_err(resume_error)?;
            skip_staged(&mut stream, &mut cleaner, &w, &tracker)?;
            writer = Some(w);
        }
        let resumed_from = writer.as_ref().map_or(0, IndexWriter::len);
        tracker.resumed(resumed_from);

        let encoded = self.pipeline(
            &mut stream,
            &mut cleaner,
            &mut writer,
            (&config, &mut lock),
            resumed_from,
            &tracker,
        )?;
        let clean = cleaner.stats();
        let mut writer = match (writer, self.shard) {
            (Some(w), _) if !w.is_empty() => w,
            // A shard may own none of a non-empty corpus's prompts: it is still a shard.
            (w, Some(_)) if clean.kept > 0 => match (w, lock.take()) {
                (Some(w), _) => w,
                (None, Some(lock)) => IndexWriter::create_locked(lock, config.clone())?,
                (None, None) => {
                    return Err(Error::Backend(
                        "the build lock was given away twice".to_owned(),
                    ));
                }
            },
            (other, _) => {
                if let Some(w) = other {
                    // A staging left by a run killed before its first chunk: it holds nothing.
                    w.abort()?;
                }
                return Err(empty_corpus(&self.label, clean));
            }
        };
        if let Some(shard) = self.shard {
            writer.set_shard(cleaner.shard_info(shard))?;
        }
        let manifest = writer.finish()?;
        drop(tracker);
        let seconds = start.elapsed().as_secs_f64();
        Ok(BuildReport {
            out: out.to_owned(),
            prompts: manifest.count,
            clean,
            resumed_from,
            encoded,
            seconds,
            prompts_per_second: if seconds > 0.0 {
                encoded as f64 / seconds
            } else {
                0.0
            },
            spec: manifest.spec,
            faiss_factory: manifest.faiss_factory,
            key_model: manifest.key_model,
            target_model: manifest.target_model,
            shard: self.shard.map(|s| s.to_string()),
        })
    }

    /// Reads, encodes and appends chunks until the stream ends; returns the prompts encoded.
    /// Creates the writer (under `lock`) on the first prompt when there is none.
    fn pipeline<S, P>(
        &self,
        stream: &mut S,
        cleaner: &mut Selector,
        writer: &mut Option<IndexWriter>,
        (config, lock): (&IndexConfig, &mut Option<BuildLock>),
        first_row: u64,
        tracker: &Tracker,
    ) -> Result<u64>
    where
        S: Iterator<Item = Result<P>>,
        P: AsRef<str>,
    {
        let (key, target, batch) = (self.key_encoder, self.target_encoder, self.batch_size);
        let chunk_size = self.chunk_size as u64;
        let mut rows = first_row;
        let mut encoded = 0u64;
        std::thread::scope(|scope| {
            let spawn = |ids: Vec<u64>, texts: Vec<String>| {
                scope.spawn(move || -> Result<Encoded> {
                    let (keys, targets) = encode_chunk(key, target, &texts, batch, tracker)?;
                    Ok(Encoded {
                        ids,
                        texts,
                        keys,
                        targets,
                    })
                })
            };
            let mut in_flight = None;
            loop {
                // Reading and cleaning this chunk overlaps encoding the previous one.
                let end = (rows / chunk_size + 1) * chunk_size;
                let Chunk {
                    ids,
                    texts,
                    error,
                    exhausted,
                } = read_chunk(stream, cleaner, (end - rows) as usize);
                tracker.records(cleaner.stats().read);
                rows += texts.len() as u64;
                let done = in_flight.take().map(join_encoded).transpose()?;
                if !texts.is_empty() {
                    if writer.is_none() {
                        let lock = lock.take().ok_or_else(|| {
                            Error::Backend("the build lock was given away twice".to_owned())
                        })?;
                        *writer = Some(IndexWriter::create_locked(lock, config.clone())?);
                    }
                    in_flight = Some(spawn(ids, texts));
                }
                // Appending the previous chunk overlaps encoding this one.
                if let Some(done) = done {
                    encoded += append(writer, done)?;
                }
                if error.is_some() || exhausted {
                    if let Some(handle) = in_flight.take() {
                        encoded += append(writer, join_encoded(handle)?)?;
                    }
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(encoded),
                    };
                }
            }
        })
    }
}

/// What [`train_quantizer`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainReport {
    /// The trained directory.
    pub out: PathBuf,
    /// Prompts in the cleaned corpus (the index size the quantizer is trained for).
    pub corpus_prompts: u64,
    /// Prompts the quantizer was trained on.
    pub sample: u64,
    /// The FAISS factory string trained.
    pub faiss_factory: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl fmt::Display for TrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} trained on {} of {} prompts into {} in {:.1} s",
            self.faiss_factory,
            self.sample,
            self.corpus_prompts,
            self.out.display(),
            self.seconds
        )
    }
}

/// Trains the IVF quantizer of a sharded build once: cleans the whole stream `prompts` (as a
/// build does), keeps a uniform sample of `sample` cleaned prompts (a seeded reservoir, so the
/// same corpus gives the same sample), encodes them with `key_encoder` (CLIP's text tower) and
/// trains `spec` for an index of the whole cleaned corpus into the trained directory `out`.
/// Every shard of the build then passes it to [`IndexBuilder::trained`].
///
/// # Errors
/// `sample` is 0; a spec that is not IVF; an empty corpus; the stream's or the encoder's errors.
pub fn train_quantizer<I, P>(
    key_encoder: &dyn TextEmbedder,
    prompts: I,
    spec: &IndexSpec,
    sample: usize,
    out: &Path,
) -> Result<TrainReport>
where
    I: IntoIterator<Item = Result<P>>,
    P: AsRef<str>,
{
    let start = Instant::now();
    if sample == 0 {
        return Err(Error::invalid("sample", "must be at least 1"));
    }
    let mut cleaner = Cleaner::new();
    let mut reservoir: Vec<String> = Vec::with_capacity(sample.min(1 << 20));
    let mut rng = 0x5eed_u64;
    for record in prompts {
        let Some(text) = cleaner.clean(record?.as_ref()) else {
            continue;
        };
        let seen = cleaner.stats().kept;
        if reservoir.len() < sample {
            reservoir.push(text);
        } else {
            rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let j = splitmix(rng) % seen;
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| reservoir.get_mut(j)) {
                *slot = text;
            }
        }
    }
    let corpus_prompts = cleaner.stats().kept;
    if corpus_prompts == 0 {
        return Err(empty_corpus("the prompt stream", cleaner.stats()));
    }
    let keys = encode_side(key_encoder, &reservoir, DEFAULT_BATCH, |_| {})?;
    let trained = TrainedQuantizer::train(
        out,
        key_encoder.dim(),
        spec,
        corpus_prompts,
        &key_encoder.model_id().to_string(),
        &keys,
    )?;
    Ok(TrainReport {
        out: out.to_owned(),
        corpus_prompts,
        sample: reservoir.len() as u64,
        faiss_factory: trained.manifest().faiss_factory.clone(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// SplitMix64's output function: a well-mixed u64 from a counter.
fn splitmix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Waits for an encoding thread.
fn join_encoded(handle: std::thread::ScopedJoinHandle<'_, Result<Encoded>>) -> Result<Encoded> {
    handle
        .join()
        .map_err(|_| Error::Backend("an encoder thread panicked".to_owned()))?
}

/// A resume failure (another config, a damaged staging) as [`Error::Resume`].
fn resume_error(e: knn_index::Error) -> Error {
    match e {
        knn_index::Error::Manifest { path, reason } => Error::Resume { path, reason },
        other => Error::Index(other),
    }
}

/// Cleaned prompts of one chunk, with their ids.
struct Chunk {
    ids: Vec<u64>,
    texts: Vec<String>,
    /// The stream's error that ended the chunk early.
    error: Option<Error>,
    /// The stream ended.
    exhausted: bool,
}

/// A chunk with its keys and targets.
struct Encoded {
    ids: Vec<u64>,
    texts: Vec<String>,
    keys: Vec<f32>,
    targets: Vec<f32>,
}

/// The cleaned stream a build encodes: every record is cleaned (deduplication is global) and
/// numbered (a prompt's id is its ordinal in the cleaned stream) and fingerprinted; a sharded
/// build then keeps only its shard's prompts.
struct Selector {
    cleaner: Cleaner,
    shard: Option<Shard>,
    fingerprint: Xxh3,
}

impl Selector {
    fn new(shard: Option<Shard>) -> Self {
        Self {
            cleaner: Cleaner::new(),
            shard,
            fingerprint: Xxh3::new(),
        }
    }

    /// Cleans one record; `Some((id, text))` when it is a prompt of this build.
    fn select(&mut self, record: &str) -> Option<(u64, String)> {
        let text = self.cleaner.clean(record)?;
        let id = self.cleaner.stats().kept - 1;
        self.fingerprint.update(text.as_bytes());
        self.fingerprint.update(b"\n");
        match self.shard {
            Some(shard) if !shard.owns(&text) => None,
            _ => Some((id, text)),
        }
    }

    fn stats(&self) -> CleanStats {
        self.cleaner.stats()
    }

    /// What a finished shard records about the whole corpus (call once the stream ended).
    fn shard_info(&self, shard: Shard) -> ShardInfo {
        ShardInfo {
            index: shard.index(),
            count: shard.count(),
            corpus_prompts: self.cleaner.stats().kept,
            corpus_xxh3: format!("{:016x}", self.fingerprint.digest()),
        }
    }
}

/// Reads up to `want` prompts of this build (fewer when the stream ends or fails).
fn read_chunk<S, P>(stream: &mut S, cleaner: &mut Selector, want: usize) -> Chunk
where
    S: Iterator<Item = Result<P>>,
    P: AsRef<str>,
{
    let mut chunk = Chunk {
        ids: Vec::with_capacity(want.min(1 << 16)),
        texts: Vec::with_capacity(want.min(1 << 16)),
        error: None,
        exhausted: false,
    };
    while chunk.texts.len() < want {
        match stream.next() {
            None => {
                chunk.exhausted = true;
                break;
            }
            Some(Err(e)) => {
                chunk.error = Some(e);
                break;
            }
            Some(Ok(record)) => {
                if let Some((id, text)) = cleaner.select(record.as_ref()) {
                    chunk.ids.push(id);
                    chunk.texts.push(text);
                }
            }
        }
    }
    chunk
}

/// Appends an encoded chunk; returns its length.
fn append(writer: &mut Option<IndexWriter>, done: Encoded) -> Result<u64> {
    let Some(writer) = writer.as_mut() else {
        return Err(Error::Backend(
            "no index writer for an encoded chunk".to_owned(),
        ));
    };
    writer.append(&done.ids, &done.keys, &done.texts, &done.targets)?;
    Ok(done.texts.len() as u64)
}

/// Re-reads the prompts an interrupted build staged, checking each against the staged text.
fn skip_staged<S, P>(
    stream: &mut S,
    cleaner: &mut Selector,
    writer: &IndexWriter,
    tracker: &Tracker,
) -> Result<()>
where
    S: Iterator<Item = Result<P>>,
    P: AsRef<str>,
{
    let rows = writer.len();
    let other = |reason: String| Error::Resume {
        path: writer.staging_dir().to_owned(),
        reason: format!("{reason}: the interrupted build was made from other prompts"),
    };
    let mut row = 0u64;
    for staged in writer.staged_prompts()? {
        let staged = staged?;
        let (id, text) = loop {
            let Some(record) = stream.next() else {
                return Err(other(format!(
                    "it holds {rows} prompts, the corpus only {row}"
                )));
            };
            if let Some(selected) = cleaner.select(record?.as_ref()) {
                break selected;
            }
        };
        if staged != text {
            return Err(other(format!("prompt {id} differs")));
        }
        row += 1;
        if row.is_multiple_of(4096) {
            tracker.records(cleaner.stats().read);
        }
    }
    tracker.records(cleaner.stats().read);
    Ok(())
}

/// Encodes a chunk: keys and targets at the same time, on two threads.
fn encode_chunk(
    key: &dyn TextEmbedder,
    target: &dyn TextEmbedder,
    texts: &[String],
    batch: usize,
    tracker: &Tracker,
) -> Result<(Vec<f32>, Vec<f32>)> {
    std::thread::scope(|scope| {
        let keys = scope.spawn(|| encode_side(key, texts, batch, |n| tracker.keys_done(n)));
        let targets = encode_side(target, texts, batch, |n| tracker.targets_done(n));
        let keys = keys
            .join()
            .map_err(|_| Error::Backend("the key encoder panicked".to_owned()))?;
        Ok((keys?, targets?))
    })
}

/// All embeddings of `texts` by `encoder`, `batch` at a time, checked for width.
fn encode_side(
    encoder: &dyn TextEmbedder,
    texts: &[String],
    batch: usize,
    done: impl Fn(u64),
) -> Result<Vec<f32>> {
    let dim = encoder.dim();
    let mut out = Vec::with_capacity(texts.len() * dim);
    for part in texts.chunks(batch) {
        let refs: Vec<&str> = part.iter().map(String::as_str).collect();
        let v = encoder.embed_texts(&refs)?;
        if v.len() != part.len() * dim {
            return Err(Error::Mismatch {
                what: format!("embeddings from {}", encoder.model_id()),
                expected: format!("{} floats ({} texts x {dim})", part.len() * dim, part.len()),
                found: format!("{} floats", v.len()),
            });
        }
        out.extend_from_slice(&v);
        done(part.len() as u64);
    }
    Ok(out)
}

/// Progress shared by the reading thread and the two encoder threads, reported to the
/// builder's observer.
struct Tracker<'a> {
    observer: Option<&'a dyn BuildObserver>,
    total: Option<u64>,
    start: Instant,
    resumed: AtomicU64,
    records: AtomicU64,
    keys: AtomicU64,
    targets: AtomicU64,
}

impl<'a> Tracker<'a> {
    fn new(observer: Option<&'a dyn BuildObserver>, total: Option<u64>) -> Self {
        Self {
            observer,
            total,
            start: Instant::now(),
            resumed: AtomicU64::new(0),
            records: AtomicU64::new(0),
            keys: AtomicU64::new(0),
            targets: AtomicU64::new(0),
        }
    }

    fn resumed(&self, rows: u64) {
        self.resumed.store(rows, Ordering::Relaxed);
        self.tick();
    }

    fn records(&self, read: u64) {
        self.records.store(read, Ordering::Relaxed);
        self.tick();
    }

    fn keys_done(&self, n: u64) {
        self.keys.fetch_add(n, Ordering::Relaxed);
        self.tick();
    }

    fn targets_done(&self, n: u64) {
        self.targets.fetch_add(n, Ordering::Relaxed);
        self.tick();
    }

    fn tick(&self) {
        let Some(observer) = self.observer else {
            return;
        };
        // Prompts count as encoded once both their key and their target are.
        let encoded = self
            .keys
            .load(Ordering::Relaxed)
            .min(self.targets.load(Ordering::Relaxed));
        let resumed = self.resumed.load(Ordering::Relaxed);
        observer.progress(&BuildProgress {
            indexed: resumed + encoded,
            resumed,
            encoded,
            records_read: self.records.load(Ordering::Relaxed),
            expected_records: self.total,
            elapsed: self.start.elapsed(),
        });
    }
}

impl Drop for Tracker<'_> {
    fn drop(&mut self) {
        // On error paths too, so that a bar is cleared before the error is shown.
        if let Some(observer) = self.observer {
            observer.finished();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_spec_by_size() {
        assert_eq!(auto_spec(Some(50)), IndexSpec::Exact);
        assert_eq!(auto_spec(Some(AUTO_EXACT_MAX)), IndexSpec::Exact);
        assert_eq!(auto_spec(Some(AUTO_EXACT_MAX + 1)), IndexSpec::Hnsw);
        assert_eq!(auto_spec(None), IndexSpec::Hnsw);
        assert_eq!(auto_spec(Some(AUTO_HNSW_MAX + 1)), IndexSpec::IvfPq);
    }

    #[test]
    fn output_checks() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_output(&dir.path().join("new"), false).is_ok());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(check_output(&empty, false).is_ok());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_output(&file, true).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("photo.jpg"), "x").unwrap();
        let err = check_output(&other, true).unwrap_err().to_string();
        assert!(err.contains("not an index directory"), "{err}");
        let index = dir.path().join("index");
        std::fs::create_dir(&index).unwrap();
        std::fs::write(index.join(MANIFEST_FILE), "{}").unwrap();
        let err = check_output(&index, false).unwrap_err();
        assert!(matches!(err, Error::OutputExists { .. }), "{err}");
        assert!(check_output(&index, true).is_ok());
    }

    #[test]
    fn chunks_end_on_multiples_of_the_chunk_size() {
        let mut stream = (0..10).map(|i| Ok::<_, Error>(format!("p{i}")));
        let mut cleaner = Selector::new(None);
        let chunk = read_chunk(&mut stream, &mut cleaner, 1);
        assert_eq!(chunk.texts, ["p0"]);
        assert_eq!(chunk.ids, [0]);
        let chunk = read_chunk(&mut stream, &mut cleaner, 4);
        assert_eq!(chunk.texts, ["p1", "p2", "p3", "p4"]);
        assert_eq!(chunk.ids, [1, 2, 3, 4]);
        assert!(!chunk.exhausted);
        let chunk = read_chunk(&mut stream, &mut cleaner, 4);
        assert_eq!(chunk.texts.len(), 4);
        let chunk = read_chunk(&mut stream, &mut cleaner, 4);
        assert_eq!(chunk.texts, ["p9"]);
        assert!(chunk.exhausted && chunk.error.is_none());
    }

    #[test]
    fn a_shard_keeps_its_prompts_with_single_build_ids() {
        let records = ["a", "b", "", "a", "c", "d", "e", "f", "g", "b"];
        let all: Vec<(u64, String)> = {
            let mut s = Selector::new(None);
            records.iter().filter_map(|r| s.select(r)).collect()
        };
        assert_eq!(all.len(), 7);
        let mut union = Vec::new();
        let mut infos = Vec::new();
        for i in 0..3 {
            let shard = Shard::new(i, 3).unwrap();
            let mut s = Selector::new(Some(shard));
            let mut stream = records.iter().map(|r| Ok::<_, Error>(*r));
            let chunk = read_chunk(&mut stream, &mut s, 100);
            assert!(chunk.texts.iter().all(|t| shard.owns(t)));
            union.extend(chunk.ids.into_iter().zip(chunk.texts));
            infos.push(s.shard_info(shard));
        }
        union.sort();
        assert_eq!(union, all);
        // Every shard saw the whole corpus: one fingerprint and count.
        assert!(infos.iter().all(|i| i.corpus_xxh3 == infos[0].corpus_xxh3));
        assert!(infos.iter().all(|i| i.corpus_prompts == 7));
    }
}
