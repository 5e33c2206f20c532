//! Every enabled backend gives the same embeddings (within 1e-4 cosine).

mod common;

use burn::tensor::Device;
use clip_encoder::ClipModel;
use common::*;

fn embeddings(device: &Device, n_texts: usize, n_images: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let dir = model_dir("clip_b");
    let model = ClipModel::load(dir.path(), device).expect("load");
    let prompts = prompts();
    let texts: Vec<&str> = prompts.iter().take(n_texts).map(String::as_str).collect();
    let paths: Vec<_> = image_paths().into_iter().take(n_images).collect();
    (
        rows(model.embed_texts(&texts).expect("texts")),
        rows(model.embed_image_files(&paths).expect("images")),
    )
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let c = cosine(x, y);
        assert!(c >= 1.0 - 1e-4, "{what} row {i}: cosine {c}");
    }
}

#[test]
fn cpu_backends_agree() {
    let devices = cpu_devices();
    let (t0, i0) = embeddings(&devices[0].1, 24, 4);
    for (name, device) in &devices[1..] {
        let (t, i) = embeddings(device, 24, 4);
        assert_close(&t0, &t, &format!("{} vs {name} texts", devices[0].0));
        assert_close(&i0, &i, &format!("{} vs {name} images", devices[0].0));
    }
}

/// wgpu (lavapipe on CPU in CI: slow, so the input is tiny).
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_agrees_with_cpu() {
    let (t0, i0) = embeddings(&device(), 3, 1);
    let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    let (t, i) = embeddings(&wgpu, 3, 1);
    assert_close(&t0, &t, "cpu vs wgpu texts");
    assert_close(&i0, &i, "cpu vs wgpu images");
}
