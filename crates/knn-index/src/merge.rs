//! [`merge_shards`]: one index directory from the shards of a sharded build.
//!
//! A sharded build splits one cleaned corpus into `N` shards (each an ordinary index directory
//! whose manifest carries a [`ShardInfo`]); ids are the ids a single build gives, so together
//! the shards hold each id of `0..corpus_prompts` exactly once. The merge checks that, writes
//! the rows in id order (so a merged row is its id, as in a single build), and makes the keys:
//!
//! * IVF shards (added to one [`crate::TrainedQuantizer`]): their inverted lists are
//!   concatenated on disk, streamed from memory maps (see `ivf_file`), so the merge needs little
//!   RAM whatever the index size, and the result is searched with its lists memory-mapped;
//! * anything else (`exact`, `hnsw`, other factory strings): the shards' stored keys are read
//!   back and the index is built again over all of them (for HNSW, the graph is rebuilt).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ivf_file::{IvfFile, merge_ivf_files};
use crate::keys::{factory_nlist, is_ivf_factory};
use crate::manifest::{
    ID_LOOKUP_FILE, IDS_FILE, KEYS_FILE, MANIFEST_FILE, Manifest, OFFSETS_FILE, PROMPTS_FILE,
    ShardInfo, sync_dir,
};
use crate::store::PromptIndex;
use crate::targets::{TargetEncoding, TargetsWriter};
use crate::writer::{
    BuildLock, IndexConfig, SealedIndex, build_key_index, commit, fresh_staging, seal_directory,
};

/// Merges the shard directories `shards` (in any order) into one index directory at `out`,
/// replacing an index there only once the merged one is complete. Returns its manifest.
///
/// Every shard is opened with full verification first. The merge refuses, naming the
/// directories: a directory that is not a shard; shards of different splits, corpora, models,
/// dimensions, specs or trained quantizers; a shard given twice or missing; ids that overlap or
/// leave a gap; IVF shards that were not added to one trained quantizer. Holds `out`'s
/// [`BuildLock`] while it works.
pub fn merge_shards<P: AsRef<Path>>(out: impl AsRef<Path>, shards: &[P]) -> Result<Manifest> {
    let out = out.as_ref();
    if shards.is_empty() {
        return Err(Error::Merge("no shard directories given".into()));
    }
    let opened: Vec<PromptIndex> = shards
        .iter()
        .map(PromptIndex::open)
        .collect::<Result<_>>()?;
    let (first, total) = check_shards(&opened)?;
    let lock = BuildLock::acquire(out)?;
    let staging = fresh_staging(out, ".knn-merging")?;

    let m0 = opened[0].manifest();
    let Ok(spec) = m0.spec.parse();
    let mut config = IndexConfig::new(m0.key_dim, m0.target_dim, spec)
        .with_models(m0.key_model.clone(), m0.target_model.clone())
        .with_targets(m0.target_encoding);
    let ivf = first.trained_xxh3.is_some() && is_ivf_factory(&m0.faiss_factory);
    // Rebuilt indexes need every key in id order; IVF lists are merged on disk instead.
    let mut shard_keys = Vec::new();
    if !ivf {
        for s in &opened {
            shard_keys.push(s.keys().reconstruct_rows(0, s.len())?);
        }
    }
    let mut keys = Vec::new();
    write_payload(
        &staging,
        &opened,
        total,
        m0.target_encoding,
        |shard, row| {
            if !ivf {
                let d = m0.key_dim;
                keys.extend_from_slice(&shard_keys[shard][row * d..(row + 1) * d]);
            }
        },
    )?;
    drop(shard_keys);

    let keys_path = staging.join(KEYS_FILE);
    if ivf {
        let nlist = factory_nlist(&m0.faiss_factory).ok_or_else(|| {
            Error::Merge(format!(
                "cannot read the list count of {:?}",
                m0.faiss_factory
            ))
        })?;
        let files: Vec<IvfFile> = opened
            .iter()
            .map(|s| IvfFile::open(&s.dir().join(KEYS_FILE), nlist))
            .collect::<Result<_>>()?;
        merge_ivf_files(&files, &keys_path, |shard, row| {
            opened[shard].id_at(usize::try_from(row).ok()?)
        })?;
        seal_directory(
            &staging,
            SealedIndex {
                count: total,
                config: &config,
                faiss_factory: &m0.faiss_factory,
                search_defaults: m0.search_defaults,
                shard: None,
                trained_xxh3: m0.trained_xxh3.clone(),
            },
        )?;
    } else {
        config.trained = None;
        let n = usize::try_from(total)
            .map_err(|_| Error::InvalidArgument(format!("{total} keys is too many")))?;
        let index = build_key_index(&keys, &config, None, n)?;
        drop(keys);
        index.write_faiss(&keys_path)?;
        File::open(&keys_path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&keys_path, e))?;
        seal_directory(
            &staging,
            SealedIndex {
                count: total,
                config: &config,
                faiss_factory: index.factory(),
                search_defaults: index.default_params(),
                shard: None,
                trained_xxh3: None,
            },
        )?;
    }
    sync_dir(&staging)?;
    drop(opened);
    commit(&staging, out, MANIFEST_FILE)?;
    drop(lock);
    Manifest::read(out)
}

/// Checks that the shards make one complete split of one corpus with one setup; returns the
/// first shard's manifest facts and the corpus's prompt count.
fn check_shards(shards: &[PromptIndex]) -> Result<(Manifest, u64)> {
    let info_of = |s: &PromptIndex| -> Result<ShardInfo> {
        s.manifest().shard.clone().ok_or_else(|| {
            Error::Merge(format!(
                "{} is not a shard (it was built without --shard)",
                s.dir().display()
            ))
        })
    };
    let first = &shards[0];
    let f = info_of(first)?;
    let m0 = first.manifest();
    let mut by_index: Vec<Option<&Path>> = vec![None; f.count as usize];
    for s in shards {
        let i = info_of(s)?;
        let m = s.manifest();
        let differ = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            Error::Merge(format!(
                "{} and {} have different {what} ({a:?} vs {b:?})",
                first.dir().display(),
                s.dir().display()
            ))
        };
        if i.count != f.count {
            return Err(Error::Merge(format!(
                "{} is shard {}/{} but {} is shard {}/{}: shards of different splits",
                first.dir().display(),
                f.index,
                f.count,
                s.dir().display(),
                i.index,
                i.count
            )));
        }
        if (i.corpus_prompts, &i.corpus_xxh3) != (f.corpus_prompts, &f.corpus_xxh3) {
            return Err(differ(
                "corpora (prompt count and fingerprint)",
                &(f.corpus_prompts, &f.corpus_xxh3),
                &(i.corpus_prompts, &i.corpus_xxh3),
            ));
        }
        if (&m.key_model, &m.target_model) != (&m0.key_model, &m0.target_model) {
            return Err(differ(
                "models",
                &(&m0.key_model, &m0.target_model),
                &(&m.key_model, &m.target_model),
            ));
        }
        if (m.key_dim, m.target_dim) != (m0.key_dim, m0.target_dim) {
            return Err(differ(
                "dimensions",
                &(m0.key_dim, m0.target_dim),
                &(m.key_dim, m.target_dim),
            ));
        }
        if (&m.spec, &m.faiss_factory) != (&m0.spec, &m0.faiss_factory) {
            return Err(differ(
                "index specs",
                &(&m0.spec, &m0.faiss_factory),
                &(&m.spec, &m.faiss_factory),
            ));
        }
        if m.target_encoding != m0.target_encoding {
            return Err(differ(
                "target encodings",
                &m0.target_encoding.to_string(),
                &m.target_encoding.to_string(),
            ));
        }
        if m.trained_xxh3 != m0.trained_xxh3 {
            return Err(differ(
                "trained quantizers",
                &m0.trained_xxh3,
                &m.trained_xxh3,
            ));
        }
        let slot = &mut by_index[i.index as usize];
        if let Some(other) = slot {
            return Err(Error::Merge(format!(
                "shard {}/{} is given twice: {} and {}",
                i.index,
                i.count,
                other.display(),
                s.dir().display()
            )));
        }
        *slot = Some(s.dir());
    }
    let missing: Vec<String> = by_index
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_none())
        .map(|(i, _)| format!("{i}/{}", f.count))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Merge(format!(
            "shard {} missing (give all {} shards)",
            missing.join(", "),
            f.count
        )));
    }
    if is_ivf_factory(&m0.faiss_factory) && m0.trained_xxh3.is_none() {
        return Err(Error::Merge(format!(
            "the {} shards each trained their own quantizer: build IVF shards with one trained \
             quantizer (index train, then --trained) so that their lists can be merged",
            m0.faiss_factory
        )));
    }
    Ok((m0.clone(), f.corpus_prompts))
}

/// Visits every shard row in id order, checking that the ids are exactly `0..total`.
fn for_each_in_id_order(
    shards: &[PromptIndex],
    total: u64,
    mut visit: impl FnMut(usize, usize, u64) -> Result<()>,
) -> Result<()> {
    let mut cursor = vec![0usize; shards.len()];
    let mut heap = BinaryHeap::new();
    for (s, shard) in shards.iter().enumerate() {
        if let Some(id) = shard.id_at(0) {
            heap.push(Reverse((id, s)));
        }
    }
    let mut expected = 0u64;
    while let Some(Reverse((id, s))) = heap.pop() {
        let dir = |s: usize| shards[s].dir().display().to_string();
        if let Some(Reverse((next, other))) = heap.peek()
            && *next == id
        {
            return Err(Error::Merge(format!(
                "id {id} is in both {} and {}: overlapping shards",
                dir(s),
                dir(*other)
            )));
        }
        if id != expected {
            return Err(Error::Merge(format!(
                "id {expected} is in no shard: a shard is incomplete"
            )));
        }
        let row = cursor[s];
        visit(s, row, id)?;
        expected += 1;
        cursor[s] += 1;
        if let Some(next) = shards[s].id_at(cursor[s]) {
            if next <= id {
                return Err(Error::corrupt(
                    shards[s].dir().join(IDS_FILE),
                    format!("ids are not increasing at row {}", cursor[s]),
                ));
            }
            heap.push(Reverse((next, s)));
        }
    }
    if expected != total {
        return Err(Error::Merge(format!(
            "the shards hold ids 0..{expected}, the corpus has {total} prompts: a shard is incomplete"
        )));
    }
    Ok(())
}

/// Writes ids, the id table, prompts, offsets and targets of the merged index in id order,
/// calling `row` for each (shard, row) on the way.
fn write_payload(
    dir: &Path,
    shards: &[PromptIndex],
    total: u64,
    encoding: TargetEncoding,
    mut row: impl FnMut(usize, usize),
) -> Result<()> {
    struct Out {
        path: PathBuf,
        w: BufWriter<File>,
    }
    let open = |name: &str| -> Result<Out> {
        let path = dir.join(name);
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Out {
            path,
            w: BufWriter::with_capacity(1 << 20, f),
        })
    };
    let put = |o: &mut Out, bytes: &[u8]| o.w.write_all(bytes).map_err(|e| Error::io(&o.path, e));
    let mut ids = open(IDS_FILE)?;
    let mut lookup = open(ID_LOOKUP_FILE)?;
    let mut prompts = open(PROMPTS_FILE)?;
    let mut offsets = open(OFFSETS_FILE)?;
    let mut targets = TargetsWriter::create(dir, encoding)?;
    let mut end = 0u64;
    put(&mut offsets, &end.to_le_bytes())?;
    for_each_in_id_order(shards, total, |s, r, id| {
        let payload = shards[s].payload();
        let text = payload.prompt(r)?;
        put(&mut ids, &id.to_le_bytes())?;
        // Merged rows are ids: the id table is the identity.
        put(&mut lookup, &id.to_le_bytes())?;
        put(&mut lookup, &id.to_le_bytes())?;
        put(&mut prompts, text.as_bytes())?;
        put(&mut prompts, b"\n")?;
        end += text.len() as u64 + 1;
        put(&mut offsets, &end.to_le_bytes())?;
        let (codes, scale) = payload.encoded_target(r)?;
        targets.push_encoded(codes, scale)?;
        row(s, r);
        Ok(())
    })?;
    targets.finish()?;
    for o in [ids, lookup, prompts, offsets] {
        let f =
            o.w.into_inner()
                .map_err(|e| Error::io(&o.path, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&o.path, e))?;
    }
    Ok(())
}
