//! [`Shard`]: which part of a cleaned corpus one process of a sharded index build encodes.
//!
//! A cleaned prompt belongs to shard `xxh3(prompt) mod count`: a deterministic partition by
//! content, so that copies of one prompt meet in one shard whatever the corpus order. Every
//! shard still reads (and cleans) the whole corpus, which is cheap next to encoding, so that
//! deduplication stays global and each prompt keeps the id a single build would give it (its
//! ordinal in the cleaned stream). [`knn_index::merge_shards`] joins the shards.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Shard `index` of `count` (0-based), written `I/N` on command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// The most shards one build may be split into.
pub const MAX_SHARDS: u32 = 1 << 16;

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// `count` is 0 or above [`MAX_SHARDS`], or `index >= count`.
    pub fn new(index: u32, count: u32) -> Result<Self> {
        if count == 0 || count > MAX_SHARDS {
            return Err(Error::invalid(
                "shard",
                format!("the shard count {count} must be between 1 and {MAX_SHARDS}"),
            ));
        }
        if index >= count {
            return Err(Error::invalid(
                "shard",
                format!(
                    "shard {index}/{count} does not exist: shards are numbered 0 to {}",
                    count - 1
                ),
            ));
        }
        Ok(Shard { index, count })
    }

    /// This shard's number, `0..count`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards the corpus is split into.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the cleaned prompt `text` belongs to this shard.
    pub fn owns(&self, text: &str) -> bool {
        xxhash_rust::xxh3::xxh3_64(text.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// Parses `I/N`, e.g. `0/4`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "shard",
                format!("{s:?} is not I/N (shard I of N, numbered from 0, e.g. 0/4)"),
            )
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse::<u32>().map_err(|_| bad())?;
        let n = n.trim().parse::<u32>().map_err(|_| bad())?;
        Shard::new(i, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let s: Shard = "2/5".parse().unwrap();
        assert_eq!((s.index(), s.count()), (2, 5));
        assert_eq!(s.to_string(), "2/5");
        for bad in ["5/5", "1/0", "a/2", "1", "-1/2", "1/2/3", ""] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains("shard"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_prompt_has_exactly_one_shard() {
        let shards: Vec<Shard> = (0..7).map(|i| Shard::new(i, 7).unwrap()).collect();
        let mut sizes = [0usize; 7];
        for p in 0..7000 {
            let text = format!("prompt {p}");
            let owners: Vec<usize> = (0..7).filter(|&i| shards[i].owns(&text)).collect();
            assert_eq!(owners.len(), 1, "{text}");
            sizes[owners[0]] += 1;
        }
        // Balanced to within a few percent.
        assert!(sizes.iter().all(|&n| (850..1150).contains(&n)), "{sizes:?}");
    }
}
