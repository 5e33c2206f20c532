//! The only module with `unsafe` code: the const (shared-reference) FAISS search entry points,
//! memory maps, and the atomic directory exchange.
//!
//! # Why FAISS search through a shared reference is sound
//!
//! FAISS documents (wiki, "Threads and asynchronous calls") that CPU indexes are thread-safe for
//! concurrent searches and for any other operation that does not change the index; operations
//! that change it (add, train, setting parameters) need mutual exclusion. The C API's
//! `faiss_Index_search` takes a `const FaissIndex*` for that reason. The `faiss` crate only
//! implements its `&self` search for a few concrete index types, not for the generic
//! `IndexImpl` made by `index_factory`, so this module calls the C function directly.
//! [`crate::KeyIndex`] keeps the index in an `RwLock`: searches take the read lock, anything
//! that mutates (including `ParameterSpace` knob changes) takes the write lock.
//!
//! Errors raised by FAISS are C++ exceptions caught by the C API and turned into a non-zero
//! return code; the message is read from `faiss_get_last_error`, which is thread-local.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::fs::File;
use std::path::Path;

use faiss::index::IndexImpl;
use faiss::search_params::SearchParametersIVF;
use faiss_sys::idx_t;

use crate::error::{Error, Result};

fn last_error(code: std::os::raw::c_int) -> Error {
    // SAFETY: faiss_get_last_error returns either null or a pointer to a NUL-terminated string
    // owned by FAISS's thread-local last-exception slot, valid until the next FAISS call on this
    // thread; we copy it out immediately.
    let msg = unsafe {
        let p = faiss_sys::faiss_get_last_error();
        if p.is_null() {
            format!("error code {code}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Error::Faiss(msg)
}

/// Raw top-k search through a shared reference.
///
/// `queries` holds `nq` rows of the index's dimension. Returns `(distances, labels)`, each of
/// length `nq * k`, labels `-1` where FAISS found fewer than `k` results. When `nprobe` is given
/// the index must be a top-level `IndexIVF` (checked with [`is_ivf`] by the caller); the value is
/// passed as per-call `SearchParametersIVF`, which does not modify the index.
pub(crate) fn search(
    index: &IndexImpl,
    queries: &[f32],
    nq: usize,
    k: usize,
    nprobe: Option<usize>,
) -> Result<(Vec<f32>, Vec<idx_t>)> {
    let d = faiss::Index::d(index) as usize;
    if queries.len() != nq * d {
        return Err(Error::Dimension {
            what: "query batch",
            expected: nq * d,
            found: queries.len(),
        });
    }
    if k == 0 || nq == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let total = nq
        .checked_mul(k)
        .ok_or_else(|| Error::InvalidArgument(format!("nq {nq} * k {k} overflows")))?;
    let (nq_i, k_i) = match (idx_t::try_from(nq), idx_t::try_from(k)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(Error::InvalidArgument("nq or k too large".into())),
    };
    let mut distances = vec![0f32; total];
    let mut labels: Vec<idx_t> = vec![-1; total];
    let code = match nprobe {
        None => {
            // SAFETY: the pointer comes from a live IndexImpl borrowed for the whole call; the
            // input holds nq*d floats (checked above) and both outputs nq*k elements. The call
            // does not mutate the index (const in the C API, see module docs).
            unsafe {
                faiss_sys::faiss_Index_search(
                    index.inner_ptr(),
                    nq_i,
                    queries.as_ptr(),
                    k_i,
                    distances.as_mut_ptr(),
                    labels.as_mut_ptr(),
                )
            }
        }
        Some(nprobe) => {
            let mut params = SearchParametersIVF::new()?;
            params.set_nprobe(nprobe.max(1));
            // SAFETY: as above; `params` is a live SearchParametersIVF for the whole call.
            unsafe {
                faiss_sys::faiss_Index_search_with_params(
                    index.inner_ptr(),
                    nq_i,
                    queries.as_ptr(),
                    k_i,
                    params.inner_ptr(),
                    distances.as_mut_ptr(),
                    labels.as_mut_ptr(),
                )
            }
        }
    };
    if code != 0 {
        return Err(last_error(code));
    }
    Ok((distances, labels))
}

/// Whether the top-level index is an `IndexIVF` (so `nprobe` can be passed per call).
pub(crate) fn is_ivf(index: &IndexImpl) -> bool {
    // SAFETY: faiss_IndexIVF_cast is a dynamic_cast on a live index pointer; it returns null when
    // the index is not an IndexIVF and never takes ownership.
    unsafe { !faiss_sys::faiss_IndexIVF_cast(index.inner_ptr()).is_null() }
}

/// FAISS's `IO_FLAG_MMAP` (index_io.h): read an IVF index's array inverted lists as
/// `OnDiskInvertedLists` mapped from the file itself, instead of copying them into RAM. (The C
/// API's `FAISS_IO_FLAG_MMAP` constant is stale, and the `faiss` crate's flags are 16 bits.)
const IO_FLAG_MMAP: std::os::raw::c_int = 0x646f_0000 | 8;

/// Read a FAISS index file; with `map_inverted_lists` an IVF index's inverted lists stay on disk,
/// memory-mapped read-only (the index cannot be added to afterwards).
pub(crate) fn read_index(path: &str, map_inverted_lists: bool) -> Result<IndexImpl> {
    use faiss::index::FromInnerPtr;
    let c = std::ffi::CString::new(path)
        .map_err(|_| Error::InvalidArgument(format!("{path}: path contains a NUL byte")))?;
    let flags = if map_inverted_lists { IO_FLAG_MMAP } else { 0 };
    let mut inner = std::ptr::null_mut();
    // SAFETY: `c` is a valid NUL-terminated path for the whole call; on success FAISS hands us
    // ownership of a freshly allocated index, which `IndexImpl` frees on drop.
    let rc = unsafe { faiss_sys::faiss_read_index_fname(c.as_ptr(), flags, &mut inner) };
    if rc != 0 || inner.is_null() {
        return Err(last_error(rc));
    }
    // SAFETY: `inner` is a valid CPU index owned by nobody else.
    Ok(unsafe { IndexImpl::from_inner_ptr(inner) })
}

/// Memory-map a whole file read-only.
///
/// The index directory's files are never modified in place by this crate (they are written to a
/// staging directory and renamed), so the usual hazard of a mapped file changing under us only
/// arises if another program edits them; [`crate::PromptIndex`] documents this.
pub(crate) fn map_file(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: read-only private mapping of a file we opened; see the doc comment for the
    // external-modification caveat.
    unsafe { memmap2::Mmap::map(file) }
}

/// Atomically swap two directory entries (Linux `renameat2(RENAME_EXCHANGE)`).
///
/// Returns `Ok(false)` when the platform or the file system does not support the exchange, so
/// the caller can fall back to two renames.
#[cfg(target_os = "linux")]
pub(crate) fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let to_c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (ca, cb) = (to_c(a)?, to_c(b)?);
    // SAFETY: both arguments are valid NUL-terminated paths that live for the whole call;
    // AT_FDCWD makes them relative to the working directory like rename(2).
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(err),
    }
}

/// Atomically swap two directory entries: not available on this platform.
#[cfg(not(target_os = "linux"))]
pub(crate) fn exchange(_a: &Path, _b: &Path) -> std::io::Result<bool> {
    Ok(false)
}
