//! # knn-index
//!
//! Top-k search over CLIP-style embeddings with [FAISS](https://github.com/facebookresearch/faiss),
//! plus the store of what each neighbour carries (its prompt text and its target vector), persisted
//! in a checked, crash-safe index directory.
//!
//! * [`KeyIndex`]: a safe, `Send + Sync` wrapper over a FAISS index built from any
//!   `index_factory` string or a preset ([`IndexSpec`]: `exact`, `hnsw`, `ivf`, `ivf-pq`); inner
//!   product over L2-normalised keys (cosine), normalisation done here on add and on query; u64
//!   ids; batch search returning `(id, score)` best first; per-call knobs ([`SearchParams`]).
//! * [`PayloadStore`]: prompt texts and `target_dim`-wide f32 vectors by row, memory-mapped.
//! * [`IndexWriter`]: builds an index directory in resumable chunks, then swaps it into place
//!   atomically; [`PromptIndex`]: opens one, verifying format version, dims, sizes and xxh3
//!   checksums of every file ([`LoadOptions`] to opt out of hashing).
//!
//! ## Index directory (format version 1)
//!
//! | file | content |
//! | --- | --- |
//! | `manifest.json` | [`Manifest`]: format name/version, count, dims, metric, spec and FAISS factory string, default knobs, model names, per-file size + xxh3, and its own xxh3 |
//! | `keys.faiss` | the FAISS index (`faiss::write_index`); labels are row numbers |
//! | `ids.u64` | row → id, little-endian u64 |
//! | `id_lookup.u64` | `(id, row)` pairs sorted by id, little-endian u64 |
//! | `prompts.txt` | prompt texts, each followed by `\n` |
//! | `prompt_offsets.u64` | `count + 1` byte offsets into `prompts.txt` |
//! | `targets.f32` | `count × target_dim` little-endian f32, row-major |
//!
//! Other files in the directory (e.g. a `head.safetensors` added by another crate) are ignored.
//!
//! ## Building FAISS
//!
//! The `faiss` crate's `static` feature builds the vendored FAISS (1.12) with cmake; on Debian
//! or Ubuntu it needs `cmake`, a C++17 compiler, `libopenblas-dev` and `liblapack-dev`
//! (and links `libgomp`). The workspace's `.cargo/config.toml` compiles it with
//! `-mavx2 -mfma -mf16c -mpopcnt` (FAISS picks its SIMD kernels at compile time; without them
//! search is up to 2x slower, docs/SCALING.md); set `CXXFLAGS_x86_64_unknown_linux_gnu=""` to
//! build for a CPU without AVX2.
//!
//! ## OpenMP and BLAS
//!
//! FAISS parallelises with OpenMP and runs batched Flat search through BLAS. With Debian's
//! default (pthread) OpenBLAS the two thread pools fight for the cores while libgomp's threads
//! spin-wait: start processes that batch-search a Flat index with `OMP_WAIT_POLICY=PASSIVE` in
//! the environment (2.6x on batch-256 exact search on 2 cores; libgomp reads it at start-up,
//! so it cannot be set from code), or use the `libopenblas0-openmp` alternative.
//!
//! ## Example
//!
//! ```no_run
//! use knn_index::{IndexConfig, IndexSpec, IndexWriter, PromptIndex, SearchParams};
//! # fn main() -> knn_index::Result<()> {
//! let config = IndexConfig::new(512, 384, IndexSpec::Hnsw)
//!     .with_models("clip-vit-base-patch32", "all-MiniLM-L6-v2");
//! let mut w = IndexWriter::resume("my-index", config)?; // continues an interrupted build
//! # let (ids, keys, prompts, targets): (Vec<u64>, Vec<f32>, Vec<String>, Vec<f32>) = todo!();
//! w.append(&ids, &keys, &prompts, &targets)?;
//! w.finish()?;
//! let index = PromptIndex::open("my-index")?;
//! # let query: Vec<f32> = todo!();
//! for n in &index.neighbours(&query, 100, &SearchParams::default())?[0] {
//!     println!("{} {:.3} {}", n.id, n.score, n.prompt);
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
#![deny(unsafe_code)] // allowed in `sys` only

mod convert;
mod error;
mod ivf_file;
mod keys;
mod manifest;
mod mapped;
mod merge;
mod payload;
mod spec;
mod store;
#[cfg(feature = "synth")]
#[doc(hidden)]
pub mod synth;
mod sys;
mod targets;
mod trained;
mod writer;

pub use convert::convert_targets;
pub use error::{Error, Result};
pub use keys::{KeyIndex, is_ivf_factory, l2_normalize};
pub use manifest::{
    DATA_FILES, FORMAT_NAME, FORMAT_VERSION, FileEntry, ID_LOOKUP_FILE, IDS_FILE, KEYS_FILE,
    MANIFEST_FILE, METRIC, Manifest, OFFSETS_FILE, PROMPTS_FILE, ShardInfo, TARGETS_FILE,
    hash_file,
};
pub use merge::merge_shards;
pub use payload::PayloadStore;
pub use spec::{
    HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, IVF_NPROBE_DIVISOR, IndexSpec, SearchParams, ivf_nlist,
};
pub use store::{LoadOptions, Neighbour, PromptIndex};
pub use targets::{TARGET_SCALES_FILE, TARGETS_F16_FILE, TARGETS_I8_FILE, TargetEncoding};
pub use trained::{
    TRAINED_FAISS_FILE, TRAINED_FORMAT, TRAINED_MANIFEST_FILE, TrainedManifest, TrainedQuantizer,
};
pub use writer::{
    BuildLock, IndexConfig, IndexWriter, STAGED_KEYS_FILE, STAGING_FILE, StagedPrompts, build_index,
};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn wrappers_are_send_sync() {
        assert_send_sync::<crate::KeyIndex>();
        assert_send_sync::<crate::PromptIndex>();
    }
}
