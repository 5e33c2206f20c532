//! The on-disk layout of a FAISS IVF index file, for merging shards' inverted lists without
//! loading them: what FAISS's own `merge_ondisk` does, streamed from memory maps.
//!
//! `faiss::write_index` writes an IVF index (`IVF…,Flat`, `IVF…,PQ…` at the top level) as a
//! header (the index header with `ntotal` at bytes 8..16, the coarse quantizer, the PQ
//! codebooks...) followed, last, by its array inverted lists:
//!
//! | field | bytes |
//! | --- | --- |
//! | `"ilar"` | 4 |
//! | `nlist`, `code_size` | 8 + 8 |
//! | `"full"` + `nlist` sizes, or `"sprs"` + (list, size) pairs | 4 + 8 + 8 × len |
//! | per non-empty list: its codes (`size × code_size`), then its labels (`size` × i64) | ... |
//!
//! Shards that added keys to the same trained index have byte-identical headers except
//! `ntotal`: [`merge_ivf_files`] checks that, concatenates each list across shards, rewrites the
//! labels (shard rows) as merged rows, and writes one file in the same layout, which FAISS
//! reads back either into RAM or with its inverted lists memory-mapped (`IO_FLAG_MMAP`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

const ILAR: &[u8; 4] = b"ilar";
const FULL: &[u8; 4] = b"full";
const SPRS: &[u8; 4] = b"sprs";
/// Byte range of the top-level index's `ntotal` (after the 4-byte fourcc and the i32 `d`).
const NTOTAL: std::ops::Range<usize> = 8..16;
/// Top-level IVF index types whose inverted lists come last in the file.
const IVF_FOURCCS: [&[u8; 4]; 6] = [b"IwPQ", b"IvPQ", b"IwFl", b"IvFl", b"IwSQ", b"IvSQ"];

/// A parsed IVF index file, memory-mapped.
pub(crate) struct IvfFile {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Bytes before `"ilar"`.
    header_len: usize,
    code_size: usize,
    sizes: Vec<u64>,
    /// Where each list's codes start (its labels follow them).
    offsets: Vec<usize>,
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at.checked_add(8)?)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

impl IvfFile {
    /// Maps and parses `path`, an IVF index with `nlist` lists.
    pub(crate) fn open(path: &Path, nlist: usize) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let map = sys::map_file(&file).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::corrupt(path, reason);
        match map.get(0..4) {
            Some(fourcc) if IVF_FOURCCS.iter().any(|f| f.as_slice() == fourcc) => {}
            _ => {
                return Err(bad(
                    "not a top-level IVF index (Flat, PQ or SQ codes): its inverted lists cannot be merged on disk".into(),
                ));
            }
        }
        // The lists' section is the last one; its start is the first "ilar" from which the
        // rest of the file parses exactly (the header's floats could contain those bytes).
        let mut from = 0;
        while let Some(at) = find(&map[from..], ILAR).map(|i| i + from) {
            if let Some((code_size, sizes, data)) = parse_lists(&map, at, nlist) {
                let mut offsets = Vec::with_capacity(nlist);
                let mut o = data;
                for &s in &sizes {
                    offsets.push(o);
                    o += s as usize * (code_size + 8);
                }
                let me = IvfFile {
                    path: path.to_path_buf(),
                    map,
                    header_len: at,
                    code_size,
                    sizes,
                    offsets,
                };
                let ntotal = read_u64(&me.map, NTOTAL.start).unwrap_or(u64::MAX);
                if ntotal != me.len() {
                    return Err(bad(format!(
                        "header says {ntotal} keys, inverted lists hold {}",
                        me.len()
                    )));
                }
                return Ok(me);
            }
            from = at + 1;
        }
        Err(bad(format!(
            "no inverted lists of {nlist} lists found that end the file"
        )))
    }

    /// Keys in the lists.
    pub(crate) fn len(&self) -> u64 {
        self.sizes.iter().sum()
    }

    fn header(&self) -> &[u8] {
        &self.map[..self.header_len]
    }

    fn codes(&self, list: usize) -> &[u8] {
        let o = self.offsets[list];
        &self.map[o..o + self.sizes[list] as usize * self.code_size]
    }

    fn labels(&self, list: usize) -> impl Iterator<Item = u64> + '_ {
        let o = self.offsets[list] + self.sizes[list] as usize * self.code_size;
        self.map[o..o + self.sizes[list] as usize * 8]
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0xff; 8])))
    }
}

/// Parses the lists' section at `at`; `Some((code_size, sizes, data start))` when it is a
/// well-formed section of `nlist` lists that ends exactly at the end of `bytes`.
fn parse_lists(bytes: &[u8], at: usize, nlist: usize) -> Option<(usize, Vec<u64>, usize)> {
    let mut p = at + 4;
    let n = read_u64(bytes, p)?;
    let code_size = read_u64(bytes, p + 8)?;
    p += 16;
    if n != nlist as u64 || code_size == 0 || code_size > 1 << 20 {
        return None;
    }
    let kind = bytes.get(p..p + 4)?;
    p += 4;
    let len = usize::try_from(read_u64(bytes, p)?).ok()?;
    p += 8;
    let mut sizes = vec![0u64; nlist];
    if kind == FULL {
        if len != nlist {
            return None;
        }
        for s in sizes.iter_mut() {
            *s = read_u64(bytes, p)?;
            p += 8;
        }
    } else if kind == SPRS {
        if len % 2 != 0 || len > 2 * nlist {
            return None;
        }
        for _ in 0..len / 2 {
            let list = usize::try_from(read_u64(bytes, p)?).ok()?;
            let size = read_u64(bytes, p + 8)?;
            p += 16;
            *sizes.get_mut(list)? = size;
        }
    } else {
        return None;
    }
    let per_key = code_size.checked_add(8)?;
    let mut data = 0u64;
    for &s in &sizes {
        data = data.checked_add(s.checked_mul(per_key)?)?;
    }
    let end = (p as u64).checked_add(data)?;
    (end == bytes.len() as u64).then_some((code_size as usize, sizes, p))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes to `out` the IVF index holding every shard's keys: the shared header with `ntotal`
/// the sum, each list the concatenation of the shards' lists, and each label `row` of shard
/// `s` rewritten as `merged_row(s, row)`. Streams from the shards' memory maps: memory stays
/// bounded whatever the size.
///
/// # Errors
/// Shards whose headers differ beyond `ntotal` (another trained quantizer), a label beyond a
/// shard's rows, or I/O errors; each names the file.
pub(crate) fn merge_ivf_files(
    shards: &[IvfFile],
    out: &Path,
    merged_row: impl Fn(usize, u64) -> Option<u64>,
) -> Result<()> {
    let Some(first) = shards.first() else {
        return Err(Error::InvalidArgument("no shards to merge".into()));
    };
    let mut header = first.header().to_vec();
    for s in &shards[1..] {
        let h = s.header();
        let same = h.len() == header.len()
            && h[..NTOTAL.start] == header[..NTOTAL.start]
            && h[NTOTAL.end..] == header[NTOTAL.end..];
        if !same || s.code_size != first.code_size || s.sizes.len() != first.sizes.len() {
            return Err(Error::Merge(format!(
                "{} and {} were not added to the same trained quantizer (their FAISS headers differ)",
                first.path.display(),
                s.path.display()
            )));
        }
    }
    let total: u64 = shards.iter().map(IvfFile::len).sum();
    header[NTOTAL].copy_from_slice(&total.to_le_bytes());
    let nlist = first.sizes.len();

    let file = File::create(out).map_err(|e| Error::io(out, e))?;
    let mut w = BufWriter::with_capacity(8 << 20, file);
    let io = |e| Error::io(out, e);
    w.write_all(&header).map_err(io)?;
    w.write_all(ILAR).map_err(io)?;
    w.write_all(&(nlist as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&(first.code_size as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(FULL).map_err(io)?;
    w.write_all(&(nlist as u64).to_le_bytes()).map_err(io)?;
    for list in 0..nlist {
        let size: u64 = shards.iter().map(|s| s.sizes[list]).sum();
        w.write_all(&size.to_le_bytes()).map_err(io)?;
    }
    for list in 0..nlist {
        for s in shards {
            w.write_all(s.codes(list)).map_err(io)?;
        }
        for (i, s) in shards.iter().enumerate() {
            for row in s.labels(list) {
                let merged = merged_row(i, row).ok_or_else(|| {
                    Error::corrupt(&s.path, format!("label {row} in list {list} is no row"))
                })?;
                w.write_all(&merged.to_le_bytes()).map_err(io)?;
            }
        }
    }
    let file = w.into_inner().map_err(|e| Error::io(out, e.into_error()))?;
    file.sync_all().map_err(io)
}
