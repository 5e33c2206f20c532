//! What `ModelId::of_dir` costs on a checkpoint the size of
//! CLIP ViT-L/14 (1.7 GB of weights): the whole file is hashed, so a change to any tensor of
//! either tower changes the identity. Writes a file of that size (pseudo-random bytes) to a
//! temp dir, times the fingerprint with the file in the page cache, and after asking the kernel
//! to drop it (`posix_fadvise(DONTNEED)`: the cold case, bounded by the disk).
//!
//! ```sh
//! cargo test --release --workspace --no-run     # builds this example with the workspace
//! $CARGO_TARGET_DIR/release/examples/fingerprint_cost [SIZE_MB (1710)] [DIR (temp dir)]
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use img2prompt::{Error, ModelId, Result};

/// What to measure.
struct FingerprintOptions {
    /// Size of the weight file, in MB (10^6 bytes).
    size_mb: u64,
    /// Directory for the temporary checkpoint (default: the system temp dir).
    dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let size_mb = match args.next().map(|s| s.parse::<u64>()) {
        None => 1710,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: fingerprint_cost [SIZE_MB (1710)] [DIR]");
            return std::process::ExitCode::from(2);
        }
    };
    let opts = FingerprintOptions {
        size_mb,
        dir: args.next().map(PathBuf::from),
    };
    match run(&opts) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(opts: &FingerprintOptions) -> Result<()> {
    let parent = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&parent).map_err(|e| Error::io(&parent, e))?;
    let dir = tmp.path();
    std::fs::write(dir.join("config.json"), b"{\"model_type\": \"clip\"}")
        .map_err(|e| Error::io(dir, e))?;
    let weights = dir.join("model.safetensors");
    let bytes = opts.size_mb * 1_000_000;
    {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&weights).map_err(|e| Error::io(&weights, e))?,
        );
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut block = vec![0u8; 1 << 20];
        let mut written = 0u64;
        while written < bytes {
            for chunk in block.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes());
            }
            let n = (bytes - written).min(block.len() as u64) as usize;
            f.write_all(&block[..n])
                .map_err(|e| Error::io(&weights, e))?;
            written += n as u64;
        }
        f.flush().map_err(|e| Error::io(&weights, e))?;
        f.get_ref().sync_all().map_err(|e| Error::io(&weights, e))?;
    }
    let time = || -> Result<f64> {
        let start = Instant::now();
        ModelId::of_dir(dir)?;
        Ok(start.elapsed().as_secs_f64())
    };
    time()?; // into the page cache
    let warm: Vec<f64> = (0..3).map(|_| time()).collect::<Result<_>>()?;
    let warm = warm.iter().copied().fold(f64::INFINITY, f64::min);
    drop_cache(&weights)?;
    let cold = time()?;
    let gb = bytes as f64 / 1e9;
    println!(
        "fingerprint of a {gb:.2} GB checkpoint: warm {warm:.3} s ({:.1} GB/s), cold {cold:.3} s \
         ({:.2} GB/s)",
        gb / warm,
        gb / cold
    );
    Ok(())
}

/// Asks the kernel to drop `path` from the page cache.
fn drop_cache(path: &std::path::Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: a valid open descriptor; the call only affects caching.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(Error::io(path, std::io::Error::from_raw_os_error(rc)));
    }
    Ok(())
}
