//! `manifest.json`: what an index directory holds, and the checksums of its files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::spec::SearchParams;
use crate::targets::TargetEncoding;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Value of the manifest's `format` field.
pub const FORMAT_NAME: &str = "img2prompt-knn-index";
/// The only metric: inner product over L2-normalised vectors (cosine similarity).
pub const METRIC: &str = "inner_product";

/// Manifest file name.
pub const MANIFEST_FILE: &str = "manifest.json";
/// FAISS index (row labels), written by `faiss::write_index`.
pub const KEYS_FILE: &str = "keys.faiss";
/// Row → id table, `count` little-endian u64.
pub const IDS_FILE: &str = "ids.u64";
/// Id → row table, `count` pairs `(id, row)` of little-endian u64 sorted by id.
pub const ID_LOOKUP_FILE: &str = "id_lookup.u64";
/// Prompt texts, each followed by `\n`.
pub const PROMPTS_FILE: &str = "prompts.txt";
/// `count + 1` little-endian u64 byte offsets into `prompts.txt`.
pub const OFFSETS_FILE: &str = "prompt_offsets.u64";
/// Target vectors, `count × target_dim` little-endian f32, row-major.
pub const TARGETS_FILE: &str = "targets.f32";

/// The data files of an index directory with `f32` targets (besides the manifest); see
/// [`Manifest::data_files`] for any encoding.
pub const DATA_FILES: [&str; 6] = [
    KEYS_FILE,
    IDS_FILE,
    ID_LOOKUP_FILE,
    PROMPTS_FILE,
    OFFSETS_FILE,
    TARGETS_FILE,
];

const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Size and hash of one file of the index directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Size in bytes.
    pub bytes: u64,
    /// xxh3-64 of the content, 16 lowercase hex digits.
    pub xxh3: String,
}

/// The content of `manifest.json`.
///
/// Besides the data files' checksums, the manifest carries its own (`manifest_xxh3`, the xxh3
/// of its canonical JSON with that field empty), so a flipped byte in the manifest itself is
/// caught too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] at write time.
    pub format_version: u32,
    /// Number of rows (keys, ids, prompts, targets).
    pub count: u64,
    /// Width of the keys (the CLIP embedding).
    pub key_dim: usize,
    /// Width of the target vectors (the sentence embedding).
    pub target_dim: usize,
    /// Always [`METRIC`].
    pub metric: String,
    /// Whether keys were L2-normalised before indexing (always true for this format version).
    pub keys_normalized: bool,
    /// The spec as requested (`exact`, `hnsw`, `ivf`, `ivf-pq` or a factory string).
    pub spec: String,
    /// The FAISS `index_factory` string actually built.
    pub faiss_factory: String,
    /// Knobs used when a search does not set them.
    pub search_defaults: SearchParams,
    /// Name of the model that made the keys (free string given by the builder).
    pub key_model: String,
    /// Name of the model that made the targets (free string given by the builder).
    pub target_model: String,
    /// Size and checksum per data file name.
    pub files: BTreeMap<String, FileEntry>,
    /// Writer, e.g. `knn-index 0.1.0`.
    pub created_by: String,
    /// Set on a shard of a sharded build (see [`crate::merge_shards`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// How the target vectors are stored (`f32` when absent).
    #[serde(default, skip_serializing_if = "TargetEncoding::is_f32")]
    pub target_encoding: TargetEncoding,
    /// xxh3 of the trained quantizer file the keys were added to (a [`crate::TrainedQuantizer`]),
    /// when the build used one; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_xxh3: Option<String>,
    /// xxh3 of this manifest's canonical JSON with this field set to `""`.
    pub manifest_xxh3: String,
}

/// Where a shard sits in a sharded build, recorded in its manifest: which part of which corpus
/// it holds. [`crate::merge_shards`] checks these before writing one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// This shard's number, `0..count`.
    pub index: u32,
    /// How many shards the corpus was split into.
    pub count: u32,
    /// Prompts in the whole cleaned corpus (every shard's ids lie in `0..corpus_prompts`).
    pub corpus_prompts: u64,
    /// Fingerprint of the whole cleaned corpus (xxh3 of every cleaned prompt in order), the
    /// same in every shard of one build.
    pub corpus_xxh3: String,
}

/// Hex of an xxh3-64 digest.
pub(crate) fn hex(h: u64) -> String {
    format!("{h:016x}")
}

/// Hex xxh3 of `value`'s compact JSON: a manifest's self-checksum (taken with its own checksum
/// field emptied).
pub(crate) fn json_xxh3<T: Serialize>(value: &T) -> Result<String> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    Ok(hex(xxhash_rust::xxh3::xxh3_64(&bytes)))
}

/// Stream a file through xxh3; returns `(size, hex digest)`.
pub fn hash_file(path: &Path) -> Result<FileEntry> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileEntry {
        bytes,
        xxh3: hex(h.digest()),
    })
}

impl Manifest {
    fn self_hash(&self) -> Result<String> {
        let mut copy = self.clone();
        copy.manifest_xxh3 = String::new();
        json_xxh3(&copy)
    }

    /// Fill in `manifest_xxh3`.
    pub(crate) fn seal(&mut self) -> Result<()> {
        self.manifest_xxh3 = self.self_hash()?;
        Ok(())
    }

    /// Write `dir/manifest.json` (through a temp file + rename + fsync).
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Faiss(e.to_string()))?;
        write_atomic(&dir.join(MANIFEST_FILE), &json)
    }

    /// Read and check `dir/manifest.json`: format name and version, self-checksum, metric,
    /// dimensions, and that every data file is listed.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len > MAX_MANIFEST_BYTES {
            return Err(Error::manifest(&path, format!("{len} bytes is too large")));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        f.take(MAX_MANIFEST_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::manifest(&path, e.to_string()))?;
        if value.get("format").and_then(|v| v.as_str()) != Some(FORMAT_NAME) {
            return Err(Error::manifest(
                &path,
                format!("not a knn-index manifest (field \"format\" is not {FORMAT_NAME:?})"),
            ));
        }
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::manifest(&path, "missing format_version"))?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(Error::Version {
                path,
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        let m: Manifest =
            serde_json::from_value(value).map_err(|e| Error::manifest(&path, e.to_string()))?;
        let found = m.self_hash()?;
        if found != m.manifest_xxh3 {
            return Err(Error::Checksum {
                path,
                expected: m.manifest_xxh3.clone(),
                found,
            });
        }
        if m.metric != METRIC {
            return Err(Error::manifest(
                &path,
                format!("unsupported metric {:?}", m.metric),
            ));
        }
        if m.key_dim == 0 || m.target_dim == 0 {
            return Err(Error::manifest(&path, "key_dim and target_dim must be > 0"));
        }
        for name in m.data_files() {
            if !m.files.contains_key(name) {
                return Err(Error::manifest(&path, format!("no entry for {name}")));
            }
        }
        Ok(m)
    }

    /// The data files of this index directory (besides the manifest): keys, ids, id table,
    /// prompts, offsets, and the files of its target encoding.
    pub fn data_files(&self) -> Vec<&'static str> {
        data_files(self.target_encoding)
    }

    /// The recorded entry of a data file (present after [`Manifest::read`]).
    pub(crate) fn entry(&self, name: &str) -> FileEntry {
        self.files.get(name).cloned().unwrap_or(FileEntry {
            bytes: 0,
            xxh3: String::new(),
        })
    }
}

/// The data files of an index directory whose targets are stored in `encoding`.
pub(crate) fn data_files(encoding: TargetEncoding) -> Vec<&'static str> {
    let mut files: Vec<&'static str> = DATA_FILES
        .iter()
        .copied()
        .filter(|f| *f != TARGETS_FILE)
        .collect();
    files.extend_from_slice(encoding.files());
    files
}

/// Write `bytes` to `path` through `path.tmp` + fsync + rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsync a directory (so renames and creations in it are durable). No-op off Unix.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(d, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
