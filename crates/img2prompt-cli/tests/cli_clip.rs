//! `img2prompt embed-text` / `embed-image` on a CLIP checkpoint, against HF transformers'
//! outputs (the small random CLIP fixture of the clip-encoder crate, which has no
//! tokenizer.json, so the built-in OpenAI BPE is used).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{cosine, read_rows};

fn clip_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip-encoder/tests/fixtures/clip")
}

/// Runs the binary with an empty model cache (every model here is a directory).
fn img2prompt(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    common::img2prompt(home.path(), args)
}

#[test]
fn embed_text_with_clip_matches_transformers() {
    let prompts: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(clip_fixtures().join("prompts.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("prompts.jsonl");
    let lines: Vec<String> = prompts
        .iter()
        .map(|p| serde_json::json!({ "text": p }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let output = dir.path().join("text.npy");
    let model = clip_fixtures().join("clip_b");
    let run = img2prompt(&[
        "embed-text",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = read_rows(&output);
    let want = read_rows(&model.join("text_embeds.npy"));
    assert_eq!(got.len(), prompts.len());
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let cos = cosine(g, w);
        assert!(cos >= 0.9999, "prompt {i}: cosine {cos}");
    }
}

#[test]
fn embed_image_matches_transformers_and_rejects_bad_images() {
    let names: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(clip_fixtures().join("images.json")).unwrap(),
    )
    .unwrap();
    let images: Vec<String> = names
        .iter()
        .map(|n| {
            clip_fixtures()
                .join("images")
                .join(n)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("images.npy");
    let model = clip_fixtures().join("clip_b");
    let mut args = vec![
        "embed-image".to_owned(),
        "--model".to_owned(),
        model.to_string_lossy().into_owned(),
        "--output".to_owned(),
        output.to_string_lossy().into_owned(),
    ];
    args.extend(images.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = img2prompt(&refs);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = read_rows(&output);
    let want = read_rows(&model.join("image_embeds.npy"));
    assert_eq!(got.len(), names.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let cos = cosine(g, w);
        assert!(cos >= 0.99, "image {}: cosine {cos}", names[i]);
    }

    // A file that is not an image: one line naming it, and nothing written.
    let fake = dir.path().join("not-an-image.png");
    std::fs::write(&fake, b"this is text, not a PNG").unwrap();
    let bad_output = dir.path().join("bad.npy");
    let run = img2prompt(&[
        "embed-image",
        "--model",
        model.to_str().unwrap(),
        "--output",
        bad_output.to_str().unwrap(),
        images[0].as_str(),
        fake.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("not-an-image.png"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!bad_output.exists());
}

#[test]
fn embed_image_refuses_a_sentence_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("st");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    std::fs::write(model.join("modules.json"), "[]").unwrap();
    let output = dir.path().join("o.npy");
    let image = clip_fixtures().join("images/astronaut_224.png");
    let run = img2prompt(&[
        "embed-image",
        "--model",
        model.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("CLIP"));
    assert!(!output.exists());
}
