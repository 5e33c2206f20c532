//! Index specs (presets and FAISS factory strings) and search knobs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Default `efSearch` of the `hnsw` preset (FAISS's own default is 16, far too low for k=100;
/// FAISS searches with `max(efSearch, k)` anyway).
pub const HNSW_EF_SEARCH: usize = 256;
/// `efConstruction` used when building the `hnsw` preset (FAISS's default, set explicitly).
pub const HNSW_EF_CONSTRUCTION: usize = 40;
/// Default `nprobe` of the `ivf` and `ivf-pq` presets, as a fraction of the number of lists:
/// `nprobe = ceil(nlist / IVF_NPROBE_DIVISOR)`.
pub const IVF_NPROBE_DIVISOR: usize = 4;

/// Which FAISS index to build over the keys.
///
/// All indexes use the inner-product metric over L2-normalised keys (cosine similarity).
/// Parse from a string with [`str::parse`]: `exact` (or `flat`), `hnsw`, `ivf`, `ivf-pq`, or
/// anything else, which is taken as a FAISS `index_factory` string (e.g. `"IVF4096,SQ8"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexSpec {
    /// Brute force (`Flat`): exact, `4·d` bytes per key, O(n) per query.
    Exact,
    /// Graph index `HNSW32` (efConstruction [`HNSW_EF_CONSTRUCTION`], efSearch [`HNSW_EF_SEARCH`]):
    /// fast and accurate, keys kept as f32 plus the graph (~`4·d + 256` bytes per key), slow to build.
    Hnsw,
    /// Inverted file `IVF{√n},Flat`, trained on a sample; nprobe `nlist / 4` by default.
    Ivf,
    /// Inverted file with product quantisation `IVF{√n},PQ{d/8}`: `d/8` bytes per key, for
    /// corpora whose keys do not fit in RAM as f32; approximate scores.
    IvfPq,
    /// Any FAISS `index_factory` string, used as given.
    Factory(String),
}

impl IndexSpec {
    /// The FAISS `index_factory` string for `n` keys of width `dim`.
    pub fn factory_string(&self, n: usize, dim: usize) -> String {
        match self {
            IndexSpec::Exact => "Flat".to_string(),
            IndexSpec::Hnsw => "HNSW32".to_string(),
            IndexSpec::Ivf => format!("IVF{},Flat", ivf_nlist(n)),
            IndexSpec::IvfPq => {
                let (m, nbits) = pq_shape(n, dim);
                format!("IVF{},PQ{m}x{nbits}", ivf_nlist(n))
            }
            IndexSpec::Factory(s) => s.clone(),
        }
    }

    /// The default search knobs of this preset for `n` keys (none for factory strings).
    pub fn default_params(&self, n: usize) -> SearchParams {
        match self {
            IndexSpec::Hnsw => SearchParams {
                nprobe: None,
                ef_search: Some(HNSW_EF_SEARCH),
            },
            IndexSpec::Ivf | IndexSpec::IvfPq => SearchParams {
                nprobe: Some(ivf_nlist(n).div_ceil(IVF_NPROBE_DIVISOR)),
                ef_search: None,
            },
            IndexSpec::Exact | IndexSpec::Factory(_) => SearchParams::default(),
        }
    }

    /// Build-time `efConstruction` to set before adding keys, if any.
    pub(crate) fn ef_construction(&self) -> Option<usize> {
        matches!(self, IndexSpec::Hnsw).then_some(HNSW_EF_CONSTRUCTION)
    }
}

/// Number of inverted lists of the IVF presets: `round(√n)`, at least 1.
pub fn ivf_nlist(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).max(1)
}

/// PQ sub-quantiser count and bits for the `ivf-pq` preset: `m` the largest divisor of `dim`
/// not above `dim / 8` (at least 1), 8 bits per code when there are at least `39 · 256` keys to
/// train on, fewer bits for smaller corpora (k-means needs ~39 points per centroid).
fn pq_shape(n: usize, dim: usize) -> (usize, usize) {
    let target = (dim / 8).max(1);
    let m = (1..=target)
        .rev()
        .find(|m| dim.is_multiple_of(*m))
        .unwrap_or(1);
    let mut nbits = 8;
    while nbits > 1 && n < 39 * (1usize << nbits) {
        nbits -= 1;
    }
    (m, nbits)
}

impl FromStr for IndexSpec {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "exact" | "flat" => IndexSpec::Exact,
            "hnsw" => IndexSpec::Hnsw,
            "ivf" => IndexSpec::Ivf,
            "ivf-pq" | "ivfpq" | "ivf_pq" => IndexSpec::IvfPq,
            _ => IndexSpec::Factory(s.trim().to_string()),
        })
    }
}

impl fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexSpec::Exact => f.write_str("exact"),
            IndexSpec::Hnsw => f.write_str("hnsw"),
            IndexSpec::Ivf => f.write_str("ivf"),
            IndexSpec::IvfPq => f.write_str("ivf-pq"),
            IndexSpec::Factory(s) => f.write_str(s),
        }
    }
}

impl Serialize for IndexSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IndexSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let Ok(spec) = s.parse();
        Ok(spec)
    }
}

/// Search knobs. `None` means "the index default" (the preset's, recorded in the manifest).
///
/// * `nprobe`: inverted lists visited by IVF indexes (more = slower, higher recall).
/// * `ef_search`: HNSW candidate list size (more = slower, higher recall); FAISS uses
///   `max(ef_search, k)`.
///
/// Setting a knob the index does not have (e.g. `nprobe` on `Flat`) is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchParams {
    /// IVF: number of inverted lists to visit.
    pub nprobe: Option<usize>,
    /// HNSW: size of the dynamic candidate list.
    pub ef_search: Option<usize>,
}

impl SearchParams {
    /// Knobs with only `nprobe` set.
    pub fn nprobe(nprobe: usize) -> Self {
        SearchParams {
            nprobe: Some(nprobe),
            ef_search: None,
        }
    }

    /// Knobs with only `ef_search` set.
    pub fn ef_search(ef_search: usize) -> Self {
        SearchParams {
            nprobe: None,
            ef_search: Some(ef_search),
        }
    }

    /// `self`'s knobs where set, `defaults`' elsewhere.
    pub fn or(self, defaults: SearchParams) -> SearchParams {
        SearchParams {
            nprobe: self.nprobe.or(defaults.nprobe),
            ef_search: self.ef_search.or(defaults.ef_search),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_resolve() {
        assert_eq!(IndexSpec::Exact.factory_string(10, 8), "Flat");
        assert_eq!(IndexSpec::Ivf.factory_string(100_000, 512), "IVF316,Flat");
        assert_eq!(
            IndexSpec::IvfPq.factory_string(1_000_000, 512),
            "IVF1000,PQ64x8"
        );
        assert_eq!(IndexSpec::IvfPq.factory_string(1000, 768), "IVF32,PQ96x4");
        assert_eq!(IndexSpec::IvfPq.factory_string(1, 3), "IVF1,PQ1x1");
        assert_eq!(
            "IVF64,SQ8".parse::<IndexSpec>().ok(),
            Some(IndexSpec::Factory("IVF64,SQ8".into()))
        );
        assert_eq!("HNSW".parse::<IndexSpec>().ok(), Some(IndexSpec::Hnsw));
        assert_eq!(IndexSpec::Ivf.default_params(100_000).nprobe, Some(79));
    }
}
