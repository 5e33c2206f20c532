//! Helpers shared by the CLI integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Reads a float32 `[n, d]` .npy file into rows.
pub fn read_rows(path: &Path) -> Vec<Vec<f32>> {
    let array: ndarray::Array2<f32> = ndarray_npy::read_npy(path).expect("read npy");
    array.outer_iter().map(|r| r.to_vec()).collect()
}

/// Cosine similarity of two equally wide vectors (the library's own metric).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    f64::from(img2prompt::prompt_fusion::cosine(a, b).expect("equally wide, finite vectors"))
}

/// Runs the `img2prompt` binary with `IMG2PROMPT_HOME=home`.
pub fn img2prompt(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_img2prompt"))
        .args(args)
        .env("IMG2PROMPT_HOME", home)
        .output()
        .expect("run img2prompt")
}

/// Runs the binary with `IMG2PROMPT_HOME=home`, asserts success and returns stdout.
pub fn img2prompt_ok(home: &Path, args: &[&str]) -> String {
    let out = img2prompt(home, args);
    assert!(
        out.status.success(),
        "img2prompt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The real all-MiniLM-L6-v2: `$IMG2PROMPT_MINILM_DIR`, else where the model cache keeps it.
pub fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("IMG2PROMPT_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| img2prompt::ModelCache::from_env().model_dir("all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 not in {}: run `img2prompt models fetch all-MiniLM-L6-v2`",
        dir.display()
    );
    dir
}

/// A cache home whose models/all-MiniLM-L6-v2 is the real checkpoint (symlinked).
pub fn home_with_minilm() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("models")).unwrap();
    std::os::unix::fs::symlink(minilm_dir(), home.path().join("models/all-MiniLM-L6-v2")).unwrap();
    home
}
