//! The knn-index acceptance run at scale: builds an index of N synthetic prompts (default
//! 1 000 000; 512-d clustered keys, 384-d targets) through the resumable [`IndexWriter`], kills
//! a second save of the same directory half-way (a real SIGKILL of a child process, once while
//! appending and once while finishing), checks that the first index still loads with full
//! verification, answers top-100 queries from several threads (through [`PromptIndex`] and
//! through the bare [`knn_index::KeyIndex`], to show the wrapper's cost), and rejects a flipped
//! byte in each file. Prints one `SCALE` line per measurement.
//!
//! `cargo build --release --workspace --examples`, then
//! `$CARGO_TARGET_DIR/release/examples/scale_check [DIR] [N] [SPEC] [THREADS]`
//! (DIR default `scale-check` under the system temp dir; SPEC default `exact`; THREADS 2).
//! Needs ~4 KiB of disk per row at d = 512 while both saves exist (~8 GB at 1M).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use knn_index::synth::{clustered_unit_vectors, unit_vectors};
use knn_index::{IndexConfig, IndexSpec, IndexWriter, LoadOptions, PromptIndex};

const KEY_DIM: usize = 512;
const TARGET_DIM: usize = 384;
const CHUNK: usize = 65_536;
const K: usize = 100;
const QUERIES: usize = 128;
/// Set in the child process: the directory it saves the second index to.
const CHILD_ENV: &str = "KNN_SCALE_CHILD";

type Error = Box<dyn std::error::Error>;

/// Writes version `version` of the corpus (prompt texts say which) to `out`, chunk by chunk,
/// printing `APPENDED <rows>` after each chunk and `FINISHING` before the final build and swap.
fn save(out: &Path, n: usize, spec: &IndexSpec, version: u32) -> Result<(), Error> {
    let config = IndexConfig::new(KEY_DIM, TARGET_DIM, spec.clone())
        .with_models("synthetic-keys", "synthetic-targets");
    let mut writer = IndexWriter::create(out, config)?;
    let clusters = (n / 100).max(1);
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let rows = end - start;
        let keys = chunk_keys(start, rows, clusters);
        let targets = unit_vectors(1_000 + start as u64, rows, TARGET_DIM);
        let ids: Vec<u64> = (start as u64..end as u64).collect();
        let prompts: Vec<String> = ids
            .iter()
            .map(|i| format!("v{version} prompt {i}"))
            .collect();
        writer.append(&ids, &keys, &prompts, &targets)?;
        println!("APPENDED {end}");
        std::io::stdout().flush()?;
    }
    println!("FINISHING");
    std::io::stdout().flush()?;
    writer.finish()?;
    println!("DONE");
    Ok(())
}

/// Keys of rows `start..start + rows`: clustered unit vectors, generated per chunk.
fn chunk_keys(start: usize, rows: usize, clusters: usize) -> Vec<f32> {
    clustered_unit_vectors(1, 2 + start as u64, rows, KEY_DIM, clusters, 1.0)
}

/// Runs the second save in a child process and SIGKILLs it `delay` after it prints `marker`.
/// Returns whether it had finished anyway.
fn kill_second_save(
    dir: &Path,
    n: usize,
    spec: &str,
    marker: &str,
    delay: Duration,
) -> Result<bool, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([dir.to_string_lossy().as_ref(), &n.to_string(), spec])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut finished = false;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        finished |= line.starts_with("DONE");
        if line.starts_with(marker) {
            break;
        }
    }
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait()?;
    Ok(finished || status.success())
}

/// Flips one byte in the middle of `file`, tries to open the index, flips it back.
fn corrupted_open_fails(dir: &Path, file: &str) -> Result<String, Error> {
    let path = dir.join(file);
    let len = std::fs::metadata(&path)?.len();
    let at = len / 2;
    let flip = |path: &Path| -> Result<(), Error> {
        let mut f = OpenOptions::new().read(true).write(true).open(path)?;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut b)?;
        b[0] ^= 0x5a;
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&b)?;
        f.sync_all()?;
        Ok(())
    };
    flip(&path)?;
    let result = PromptIndex::open(dir);
    flip(&path)?;
    match result {
        Ok(_) => Err(format!("a flipped byte in {file} was not detected").into()),
        Err(e) => Ok(e.to_string()),
    }
}

/// Queries per second of `search` run from `threads` threads over `queries`, batch 1.
fn threaded_qps(threads: usize, queries: &[f32], search: &(dyn Fn(&[f32]) -> usize + Sync)) -> f64 {
    let per = queries.len() / KEY_DIM / threads;
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            s.spawn(move || {
                for i in 0..per {
                    let q = th * per + i;
                    std::hint::black_box(search(&queries[q * KEY_DIM..(q + 1) * KEY_DIM]));
                }
            });
        }
    });
    (per * threads) as f64 / t.elapsed().as_secs_f64()
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .map_or_else(|| std::env::temp_dir().join("scale-check"), PathBuf::from);
    let n: usize = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let spec_name = args.get(2).cloned().unwrap_or_else(|| "exact".to_owned());
    let spec: IndexSpec = spec_name.parse()?;
    let threads: usize = args
        .get(3)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2)
        .max(1);
    if std::env::var_os(CHILD_ENV).is_some() {
        return save(&dir, n, &spec, 2);
    }

    // 1. Build and save version 1.
    let t = Instant::now();
    save(&dir, n, &spec, 1)?;
    println!(
        "SCALE build n={n} spec={spec_name} seconds={:.1}",
        t.elapsed().as_secs_f64()
    );
    let sizes: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| {
            format!(
                "{}={:.0}MiB",
                e.file_name().to_string_lossy(),
                e.metadata().map_or(0, |m| m.len()) as f64 / 1048576.0
            )
        })
        .collect();
    println!("SCALE files {}", sizes.join(" "));

    // 2. Kill a second save while appending, then while finishing: version 1 must survive.
    let survived = |stage: &str| -> Result<(), Error> {
        let t = Instant::now();
        let index = PromptIndex::open(&dir)?;
        let ok = index.len() == n && index.prompt(n as u64 - 1)? == format!("v1 prompt {}", n - 1);
        println!(
            "SCALE after_kill stage={stage} old_index_intact={ok} open_verified_s={:.1}",
            t.elapsed().as_secs_f64()
        );
        if ok {
            Ok(())
        } else {
            Err(format!("index changed after a kill {stage}").into())
        }
    };
    kill_second_save(
        &dir,
        n,
        &spec_name,
        &format!("APPENDED {}", CHUNK.min(n)),
        Duration::ZERO,
    )?;
    survived("while appending")?;
    let finished = kill_second_save(
        &dir,
        n,
        &spec_name,
        "FINISHING",
        Duration::from_millis(1500),
    )?;
    if finished {
        println!("SCALE note: the second save finished before the kill");
    } else {
        survived("while finishing")?;
    }

    // 3. Open (verified and trusted) and search from several threads.
    let t = Instant::now();
    let index = PromptIndex::open_with(&dir, &LoadOptions::trusted())?;
    println!("SCALE open_trusted_s={:.2}", t.elapsed().as_secs_f64());
    let queries = clustered_unit_vectors(1, 3, QUERIES, KEY_DIM, (n / 100).max(1), 1.0);
    let params = index.keys().default_params();
    let hits = index.search(&queries[..KEY_DIM], K)?;
    println!(
        "SCALE top{K} first_query_hits={} best={:?}",
        hits[0].len(),
        hits[0].first()
    );
    for t in [1, threads] {
        let wrapped = threaded_qps(t, &queries, &|q| {
            index.neighbours(q, K, &params).map_or(0, |h| h[0].len())
        });
        let bare = threaded_qps(t, &queries, &|q| {
            index.keys().search(q, K).map_or(0, |h| h[0].len())
        });
        println!(
            "SCALE search threads={t} k={K} prompt_index_qps={wrapped:.1} key_index_qps={bare:.1} ratio={:.3}",
            wrapped / bare
        );
    }
    drop(index);

    // 4. A flipped byte in any file is rejected, naming it.
    for entry in std::fs::read_dir(&dir)? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        let message = corrupted_open_fails(&dir, &file)?;
        println!("SCALE corrupt file={file} rejected: {message}");
    }
    PromptIndex::open(&dir)?;
    println!("SCALE ok");
    Ok(())
}
