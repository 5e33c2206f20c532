//! Error paths: corrupt or incomplete checkpoints, bad images; each error names its culprit.

mod common;

use std::path::Path;

use clip_encoder::{
    ClipModel, ClipTextModel, ClipVisionModel, Error, ImagePreprocessor, PreprocessorConfig,
};
use common::*;

/// Rewrites a safetensors file through `edit` on (name -> (dtype, shape, bytes)).
fn rewrite_safetensors(
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, serde_json::Value, Vec<u8>)>),
) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut tensors: Vec<(String, serde_json::Value, Vec<u8>)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let off = v["data_offsets"].as_array().unwrap();
            let (a, b) = (
                off[0].as_u64().unwrap() as usize,
                off[1].as_u64().unwrap() as usize,
            );
            (k.clone(), v.clone(), data[a..b].to_vec())
        })
        .collect();
    edit(&mut tensors);
    let mut out_header = serde_json::Map::new();
    let mut out_data = Vec::new();
    for (k, mut v, d) in tensors {
        v["data_offsets"] = serde_json::json!([out_data.len(), out_data.len() + d.len()]);
        out_data.extend_from_slice(&d);
        out_header.insert(k, v);
    }
    let mut h = serde_json::to_vec(&out_header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&out_data);
    std::fs::write(path, out).unwrap();
}

#[test]
fn corrupt_safetensors_is_an_error_naming_the_file() {
    let dir = model_dir("clip_b");
    let weights = dir.path().join("model.safetensors");
    std::fs::write(&weights, b"this is not a safetensors file at all").unwrap();
    let err = ClipModel::load(dir.path(), &device()).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // Truncated: header intact, data cut short.
    let dir = model_dir("clip_b");
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = ClipModel::load(dir.path(), &device()).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn missing_weights_file_is_an_error() {
    let dir = model_dir("clip_b");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = ClipVisionModel::load(dir.path(), &device()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    for (tensor, text_side) in [
        ("vision_model.post_layernorm.weight", false),
        ("text_model.encoder.layers.1.mlp.fc2.bias", true),
        ("visual_projection.weight", false),
        ("vision_model.embeddings.class_embedding", false),
    ] {
        let dir = model_dir("clip_a");
        rewrite_safetensors(&dir.path().join("model.safetensors"), |t| {
            t.retain(|(k, _, _)| k != tensor)
        });
        let err = if text_side {
            ClipTextModel::load(dir.path(), &device()).unwrap_err()
        } else {
            ClipVisionModel::load(dir.path(), &device()).unwrap_err()
        };
        match &err {
            Error::MissingTensor { tensor: t, .. } => assert_eq!(t, tensor),
            other => panic!("expected MissingTensor for {tensor}, got {other:?}"),
        }
        assert!(err.to_string().contains(tensor), "{err}");
    }
}

#[test]
fn shape_mismatch_and_extra_layers_are_named() {
    // Config says 1 vision layer, the checkpoint has 2: the extra layer's tensors are reported.
    let dir = model_dir("clip_a");
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["vision_config"]["num_hidden_layers"] = 1.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = ClipVisionModel::load(dir.path(), &device()).unwrap_err();
    assert!(
        matches!(&err, Error::BadTensor { tensor, .. } if tensor.starts_with("vision_model.encoder.layers.1.")),
        "{err:?}"
    );
    // Wrong width: a shape mismatch names the tensor.
    let dir = model_dir("clip_a");
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["projection_dim"] = 20.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = ClipTextModel::load(dir.path(), &device()).unwrap_err();
    assert!(
        matches!(&err, Error::BadTensor { tensor, .. } if tensor == "text_projection.weight"),
        "{err:?}"
    );
}

#[test]
fn bad_config_is_an_error() {
    let dir = model_dir("clip_a");
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let err = ClipModel::load(dir.path(), &device()).unwrap_err();
    assert!(matches!(err, Error::Json { .. }), "{err:?}");
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let err = ClipModel::load(dir.path(), &device()).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}

#[test]
fn bad_images_are_errors_naming_the_file() {
    let dir = model_dir("clip_b");
    let model = ClipModel::load(dir.path(), &device()).expect("load");
    let tmp = tempfile::tempdir().unwrap();
    let good = fixtures().join("images/chelsea.png");
    let png = std::fs::read(&good).unwrap();
    let jpg = std::fs::read(fixtures().join("images/astronaut.jpg")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not_an_image.png", b"hello, I am text".to_vec()),
        ("empty.jpg", Vec::new()),
        ("truncated.png", png[..png.len() / 2].to_vec()),
        ("truncated.jpg", jpg[..jpg.len() / 3].to_vec()),
        ("zero.png", zero_size_png()),
    ];
    for (name, bytes) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let paths = vec![good.clone(), path.clone()];
        let err = model.embed_image_files(&paths).unwrap_err();
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    let missing = tmp.path().join("does_not_exist.png");
    let err = model.embed_image_files(&[&missing]).unwrap_err();
    assert!(err.to_string().contains("does_not_exist.png"), "{err}");

    // Pixel limit.
    let small =
        ImagePreprocessor::new(PreprocessorConfig::for_image_size(112)).with_max_pixels(1000);
    let err = small.decode_file(&good).unwrap_err();
    assert!(
        err.to_string().contains("chelsea.png") && err.to_string().contains("limit"),
        "{err}"
    );
}

/// A PNG whose IHDR says 0x0 (CRC-correct).
fn zero_size_png() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&0u32.to_be_bytes());
    ihdr.extend_from_slice(&0u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(b"IEND");
    out.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn invalid_token_ids_are_errors() {
    let dir = model_dir("clip_b");
    let model = ClipTextModel::load(dir.path(), &device()).expect("load");
    assert!(model.embed_token_ids(&[vec![49406, 60000, 49407]]).is_err());
    assert!(model.embed_token_ids(&[vec![]]).is_err());
    assert!(model.embed_token_ids(&[vec![1; 78]]).is_err());
    let empty = model.embed_token_ids(&[]).expect("empty batch");
    assert_eq!(empty.dims(), [0, 12]);
}
