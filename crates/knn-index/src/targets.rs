//! [`TargetEncoding`]: how an index directory stores its target vectors (the 384-d payload that
//! online fusion averages), and the conversions between encodings.
//!
//! | encoding | files | bytes per row (d = 384) | error per element |
//! | --- | --- | --- | --- |
//! | `f32` | `targets.f32` | 4·d = 1 536 | none |
//! | `f16` | `targets.f16` (IEEE half) | 2·d = 768 | relative ≤ 2⁻¹¹ (normal range) |
//! | `int8` | `targets.i8` + `target_scales.f32` | d + 4 = 388 | ≤ max\|row\| / 254 |
//!
//! `int8` is symmetric per row: `q = round(x / s)` with `s = max|row| / 127`, decoded `q · s`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Half-precision targets.
pub const TARGETS_F16_FILE: &str = "targets.f16";
/// Int8 targets, `count × target_dim` signed bytes.
pub const TARGETS_I8_FILE: &str = "targets.i8";
/// Per-row scales of int8 targets, `count` little-endian f32.
pub const TARGET_SCALES_FILE: &str = "target_scales.f32";

/// How target vectors are stored. See the [module documentation](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetEncoding {
    /// 32-bit floats, exact (the default).
    #[default]
    F32,
    /// 16-bit IEEE floats: half the bytes.
    F16,
    /// 8-bit integers with one f32 scale per row: about a quarter of the bytes.
    Int8,
}

impl TargetEncoding {
    /// Whether this is [`TargetEncoding::F32`] (for serde's `skip_serializing_if`).
    pub fn is_f32(&self) -> bool {
        *self == TargetEncoding::F32
    }

    /// The files holding the targets in this encoding.
    pub fn files(&self) -> &'static [&'static str] {
        match self {
            TargetEncoding::F32 => &[crate::manifest::TARGETS_FILE],
            TargetEncoding::F16 => &[TARGETS_F16_FILE],
            TargetEncoding::Int8 => &[TARGETS_I8_FILE, TARGET_SCALES_FILE],
        }
    }

    /// Bytes one row of `dim` targets takes, over all of the encoding's files.
    pub fn row_bytes(&self, dim: usize) -> usize {
        match self {
            TargetEncoding::Int8 => self.code_bytes(dim) + 4,
            _ => self.code_bytes(dim),
        }
    }

    /// Bytes of one row's values (without an int8 row's scale).
    pub(crate) fn code_bytes(&self, dim: usize) -> usize {
        match self {
            TargetEncoding::F32 => 4 * dim,
            TargetEncoding::F16 => 2 * dim,
            TargetEncoding::Int8 => dim,
        }
    }

    /// Appends the encoding of `row` to `out` (for int8, its codes to `out` and its scale to
    /// `scales`). Rows must be finite.
    pub(crate) fn encode_row(&self, row: &[f32], out: &mut Vec<u8>, scales: &mut Vec<u8>) {
        match self {
            TargetEncoding::F32 => out.extend_from_slice(bytemuck::cast_slice(row)),
            TargetEncoding::F16 => {
                for &x in row {
                    out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
                }
            }
            TargetEncoding::Int8 => {
                let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
                for &x in row {
                    let q = if scale > 0.0 {
                        (x / scale).round().clamp(-127.0, 127.0) as i8
                    } else {
                        0
                    };
                    out.push(q as u8);
                }
                scales.extend_from_slice(&scale.to_le_bytes());
            }
        }
    }
}

impl fmt::Display for TargetEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetEncoding::F32 => "f32",
            TargetEncoding::F16 => "f16",
            TargetEncoding::Int8 => "int8",
        })
    }
}

impl FromStr for TargetEncoding {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(TargetEncoding::F32),
            "f16" => Ok(TargetEncoding::F16),
            "int8" | "i8" => Ok(TargetEncoding::Int8),
            other => Err(Error::InvalidArgument(format!(
                "unknown target encoding {other:?} (expected f32, f16 or int8)"
            ))),
        }
    }
}

/// Decodes one stored row: `codes` is the row's bytes in `encoding`, `scale` its int8 scale.
/// Borrowed for aligned `f32` rows, else decoded by [`decode_row_into`] into a new vector.
pub(crate) fn decode_row<'a>(
    encoding: TargetEncoding,
    codes: &'a [u8],
    scale: f32,
) -> Cow<'a, [f32]> {
    if encoding.is_f32()
        && let Ok(v) = bytemuck::try_cast_slice(codes)
    {
        return Cow::Borrowed(v);
    }
    let mut out = vec![0.0; codes.len() / encoding.code_bytes(1)];
    decode_row_into(encoding, codes, scale, &mut out);
    Cow::Owned(out)
}

/// Decodes one stored row into `out` (`target_dim` floats), or borrows it when it is `f32` and
/// aligned. `f16` rows convert as a slice (F16C where the CPU has it, detected once per row
/// rather than per element); `int8` rows multiply by their scale.
pub(crate) fn decode_row_into<'a>(
    encoding: TargetEncoding,
    codes: &'a [u8],
    scale: f32,
    out: &'a mut [f32],
) -> &'a [f32] {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    match encoding {
        TargetEncoding::F32 => {
            if let Ok(v) = bytemuck::try_cast_slice(codes) {
                return v;
            }
            for (o, b) in out.iter_mut().zip(codes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        TargetEncoding::F16 => match bytemuck::try_cast_slice::<u8, u16>(codes) {
            Ok(bits) if cfg!(target_endian = "little") && bits.len() == out.len() => {
                bits.reinterpret_cast::<half::f16>()
                    .convert_to_f32_slice(out);
            }
            _ => {
                for (o, b) in out.iter_mut().zip(codes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        },
        TargetEncoding::Int8 => {
            for (o, &q) in out.iter_mut().zip(codes) {
                *o = f32::from(q as i8) * scale;
            }
        }
    }
    out
}

/// Writes the target files of one encoding, row by row (buffered; fsynced by
/// [`TargetsWriter::finish`]).
pub(crate) struct TargetsWriter {
    encoding: TargetEncoding,
    codes: (std::path::PathBuf, std::io::BufWriter<std::fs::File>),
    scales: Option<(std::path::PathBuf, std::io::BufWriter<std::fs::File>)>,
    buf: Vec<u8>,
    scale_buf: Vec<u8>,
}

impl TargetsWriter {
    /// Creates (truncates) the target files of `encoding` in `dir`.
    pub(crate) fn create(dir: &std::path::Path, encoding: TargetEncoding) -> Result<Self> {
        let open = |name: &str| -> Result<(std::path::PathBuf, std::io::BufWriter<std::fs::File>)> {
            let path = dir.join(name);
            let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            Ok((path, std::io::BufWriter::with_capacity(1 << 20, f)))
        };
        let files = encoding.files();
        Ok(TargetsWriter {
            encoding,
            codes: open(files[0])?,
            scales: files.get(1).map(|f| open(f)).transpose()?,
            buf: Vec::new(),
            scale_buf: Vec::new(),
        })
    }

    /// Encodes and appends one row.
    pub(crate) fn push(&mut self, row: &[f32]) -> Result<()> {
        self.buf.clear();
        self.scale_buf.clear();
        self.encoding
            .encode_row(row, &mut self.buf, &mut self.scale_buf);
        let (codes, scales) = (
            std::mem::take(&mut self.buf),
            std::mem::take(&mut self.scale_buf),
        );
        let r = self.push_encoded_bytes(&codes, &scales);
        self.buf = codes;
        self.scale_buf = scales;
        r
    }

    /// Appends one row already in this encoding (`scale`: its int8 scale).
    pub(crate) fn push_encoded(&mut self, codes: &[u8], scale: f32) -> Result<()> {
        self.push_encoded_bytes(codes, &scale.to_le_bytes())
    }

    fn push_encoded_bytes(&mut self, codes: &[u8], scale: &[u8]) -> Result<()> {
        use std::io::Write;
        let (path, w) = &mut self.codes;
        w.write_all(codes).map_err(|e| Error::io(&*path, e))?;
        if let Some((path, w)) = &mut self.scales {
            w.write_all(scale).map_err(|e| Error::io(&*path, e))?;
        }
        Ok(())
    }

    /// Flushes and fsyncs the files.
    pub(crate) fn finish(self) -> Result<()> {
        for (path, w) in std::iter::once(self.codes).chain(self.scales) {
            let f = w
                .into_inner()
                .map_err(|e| Error::io(&path, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(encoding: TargetEncoding, row: &[f32]) -> Vec<f32> {
        let (mut codes, mut scales) = (Vec::new(), Vec::new());
        encoding.encode_row(row, &mut codes, &mut scales);
        let scale = scales
            .get(..4)
            .map_or(0.0, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        assert_eq!(codes.len() + scales.len(), encoding.row_bytes(row.len()));
        decode_row(encoding, &codes, scale).into_owned()
    }

    #[test]
    fn round_trips_within_their_bounds() {
        let row: Vec<f32> = (0..384)
            .map(|i| ((i as f32 * 0.37).sin() * 0.2) - 0.01)
            .collect();
        assert_eq!(round_trip(TargetEncoding::F32, &row), row);
        let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (x, y) in row.iter().zip(round_trip(TargetEncoding::F16, &row)) {
            assert!((x - y).abs() <= x.abs() * 2f32.powi(-11) + 1e-7, "{x} {y}");
        }
        let int8 = round_trip(TargetEncoding::Int8, &row);
        for (x, y) in row.iter().zip(&int8) {
            assert!((x - y).abs() <= max / 254.0 * 1.0001, "{x} {y}");
        }
        // The row's extreme is exact, and a zero row stays zero.
        let at = row.iter().position(|x| x.abs() == max).unwrap();
        assert!((int8[at] - row[at]).abs() <= max * 1e-6);
        assert_eq!(round_trip(TargetEncoding::Int8, &[0.0; 8]), vec![0.0; 8]);
    }

    #[test]
    fn parses() {
        assert_eq!(
            "F16".parse::<TargetEncoding>().unwrap(),
            TargetEncoding::F16
        );
        assert_eq!(
            "int8".parse::<TargetEncoding>().unwrap(),
            TargetEncoding::Int8
        );
        assert!("bf16".parse::<TargetEncoding>().is_err());
        assert_eq!(TargetEncoding::Int8.to_string(), "int8");
    }
}
