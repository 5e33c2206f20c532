//! The Ray driver (`examples/ray/build_index.py`) against a single build: 3 shards on a local
//! Ray, one of them killed on purpose and retried, merged, equal to `index build` without
//! shards (ids, prompts, targets, keys, neighbours).
//!
//! Needs a Python with Ray: `$IMG2PROMPT_RAY_PYTHON`, else `$IMG2PROMPT_HOME/ray-venv/bin/python`
//! (scripts/setup.sh installs it). Without one the test is skipped, except under CI (env `CI`
//! set), where it fails.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{home_with_minilm, img2prompt_ok};
use img2prompt::knn_index::{Neighbour, PromptIndex, SearchParams};

/// The driver's whole run (a local Ray starts in a few seconds; 4 shard attempts of ~100
/// prompts each) must end well within this.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(240);
const SHARDS: usize = 3;
const DISTINCT: usize = 300;
const TOLERANCE: f32 = 1e-5;

/// The Python that runs the driver, if it can import Ray.
fn ray_python() -> Option<PathBuf> {
    let python = std::env::var_os("IMG2PROMPT_RAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            img2prompt::ModelCache::from_env()
                .root()
                .join("ray-venv/bin/python")
        });
    let imports_ray = Command::new(&python)
        .args(["-c", "import ray"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    imports_ray.then_some(python)
}

/// Prompt `i` of the corpus: distinct for `i < 312`, made only of words the world CLIP's
/// word-level tokenizer knows (an unknown word would become [UNK] and could make two prompts'
/// keys equal).
fn prompt(i: usize) -> String {
    const SIZES: [&str; 2] = ["small", "large"];
    const COLOURS: [&str; 12] = [
        "red", "blue", "green", "yellow", "purple", "orange", "pink", "cyan", "white", "black",
        "gray", "brown",
    ];
    const SHAPES: [&str; 13] = [
        "circle",
        "square",
        "star",
        "triangle",
        "heart",
        "diamond",
        "hexagon",
        "pentagon",
        "cross",
        "ring",
        "arrow",
        "crescent",
        "semicircle",
    ];
    const PLACES: [&str; 5] = [
        "at the top left",
        "in the bottom right corner",
        "on a checkered background",
        "above a blue ring",
        "on a plain white background",
    ];
    assert!(i < SIZES.len() * COLOURS.len() * SHAPES.len());
    format!(
        "a {} {} {} {}",
        SIZES[i % 2],
        COLOURS[(i / 2) % 12],
        SHAPES[i / 24],
        PLACES[i % 5]
    )
}

/// Two corpus files: 300 distinct prompts, plus exact duplicates, duplicates that differ only
/// in whitespace (equal once cleaned), blank and whitespace-only lines, within and across
/// the files. A sharded build must drop the same ones as a single build (dedupe is global).
fn write_corpus(dir: &Path) -> Vec<PathBuf> {
    let mut first = String::new();
    for i in 0..200 {
        first.push_str(&prompt(i));
        first.push('\n');
        if i % 11 == 10 {
            first.push_str(&prompt(i - 7));
            first.push('\n');
        }
        if i % 17 == 0 {
            first.push_str(if i % 2 == 0 { "\n" } else { "   \t \n" });
        }
    }
    let mut second = String::new();
    for i in 200..DISTINCT {
        second.push_str(&prompt(i));
        second.push('\n');
        if i % 9 == 0 {
            // A prompt of the first file, spaced out: the same prompt once cleaned.
            second.push_str(&format!("  {}  \n", prompt(i - 150).replace(' ', "   ")));
        }
        if i % 13 == 0 {
            second.push_str(&prompt(i - 1));
            second.push_str("\n\n");
        }
    }
    let paths = vec![dir.join("first.txt"), dir.join("second.txt")];
    std::fs::write(&paths[0], first).unwrap();
    std::fs::write(&paths[1], second).unwrap();
    paths
}

/// Runs the driver to completion (or kills it after [`DRIVER_TIMEOUT`]); returns success and
/// its stdout + stderr.
fn run_driver(mut cmd: Command, logs: &Path) -> (bool, String) {
    let out_path = logs.join("driver.out");
    let out = File::create(&out_path).unwrap();
    let err = out.try_clone().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start the Ray driver");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DRIVER_TIMEOUT {
            // SIGTERM first: the driver then shuts its local Ray (and the shard builds) down.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(status) => (status.success(), log),
        None => panic!("the Ray driver ran past {DRIVER_TIMEOUT:?}; its output:\n{log}"),
    }
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: widths differ");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= TOLERANCE, "{what}: differs by {worst}");
}

/// The same top-k up to the order of equal scores: scores agree position by position, and
/// each run of (near-)equal scores holds the same ids, except a run that k cuts off (equal
/// scores at the boundary may keep different members).
fn assert_same_neighbours(a: &[Neighbour<'_>], b: &[Neighbour<'_>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: neighbour counts differ");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x.score - y.score).abs() <= TOLERANCE,
            "{what}: scores {} (id {}) and {} (id {}) differ",
            x.score,
            x.id,
            y.score,
            y.id
        );
    }
    let mut start = 0;
    while start < a.len() {
        let mut end = start + 1;
        while end < a.len() && (a[end].score - a[end - 1].score).abs() <= TOLERANCE {
            end += 1;
        }
        if end < a.len() {
            assert_eq!(
                sorted_ids(&a[start..end]),
                sorted_ids(&b[start..end]),
                "{what}: neighbours {start}..{end} differ: {:?} vs {:?}",
                a.iter().map(|n| n.id).collect::<Vec<_>>(),
                b.iter().map(|n| n.id).collect::<Vec<_>>()
            );
        }
        start = end;
    }
}

fn sorted_ids(neighbours: &[Neighbour<'_>]) -> Vec<u64> {
    let mut ids: Vec<u64> = neighbours.iter().map(|n| n.id).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn ray_driver_with_a_retried_shard_builds_what_a_single_build_builds() {
    let Some(python) = ray_python() else {
        let msg = "no Python with Ray ($IMG2PROMPT_RAY_PYTHON, else \
                   $IMG2PROMPT_HOME/ray-venv/bin/python): run scripts/setup.sh";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("skipping the Ray driver test: {msg}");
        return;
    };
    let home = home_with_minilm();
    let dir = tempfile::tempdir().unwrap();
    let prompts = write_corpus(dir.path());
    let prompt_args: Vec<String> = prompts.iter().map(|p| p.display().to_string()).collect();

    // The reference: one ordinary build.
    let single = dir.path().join("single");
    let mut args = vec![
        "index".to_owned(),
        "build".to_owned(),
        "--clip".to_owned(),
        "world-clip".to_owned(),
        "--out".to_owned(),
        single.display().to_string(),
        "--prompts".to_owned(),
    ];
    args.extend(prompt_args.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    img2prompt_ok(home.path(), &args);

    // The same corpus through Ray: 3 shards, the first attempt of shard 1 killed part-way.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ray/build_index.py");
    let merged = dir.path().join("merged");
    let work = dir.path().join("work");
    let hook = dir.path().join("hook");
    let ray_tmp = dir.path().join("r");
    std::fs::create_dir(&ray_tmp).unwrap();
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .args(["--img2prompt", env!("CARGO_BIN_EXE_img2prompt")])
        .args(["--clip", "world-clip"])
        .args(["--shards", &SHARDS.to_string()])
        .args(["--num-cpus", "1"])
        // Small durable chunks: the killed first attempt of shard 1 leaves rows to resume from.
        .args(["--chunk", "16"])
        .arg("--out")
        .arg(&merged)
        .arg("--work")
        .arg(&work)
        .arg("--prompts")
        .args(&prompt_args)
        .env("IMG2PROMPT_HOME", home.path())
        .env("IMG2PROMPT_RAY_FAIL_ONCE", &hook)
        // Offline, and a Ray of its own: no usage report, no joining a Ray already running
        // here, its session files under the test's temporary directory.
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .env("RAY_TMPDIR", &ray_tmp)
        .env_remove("RAY_ADDRESS")
        .env_remove("IMG2PROMPT_BIN");
    let (ok, log) = run_driver(cmd, dir.path());
    assert!(ok, "the Ray driver failed:\n{log}");
    assert!(
        hook.join("failed-once").is_file(),
        "the test hook did not fail shard 1 once:\n{log}"
    );
    let shard1 = log
        .lines()
        .find(|l| l.starts_with(&format!("shard 1/{SHARDS}:")))
        .unwrap_or_else(|| panic!("no summary line for shard 1:\n{log}"));
    assert!(shard1.contains("2 attempts"), "{shard1}\n{log}");
    // The retry resumed from the rows the killed attempt had made durable.
    let shard1_log = std::fs::read_to_string(work.join("logs/shard-1.log")).unwrap();
    assert!(
        shard1_log.contains("resumed from"),
        "shard 1 did not resume:\n{shard1_log}"
    );
    for i in [0, 2] {
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("shard {i}/{SHARDS}:")))
            .unwrap_or_else(|| panic!("no summary line for shard {i}:\n{log}"));
        assert!(line.contains(" 1 attempt,"), "{line}\n{log}");
    }
    assert!(log.contains("done: "), "{log}");

    // Same index.
    let a = PromptIndex::open(&single).unwrap();
    let b = PromptIndex::open(&merged).unwrap();
    assert_eq!(
        a.len(),
        DISTINCT,
        "the corpus holds {DISTINCT} distinct prompts"
    );
    assert_eq!(b.len(), a.len(), "rows");
    let (ma, mb) = (a.manifest(), b.manifest());
    assert_eq!(
        (
            &mb.key_model,
            &mb.target_model,
            &mb.spec,
            mb.key_dim,
            mb.target_dim
        ),
        (
            &ma.key_model,
            &ma.target_model,
            &ma.spec,
            ma.key_dim,
            ma.target_dim
        )
    );
    assert!(mb.shard.is_none(), "the merged index is not a shard");
    let dim = ma.key_dim;
    let (ids, keys) = a.keys_in_rows(0, a.len()).unwrap();
    for (row, &id) in ids.iter().enumerate() {
        assert_eq!(
            b.prompt(id).unwrap(),
            a.prompt(id).unwrap(),
            "prompt of id {id}"
        );
        assert_close(
            &b.target(id).unwrap(),
            &a.target(id).unwrap(),
            &format!("target of id {id}"),
        );
        let (_, key_b) = b.keys_in_rows(b.row_of(id).unwrap(), 1).unwrap();
        assert_close(
            &key_b,
            &keys[row * dim..(row + 1) * dim],
            &format!("key of id {id}"),
        );
    }

    // Same neighbours, for queries that are keys of a few rows.
    let rows = [0, 1, 57, 150, 211, DISTINCT - 1];
    let queries: Vec<f32> = rows
        .iter()
        .flat_map(|&r| keys[r * dim..(r + 1) * dim].iter().copied())
        .collect();
    let params = SearchParams::default();
    let na = a.neighbours(&queries, 10, &params).unwrap();
    let nb = b.neighbours(&queries, 10, &params).unwrap();
    assert_eq!(na.len(), rows.len());
    assert_eq!(nb.len(), rows.len());
    for ((row, x), y) in rows.iter().zip(&na).zip(&nb) {
        assert_eq!(x.len(), 10);
        assert_same_neighbours(x, y, &format!("query = key of row {row}"));
    }
}
