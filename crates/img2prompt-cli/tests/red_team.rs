//! The bad inputs a new user tried (issue 11), each with its exact expected outcome: a clear
//! error naming the input, a non-zero exit, and nothing written or lost.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{home_with_minilm, img2prompt};
use img2prompt::knn_index::PromptIndex;

fn clip_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip-encoder/tests/fixtures/clip/clip_a")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `index build` of `prompts` into `out` with the small random CLIP and the real MiniLM.
fn build_args(prompts: &Path, out: &Path) -> Vec<String> {
    [
        "index",
        "build",
        "--clip",
        &s(&clip_dir()),
        "--prompts",
        &s(prompts),
        "--out",
        &s(out),
        "--batch",
        "8",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn run(home: &Path, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    img2prompt(home, &args)
}

/// Asserts a failed run with one `error:` line holding every needle, and nothing on stdout.
fn assert_fails(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {err}"))
        .to_owned();
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    line
}

#[test]
fn a_csv_with_an_unclosed_quote_is_an_error_naming_the_file_and_line() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "prompt\na red star\n\"a blue ring, striped\nswallowed line\nand another\n",
    )
    .unwrap();
    let out = dir.path().join("idx");
    let result = run(home.path(), &build_args(&csv, &out));
    assert_fails(&result, &["bad.csv:3:", "quoted field is never closed"]);
    assert!(!out.exists(), "no index is written");
}

#[test]
fn a_second_build_into_the_same_output_fails_at_once_and_the_first_completes() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.txt");
    let lines: Vec<String> = (0..3000)
        .map(|i| format!("a small red star number {i}, striped background, pixel art"))
        .collect();
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    let out = dir.path().join("idx");
    let lock = dir.path().join(".idx.knn-lock");
    let mut first = Command::new(env!("CARGO_BIN_EXE_img2prompt"))
        .args(build_args(&prompts, &out))
        .args(["--chunk", "512"])
        .env("IMG2PROMPT_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !lock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the first build never took its lock"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first build ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second_start = Instant::now();
    let second = run(home.path(), &build_args(&prompts, &out));
    let line = assert_fails(&second, &["another build is writing this index"]);
    assert!(line.contains(&s(&out)), "{line}");
    // At once: it does not wait for the first (which takes far longer than this bound).
    assert!(second_start.elapsed() < Duration::from_secs(30));
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "first build: {}", stderr(&first));
    let index = PromptIndex::open(&out).expect("the first build's index is whole");
    assert_eq!(index.len(), 3000);
    assert!(!lock.exists(), "the lock file goes with the build");
}

#[test]
fn nul_bytes_get_the_same_error_from_embed_text_and_index_build() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.txt");
    std::fs::write(&input, b"a fine line\nbad\0line\n").unwrap();
    let npy = dir.path().join("out.npy");
    let embed = run(
        home.path(),
        &[
            "embed-text",
            "--model",
            "all-MiniLM-L6-v2",
            "--input",
            &s(&input),
            "--output",
            &s(&npy),
        ]
        .map(str::to_owned),
    );
    let a = assert_fails(&embed, &["texts.txt:2:", "NUL byte"]);
    assert!(!npy.exists());
    let out = dir.path().join("idx");
    let build = run(home.path(), &build_args(&input, &out));
    let b = assert_fails(&build, &["texts.txt:2:", "NUL byte"]);
    assert_eq!(a, b, "one rule, one message");
    assert!(!out.exists());
}

#[test]
fn an_empty_input_is_an_error_for_embed_text_and_index_build() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.txt");
    std::fs::write(&input, b"").unwrap();
    let npy = dir.path().join("out.npy");
    let embed = run(
        home.path(),
        &[
            "embed-text",
            "--model",
            "all-MiniLM-L6-v2",
            "--input",
            &s(&input),
            "--output",
            &s(&npy),
        ]
        .map(str::to_owned),
    );
    assert_fails(&embed, &["empty.txt", "holds no text"]);
    assert!(!npy.exists(), "no [0, 384] array is written");
    let out = dir.path().join("idx");
    let build = run(home.path(), &build_args(&input, &out));
    assert_fails(&build, &["empty.txt", "no prompt left"]);
    assert!(!out.exists());
}

#[test]
fn a_clip_checkpoint_given_as_the_sentence_model_says_what_was_expected() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.txt");
    std::fs::write(&prompts, "a red star\n").unwrap();
    let mut args = build_args(&prompts, &dir.path().join("idx"));
    args.extend(["--sentence".to_owned(), "world-clip".to_owned()]);
    let out = run(home.path(), &args);
    assert_fails(
        &out,
        &[
            "expected a BERT sentence-transformers model",
            "found a CLIP checkpoint",
        ],
    );
}

#[test]
fn a_bad_image_gets_one_message_from_embed_image_and_predict() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.png");
    std::fs::write(&bad, "not an image at all").unwrap();
    let embed = run(
        home.path(),
        &[
            "embed-image",
            "--model",
            &s(&clip_dir()),
            "--output",
            &s(&dir.path().join("e.npy")),
            &s(&bad),
        ]
        .map(str::to_owned),
    );
    let a = assert_fails(&embed, &["notes.png"]);
    // An index to predict with.
    let prompts = dir.path().join("p.txt");
    std::fs::write(&prompts, "a red star\na blue ring\n").unwrap();
    let index = dir.path().join("idx");
    let built = run(home.path(), &build_args(&prompts, &index));
    assert!(built.status.success(), "{}", stderr(&built));
    let predict = run(
        home.path(),
        &[
            "predict",
            "--index",
            &s(&index),
            "--clip",
            &s(&clip_dir()),
            &s(&bad),
        ]
        .map(str::to_owned),
    );
    let b = assert_fails(&predict, &["notes.png"]);
    assert_eq!(a, b, "one decoding path, one message");
}

#[test]
fn eval_names_the_pairs_line_of_a_missing_image() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.txt");
    std::fs::write(&prompts, "a red star\na blue ring\n").unwrap();
    let index = dir.path().join("idx");
    let built = run(home.path(), &build_args(&prompts, &index));
    assert!(built.status.success(), "{}", stderr(&built));
    let image = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../clip-encoder/tests/fixtures/clip/images/chelsea.png");
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        format!(
            "{}\n\n{}\n",
            serde_json::json!({"image": s(&image), "prompt": "a cat"}),
            serde_json::json!({"image": "missing.png", "prompt": "a dog"}),
        ),
    )
    .unwrap();
    let out = run(
        home.path(),
        &[
            "eval",
            "--index",
            &s(&index),
            "--clip",
            &s(&clip_dir()),
            "--pairs",
            &s(&pairs),
        ]
        .map(str::to_owned),
    );
    assert_fails(&out, &["pairs.jsonl:3:", "missing.png"]);
}

#[test]
fn a_model_path_that_is_not_a_directory_is_named_plainly_not_fetched() {
    let home = home_with_minilm();
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("no-such-captioner");
    let args: Vec<String> = [
        "demo",
        "--world",
        "tiny",
        "--out",
        &s(&work.path().join("demo")),
        "--captioner",
        &s(&missing),
    ]
    .map(str::to_owned)
    .to_vec();
    let err = assert_fails(
        &run(home.path(), &args),
        &["no-such-captioner", "is not a directory"],
    );
    assert!(!err.contains("fetching"), "{err}");
    assert!(!work.path().join("demo").exists(), "nothing is written");
}
