//! The offline stage through the library: `IndexBuilder` with the tiny random CLIP fixture (keys)
//! and the real all-MiniLM-L6-v2 (targets).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use img2prompt::builder::{BuildReport, IndexBuilder, Shard, train_quantizer};
use img2prompt::corpus::CleanStats;
use img2prompt::knn_index::{IndexSpec, IndexWriter, PromptIndex, merge_shards};
use img2prompt::{ClipTextEmbedder, Error, ModelId, SentenceTextEmbedder, TextEmbedder};

fn clip_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip-encoder/tests/fixtures/clip/clip_a")
}

/// The two encoders, loaded once for every test of this file.
fn encoders() -> &'static (ClipTextEmbedder, SentenceTextEmbedder) {
    static ENCODERS: OnceLock<(ClipTextEmbedder, SentenceTextEmbedder)> = OnceLock::new();
    ENCODERS.get_or_init(|| {
        let device = img2prompt::Backend::default().device().unwrap();
        let clip = ClipTextEmbedder::load(clip_dir(), &device).unwrap();
        let minilm = SentenceTextEmbedder::load(common::minilm_dir(), &device).unwrap();
        (clip, minilm)
    })
}

fn builder() -> IndexBuilder<'static> {
    let (clip, minilm) = encoders();
    IndexBuilder::new(clip, minilm).batch_size(8).chunk_size(16)
}

/// 50 distinct prompts once cleaned, in order.
fn distinct_prompts() -> Vec<String> {
    let subjects = [
        "an astronaut riding a horse",
        "a lighthouse in a storm",
        "a bowl of ramen",
        "a fox in the snow",
        "an old sailor",
        "a cyberpunk street market",
        "a cozy reading nook with a cat",
        "a medieval castle on a hill",
        "a robot playing chess",
        "a field of sunflowers",
    ];
    let styles = [
        "oil painting",
        "pixel art",
        "watercolor, soft light",
        "cinematic, 35mm photo",
        "ukiyo-e woodblock print",
    ];
    subjects
        .iter()
        .flat_map(|s| styles.iter().map(move |st| format!("{s}, {st}")))
        .collect()
}

/// The raw records: the distinct prompts with messy whitespace, 3 duplicates and 2 blanks mixed in.
fn raw_records() -> Vec<String> {
    let clean = distinct_prompts();
    let mut raw = Vec::new();
    for (i, p) in clean.iter().enumerate() {
        raw.push(if i % 7 == 0 {
            format!("  {}\t", p.replace(", ", ",   "))
        } else {
            p.clone()
        });
        match i {
            5 => raw.push("   ".to_owned()),
            11 => raw.push(format!("{p} ")), // a duplicate once trimmed
            20 => raw.push(clean[3].clone()),
            33 => raw.push(String::new()),
            40 => raw.push(clean[40].replace(' ', "  ")),
            _ => {}
        }
    }
    raw
}

fn ok_stream(records: Vec<String>) -> impl Iterator<Item = img2prompt::Result<String>> {
    records.into_iter().map(Ok)
}

/// Checks everything an index must hold for `prompts` (by id).
fn check_index(dir: &Path, prompts: &[String]) -> PromptIndex {
    let (clip, minilm) = encoders();
    let index = PromptIndex::open(dir).unwrap();
    assert_eq!(index.len(), prompts.len());
    let manifest = index.manifest();
    // The identities are computed independently of the builder, from the checkpoints.
    assert_eq!(
        manifest.key_model,
        ModelId::of_dir(clip_dir()).unwrap().to_string()
    );
    assert_eq!(
        manifest.target_model,
        ModelId::of_dir(common::minilm_dir()).unwrap().to_string()
    );
    assert_eq!((manifest.key_dim, manifest.target_dim), (16, 384));
    for (id, prompt) in prompts.iter().enumerate() {
        let id = id as u64;
        assert_eq!(index.prompt(id).unwrap(), prompt, "prompt {id}");
        let want = minilm.embed_texts(&[prompt.as_str()]).unwrap();
        let got = index.target(id).unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "target {id} differs by {worst}");
        let query = clip.embed_texts(&[prompt.as_str()]).unwrap();
        let hits = index.search(&query, 2).unwrap();
        assert_eq!(hits[0][0].0, id, "key search for {prompt:?}: {:?}", hits[0]);
        assert!(hits[0][0].1 > 0.9999, "own key cosine {}", hits[0][0].1);
    }
    index
}

#[test]
fn builds_an_index_of_the_cleaned_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let raw = raw_records();
    let report: BuildReport = builder().build(ok_stream(raw.clone()), &out).unwrap();
    let expected = distinct_prompts();
    assert_eq!(
        report.clean,
        CleanStats {
            read: raw.len() as u64,
            kept: 50,
            empty: 2,
            duplicates: 3
        }
    );
    assert_eq!(raw.len(), 55);
    assert_eq!(
        (report.prompts, report.encoded, report.resumed_from),
        (50, 50, 0)
    );
    // 55 records (the exact size hint of a Vec iterator) pick the exact spec.
    assert_eq!(
        (report.spec.as_str(), report.faiss_factory.as_str()),
        ("exact", "Flat")
    );
    let (clip, minilm) = encoders();
    assert_eq!(report.key_model, clip.model_id().to_string());
    assert_eq!(report.target_model, minilm.model_id().to_string());
    check_index(&out, &expected);
    assert!(!IndexWriter::staging_dir_for(&out).unwrap().exists());

    // A finished index is not replaced without `overwrite`; with it, it is.
    let again = builder().build(ok_stream(vec!["new prompt".into()]), &out);
    let err = again.unwrap_err();
    assert!(matches!(err, Error::OutputExists { .. }), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(PromptIndex::open(&out).unwrap().len(), 50);
    let report = builder()
        .overwrite(true)
        .spec(IndexSpec::Hnsw)
        .build(ok_stream(vec!["new prompt".into(), "another".into()]), &out)
        .unwrap();
    assert_eq!(report.spec, "hnsw");
    let index = PromptIndex::open(&out).unwrap();
    assert_eq!(index.len(), 2);
    assert_eq!(index.prompt(1).unwrap(), "another");
}

/// A stream that fails after `n` records, like a build killed mid-way.
fn failing_after(
    records: Vec<String>,
    n: usize,
) -> impl Iterator<Item = img2prompt::Result<String>> {
    records
        .into_iter()
        .take(n)
        .map(Ok)
        .chain(std::iter::once(Err(Error::invalid("test", "stream cut"))))
}

#[test]
fn interrupted_build_resumes_to_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_records();
    let expected = distinct_prompts();

    let whole = dir.path().join("whole");
    builder().build(ok_stream(raw.clone()), &whole).unwrap();

    let out = dir.path().join("resumed");
    // 33 records hold 30 distinct prompts (one blank, two duplicates among them): one chunk of 16
    // and a partial one of 14 get staged before the error.
    let err = builder()
        .build(failing_after(raw.clone(), 33), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stream cut"), "{err}");
    assert!(!out.exists(), "nothing is swapped in before the end");
    assert!(IndexWriter::staging_dir_for(&out).unwrap().exists());

    // Same records, but the spec must match the interrupted build's: give the same size hint.
    let report = builder()
        .expected_records(raw.len() as u64)
        .build(ok_stream(raw.clone()), &out)
        .unwrap();
    assert_eq!(report.resumed_from, 30);
    assert_eq!(report.encoded, 20);
    assert_eq!(report.prompts, 50);
    assert_eq!(
        report.clean.read, 55,
        "cleaning counts cover the whole corpus"
    );
    assert!(!IndexWriter::staging_dir_for(&out).unwrap().exists());

    let resumed = check_index(&out, &expected);
    let uninterrupted = PromptIndex::open(&whole).unwrap();
    for id in 0..50u64 {
        assert_eq!(
            resumed.prompt(id).unwrap(),
            uninterrupted.prompt(id).unwrap()
        );
        let (a, b) = (
            resumed.target(id).unwrap(),
            uninterrupted.target(id).unwrap(),
        );
        assert!(
            a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-5),
            "target {id}"
        );
    }
}

#[test]
fn resume_refuses_other_prompts_and_fresh_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let raw = raw_records();
    builder()
        .expected_records(100)
        .build(failing_after(raw.clone(), 20), &out)
        .unwrap_err();

    let mut other = raw.clone();
    other[2] = "a completely different prompt".to_owned();
    let err = builder()
        .expected_records(100)
        .build(ok_stream(other.clone()), &out)
        .unwrap_err();
    assert!(matches!(err, Error::Resume { .. }), "{err}");
    assert!(err.to_string().contains("prompt 2 differs"), "{err}");

    // Other models or spec than the interrupted build's: refused too.
    let err = builder()
        .expected_records(100)
        .spec(IndexSpec::Hnsw)
        .build(ok_stream(raw.clone()), &out)
        .unwrap_err();
    assert!(matches!(err, Error::Resume { .. }), "{err}");
    assert!(err.to_string().contains("cannot resume"), "{err}");

    let report = builder()
        .expected_records(100)
        .fresh(true)
        .build(ok_stream(other.clone()), &out)
        .unwrap();
    assert_eq!((report.resumed_from, report.prompts), (0, 50));
    assert_eq!(
        PromptIndex::open(&out).unwrap().prompt(2).unwrap(),
        "a completely different prompt"
    );
}

#[test]
fn empty_corpus_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let err = builder()
        .inputs_label("blank.txt")
        .build(ok_stream(vec!["".into(), "  \t ".into()]), &out)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("blank.txt: no prompt left"), "{err}");
    assert!(err.contains("2 records read: 2 empty"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // A stream failing before its first prompt leaves nothing either.
    let err = builder()
        .build(failing_after(vec![], 0), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stream cut"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Builds shard `i` of `count` of the raw records at `out`.
fn build_shard(out: &Path, i: u32, count: u32, trained: Option<&Path>) -> BuildReport {
    let mut b = builder().shard(Shard::new(i, count).unwrap());
    if let Some(t) = trained {
        b = b.trained(t);
    }
    b.build(ok_stream(raw_records()), out).unwrap()
}

#[test]
fn sharded_builds_merge_into_the_single_build() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    builder()
        .spec(IndexSpec::Exact)
        .build(ok_stream(raw_records()), &whole)
        .unwrap();
    let shards: Vec<PathBuf> = (0..3)
        .map(|i| {
            let out = dir.path().join(format!("shard-{i}"));
            let report = build_shard(&out, i, 3, None);
            assert_eq!(report.shard.as_deref(), Some(format!("{i}/3").as_str()));
            assert_eq!(report.clean.read, 55, "every shard reads the whole corpus");
            out
        })
        .collect();
    let sizes: Vec<usize> = shards
        .iter()
        .map(|s| PromptIndex::open(s).unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 50, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n > 5), "a lopsided split {sizes:?}");
    let merged = dir.path().join("merged");
    merge_shards(&merged, &shards).unwrap();

    let expected = distinct_prompts();
    let (a, b) = (
        check_index(&whole, &expected),
        check_index(&merged, &expected),
    );
    let (ids, keys) = a.keys_in_rows(0, 50).unwrap();
    assert_eq!(ids, (0..50).collect::<Vec<u64>>());
    let (_, merged_keys) = b.keys_in_rows(0, 50).unwrap();
    assert!(
        keys.iter()
            .zip(&merged_keys)
            .all(|(x, y)| (x - y).abs() < 1e-5)
    );
    for id in 0..50u64 {
        let (x, y) = (a.target(id).unwrap(), b.target(id).unwrap());
        assert!(
            x.iter().zip(y.iter()).all(|(p, q)| (p - q).abs() < 1e-5),
            "{id}"
        );
    }
    let (ha, hb) = (a.search(&keys, 5).unwrap(), b.search(&keys, 5).unwrap());
    for (x, y) in ha.iter().zip(&hb) {
        assert_eq!(
            x.iter().map(|h| h.0).collect::<Vec<_>>(),
            y.iter().map(|h| h.0).collect::<Vec<_>>()
        );
    }

    // A shard of another corpus is refused.
    let other = dir.path().join("other");
    let mut fewer = raw_records();
    fewer.pop();
    builder()
        .shard(Shard::new(2, 3).unwrap())
        .build(ok_stream(fewer), &other)
        .unwrap();
    let err = merge_shards(
        dir.path().join("bad"),
        &[shards[0].clone(), shards[1].clone(), other],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("different corpora"), "{err}");
}

#[test]
fn ivf_shards_share_one_trained_quantizer() {
    let dir = tempfile::tempdir().unwrap();
    let (clip, _) = encoders();
    let trained = dir.path().join("trained");
    let report = train_quantizer(
        clip,
        ok_stream(raw_records()),
        &IndexSpec::Ivf,
        40,
        &trained,
    )
    .unwrap();
    assert_eq!((report.corpus_prompts, report.sample), (50, 40));
    // Sized for the whole corpus, as a single build of it.
    assert_eq!(report.faiss_factory, "IVF7,Flat");
    let shards: Vec<PathBuf> = (0..2)
        .map(|i| {
            let out = dir.path().join(format!("shard-{i}"));
            build_shard(&out, i, 2, Some(&trained));
            out
        })
        .collect();
    // Without the shared quantizer an IVF shard is refused before it encodes anything.
    let err = builder()
        .shard(Shard::new(0, 2).unwrap())
        .spec(IndexSpec::Ivf)
        .build(ok_stream(raw_records()), &dir.path().join("untrained"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must share one trained quantizer"), "{err}");
    assert!(!dir.path().join("untrained").exists());
    let merged = dir.path().join("merged");
    let manifest = merge_shards(&merged, &shards).unwrap();
    assert_eq!(manifest.faiss_factory, "IVF7,Flat");
    let index = check_index(&merged, &distinct_prompts());
    // IVF,Flat stores keys exactly: each prompt's own key finds it first with every list probed.
    let (_, keys) = index.keys_in_rows(0, 50).unwrap();
    let p = img2prompt::knn_index::SearchParams {
        nprobe: Some(7),
        ef_search: None,
    };
    for (id, hits) in index.search_with(&keys, 1, &p).unwrap().iter().enumerate() {
        assert_eq!(hits[0].0, id as u64);
    }
}

#[test]
fn a_shard_cut_short_resumes_to_the_same_shard() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    build_shard(&whole, 1, 2, None);
    let out = dir.path().join("resumed");
    let shard = Shard::new(1, 2).unwrap();
    let err = builder()
        .shard(shard)
        .build(failing_after(raw_records(), 45), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stream cut"), "{err}");
    let report = builder()
        .shard(shard)
        .build(ok_stream(raw_records()), &out)
        .unwrap();
    assert!(report.resumed_from > 0, "{report}");
    assert_eq!(report.resumed_from + report.encoded, report.prompts);
    let (a, b) = (
        PromptIndex::open(&whole).unwrap(),
        PromptIndex::open(&out).unwrap(),
    );
    assert_eq!(a.manifest().shard, b.manifest().shard);
    assert_eq!(a.len(), b.len());
    for row in 0..a.len() {
        let id = a.id_at(row).unwrap();
        assert_eq!(b.id_at(row), Some(id));
        assert_eq!(a.prompt(id).unwrap(), b.prompt(id).unwrap());
    }
}
