//! [`convert_targets`]: a copy of an index directory with its targets in another encoding.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::manifest::{MANIFEST_FILE, Manifest, sync_dir};
use crate::store::PromptIndex;
use crate::targets::{TargetEncoding, TargetsWriter};
use crate::writer::{BuildLock, IndexConfig, SealedIndex, commit, fresh_staging, seal_directory};

/// Writes at `out` the index `src` with its target vectors stored in `encoding` (everything
/// else copied as is; the shard record and trained-quantizer checksum are kept), replacing an
/// index at `out` only once the new one is complete. `src` is verified first. Returns the new
/// manifest.
///
/// Converting to a compact encoding loses what [`TargetEncoding`] says; converting back to
/// `f32` does not restore it.
pub fn convert_targets(
    src: impl AsRef<Path>,
    out: impl AsRef<Path>,
    encoding: TargetEncoding,
) -> Result<Manifest> {
    let (src, out) = (src.as_ref(), out.as_ref());
    let index = PromptIndex::open(src)?;
    let m = index.manifest().clone();
    let lock = BuildLock::acquire(out)?;
    let staging = fresh_staging(out, ".knn-converting")?;
    for name in m.data_files() {
        if m.target_encoding.files().contains(&name) {
            continue;
        }
        let (from, to) = (src.join(name), staging.join(name));
        std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        File::open(&to)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&to, e))?;
    }
    let mut targets = TargetsWriter::create(&staging, encoding)?;
    let payload = index.payload();
    for row in 0..payload.len() {
        targets.push(&payload.target(row)?)?;
    }
    targets.finish()?;
    let Ok(spec) = m.spec.parse();
    let config = IndexConfig::new(m.key_dim, m.target_dim, spec)
        .with_models(m.key_model.clone(), m.target_model.clone())
        .with_targets(encoding);
    seal_directory(
        &staging,
        SealedIndex {
            count: m.count,
            config: &config,
            faiss_factory: &m.faiss_factory,
            search_defaults: m.search_defaults,
            shard: m.shard.clone(),
            trained_xxh3: m.trained_xxh3.clone(),
        },
    )?;
    sync_dir(&staging)?;
    drop(index);
    commit(&staging, out, MANIFEST_FILE)?;
    drop(lock);
    Manifest::read(out)
}
