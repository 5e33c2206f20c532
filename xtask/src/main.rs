//! Project automation. Rust tasks are sub-commands of this binary (`cargo xtask <task>`, see
//! `.cargo/config.toml`); the reference-fixture generators are Python scripts under
//! `xtask/fixtures/` (run by hand with the reference stack, never by CI) and the Python
//! benchmark counterparts are under `xtask/bench/`; `cargo xtask` with no task lists them.

mod checkpoint;
mod fixtures;
mod plot;
mod train_world_clip;
mod world_renders;

use clap::{Parser, Subcommand};

/// What `cargo xtask` with no task prints after the usage.
const SCRIPTS: &str = "\
Fixture generators (run by hand, see each header for the exact command):
  xtask/fixtures/minilm.py      sentence-transformers all-MiniLM-L6-v2 parity fixtures
  xtask/fixtures/clip.py        HF transformers CLIP parity fixtures
  xtask/fixtures/world_clip.py  HF transformers parity fixture of the shipped world CLIP
  xtask/fixtures/captioner.py   PyTorch parity fixture of image-captioner (a tiny random model)
Training the shipped world captioner (PyTorch; needs `cargo xtask world-renders` first):
  xtask/captioner/train_world.py
Python benchmark counterparts:
  xtask/bench/minilm_python.py, xtask/bench/knn_faiss_python.py";

/// img2prompt project automation.
#[derive(Parser, Debug)]
#[command(name = "xtask", after_help = SCRIPTS)]
struct Cli {
    #[command(subcommand)]
    task: Option<Task>,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Train the small CLIP of the procedural world and write it as an HF checkpoint.
    TrainWorldClip(train_world_clip::TrainOptions),
    /// Render the world-CLIP parity inputs (PNGs + prompts) for xtask/fixtures/world_clip.py.
    WorldClipFixtures(fixtures::FixtureOptions),
    /// Render the world captioner's training and evaluation images as raw RGB
    /// (for xtask/captioner/train_world.py).
    WorldRenders(world_renders::RenderOptions),
}

fn main() {
    let cli = Cli::parse();
    let command_line = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let result = match &cli.task {
        None => {
            println!("img2prompt xtask: `cargo xtask --help` lists the tasks.\n{SCRIPTS}");
            Ok(())
        }
        Some(Task::TrainWorldClip(opts)) => train_world_clip::run(opts, &command_line),
        Some(Task::WorldClipFixtures(opts)) => fixtures::run(opts),
        Some(Task::WorldRenders(opts)) => world_renders::run(opts),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}
