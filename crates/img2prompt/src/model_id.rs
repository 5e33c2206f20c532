//! Model identities recorded in index manifests, so that an index is never searched with
//! embeddings from a model other than the one that built it.
//!
//! An identity reads `name@fingerprint`: `name` is the checkpoint directory's name (for people
//! and for finding the checkpoint in a model cache), `fingerprint` 32 hex digits of the xxh3-128
//! of the checkpoint's `config.json` and its *whole* `model.safetensors`, so a change to any
//! tensor of either tower changes it. Two identities [`match`](ModelId::matches) when their
//! fingerprints are equal: renaming or moving a checkpoint keeps it valid; retraining,
//! fine-tuning or swapping it does not.
//!
//! Cost: one sequential read of the weights (ViT-L/14, 1.7 GB: see docs/ARCHITECTURE.md).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};

/// Hex digits of a fingerprint of this version (xxh3-128 of every byte).
#[cfg(test)]
const FINGERPRINT_DIGITS: usize = 32;
/// Hex digits of the fingerprints of img2prompt 0.1's first builds, which hashed only the first
/// MiB of the weights (the text tower of a CLIP): refused, the index must be rebuilt.
const LEGACY_DIGITS: usize = 16;
/// Read buffer of the hash.
const READ_CHUNK: usize = 8 << 20;

/// A model's identity: `name@fingerprint`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelId {
    name: String,
    fingerprint: String,
}

impl ModelId {
    /// The identity of the HF-layout checkpoint in `dir` (`config.json` + `model.safetensors`),
    /// hashing both files whole.
    ///
    /// # Errors
    /// Either file missing or unreadable (the error names it).
    pub fn of_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut hasher = Xxh3::new();
        for file in ["config.json", "model.safetensors"] {
            let path = dir.join(file);
            let mut f = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
            hasher.update(&len.to_le_bytes());
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let n = f.read(&mut buf).map_err(|e| Error::io(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        let name = dir
            .canonicalize()
            .ok()
            .as_deref()
            .unwrap_or(dir)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        Ok(Self {
            name,
            fingerprint: format!("{:032x}", hasher.digest128()),
        })
    }

    /// An identity from its parts (an empty fingerprint: known by name only).
    pub fn new(name: impl Into<String>, fingerprint: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            fingerprint: fingerprint.into(),
        }
    }

    /// Parses `name@fingerprint`; a string without `@` is a bare name with no fingerprint.
    pub fn parse(s: &str) -> Self {
        match s.rsplit_once('@') {
            Some((name, fp)) => Self::new(name, fp),
            None => Self::new(s, ""),
        }
    }

    /// The human-readable name (the checkpoint directory's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The content fingerprint (hex digits; empty when only the name is known).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether this identity carries a fingerprint of img2prompt 0.1's first builds, which
    /// covered only the first MiB of the weights. Such an identity matches nothing.
    pub fn is_legacy(&self) -> bool {
        self.fingerprint.len() == LEGACY_DIGITS
    }

    /// Whether two identities denote the same model: equal fingerprints when both have one,
    /// else equal names. A legacy fingerprint ([`ModelId::is_legacy`]) matches nothing.
    pub fn matches(&self, other: &ModelId) -> bool {
        if self.is_legacy() || other.is_legacy() {
            return false;
        }
        if !self.fingerprint.is_empty() && !other.fingerprint.is_empty() {
            self.fingerprint == other.fingerprint
        } else {
            self.name == other.name
        }
    }

    /// Checks that `found` is the model `self` (recorded for `what`, e.g. an index's keys) names.
    ///
    /// # Errors
    /// [`Error::Mismatch`] naming `what`, with a way out when `self` is a legacy identity.
    pub fn check(&self, what: &str, found: &ModelId) -> Result<()> {
        if self.matches(found) {
            return Ok(());
        }
        let why = if self.is_legacy() {
            "it records a fingerprint of an older img2prompt that covered only the first MiB of \
             the weights: rebuild the index"
        } else {
            "it was built with another model"
        };
        Err(Error::Mismatch {
            what: format!("{what} ({why})"),
            expected: self.to_string(),
            found: found.to_string(),
        })
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fingerprint.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}@{}", self.name, self.fingerprint)
        }
    }
}

impl FromStr for ModelId {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(dir: &Path, config: &str, weights: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
        std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    }

    #[test]
    fn identity_follows_content_not_location() {
        let tmp = tempfile::tempdir().unwrap();
        checkpoint(&tmp.path().join("a"), "{}", b"weights-1");
        checkpoint(&tmp.path().join("b"), "{}", b"weights-1");
        checkpoint(&tmp.path().join("c"), "{}", b"weights-2");
        checkpoint(&tmp.path().join("d"), "{\"x\":1}", b"weights-1");
        let id = |n: &str| ModelId::of_dir(tmp.path().join(n)).unwrap();
        assert_eq!(id("a").name(), "a");
        assert_eq!(id("a").fingerprint().len(), FINGERPRINT_DIGITS);
        assert!(id("a").matches(&id("b")));
        assert!(!id("a").matches(&id("c")));
        assert!(!id("a").matches(&id("d")));
    }

    #[test]
    fn every_byte_of_the_weights_counts() {
        // Bytes past the first MiB (where a CLIP's vision tower lives) change the identity.
        let tmp = tempfile::tempdir().unwrap();
        let mut weights = vec![7u8; 3 << 20];
        checkpoint(&tmp.path().join("a"), "{}", &weights);
        let n = weights.len();
        weights[n - 4..].copy_from_slice(&[1, 2, 3, 4]);
        checkpoint(&tmp.path().join("b"), "{}", &weights);
        let a = ModelId::of_dir(tmp.path().join("a")).unwrap();
        let b = ModelId::of_dir(tmp.path().join("b")).unwrap();
        assert!(!a.matches(&b), "{a} vs {b}");
    }

    #[test]
    fn bare_names_compare_by_name_and_legacy_matches_nothing() {
        assert!(ModelId::parse("clip").matches(&ModelId::parse("clip")));
        assert!(!ModelId::parse("clip").matches(&ModelId::parse("other")));
        let parsed: ModelId = "n@0123".parse().unwrap();
        assert_eq!(parsed.fingerprint(), "0123");
        assert_eq!(parsed.to_string(), "n@0123");
        let legacy = ModelId::parse("clip@0123456789abcdef");
        assert!(legacy.is_legacy());
        assert!(!legacy.matches(&legacy.clone()));
        let err = legacy.check("index keys", &legacy).unwrap_err().to_string();
        assert!(err.contains("rebuild the index"), "{err}");
    }

    #[test]
    fn missing_files_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ModelId::of_dir(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}
