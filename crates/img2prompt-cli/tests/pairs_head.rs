//! The head trained on image-prompt pairs, end to end on the tiny world with the shipped world
//! CLIP and the real all-MiniLM-L6-v2: `demo --pairs` (the pair head beats the text head on
//! test), `head train --pairs` (cache reuse, determinism), `eval` showing the head's data, and
//! bad pairs files named by file and line.

mod common;

use std::path::Path;

use common::home_with_minilm;
use img2prompt::EmbeddingHead;
use img2prompt::head::ClipHead;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn tiny_world_pair_head_beats_the_text_head_and_head_train_reuses_the_cache() {
    let home = home_with_minilm();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("demo");
    let table = common::img2prompt_ok(
        home.path(),
        &[
            "demo",
            "--world",
            "tiny",
            "--pairs",
            "2000",
            "--sheet",
            "0",
            "--out",
            &s(&out),
        ],
    );
    assert!(table.contains("CLIP head only (pairs head)"), "{table}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let text_head = report["test"]["clip_head"].as_f64().unwrap();
    let pair_head = report["pair_head"]["test"]["clip_head"].as_f64().unwrap();
    assert!(
        pair_head > text_head + 0.01,
        "pair head {pair_head} vs text head {text_head} on test\n{table}"
    );
    assert_eq!(report["pair_head"]["training"]["source"], "pairs");
    let train = out.join("pairs/train.jsonl");
    assert_eq!(
        std::fs::read_to_string(&train).unwrap().lines().count(),
        2000
    );
    // Training prompts are in none of the evaluation splits.
    let prompts = |f: &str| -> std::collections::HashSet<String> {
        std::fs::read_to_string(out.join("pairs").join(f))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["prompt"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let train_prompts = prompts("train.jsonl");
    for split in ["test.jsonl", "cross_domain.jsonl"] {
        assert!(train_prompts.is_disjoint(&prompts(split)), "{split}");
    }

    // head train --pairs on the same images: the demo's embedding cache is reused whole, and
    // the same seed gives the same head file.
    let index = out.join("index");
    let head_file = index.join("head.safetensors");
    let args = [
        "head",
        "train",
        "--index",
        &s(&index),
        "--pairs",
        &s(&train),
        "--kind",
        "mlp",
        "--hidden",
        "64",
        "--epochs",
        "3",
        "--seed",
        "4",
    ];
    let run = common::img2prompt(home.path(), &args);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("0 images encoded, 2000 from the cache"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        stdout.contains("trained on pairs: 1900 image-prompt pairs"),
        "{stdout}"
    );
    // Compared by weights and record: the safetensors metadata map is written in hash order.
    let device = img2prompt::Backend::default_cpu().device().unwrap();
    let probe: Vec<f32> = (0..64 * 16)
        .map(|i| ((i * 37 % 101) as f32) - 50.0)
        .collect();
    let load = || {
        let head = ClipHead::load(&index, &device).unwrap();
        (head.predict(&probe).unwrap(), head.training().cloned())
    };
    let first = load();
    let run = common::img2prompt(home.path(), &args);
    assert!(run.status.success());
    assert_eq!(load(), first, "same seed, same head");

    // With the text rows mixed in, and eval says what the head was trained on.
    let mut mixed = args.to_vec();
    mixed.push("--text-too");
    common::img2prompt_ok(home.path(), &mixed);
    let eval = common::img2prompt_ok(
        home.path(),
        &[
            "eval",
            "--index",
            &s(&index),
            "--pairs",
            &s(&out.join("pairs/test.jsonl")),
        ],
    );
    assert!(
        eval.contains(
            "head trained on pairs+text: 1900 image-prompt pairs + 2000 corpus text rows"
        ),
        "{eval}"
    );

    // Bad pairs files: one line naming the file and the line.
    let bad = work.path().join("bad.jsonl");
    let good_line = std::fs::read_to_string(&train)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let cases = [
        (format!("{good_line}\nnot json\n"), 2),
        (
            format!(
                "{good_line}\n{good_line}\n{{\"image\": \"missing.png\", \"prompt\": \"x\"}}\n"
            ),
            3,
        ),
    ];
    for (content, line) in cases {
        std::fs::write(&bad, content).unwrap();
        let before = std::fs::read(&head_file).unwrap();
        let run = common::img2prompt(
            home.path(),
            &["head", "train", "--index", &s(&index), "--pairs", &s(&bad)],
        );
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(!run.status.success(), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("{}:{line}", bad.display())),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&head_file).unwrap(), before, "head untouched");
    }
}
