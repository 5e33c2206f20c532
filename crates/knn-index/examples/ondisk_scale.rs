//! A sharded IVF-PQ build at scale, measured: N synthetic 768-d keys (default 10 000 000,
//! clustered like real embeddings) go through the path a cluster build takes: one
//! [`TrainedQuantizer`] trained on a sample, S shards each built by an [`IndexWriter`] over that
//! quantizer, then [`merge_shards`] concatenating the inverted lists on disk. The merged index
//! is opened with its lists memory-mapped and measured: build and merge time, bytes on disk,
//! resident memory while searching (anonymous and file-backed, from /proc/self/status) against
//! the index size, queries/s at batch 1 and 256, and recall@10 against exact search (brute
//! force over the regenerated keys) on a query sample. Prints `SCALE key=value` lines and a
//! final JSON object.
//!
//! `cargo build --release --workspace --examples`, then
//! `$CARGO_TARGET_DIR/release/examples/ondisk_scale DIR [N] [SHARDS]`
//! (DIR must not exist; needs ~3.5 KiB of disk per key of one shard while it is staged, plus
//! ~0.3 KiB per key for the shards and the merged index).
//!
//! `ondisk_scale search DIR [N]` then measures the merged index in a fresh process (run it
//! inside a memory-limited cgroup to search an index bigger than the RAM it may use): resident
//! memory, queries/s and recall@10 for an `nprobe` sweep. The exact neighbours are computed
//! once (by regenerating the keys) and kept in `DIR/truth.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use knn_index::synth::unit_vectors;
use knn_index::{
    IndexConfig, IndexSpec, IndexWriter, KeyIndex, LoadOptions, PromptIndex, SearchParams,
    ShardInfo, TrainedQuantizer, merge_shards,
};

const DIM: usize = 768;
/// Targets are irrelevant here; keep them tiny.
const TARGET_DIM: usize = 2;
const CHUNK: usize = 65_536;
const TRAIN: usize = 131_072;
const QUERIES_BATCH_1: usize = 300;
const QUERIES_BATCH_256: usize = 1024;
const RECALL_QUERIES: usize = 100;
const K: usize = 10;
const CENTRE_SEED: u64 = 11;

type Error = Box<dyn std::error::Error>;

/// Clustered unit keys of global rows `start..start + n` (row `g` near centre `g % clusters`),
/// generated on two threads; the same rows always get the same keys.
fn keys(centres: &[f32], start: usize, n: usize, seed_base: u64) -> Vec<f32> {
    let clusters = centres.len() / DIM;
    let half = n / 2;
    let part = |from: usize, len: usize| {
        // Keyed by the first row: chunk-aligned callers regenerate identical keys.
        let seed = seed_base.wrapping_mul(1_000_003).wrapping_add(from as u64);
        let mut v = unit_vectors(seed, len, DIM);
        for (i, row) in v.chunks_exact_mut(DIM).enumerate() {
            let c = (from + i) % clusters;
            for (x, m) in row.iter_mut().zip(&centres[c * DIM..(c + 1) * DIM]) {
                *x += m;
            }
            knn_index::l2_normalize(row);
        }
        v
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| part(start, half));
        let b = part(start + half, n - half);
        let mut a = a.join().expect("generator thread");
        a.extend(b);
        a
    })
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Exact top-10 ids of the first `RECALL_QUERIES` queries, by brute force over the regenerated
/// keys (cached in `dir/truth.json`).
fn exact_truth(
    dir: &Path,
    centres: &[f32],
    n: usize,
    queries: &[f32],
) -> Result<Vec<Vec<u64>>, Error> {
    let cache = dir.join("truth.json");
    if let Ok(bytes) = std::fs::read(&cache) {
        return Ok(serde_json::from_slice(&bytes)?);
    }
    let rq = &queries[..RECALL_QUERIES * DIM];
    let mut truth: Vec<Vec<(f32, u64)>> = vec![Vec::new(); RECALL_QUERIES];
    let mut start = 0;
    while start < n {
        let len = CHUNK.min(n - start);
        let k = keys(centres, start, len, 1_000);
        let mut flat = KeyIndex::from_factory(DIM, "Flat")?;
        let ids: Vec<u64> = (start as u64..(start + len) as u64).collect();
        flat.add(&ids, &k)?;
        for (qi, hits) in flat.search(rq, K)?.into_iter().enumerate() {
            truth[qi].extend(hits.into_iter().map(|(id, s)| (s, id)));
            truth[qi].sort_by(|a, b| b.0.total_cmp(&a.0));
            truth[qi].truncate(K);
        }
        start += len;
    }
    let ids: Vec<Vec<u64>> = truth
        .into_iter()
        .map(|t| t.into_iter().map(|(_, id)| id).collect())
        .collect();
    std::fs::write(&cache, serde_json::to_vec(&ids)?)?;
    Ok(ids)
}

/// Queries per second at batch 1 (`QUERIES_BATCH_1` queries) and at batch 256
/// (`QUERIES_BATCH_256` queries).
fn queries_per_second(
    index: &PromptIndex,
    queries: &[f32],
    params: &SearchParams,
) -> Result<(f64, f64), Error> {
    let t = Instant::now();
    for q in queries.chunks_exact(DIM).take(QUERIES_BATCH_1) {
        index.search_with(q, K, params)?;
    }
    let batch_1 = QUERIES_BATCH_1 as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for b in queries.chunks(256 * DIM).take(QUERIES_BATCH_256 / 256) {
        index.search_with(b, K, params)?;
    }
    Ok((
        batch_1,
        QUERIES_BATCH_256 as f64 / t.elapsed().as_secs_f64(),
    ))
}

/// Share of the exact top-10 of the first `RECALL_QUERIES` queries that `index` finds.
fn recall_at_10(
    index: &PromptIndex,
    queries: &[f32],
    truth: &[Vec<u64>],
    params: &SearchParams,
) -> Result<f64, Error> {
    let got = index.search_with(&queries[..RECALL_QUERIES * DIM], K, params)?;
    let hits: usize = truth
        .iter()
        .zip(&got)
        .map(|(t, g)| g.iter().filter(|(id, _)| t.contains(id)).count())
        .sum();
    Ok(hits as f64 / (RECALL_QUERIES * K) as f64)
}

/// `search DIR [N]`: the merged index measured in this (fresh) process.
fn search(dir: &Path, n: usize) -> Result<(), Error> {
    // The queries and their exact neighbours are made once (the generator's 100k cluster
    // centres alone take 300 MB) and read back by later runs, e.g. in a memory-limited cgroup.
    let (queries_file, truth_file) = (dir.join("queries.f32"), dir.join("truth.json"));
    let (queries, truth) = if queries_file.exists() && truth_file.exists() {
        let bytes = std::fs::read(&queries_file)?;
        let queries: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (
            queries,
            serde_json::from_slice(&std::fs::read(&truth_file)?)?,
        )
    } else {
        let clusters = (n / 100).max(1);
        let centres = unit_vectors(CENTRE_SEED, clusters, DIM);
        let queries = keys(&centres, 0, QUERIES_BATCH_256.max(QUERIES_BATCH_1), 900_000);
        let truth = exact_truth(dir, &centres, n, &queries)?;
        let bytes: Vec<u8> = queries.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&queries_file, bytes)?;
        (queries, truth)
    };
    let truth: Vec<Vec<u64>> = truth;
    let mut report = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        println!("SCALE {k}={v}");
        report.insert(k.to_string(), v);
    };
    put("rss_anon_before_open_kib", status_kib("RssAnon:").into());
    let t = Instant::now();
    let index = PromptIndex::open_with(dir.join("merged"), &LoadOptions::trusted())?;
    put("open_s", t.elapsed().as_secs_f64().into());
    put("rss_anon_after_open_kib", status_kib("RssAnon:").into());
    let default = index.manifest().search_defaults.nprobe.unwrap_or(1);
    for nprobe in [16, 64, 256, default] {
        let p = SearchParams {
            nprobe: Some(nprobe),
            ef_search: None,
        };
        let (qps_1, qps_256) = queries_per_second(&index, &queries, &p)?;
        put(&format!("nprobe_{nprobe}_qps_batch_1"), qps_1.into());
        put(&format!("nprobe_{nprobe}_qps_batch_256"), qps_256.into());
        put(
            &format!("nprobe_{nprobe}_recall_at_10"),
            recall_at_10(&index, &queries, &truth, &p)?.into(),
        );
        put(
            &format!("nprobe_{nprobe}_rss_anon_kib"),
            status_kib("RssAnon:").into(),
        );
        put(
            &format!("nprobe_{nprobe}_rss_file_kib"),
            status_kib("RssFile:").into(),
        );
    }
    put("peak_rss_kib", status_kib("VmHWM:").into());
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("search") {
        let dir = PathBuf::from(args.get(2).ok_or("usage: ondisk_scale search DIR [N]")?);
        let n: usize = args.get(3).map_or(Ok(10_000_000), |s| s.parse())?;
        return search(&dir, n);
    }
    let dir = PathBuf::from(args.get(1).ok_or("usage: ondisk_scale DIR [N] [SHARDS]")?);
    let n: usize = args.get(2).map_or(Ok(10_000_000), |s| s.parse())?;
    let shards: usize = args.get(3).map_or(Ok(10), |s| s.parse())?;
    if dir.exists() {
        return Err(format!("{} exists", dir.display()).into());
    }
    std::fs::create_dir_all(&dir)?;
    let clusters = (n / 100).max(1);
    let centres = unit_vectors(CENTRE_SEED, clusters, DIM);
    let spec = IndexSpec::IvfPq;
    let mut report = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        println!("SCALE {k}={v}");
        report.insert(k.to_string(), v);
    };
    put("n", n.into());
    put("dim", DIM.into());
    put("shards", shards.into());

    // 1. Train once on a sample.
    let t = Instant::now();
    let sample = keys(&centres, 0, TRAIN.min(n), 1_000);
    let trained = TrainedQuantizer::train(
        dir.join("trained"),
        DIM,
        &spec,
        n as u64,
        "synthetic",
        &sample,
    )?;
    drop(sample);
    put(
        "faiss_factory",
        trained.manifest().faiss_factory.clone().into(),
    );
    put("train_s", t.elapsed().as_secs_f64().into());

    // 2. Shards: contiguous row ranges, each its own writer over the trained quantizer.
    let config = IndexConfig::new(DIM, TARGET_DIM, spec)
        .with_models("synthetic", "synthetic")
        .with_trained(dir.join("trained"));
    let t = Instant::now();
    let mut shard_dirs = Vec::new();
    for s in 0..shards {
        // Chunk-aligned boundaries, so that the exact search below regenerates the same keys.
        let bound = |s: usize| {
            if s == shards {
                n
            } else {
                (s * n / shards) / CHUNK * CHUNK
            }
        };
        let (lo, hi) = (bound(s), bound(s + 1));
        let out = dir.join(format!("shard-{s}"));
        let mut w = IndexWriter::create(&out, config.clone())?;
        let mut start = lo;
        while start < hi {
            let len = CHUNK.min(hi - start);
            let k = keys(&centres, start, len, 1_000);
            let ids: Vec<u64> = (start as u64..(start + len) as u64).collect();
            let prompts: Vec<String> = ids.iter().map(|i| format!("prompt {i}")).collect();
            w.append(&ids, &k, &prompts, &vec![1.0; len * TARGET_DIM])?;
            start += len;
        }
        w.set_shard(ShardInfo {
            index: s as u32,
            count: shards as u32,
            corpus_prompts: n as u64,
            corpus_xxh3: "synthetic".into(),
        })?;
        let ts = Instant::now();
        w.finish()?;
        eprintln!(
            "shard {s}: rows {lo}..{hi}, finish {:.1} s, total so far {:.1} s",
            ts.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        shard_dirs.push(out);
    }
    put("shards_build_s", t.elapsed().as_secs_f64().into());
    put(
        "shard_bytes",
        shard_dirs.iter().map(|d| dir_bytes(d)).sum::<u64>().into(),
    );

    // 3. Merge on disk.
    let t = Instant::now();
    let merged = dir.join("merged");
    let rss_before_merge = status_kib("VmHWM:");
    merge_shards(&merged, &shard_dirs)?;
    put("merge_s", t.elapsed().as_secs_f64().into());
    put(
        "peak_rss_kib_until_merge",
        rss_before_merge.max(status_kib("VmHWM:")).into(),
    );
    for d in &shard_dirs {
        std::fs::remove_dir_all(d)?;
    }
    let keys_bytes = std::fs::metadata(merged.join(knn_index::KEYS_FILE))?.len();
    put("index_keys_bytes", keys_bytes.into());
    put("index_dir_bytes", dir_bytes(&merged).into());

    // 4. Open (lists memory-mapped) and search.
    let anon0 = status_kib("RssAnon:");
    let file0 = status_kib("RssFile:");
    let t = Instant::now();
    let index = PromptIndex::open_with(&merged, &LoadOptions::trusted())?;
    put("open_s", t.elapsed().as_secs_f64().into());
    put(
        "rss_anon_after_open_kib",
        (status_kib("RssAnon:").saturating_sub(anon0)).into(),
    );
    let defaults = index.manifest().search_defaults;
    put("nprobe_default", defaults.nprobe.unwrap_or(0).into());

    let queries = keys(&centres, 0, QUERIES_BATCH_256.max(QUERIES_BATCH_1), 900_000);
    let p = SearchParams::default();
    let (qps_1, qps_256) = queries_per_second(&index, &queries, &p)?;
    put("qps_batch_1", qps_1.into());
    put("qps_batch_256", qps_256.into());
    put(
        "rss_anon_searching_kib",
        (status_kib("RssAnon:").saturating_sub(anon0)).into(),
    );
    put(
        "rss_file_searching_kib",
        (status_kib("RssFile:").saturating_sub(file0)).into(),
    );

    // 5. Recall@10 against exact search over the regenerated keys.
    let t = Instant::now();
    let truth = exact_truth(&dir, &centres, n, &queries)?;
    put("exact_truth_s", t.elapsed().as_secs_f64().into());
    put(
        "recall_at_10_default_nprobe",
        recall_at_10(&index, &queries, &truth, &p)?.into(),
    );
    put("peak_rss_kib", status_kib("VmHWM:").into());
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}
