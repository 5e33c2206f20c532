//! [`IndexWriter`]: resumable, crash-safe building of an index directory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::training_sample_size;
use crate::keys::{KeyIndex, normalized_rows, strided_sample};
use crate::manifest::ShardInfo;
use crate::manifest::{
    FORMAT_NAME, FORMAT_VERSION, FileEntry, ID_LOOKUP_FILE, IDS_FILE, KEYS_FILE, MANIFEST_FILE,
    METRIC, Manifest, OFFSETS_FILE, PROMPTS_FILE, TARGETS_FILE, hash_file, sync_dir, write_atomic,
};
use crate::mapped::{MappedF32, MappedU64};
use crate::spec::{IndexSpec, SearchParams};
use crate::sys;
use crate::targets::{TargetEncoding, TargetsWriter};
use crate::trained::TrainedQuantizer;

/// Staging state file (only in the staging directory).
pub const STAGING_FILE: &str = "staging.json";
/// Normalised keys appended so far (staging only; `count × key_dim` little-endian f32).
pub const STAGED_KEYS_FILE: &str = "keys.f32";
const STAGING_FORMAT: &str = "img2prompt-knn-staging";

/// What to build: dimensions, FAISS spec, and the names of the models that made keys and targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConfig {
    /// Width of the keys (e.g. 512 for CLIP ViT-B).
    pub key_dim: usize,
    /// Width of the target vectors (e.g. 384 for all-MiniLM-L6-v2).
    pub target_dim: usize,
    /// Which FAISS index to build.
    pub spec: IndexSpec,
    /// Name of the model that made the keys, recorded in the manifest.
    pub key_model: String,
    /// Name of the model that made the targets, recorded in the manifest.
    pub target_model: String,
    /// A [`TrainedQuantizer`] directory: keys are added to its trained index instead of one
    /// trained on this build's own keys (the shards of a sharded IVF build share one, so that
    /// [`crate::merge_shards`] can merge their inverted lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained: Option<PathBuf>,
    /// How the finished directory stores the targets (default `f32`; appends are staged as
    /// f32 and encoded when the build finishes).
    #[serde(default, skip_serializing_if = "TargetEncoding::is_f32")]
    pub targets: TargetEncoding,
}

impl IndexConfig {
    /// A config with empty model names.
    pub fn new(key_dim: usize, target_dim: usize, spec: IndexSpec) -> Self {
        IndexConfig {
            key_dim,
            target_dim,
            spec,
            key_model: String::new(),
            target_model: String::new(),
            trained: None,
            targets: TargetEncoding::F32,
        }
    }

    /// Store the targets in `encoding` (see [`TargetEncoding`]).
    pub fn with_targets(mut self, encoding: TargetEncoding) -> Self {
        self.targets = encoding;
        self
    }

    /// Add keys to the trained index in `dir` (see [`IndexConfig::trained`]).
    pub fn with_trained(mut self, dir: impl Into<PathBuf>) -> Self {
        self.trained = Some(dir.into());
        self
    }

    /// Set the model names.
    pub fn with_models(
        mut self,
        key_model: impl Into<String>,
        target_model: impl Into<String>,
    ) -> Self {
        self.key_model = key_model.into();
        self.target_model = target_model.into();
        self
    }

    fn validate(&self) -> Result<()> {
        if self.key_dim == 0 || self.key_dim > i32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "key_dim {} is invalid",
                self.key_dim
            )));
        }
        if self.target_dim == 0 {
            return Err(Error::InvalidArgument("target_dim must be > 0".into()));
        }
        // Fail early on a factory string FAISS cannot parse.
        KeyIndex::from_factory(self.key_dim, &self.spec.factory_string(1024, self.key_dim))?;
        if let Some(dir) = &self.trained {
            self.check_trained(&TrainedQuantizer::open(dir)?)?;
        }
        Ok(())
    }

    /// The trained quantizer must fit this config: same key width, spec and key model.
    fn check_trained(&self, trained: &TrainedQuantizer) -> Result<()> {
        let m = trained.manifest();
        let path = trained.dir().join(crate::trained::TRAINED_MANIFEST_FILE);
        let mismatch = |what, expected: String, found: String| Error::Mismatch {
            path: path.clone(),
            what,
            expected,
            found,
        };
        if m.key_dim != self.key_dim {
            return Err(mismatch(
                "key dim",
                self.key_dim.to_string(),
                m.key_dim.to_string(),
            ));
        }
        if m.spec != self.spec.to_string() {
            return Err(mismatch("spec", self.spec.to_string(), m.spec.clone()));
        }
        if !self.key_model.is_empty() && m.key_model != self.key_model {
            return Err(mismatch(
                "key model",
                self.key_model.clone(),
                m.key_model.clone(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StagingState {
    format: String,
    format_version: u32,
    config: IndexConfig,
    rows: u64,
    prompt_bytes: u64,
    finished: bool,
    /// Set (by [`IndexWriter::set_shard`]) on a shard of a sharded build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shard: Option<ShardInfo>,
}

#[derive(Debug)]
struct Files {
    keys: File,
    ids: File,
    prompts: File,
    offsets: File,
    targets: File,
}

/// An exclusive advisory lock on building the index at one output path: the file
/// `<parent>/.<name>.knn-lock`, locked with `flock` semantics (`File::try_lock`) for as long
/// as this value lives, and removed when it is dropped. Every [`IndexWriter`] holds one, so two
/// builds into the same output never share a staging directory: the second fails at once with
/// [`Error::Locked`].
///
/// Removing the file is safe because it happens while the lock is held, and [`BuildLock::acquire`]
/// checks after locking that the path still names the file it locked (else it retries on the
/// new file): a process that locked a file just unlinked does not go on believing it holds the
/// lock.
#[derive(Debug)]
pub struct BuildLock {
    out: PathBuf,
    path: PathBuf,
    file: Option<File>,
}

impl BuildLock {
    /// Takes the lock for the index at `out`, creating the parent directory and the lock file
    /// when missing.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process (or another `BuildLock` of this one) holds it;
    /// I/O errors naming the lock file.
    pub fn acquire(out: impl AsRef<Path>) -> Result<Self> {
        let out = out.as_ref().to_path_buf();
        let path = sibling_path(&out, ".knn-lock")?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // A few rounds: each one can only lose to a holder that unlinked the file meanwhile.
        for _ in 0..8 {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Locked { out, lock: path });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            if same_file(&file, &path)? {
                return Ok(Self {
                    out,
                    path,
                    file: Some(file),
                });
            }
        }
        Err(Error::Locked { out, lock: path })
    }

    /// The index directory this lock is for.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then release it by closing the file.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// Whether `path` still names the open `file` (not unlinked or replaced since it was opened).
fn same_file(file: &File, path: &Path) -> Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let open = file.metadata().map_err(|e| Error::io(path, e))?;
        match std::fs::metadata(path) {
            Ok(now) => Ok(open.dev() == now.dev() && open.ino() == now.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, e)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        Ok(true)
    }
}

/// Builds an index directory in chunks, crash-safely.
///
/// Everything is written to a staging directory next to the output (`<parent>/.<name>.knn-staging`).
/// Each [`IndexWriter::append`] writes its chunk and fsyncs it, then atomically records the new
/// row count in `staging.json`; a process killed mid-chunk loses only that chunk, and
/// [`IndexWriter::resume`] reopens the staging directory, truncates the half-written tail and
/// continues at [`IndexWriter::len`]. [`IndexWriter::finish`] builds the FAISS index, writes the
/// manifest with checksums, and swaps the staging directory into place atomically
/// (`renameat2(RENAME_EXCHANGE)` on Linux; elsewhere two renames, the old index kept as
/// `.<name>.knn-old` in between). Until that swap the previous index at the output path is
/// untouched and loads.
///
/// Ids must be unique (checked in `finish`). A writer holds the output's [`BuildLock`], so only
/// one writer at a time uses a staging directory.
#[derive(Debug)]
pub struct IndexWriter {
    out: PathBuf,
    staging: PathBuf,
    state: StagingState,
    files: Option<Files>,
    _lock: BuildLock,
}

/// `<parent>/.<name><suffix>` for the output `out`.
fn sibling_path(out: &Path, suffix: &str) -> Result<PathBuf> {
    let name = out.file_name().ok_or_else(|| {
        Error::InvalidArgument(format!("{}: output path has no file name", out.display()))
    })?;
    let mut s = std::ffi::OsString::from(".");
    s.push(name);
    s.push(suffix);
    Ok(out.with_file_name(s))
}

fn staging_path(out: &Path) -> Result<PathBuf> {
    sibling_path(out, ".knn-staging")
}

fn backup_path(out: &Path) -> Result<PathBuf> {
    sibling_path(out, ".knn-old")
}

/// The prompts staged by an interrupted build, in row order: see [`IndexWriter::staged_prompts`].
#[derive(Debug)]
pub struct StagedPrompts {
    path: PathBuf,
    reader: std::io::BufReader<File>,
    remaining: u64,
}

impl Iterator for StagedPrompts {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::BufRead;
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut line = String::new();
        Some(match self.reader.read_line(&mut line) {
            Ok(0) => Err(Error::Corrupt {
                path: self.path.clone(),
                reason: "fewer prompts than the staging state records".into(),
            }),
            Ok(_) => {
                if line.ends_with('\n') {
                    line.pop();
                }
                Ok(line)
            }
            Err(e) => Err(Error::io(&self.path, e)),
        })
    }
}

/// An empty staging directory `<parent>/.<name><suffix>` for `out` (a leftover one is removed).
pub(crate) fn fresh_staging(out: &Path, suffix: &str) -> Result<PathBuf> {
    let staging = sibling_path(out, suffix)?;
    remove_dir_if_exists(&staging)?;
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    Ok(staging)
}

fn remove_dir_if_exists(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}

fn open_for_append(path: &Path, expected: u64) -> Result<File> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len < expected {
        return Err(Error::Size {
            path: path.to_path_buf(),
            expected,
            found: len,
        });
    }
    f.set_len(expected).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
    Ok(f)
}

impl IndexWriter {
    /// The staging directory a build of `out` uses: `<parent>/.<name>.knn-staging`.
    ///
    /// # Errors
    /// `out` has no file name.
    pub fn staging_dir_for(out: impl AsRef<Path>) -> Result<PathBuf> {
        staging_path(out.as_ref())
    }

    /// Whether an interrupted build of `out` left a staging directory to resume.
    pub fn has_staging(out: impl AsRef<Path>) -> bool {
        staging_path(out.as_ref()).is_ok_and(|s| s.join(STAGING_FILE).is_file())
    }

    /// Start a fresh build for `out` (discarding any previous staging directory for it),
    /// taking its [`BuildLock`].
    pub fn create(out: impl AsRef<Path>, config: IndexConfig) -> Result<Self> {
        Self::create_locked(BuildLock::acquire(out)?, config)
    }

    /// [`IndexWriter::create`] under a lock the caller already holds (the output is the lock's).
    pub fn create_locked(lock: BuildLock, config: IndexConfig) -> Result<Self> {
        config.validate()?;
        let out = lock.out().to_path_buf();
        let staging = staging_path(&out)?;
        remove_dir_if_exists(&staging)?;
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        let create = |name: &str| {
            let p = staging.join(name);
            File::create(&p).map_err(|e| Error::io(&p, e))
        };
        let mut files = Files {
            keys: create(STAGED_KEYS_FILE)?,
            ids: create(IDS_FILE)?,
            prompts: create(PROMPTS_FILE)?,
            offsets: create(OFFSETS_FILE)?,
            targets: create(TARGETS_FILE)?,
        };
        let p = staging.join(OFFSETS_FILE);
        files
            .offsets
            .write_all(&0u64.to_le_bytes())
            .and_then(|_| files.offsets.sync_all())
            .map_err(|e| Error::io(&p, e))?;
        let me = IndexWriter {
            out,
            staging,
            state: StagingState {
                format: STAGING_FORMAT.into(),
                format_version: FORMAT_VERSION,
                config,
                rows: 0,
                prompt_bytes: 0,
                finished: false,
                shard: None,
            },
            files: Some(files),
            _lock: lock,
        };
        me.save_state()?;
        Ok(me)
    }

    /// Continue an interrupted build for `out` with the same `config`, or start a fresh one if
    /// there is none. Check [`IndexWriter::len`] to know how many rows are already in.
    ///
    /// Fails (naming `staging.json`) if the staging directory was made with another config;
    /// use [`IndexWriter::create`] to discard it.
    pub fn resume(out: impl AsRef<Path>, config: IndexConfig) -> Result<Self> {
        Self::resume_locked(BuildLock::acquire(out)?, config)
    }

    /// [`IndexWriter::resume`] under a lock the caller already holds (the output is the lock's).
    pub fn resume_locked(lock: BuildLock, config: IndexConfig) -> Result<Self> {
        let out = lock.out().to_path_buf();
        let staging = staging_path(&out)?;
        let state_path = staging.join(STAGING_FILE);
        let bytes = match std::fs::read(&state_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Self::create_locked(lock, config);
            }
            Err(e) => return Err(Error::io(&state_path, e)),
        };
        let state: StagingState = serde_json::from_slice(&bytes)
            .map_err(|e| Error::manifest(&state_path, e.to_string()))?;
        if state.format != STAGING_FORMAT || state.format_version != FORMAT_VERSION {
            return Err(Error::manifest(
                &state_path,
                "not a staging state of this format version",
            ));
        }
        if state.config != config {
            return Err(Error::manifest(
                &state_path,
                format!(
                    "the interrupted build used another config ({:?}); start over with IndexWriter::create",
                    state.config
                ),
            ));
        }
        let files = if state.finished {
            None
        } else {
            let c = &state.config;
            let n = state.rows;
            Some(Files {
                keys: open_for_append(&staging.join(STAGED_KEYS_FILE), n * c.key_dim as u64 * 4)?,
                ids: open_for_append(&staging.join(IDS_FILE), n * 8)?,
                prompts: open_for_append(&staging.join(PROMPTS_FILE), state.prompt_bytes)?,
                offsets: open_for_append(&staging.join(OFFSETS_FILE), (n + 1) * 8)?,
                targets: open_for_append(&staging.join(TARGETS_FILE), n * c.target_dim as u64 * 4)?,
            })
        };
        Ok(IndexWriter {
            out,
            staging,
            state,
            files,
            _lock: lock,
        })
    }

    fn save_state(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        write_atomic(&self.staging.join(STAGING_FILE), &json)
    }

    /// Marks this build as shard `info.index` of `info.count` of a sharded build; recorded in
    /// the manifest by [`IndexWriter::finish`] (call it once the whole corpus was read, when its
    /// fingerprint is known).
    pub fn set_shard(&mut self, info: ShardInfo) -> Result<()> {
        if info.count == 0 || info.index >= info.count {
            return Err(Error::InvalidArgument(format!(
                "shard {}/{} does not exist (shards are numbered 0..count)",
                info.index, info.count
            )));
        }
        self.state.shard = Some(info);
        self.save_state()
    }

    /// Rows appended (and durable) so far.
    pub fn len(&self) -> u64 {
        self.state.rows
    }

    /// Whether no row was appended yet.
    pub fn is_empty(&self) -> bool {
        self.state.rows == 0
    }

    /// The build's config.
    pub fn config(&self) -> &IndexConfig {
        &self.state.config
    }

    /// The staging directory.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// The prompts appended so far (by this writer or the interrupted build it resumed), in
    /// row order, read back from the staging directory: what a resuming builder compares with
    /// its corpus.
    pub fn staged_prompts(&self) -> Result<StagedPrompts> {
        let path = self.staging.join(PROMPTS_FILE);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(StagedPrompts {
            path,
            reader: std::io::BufReader::new(file),
            remaining: self.state.rows,
        })
    }

    /// Append a chunk: `ids.len()` rows, keys row-major `key_dim` wide (raw; normalised here),
    /// one prompt per row, targets row-major `target_dim` wide (stored as given). Durable when
    /// this returns.
    pub fn append<S: AsRef<str>>(
        &mut self,
        ids: &[u64],
        keys: &[f32],
        prompts: &[S],
        targets: &[f32],
    ) -> Result<()> {
        let c = &self.state.config;
        let n = ids.len();
        let check = |what, expected: usize, found: usize| {
            if expected == found {
                Ok(())
            } else {
                Err(Error::Dimension {
                    what,
                    expected,
                    found,
                })
            }
        };
        check("keys (n × key_dim floats)", n * c.key_dim, keys.len())?;
        check(
            "targets (n × target_dim floats)",
            n * c.target_dim,
            targets.len(),
        )?;
        check("prompts (one per id)", n, prompts.len())?;
        if let Some(row) = targets
            .chunks_exact(c.target_dim)
            .position(|r| r.iter().any(|x| !x.is_finite()))
        {
            return Err(Error::NonFinite {
                what: "target",
                row,
            });
        }
        let keys = normalized_rows(keys, c.key_dim, "key")?;
        let staging = self.staging.clone();
        let Some(files) = self.files.as_mut() else {
            return Err(Error::InvalidArgument(
                "this build is already finished".into(),
            ));
        };
        let mut text = Vec::new();
        let mut offsets = Vec::with_capacity(n * 8);
        let mut end = self.state.prompt_bytes;
        for p in prompts {
            text.extend_from_slice(p.as_ref().as_bytes());
            text.push(b'\n');
            end = self.state.prompt_bytes + text.len() as u64;
            offsets.extend_from_slice(&end.to_le_bytes());
        }
        let id_bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        let writes: [(&mut File, &[u8], &str); 5] = [
            (
                &mut files.keys,
                bytemuck::cast_slice(&keys),
                STAGED_KEYS_FILE,
            ),
            (&mut files.ids, &id_bytes, IDS_FILE),
            (&mut files.prompts, &text, PROMPTS_FILE),
            (&mut files.offsets, &offsets, OFFSETS_FILE),
            (
                &mut files.targets,
                bytemuck::cast_slice(targets),
                TARGETS_FILE,
            ),
        ];
        for (f, bytes, name) in writes {
            f.write_all(bytes)
                .and_then(|_| f.sync_data())
                .map_err(|e| Error::io(staging.join(name), e))?;
        }
        self.state.rows += n as u64;
        self.state.prompt_bytes = end;
        self.save_state()
    }

    /// Build the FAISS index over everything appended, write the manifest, and atomically put
    /// the directory in place at the output path (replacing any previous index there).
    /// Returns the manifest written.
    pub fn finish(mut self) -> Result<Manifest> {
        if !self.state.finished {
            self.build()?;
        }
        commit(&self.staging, &self.out, MANIFEST_FILE)?;
        Manifest::read(&self.out)
    }

    /// Discard the staging directory.
    pub fn abort(self) -> Result<()> {
        remove_dir_if_exists(&self.staging)
    }

    /// Everything of `finish` but the final swap: afterwards the staging directory holds a
    /// complete index and `staging.json` says so.
    pub(crate) fn build(&mut self) -> Result<()> {
        self.files = None; // close handles (data was fsynced per chunk)
        let c = self.state.config.clone();
        let n = self.state.rows;
        let nu = usize::try_from(n).map_err(|_| Error::InvalidArgument("too many rows".into()))?;
        let staging = self.staging.clone();

        let keys = MappedF32::open(&staging.join(STAGED_KEYS_FILE), n * c.key_dim as u64)?;
        let trained = c.trained.as_ref().map(TrainedQuantizer::open).transpose()?;
        if let Some(t) = &trained {
            c.check_trained(t)?;
        }
        let index = build_key_index(keys.as_slice(), &c, trained.as_ref(), nu)?;
        index.write_faiss(&staging.join(KEYS_FILE))?;
        drop(keys);

        // id -> row table
        let ids = MappedU64::open(&staging.join(IDS_FILE), n)?;
        write_id_lookup(&staging.join(ID_LOOKUP_FILE), ids.as_slice())?;
        let kp = staging.join(KEYS_FILE);
        File::open(&kp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&kp, e))?;
        if !c.targets.is_f32() {
            let staged = MappedF32::open(&staging.join(TARGETS_FILE), n * c.target_dim as u64)?;
            let mut w = TargetsWriter::create(&staging, c.targets)?;
            for row in staged.as_slice().chunks_exact(c.target_dim) {
                w.push(row)?;
            }
            w.finish()?;
        }

        seal_directory(
            &staging,
            SealedIndex {
                count: n,
                config: &c,
                faiss_factory: index.factory(),
                search_defaults: index.default_params(),
                shard: self.state.shard.clone(),
                trained_xxh3: trained.map(|t| t.manifest().file.xxh3.clone()),
            },
        )?;
        self.state.finished = true;
        self.save_state()?;
        let sk = staging.join(STAGED_KEYS_FILE);
        std::fs::remove_file(&sk).map_err(|e| Error::io(&sk, e))?;
        if !c.targets.is_f32() {
            // The staged f32 targets, now encoded.
            let st = staging.join(TARGETS_FILE);
            std::fs::remove_file(&st).map_err(|e| Error::io(&st, e))?;
        }
        sync_dir(&staging)
    }
}

/// The FAISS index over `keys` (normalised, row-major): added to the trained quantizer when
/// given, else built from `config.spec` and trained on a strided sample of the keys if needed.
pub(crate) fn build_key_index(
    keys: &[f32],
    config: &IndexConfig,
    trained: Option<&TrainedQuantizer>,
    n: usize,
) -> Result<KeyIndex> {
    let mut index = match trained {
        Some(t) => t.empty_index()?,
        None => KeyIndex::new(config.key_dim, &config.spec, n)?,
    };
    if !index.is_trained() {
        if n == 0 {
            return Err(Error::Spec {
                spec: config.spec.to_string(),
                reason: "needs training data and the index is empty".into(),
            });
        }
        let sample = strided_sample(
            keys,
            config.key_dim,
            training_sample_size(index.factory(), n),
        );
        let s = sample.len() / config.key_dim;
        index.train_normalized(&sample).map_err(|e| Error::Spec {
            spec: index.factory().to_string(),
            reason: format!("training on {s} keys failed: {e}"),
        })?;
    }
    index.add_normalized(keys)?;
    Ok(index)
}

/// Writes `id_lookup.u64` (`(id, row)` pairs sorted by id) for the row -> id table `ids`;
/// refuses duplicate ids.
pub(crate) fn write_id_lookup(path: &Path, ids: &[u64]) -> Result<()> {
    let mut pairs: Vec<(u64, u64)> = ids
        .iter()
        .enumerate()
        .map(|(row, &id)| (id, row as u64))
        .collect();
    pairs.sort_unstable();
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::DuplicateId(w[0].0));
    }
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    for (id, row) in &pairs {
        w.write_all(&id.to_le_bytes())
            .and_then(|_| w.write_all(&row.to_le_bytes()))
            .map_err(|e| Error::io(path, e))?;
    }
    let f = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// What the manifest of a finished directory records besides the files' checksums.
pub(crate) struct SealedIndex<'a> {
    pub(crate) count: u64,
    pub(crate) config: &'a IndexConfig,
    pub(crate) faiss_factory: &'a str,
    pub(crate) search_defaults: SearchParams,
    pub(crate) shard: Option<ShardInfo>,
    pub(crate) trained_xxh3: Option<String>,
}

/// Hashes every data file of `dir` and writes its manifest.
pub(crate) fn seal_directory(dir: &Path, index: SealedIndex<'_>) -> Result<Manifest> {
    let mut files = std::collections::BTreeMap::new();
    for name in crate::manifest::data_files(index.config.targets) {
        let entry: FileEntry = hash_file(&dir.join(name))?;
        files.insert(name.to_string(), entry);
    }
    let c = index.config;
    let mut manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        count: index.count,
        key_dim: c.key_dim,
        target_dim: c.target_dim,
        metric: METRIC.into(),
        keys_normalized: true,
        spec: c.spec.to_string(),
        faiss_factory: index.faiss_factory.to_string(),
        search_defaults: index.search_defaults,
        key_model: c.key_model.clone(),
        target_model: c.target_model.clone(),
        files,
        created_by: format!("knn-index {}", env!("CARGO_PKG_VERSION")),
        shard: index.shard,
        target_encoding: c.targets,
        trained_xxh3: index.trained_xxh3,
        manifest_xxh3: String::new(),
    };
    manifest.seal()?;
    manifest.write(dir)?;
    Ok(manifest)
}

/// Swap the finished staging directory (it holds `marker`, the file written last) into `out`.
pub(crate) fn commit(staging: &Path, out: &Path, marker: &str) -> Result<()> {
    if !staging.join(marker).exists() {
        return Err(Error::Missing {
            path: staging.join(marker),
        });
    }
    match std::fs::symlink_metadata(out) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "{}: exists and is not a directory",
                    out.display()
                )));
            }
            if sys::exchange(staging, out).map_err(|e| Error::io(out, e))? {
                // `staging` now holds the previous index.
                let _ = std::fs::remove_file(out.join(STAGING_FILE));
                let _ = std::fs::remove_dir_all(staging);
            } else {
                let backup = backup_path(out)?;
                remove_dir_if_exists(&backup)?;
                std::fs::rename(out, &backup).map_err(|e| Error::io(out, e))?;
                std::fs::rename(staging, out).map_err(|e| Error::io(staging, e))?;
                let _ = std::fs::remove_file(out.join(STAGING_FILE));
                let _ = std::fs::remove_dir_all(&backup);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::rename(staging, out).map_err(|e| Error::io(staging, e))?;
            let _ = std::fs::remove_file(out.join(STAGING_FILE));
        }
        Err(e) => return Err(Error::io(out, e)),
    }
    let parent = out.parent().unwrap_or(Path::new(""));
    sync_dir(parent)
}

/// Build an index directory in one call: [`IndexWriter::create`], one
/// [`IndexWriter::append`], [`IndexWriter::finish`].
pub fn build_index<S: AsRef<str>>(
    out: impl AsRef<Path>,
    config: IndexConfig,
    ids: &[u64],
    keys: &[f32],
    prompts: &[S],
    targets: &[f32],
) -> Result<Manifest> {
    let mut w = IndexWriter::create(out, config)?;
    w.append(ids, keys, prompts, targets)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PromptIndex;

    fn config() -> IndexConfig {
        IndexConfig::new(4, 2, IndexSpec::Exact).with_models("k", "t")
    }

    #[test]
    fn crash_after_build_before_swap_then_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        build_index(
            &out,
            config(),
            &[1],
            &[1.0, 0.0, 0.0, 0.0],
            &["old"],
            &[0.5, 0.5],
        )
        .unwrap();

        let mut w = IndexWriter::create(&out, config()).unwrap();
        w.append(
            &[5, 6],
            &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0],
            &["a", "b"],
            &[1.0; 4],
        )
        .unwrap();
        w.build().unwrap();
        drop(w); // "killed" between the build and the swap
        assert_eq!(PromptIndex::open(&out).unwrap().prompt(1).unwrap(), "old");

        let w = IndexWriter::resume(&out, config()).unwrap();
        assert_eq!(w.len(), 2);
        w.finish().unwrap();
        let idx = PromptIndex::open(&out).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.prompt(6).unwrap(), "b");
        assert!(!staging_path(&out).unwrap().exists());
        assert!(!out.join(STAGING_FILE).exists());
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let mut first = IndexWriter::create(&out, config()).unwrap();
        first
            .append(&[1], &[1.0, 0.0, 0.0, 0.0], &["a\tb"], &[0.5, 0.5])
            .unwrap();
        for second in [
            IndexWriter::create(&out, config()),
            IndexWriter::resume(&out, config()),
        ] {
            let err = second.unwrap_err();
            assert!(matches!(err, Error::Locked { .. }), "{err}");
            assert!(err.to_string().contains("another build"), "{err}");
        }
        // The first build's staging is intact and readable back.
        let staged: Vec<String> = first
            .staged_prompts()
            .unwrap()
            .map(|p| p.unwrap())
            .collect();
        assert_eq!(staged, ["a\tb"]);
        drop(first);
        // Released (and the lock file removed) with the writer: a resume continues the build.
        assert!(!tmp.path().join(".idx.knn-lock").exists());
        assert!(IndexWriter::has_staging(&out));
        let w = IndexWriter::resume(&out, config()).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn sample_size() {
        assert_eq!(training_sample_size("IVF316,Flat", 100_000), 80_896);
        assert_eq!(training_sample_size("IVF10,PQ8", 1000), 1000);
        assert_eq!(
            training_sample_size("OPQ16,IVF4096,PQ16", 10_000_000),
            1_048_576
        );
    }
}
