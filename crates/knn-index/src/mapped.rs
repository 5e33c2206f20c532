//! Read-only memory-mapped files viewed as typed little-endian slices.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::sys;

#[cfg(target_endian = "big")]
compile_error!(
    "knn-index stores little-endian f32/u64 files and maps them as-is: little-endian targets only"
);

/// A whole file mapped read-only.
#[derive(Debug)]
pub(crate) struct MappedFile {
    path: PathBuf,
    map: Option<Mmap>,
}

impl MappedFile {
    /// Map `path`; its size must be `expected` bytes.
    pub(crate) fn open(path: &Path, expected: u64) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len != expected {
            return Err(Error::Size {
                path: path.to_path_buf(),
                expected,
                found: len,
            });
        }
        let map = if len == 0 {
            None
        } else {
            Some(sys::map_file(&file).map_err(|e| Error::io(path, e))?)
        };
        Ok(MappedFile {
            path: path.to_path_buf(),
            map,
        })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn typed<T: bytemuck::Pod>(&self) -> Result<&[T]> {
        bytemuck::try_cast_slice(self.bytes())
            .map_err(|e| Error::corrupt(&self.path, format!("cannot view as array: {e}")))
    }
}

/// A mapped file of little-endian u64.
#[derive(Debug)]
pub(crate) struct MappedU64(MappedFile);

impl MappedU64 {
    /// Map `path` holding exactly `count` u64 values.
    pub(crate) fn open(path: &Path, count: u64) -> Result<Self> {
        let f = MappedFile::open(path, count.saturating_mul(8))?;
        f.typed::<u64>()?;
        Ok(MappedU64(f))
    }

    /// The values (checked castable at open; page-aligned maps never fail afterwards).
    pub(crate) fn as_slice(&self) -> &[u64] {
        self.0.typed::<u64>().unwrap_or(&[])
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A mapped file of little-endian f32.
#[derive(Debug)]
pub(crate) struct MappedF32(MappedFile);

impl MappedF32 {
    /// Map `path` holding exactly `count` f32 values.
    pub(crate) fn open(path: &Path, count: u64) -> Result<Self> {
        let f = MappedFile::open(path, count.saturating_mul(4))?;
        f.typed::<f32>()?;
        Ok(MappedF32(f))
    }

    /// The values.
    pub(crate) fn as_slice(&self) -> &[f32] {
        self.0.typed::<f32>().unwrap_or(&[])
    }
}
