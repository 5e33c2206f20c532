//! The method end to end through the CLI (`index build` -> `head train` -> `predict` -> `eval`),
//! on the committed small random CLIP (clip-encoder's `clip_a` fixture) and the real
//! all-MiniLM-L6-v2, checked against the library computing each step independently:
//! - `predict`'s neighbours are the exact top-k by cosine of our own CLIP text keys and image
//!   embeddings;
//! - its embedding is the documented fusion (similarity-weighted mean of the neighbours' sentence
//!   targets, blended 0.6 / 0.4 with the head's output);
//! - `eval`'s numbers recompute from `predict`'s output.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{cosine, minilm_dir, read_rows};
use img2prompt::prompt_fusion::{FusionConfig, Neighbour};
use img2prompt::{
    ClipImageEmbedder, ClipTextEmbedder, EmbeddingHead, ImageEmbedder, SentenceTextEmbedder,
    TextEmbedder,
};

const K: usize = 100;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip-encoder/tests/fixtures/clip")
}

/// 16 subjects x 15 styles = 240 distinct prompts, plus a duplicate, a padded copy and blanks
/// that cleaning must drop.
fn corpus() -> (Vec<String>, String) {
    let subjects = [
        "a red fox",
        "an old lighthouse",
        "a bowl of ramen",
        "a robot gardener",
        "a snowy mountain village",
        "a cat wearing a crown",
        "a sailing ship",
        "a desert temple",
        "a neon city street",
        "a bouquet of tulips",
        "an astronaut on a horse",
        "a cozy cabin",
        "a dragon over a castle",
        "a steaming cup of coffee",
        "a jazz band",
        "a koi pond",
    ];
    let styles = [
        "oil painting",
        "watercolor",
        "pixel art",
        "studio photograph",
        "pencil sketch",
        "art nouveau poster",
        "low poly render",
        "ukiyo-e woodblock print",
        "cinematic lighting",
        "vaporwave",
        "children's book illustration",
        "charcoal drawing",
        "isometric 3d",
        "stained glass",
        "long exposure photo",
    ];
    let prompts: Vec<String> = subjects
        .iter()
        .flat_map(|s| styles.iter().map(move |st| format!("{s}, {st}")))
        .collect();
    let mut file = prompts.join("\n");
    file += &format!(
        "\n{}\n   \n  {}  \n\n",
        prompts[0],
        prompts[1].replace(", ", ",   ")
    );
    (prompts, file)
}

#[test]
fn build_train_predict_eval_agree_with_the_library() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let clip = fixtures().join("clip_a");
    let minilm = minilm_dir();
    let (prompts, corpus_text) = corpus();
    let corpus_path = work.path().join("corpus.txt");
    std::fs::write(&corpus_path, corpus_text).unwrap();
    let index = work.path().join("index");
    let s = |p: &Path| p.to_str().unwrap().to_string();

    common::img2prompt_ok(
        home.path(),
        &[
            "index",
            "build",
            "--clip",
            &s(&clip),
            "--sentence",
            &s(&minilm),
            "--prompts",
            &s(&corpus_path),
            "--out",
            &s(&index),
        ],
    );
    common::img2prompt_ok(
        home.path(),
        &["head", "train", "--index", &s(&index), "--epochs", "3"],
    );
    assert!(index.join("head.safetensors").is_file());

    let images: Vec<PathBuf> = [
        "chelsea.png",
        "astronaut_224.png",
        "coffee_112.png",
        "rocket_tiny.png",
    ]
    .iter()
    .map(|n| fixtures().join("images").join(n))
    .collect();
    let embeddings_npy = work.path().join("pred.npy");
    let mut predict_args = vec![
        "predict".to_string(),
        "--index".into(),
        s(&index),
        "--clip".into(),
        s(&clip),
        "--sentence".into(),
        s(&minilm),
        "--embeddings".into(),
        s(&embeddings_npy),
    ];
    predict_args.extend(images.iter().map(|p| s(p)));
    let refs: Vec<&str> = predict_args.iter().map(String::as_str).collect();
    let stdout = common::img2prompt_ok(home.path(), &refs);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), images.len());

    // Independent computation with the library.
    let device = img2prompt::Backend::default().device().unwrap();
    let text = ClipTextEmbedder::load(&clip, &device).unwrap();
    let vision = ClipImageEmbedder::load(&clip, &device).unwrap();
    let sentence = SentenceTextEmbedder::load(&minilm, &device).unwrap();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let keys = text.embed_texts(&refs).unwrap();
    let targets = sentence.embed_texts(&refs).unwrap();
    let (kd, td) = (text.dim(), sentence.dim());
    let decoded: Vec<_> = images
        .iter()
        .map(|p| img2prompt::image::open(p).unwrap())
        .collect();
    let queries = vision.embed_images(&decoded).unwrap();
    let head = img2prompt::head::ClipHead::load(&index, &device).unwrap();
    let head_out = head.predict(&queries).unwrap();
    let row_of: HashMap<&str, usize> = refs.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let npy_rows = read_rows(&embeddings_npy);
    // A printed line's neighbours as fusion inputs: each one's score and stored target.
    let hits_of = |neighbours: &[serde_json::Value]| -> Vec<Neighbour> {
        neighbours
            .iter()
            .map(|n| {
                let row = row_of[n["prompt"].as_str().unwrap()];
                Neighbour::new(
                    n["score"].as_f64().unwrap() as f32,
                    &targets[row * td..(row + 1) * td],
                )
            })
            .collect()
    };

    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["image"], s(&images[i]));
        let q = &queries[i * kd..(i + 1) * kd];
        // Exact top-k by cosine over our own keys.
        let mut expected: Vec<(usize, f64)> = (0..prompts.len())
            .map(|r| (r, cosine(q, &keys[r * kd..(r + 1) * kd])))
            .collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1));
        let neighbours = line["neighbors"].as_array().unwrap();
        assert_eq!(neighbours.len(), K);
        for (rank, n) in neighbours.iter().enumerate() {
            let score = n["score"].as_f64().unwrap();
            assert!(
                (score - expected[rank].1).abs() < 1e-4,
                "image {i} rank {rank}: score {score} vs {}",
                expected[rank].1
            );
            let row = row_of[n["prompt"].as_str().unwrap()];
            // Same prompt, or a tie within rounding.
            assert!((cosine(q, &keys[row * kd..(row + 1) * kd]) - expected[rank].1).abs() < 1e-4);
        }
        // The documented fusion of those neighbours' targets and the head's output.
        let hits = hits_of(neighbours);
        let fused = FusionConfig::default()
            .fuse(&hits, Some(&head_out[i * td..(i + 1) * td]))
            .unwrap();
        let embedding: Vec<f32> = line["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(embedding.len(), 384);
        assert!(cosine(&embedding, &fused.embedding) > 0.9999);
        assert_eq!(npy_rows[i], embedding);
        // The text: the prompt of the whole index whose own sentence embedding is nearest the
        // prediction (brute force over every stored target), at least as near as any neighbour.
        let nearest = targets
            .chunks_exact(td)
            .map(|t| cosine(&fused.embedding, t))
            .fold(f64::NEG_INFINITY, f64::max);
        let nearest_neighbour = hits
            .iter()
            .map(|n| cosine(&fused.embedding, n.target))
            .fold(f64::NEG_INFINITY, f64::max);
        let chosen = row_of[line["prompt"].as_str().unwrap()];
        let chosen_cos = cosine(&fused.embedding, &targets[chosen * td..(chosen + 1) * td]);
        assert!(
            (chosen_cos - nearest).abs() < 1e-5,
            "image {i}: text {:?} ({chosen_cos}) is not the nearest in the index ({nearest})",
            line["prompt"],
        );
        assert!(chosen_cos >= nearest_neighbour - 1e-6);
        let weights: Vec<f64> = neighbours
            .iter()
            .map(|n| n["weight"].as_f64().unwrap())
            .collect();
        assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        for (w, e) in weights.iter().zip(&fused.weights) {
            assert!((w - f64::from(*e)).abs() < 1e-4);
        }
    }

    // eval on pairs: each image paired with an arbitrary corpus prompt as its "truth".
    let pairs = work.path().join("pairs.jsonl");
    let truth_prompts: Vec<&str> = (0..images.len()).map(|i| refs[i * 37]).collect();
    let pair_lines: Vec<String> = images
        .iter()
        .zip(&truth_prompts)
        .map(|(im, p)| serde_json::json!({"image": s(im), "prompt": p}).to_string())
        .collect();
    std::fs::write(&pairs, pair_lines.join("\n")).unwrap();
    let report_path = work.path().join("eval.json");
    let table = common::img2prompt_ok(
        home.path(),
        &[
            "eval",
            "--index",
            &s(&index),
            "--pairs",
            &s(&pairs),
            "--clip",
            &s(&clip),
            "--sentence",
            &s(&minilm),
            "--json",
            &s(&report_path),
        ],
    );
    assert!(
        table.contains("CLIP head only") && table.contains("KNN"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let truths: Vec<&[f32]> = truth_prompts
        .iter()
        .map(|p| &targets[row_of[p] * td..(row_of[p] + 1) * td])
        .collect();
    let mean =
        |f: &dyn Fn(usize) -> f64| (0..images.len()).map(f).sum::<f64>() / images.len() as f64;
    let fused_from_predict = mean(&|i| cosine(&npy_rows[i], truths[i]));
    let reported = report["fused"]["0.6"].as_f64().unwrap();
    assert!(
        (reported - fused_from_predict).abs() < 1e-4,
        "{reported} vs {fused_from_predict}"
    );
    let target_of = |p: &str| &targets[row_of[p] * td..(row_of[p] + 1) * td];
    // The texts predict printed (its default choice, at the same k and blend as eval's).
    let text_from_predict =
        mean(&|i| cosine(target_of(lines[i]["prompt"].as_str().unwrap()), truths[i]));
    assert_eq!(report["text_mode"], "nearest-in-index");
    assert!((report["text_score"].as_f64().unwrap() - text_from_predict).abs() < 1e-4);
    assert!(
        (report["text_scores"]["nearest-in-index"].as_f64().unwrap() - text_from_predict).abs()
            < 1e-4
    );
    let best_from_predict = mean(&|i| {
        cosine(
            target_of(lines[i]["neighbors"][0]["prompt"].as_str().unwrap()),
            truths[i],
        )
    });
    let best = report["text_scores"]["best-neighbour"].as_f64().unwrap();
    assert!((best - best_from_predict).abs() < 1e-4);
    assert!((report["knn"]["1"].as_f64().unwrap() - best_from_predict).abs() < 1e-4);
    let head_from_library = mean(&|i| cosine(&head_out[i * td..(i + 1) * td], truths[i]));
    assert!((report["clip_head"].as_f64().unwrap() - head_from_library).abs() < 1e-4);
    assert_eq!(report["n"], images.len());

    // `eval --save-tuned` keeps the tuned setting in the index; `predict` then uses it without
    // flags, the paper's with any fusion flag, and refuses a damaged file by name.
    let out = common::img2prompt(
        home.path(),
        &[
            "eval",
            "--index",
            &s(&index),
            "--pairs",
            &s(&pairs),
            "--clip",
            &s(&clip),
            "--sentence",
            &s(&minilm),
            "--save-tuned",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("fusion.json"));
    let stored = img2prompt::tuned_fusion::load_fusion(&index)
        .unwrap()
        .expect("eval --save-tuned writes fusion.json");
    assert_eq!(
        stored.head_xxh3,
        img2prompt::tuned_fusion::head_fingerprint(&index).unwrap()
    );
    let tuned_npy = work.path().join("tuned.npy");
    let mut tuned_args = vec![
        "predict".to_string(),
        "--index".into(),
        s(&index),
        "--clip".into(),
        s(&clip),
        "--embeddings".into(),
        s(&tuned_npy),
    ];
    tuned_args.extend(images.iter().map(|p| s(p)));
    let tuned_refs: Vec<&str> = tuned_args.iter().map(String::as_str).collect();
    let out = common::img2prompt(home.path(), &tuned_refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tuned, from the index's fusion.json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tuned_lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tuned_rows = read_rows(&tuned_npy);
    for (i, line) in tuned_lines.iter().enumerate() {
        let neighbours = line["neighbors"].as_array().unwrap();
        assert_eq!(neighbours.len(), stored.config.k);
        let fused = stored
            .config
            .fuse(&hits_of(neighbours), Some(&head_out[i * td..(i + 1) * td]))
            .unwrap();
        assert!(
            cosine(&tuned_rows[i], &fused.embedding) > 0.9999,
            "image {i}"
        );
    }
    // Any fusion flag: the paper's setting with it, as before the file existed.
    let paper_npy = work.path().join("paper.npy");
    let mut paper_args = tuned_args.clone();
    paper_args[6] = s(&paper_npy);
    paper_args.extend(["--k".to_string(), K.to_string()]);
    let paper_refs: Vec<&str> = paper_args.iter().map(String::as_str).collect();
    common::img2prompt_ok(home.path(), &paper_refs);
    assert_eq!(read_rows(&paper_npy), npy_rows);
    // A damaged fusion.json is an error naming it, and nothing is written.
    let fusion_file = index.join(img2prompt::tuned_fusion::FUSION_FILE);
    let text = std::fs::read_to_string(&fusion_file).unwrap();
    std::fs::write(&fusion_file, text.replacen("\"k\": ", "\"k\": 1", 1)).unwrap();
    std::fs::remove_file(&tuned_npy).unwrap();
    let out = common::img2prompt(home.path(), &tuned_refs);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("fusion.json") && err.contains("checksum"),
        "{err}"
    );
    assert!(out.stdout.is_empty() && !tuned_npy.exists());
    std::fs::remove_file(&fusion_file).unwrap();

    // Bad input: not an image, another model, k = 0, weights summing to 0; nothing written.
    let not_image = work.path().join("notes.png");
    std::fs::write(&not_image, "not an image").unwrap();
    let out_npy = work.path().join("bad.npy");
    let (index_s, clip_s) = (s(&index), s(&clip));
    for (args, needle) in [
        (vec!["--k", "100"], "notes.png"),
        (vec!["--k", "0"], "--k"),
        (vec!["--w-knn", "0", "--w-clip", "0"], "--w-knn"),
    ] {
        let mut a = vec!["predict", "--index", &index_s, "--clip", &clip_s];
        let owned: Vec<String> = args.iter().map(|x| x.to_string()).collect();
        a.extend(owned.iter().map(String::as_str));
        let out_s = s(&out_npy);
        let not_image_s = s(&not_image);
        a.extend(["--embeddings", &out_s, &not_image_s]);
        let out = common::img2prompt(home.path(), &a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
        assert!(!out_npy.exists());
    }
    let other = fixtures().join("clip_b");
    let out = common::img2prompt(
        home.path(),
        &[
            "predict",
            "--index",
            &s(&index),
            "--clip",
            &s(&other),
            &s(&images[0]),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another model"),
        "{err}"
    );
    // Without --clip, the manifest's model name is looked up in the (empty) cache.
    let out = common::img2prompt(
        home.path(),
        &["predict", "--index", &s(&index), &s(&images[0])],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--clip"), "{err}");

    // A setting that weighs the head, then a retrained head: `head train` says the setting no
    // longer holds, and `predict` falls back to the paper's, saying why.
    let weighs_head = img2prompt::tuned_fusion::StoredFusion {
        config: FusionConfig {
            k: 10,
            ..FusionConfig::default()
        },
        tuned_on: "a test".into(),
        score: None,
        head_xxh3: img2prompt::tuned_fusion::head_fingerprint(&index).unwrap(),
    };
    img2prompt::tuned_fusion::save_fusion(&index, &weighs_head).unwrap();
    let out = common::img2prompt(
        home.path(),
        &[
            "head",
            "train",
            "--index",
            &s(&index),
            "--epochs",
            "1",
            "--seed",
            "7",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("fusion.json was tuned with the previous head"),
        "{err}"
    );
    let out = common::img2prompt(
        home.path(),
        &[
            "predict",
            "--index",
            &s(&index),
            "--clip",
            &s(&clip),
            &s(&images[0]),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("tuned with a head not in use")
            && err.contains("k 100"),
        "{err}"
    );
}
