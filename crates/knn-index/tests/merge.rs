//! Sharded builds: shards merged equal a single build (exact, HNSW), IVF-PQ shards added to one
//! trained quantizer merge on disk into the index a single build over that quantizer makes, and
//! every inconsistent set of shards is refused with an error naming the problem.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use knn_index::synth::{clustered_unit_vectors, unit_vectors};
use knn_index::{
    Error, IndexConfig, IndexSpec, IndexWriter, KEYS_FILE, PromptIndex, SearchParams, ShardInfo,
    TARGETS_FILE, TrainedQuantizer, merge_shards,
};

const KD: usize = 32;
const TD: usize = 6;

struct Corpus {
    keys: Vec<f32>,
    prompts: Vec<String>,
    targets: Vec<f32>,
}

impl Corpus {
    fn new(n: usize) -> Self {
        Corpus {
            keys: clustered_unit_vectors(7, 9, n, KD, n / 50, 0.5),
            prompts: (0..n).map(|i| format!("prompt number {i}")).collect(),
            targets: unit_vectors(8, n, TD),
        }
    }
    fn len(&self) -> usize {
        self.prompts.len()
    }
}

fn config(spec: IndexSpec) -> IndexConfig {
    IndexConfig::new(KD, TD, spec).with_models("clip-test", "minilm-test")
}

fn info(index: u32, count: u32, n: usize, corpus: &str) -> ShardInfo {
    ShardInfo {
        index,
        count,
        corpus_prompts: n as u64,
        corpus_xxh3: corpus.to_owned(),
    }
}

/// Builds `out` from the corpus rows `ids` (in increasing order), as shard `shard` when given.
fn build(out: &Path, config: IndexConfig, c: &Corpus, ids: &[u64], shard: Option<ShardInfo>) {
    let mut w = IndexWriter::create(out, config).unwrap();
    let mut keys = Vec::new();
    let mut prompts = Vec::new();
    let mut targets = Vec::new();
    for &id in ids {
        let i = id as usize;
        keys.extend_from_slice(&c.keys[i * KD..(i + 1) * KD]);
        prompts.push(c.prompts[i].clone());
        targets.extend_from_slice(&c.targets[i * TD..(i + 1) * TD]);
    }
    // Two appends, as a chunked build does.
    let half = ids.len() / 2;
    w.append(
        &ids[..half],
        &keys[..half * KD],
        &prompts[..half],
        &targets[..half * TD],
    )
    .unwrap();
    w.append(
        &ids[half..],
        &keys[half * KD..],
        &prompts[half..],
        &targets[half * TD..],
    )
    .unwrap();
    if let Some(info) = shard {
        w.set_shard(info).unwrap();
    }
    w.finish().unwrap();
}

/// Shards `count` of the corpus, split by `id % count`, built under `dir`.
fn build_shards(dir: &Path, config: &IndexConfig, c: &Corpus, count: u32) -> Vec<PathBuf> {
    (0..count)
        .map(|s| {
            let out = dir.join(format!("shard-{s}"));
            let ids: Vec<u64> = (0..c.len() as u64)
                .filter(|i| i % u64::from(count) == u64::from(s))
                .collect();
            build(
                &out,
                config.clone(),
                c,
                &ids,
                Some(info(s, count, c.len(), "corpus-a")),
            );
            out
        })
        .collect()
}

fn all_ids(c: &Corpus) -> Vec<u64> {
    (0..c.len() as u64).collect()
}

fn top_ids(index: &PromptIndex, queries: &[f32], k: usize) -> Vec<Vec<u64>> {
    index
        .search_with(queries, k, &SearchParams::default())
        .unwrap()
        .into_iter()
        .map(|hits| hits.into_iter().map(|(id, _)| id).collect())
        .collect()
}

fn assert_same_payload(a: &PromptIndex, b: &PromptIndex) {
    assert_eq!(a.len(), b.len());
    for row in 0..a.len() {
        assert_eq!(a.id_at(row), b.id_at(row), "row {row}");
        let id = a.id_at(row).unwrap();
        assert_eq!(a.prompt(id).unwrap(), b.prompt(id).unwrap());
        assert_eq!(a.target(id).unwrap(), b.target(id).unwrap());
    }
}

#[test]
fn exact_shards_merge_into_the_single_build() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(600);
    let single = tmp.path().join("single");
    build(&single, config(IndexSpec::Exact), &c, &all_ids(&c), None);
    let mut shards = build_shards(tmp.path(), &config(IndexSpec::Exact), &c, 3);
    shards.reverse(); // any order
    let merged = tmp.path().join("merged");
    let manifest = merge_shards(&merged, &shards).unwrap();
    assert_eq!(manifest.count, 600);
    assert!(manifest.shard.is_none());

    let (a, b) = (
        PromptIndex::open(&single).unwrap(),
        PromptIndex::open(&merged).unwrap(),
    );
    assert_same_payload(&a, &b);
    let queries = &c.keys[..40 * KD];
    let (ha, hb) = (
        a.search(queries, 10).unwrap(),
        b.search(queries, 10).unwrap(),
    );
    for (x, y) in ha.iter().zip(&hb) {
        let ids: Vec<u64> = x.iter().map(|h| h.0).collect();
        assert_eq!(ids, y.iter().map(|h| h.0).collect::<Vec<_>>());
        for (p, q) in x.iter().zip(y) {
            assert!((p.1 - q.1).abs() < 1e-5, "{} vs {}", p.1, q.1);
        }
    }
}

#[test]
fn hnsw_is_rebuilt_from_the_shards_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(800);
    let shards = build_shards(tmp.path(), &config(IndexSpec::Hnsw), &c, 2);
    let merged = tmp.path().join("merged");
    merge_shards(&merged, &shards).unwrap();
    let b = PromptIndex::open(&merged).unwrap();
    assert_eq!(b.manifest().faiss_factory, "HNSW32");
    let exact = tmp.path().join("exact");
    build(&exact, config(IndexSpec::Exact), &c, &all_ids(&c), None);
    let a = PromptIndex::open(&exact).unwrap();
    assert_same_payload(&a, &b);
    let queries = &c.keys[..50 * KD];
    let (ta, tb) = (top_ids(&a, queries, 10), top_ids(&b, queries, 10));
    let hits: usize = ta
        .iter()
        .zip(&tb)
        .map(|(x, y)| {
            let x: HashSet<_> = x.iter().collect();
            y.iter().filter(|id| x.contains(id)).count()
        })
        .sum();
    let recall = hits as f64 / 500.0;
    assert!(recall >= 0.95, "recall@10 of the merged HNSW {recall}");
}

#[test]
fn ivf_pq_shards_merge_on_disk_into_the_single_build_over_the_same_quantizer() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(4000);
    let trained = tmp.path().join("trained");
    let sample = &c.keys[..2000 * KD];
    let t = TrainedQuantizer::train(&trained, KD, &IndexSpec::IvfPq, 4000, "clip-test", sample)
        .unwrap();
    assert_eq!(t.manifest().sample, 2000);
    let cfg = config(IndexSpec::IvfPq).with_trained(&trained);

    let single = tmp.path().join("single");
    build(&single, cfg.clone(), &c, &all_ids(&c), None);
    let shards = build_shards(tmp.path(), &cfg, &c, 3);
    let merged = tmp.path().join("merged");
    let manifest = merge_shards(&merged, &shards).unwrap();
    assert_eq!(
        manifest.trained_xxh3.as_deref(),
        Some(t.manifest().file.xxh3.as_str())
    );
    let (a, b) = (
        PromptIndex::open(&single).unwrap(),
        PromptIndex::open(&merged).unwrap(),
    );
    assert_same_payload(&a, &b);
    assert_eq!(a.manifest().faiss_factory, b.manifest().faiss_factory);
    // Same codes in the same lists: the same neighbours with the same scores (list order
    // differs, so compare score-sorted sets).
    let queries = &c.keys[1000 * KD..1060 * KD];
    let p = SearchParams {
        nprobe: Some(8),
        ef_search: None,
    };
    let (ha, hb) = (
        a.search_with(queries, 10, &p).unwrap(),
        b.search_with(queries, 10, &p).unwrap(),
    );
    for (x, y) in ha.iter().zip(&hb) {
        for (p, q) in x.iter().zip(y) {
            assert!((p.1 - q.1).abs() < 1e-5, "{x:?} vs {y:?}");
        }
        let xs: HashSet<u64> = x.iter().map(|h| h.0).collect();
        let ys: HashSet<u64> = y.iter().map(|h| h.0).collect();
        // Only ties at the cut-off may differ.
        assert!(xs.intersection(&ys).count() >= 9, "{x:?} vs {y:?}");
    }
    // And it finds what exact search finds, as well as the single build does.
    let exact = tmp.path().join("exact");
    build(&exact, config(IndexSpec::Exact), &c, &all_ids(&c), None);
    let truth = top_ids(&PromptIndex::open(&exact).unwrap(), queries, 10);
    let recall = |index: &PromptIndex| {
        let got = top_ids(index, queries, 10);
        let hits: usize = truth
            .iter()
            .zip(&got)
            .map(|(t, g)| g.iter().filter(|id| t.contains(id)).count())
            .sum();
        hits as f64 / (truth.len() * 10) as f64
    };
    // A plain single build (trained on all its own keys) sets the recall bound.
    let own = tmp.path().join("own");
    build(&own, config(IndexSpec::IvfPq), &c, &all_ids(&c), None);
    let own = PromptIndex::open(&own).unwrap();
    assert_eq!(own.manifest().faiss_factory, b.manifest().faiss_factory);
    let (ra, rb, ro) = (recall(&a), recall(&b), recall(&own));
    assert!(
        rb >= ra - 0.02,
        "merged recall {rb} vs single over the same quantizer {ra}"
    );
    assert!(
        rb >= ro - 0.05,
        "merged recall {rb} vs plain single build {ro}"
    );
}

fn merge_error(out: &Path, shards: &[PathBuf]) -> String {
    let err = merge_shards(out, shards).unwrap_err();
    assert!(!out.exists(), "a refused merge wrote {}", out.display());
    err.to_string()
}

#[test]
fn inconsistent_shards_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(300);
    let shards = build_shards(tmp.path(), &config(IndexSpec::Exact), &c, 3);
    let out = tmp.path().join("merged");

    // Missing shard.
    let err = merge_error(&out, &shards[..2]);
    assert!(err.contains("shard 2/3 missing"), "{err}");
    // Shard given twice.
    let twice = [shards[0].clone(), shards[1].clone(), shards[1].clone()];
    let err = merge_error(&out, &twice);
    assert!(err.contains("shard 1/3 is given twice"), "{err}");
    // Nothing given.
    let err = merge_error(&out, &[]);
    assert!(err.contains("no shard directories"), "{err}");

    // Overlapping ids: shard 1 also holds id 0.
    let overlap = tmp.path().join("overlap");
    let ids: Vec<u64> = std::iter::once(0)
        .chain((0..300).filter(|i| i % 3 == 1))
        .collect();
    build(
        &overlap,
        config(IndexSpec::Exact),
        &c,
        &ids,
        Some(info(1, 3, 300, "corpus-a")),
    );
    let err = merge_error(&out, &[shards[0].clone(), overlap, shards[2].clone()]);
    assert!(err.contains("id 0 is in both"), "{err}");

    // Another corpus, other models, another split, not a shard.
    let cases: [(&str, IndexConfig, Option<ShardInfo>, &str); 4] = [
        (
            "corpus",
            config(IndexSpec::Exact),
            Some(info(2, 3, 300, "corpus-b")),
            "different corpora",
        ),
        (
            "models",
            IndexConfig::new(KD, TD, IndexSpec::Exact).with_models("other-clip", "minilm-test"),
            Some(info(2, 3, 300, "corpus-a")),
            "different models",
        ),
        (
            "split",
            config(IndexSpec::Exact),
            Some(info(2, 4, 300, "corpus-a")),
            "shards of different splits",
        ),
        ("plain", config(IndexSpec::Exact), None, "is not a shard"),
    ];
    for (name, cfg, shard, expected) in cases {
        let dir = tmp.path().join(name);
        let ids: Vec<u64> = (0..300).filter(|i| i % 3 == 2).collect();
        build(&dir, cfg, &c, &ids, shard);
        let err = merge_error(&out, &[shards[0].clone(), shards[1].clone(), dir]);
        assert!(err.contains(expected), "{name}: {err}");
    }

    // A corrupted shard is named.
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for e in std::fs::read_dir(&shards[2]).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), damaged.join(e.file_name())).unwrap();
    }
    let t = damaged.join(TARGETS_FILE);
    let mut bytes = std::fs::read(&t).unwrap();
    bytes[5] ^= 0x40;
    std::fs::write(&t, bytes).unwrap();
    let err = merge_shards(&out, &[shards[0].clone(), shards[1].clone(), damaged]).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains(TARGETS_FILE), "{err}");
    assert!(!out.exists());

    // The good shards still merge.
    merge_shards(&out, &shards).unwrap();
    assert_eq!(PromptIndex::open(&out).unwrap().len(), 300);
}

#[test]
fn ivf_shards_need_one_trained_quantizer() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(1200);
    let out = tmp.path().join("merged");
    // Each shard trained on its own keys.
    let own = build_shards(&tmp.path().join("own"), &config(IndexSpec::Ivf), &c, 2);
    let err = merge_error(&out, &own);
    assert!(err.contains("each trained their own quantizer"), "{err}");

    // Two trained quantizers (different samples).
    let train = |name: &str, from: usize| {
        let dir = tmp.path().join(name);
        TrainedQuantizer::train(
            &dir,
            KD,
            &IndexSpec::Ivf,
            1200,
            "clip-test",
            &c.keys[from * KD..(from + 600) * KD],
        )
        .unwrap();
        dir
    };
    let (t1, t2) = (train("t1", 0), train("t2", 600));
    let a = build_shards(
        &tmp.path().join("a"),
        &config(IndexSpec::Ivf).with_trained(&t1),
        &c,
        2,
    );
    let b = build_shards(
        &tmp.path().join("b"),
        &config(IndexSpec::Ivf).with_trained(&t2),
        &c,
        2,
    );
    let err = merge_error(&out, &[a[0].clone(), b[1].clone()]);
    assert!(err.contains("different trained quantizers"), "{err}");
    // A keys file whose FAISS header was tampered with (manifest fixed up to match) is caught
    // by the checksum before anything is merged.
    let k = a[1].join(KEYS_FILE);
    let mut bytes = std::fs::read(&k).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&k, &bytes).unwrap();
    let err = merge_shards(&out, &a).unwrap_err();
    assert!(err.to_string().contains(KEYS_FILE), "{err}");

    // A trained quantizer of another width, or damaged, is refused when the build starts.
    let err = IndexWriter::create(
        tmp.path().join("w"),
        IndexConfig::new(KD * 2, TD, IndexSpec::Ivf).with_trained(&t1),
    )
    .unwrap_err();
    assert!(err.to_string().contains("key dim"), "{err}");
    let f = t2.join(knn_index::TRAINED_FAISS_FILE);
    let mut bytes = std::fs::read(&f).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&f, &bytes).unwrap();
    let err = TrainedQuantizer::open(&t2).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    // Exact needs no training.
    let err = TrainedQuantizer::train(
        tmp.path().join("t3"),
        KD,
        &IndexSpec::Exact,
        10,
        "m",
        &c.keys[..10 * KD],
    )
    .unwrap_err();
    assert!(err.to_string().contains("not an IVF index"), "{err}");
}
