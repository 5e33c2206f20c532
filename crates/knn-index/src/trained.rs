//! [`TrainedQuantizer`]: an IVF coarse quantizer (and product quantizer) trained once on a
//! sample, shared by every shard of a sharded build so that their inverted lists can be merged.
//!
//! A trained directory holds `trained.faiss` (the empty, trained FAISS index) and
//! `trained.json` ([`TrainedManifest`]: spec, factory string, search defaults, key model, the
//! file's size and xxh3, and the manifest's own xxh3). It is written to a staging directory and
//! renamed into place.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::{KeyIndex, is_ivf_factory, normalized_rows};
use crate::manifest::{FileEntry, hash_file, json_xxh3, sync_dir, write_atomic};
use crate::spec::{IndexSpec, SearchParams};

/// The trained (empty) FAISS index in a trained directory.
pub const TRAINED_FAISS_FILE: &str = "trained.faiss";
/// The manifest of a trained directory.
pub const TRAINED_MANIFEST_FILE: &str = "trained.json";
/// Value of [`TrainedManifest::format`].
pub const TRAINED_FORMAT: &str = "img2prompt-knn-trained";
const TRAINED_FORMAT_VERSION: u32 = 1;
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The content of `trained.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedManifest {
    /// Always [`TRAINED_FORMAT`].
    pub format: String,
    /// Format version at write time.
    pub format_version: u32,
    /// Width of the keys.
    pub key_dim: usize,
    /// The spec as requested (`ivf`, `ivf-pq` or a factory string).
    pub spec: String,
    /// The FAISS factory string trained.
    pub faiss_factory: String,
    /// Search knobs for the finished index (e.g. `nprobe` for the whole corpus).
    pub search_defaults: SearchParams,
    /// Keys the finished index is sized for (the whole corpus).
    pub expected_len: u64,
    /// Keys the quantizer was trained on.
    pub sample: u64,
    /// Identity of the model that made the keys.
    pub key_model: String,
    /// Size and xxh3 of `trained.faiss`.
    pub file: FileEntry,
    /// Writer, e.g. `knn-index 0.1.0`.
    pub created_by: String,
    /// xxh3 of this manifest's JSON with this field set to `""`.
    pub manifest_xxh3: String,
}

impl TrainedManifest {
    fn self_hash(&self) -> Result<String> {
        let mut copy = self.clone();
        copy.manifest_xxh3 = String::new();
        json_xxh3(&copy)
    }
}

/// A trained quantizer directory, checked on open. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct TrainedQuantizer {
    dir: PathBuf,
    manifest: TrainedManifest,
}

impl TrainedQuantizer {
    /// Trains `spec` for an index of `expected_len` keys on `sample` (row-major raw keys of
    /// width `key_dim`, L2-normalised here) and writes the trained directory `out` (replacing
    /// one that exists there, only once the new one is complete).
    ///
    /// # Errors
    /// A spec that is not IVF (`exact` and `hnsw` need no training: shards of those merge
    /// without it), an empty or non-finite sample, FAISS training errors, I/O errors.
    pub fn train(
        out: impl AsRef<Path>,
        key_dim: usize,
        spec: &IndexSpec,
        expected_len: u64,
        key_model: &str,
        sample: &[f32],
    ) -> Result<Self> {
        let out = out.as_ref();
        let n = usize::try_from(expected_len)
            .map_err(|_| Error::InvalidArgument(format!("{expected_len} keys is too many")))?;
        let mut index = KeyIndex::new(key_dim, spec, n)?;
        if !is_ivf_factory(index.factory()) {
            return Err(Error::Spec {
                spec: spec.to_string(),
                reason: format!(
                    "{} is not an IVF index: only IVF shards need a shared trained quantizer",
                    index.factory()
                ),
            });
        }
        let keys = normalized_rows(sample, key_dim, "training key")?;
        let rows = keys.len() / key_dim;
        if rows == 0 {
            return Err(Error::InvalidArgument(
                "the training sample is empty".into(),
            ));
        }
        index.train_normalized(&keys).map_err(|e| Error::Spec {
            spec: index.factory().to_string(),
            reason: format!("training on {rows} keys failed: {e}"),
        })?;

        let staging = crate::writer::fresh_staging(out, ".knn-training")?;
        let file = staging.join(TRAINED_FAISS_FILE);
        index.write_faiss(&file)?;
        std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&file, e))?;
        let mut manifest = TrainedManifest {
            format: TRAINED_FORMAT.into(),
            format_version: TRAINED_FORMAT_VERSION,
            key_dim,
            spec: spec.to_string(),
            faiss_factory: index.factory().to_string(),
            search_defaults: index.default_params(),
            expected_len,
            sample: rows as u64,
            key_model: key_model.to_string(),
            file: hash_file(&file)?,
            created_by: format!("knn-index {}", env!("CARGO_PKG_VERSION")),
            manifest_xxh3: String::new(),
        };
        manifest.manifest_xxh3 = manifest.self_hash()?;
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        write_atomic(&staging.join(TRAINED_MANIFEST_FILE), &json)?;
        sync_dir(&staging)?;
        crate::writer::commit(&staging, out, TRAINED_MANIFEST_FILE)?;
        Ok(TrainedQuantizer {
            dir: out.to_path_buf(),
            manifest,
        })
    }

    /// Opens a trained directory: manifest format and self-checksum, the FAISS file's size and
    /// xxh3. Every failure names the file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        use std::io::Read;
        let dir = dir.as_ref();
        let path = dir.join(TRAINED_MANIFEST_FILE);
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut bytes = Vec::new();
        f.take(MAX_MANIFEST_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        let manifest: TrainedManifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::manifest(&path, format!("not a trained quantizer manifest: {e}"))
        })?;
        if manifest.format != TRAINED_FORMAT || manifest.format_version != TRAINED_FORMAT_VERSION {
            return Err(Error::manifest(
                &path,
                format!("not a {TRAINED_FORMAT} manifest of version {TRAINED_FORMAT_VERSION}"),
            ));
        }
        let found = manifest.self_hash()?;
        if found != manifest.manifest_xxh3 {
            return Err(Error::Checksum {
                path,
                expected: manifest.manifest_xxh3.clone(),
                found,
            });
        }
        let file = dir.join(TRAINED_FAISS_FILE);
        let entry = hash_file(&file)?;
        if entry.bytes != manifest.file.bytes {
            return Err(Error::Size {
                path: file,
                expected: manifest.file.bytes,
                found: entry.bytes,
            });
        }
        if entry.xxh3 != manifest.file.xxh3 {
            return Err(Error::Checksum {
                path: file,
                expected: manifest.file.xxh3.clone(),
                found: entry.xxh3,
            });
        }
        Ok(TrainedQuantizer {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &TrainedManifest {
        &self.manifest
    }

    /// The spec it was trained for, parsed.
    pub fn spec(&self) -> IndexSpec {
        let Ok(spec) = self.manifest.spec.parse::<IndexSpec>();
        spec
    }

    /// A fresh, empty, trained index to add keys to.
    pub(crate) fn empty_index(&self) -> Result<KeyIndex> {
        let m = &self.manifest;
        let index = KeyIndex::read_writable(
            &self.dir.join(TRAINED_FAISS_FILE),
            m.faiss_factory.clone(),
            m.search_defaults,
            m.key_dim,
        )?;
        if !index.is_trained() || !index.is_empty() {
            return Err(Error::corrupt(
                self.dir.join(TRAINED_FAISS_FILE),
                "not an empty trained index",
            ));
        }
        Ok(index)
    }
}
