//! `img2prompt head train` through the real binary, on a small synthetic index (no models).

mod common;

use std::path::Path;
use std::process::Output;

use common::img2prompt;
use img2prompt::head::{ClipHead, HEAD_FILE, HeadKind};
use img2prompt::knn_index::{IndexConfig, IndexSpec, PromptIndex, build_index, synth};
use img2prompt::{EmbeddingHead, knn_index};

const KEY: usize = 16;
const TARGET: usize = 12;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An index whose targets are a fixed linear map of its keys (so a linear head fits well).
fn build(dir: &Path, n: usize, spec: IndexSpec) {
    let keys = synth::gaussian(1, n, KEY);
    let w = synth::gaussian(2, KEY, TARGET);
    let mut targets: Vec<f32> = keys
        .chunks_exact(KEY)
        .flat_map(|x| {
            (0..TARGET)
                .map(|j| (0..KEY).map(|i| x[i] * w[i * TARGET + j]).sum::<f32>())
                .collect::<Vec<_>>()
        })
        .collect();
    for t in targets.chunks_exact_mut(TARGET) {
        assert!(knn_index::l2_normalize(t));
    }
    let ids: Vec<u64> = (0..n as u64).collect();
    let prompts: Vec<String> = (0..n).map(|i| format!("a prompt number {i}")).collect();
    let config = IndexConfig::new(KEY, TARGET, spec).with_models("clip-test", "minilm-test");
    build_index(dir, config, &ids, &keys, &prompts, &targets).unwrap();
}

fn train(home: &Path, index: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["head", "train", "--index", index.to_str().unwrap()];
    args.extend_from_slice(extra);
    img2prompt(home, &args)
}

/// The number after "validation cosine " in `s`.
fn reported_cosine(s: &str) -> f64 {
    let rest = s
        .split("validation cosine ")
        .nth(1)
        .unwrap_or_else(|| panic!("no validation cosine in {s:?}"));
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("bad cosine in {s:?}"))
}

#[test]
fn head_train_writes_a_head_the_index_tolerates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    build(&dir, 600, IndexSpec::Hnsw);
    let run = train(
        tmp.path(),
        &dir,
        &[
            "--epochs", "8", "--lr", "0.02", "--seed", "3", "--batch", "32",
        ],
    );
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "{stderr}");
    let epochs: Vec<&str> = stderr.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 8, "{stderr}");
    let per_epoch: Vec<f64> = epochs.iter().map(|l| reported_cosine(l)).collect();
    let final_cos = reported_cosine(&stdout);
    assert!(
        per_epoch.iter().any(|c| (c - final_cos).abs() < 1e-6),
        "the kept epoch is one of those printed: {stdout} {stderr}"
    );
    assert!(final_cos > 0.9 && final_cos <= 1.0, "{stdout}");
    assert!(stdout.contains(HEAD_FILE), "{stdout}");

    assert!(dir.join(HEAD_FILE).is_file());
    let index = PromptIndex::open(&dir).unwrap();
    assert_eq!(index.len(), 600);
    let head = ClipHead::load(&dir, &img2prompt::Backend::default_cpu().device().unwrap()).unwrap();
    assert_eq!(head.config().kind, HeadKind::Linear);
    assert_eq!((head.input_dim(), head.output_dim()), (KEY, TARGET));

    // The MLP variant overwrites it.
    let run = train(
        tmp.path(),
        &dir,
        &["--kind", "mlp", "--hidden", "8", "--epochs", "1"],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let head = ClipHead::load(&dir, &img2prompt::Backend::default_cpu().device().unwrap()).unwrap();
    assert_eq!(head.config().kind, HeadKind::Mlp { hidden: 8 });
}

/// One `error: ...` line on stderr, a failure status, and no head written.
fn assert_one_line_error(run: &Output, dir: &Path, needle: &str) {
    let stderr = text(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    assert!(!dir.join(HEAD_FILE).exists());
}

#[test]
fn bad_input_is_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-index");
    let run = train(tmp.path(), &missing, &[]);
    assert_one_line_error(&run, &missing, "no-such-index");
    assert!(!missing.exists());

    let dir = tmp.path().join("idx");
    build(&dir, 40, IndexSpec::Exact);
    let run = train(tmp.path(), &dir, &["--epochs", "0"]);
    assert_one_line_error(&run, &dir, "--epochs");
    let run = train(tmp.path(), &dir, &["--hidden", "8"]);
    assert_one_line_error(&run, &dir, "--hidden");
    let run = train(tmp.path(), &dir, &["--lr", "0"]);
    assert_one_line_error(&run, &dir, "--lr");
    let run = train(tmp.path(), &dir, &["--backend", "tpu"]);
    assert!(!run.status.success());
    assert!(!dir.join(HEAD_FILE).exists());
    PromptIndex::open(&dir).unwrap();
}
