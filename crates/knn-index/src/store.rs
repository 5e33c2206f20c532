//! [`PromptIndex`]: a loaded index directory (keys + ids + payload), verified on open.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::keys::KeyIndex;
use crate::manifest::{
    ID_LOOKUP_FILE, IDS_FILE, KEYS_FILE, MANIFEST_FILE, Manifest, PROMPTS_FILE, hash_file,
};
use crate::mapped::MappedU64;
use crate::payload::PayloadStore;
use crate::spec::SearchParams;

/// How much [`PromptIndex::open_with`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Hash every file and compare with the manifest, and run the O(n) consistency checks
    /// (offsets, UTF-8, id table). On by default. Turning it off makes opening a huge trusted
    /// index fast (only sizes, manifest self-checksum and O(1) checks remain), but a flipped
    /// byte inside a file then goes unnoticed: payload accessors still never panic (they check
    /// bounds and UTF-8 per call), whereas a damaged `keys.faiss` is parsed by FAISS's C++
    /// reader, which is not hardened against malicious input.
    pub verify_checksums: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            verify_checksums: true,
        }
    }
}

impl LoadOptions {
    /// Options for a trusted index: no content hashing.
    pub fn trusted() -> Self {
        LoadOptions {
            verify_checksums: false,
        }
    }
}

/// One search result with its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour<'a> {
    /// The caller's id.
    pub id: u64,
    /// Cosine similarity to the query.
    pub score: f32,
    /// Row in the payload store.
    pub row: usize,
    /// The prompt text.
    pub prompt: &'a str,
    /// The target vector (`target_dim` floats): borrowed from the map for `f32` targets,
    /// decoded for compact ones.
    pub target: std::borrow::Cow<'a, [f32]>,
}

/// A loaded index directory: FAISS keys (in RAM), ids and payload (memory-mapped).
///
/// `Send + Sync`: search from many threads through `&PromptIndex` (see [`KeyIndex`] for FAISS's
/// guarantees). The memory-mapped files must not be modified by other programs while open
/// (this crate never modifies a finished directory in place: rebuilding writes a new directory
/// and swaps it in, and open maps keep the old files alive).
#[derive(Debug)]
pub struct PromptIndex {
    dir: PathBuf,
    manifest: Manifest,
    keys: KeyIndex,
    payload: PayloadStore,
    lookup: MappedU64,
}

impl PromptIndex {
    /// Open `dir` with full verification ([`LoadOptions::default`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, &LoadOptions::default())
    }

    /// Open `dir`, checking the manifest (format version, self-checksum, metric, dims), that
    /// every file exists with the recorded size and the size the dims imply, and with
    /// `verify_checksums` every file's xxh3 and the O(n) consistency of offsets and id tables.
    /// Every failure is an [`Error`] naming the file.
    pub fn open_with(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.join(MANIFEST_FILE).exists() && !dir.is_dir() {
            return Err(Error::Missing {
                path: dir.to_path_buf(),
            });
        }
        let manifest = Manifest::read(dir)?;
        let data_files = manifest.data_files();
        for &name in &data_files {
            let path = dir.join(name);
            let expected = manifest.entry(name);
            let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
            if meta.len() != expected.bytes {
                return Err(Error::Size {
                    path,
                    expected: expected.bytes,
                    found: meta.len(),
                });
            }
        }
        if opts.verify_checksums {
            for &name in &data_files {
                let path = dir.join(name);
                let expected = manifest.entry(name);
                let found = hash_file(&path)?;
                if found.xxh3 != expected.xxh3 {
                    return Err(Error::Checksum {
                        path,
                        expected: expected.xxh3,
                        found: found.xxh3,
                    });
                }
            }
        }
        let count = manifest.count;
        let payload = PayloadStore::open(
            dir,
            count,
            manifest.target_dim,
            manifest.target_encoding,
            manifest.entry(PROMPTS_FILE).bytes,
        )?;
        let ids = MappedU64::open(&dir.join(IDS_FILE), count)?;
        let lookup = MappedU64::open(&dir.join(ID_LOOKUP_FILE), count.saturating_mul(2))?;
        if opts.verify_checksums {
            payload.verify()?;
            verify_lookup(&ids, &lookup)?;
        }
        let keys = KeyIndex::load(
            &dir.join(KEYS_FILE),
            manifest.faiss_factory.clone(),
            manifest.search_defaults,
            manifest.key_dim,
            ids,
        )?;
        Ok(PromptIndex {
            dir: dir.to_path_buf(),
            manifest,
            keys,
            payload,
            lookup,
        })
    }

    /// The directory this index was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Fail with [`Error::Mismatch`] unless the index was built with these model names.
    pub fn check_models(&self, key_model: &str, target_model: &str) -> Result<()> {
        let path = self.dir.join(MANIFEST_FILE);
        for (what, expected, found) in [
            ("key model", key_model, &self.manifest.key_model),
            ("target model", target_model, &self.manifest.target_model),
        ] {
            if expected != found {
                return Err(Error::Mismatch {
                    path,
                    what,
                    expected: expected.to_string(),
                    found: found.clone(),
                });
            }
        }
        Ok(())
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// The FAISS key index.
    pub fn keys(&self) -> &KeyIndex {
        &self.keys
    }

    /// The payload store (by row).
    pub fn payload(&self) -> &PayloadStore {
        &self.payload
    }

    /// Top-`k` `(id, score)` per query with default knobs; see [`KeyIndex::search_with`].
    pub fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<(u64, f32)>>> {
        self.keys.search(queries, k)
    }

    /// Top-`k` `(id, score)` per query, best first; see [`KeyIndex::search_with`].
    pub fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<(u64, f32)>>> {
        self.keys.search_with(queries, k, params)
    }

    /// Top-`k` neighbours per query with their prompts and target vectors, best first.
    pub fn neighbours(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Neighbour<'_>>>> {
        let rows = self.keys.search_rows(queries, k, params)?;
        rows.into_iter()
            .map(|hits| {
                hits.into_iter()
                    .map(|(row, score)| {
                        Ok(Neighbour {
                            id: self.id_at(row).ok_or_else(|| {
                                Error::Faiss(format!("FAISS returned row {row} beyond the index"))
                            })?,
                            score,
                            row,
                            prompt: self.payload.prompt(row)?,
                            target: self.payload.target(row)?,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// For each sentence-space query (flat rows, `target_dim` wide), the id of the prompt whose
    /// stored target is most similar to it by cosine, with that cosine: an exhaustive scan of
    /// the whole payload (see [`PayloadStore::nearest_rows`]), independent of the key search.
    pub fn nearest_by_target(&self, queries: &[f32]) -> Result<Vec<Option<(u64, f32)>>> {
        self.payload
            .nearest_rows(queries)?
            .into_iter()
            .map(|found| {
                found
                    .map(|(row, cosine)| {
                        let id = self.id_at(row).ok_or_else(|| {
                            Error::corrupt(self.dir.join(IDS_FILE), format!("no id for row {row}"))
                        })?;
                        Ok((id, cosine))
                    })
                    .transpose()
            })
            .collect()
    }

    /// The ids and stored keys of rows `start..start + n`: `(ids, keys)` with `keys` row-major,
    /// `n * key_dim` floats, row `i` of both belonging to row `start + i` of the payload (so
    /// `payload().targets()` rows line up). Keys are the L2-normalised keys as stored, exact
    /// except for quantised specs (PQ/SQ: approximate); see [`KeyIndex::reconstruct_rows`].
    pub fn keys_in_rows(&self, start: usize, n: usize) -> Result<(Vec<u64>, Vec<f32>)> {
        let keys = self.keys.reconstruct_rows(start, n)?;
        let ids = (start..start + n)
            .map(|row| {
                self.id_at(row).ok_or_else(|| {
                    Error::corrupt(self.dir.join(IDS_FILE), format!("no id for row {row}"))
                })
            })
            .collect::<Result<Vec<u64>>>()?;
        Ok((ids, keys))
    }

    /// The id of `row`.
    pub fn id_at(&self, row: usize) -> Option<u64> {
        self.keys.id_of_row(row)
    }

    /// The row of `id` (binary search in the memory-mapped id table).
    pub fn row_of(&self, id: u64) -> Option<usize> {
        let pairs = self.lookup.as_slice();
        let n = pairs.len() / 2;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let mid_id = pairs[2 * mid];
            if mid_id < id {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < n && pairs[2 * lo] == id)
            .then(|| usize::try_from(pairs[2 * lo + 1]).ok())
            .flatten()
            .filter(|&row| row < self.len())
    }

    /// The prompt text of `id`.
    pub fn prompt(&self, id: u64) -> Result<&str> {
        let row = self.row_of(id).ok_or(Error::UnknownId(id))?;
        self.payload.prompt(row)
    }

    /// The target vector of `id` (decoded if the index stores compact targets).
    pub fn target(&self, id: u64) -> Result<std::borrow::Cow<'_, [f32]>> {
        let row = self.row_of(id).ok_or(Error::UnknownId(id))?;
        self.payload.target(row)
    }
}

/// `id_lookup.u64` must be `(id, row)` pairs strictly increasing by id, and agree with `ids.u64`.
fn verify_lookup(ids: &MappedU64, lookup: &MappedU64) -> Result<()> {
    let ids = ids.as_slice();
    let pairs = lookup.as_slice();
    let bad = |reason: String| Error::corrupt(lookup.path(), reason);
    let mut prev: Option<u64> = None;
    for pair in pairs.chunks_exact(2) {
        let (id, row) = (pair[0], pair[1]);
        if prev.is_some_and(|p| p >= id) {
            return Err(bad(format!("ids not strictly increasing at id {id}")));
        }
        prev = Some(id);
        let ok = usize::try_from(row)
            .ok()
            .and_then(|r| ids.get(r))
            .is_some_and(|&x| x == id);
        if !ok {
            return Err(bad(format!(
                "entry ({id}, row {row}) disagrees with {IDS_FILE}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{IndexConfig, IndexSpec, PromptIndex, build_index, l2_normalize, synth};

    /// The row of `targets` (`td` wide) most similar to `q` by cosine, in f64, and that cosine;
    /// the lowest row on a tie.
    fn brute_nearest(targets: &[f32], td: usize, q: &[f32]) -> (usize, f64) {
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        targets
            .chunks_exact(td)
            .map(|t| {
                let dot: f64 = q
                    .iter()
                    .zip(t)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                dot / (norm(q) * norm(t))
            })
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |b, c| if c.1 > b.1 { c } else { b })
    }

    /// The target scan against an f64 brute force, for every target encoding: the same id
    /// (compact codes may only swap near-ties) and the cosine of the decoded row.
    #[test]
    fn nearest_by_target_is_the_brute_force_argmax_in_every_encoding() {
        use crate::TargetEncoding;
        let (n, dim, td) = (300, 4, 16);
        let tmp = tempfile::tempdir().unwrap();
        let raw = synth::gaussian(1, n, dim);
        let ids: Vec<u64> = (0..n as u64).map(|i| 1000 + 7 * i).collect();
        let prompts: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let targets = synth::unit_vectors(2, n, td);
        // Queries: noisy copies of a few rows (so there is a clear winner), plus a random one.
        let mut queries: Vec<f32> = Vec::new();
        for row in [0, 17, 150, 299] {
            let noise = synth::gaussian(row as u64 + 10, 1, td);
            queries.extend(
                targets[row * td..(row + 1) * td]
                    .iter()
                    .zip(&noise)
                    .map(|(t, e)| 3.0 * t + 0.3 * e),
            );
        }
        queries.extend(synth::gaussian(99, 1, td));
        let brute = |q: &[f32]| brute_nearest(&targets, td, q);
        for encoding in [
            TargetEncoding::F32,
            TargetEncoding::F16,
            TargetEncoding::Int8,
        ] {
            let out = tmp.path().join(encoding.to_string());
            let config = IndexConfig::new(dim, td, IndexSpec::Exact).with_targets(encoding);
            build_index(&out, config, &ids, &raw, &prompts, &targets).unwrap();
            let index = PromptIndex::open(&out).unwrap();
            let found = index.nearest_by_target(&queries).unwrap();
            assert_eq!(found.len(), 5);
            for (q, got) in queries.chunks_exact(td).zip(found) {
                let (id, cosine) = got.unwrap();
                let (row, want) = brute(q);
                let tol = if encoding.is_f32() { 1e-5 } else { 2e-2 };
                assert!(
                    (f64::from(cosine) - want).abs() < tol,
                    "{encoding}: {cosine} vs {want}"
                );
                if encoding.is_f32() {
                    assert_eq!(id, ids[row], "{encoding}");
                }
            }
        }
        // The noisy copies find their own rows.
        let index = PromptIndex::open(tmp.path().join("f32")).unwrap();
        let found = index.nearest_by_target(&queries).unwrap();
        for (i, row) in [0, 17, 150, 299].into_iter().enumerate() {
            assert_eq!(found[i].unwrap().0, ids[row]);
        }
        // Wrong widths and non-finite queries are refused, not scanned.
        assert!(index.nearest_by_target(&queries[..td - 1]).is_err());
        let mut bad = queries[..td].to_vec();
        bad[3] = f32::NAN;
        assert!(index.nearest_by_target(&bad).is_err());
        // An all-zero query has no nearest row.
        assert_eq!(index.nearest_by_target(&vec![0.0; td]).unwrap(), vec![None]);
    }

    /// A store large enough to be scanned on several threads (where the machine has them) gives
    /// the single-pass answer: the brute-force argmax, and on an exact tie the lowest row, even
    /// when the tied rows fall in different threads' ranges.
    #[test]
    fn the_threaded_scan_gives_the_single_pass_answer() {
        use crate::TargetEncoding;
        let (n, dim, td) = (40_000, 2, 8);
        let tmp = tempfile::tempdir().unwrap();
        let raw = synth::gaussian(3, n, dim);
        let ids: Vec<u64> = (0..n as u64).collect();
        let prompts: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let mut targets = synth::unit_vectors(4, n, td);
        // Row 39 999 (last thread's range) repeats row 5 (first thread's range).
        let row5 = targets[5 * td..6 * td].to_vec();
        targets[(n - 1) * td..].copy_from_slice(&row5);
        let mut queries = row5.clone();
        for row in [1, 20_001, 39_998] {
            queries.extend(targets[row * td..(row + 1) * td].iter().map(|t| 2.0 * t));
        }
        queries.extend(synth::gaussian(7, 3, td));
        for encoding in [TargetEncoding::F32, TargetEncoding::F16] {
            let out = tmp.path().join(encoding.to_string());
            let config = IndexConfig::new(dim, td, IndexSpec::Exact).with_targets(encoding);
            build_index(&out, config, &ids, &raw, &prompts, &targets).unwrap();
            let index = PromptIndex::open(&out).unwrap();
            let found = index.nearest_by_target(&queries).unwrap();
            assert_eq!(found.len(), 7);
            // The tie between rows 5 and 39 999 goes to row 5 in both encodings.
            assert_eq!(found[0].unwrap().0, 5, "{encoding}");
            for (i, row) in [1, 20_001, 39_998].into_iter().enumerate() {
                assert_eq!(found[i + 1].unwrap().0, row as u64, "{encoding}");
            }
            if encoding.is_f32() {
                for (q, got) in queries.chunks_exact(td).zip(&found).skip(4) {
                    assert_eq!(got.unwrap().0, brute_nearest(&targets, td, q).0 as u64);
                }
            }
        }
    }

    #[test]
    fn keys_in_rows_are_the_normalised_keys_with_their_ids() {
        let (n, dim) = (50, 6);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let raw: Vec<f32> = synth::gaussian(5, n, dim).iter().map(|x| x * 4.0).collect();
        let ids: Vec<u64> = (0..n as u64).map(|i| 90 - i).collect();
        let prompts: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let targets = synth::unit_vectors(6, n, 3);
        let config = IndexConfig::new(dim, 3, IndexSpec::Exact);
        build_index(&out, config, &ids, &raw, &prompts, &targets).unwrap();
        let index = PromptIndex::open(&out).unwrap();

        let (got_ids, keys) = index.keys_in_rows(10, 15).unwrap();
        assert_eq!(got_ids, ids[10..25].to_vec());
        for (i, key) in keys.chunks_exact(dim).enumerate() {
            let mut want = raw[(10 + i) * dim..(11 + i) * dim].to_vec();
            assert!(l2_normalize(&mut want));
            assert_eq!(key, want.as_slice(), "row {}", 10 + i);
            // Targets of the same row line up with the key.
            assert_eq!(
                index.target(got_ids[i]).unwrap(),
                index.payload().target(10 + i).unwrap()
            );
        }
        assert!(index.keys_in_rows(40, 11).is_err());
    }
}
