//! The Rust captioner against PyTorch (xtask/fixtures/captioner.py): teacher-forced logits,
//! greedy token ids and texts of a tiny random captioner; and the load-time checks.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::{DynamicImage, RgbImage};
use image_captioner::{Captioner, Error};

/// Every backend compiled in, the default CPU one (flex) first.
#[allow(clippy::vec_init_then_push)] // each push is behind its backend's feature
fn devices() -> Vec<(&'static str, Device)> {
    let mut devices = Vec::new();
    #[cfg(feature = "flex")]
    devices.push(("flex", Device::flex()));
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    devices.push(("ndarray", Device::ndarray()));
    #[cfg(feature = "wgpu")]
    devices.push((
        "wgpu",
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    ));
    devices
}

fn cpu() -> Device {
    devices().remove(0).1
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

#[derive(serde::Deserialize)]
struct Expected {
    images: Vec<Vec<[u8; 3]>>,
    teacher_tokens: Vec<Vec<i64>>,
    teacher_logits: Vec<f32>,
    generated: Vec<Vec<u32>>,
    texts: Vec<String>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn images(e: &Expected) -> Vec<DynamicImage> {
    e.images
        .iter()
        .map(|px| {
            let raw: Vec<u8> = px.iter().flatten().copied().collect();
            DynamicImage::ImageRgb8(RgbImage::from_raw(16, 16, raw).unwrap())
        })
        .collect()
}

#[test]
fn teacher_forced_logits_match_pytorch_on_every_backend() {
    for (name, device) in devices() {
        teacher_forced_logits_match_pytorch(name, &device);
    }
}

fn teacher_forced_logits_match_pytorch(name: &str, device: &Device) {
    let captioner = Captioner::load(fixture(), device).unwrap();
    let e = expected();
    let pixels = captioner.pixels(&images(&e)).unwrap();
    let (rows, cols) = (e.teacher_tokens.len(), e.teacher_tokens[0].len());
    let ids: Vec<i64> = e.teacher_tokens.iter().flatten().copied().collect();
    let ids: Tensor<2, Int> = Tensor::from_data(TensorData::new(ids, [rows, cols]), device);
    let model = captioner.model();
    let logits = model.decode(model.encode(pixels), ids);
    let got = logits.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(got.len(), e.teacher_logits.len());
    let max_diff = got
        .iter()
        .zip(&e.teacher_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = e.teacher_logits.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        max_diff <= 1e-4 * scale.max(1.0),
        "{name}: max |diff| {max_diff} (logits up to {scale})"
    );
}

#[test]
fn greedy_captions_match_pytorch_and_repeat() {
    let captioner = Captioner::load(fixture(), &cpu()).unwrap();
    let e = expected();
    let pixels = captioner.pixels(&images(&e)).unwrap();
    assert_eq!(captioner.generate(pixels).unwrap(), e.generated);
    let texts = captioner.caption(&images(&e)).unwrap();
    assert_eq!(texts, e.texts);
    assert_eq!(
        captioner.caption(&images(&e)).unwrap(),
        texts,
        "decoding is deterministic"
    );
    // Other sizes are resized, not refused; an empty batch is empty.
    let big = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 24, image::Rgb([200, 10, 10])));
    assert_eq!(captioner.caption(&[big]).unwrap().len(), 1);
    assert!(captioner.caption(&[]).unwrap().is_empty());
}

fn copy_fixture(to: &Path) {
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(name), to.join(name)).unwrap();
    }
}

#[test]
fn damaged_or_inconsistent_captioners_are_refused_by_name() {
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let err = Captioner::load(dir.path(), &device).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("config.json"),
        "{err}"
    );

    copy_fixture(dir.path());
    let weights = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let err = Captioner::load(dir.path(), &device).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // A config that describes another shape: the first tensor at fault is named.
    copy_fixture(dir.path());
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["decoder_layers"] = 1.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = Captioner::load(dir.path(), &device).unwrap_err();
    assert!(err.to_string().contains("dec.1."), "{err}");
    config["decoder_layers"] = 2.into();
    config["mlp"] = 33.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = Captioner::load(dir.path(), &device).unwrap_err();
    assert!(err.to_string().contains("mlp.fc1"), "{err}");

    // Invalid settings are refused before any weight is read.
    for (field, value) in [
        ("heads", serde_json::json!(3)),
        ("bos", serde_json::json!(99)),
        ("format", serde_json::json!("other/1")),
        ("max_tokens", serde_json::json!(100000)),
    ] {
        let mut bad = config.clone();
        bad["mlp"] = 32.into();
        bad[field] = value;
        std::fs::write(&config_path, bad.to_string()).unwrap();
        let err = Captioner::load(dir.path(), &device).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{field}: {err}");
    }
    std::fs::write(&config_path, "{").unwrap();
    let err = Captioner::load(dir.path(), &device).unwrap_err();
    assert!(matches!(err, Error::Json { .. }), "{err}");
}

#[test]
fn an_empty_image_is_refused_with_its_position() {
    let captioner = Captioner::load(fixture(), &cpu()).unwrap();
    let ok = DynamicImage::ImageRgb8(RgbImage::new(16, 16));
    let empty = DynamicImage::ImageRgb8(RgbImage::new(0, 5));
    let err = captioner.caption(&[ok, empty]).unwrap_err();
    assert!(err.to_string().contains("#1"), "{err}");
}
