//! Prompt texts written by an image captioner kept with the index, in `INDEX/captioner/`
//! (an [`image_captioner`] directory). When an index holds one, [`Predictor::open`] uses it
//! for the prompt text unless told otherwise ([`OpenOptions::no_captioner`]).
//!
//! [`Predictor::open`]: crate::Predictor::open
//! [`OpenOptions::no_captioner`]: crate::OpenOptions::no_captioner

use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::components::ImageCaptioner;
use crate::error::{Error, Result};

/// The captioner's directory inside an index directory.
pub const CAPTIONER_DIR: &str = "captioner";

/// An [`image_captioner::Captioner`] as an [`ImageCaptioner`].
#[derive(Debug)]
pub struct ModelCaptioner {
    model: image_captioner::Captioner,
}

impl ModelCaptioner {
    /// Loads the captioner directory `dir` (config.json, model.safetensors).
    ///
    /// # Errors
    /// See [`image_captioner::Captioner::load`].
    pub fn load(dir: impl AsRef<Path>, device: &burn::tensor::Device) -> Result<Self> {
        Ok(Self {
            model: image_captioner::Captioner::load(dir, device)?,
        })
    }

    /// The wrapped captioner.
    pub fn model(&self) -> &image_captioner::Captioner {
        &self.model
    }
}

impl ImageCaptioner for ModelCaptioner {
    fn caption(&self, images: &[DynamicImage]) -> Result<Vec<String>> {
        Ok(self.model.caption(images)?)
    }
}

/// `index_dir/captioner` when the index holds one (the directory exists: a damaged or
/// incomplete one is then an error when loaded, never silently skipped).
pub fn index_captioner_dir(index_dir: &Path) -> Option<PathBuf> {
    let dir = index_dir.join(CAPTIONER_DIR);
    dir.is_dir().then_some(dir)
}

/// Copies the captioner directory `source` into `index_dir/captioner`, replacing any there,
/// after loading it once on `device` to check it. The copy is staged in a temporary directory inside the
/// index and renamed into place, so a failed install leaves the old captioner (or none).
///
/// # Errors
/// `index_dir` is not a directory; `source` fails to load; a copy or rename fails.
pub fn install_captioner(
    source: &Path,
    index_dir: &Path,
    device: &burn::tensor::Device,
) -> Result<PathBuf> {
    if !index_dir.is_dir() {
        return Err(Error::invalid(
            "index",
            format!("{} is not a directory", index_dir.display()),
        ));
    }
    image_captioner::Captioner::load(source, device)?;
    let staging = tempfile::Builder::new()
        .prefix(".captioner-")
        .tempdir_in(index_dir)
        .map_err(|e| Error::io(index_dir, e))?;
    for name in [image_captioner::CONFIG_FILE, image_captioner::WEIGHTS_FILE] {
        let to = staging.path().join(name);
        std::fs::copy(source.join(name), &to).map_err(|e| Error::io(&to, e))?;
    }
    let target = index_dir.join(CAPTIONER_DIR);
    let old = index_dir.join(".captioner-old");
    if target.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(&target, &old).map_err(|e| Error::io(&target, e))?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, &target) {
        // Put the previous captioner back; the error names the failed rename.
        let _ = std::fs::rename(&old, &target);
        let _ = std::fs::remove_dir_all(&staged);
        return Err(Error::io(&target, e));
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_captioner() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../image-captioner/tests/fixtures/tiny")
    }

    #[test]
    fn a_captioner_is_installed_replaced_and_never_half_written() {
        let device = crate::Backend::default().device().unwrap();
        let index = tempfile::tempdir().unwrap();
        assert_eq!(index_captioner_dir(index.path()), None);
        let installed = install_captioner(&tiny_captioner(), index.path(), &device).unwrap();
        assert_eq!(index_captioner_dir(index.path()), Some(installed.clone()));
        let first = ModelCaptioner::load(&installed, &device).unwrap();
        let image = DynamicImage::ImageRgb8(image::RgbImage::new(16, 16));
        let text = first.caption(std::slice::from_ref(&image)).unwrap();
        // Installing again replaces it in place, with nothing left beside it.
        install_captioner(&tiny_captioner(), index.path(), &device).unwrap();
        let names: Vec<_> = std::fs::read_dir(index.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(CAPTIONER_DIR)]);
        // A damaged source is refused before anything is touched.
        let bad = tempfile::tempdir().unwrap();
        std::fs::copy(
            tiny_captioner().join("config.json"),
            bad.path().join("config.json"),
        )
        .unwrap();
        std::fs::write(bad.path().join("model.safetensors"), b"not safetensors").unwrap();
        let err = install_captioner(bad.path(), index.path(), &device).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        let kept = ModelCaptioner::load(&installed, &device).unwrap();
        assert_eq!(kept.caption(&[image]).unwrap(), text);
        // An incomplete captioner directory is an error naming the missing file.
        std::fs::remove_file(installed.join(image_captioner::CONFIG_FILE)).unwrap();
        assert_eq!(index_captioner_dir(index.path()), Some(installed.clone()));
        let err = ModelCaptioner::load(&installed, &device).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        let err = install_captioner(&tiny_captioner(), &index.path().join("missing"), &device)
            .unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
