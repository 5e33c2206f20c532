//! Project automation. The reference-fixture generators are Python scripts under
//! `xtask/fixtures/` (run by hand with the reference stack, never by CI) and the Python
//! benchmark counterparts are under `xtask/bench/`; this binary lists them. Rust-side tasks
//! (e.g. `train-world-clip`) will be added here as sub-commands.

fn main() {
    println!("img2prompt xtask: no Rust tasks yet.");
    println!("Fixture generators (run by hand, see each header for the exact command):");
    println!("  xtask/fixtures/minilm.py   sentence-transformers all-MiniLM-L6-v2 parity fixtures");
    println!("  xtask/fixtures/clip.py     HF transformers CLIP parity fixtures");
    println!("Python benchmark counterparts:");
    println!("  xtask/bench/minilm_python.py, xtask/bench/knn_faiss_python.py");
}
