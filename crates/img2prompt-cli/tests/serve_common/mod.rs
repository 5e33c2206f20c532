//! Helpers shared by the `serve` tests: a small index built once per test binary, and the real
//! `img2prompt serve` process on a loopback port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common;

/// The committed random CLIP (clip-encoder's fixture `clip_a`) and its test images.
pub fn clip_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip-encoder/tests/fixtures/clip")
}

/// The small CLIP checkpoint the index is built with.
pub fn clip_dir() -> PathBuf {
    clip_fixtures().join("clip_a")
}

/// Photos of mixed sizes and modes (the clip-encoder fixtures).
pub fn images() -> Vec<PathBuf> {
    [
        "chelsea.png",
        "astronaut_224.png",
        "coffee_112.png",
        "rocket_tiny.png",
    ]
    .iter()
    .map(|n| clip_fixtures().join("images").join(n))
    .collect()
}

/// A path as a `&str` argument.
pub fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// 12 subjects x 10 styles = 120 prompts.
fn corpus() -> String {
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
        "charcoal drawing",
    ];
    subjects
        .iter()
        .flat_map(|s| styles.iter().map(move |st| format!("{s}, {st}")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A model-cache home with the real all-MiniLM-L6-v2, kept for the test binary's life.
pub fn home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(common::home_with_minilm).path()
}

/// An index of 120 prompts (clip_a keys, MiniLM targets) with a trained head, built once per
/// test binary under `name` in the target's temp dir.
pub fn small_index(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let corpus_file = dir.join("corpus.txt");
            std::fs::write(&corpus_file, corpus()).unwrap();
            let index = dir.join("index");
            common::img2prompt_ok(
                home(),
                &[
                    "index",
                    "build",
                    "--clip",
                    &s(&clip_dir()),
                    "--sentence",
                    &s(&common::minilm_dir()),
                    "--prompts",
                    &s(&corpus_file),
                    "--out",
                    &s(&index),
                    "--overwrite",
                ],
            );
            common::img2prompt_ok(
                home(),
                &["head", "train", "--index", &s(&index), "--epochs", "3"],
            );
            index
        })
        .clone()
}

/// A running `img2prompt serve`, killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    /// Starts `img2prompt serve --index INDEX --addr 127.0.0.1:0 EXTRA...`, waits for its
    /// address line and then for `/readyz` (models loaded).
    pub async fn start(index: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_img2prompt"))
            .args(["serve", "--index", &s(index), "--addr", "127.0.0.1:0"])
            .args(["--clip", &s(&clip_dir())])
            .args(["--sentence", &s(&common::minilm_dir())])
            .args(extra)
            .env("IMG2PROMPT_HOME", home())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start img2prompt serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text += &line;
                text.push('\n');
            }
            text
        });
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let server = Server {
            child,
            url,
            stderr: Some(stderr),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "server not ready in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `GET path`, its body as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.at(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `limit`) and returns its status and stderr.
    pub fn wait_exit(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
                return (status, stderr);
            }
            assert!(start.elapsed() < limit, "server did not exit in {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
