//! Parity with HF transformers on two small random CLIPs (fixtures: xtask/fixtures/clip.py).

mod common;

use clip_encoder::{ClipModel, ClipTokenizer, ImagePreprocessor};
use common::*;

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

#[test]
fn text_embeddings_match_hf() {
    let prompts = prompts();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    for name in ["clip_a", "clip_b"] {
        let dir = model_dir(name);
        let model = ClipModel::load(dir.path(), &device()).expect("load");
        let ours = rows(model.embed_texts(&texts).expect("embed"));
        let cos = row_cosines(&ours, &npy2(fixtures().join(name).join("text_embeds.npy")));
        let worst = min(&cos);
        eprintln!("{name}: text cosine min {worst:.7}");
        for (i, c) in cos.iter().enumerate() {
            assert!(
                *c >= 0.9999,
                "{name} prompt #{i} {:?}: cosine {c}",
                prompts[i]
            );
        }
    }
}

#[test]
fn image_embeddings_match_hf() {
    let names = image_names();
    let paths = image_paths();
    for (name, exact) in [
        ("clip_a", "astronaut_224.png"),
        ("clip_b", "coffee_112.png"),
    ] {
        let dir = model_dir(name);
        let model = ClipModel::load(dir.path(), &device()).expect("load");
        let ours = rows(model.embed_image_files(&paths).expect("embed"));
        let cos = row_cosines(&ours, &npy2(fixtures().join(name).join("image_embeds.npy")));
        for (i, c) in cos.iter().enumerate() {
            eprintln!("{name} {}: cosine {c:.7}", names[i]);
            let bound = if names[i] == exact { 0.9999 } else { 0.99 };
            assert!(*c >= bound, "{name} {}: cosine {c} < {bound}", names[i]);
        }
        // Decoded images give the same as files.
        let pre = model.vision().preprocessor();
        let decoded: Vec<_> = paths[..3]
            .iter()
            .map(|p| pre.decode_file(p).unwrap())
            .collect();
        let from_images = rows(model.embed_images(&decoded).expect("embed"));
        for (a, b) in from_images.iter().zip(&ours) {
            assert!(cosine(a, b) > 0.999999);
        }
    }
}

#[test]
fn pixels_match_hf_before_normalisation() {
    let names = image_names();
    let paths = image_paths();
    let subset_a = [
        "astronaut.jpg",
        "chelsea.png",
        "camera_gray.jpg",
        "coffee_palette.gif",
        "rocket_tiny.png",
    ];
    for name in ["clip_a", "clip_b"] {
        let dir = model_dir(name);
        let model = clip_encoder::ClipVisionModel::load(dir.path(), &device()).expect("load");
        let pre: &ImagePreprocessor = model.preprocessor();
        let reference = npy4_u8(fixtures().join(name).join("pixels.npy"));
        let selected: Vec<usize> = if name == "clip_a" {
            subset_a
                .iter()
                .map(|s| names.iter().position(|n| n == s).unwrap())
                .collect()
        } else {
            (0..names.len()).collect()
        };
        for (row, &i) in selected.iter().enumerate() {
            let img = pre.decode_file(&paths[i]).expect("decode");
            let rgb = ImagePreprocessor::to_rgb(&img);
            let out = pre.resize_and_crop(&rgb, &names[i]).expect("resize");
            let r = reference.index_axis(ndarray::Axis(0), row);
            let [_, h, w] = [r.shape()[0], r.shape()[1], r.shape()[2]];
            assert_eq!((out.width() as usize, out.height() as usize), (w, h));
            let (mut sum, mut max) = (0u64, 0u8);
            for y in 0..h {
                for x in 0..w {
                    let p = out.get_pixel(x as u32, y as u32);
                    for c in 0..3 {
                        let d = p.0[c].abs_diff(r[[c, y, x]]);
                        sum += u64::from(d);
                        max = max.max(d);
                    }
                }
            }
            let mean = sum as f64 / (3 * h * w) as f64;
            eprintln!("{name} {}: mean |diff| {mean:.4}, max {max}", names[i]);
            assert!(
                mean <= 0.5 && max <= 8,
                "{name} {}: mean {mean} max {max}",
                names[i]
            );
        }
    }
}

#[test]
fn token_ids_match_hf() {
    let prompts = prompts();
    let expected = tokens();
    assert!(prompts.len() >= 100);
    let dir = model_dir("clip_a");
    let from_json = ClipTokenizer::from_file(dir.path().join("tokenizer.json"), 77).expect("json");
    let builtin = ClipTokenizer::builtin(77).expect("builtin");
    for (tok, label) in [(&from_json, "tokenizer.json"), (&builtin, "built-in")] {
        for (i, p) in prompts.iter().enumerate() {
            let ids = tok.encode(p).expect("encode");
            assert_eq!(ids, expected[i], "{label}: prompt #{i} {p:?}");
        }
        let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
        assert_eq!(
            tok.encode_batch(&texts).expect("batch"),
            expected,
            "{label} batch"
        );
    }
    // Truncated prompts keep EOS last.
    let long = expected.iter().filter(|t| t.len() == 77).count();
    assert!(long >= 5, "{long} truncated prompts");
    assert!(
        expected
            .iter()
            .filter(|t| t.len() == 77)
            .all(|t| *t.last().unwrap() == 49407)
    );
}

#[test]
fn host_kernels_and_burn_ops_agree_on_both_towers() {
    let prompts = prompts();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let paths = image_paths();
    for name in ["clip_a", "clip_b"] {
        let dir = model_dir(name);
        let host = ClipModel::load(dir.path(), &device()).expect("load");
        assert!(host.vision().uses_host_kernels() && host.text().uses_host_kernels());
        let (vision, text) = ClipModel::load(dir.path(), &device())
            .expect("load")
            .into_parts();
        let burn = ClipModel::from_parts(
            vision.with_host_kernels(false).expect("burn vision"),
            text.with_host_kernels(false).expect("burn text"),
        );
        assert!(!burn.vision().uses_host_kernels() && !burn.text().uses_host_kernels());
        let want = npy2(fixtures().join(name).join("text_embeds.npy"));
        let (a, b) = (
            rows(host.embed_texts(&texts).expect("host")),
            rows(burn.embed_texts(&texts).expect("burn")),
        );
        for (i, c) in row_cosines(&b, &want).iter().enumerate() {
            assert!(*c >= 0.9999, "{name} burn text #{i}: {c}");
        }
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                cosine(x, y) >= 0.99999,
                "{name} text #{i}: host vs burn {}",
                cosine(x, y)
            );
        }
        let (a, b) = (
            rows(host.embed_image_files(&paths).expect("host")),
            rows(burn.embed_image_files(&paths).expect("burn")),
        );
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                cosine(x, y) >= 0.99999,
                "{name} image #{i}: host vs burn {}",
                cosine(x, y)
            );
        }
    }
}

#[test]
fn bf16_dense_layers_match_hf_where_the_cpu_has_amx() {
    use clip_encoder::Precision;
    let prompts = prompts();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let paths = image_paths();
    let names = image_names();
    // bf16x3 keeps f32's bound; bf16 (8 significant bits) has its own.
    for (precision, bound) in [(Precision::Bf16x3, 0.9999), (Precision::Bf16, 0.9998)] {
        for (name, exact) in [
            ("clip_a", "astronaut_224.png"),
            ("clip_b", "coffee_112.png"),
        ] {
            let dir = model_dir(name);
            let (vision, text) = ClipModel::load(dir.path(), &device())
                .expect("load")
                .into_parts();
            assert_eq!(vision.precision(), Precision::F32, "f32 is the default");
            if !precision.is_available() {
                let err = text.with_precision(precision).expect_err("no AMX");
                assert!(err.to_string().contains("AMX"), "{err}");
                eprintln!("{precision} parity skipped: this CPU has no AMX-BF16");
                return;
            }
            let model = ClipModel::from_parts(
                vision.with_precision(precision).expect("vision"),
                text.with_precision(precision).expect("text"),
            );
            assert_eq!(model.text().precision(), precision);
            assert_eq!(model.vision().precision(), precision);
            let ours = rows(model.embed_texts(&texts).expect("embed"));
            let cos = row_cosines(&ours, &npy2(fixtures().join(name).join("text_embeds.npy")));
            eprintln!("{name} {precision}: text cosine min {:.7}", min(&cos));
            for (i, c) in cos.iter().enumerate() {
                assert!(*c >= bound, "{name} {precision} prompt #{i}: cosine {c}");
            }
            let ours = rows(model.embed_image_files(&paths).expect("embed"));
            let cos = row_cosines(&ours, &npy2(fixtures().join(name).join("image_embeds.npy")));
            for (i, c) in cos.iter().enumerate() {
                eprintln!("{name} {} {precision}: cosine {c:.7}", names[i]);
                let bound = if names[i] == exact { bound } else { 0.99 };
                assert!(*c >= bound, "{name} {} {precision}: cosine {c}", names[i]);
            }
        }
    }
}
