//! Model identities recorded in index manifests, so that an index is never searched with
//! embeddings from a model other than the one that built it.
//!
//! An identity reads `name@fingerprint`: `name` is the checkpoint directory's name (for people),
//! `fingerprint` the xxh3-64 of the checkpoint's `config.json`, the weight file's length and its
//! first MiB (tensor names, shapes and the first weights). Two identities [`match`](ModelId::matches)
//! when their fingerprints are equal: renaming or moving a checkpoint keeps it valid, retraining or
//! swapping it does not.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};

/// Bytes of the weight file that enter the fingerprint.
const WEIGHT_PREFIX: u64 = 1 << 20;

/// A model's identity: `name@fingerprint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelId {
    /// Human-readable name (the checkpoint directory's name).
    pub name: String,
    /// 16 hex digits identifying the checkpoint's content.
    pub fingerprint: String,
}

impl ModelId {
    /// The identity of the HF-layout checkpoint in `dir` (`config.json` + `model.safetensors`).
    pub fn of_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut hasher = Xxh3::new();
        let config = dir.join("config.json");
        let bytes = std::fs::read(&config).map_err(|e| Error::io(&config, e))?;
        hasher.update(&bytes);
        let weights = dir.join("model.safetensors");
        let file = File::open(&weights).map_err(|e| Error::io(&weights, e))?;
        let len = file.metadata().map_err(|e| Error::io(&weights, e))?.len();
        hasher.update(&len.to_le_bytes());
        let mut prefix = Vec::new();
        file.take(WEIGHT_PREFIX)
            .read_to_end(&mut prefix)
            .map_err(|e| Error::io(&weights, e))?;
        hasher.update(&prefix);
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
            fingerprint: format!("{:016x}", hasher.digest()),
        })
    }

    /// Parses `name@fingerprint`; a string without `@` is a bare name with no fingerprint.
    pub fn parse(s: &str) -> Self {
        match s.rsplit_once('@') {
            Some((name, fp)) => Self {
                name: name.to_string(),
                fingerprint: fp.to_string(),
            },
            None => Self {
                name: s.to_string(),
                fingerprint: String::new(),
            },
        }
    }

    /// Whether two identity strings denote the same model: equal fingerprints when both have one,
    /// else equal names.
    pub fn matches(a: &str, b: &str) -> bool {
        let (a, b) = (Self::parse(a), Self::parse(b));
        if !a.fingerprint.is_empty() && !b.fingerprint.is_empty() {
            a.fingerprint == b.fingerprint
        } else {
            a.name == b.name
        }
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
        let id = |n: &str| ModelId::of_dir(tmp.path().join(n)).unwrap().to_string();
        assert!(id("a").starts_with("a@"));
        assert!(ModelId::matches(&id("a"), &id("b")));
        assert!(!ModelId::matches(&id("a"), &id("c")));
        assert!(!ModelId::matches(&id("a"), &id("d")));
    }

    #[test]
    fn bare_names_compare_by_name() {
        assert!(ModelId::matches("clip", "clip"));
        assert!(!ModelId::matches("clip", "other"));
        assert_eq!(ModelId::parse("n@0123").fingerprint, "0123");
    }

    #[test]
    fn missing_files_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ModelId::of_dir(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}
