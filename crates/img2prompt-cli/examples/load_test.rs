//! Load test of `img2prompt serve`, loopback only, bounded in count and time.
//!
//! ```sh
//! cargo run --release -p img2prompt-cli --example load_test -- \
//!     --index img2prompt-demo/index --images img2prompt-demo/pairs/images
//! ```
//!
//! It starts the server itself (the release binary next to this example) on a free 127.0.0.1
//! port, twice: with dynamic batching (the defaults) and with `--max-batch 1`. Against each it
//! runs `--requests` image predictions at 1, 8 and 32 concurrent clients and reports throughput
//! and p50/p95/p99 latency, counting every answer that is not 200 as failed. Then a soak: the
//! server's RSS before and after `--soak` more requests (after a warm-up). Prints a Markdown
//! table (docs/SERVING.md holds one).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: load_test --index DIR --images DIR|FILE... [--requests N (300)] \
[--soak N (10000)] [--concurrency 1,8,32] [--bin PATH] [--max-seconds S (900)]";

struct Options {
    index: PathBuf,
    images: Vec<PathBuf>,
    requests: usize,
    soak: usize,
    concurrency: Vec<usize>,
    bin: PathBuf,
    max_seconds: u64,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut index = None;
    let mut images = Vec::new();
    let mut requests = 300;
    let mut soak = 10_000;
    let mut concurrency = vec![1, 8, 32];
    let mut max_seconds = 900;
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/release/examples/load_test -> target/release/img2prompt
    let mut bin = here
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("img2prompt"))
        .unwrap_or_else(|| PathBuf::from("img2prompt"));
    let number = |v: Option<String>, name: &str| -> Result<usize, String> {
        v.ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--index" => index = args.next().map(PathBuf::from),
            "--images" => {
                let path = PathBuf::from(args.next().ok_or("--images needs a value")?);
                if path.is_dir() {
                    let mut found: Vec<PathBuf> = std::fs::read_dir(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            matches!(
                                p.extension().and_then(|e| e.to_str()),
                                Some("png" | "jpg" | "jpeg" | "webp")
                            )
                        })
                        .collect();
                    found.sort();
                    found.truncate(256);
                    images.extend(found);
                } else {
                    images.push(path);
                }
            }
            "--requests" => requests = number(args.next(), "--requests")?,
            "--soak" => soak = number(args.next(), "--soak")?,
            "--max-seconds" => max_seconds = number(args.next(), "--max-seconds")? as u64,
            "--bin" => bin = PathBuf::from(args.next().ok_or("--bin needs a value")?),
            "--concurrency" => {
                concurrency = args
                    .next()
                    .ok_or("--concurrency needs a value")?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--concurrency: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let index = index.ok_or(format!("--index is required\n{USAGE}"))?;
    if images.is_empty() {
        return Err(format!("no images given\n{USAGE}"));
    }
    Ok(Options {
        index,
        images,
        requests,
        soak,
        concurrency,
        bin,
        max_seconds,
    })
}

/// A running server, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    async fn start(options: &Options, extra: &[&str]) -> Result<Server, String> {
        let mut child = Command::new(&options.bin)
            .args(["serve", "--index"])
            .arg(&options.index)
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", options.bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let line = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or(format!("unexpected first line {line:?}"))?
            .to_owned();
        let server = Server { child, url };
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", server.url)).send().await
                && r.status() == 200
            {
                return Ok(server);
            }
            if start.elapsed() > Duration::from_secs(300) {
                return Err("server not ready in 300 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resident memory of the server process, in MiB.
    fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One load level's outcome.
struct Level {
    concurrency: usize,
    requests: usize,
    failed: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Level {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.latencies_ms.len() - 1) as f64).round() as usize;
        self.latencies_ms[rank.min(self.latencies_ms.len() - 1)]
    }
}

/// `requests` predictions from `concurrency` clients, each sending the next image in turn.
async fn run_level(
    url: &str,
    bodies: &Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    requests: usize,
    deadline: Instant,
) -> Level {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, bodies) = (client.clone(), Arc::clone(&next), Arc::clone(bodies));
            let url = format!("{url}/v1/predict?neighbors=5");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests || Instant::now() > deadline {
                        break;
                    }
                    let body = bodies[i % bodies.len()].clone();
                    let sent = Instant::now();
                    let ok = match client
                        .post(&url)
                        .header("content-type", "application/octet-stream")
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    let mut failed = 0;
    for t in tasks {
        if let Ok((l, f)) = t.await {
            latencies_ms.extend(l);
            failed += f;
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    Level {
        concurrency,
        requests: latencies_ms.len() + failed,
        failed,
        seconds: start.elapsed().as_secs_f64(),
        latencies_ms,
    }
}

fn row(setting: &str, level: &Level) -> String {
    format!(
        "| {setting} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        level.concurrency,
        level.requests,
        level.failed,
        (level.requests - level.failed) as f64 / level.seconds.max(1e-9),
        level.percentile(50.0),
        level.percentile(95.0),
        level.percentile(99.0),
    )
}

#[tokio::main]
async fn main() {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(options.max_seconds);
    let bodies: Vec<Vec<u8>> = match options
        .images
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let bodies = Arc::new(bodies);
    let mut table = vec![
        "| server | clients | requests | failed | req/s | p50 ms | p95 ms | p99 ms |".to_owned(),
        "|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    let settings: [(&str, &[&str]); 2] = [
        ("dynamic batching (max 16, 5 ms)", &[]),
        ("batch 1", &["--max-batch", "1"]),
    ];
    let mut soak_line = String::new();
    for (i, (name, extra)) in settings.iter().enumerate() {
        let server = match Server::start(&options, extra).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        // Warm-up: first-touch allocations and page cache.
        run_level(&server.url, &bodies, 8, 64, deadline).await;
        for &c in &options.concurrency {
            let level = run_level(&server.url, &bodies, c, options.requests, deadline).await;
            eprintln!("{}", row(name, &level));
            table.push(row(name, &level));
        }
        if i == 0 && options.soak > 0 {
            let before = server.rss_mib();
            let level = run_level(&server.url, &bodies, 8, options.soak, deadline).await;
            let after = server.rss_mib();
            soak_line = format!(
                "soak: {} requests at 8 clients, {} failed, {:.1} req/s; server RSS {:.1} MiB before, {:.1} MiB after",
                level.requests,
                level.failed,
                (level.requests - level.failed) as f64 / level.seconds.max(1e-9),
                before.unwrap_or(f64::NAN),
                after.unwrap_or(f64::NAN),
            );
            eprintln!("{soak_line}");
        }
    }
    println!("{}", table.join("\n"));
    if !soak_line.is_empty() {
        println!("\n{soak_line}");
    }
    if Instant::now() > deadline {
        println!("\n(stopped at --max-seconds: fewer requests than asked)");
    }
}
