//! Compact targets (`f16`, `int8`): round trips within their error bounds through a build, a
//! conversion and a merge, the bytes they save, and their files checked like the rest.

use std::path::Path;

use knn_index::synth::{gaussian, unit_vectors};
use knn_index::{
    Error, IndexConfig, IndexSpec, PromptIndex, ShardInfo, TARGET_SCALES_FILE, TargetEncoding,
    build_index, convert_targets, merge_shards,
};

const KD: usize = 8;
const TD: usize = 384;
const N: usize = 200;

fn targets() -> Vec<f32> {
    // Sentence embeddings are unit vectors; scale some rows to test the per-row scale.
    let mut t = unit_vectors(3, N, TD);
    for (i, row) in t.chunks_exact_mut(TD).enumerate() {
        let s = 1.0 + (i % 7) as f32;
        row.iter_mut().for_each(|x| *x *= s);
    }
    t
}

fn build(out: &Path, encoding: TargetEncoding, ids: &[u64]) {
    let keys = gaussian(1, N, KD);
    let all = targets();
    let rows: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let k: Vec<f32> = rows
        .iter()
        .flat_map(|&r| keys[r * KD..(r + 1) * KD].to_vec())
        .collect();
    let t: Vec<f32> = rows
        .iter()
        .flat_map(|&r| all[r * TD..(r + 1) * TD].to_vec())
        .collect();
    let prompts: Vec<String> = rows.iter().map(|r| format!("p{r}")).collect();
    let config = IndexConfig::new(KD, TD, IndexSpec::Exact)
        .with_models("k", "t")
        .with_targets(encoding);
    build_index(out, config, ids, &k, &prompts, &t).unwrap();
}

/// Largest error of any element, relative to its row's largest magnitude.
fn worst_error(index: &PromptIndex) -> f32 {
    let all = targets();
    (0..N)
        .map(|i| {
            let want = &all[i * TD..(i + 1) * TD];
            let max = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            let got = index.target(i as u64).unwrap();
            assert_eq!(got.len(), TD);
            want.iter()
                .zip(got.iter())
                .map(|(a, b)| (a - b).abs() / max)
                .fold(0f32, f32::max)
        })
        .fold(0f32, f32::max)
}

#[test]
fn compact_targets_round_trip_within_their_bounds_and_save_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<u64> = (0..N as u64).collect();
    let mut bytes = Vec::new();
    for (encoding, bound) in [
        (TargetEncoding::F32, 0.0),
        (TargetEncoding::F16, 2f32.powi(-11)),
        (TargetEncoding::Int8, 1.0 / 254.0 * 1.001),
    ] {
        let out = tmp.path().join(encoding.to_string());
        build(&out, encoding, &ids);
        let index = PromptIndex::open(&out).unwrap();
        assert_eq!(index.manifest().target_encoding, encoding);
        assert_eq!(index.payload().encoding(), encoding);
        let worst = worst_error(&index);
        assert!(
            worst <= bound,
            "{encoding}: worst relative error {worst} > {bound}"
        );
        let files = encoding.files();
        let size: u64 = files
            .iter()
            .map(|f| std::fs::metadata(out.join(f)).unwrap().len())
            .sum();
        assert_eq!(size, (N * encoding.row_bytes(TD)) as u64);
        // The staged f32 targets are gone from compact indexes.
        assert_eq!(
            out.join(knn_index::TARGETS_FILE).exists(),
            encoding == TargetEncoding::F32
        );
        // All targets at once, decoded.
        assert_eq!(index.payload().targets().len(), N * TD);
        bytes.push(size);
    }
    assert_eq!(bytes[1] * 2, bytes[0]);
    assert!(bytes[2] * 3 < bytes[0], "{bytes:?}");

    // A conversion equals a build with that encoding.
    let converted = tmp.path().join("converted");
    convert_targets(tmp.path().join("f32"), &converted, TargetEncoding::Int8).unwrap();
    let (a, b) = (
        PromptIndex::open(&converted).unwrap(),
        PromptIndex::open(tmp.path().join("int8")).unwrap(),
    );
    for id in 0..N as u64 {
        assert_eq!(a.target(id).unwrap(), b.target(id).unwrap());
        assert_eq!(a.prompt(id).unwrap(), b.prompt(id).unwrap());
    }

    // The scales file is checked like every file.
    let s = converted.join(TARGET_SCALES_FILE);
    let mut raw = std::fs::read(&s).unwrap();
    raw[3] ^= 0x10;
    std::fs::write(&s, raw).unwrap();
    let err = PromptIndex::open(&converted).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains(TARGET_SCALES_FILE), "{err}");
}

#[test]
fn int8_shards_merge_without_requantising() {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    build(
        &single,
        TargetEncoding::Int8,
        &(0..N as u64).collect::<Vec<_>>(),
    );
    let shards: Vec<_> = (0..2u32)
        .map(|s| {
            let out = tmp.path().join(format!("shard-{s}"));
            let ids: Vec<u64> = (0..N as u64).filter(|i| i % 2 == u64::from(s)).collect();
            let keys = gaussian(1, N, KD);
            let all = targets();
            let k: Vec<f32> = ids
                .iter()
                .flat_map(|&i| keys[i as usize * KD..(i as usize + 1) * KD].to_vec())
                .collect();
            let t: Vec<f32> = ids
                .iter()
                .flat_map(|&i| all[i as usize * TD..(i as usize + 1) * TD].to_vec())
                .collect();
            let prompts: Vec<String> = ids.iter().map(|r| format!("p{r}")).collect();
            let config = IndexConfig::new(KD, TD, IndexSpec::Exact)
                .with_models("k", "t")
                .with_targets(TargetEncoding::Int8);
            let mut w = knn_index::IndexWriter::create(&out, config).unwrap();
            w.append(&ids, &k, &prompts, &t).unwrap();
            w.set_shard(ShardInfo {
                index: s,
                count: 2,
                corpus_prompts: N as u64,
                corpus_xxh3: "c".into(),
            })
            .unwrap();
            w.finish().unwrap();
            out
        })
        .collect();
    let merged = tmp.path().join("merged");
    let m = merge_shards(&merged, &shards).unwrap();
    assert_eq!(m.target_encoding, TargetEncoding::Int8);
    let (a, b) = (
        PromptIndex::open(&single).unwrap(),
        PromptIndex::open(&merged).unwrap(),
    );
    for id in 0..N as u64 {
        assert_eq!(a.target(id).unwrap(), b.target(id).unwrap(), "{id}");
    }
}
