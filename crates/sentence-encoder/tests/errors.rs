//! Bad checkpoints give clear errors naming the file or tensor, never a panic.

mod common;

use std::path::Path;

use common::*;
use sentence_encoder::{Error, SentenceEncoder};

/// Copies the real checkpoint's small files into a temp dir (the weights are linked).
fn checkpoint_copy(with_weights: bool) -> tempfile::TempDir {
    let src = minilm_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    for name in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(src.join(name), dir.path().join(name)).expect("copy");
    }
    std::fs::create_dir(dir.path().join("1_Pooling")).expect("mkdir");
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        dir.path().join("1_Pooling/config.json"),
    )
    .expect("copy pooling");
    if with_weights {
        std::fs::copy(
            src.join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .expect("copy weights");
    }
    dir
}

fn load(dir: &Path) -> Result<SentenceEncoder, Error> {
    SentenceEncoder::load(dir, &cpu_device())
}

#[test]
fn missing_tokenizer_is_named() {
    let dir = checkpoint_copy(true);
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = load(dir.path()).expect_err("must fail");
    assert!(matches!(err, Error::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn missing_weights_are_named() {
    let dir = checkpoint_copy(false);
    let err = load(dir.path()).expect_err("must fail");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn corrupt_safetensors_is_an_error() {
    let dir = checkpoint_copy(false);
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
    )
    .unwrap();
    let err = load(dir.path()).expect_err("must fail");
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // A truncated real file.
    let bytes = std::fs::read(minilm_dir().join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let err = load(dir.path()).expect_err("truncated weights must fail");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let dir = checkpoint_copy(true);
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["intermediate_size"] = serde_json::json!(1000);
    std::fs::write(&path, config.to_string()).unwrap();
    let err = load(dir.path()).expect_err("must fail");
    let message = err.to_string();
    assert!(
        message.contains("encoder.layer.0.intermediate.dense"),
        "error should name the mis-shaped tensor: {message}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = checkpoint_copy(true);
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["num_hidden_layers"] = serde_json::json!(7);
    std::fs::write(&path, config.to_string()).unwrap();
    let err = load(dir.path()).expect_err("must fail");
    assert!(err.to_string().contains("encoder.layer.6"), "{err}");
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = checkpoint_copy(true);
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["num_hidden_layers"] = serde_json::json!(5);
    std::fs::write(&path, config.to_string()).unwrap();
    let err = load(dir.path()).expect_err("must fail");
    assert!(err.to_string().contains("encoder.layer.5"), "{err}");
}

#[test]
fn bad_json_config_names_the_file() {
    let dir = checkpoint_copy(false);
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let err = load(dir.path()).expect_err("must fail");
    assert!(matches!(err, Error::Json { .. }), "{err:?}");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn unsupported_model_type_is_rejected() {
    let dir = checkpoint_copy(false);
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["model_type"] = serde_json::json!("mpnet");
    std::fs::write(&path, config.to_string()).unwrap();
    let err = load(dir.path()).expect_err("must fail");
    assert!(err.to_string().contains("mpnet"), "{err}");
}

#[test]
fn not_a_directory() {
    let err = load(Path::new("/definitely/not/here")).expect_err("must fail");
    assert!(err.to_string().contains("/definitely/not/here"), "{err}");
}
