//! Smoke test of `img2prompt demo` on a tiny world with the shipped world CLIP and the real
//! all-MiniLM-L6-v2: the report's numbers must be what `eval` and `predict` compute from the
//! index and pairs the demo leaves behind.

mod common;

use std::path::Path;

use common::{cosine, minilm_dir};
use img2prompt::{SentenceTextEmbedder, TextEmbedder};

#[test]
fn tiny_demo_report_agrees_with_eval_and_predict() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("demo");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let minilm = s(&minilm_dir());
    let table = common::img2prompt_ok(
        home.path(),
        &[
            "demo",
            "--world",
            "tiny",
            "--corpus",
            "1000",
            "--sentence",
            &minilm,
            "--out",
            &s(&out),
        ],
    );
    for row in [
        "CLIP head only",
        "KNN, k = 1",
        "KNN, k = 200",
        "fused, paper",
        "fused, tuned",
        "text score, predict's default (caption)",
        "text score, index prompt nearest the prediction",
    ] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let sheet = img2prompt::image::open(out.join("contact-sheet.png")).unwrap();
    assert!(sheet.width() > 200 && sheet.height() > 200);
    let n_test = report["n_test"].as_u64().unwrap() as usize;
    assert_eq!(n_test, 100);
    // The default text is the shipped captioner's, and it beats every pick from the corpus:
    // the index prompt nearest the prediction, which itself beats the best neighbour's.
    assert!(out.join("index/captioner/model.safetensors").is_file());
    for split in ["test", "cross_domain"] {
        assert_eq!(report[split]["text_mode"], "caption", "{split}");
        assert!(
            report[split]["text_score_nearest_neighbour"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        let caption = report[split]["text_score"].as_f64().unwrap();
        let nearest = report[split]["text_score_nearest_in_index"]
            .as_f64()
            .unwrap();
        let best = report[split]["text_score_best_neighbour"].as_f64().unwrap();
        assert!(
            caption > nearest && nearest > best,
            "{split}: caption {caption}, nearest in index {nearest}, best neighbour {best}"
        );
        assert!(report[split]["text_seconds_per_image"].as_f64().unwrap() > 0.0);
    }

    // eval over the exported test pairs recomputes the report's test rows.
    let pairs = out.join("pairs/test.jsonl");
    // `eval --json` on the test pairs with `extra` flags, read back.
    let eval_with = |name: &str, extra: &[&str]| -> serde_json::Value {
        let json = work.path().join(name);
        let (index, pairs, json_arg) = (s(&out.join("index")), s(&pairs), s(&json));
        let mut args = vec![
            "eval",
            "--index",
            &index,
            "--pairs",
            &pairs,
            "--sentence",
            &minilm,
            "--json",
            &json_arg,
        ];
        args.extend_from_slice(extra);
        common::img2prompt_ok(home.path(), &args);
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
    };
    let eval = eval_with("eval.json", &[]);
    let close = |a: &serde_json::Value, b: &serde_json::Value, what: &str| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() < 1e-4, "{what}: report {a} vs eval {b}");
    };
    close(&report["clip_head"], &eval["clip_head"], "clip_head");
    for k in ["1", "10", "50", "100", "200"] {
        close(&report["knn"][k], &eval["knn"][k], &format!("knn {k}"));
    }
    close(
        &report["fused_paper"],
        &eval["fused"]["0.6"],
        "fused at 0.6",
    );
    close(&report["text_score"], &eval["text_score"], "text score");
    assert_eq!(eval["text_mode"], "caption");
    // With --text, eval's text is that pick, as predict's is.
    let picked = eval_with("eval-picked.json", &["--text", "best-neighbour"]);
    assert_eq!(picked["text_mode"], "best-neighbour");
    assert!(picked["text_scores"].get("caption").is_none());
    close(
        &report["test"]["text_score_best_neighbour"],
        &picked["text_score"],
        "eval --text best-neighbour",
    );
    close(
        &report["test"]["text_score_nearest_in_index"],
        &eval["text_scores"]["nearest-in-index"],
        "nearest-in-index text score",
    );
    // The demo keeps its tuned setting in the index; eval's text rows and predict use it.
    let stored = img2prompt::tuned_fusion::load_fusion(out.join("index"))
        .unwrap()
        .expect("the demo writes fusion.json");
    assert_eq!(
        stored.config.k as u64,
        report["fused_tuned"]["k"].as_u64().unwrap()
    );
    close(
        &report["fused_tuned"]["score"],
        &eval["text_fusion_score"],
        "fused at the tuned setting",
    );

    // predict's embeddings (the tuned setting, from fusion.json) score the report's fused_tuned
    // against MiniLM's truth.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&pairs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut args = vec![
        "predict".to_string(),
        "--index".into(),
        s(&out.join("index")),
    ];
    args.extend(
        lines
            .iter()
            .map(|l| l["image"].as_str().unwrap().to_string()),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let predicted: Vec<serde_json::Value> = common::img2prompt_ok(home.path(), &refs)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let device = img2prompt::Backend::default().device().unwrap();
    let sentence = SentenceTextEmbedder::load(minilm_dir(), &device).unwrap();
    let truths: Vec<&str> = lines
        .iter()
        .map(|l| l["prompt"].as_str().unwrap())
        .collect();
    let truth = sentence.embed_texts(&truths).unwrap();
    let mean = predicted
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let e: Vec<f32> = p["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            cosine(&e, &truth[i * 384..(i + 1) * 384])
        })
        .sum::<f64>()
        / predicted.len() as f64;
    let reported = report["fused_tuned"]["score"].as_f64().unwrap();
    assert!(
        (mean - reported).abs() < 1e-4,
        "predict {mean} vs report {reported}"
    );
    // predict's texts are the captions the report scored; --text picks from the corpus again.
    let text_score = |predicted: &[serde_json::Value]| {
        let texts: Vec<&str> = predicted
            .iter()
            .map(|p| p["prompt"].as_str().unwrap())
            .collect();
        let embedded = sentence.embed_texts(&texts).unwrap();
        (0..texts.len())
            .map(|i| {
                cosine(
                    &embedded[i * 384..(i + 1) * 384],
                    &truth[i * 384..(i + 1) * 384],
                )
            })
            .sum::<f64>()
            / texts.len() as f64
    };
    let caption = text_score(&predicted);
    let reported = report["text_score"].as_f64().unwrap();
    assert!(
        (caption - reported).abs() < 1e-4,
        "predict's captions {caption} vs report {reported}"
    );
    let mut picked_args = refs.clone();
    picked_args.extend(["--text", "nearest-in-index"]);
    let picked: Vec<serde_json::Value> = common::img2prompt_ok(home.path(), &picked_args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nearest = text_score(&picked);
    let reported = report["test"]["text_score_nearest_in_index"]
        .as_f64()
        .unwrap();
    assert!(
        (nearest - reported).abs() < 1e-4,
        "predict --text nearest-in-index {nearest} vs report {reported}"
    );
}
