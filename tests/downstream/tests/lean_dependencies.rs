//! What an app gets when it adds the library as the README says: `img2prompt` with
//! `default-features = false` and one CPU backend. None of the application's crates (command
//! line, corpus formats, downloads, rendering, serving) may come with it, and the whole tree
//! stays small.
//!
//! Two trees, both `cargo tree -e normal` (build scripts' dependencies left out), each
//! `name version` once: the host's (what an app on this platform compiles) must hold none of
//! the application crates; every platform's (`--target all`, the larger count, how the 335 of
//! the issue was counted) must stay within [`MAX_CRATES`]. (On wasm32 only, burn's
//! cubecl-environment brings tokio through wasm-bindgen-futures: nothing of ours.)

use std::collections::BTreeSet;
use std::process::Command;

/// Crates of the CLI, the world and the service that the library must not pull in.
const FORBIDDEN: [&str; 11] = [
    "clap",
    "parquet",
    "csv",
    "zip",
    "indicatif",
    "tiny-skia",
    "font8x8",
    "hf-hub",
    "tokio",
    "ureq",
    "axum",
];

/// The most crates the lean tree may hold (the library with every feature held 331 by the same
/// count before the split).
const MAX_CRATES: usize = 280;

/// `name version` of every package in the lean tree, for the host or for every target.
fn lean_tree(all_targets: bool) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut args = vec![
        "tree",
        "-p",
        "img2prompt-downstream",
        "-e",
        "normal",
        "--prefix",
        "none",
    ];
    if all_targets {
        args.extend(["--target", "all"]);
    }
    let out = Command::new(cargo)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(format!("{} {}", words.next()?, words.next()?))
        })
        .collect()
}

#[test]
fn the_lean_library_pulls_in_no_application_crate_and_stays_small() {
    let tree = lean_tree(false);
    assert!(
        tree.iter().any(|p| p.starts_with("img2prompt ")),
        "the tree holds the library: {tree:?}"
    );
    assert!(
        tree.iter().any(|p| p.starts_with("burn-flex ")),
        "the tree holds the flex backend"
    );
    let found: Vec<&String> = tree
        .iter()
        .filter(|p| FORBIDDEN.iter().any(|f| p.split(' ').next() == Some(*f)))
        .collect();
    assert!(
        found.is_empty(),
        "application crates in the lean tree: {found:?}"
    );
    for heavy in ["burn-autodiff", "burn-optim", "burn-wgpu", "burn-ndarray"] {
        assert!(
            !tree.iter().any(|p| p.split(' ').next() == Some(heavy)),
            "{heavy} in the lean tree"
        );
    }
    let everywhere = lean_tree(true);
    assert!(everywhere.len() >= tree.len());
    assert!(
        everywhere.len() <= MAX_CRATES,
        "{} crates in the lean tree (every target), more than {MAX_CRATES}",
        everywhere.len()
    );
}

#[test]
fn the_readme_library_example_is_this_crate() {
    // The README shows src/main.rs verbatim, so the example users copy is the one CI compiles
    // against the lean features (`cargo check -p img2prompt-downstream`).
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let example = include_str!("../src/main.rs");
    assert!(
        readme.contains(example),
        "README.md does not hold tests/downstream/src/main.rs verbatim"
    );
}
