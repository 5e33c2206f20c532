//! Writing outputs atomically: a temp file in the destination directory, synced and renamed
//! into place only when complete, so a failed command leaves no partial file (and an existing
//! file untouched). Embeddings go out as `.npy` (float32, `[n, d]`, C order).

use std::io::{BufWriter, Write};
use std::path::Path;

use img2prompt::{Error, Result};
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;

/// Writes the file `path` through `write`, atomically, readable by all (`0644`, umask
/// permitting).
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".img2prompt-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let tmp = builder
        .tempfile_in(parent)
        .map_err(|e| Error::io(path, e))?;
    {
        let mut writer = BufWriter::new(tmp.as_file());
        write(&mut writer).map_err(|e| Error::io(path, e))?;
        writer.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `rows × dim` row-major `data` to `path` as a float32 `.npy` file, atomically.
pub fn write_npy_atomic(path: &Path, data: Vec<f32>, rows: usize, dim: usize) -> Result<()> {
    let array = Array2::from_shape_vec((rows, dim), data).map_err(|e| Error::Input {
        path: path.to_owned(),
        line: None,
        message: format!("embedding buffer does not have shape [{rows}, {dim}]: {e}"),
    })?;
    write_atomic(path, |w| {
        array
            .write_npy(w)
            .map_err(|e| std::io::Error::other(format!("cannot write .npy: {e}")))
    })
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json_atomic(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::Backend(e.to_string()))?;
    write_atomic(path, |w| w.write_all(&json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_npy::read_npy;

    #[test]
    fn round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        write_npy_atomic(&path, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
        let back: Array2<f32> = read_npy(&path).unwrap();
        assert_eq!(back.shape(), &[2, 3]);
        assert_eq!(back[[1, 2]], 6.0);
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "temp file left behind");
    }

    #[test]
    fn shape_mismatch_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        assert!(write_npy_atomic(&path, vec![1.0; 5], 2, 3).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_file() {
        let err = write_npy_atomic(Path::new("/no/such/dir/out.npy"), vec![0.0; 2], 1, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/dir/out.npy"), "{err}");
    }
}
