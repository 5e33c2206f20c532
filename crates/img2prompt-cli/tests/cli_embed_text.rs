//! End-to-end checks of `img2prompt embed-text` and `models` through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{cosine, home_with_minilm, img2prompt, minilm_dir, read_rows};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm-cli")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn embed_text_by_name_reproduces_sentence_transformers_on_unseen_texts() {
    let home = home_with_minilm();
    let out_dir = tempfile::tempdir().unwrap();
    let expected = read_rows(&fixtures().join("expected.npy"));
    for input in ["texts.jsonl", "texts.txt"] {
        let output = out_dir.path().join(format!("{input}.npy"));
        let run = img2prompt(
            home.path(),
            &[
                "embed-text",
                "--model",
                "all-MiniLM-L6-v2",
                "--input",
                fixtures().join(input).to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
                "--batch",
                "8",
            ],
        );
        assert!(run.status.success(), "{input}: {}", stderr(&run));
        assert!(
            stderr(&run).contains("texts/s"),
            "no throughput line: {}",
            stderr(&run)
        );
        let rows = read_rows(&output);
        assert_eq!(rows.len(), expected.len(), "{input}: one row per text");
        for (i, (got, want)) in rows.iter().zip(&expected).enumerate() {
            assert_eq!(got.len(), 384);
            let cos = cosine(got, want);
            assert!(cos >= 0.9999, "{input} row {i}: cosine {cos}");
        }
    }
}

#[test]
fn bad_json_line_is_named_and_nothing_is_written() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"fine\"}\n{\"text\": \"fine too\"}\n{broken\n",
    )
    .unwrap();
    let output = dir.path().join("out.npy");
    let run = img2prompt(
        home.path(),
        &[
            "embed-text",
            "--model",
            minilm_dir().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
    );
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(err.contains("in.jsonl:3"), "{err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    assert!(!output.exists());
}

#[test]
fn missing_input_and_model_without_weights_fail_cleanly() {
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.npy");
    std::fs::write(&output, b"previous contents").unwrap();

    let run = img2prompt(
        home.path(),
        &[
            "embed-text",
            "--model",
            "all-MiniLM-L6-v2",
            "--input",
            "/no/such/input.txt",
            "--output",
            output.to_str().unwrap(),
        ],
    );
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("/no/such/input.txt"),
        "{}",
        stderr(&run)
    );

    // A model directory without weights.
    let model = dir.path().join("broken-model");
    std::fs::create_dir_all(model.join("1_Pooling")).unwrap();
    for file in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::fs::copy(minilm_dir().join(file), model.join(file)).unwrap();
    }
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hello\n").unwrap();
    let run = img2prompt(
        home.path(),
        &[
            "embed-text",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
    );
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(err.contains("model.safetensors"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The earlier file is untouched, and no temp file is left.
    assert_eq!(std::fs::read(&output).unwrap(), b"previous contents");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn unknown_model_and_backend_are_rejected() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hello\n").unwrap();
    let output = dir.path().join("out.npy");
    let run = img2prompt(
        home.path(),
        &[
            "embed-text",
            "--model",
            "no-such-model",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
    );
    assert!(!run.status.success());
    assert!(stderr(&run).contains("no-such-model"), "{}", stderr(&run));

    let run = img2prompt(
        home.path(),
        &[
            "embed-text",
            "--model",
            "x",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--backend",
            "tpu",
        ],
    );
    assert!(!run.status.success());
    assert!(stderr(&run).contains("tpu"), "{}", stderr(&run));
    assert!(!output.exists());
}

#[test]
fn models_fetch_from_dir_fills_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let run = img2prompt(
        home.path(),
        &[
            "models",
            "fetch",
            "all-MiniLM-L6-v2",
            "--from-dir",
            minilm_dir().to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let dir = home.path().join("models/all-MiniLM-L6-v2");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        dir.to_str().unwrap()
    );
    assert_eq!(
        std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len(),
        std::fs::metadata(minilm_dir().join("model.safetensors"))
            .unwrap()
            .len()
    );
}

#[test]
fn precision_is_checked_and_bf16_stays_close_to_sentence_transformers() {
    let home = home_with_minilm();
    let out_dir = tempfile::tempdir().unwrap();
    let expected = read_rows(&fixtures().join("expected.npy"));
    let run_at = |precision: &str| {
        let output = out_dir.path().join(format!("{precision}.npy"));
        let run = img2prompt(
            home.path(),
            &[
                "embed-text",
                "--model",
                "all-MiniLM-L6-v2",
                "--input",
                fixtures().join("texts.txt").to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
                "--precision",
                precision,
            ],
        );
        (run, output)
    };
    let (run, output) = run_at("fp8");
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("f32, bf16x3 or bf16"),
        "{}",
        stderr(&run)
    );
    assert!(!output.exists());
    // Whether this CPU (and kernel) grant the AMX tiles decides which answer is right: the
    // library's own detector is tested in host-kernels; here either outcome must be whole.
    for (precision, bound) in [("bf16x3", 0.9999), ("bf16", 0.9998)] {
        let (run, output) = run_at(precision);
        if !run.status.success() {
            assert!(
                stderr(&run).contains("needs Intel AMX-BF16"),
                "{precision}: {}",
                stderr(&run)
            );
            assert!(!output.exists());
            continue;
        }
        assert!(run.status.success(), "{precision}: {}", stderr(&run));
        let rows = read_rows(&output);
        assert_eq!(rows.len(), expected.len());
        for (i, (got, want)) in rows.iter().zip(&expected).enumerate() {
            let cos = cosine(got, want);
            assert!(cos >= bound, "{precision} row {i}: cosine {cos}");
        }
    }
}
