//! [`KeyIndex`]: a `Send + Sync` FAISS index over L2-normalised keys with u64 ids.

use std::path::Path;
use std::sync::RwLock;

use faiss::index::IndexImpl;
use faiss::index::autotune::ParameterSpace;
use faiss::{Index, MetricType};

use crate::error::{Error, Result};
use crate::mapped::MappedU64;
use crate::spec::{IndexSpec, SearchParams, ivf_nlist};
use crate::sys;

/// Rows per call when feeding FAISS `add` (bounds the temporary copies).
pub(crate) const ADD_BATCH: usize = 65_536;

/// L2-normalise one vector in place. A zero vector stays zero (it then scores 0 against
/// everything); returns `false` if the vector contains NaN or an infinity.
pub fn l2_normalize(v: &mut [f32]) -> bool {
    let mut sum = 0f64;
    for &x in v.iter() {
        if !x.is_finite() {
            return false;
        }
        sum += f64::from(x) * f64::from(x);
    }
    if sum > 0.0 {
        let inv = (1.0 / sum.sqrt()) as f32;
        for x in v.iter_mut() {
            *x *= inv;
        }
    }
    true
}

/// A normalised copy of `rows` (row-major, width `dim`), or an error naming the bad row.
pub(crate) fn normalized_rows(rows: &[f32], dim: usize, what: &'static str) -> Result<Vec<f32>> {
    if dim == 0 || !rows.len().is_multiple_of(dim) {
        return Err(Error::Dimension {
            what,
            expected: dim,
            found: rows.len(),
        });
    }
    let mut out = rows.to_vec();
    for (row, chunk) in out.chunks_exact_mut(dim).enumerate() {
        if !l2_normalize(chunk) {
            return Err(Error::NonFinite { what, row });
        }
    }
    Ok(out)
}

/// Whether a FAISS factory string builds an IVF index (one that needs training, whose inverted
/// lists can stay on disk, and whose shards must share one trained quantizer).
pub fn is_ivf_factory(factory: &str) -> bool {
    factory
        .split(',')
        .any(|part| part.trim_start().starts_with("IVF"))
}

/// The list count of an IVF factory string (`IVF<n>,...`), if it spells one.
pub(crate) fn factory_nlist(factory: &str) -> Option<usize> {
    factory.split(',').find_map(|part| {
        let digits: String = part
            .trim()
            .strip_prefix("IVF")?
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse::<usize>().ok()
    })
}

/// Training sample size: 256 points per IVF list (FAISS's own cap) and at least 65536 (PQ
/// codebooks), never more than `n`.
pub(crate) fn training_sample_size(factory: &str, n: usize) -> usize {
    let nlist = factory_nlist(factory).unwrap_or_else(|| ivf_nlist(n));
    n.min((256 * nlist).max(65_536))
}

/// Reads a FAISS index file (its IVF lists memory-mapped when `map_inverted_lists`) and checks
/// that it has dimension `dim` and the inner-product metric; errors name the file.
fn read_checked(path: &Path, map_inverted_lists: bool, dim: usize) -> Result<IndexImpl> {
    let p = path
        .to_str()
        .ok_or_else(|| Error::corrupt(path, "path is not valid UTF-8 (FAISS needs UTF-8)"))?;
    let index =
        sys::read_index(p, map_inverted_lists).map_err(|e| Error::corrupt(path, e.to_string()))?;
    if index.d() as usize != dim {
        return Err(Error::corrupt(
            path,
            format!("FAISS index has dimension {}, expected {dim}", index.d()),
        ));
    }
    if index.metric_type() != MetricType::InnerProduct {
        return Err(Error::corrupt(
            path,
            "FAISS index metric is not inner product",
        ));
    }
    Ok(index)
}

/// `s` rows of `rows` (width `dim`) evenly spread over it (all rows if `s >= n`).
pub(crate) fn strided_sample(rows: &[f32], dim: usize, s: usize) -> Vec<f32> {
    let n = rows.len() / dim;
    if s >= n {
        return rows.to_vec();
    }
    let mut sample = Vec::with_capacity(s * dim);
    for i in 0..s {
        let row = (i as u128 * n as u128 / s as u128) as usize;
        sample.extend_from_slice(&rows[row * dim..(row + 1) * dim]);
    }
    sample
}

/// How FAISS row labels map to the caller's u64 ids.
#[derive(Debug)]
pub(crate) enum RowIds {
    /// In memory (indexes built with [`KeyIndex::add`]).
    Owned(Vec<u64>),
    /// Memory-mapped `ids.u64` of a loaded index directory.
    Mapped(MappedU64),
}

impl RowIds {
    fn get(&self, row: usize) -> Option<u64> {
        match self {
            RowIds::Owned(v) => v.get(row).copied(),
            RowIds::Mapped(m) => m.as_slice().get(row).copied(),
        }
    }
}

struct State {
    index: IndexImpl,
    /// Knobs currently written into the FAISS index object (via `ParameterSpace`).
    applied: SearchParams,
}

/// A FAISS index over L2-normalised keys, searched by inner product (= cosine similarity).
///
/// Keys and queries are normalised by this type (callers pass raw embeddings). Internally FAISS
/// labels are row numbers (every FAISS index type supports sequential adds); a row→id table maps
/// them to the caller's u64 ids, so any u64 is a valid id.
///
/// # Threads
///
/// `KeyIndex` is `Send + Sync`; share it with `Arc` and search from as many threads as you like.
/// FAISS guarantees that concurrent *const* operations (search) on CPU indexes are safe and that
/// mutations need exclusion; the index sits in an `RwLock`, searches take the read lock.
/// Per-call `nprobe` on a top-level IVF index is passed as FAISS `SearchParametersIVF` and keeps
/// the read lock. Other per-call knobs (`efSearch`, `nprobe` of wrapped IVF indexes) must be
/// written into the index object: such a call takes the write lock when the requested value
/// differs from the one currently set, so threads alternating between different values
/// serialise. FAISS itself parallelises a batch over queries with OpenMP; many threads each
/// sending batches may oversubscribe the cores (set `OMP_NUM_THREADS` accordingly).
pub struct KeyIndex {
    state: RwLock<State>,
    dim: usize,
    factory: String,
    defaults: SearchParams,
    ivf_top: bool,
    ids: RowIds,
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex")
            .field("dim", &self.dim)
            .field("factory", &self.factory)
            .field("len", &self.len())
            .field("defaults", &self.defaults)
            .finish()
    }
}

fn set_param(index: &IndexImpl, factory: &str, name: &'static str, value: usize) -> Result<()> {
    let ps = ParameterSpace::new()?;
    ps.set_index_parameter(index, name, value as f64)
        .map_err(|e| Error::Param {
            name,
            factory: factory.to_string(),
            reason: e.to_string(),
        })
}

fn apply(state: &mut State, factory: &str, want: SearchParams) -> Result<()> {
    if let Some(ef) = want.ef_search
        && state.applied.ef_search != Some(ef)
    {
        set_param(&state.index, factory, "efSearch", ef)?;
        state.applied.ef_search = Some(ef);
    }
    if let Some(np) = want.nprobe
        && state.applied.nprobe != Some(np)
    {
        // For a top-level IVF this only validates (and sets the stored default); per-call
        // values are passed as SearchParametersIVF at search time.
        set_param(&state.index, factory, "nprobe", np)?;
        state.applied.nprobe = Some(np);
    }
    Ok(())
}

impl KeyIndex {
    /// An empty index for keys of width `dim`, from a preset or factory string. `expected_len`
    /// sizes the presets that depend on the corpus size (`ivf`: √n lists); the index must then be
    /// trained ([`KeyIndex::train`]) if the spec needs it.
    pub fn new(dim: usize, spec: &IndexSpec, expected_len: usize) -> Result<Self> {
        let factory = spec.factory_string(expected_len, dim);
        let mut me = Self::from_factory(dim, &factory)?;
        me.defaults = spec.default_params(expected_len);
        if let Some(efc) = spec.ef_construction() {
            set_param(&me.state_mut()?.index, &factory, "efConstruction", efc)?;
        }
        let defaults = me.defaults;
        apply(me.state_mut()?, &factory, defaults)?;
        Ok(me)
    }

    /// An empty index from a FAISS `index_factory` string (inner-product metric), no default knobs.
    pub fn from_factory(dim: usize, factory: &str) -> Result<Self> {
        let spec_err = |reason: String| Error::Spec {
            spec: factory.to_string(),
            reason,
        };
        if dim == 0 || dim > i32::MAX as usize {
            return Err(spec_err(format!("invalid key dimension {dim}")));
        }
        let index = faiss::index_factory(dim as u32, factory, MetricType::InnerProduct)
            .map_err(|e| spec_err(e.to_string()))?;
        Ok(Self::wrap(
            index,
            factory.to_string(),
            SearchParams::default(),
            RowIds::Owned(Vec::new()),
        ))
    }

    fn wrap(index: IndexImpl, factory: String, defaults: SearchParams, ids: RowIds) -> Self {
        let dim = index.d() as usize;
        let ivf_top = sys::is_ivf(&index);
        KeyIndex {
            state: RwLock::new(State {
                index,
                applied: SearchParams::default(),
            }),
            dim,
            factory,
            defaults,
            ivf_top,
            ids,
        }
    }

    /// Read `keys.faiss` and attach the row→id table; checks dimension, metric and count.
    pub(crate) fn load(
        path: &Path,
        factory: String,
        defaults: SearchParams,
        dim: usize,
        ids: MappedU64,
    ) -> Result<Self> {
        // IVF inverted lists stay on disk (memory-mapped): an index bigger than RAM searches
        // with only its quantizer and the lists it probes resident.
        let index = read_checked(path, is_ivf_factory(&factory), dim)?;
        let n = ids.as_slice().len() as u64;
        if index.ntotal() != n {
            return Err(Error::corrupt(
                path,
                format!(
                    "FAISS index holds {} keys, manifest says {n}",
                    index.ntotal()
                ),
            ));
        }
        let mut me = Self::wrap(index, factory, defaults, RowIds::Mapped(ids));
        let factory = me.factory.clone();
        apply(me.state_mut()?, &factory, defaults)?;
        Ok(me)
    }

    /// Read a FAISS index file into RAM (writable: keys can be added), without ids. Checks
    /// dimension and metric.
    pub(crate) fn read_writable(
        path: &Path,
        factory: String,
        defaults: SearchParams,
        dim: usize,
    ) -> Result<Self> {
        let index = read_checked(path, false, dim)?;
        let mut me = Self::wrap(index, factory, defaults, RowIds::Owned(Vec::new()));
        let factory = me.factory.clone();
        apply(me.state_mut()?, &factory, defaults)?;
        Ok(me)
    }

    fn state_mut(&mut self) -> Result<&mut State> {
        self.state.get_mut().map_err(|_| Error::Poisoned)
    }

    /// The id stored for FAISS row `row`.
    pub(crate) fn id_of_row(&self, row: usize) -> Option<u64> {
        self.ids.get(row)
    }

    /// Key width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The FAISS factory string this index was made from.
    pub fn factory(&self) -> &str {
        &self.factory
    }

    /// The knobs used when a search leaves them unset.
    pub fn default_params(&self) -> SearchParams {
        self.defaults
    }

    /// Change the default knobs (validated against the index now).
    pub fn set_default_params(&mut self, params: SearchParams) -> Result<()> {
        let factory = self.factory.clone();
        apply(self.state_mut()?, &factory, params)?;
        self.defaults = params;
        Ok(())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.state
            .read()
            .map(|s| s.index.ntotal() as usize)
            .unwrap_or(0)
    }

    /// Whether the index holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the index is ready for [`KeyIndex::add`] (untrained IVF/PQ indexes are not).
    pub fn is_trained(&self) -> bool {
        self.state
            .read()
            .map(|s| s.index.is_trained())
            .unwrap_or(false)
    }

    /// Train on sample keys (normalised here). A no-op for indexes that need no training.
    pub fn train(&mut self, keys: &[f32]) -> Result<()> {
        let keys = normalized_rows(keys, self.dim, "key")?;
        self.train_normalized(&keys)
    }

    pub(crate) fn train_normalized(&mut self, keys: &[f32]) -> Result<()> {
        let state = self.state_mut()?;
        if state.index.is_trained() {
            return Ok(());
        }
        if keys.is_empty() {
            return Err(Error::InvalidArgument(
                "this index needs training and no training key was given".into(),
            ));
        }
        state.index.train(keys)?;
        Ok(())
    }

    /// Add keys (row-major, width [`KeyIndex::dim`], normalised here) under the given ids.
    /// Trains first on these keys if the index is untrained.
    pub fn add(&mut self, ids: &[u64], keys: &[f32]) -> Result<()> {
        let keys = normalized_rows(keys, self.dim, "key")?;
        if keys.len() / self.dim != ids.len() {
            return Err(Error::Dimension {
                what: "ids (one per key row)",
                expected: keys.len() / self.dim,
                found: ids.len(),
            });
        }
        if !self.is_trained() {
            let s = training_sample_size(&self.factory, keys.len() / self.dim);
            let sample = strided_sample(&keys, self.dim, s);
            self.train_normalized(&sample)?;
        }
        let RowIds::Owned(_) = &self.ids else {
            return Err(Error::InvalidArgument(
                "a loaded index is read-only; rebuild it with IndexWriter".into(),
            ));
        };
        self.add_normalized(&keys)?;
        if let RowIds::Owned(v) = &mut self.ids {
            v.extend_from_slice(ids);
        }
        Ok(())
    }

    /// Add already-normalised keys; labels are the next row numbers.
    pub(crate) fn add_normalized(&mut self, keys: &[f32]) -> Result<()> {
        let dim = self.dim;
        let state = self.state_mut()?;
        for chunk in keys.chunks(ADD_BATCH * dim) {
            state.index.add(chunk)?;
        }
        Ok(())
    }

    /// The stored keys of rows `start..start + n` (FAISS labels are row numbers), row-major,
    /// `n * dim` floats, read back with FAISS `reconstruct_n`.
    ///
    /// What comes back is what the index stores: the L2-normalised keys, exactly, for `Flat`,
    /// `HNSW*` (flat storage) and `IVF*,Flat`; the decoded approximation for quantised indexes
    /// (`PQ`, `SQ`: lossy codes, so keys are approximate). IVF indexes are read by scanning every
    /// inverted list once per call (no direct map needed), so read them in few large chunks.
    /// An index type FAISS cannot reconstruct from fails with [`Error::Spec`] naming the
    /// factory string; a range beyond [`KeyIndex::len`] with [`Error::InvalidArgument`].
    pub fn reconstruct_rows(&self, start: usize, n: usize) -> Result<Vec<f32>> {
        let guard = self.state.read().map_err(|_| Error::Poisoned)?;
        let total = guard.index.ntotal() as usize;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= total)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "rows {start}..{} are beyond the {total} keys of the index",
                    start.saturating_add(n)
                ))
            })?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let len = n.checked_mul(self.dim).ok_or_else(|| {
            Error::InvalidArgument(format!("{n} rows of width {} overflow", self.dim))
        })?;
        let mut out = vec![0f32; len];
        guard
            .index
            .reconstruct_n(faiss::Idx::new(start as u64), end - start, &mut out)
            .map_err(|e| Error::Spec {
                spec: self.factory.clone(),
                reason: format!("FAISS cannot reconstruct the stored keys: {e}"),
            })?;
        Ok(out)
    }

    /// Write the FAISS index to `path` (row labels only; ids live beside it).
    pub(crate) fn write_faiss(&self, path: &Path) -> Result<()> {
        let p = path.to_str().ok_or_else(|| {
            Error::InvalidArgument(format!("{}: path is not UTF-8", path.display()))
        })?;
        let state = self.state.read().map_err(|_| Error::Poisoned)?;
        faiss::write_index(&state.index, p).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Top-`k` ids and scores for each query (row-major, width [`KeyIndex::dim`]), best first,
    /// with the index's default knobs. See [`KeyIndex::search_with`].
    pub fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<(u64, f32)>>> {
        self.search_with(queries, k, &SearchParams::default())
    }

    /// Top-`k` `(id, score)` per query, best first; score = cosine similarity (inner product of
    /// the normalised query and key; approximate for PQ indexes). Fewer than `k` results when the
    /// index holds fewer keys (or an approximate index finds fewer); never a placeholder id.
    pub fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<(u64, f32)>>> {
        let rows = self.search_rows(queries, k, params)?;
        rows.into_iter()
            .map(|hits| {
                hits.into_iter()
                    .map(|(row, score)| {
                        self.ids.get(row).map(|id| (id, score)).ok_or_else(|| {
                            Error::Faiss(format!("FAISS returned row {row} beyond the id table"))
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// Like [`KeyIndex::search_with`] but returns row numbers instead of ids.
    pub(crate) fn search_rows(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<(usize, f32)>>> {
        let q = normalized_rows(queries, self.dim, "query")?;
        let nq = q.len() / self.dim;
        let want = params.or(self.defaults);
        let (dist, labels, kk) = {
            let guard = self.state.read().map_err(|_| Error::Poisoned)?;
            let ntotal = guard.index.ntotal() as usize;
            let kk = k.min(ntotal);
            if kk == 0 || nq == 0 {
                return Ok(vec![Vec::new(); nq]);
            }
            let per_call_nprobe = if self.ivf_top { want.nprobe } else { None };
            let ef_ok = want.ef_search.is_none() || want.ef_search == guard.applied.ef_search;
            let np_ok =
                self.ivf_top || want.nprobe.is_none() || want.nprobe == guard.applied.nprobe;
            if ef_ok && np_ok {
                let (d, l) = sys::search(&guard.index, &q, nq, kk, per_call_nprobe)?;
                (d, l, kk)
            } else {
                drop(guard);
                let mut w = self.state.write().map_err(|_| Error::Poisoned)?;
                let mut knobs = want;
                if self.ivf_top {
                    knobs.nprobe = None;
                }
                apply(&mut w, &self.factory, knobs)?;
                let (d, l) = sys::search(&w.index, &q, nq, kk, per_call_nprobe)?;
                (d, l, kk)
            }
        };
        let mut out = Vec::with_capacity(nq);
        for qi in 0..nq {
            let mut hits = Vec::with_capacity(kk);
            for j in qi * kk..(qi + 1) * kk {
                if labels[j] >= 0 {
                    hits.push((labels[j] as usize, dist[j]));
                }
            }
            out.push(hits);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_zero_and_nan() {
        let mut z = [0.0f32; 4];
        assert!(l2_normalize(&mut z));
        assert_eq!(z, [0.0; 4]);
        let mut n = [1.0, f32::NAN];
        assert!(!l2_normalize(&mut n));
        let mut v = [3.0, 4.0];
        assert!(l2_normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    fn reconstructed_keys(spec: &IndexSpec, n: usize) -> (Vec<f32>, Vec<f32>) {
        let dim = 8;
        let raw: Vec<f32> = crate::synth::gaussian(11, n, dim)
            .into_iter()
            .map(|x| 3.0 * x + 0.5)
            .collect();
        let mut idx = KeyIndex::new(dim, spec, n).unwrap();
        let ids: Vec<u64> = (0..n as u64).map(|i| 1000 + 7 * i).collect();
        idx.add(&ids, &raw).unwrap();
        let mut normalized = raw.clone();
        for row in normalized.chunks_exact_mut(dim) {
            assert!(l2_normalize(row));
        }
        // Read back in two chunks, the second one ending at the last row.
        let mut back = idx.reconstruct_rows(0, n / 3).unwrap();
        back.extend(idx.reconstruct_rows(n / 3, n - n / 3).unwrap());
        (normalized, back)
    }

    #[test]
    fn reconstructed_keys_are_the_normalised_inserted_keys() {
        for spec in [IndexSpec::Exact, IndexSpec::Hnsw, IndexSpec::Ivf] {
            let (normalized, back) = reconstructed_keys(&spec, 300);
            assert_eq!(back.len(), normalized.len(), "{spec:?}");
            // Bit-equal: the index stores the normalised f32 keys as given.
            assert!(
                back.iter()
                    .zip(&normalized)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{spec:?}"
            );
            // Sanity: the stored keys are unit length, not the raw inputs.
            let norm: f32 = back[..8].iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-5, "{spec:?}");
        }
    }

    #[test]
    fn reconstruct_out_of_range_and_empty() {
        let mut idx = KeyIndex::new(4, &IndexSpec::Exact, 0).unwrap();
        idx.add(&[7, 9], &[1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0])
            .unwrap();
        assert_eq!(
            idx.reconstruct_rows(1, 1).unwrap(),
            vec![0.0, 1.0, 0.0, 0.0]
        );
        assert!(idx.reconstruct_rows(2, 0).unwrap().is_empty());
        let err = idx.reconstruct_rows(1, 2).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let err = idx.reconstruct_rows(usize::MAX, 2).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }

    #[test]
    fn reconstruct_refused_names_the_spec() {
        // Spectral hashing stores binary codes it cannot decode; FAISS refuses.
        let factory = "IVF2,ITQ,SH";
        let mut idx = KeyIndex::from_factory(8, factory).unwrap();
        let keys = crate::synth::unit_vectors(3, 200, 8);
        let ids: Vec<u64> = (0..200).collect();
        idx.add(&ids, &keys).unwrap();
        match idx.reconstruct_rows(0, 200) {
            Err(Error::Spec { spec, reason }) => {
                assert_eq!(spec, factory);
                assert!(reason.contains("reconstruct"), "{reason}");
            }
            other => panic!("expected Error::Spec, got {other:?}"),
        }
    }

    #[test]
    fn knob_on_flat_is_an_error() {
        let mut idx = KeyIndex::new(4, &IndexSpec::Exact, 0).unwrap();
        idx.add(&[7, 9], &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
            .unwrap();
        let err = idx
            .search_with(&[1.0, 0.0, 0.0, 0.0], 2, &SearchParams::ef_search(10))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Param {
                    name: "efSearch",
                    ..
                }
            ),
            "{err}"
        );
        let hits = idx.search(&[1.0, 0.1, 0.0, 0.0], 5).unwrap();
        assert_eq!(hits[0].len(), 2);
        assert_eq!(hits[0][0].0, 7);
    }
}
