//! [`PayloadStore`]: the per-row prompt text and target vector, memory-mapped.

use std::borrow::Cow;
use std::path::Path;

use crate::error::{Error, Result};
use crate::keys::normalized_rows;
use crate::manifest::{OFFSETS_FILE, PROMPTS_FILE, TARGETS_FILE};
use crate::mapped::{MappedF32, MappedFile, MappedU64};
use crate::targets::{
    TARGET_SCALES_FILE, TARGETS_F16_FILE, TARGETS_I8_FILE, TargetEncoding, decode_row,
    decode_row_into,
};

/// Below this many rows per thread, [`PayloadStore::nearest_rows`] scans on fewer threads
/// (starting a thread costs about as much as scanning a few thousand 384-d rows).
const MIN_ROWS_PER_SCAN_THREAD: usize = 8_192;

/// The mapped target files of one encoding.
#[derive(Debug)]
enum Targets {
    F32(MappedF32),
    F16(MappedFile),
    Int8 {
        codes: MappedFile,
        scales: MappedF32,
    },
}

/// Prompt texts and target vectors of an index directory, by row, memory-mapped (nothing is
/// copied into RAM; the OS pages data in on access).
///
/// Files: `prompts.txt` holds each prompt followed by `\n` (a prompt may itself contain
/// newlines: the offsets, not the line breaks, delimit entries); `prompt_offsets.u64` holds
/// `count + 1` little-endian u64 byte offsets, entry `i` spanning `offsets[i]..offsets[i+1]`
/// (including its trailing `\n`); the targets are `count × target_dim` values, row-major, in the
/// index's [`TargetEncoding`] (`targets.f32` little-endian f32 by default).
///
/// Accessors check bounds and UTF-8 on every call and return errors instead of panicking, even
/// when a damaged directory was opened with checksum verification turned off.
#[derive(Debug)]
pub struct PayloadStore {
    prompts: MappedFile,
    offsets: MappedU64,
    targets: Targets,
    target_dim: usize,
    count: usize,
}

impl PayloadStore {
    /// Map the payload files of `dir` for `count` rows of `target_dim`-wide targets;
    /// `prompt_bytes` is the size of `prompts.txt` the manifest records.
    pub(crate) fn open(
        dir: &Path,
        count: u64,
        target_dim: usize,
        encoding: TargetEncoding,
        prompt_bytes: u64,
    ) -> Result<Self> {
        let offsets = MappedU64::open(&dir.join(OFFSETS_FILE), count.saturating_add(1))?;
        let values = count.saturating_mul(target_dim as u64);
        let targets = match encoding {
            TargetEncoding::F32 => Targets::F32(MappedF32::open(&dir.join(TARGETS_FILE), values)?),
            TargetEncoding::F16 => Targets::F16(MappedFile::open(
                &dir.join(TARGETS_F16_FILE),
                values.saturating_mul(2),
            )?),
            TargetEncoding::Int8 => Targets::Int8 {
                codes: MappedFile::open(&dir.join(TARGETS_I8_FILE), values)?,
                scales: MappedF32::open(&dir.join(TARGET_SCALES_FILE), count)?,
            },
        };
        let prompts = MappedFile::open(&dir.join(PROMPTS_FILE), prompt_bytes)?;
        let offs = offsets.as_slice();
        if offs.first() != Some(&0) || offs.last() != Some(&prompt_bytes) {
            return Err(Error::corrupt(
                offsets.path(),
                format!(
                    "offsets must start at 0 and end at the size of {PROMPTS_FILE} ({prompt_bytes})"
                ),
            ));
        }
        Ok(PayloadStore {
            prompts,
            offsets,
            targets,
            target_dim,
            count: count as usize,
        })
    }

    /// Full consistency check: offsets non-decreasing, every entry valid UTF-8 ending in `\n`.
    pub(crate) fn verify(&self) -> Result<()> {
        let offs = self.offsets.as_slice();
        if offs.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::corrupt(self.offsets.path(), "offsets decrease"));
        }
        if std::str::from_utf8(self.prompts.bytes()).is_err() {
            return Err(Error::corrupt(self.prompts.path(), "not valid UTF-8"));
        }
        for row in 0..self.count {
            self.prompt(row)?;
        }
        Ok(())
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Width of the target vectors.
    pub fn target_dim(&self) -> usize {
        self.target_dim
    }

    /// The prompt text of `row` (without its `\n` terminator).
    pub fn prompt(&self, row: usize) -> Result<&str> {
        let offs = self.offsets.as_slice();
        let (Some(&a), Some(&b)) = (offs.get(row), offs.get(row + 1)) else {
            return Err(Error::InvalidArgument(format!(
                "row {row} out of range (payload has {} rows)",
                self.count
            )));
        };
        let bytes = self.prompts.bytes();
        let entry = usize::try_from(a)
            .ok()
            .zip(usize::try_from(b).ok())
            .filter(|(a, b)| a < b && *b <= bytes.len())
            .map(|(a, b)| &bytes[a..b])
            .ok_or_else(|| {
                Error::corrupt(
                    self.offsets.path(),
                    format!("bad offsets {a}..{b} for row {row}"),
                )
            })?;
        let Some(text) = entry.strip_suffix(b"\n") else {
            return Err(Error::corrupt(
                self.prompts.path(),
                format!("entry of row {row} does not end with a newline"),
            ));
        };
        std::str::from_utf8(text).map_err(|e| {
            Error::corrupt(
                self.prompts.path(),
                format!("row {row} is not valid UTF-8: {e}"),
            )
        })
    }

    /// The target vector of `row` (`target_dim` floats): borrowed from the map for `f32`
    /// targets, decoded for compact ones.
    pub fn target(&self, row: usize) -> Result<Cow<'_, [f32]>> {
        let (codes, scale) = self.encoded_target(row)?;
        Ok(decode_row(self.encoding(), codes, scale))
    }

    /// The stored bytes of `row`'s target in the index's encoding, and its int8 scale (0 for
    /// other encodings).
    pub(crate) fn encoded_target(&self, row: usize) -> Result<(&[u8], f32)> {
        let d = self.target_dim;
        let out_of_range = || {
            Error::InvalidArgument(format!(
                "row {row} out of range (payload has {} rows)",
                self.count
            ))
        };
        if row >= self.count {
            return Err(out_of_range());
        }
        let width = self.encoding().code_bytes(d);
        let codes = self
            .code_bytes()
            .get(row * width..(row + 1) * width)
            .ok_or_else(out_of_range)?;
        let scale = match &self.targets {
            Targets::Int8 { scales, .. } => *scales.as_slice().get(row).ok_or_else(out_of_range)?,
            _ => 0.0,
        };
        Ok((codes, scale))
    }

    /// Every row's stored values, as bytes in the index's encoding.
    fn code_bytes(&self) -> &[u8] {
        match &self.targets {
            Targets::F32(m) => bytemuck::cast_slice(m.as_slice()),
            Targets::F16(m) => m.bytes(),
            Targets::Int8 { codes, .. } => codes.bytes(),
        }
    }

    /// How the targets are stored.
    pub fn encoding(&self) -> TargetEncoding {
        match self.targets {
            Targets::F32(_) => TargetEncoding::F32,
            Targets::F16(_) => TargetEncoding::F16,
            Targets::Int8 { .. } => TargetEncoding::Int8,
        }
    }

    /// For each query (rows `target_dim` wide, flat), the row whose target is most similar to
    /// it by cosine, with that cosine: an exhaustive scan of every stored target, each row
    /// compared with all queries, so the targets are read once per call whatever the number of
    /// queries. Large stores are split into contiguous row ranges scanned on up to
    /// [`std::thread::available_parallelism`] threads; ties go to the lowest row, so the answer
    /// does not depend on the split. `None` for a query when the store is empty or the query is
    /// all zeros. Compact targets are decoded a row at a time into a reused buffer (no decoded
    /// copy of the whole store).
    pub fn nearest_rows(&self, queries: &[f32]) -> Result<Vec<Option<(usize, f32)>>> {
        let d = self.target_dim;
        // Width and finiteness checked as for key queries; zero rows stay zero.
        let queries = normalized_rows(queries, d, "target query")?;
        let n_queries = queries.len() / d.max(1);
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(self.count / MIN_ROWS_PER_SCAN_THREAD)
            .max(1);
        if threads == 1 {
            return Ok(self.scan_rows(&queries, 0..self.count));
        }
        let per_thread = self.count.div_ceil(threads);
        let parts: Vec<Vec<Option<(usize, f32)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let rows = t * per_thread..((t + 1) * per_thread).min(self.count);
                    let queries = &queries;
                    scope.spawn(move || self.scan_rows(queries, rows))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        // Parts are in row order: a later part wins only with a strictly higher cosine.
        let mut best = vec![None; n_queries];
        for part in parts {
            for (slot, found) in best.iter_mut().zip(part) {
                if let Some((row, cosine)) = found
                    && slot.is_none_or(|(_, b): (usize, f32)| cosine > b)
                {
                    *slot = Some((row, cosine));
                }
            }
        }
        Ok(best)
    }

    /// [`PayloadStore::nearest_rows`] over one contiguous range of rows, on this thread;
    /// `queries` are already normalised.
    fn scan_rows(
        &self,
        queries: &[f32],
        rows: std::ops::Range<usize>,
    ) -> Vec<Option<(usize, f32)>> {
        let d = self.target_dim;
        let is_zero: Vec<bool> = queries
            .chunks_exact(d)
            .map(|q| q.iter().all(|&v| v == 0.0))
            .collect();
        let mut best: Vec<Option<(usize, f32)>> = vec![None; is_zero.len()];
        let encoding = self.encoding();
        let width = encoding.code_bytes(d).max(1);
        let scales = match &self.targets {
            Targets::Int8 { scales, .. } => Some(scales.as_slice()),
            _ => None,
        };
        let bytes = self.code_bytes();
        let end = (rows.end * width).min(bytes.len());
        let codes = &bytes[(rows.start * width).min(end)..end];
        let mut buffer = vec![0.0f32; d];
        for (row, codes) in (rows.start..).zip(codes.chunks_exact(width)) {
            let scale = scales.and_then(|s| s.get(row)).copied().unwrap_or(0.0);
            let target = decode_row_into(encoding, codes, scale, &mut buffer);
            let target_norm = norm(target);
            if target_norm == 0.0 {
                continue;
            }
            for ((query, &zero), slot) in queries.chunks_exact(d).zip(&is_zero).zip(&mut best) {
                if zero {
                    continue;
                }
                let cosine = dot(query, target) / target_norm;
                if slot.is_none_or(|(_, b)| cosine > b) {
                    *slot = Some((row, cosine));
                }
            }
        }
        best
    }

    /// All target vectors, row-major (`len() × target_dim()` floats): still memory-mapped for
    /// `f32` targets, decoded into memory for compact ones.
    pub fn targets(&self) -> Cow<'_, [f32]> {
        let scales = match &self.targets {
            Targets::F32(m) => return Cow::Borrowed(m.as_slice()),
            Targets::F16(_) => None,
            Targets::Int8 { scales, .. } => Some(scales.as_slice()),
        };
        let encoding = self.encoding();
        let width = encoding.code_bytes(self.target_dim).max(1);
        let mut out = Vec::with_capacity(self.count * self.target_dim);
        for (row, codes) in self.code_bytes().chunks_exact(width).enumerate() {
            let scale = scales.and_then(|s| s.get(row)).copied().unwrap_or(0.0);
            out.extend_from_slice(&decode_row(encoding, codes, scale));
        }
        Cow::Owned(out)
    }
}

/// Dot product of two equally long vectors (8 partial sums, so that it vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a_blocks, b_blocks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_blocks.zip(b_blocks) {
        for ((sum, x), y) in acc.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Euclidean length.
fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}
