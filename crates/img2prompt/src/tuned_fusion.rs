//! The fusion setting kept with an index: [`FUSION_FILE`] (`fusion.json`) in the index
//! directory, written by `demo` and `eval --save-tuned` after tuning on validation pairs, and
//! read by [`Predictor::open`](crate::Predictor::open) (so `predict` and `serve`) when no
//! setting is given.
//!
//! A setting that weighs the head is tied to the head it was tuned with: the file records the
//! xxh3 of `head.safetensors`, and when the index's head is another one (retrained, replaced,
//! removed, or ignored with `no_head`) the stored setting is *stale* and the paper's default is
//! used instead ([`FusionSource::StaleIndexFile`]). A KNN-only setting (head weight 0) holds
//! whatever the head.
//!
//! The file is JSON, written atomically, with an xxh3 of its content: a damaged or hand-edited
//! file is an error naming it, never a silently different prediction.

use std::io::Read;
use std::path::Path;

use prompt_fusion::FusionConfig;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::atomic::write_file_atomic;
use crate::error::{Error, Result};
use crate::head::HEAD_FILE;

/// The file's name inside an index directory.
pub const FUSION_FILE: &str = "fusion.json";

const FORMAT: &str = "img2prompt-fusion";
const VERSION: u32 = 1;
/// Largest file read (a setting is a few hundred bytes).
const MAX_BYTES: u64 = 1 << 20;

/// A fusion setting as kept with an index, with where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredFusion {
    /// The setting.
    pub config: FusionConfig,
    /// What it was tuned on, in words (e.g. `"validation: 1000 pairs"`).
    pub tuned_on: String,
    /// Its mean cosine on what it was tuned on (optimistic: it is the best of a grid).
    pub score: Option<f64>,
    /// xxh3-64 (hex) of the `head.safetensors` it was tuned with; `None`: tuned without a head.
    pub head_xxh3: Option<String>,
}

/// The file's content: the setting plus a format tag and a checksum of the rest.
#[derive(Serialize, Deserialize)]
struct Body {
    format: String,
    version: u32,
    #[serde(flatten)]
    fusion: StoredFusion,
}

#[derive(Serialize, Deserialize)]
struct FileContent {
    #[serde(flatten)]
    body: Body,
    xxh3: String,
}

/// Where the fusion setting of a predictor came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FusionSource {
    /// Given by the caller (options or flags).
    Given,
    /// The index's [`FUSION_FILE`].
    IndexFile,
    /// The paper's setting ([`FusionConfig::default`]): the index keeps none.
    Default,
    /// The paper's setting, because the index's [`FUSION_FILE`] weighs a head that is not the
    /// one in use (retrained, replaced, removed, or ignored).
    StaleIndexFile,
}

impl FusionSource {
    /// A few words for logs: `"given"`, `"the index's fusion.json"`, ...
    pub fn describe(&self) -> &'static str {
        match self {
            FusionSource::Given => "given",
            FusionSource::IndexFile => "tuned, from the index's fusion.json",
            FusionSource::Default => "the paper's default",
            FusionSource::StaleIndexFile => {
                "the paper's default (the index's fusion.json was tuned with a head not in use)"
            }
        }
    }
}

fn bad_file(path: &Path, message: impl Into<String>) -> Error {
    Error::Input {
        path: path.to_owned(),
        line: None,
        message: message.into(),
    }
}

fn checksum(body: &Body) -> Result<String> {
    let bytes = serde_json::to_vec(body).map_err(|e| Error::Backend(e.to_string()))?;
    Ok(format!("{:016x}", xxh3_64(&bytes)))
}

/// xxh3-64 (hex) of the index's `head.safetensors`, `None` when it has none: the digest the
/// index manifest uses for its own files ([`knn_index::hash_file`], streamed).
pub fn head_fingerprint(index_dir: impl AsRef<Path>) -> Result<Option<String>> {
    let path = index_dir.as_ref().join(HEAD_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(knn_index::hash_file(&path)?.xxh3))
}

/// Writes `fusion` to the index's [`FUSION_FILE`] atomically, after checking the setting.
///
/// # Errors
/// An invalid setting (named `fusion`); the directory cannot be written.
pub fn save_fusion(index_dir: impl AsRef<Path>, fusion: &StoredFusion) -> Result<()> {
    fusion
        .config
        .validate()
        .map_err(|e| Error::invalid("fusion", e.to_string()))?;
    let body = Body {
        format: FORMAT.to_string(),
        version: VERSION,
        fusion: fusion.clone(),
    };
    let xxh3 = checksum(&body)?;
    let json = serde_json::to_string_pretty(&FileContent { body, xxh3 })
        .map_err(|e| Error::Backend(e.to_string()))?;
    write_file_atomic(&index_dir.as_ref().join(FUSION_FILE), json.as_bytes())
}

/// Reads the index's [`FUSION_FILE`]; `Ok(None)` when there is none.
///
/// # Errors
/// Naming the file: unreadable, over 1 MiB, not this format, a checksum mismatch (damaged or
/// edited), or an invalid setting.
pub fn load_fusion(index_dir: impl AsRef<Path>) -> Result<Option<StoredFusion>> {
    let path = index_dir.as_ref().join(FUSION_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        // No file, or no index directory (the index's own checks name that).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(bad_file(&path, "larger than 1 MiB: not a fusion setting"));
    }
    let content: FileContent = serde_json::from_slice(&bytes)
        .map_err(|e| bad_file(&path, format!("not a fusion setting: {e}")))?;
    if content.body.format != FORMAT || content.body.version != VERSION {
        return Err(bad_file(
            &path,
            format!(
                "format {:?} version {}, expected {FORMAT:?} version {VERSION}",
                content.body.format, content.body.version
            ),
        ));
    }
    if checksum(&content.body)? != content.xxh3 {
        return Err(bad_file(
            &path,
            "checksum mismatch: the file was damaged or edited (tune again, or delete it to use \
             the paper's setting)",
        ));
    }
    let fusion = content.body.fusion;
    fusion
        .config
        .validate()
        .map_err(|e| bad_file(&path, format!("invalid setting: {e}")))?;
    Ok(Some(fusion))
}

/// The fusion setting a predictor on `index_dir` uses: `given` when set; else the index's
/// [`FUSION_FILE`] when it holds for the head in use (the index's `head.safetensors`, unless
/// `no_head`); else the paper's [`FusionConfig::default`].
///
/// # Errors
/// As [`load_fusion`] and [`head_fingerprint`]; an invalid `given` setting.
pub fn resolve_fusion(
    index_dir: impl AsRef<Path>,
    given: Option<FusionConfig>,
    no_head: bool,
) -> Result<(FusionConfig, FusionSource)> {
    if let Some(config) = given {
        config
            .validate()
            .map_err(|e| Error::invalid("fusion", e.to_string()))?;
        return Ok((config, FusionSource::Given));
    }
    let index_dir = index_dir.as_ref();
    let Some(stored) = load_fusion(index_dir)? else {
        return Ok((FusionConfig::default(), FusionSource::Default));
    };
    if stored.config.weights.clip == 0.0 {
        return Ok((stored.config, FusionSource::IndexFile));
    }
    let head = if no_head {
        None
    } else {
        head_fingerprint(index_dir)?
    };
    if head.is_some() && head == stored.head_xxh3 {
        Ok((stored.config, FusionSource::IndexFile))
    } else {
        Ok((FusionConfig::default(), FusionSource::StaleIndexFile))
    }
}

#[cfg(test)]
mod tests {
    use prompt_fusion::{Aggregation, BlendWeights};

    use super::*;

    fn tuned(clip: f32, head: Option<&str>) -> StoredFusion {
        StoredFusion {
            config: FusionConfig {
                k: 50,
                aggregation: Aggregation::Softmax { temperature: 0.03 },
                weights: BlendWeights::new(1.0 - clip, clip),
            },
            tuned_on: "validation: 10 pairs".into(),
            score: Some(0.75),
            head_xxh3: head.map(str::to_owned),
        }
    }

    #[test]
    fn a_setting_survives_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_fusion(dir.path()).unwrap(), None);
        assert_eq!(load_fusion(dir.path().join("no-such-index")).unwrap(), None);
        std::fs::write(dir.path().join("a-file"), b"x").unwrap();
        assert_eq!(load_fusion(dir.path().join("a-file")).unwrap(), None);
        let stored = tuned(0.3, Some("00000000000000aa"));
        save_fusion(dir.path(), &stored).unwrap();
        assert_eq!(load_fusion(dir.path()).unwrap(), Some(stored));
    }

    #[test]
    fn an_edited_or_damaged_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        save_fusion(dir.path(), &tuned(0.0, None)).unwrap();
        let path = dir.path().join(FUSION_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        // An edit that keeps the JSON valid: k 50 -> 5.
        std::fs::write(&path, text.replace("\"k\": 50", "\"k\": 5")).unwrap();
        let err = load_fusion(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("fusion.json") && err.contains("checksum"),
            "{err}"
        );
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let err = load_fusion(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("fusion.json") && err.contains("not a fusion setting"),
            "{err}"
        );
        std::fs::write(&path, vec![b' '; (MAX_BYTES + 2) as usize]).unwrap();
        let err = load_fusion(dir.path()).unwrap_err().to_string();
        assert!(err.contains("1 MiB"), "{err}");
    }

    #[test]
    fn an_invalid_setting_is_neither_saved_nor_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = tuned(0.3, None);
        bad.config.k = 0;
        assert!(save_fusion(dir.path(), &bad).is_err());
        assert!(!dir.path().join(FUSION_FILE).exists());
        assert!(resolve_fusion(dir.path(), Some(bad.config), false).is_err());
    }

    #[test]
    fn the_setting_follows_the_head_it_was_tuned_with() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing stored: the paper's setting.
        let (config, source) = resolve_fusion(dir.path(), None, false).unwrap();
        assert_eq!(
            (config, source),
            (FusionConfig::default(), FusionSource::Default)
        );
        std::fs::write(dir.path().join(HEAD_FILE), b"head one").unwrap();
        let head = head_fingerprint(dir.path()).unwrap();
        assert!(head.is_some());
        let stored = tuned(0.3, head.as_deref());
        save_fusion(dir.path(), &stored).unwrap();
        let (config, source) = resolve_fusion(dir.path(), None, false).unwrap();
        assert_eq!((config, source), (stored.config, FusionSource::IndexFile));
        // Given settings win.
        let given = FusionConfig {
            k: 7,
            ..FusionConfig::default()
        };
        assert_eq!(
            resolve_fusion(dir.path(), Some(given), false).unwrap(),
            (given, FusionSource::Given)
        );
        // The head ignored, or replaced: stale, the paper's setting.
        assert_eq!(
            resolve_fusion(dir.path(), None, true).unwrap(),
            (FusionConfig::default(), FusionSource::StaleIndexFile)
        );
        std::fs::write(dir.path().join(HEAD_FILE), b"head two").unwrap();
        assert_eq!(
            resolve_fusion(dir.path(), None, false).unwrap().1,
            FusionSource::StaleIndexFile
        );
        // A KNN-only setting holds whatever the head.
        let knn_only = tuned(0.0, Some("0"));
        save_fusion(dir.path(), &knn_only).unwrap();
        assert_eq!(
            resolve_fusion(dir.path(), None, true).unwrap(),
            (knn_only.config, FusionSource::IndexFile)
        );
    }
}
