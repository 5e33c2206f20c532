//! The paper's cleaning: trim, collapse whitespace, drop empty prompts and exact duplicates.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::Result;

/// Counts of the cleaning step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CleanStats {
    /// Records read.
    pub read: u64,
    /// Prompts kept (`read - empty - duplicates`).
    pub kept: u64,
    /// Records dropped because nothing but whitespace was left.
    pub empty: u64,
    /// Records dropped as exact duplicates of an earlier prompt (after normalisation).
    pub duplicates: u64,
}

impl CleanStats {
    /// Records dropped (`empty + duplicates`).
    pub fn dropped(&self) -> u64 {
        self.empty + self.duplicates
    }
}

impl fmt::Display for CleanStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} kept of {} read ({} empty, {} duplicates dropped)",
            self.kept, self.read, self.empty, self.duplicates
        )
    }
}

/// Trims `text` and collapses every internal run of whitespace (Unicode `White_Space`, so tabs,
/// newlines and no-break spaces too) to one ASCII space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A hasher for keys that are already uniform hashes: uses their low 64 bits as is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// The cleaning step: [`normalize`], then drop empty prompts and exact duplicates, counting
/// each. Deterministic: the same records give the same prompts in the same order.
#[derive(Default)]
pub struct Cleaner {
    seen: HashSet<u128, BuildHasherDefault<PassThrough>>,
    stats: CleanStats,
}

impl fmt::Debug for Cleaner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cleaner")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Cleaner {
    /// A cleaner that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cleans one record: the normalised prompt, or `None` when it is empty or was seen before.
    pub fn clean(&mut self, text: &str) -> Option<String> {
        self.stats.read += 1;
        let cleaned = normalize(text);
        if cleaned.is_empty() {
            self.stats.empty += 1;
            return None;
        }
        if !self
            .seen
            .insert(xxhash_rust::xxh3::xxh3_128(cleaned.as_bytes()))
        {
            self.stats.duplicates += 1;
            return None;
        }
        self.stats.kept += 1;
        Some(cleaned)
    }

    /// The counts so far.
    pub fn stats(&self) -> CleanStats {
        self.stats
    }
}

/// Iterator adapter: the cleaned prompts of a record stream (see [`Cleaner`]); errors pass
/// through.
#[derive(Debug)]
pub struct Cleaned<I> {
    inner: I,
    cleaner: Cleaner,
}

impl<I> Cleaned<I> {
    /// Cleans the records of `inner`.
    pub fn new(inner: I) -> Self {
        Self {
            inner,
            cleaner: Cleaner::new(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> CleanStats {
        self.cleaner.stats()
    }
}

impl<I, P> Iterator for Cleaned<I>
where
    I: Iterator<Item = Result<P>>,
    P: AsRef<str>,
{
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.inner.next()? {
                Ok(record) => {
                    if let Some(text) = self.cleaner.clean(record.as_ref()) {
                        return Some(Ok(text));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
