//! CLIP image embeddings of image-prompt pairs, cached beside the index so that training the
//! head again on the same pairs does not re-encode their images.
//!
//! The cache is one file ([`IMAGE_CACHE_FILE`] in the index directory by default), written
//! atomically (temp file, then rename):
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `I2PIMGC1` |
//! | 8 | header length `h`, u64 LE |
//! | `h` | header JSON: `{"model": "name@fingerprint", "dim": d, "count": n}` |
//! | `16 n` | keys: xxh3-128 of each image file's bytes, u128 LE, in row order |
//! | `4 n d` | embeddings, f32 LE, row-major |
//! | 8 | xxh3-64 of everything above, u64 LE |
//!
//! An entry is keyed by the image file's *content* (its xxh3-128), so renaming or touching a
//! file keeps it and editing the pixels drops it; the whole cache is dropped when the embedder's
//! [`ModelId`] differs from the one recorded (another CLIP checkpoint), and ignored when its
//! checksum or layout is wrong (a damaged file is re-encoded, never trusted). The file written
//! after a run holds exactly that run's images.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::components::ImageEmbedder;
use crate::error::{Error, Result};
use crate::eval::EvalPair;
use crate::model_id::ModelId;

/// The cache's file name inside an index directory.
pub const IMAGE_CACHE_FILE: &str = "image-embeddings.cache";

const MAGIC: &[u8; 8] = b"I2PIMGC1";
/// Largest header read (the header is a few dozen bytes of JSON).
const MAX_HEADER: u64 = 1 << 20;
/// Images decoded and encoded at once (bounds the decoded pixels held in memory).
const DECODE_CHUNK: usize = 256;

#[derive(Serialize, Deserialize)]
struct Header {
    model: String,
    dim: usize,
    count: usize,
}

/// What happened to the cache file in [`embed_pair_images`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheState {
    /// No cache was asked for.
    Off,
    /// There was no cache file.
    Missing,
    /// The cache file was read and its entries used where the images matched.
    Used,
    /// The cache file was made with another image model: dropped.
    OtherModel,
    /// The cache file failed its checksum or layout check: dropped.
    Damaged,
}

/// The pairs' image embeddings, and how they were obtained.
#[derive(Clone, Debug, PartialEq)]
pub struct PairImageEmbeddings {
    /// One row per pair, in pair order, `dim` floats each (as the embedder returns them).
    pub embeddings: Vec<f32>,
    /// Width of a row.
    pub dim: usize,
    /// Distinct images run through the embedder.
    pub encoded: usize,
    /// Distinct images taken from the cache.
    pub reused: usize,
    /// What became of the cache file.
    pub cache: CacheState,
}

/// The xxh3-128 of a file's bytes (streamed).
fn content_key(path: &Path) -> std::io::Result<u128> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.digest128())
}

/// Reads a cache file: `Ok(None)` when missing; the state and entries otherwise.
fn read_cache(path: &Path, model: &ModelId) -> Result<(CacheState, HashMap<u128, Vec<f32>>)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((CacheState::Missing, HashMap::new()));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    Ok(match parse_cache(&bytes) {
        None => (CacheState::Damaged, HashMap::new()),
        Some((header, _)) if !ModelId::parse(&header.model).matches(model) => {
            (CacheState::OtherModel, HashMap::new())
        }
        Some((_, entries)) => (CacheState::Used, entries),
    })
}

/// Parses and checks a cache file's bytes; `None` when anything is off.
fn parse_cache(bytes: &[u8]) -> Option<(Header, HashMap<u128, Vec<f32>>)> {
    let body_len = bytes.len().checked_sub(8)?;
    let (body, sum) = bytes.split_at(body_len);
    if xxh3_64(body).to_le_bytes() != sum {
        return None;
    }
    if body.get(..8)? != MAGIC {
        return None;
    }
    let h = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    if h > MAX_HEADER {
        return None;
    }
    let h = h as usize;
    let header: Header = serde_json::from_slice(body.get(16..16 + h)?).ok()?;
    let rest = body.get(16 + h..)?;
    let key_bytes = header.count.checked_mul(16)?;
    let row_bytes = header.dim.checked_mul(4)?;
    if header.dim == 0
        || rest.len() != key_bytes.checked_add(header.count.checked_mul(row_bytes)?)?
    {
        return None;
    }
    let (keys, rows) = rest.split_at(key_bytes);
    let entries = keys
        .chunks_exact(16)
        .zip(rows.chunks_exact(row_bytes))
        .map(|(k, r)| {
            let key = u128::from_le_bytes(k.try_into().unwrap_or([0; 16]));
            let row = r
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (key, row)
        })
        .collect();
    Some((header, entries))
}

/// Writes the cache file for `keys` / `rows` (parallel, `dim` wide) atomically.
fn write_cache(
    path: &Path,
    model: &ModelId,
    dim: usize,
    keys: &[u128],
    rows: &[f32],
) -> Result<()> {
    let header = serde_json::to_vec(&Header {
        model: model.to_string(),
        dim,
        count: keys.len(),
    })
    .map_err(|e| Error::invalid("image embedding cache", e.to_string()))?;
    let mut bytes = Vec::with_capacity(24 + header.len() + keys.len() * 16 + rows.len() * 4 + 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for k in keys {
        bytes.extend_from_slice(&k.to_le_bytes());
    }
    for x in rows {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let sum = xxh3_64(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    crate::atomic::write_file_atomic(path, &bytes)
}

/// The error for a pair whose image cannot be read or decoded: the pairs file and line, then
/// the image and what is wrong with it.
fn pair_error(pairs_file: &Path, pair: &EvalPair, message: String) -> Error {
    Error::Input {
        path: pairs_file.to_owned(),
        line: (pair.line > 0).then_some(pair.line),
        message,
    }
}

/// Embeds the images of `pairs` with `embedder`, reusing the entries of the cache file `cache`
/// (when given) whose image content and model match, and rewriting it afterwards (atomically)
/// with exactly these images. `progress(done, total)` is called as distinct images are
/// encoded. `pairs_file` names the pairs in errors: a missing, unreadable or undecodable image
/// is an [`Error::Input`] with the pairs file and the pair's line.
pub fn embed_pair_images(
    embedder: &dyn ImageEmbedder,
    pairs: &[EvalPair],
    pairs_file: &Path,
    cache: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PairImageEmbeddings> {
    let dim = embedder.dim();
    let keys: Vec<u128> = pairs
        .par_iter()
        .map(|pair| {
            content_key(&pair.image).map_err(|e| {
                pair_error(
                    pairs_file,
                    pair,
                    format!("cannot read image {}: {e}", pair.image.display()),
                )
            })
        })
        .collect::<Result<_>>()?;
    let (state, mut known) = match cache {
        Some(path) => read_cache(path, embedder.model_id())?,
        None => (CacheState::Off, HashMap::new()),
    };
    known.retain(|_, row| row.len() == dim);
    // Distinct images not in the cache, each once (the first pair that shows it).
    let mut missing: Vec<usize> = Vec::new();
    let mut queued = std::collections::HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        if !known.contains_key(key) && queued.insert(*key) {
            missing.push(i);
        }
    }
    let reused = keys
        .iter()
        .filter(|k| known.contains_key(*k))
        .collect::<std::collections::HashSet<_>>()
        .len();
    let total = missing.len();
    let mut done = 0usize;
    for chunk in missing.chunks(DECODE_CHUNK) {
        let images: Vec<image::DynamicImage> = chunk
            .par_iter()
            .map(|&i| {
                let pair = &pairs[i];
                crate::decode_image_file(&pair.image)
                    .map_err(|e| pair_error(pairs_file, pair, e.to_string()))
            })
            .collect::<Result<_>>()?;
        let rows = embedder.embed_images(&images)?;
        if rows.len() != images.len() * dim {
            return Err(Error::Mismatch {
                what: format!("image embeddings of {}", embedder.model_id()),
                expected: format!("{} rows of {dim}", images.len()),
                found: format!("{} floats", rows.len()),
            });
        }
        for (&i, row) in chunk.iter().zip(rows.chunks_exact(dim)) {
            known.insert(keys[i], row.to_vec());
        }
        done += chunk.len();
        progress(done, total);
    }
    let mut embeddings = Vec::with_capacity(pairs.len() * dim);
    for key in &keys {
        let row = known.get(key).ok_or_else(|| {
            Error::Backend("image embedding cache: an image was neither cached nor encoded".into())
        })?;
        embeddings.extend_from_slice(row);
    }
    if let Some(path) = cache {
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<u128> = keys.iter().copied().filter(|k| seen.insert(*k)).collect();
        let mut rows = Vec::with_capacity(distinct.len() * dim);
        for key in &distinct {
            if let Some(row) = known.get(key) {
                rows.extend_from_slice(row);
            }
        }
        write_cache(path, embedder.model_id(), dim, &distinct, &rows)?;
    }
    Ok(PairImageEmbeddings {
        embeddings,
        dim,
        encoded: total,
        reused,
        cache: state,
    })
}

/// The default cache path of an index directory.
pub fn image_cache_path(index_dir: &Path) -> PathBuf {
    index_dir.join(IMAGE_CACHE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_bytes_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IMAGE_CACHE_FILE);
        let model = ModelId::new("clip", "00112233445566778899aabbccddeeff");
        write_cache(&path, &model, 2, &[7, 9], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let (state, entries) = read_cache(&path, &model).unwrap();
        assert_eq!(state, CacheState::Used);
        assert_eq!(entries[&9], vec![3.0, 4.0]);
        let other = ModelId::new("clip", "ffeeddccbbaa99887766554433221100");
        assert_eq!(read_cache(&path, &other).unwrap().0, CacheState::OtherModel);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 12] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_cache(&path, &model).unwrap().0, CacheState::Damaged);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read_cache(&path, &model).unwrap().0, CacheState::Missing);
    }
}
