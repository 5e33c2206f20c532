//! End-to-end checks of `img2prompt index build` through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{home_with_minilm, img2prompt, minilm_dir};
use img2prompt::ModelId;
use img2prompt::knn_index::PromptIndex;

fn corpus_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../img2prompt/tests/fixtures/corpus")
}

fn clip_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip-encoder/tests/fixtures/clip/clip_a")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn build(home: &Path, prompts: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "index".to_owned(),
        "build".to_owned(),
        "--clip".to_owned(),
        clip_dir().display().to_string(),
        "--out".to_owned(),
        out.display().to_string(),
        "--batch".to_owned(),
        "4".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--prompts".to_owned());
    args.extend(prompts.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    img2prompt(home, &args)
}

#[test]
fn builds_an_index_from_several_corpora() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let csv = corpus_fixtures().join("prompts.csv");
    let parquet = corpus_fixtures().join("prompts.parquet");
    let run = build(home.path(), &[&csv, &parquet], &out, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    let err = stderr(&run);
    // Each fixture holds 6 records: 3 distinct prompts, 1 empty, 2 duplicates; the second file
    // repeats the first.
    assert!(
        err.contains("3 prompts in") && err.contains("12 read: 2 empty, 7 duplicates dropped"),
        "{err}"
    );
    assert!(err.contains("prompts/s"), "{err}");

    let index = PromptIndex::open(&out).unwrap();
    let prompts: Vec<&str> = (0..3).map(|id| index.prompt(id).unwrap()).collect();
    assert_eq!(
        prompts,
        [
            "a photo of a cat",
            "oil painting, dramatic lighting",
            "héron bleu, 水彩"
        ]
    );
    assert_eq!(
        index.manifest().key_model,
        ModelId::of_dir(clip_dir()).unwrap().to_string()
    );
    assert_eq!(
        index.manifest().target_model,
        ModelId::of_dir(minilm_dir()).unwrap().to_string()
    );
    assert_eq!(index.manifest().spec, "exact");

    // A second build into the same directory needs --overwrite.
    let txt = corpus_fixtures().join("prompts.txt");
    let run = build(home.path(), &[&txt], &out, &["--spec", "hnsw"]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("--overwrite"), "{}", stderr(&run));
    let run = build(
        home.path(),
        &[&txt],
        &out,
        &["--spec", "hnsw", "--overwrite"],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(PromptIndex::open(&out).unwrap().manifest().spec, "hnsw");
}

/// Runs a build expected to fail on its input: one-line error naming `names`, no output left.
/// The CLIP model does not exist, so the input must be checked before any model is resolved.
fn fails_on_input(prompts: &[&Path], extra: &[&str], names: &[&str]) {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let mut args = vec![
        "index",
        "build",
        "--clip",
        "no-such-clip-model",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    args.push("--prompts");
    let paths: Vec<String> = prompts.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let run = img2prompt(home.path(), &args);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    for name in names {
        assert!(err.contains(name), "{name:?} not in {err}");
    }
    assert!(
        !err.contains("no-such-clip-model"),
        "input checked after the model: {err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bad_inputs_fail_before_models_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let blank = write("blank.txt", b"\n   \n\t\n");
    fails_on_input(
        &[&blank],
        &[],
        &["blank.txt", "no prompt left after cleaning"],
    );

    let captions = write("captions.csv", b"id,caption\n1,a cat\n");
    fails_on_input(
        &[&captions],
        &[],
        &["captions.csv", "no column", "\"caption\""],
    );
    let parquet = corpus_fixtures().join("prompts.parquet");
    fails_on_input(
        &[&parquet],
        &["--column", "caption"],
        &["prompts.parquet", "no column \"caption\""],
    );

    let weights = clip_dir().join("model.safetensors");
    fails_on_input(
        &[&weights],
        &[],
        &["model.safetensors", "not a prompt corpus"],
    );
    let fake = write("fake.parquet", b"id,prompt\n1,a cat\n");
    fails_on_input(&[&fake], &[], &["fake.parquet", "Parquet"]);
    fails_on_input(
        &[&dir.path().join("missing.jsonl")],
        &[],
        &["missing.jsonl"],
    );
}

#[test]
fn shards_merge_through_the_cli_and_bad_merges_are_refused() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let csv = corpus_fixtures().join("prompts.csv");
    let parquet = corpus_fixtures().join("prompts.parquet");
    let single = dir.path().join("single");
    let run = build(home.path(), &[&csv, &parquet], &single, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    let mut shards = Vec::new();
    for i in 0..2 {
        let out = dir.path().join(format!("shard-{i}"));
        let shard = format!("{i}/2");
        let run = build(
            home.path(),
            &[&csv, &parquet],
            &out,
            &["--shard", &shard, "--chunk", "1"],
        );
        assert!(run.status.success(), "{}", stderr(&run));
        assert!(
            stderr(&run).contains(&format!("shard {shard}")),
            "{}",
            stderr(&run)
        );
        shards.push(out.display().to_string());
    }
    let merged = dir.path().join("merged");
    let merged_arg = merged.display().to_string();
    // One shard only: refused, nothing written.
    let run = img2prompt(
        home.path(),
        &["index", "merge", "--out", &merged_arg, &shards[0]],
    );
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("shard 1/2 missing"),
        "{}",
        stderr(&run)
    );
    assert!(!merged.exists());
    let run = img2prompt(
        home.path(),
        &[
            "index",
            "merge",
            "--out",
            &merged_arg,
            &shards[1],
            &shards[0],
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("3 prompts from 2 shards"),
        "{}",
        stderr(&run)
    );
    let (a, b) = (
        PromptIndex::open(&single).unwrap(),
        PromptIndex::open(&merged).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for id in 0..a.len() as u64 {
        assert_eq!(a.prompt(id).unwrap(), b.prompt(id).unwrap());
    }
    // Merging again over the result needs --overwrite.
    let run = img2prompt(
        home.path(),
        &[
            "index",
            "merge",
            "--out",
            &merged_arg,
            &shards[0],
            &shards[1],
        ],
    );
    assert!(!run.status.success());
    // A copy with int8 targets.
    let int8 = dir.path().join("int8");
    let int8_arg = int8.display().to_string();
    let run = img2prompt(
        home.path(),
        &[
            "index",
            "convert",
            "--targets",
            "int8",
            "--out",
            &int8_arg,
            &merged_arg,
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let converted = PromptIndex::open(&int8).unwrap();
    assert_eq!(
        converted.manifest().target_encoding,
        img2prompt::knn_index::TargetEncoding::Int8
    );
    assert_eq!(converted.len(), b.len());
    let run = img2prompt(
        home.path(),
        &[
            "index",
            "convert",
            "--targets",
            "bf16",
            "--out",
            "x",
            &merged_arg,
        ],
    );
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("unknown target encoding"),
        "{}",
        stderr(&run)
    );

    // IVF shards over one trained quantizer.
    let trained = dir.path().join("trained");
    let trained_arg = trained.display().to_string();
    let run = img2prompt(
        home.path(),
        &[
            "index",
            "train",
            "--clip",
            &clip_dir().display().to_string(),
            "--spec",
            "ivf",
            "--sample",
            "3",
            "--out",
            &trained_arg,
            "--prompts",
            &csv.display().to_string(),
            &parquet.display().to_string(),
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("trained on 3 of 3 prompts"),
        "{}",
        stderr(&run)
    );
    let mut ivf_shards = Vec::new();
    for i in 0..2 {
        let out = dir.path().join(format!("ivf-{i}"));
        let shard = format!("{i}/2");
        let run = build(
            home.path(),
            &[&csv, &parquet],
            &out,
            &["--shard", &shard, "--trained", &trained_arg],
        );
        assert!(run.status.success(), "{}", stderr(&run));
        ivf_shards.push(out.display().to_string());
    }
    let ivf = dir.path().join("ivf");
    let ivf_arg = ivf.display().to_string();
    let run = img2prompt(
        home.path(),
        &[
            "index",
            "merge",
            "--out",
            &ivf_arg,
            &ivf_shards[0],
            &ivf_shards[1],
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let merged_ivf = PromptIndex::open(&ivf).unwrap();
    assert!(merged_ivf.manifest().faiss_factory.starts_with("IVF"));
    assert_eq!(merged_ivf.len(), 3);
    // An IVF shard without the shared quantizer is refused.
    let run = build(
        home.path(),
        &[&csv],
        &dir.path().join("untrained"),
        &["--shard", "0/2", "--spec", "ivf"],
    );
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("must share one trained quantizer"),
        "{}",
        stderr(&run)
    );

    // A bad --shard is refused before any model is loaded.
    let run = build(
        home.path(),
        &[&csv],
        &dir.path().join("x"),
        &["--shard", "2/2"],
    );
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("shard 2/2 does not exist"),
        "{}",
        stderr(&run)
    );
}
