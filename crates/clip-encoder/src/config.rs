//! `config.json` and `preprocessor_config.json` of HF-format CLIP checkpoints.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Activation of the encoder MLPs (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, what the OpenAI checkpoints use.
    #[default]
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// The exact (erf) GELU, what most OpenCLIP conversions use.
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
}

fn d_quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn d_eps() -> f64 {
    1e-5
}

/// The text tower's configuration (`text_config`), with HF's `CLIPTextConfig` defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size (49408 for the OpenAI BPE).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Width of the transformer.
    #[serde(default = "d_text_hidden")]
    pub hidden_size: usize,
    /// Width of the MLPs.
    #[serde(default = "d_text_inter")]
    pub intermediate_size: usize,
    /// Number of encoder layers.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    #[serde(default = "d_text_heads")]
    pub num_attention_heads: usize,
    /// Context length (77).
    #[serde(default = "d_ctx")]
    pub max_position_embeddings: usize,
    /// MLP activation.
    #[serde(default = "d_quick_gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// End-of-text token id. `2` is the legacy value of the OpenAI checkpoints and means
    /// "pool at the largest token id" (see [`crate::ClipTextModel`]).
    #[serde(default = "d_eos")]
    pub eos_token_id: i64,
    /// Beginning-of-text token id.
    #[serde(default = "d_bos")]
    pub bos_token_id: i64,
    /// Padding token id.
    #[serde(default = "d_pad")]
    pub pad_token_id: i64,
}

fn d_vocab() -> usize {
    49408
}
fn d_text_hidden() -> usize {
    512
}
fn d_text_inter() -> usize {
    2048
}
fn d_layers() -> usize {
    12
}
fn d_text_heads() -> usize {
    8
}
fn d_ctx() -> usize {
    77
}
fn d_eos() -> i64 {
    49407
}
fn d_bos() -> i64 {
    49406
}
fn d_pad() -> i64 {
    1
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Default::default()))
            .expect("all text config fields have defaults")
    }
}

/// The vision tower's configuration (`vision_config`), with HF's `CLIPVisionConfig` defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the transformer.
    #[serde(default = "d_vis_hidden")]
    pub hidden_size: usize,
    /// Width of the MLPs.
    #[serde(default = "d_vis_inter")]
    pub intermediate_size: usize,
    /// Number of encoder layers.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    #[serde(default = "d_vis_heads")]
    pub num_attention_heads: usize,
    /// Input channels (3).
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    /// Input resolution (square).
    #[serde(default = "d_image")]
    pub image_size: usize,
    /// Patch size (the stride and kernel of the patch convolution).
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    /// MLP activation.
    #[serde(default = "d_quick_gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}

fn d_vis_hidden() -> usize {
    768
}
fn d_vis_inter() -> usize {
    3072
}
fn d_vis_heads() -> usize {
    12
}
fn d_channels() -> usize {
    3
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    32
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Default::default()))
            .expect("all vision config fields have defaults")
    }
}

impl ClipVisionConfig {
    /// Number of patches per side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Number of positions: patches plus the class token.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

/// A whole CLIP configuration: both towers and the shared projection width.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// Text tower.
    pub text: ClipTextConfig,
    /// Vision tower.
    pub vision: ClipVisionConfig,
    /// Width of the joint embedding space (output of both projections).
    pub projection_dim: usize,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self::vit_b_32()
    }
}

impl ClipConfig {
    /// The shapes of openai/clip-vit-base-patch32.
    pub fn vit_b_32() -> Self {
        Self {
            text: ClipTextConfig::default(),
            vision: ClipVisionConfig::default(),
            projection_dim: 512,
        }
    }

    /// The shapes of openai/clip-vit-base-patch16.
    pub fn vit_b_16() -> Self {
        let mut c = Self::vit_b_32();
        c.vision.patch_size = 16;
        c
    }

    /// The shapes of openai/clip-vit-large-patch14.
    pub fn vit_l_14() -> Self {
        let mut c = Self::vit_b_32();
        c.text.hidden_size = 768;
        c.text.intermediate_size = 3072;
        c.text.num_attention_heads = 12;
        c.vision.hidden_size = 1024;
        c.vision.intermediate_size = 4096;
        c.vision.num_attention_heads = 16;
        c.vision.num_hidden_layers = 24;
        c.vision.patch_size = 14;
        c.projection_dim = 768;
        c
    }

    /// Reads `config.json` of an HF CLIP checkpoint (`model_type` `clip`; also accepts
    /// `clip_vision_model` and `clip_text_model` configs, which describe one tower only and
    /// leave the other at its defaults).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    /// Parses the contents of a `config.json`; `path` is only used in error messages.
    pub fn from_json_str(json: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let value: Value = serde_json::from_str(json).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        let Value::Object(root) = value else {
            return Err(config_err(&path, "top level is not a JSON object"));
        };
        let model_type = root
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("clip");
        let (text_v, vision_v, proj) = match model_type {
            "clip" => {
                let text_v = merged_sub_config(&root, "text_config");
                let vision_v = merged_sub_config(&root, "vision_config");
                let proj = root
                    .get("projection_dim")
                    .and_then(Value::as_u64)
                    .or_else(|| text_v.get("projection_dim").and_then(Value::as_u64))
                    .unwrap_or(512);
                (text_v, vision_v, proj)
            }
            "clip_vision_model" => {
                let proj = root
                    .get("projection_dim")
                    .and_then(Value::as_u64)
                    .unwrap_or(512);
                (
                    Value::Object(Default::default()),
                    Value::Object(root.clone()),
                    proj,
                )
            }
            "clip_text_model" => {
                let proj = root
                    .get("projection_dim")
                    .and_then(Value::as_u64)
                    .unwrap_or(512);
                (
                    Value::Object(root.clone()),
                    Value::Object(Default::default()),
                    proj,
                )
            }
            other => {
                return Err(config_err(
                    &path,
                    format!(
                        "model_type `{other}`: expected a CLIP checkpoint (model_type `clip`, \
                         `clip_vision_model` or `clip_text_model`){}",
                        if other == "bert" {
                            ", found a BERT (sentence-transformers) model"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        };
        let text: ClipTextConfig =
            serde_json::from_value(strip_nulls(text_v)).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;
        let vision: ClipVisionConfig =
            serde_json::from_value(strip_nulls(vision_v)).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;
        let config = Self {
            text,
            vision,
            projection_dim: proj as usize,
        };
        config.validate(&path)?;
        Ok(config)
    }

    /// Checks that the shapes are usable (heads divide widths, patch divides image, ...).
    pub fn validate(&self, path: &Path) -> Result<()> {
        let t = &self.text;
        let v = &self.vision;
        let checks: [(bool, String); 8] = [
            (
                t.num_attention_heads > 0 && t.hidden_size.is_multiple_of(t.num_attention_heads),
                format!(
                    "text hidden_size {} not divisible by num_attention_heads {}",
                    t.hidden_size, t.num_attention_heads
                ),
            ),
            (
                v.num_attention_heads > 0 && v.hidden_size.is_multiple_of(v.num_attention_heads),
                format!(
                    "vision hidden_size {} not divisible by num_attention_heads {}",
                    v.hidden_size, v.num_attention_heads
                ),
            ),
            (
                v.patch_size > 0 && v.image_size >= v.patch_size,
                format!(
                    "vision patch_size {} does not fit image_size {}",
                    v.patch_size, v.image_size
                ),
            ),
            (
                t.max_position_embeddings >= 2,
                "text context shorter than 2".into(),
            ),
            (t.vocab_size > 0, "text vocab_size is 0".into()),
            (self.projection_dim > 0, "projection_dim is 0".into()),
            (v.num_channels > 0, "vision num_channels is 0".into()),
            (
                t.hidden_size > 0 && v.hidden_size > 0,
                "a hidden_size is 0".into(),
            ),
        ];
        for (ok, msg) in checks {
            if !ok {
                return Err(config_err(path, msg));
            }
        }
        Ok(())
    }
}

/// `text_config` overlaid with the legacy `text_config_dict` (which wins, as in HF).
fn merged_sub_config(root: &serde_json::Map<String, Value>, key: &str) -> Value {
    let mut base = match root.get(key) {
        Some(Value::Object(m)) => m.clone(),
        _ => Default::default(),
    };
    if let Some(Value::Object(over)) = root.get(&format!("{key}_dict")) {
        for (k, v) in over {
            base.insert(k.clone(), v.clone());
        }
    }
    Value::Object(base)
}

/// Drops `null` members so that serde defaults apply to them.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

fn config_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Resampling filter of the preprocessor (PIL's numbering, as in `resample`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// PIL `NEAREST` (0).
    Nearest,
    /// PIL `BILINEAR` (2).
    Bilinear,
    /// PIL `BICUBIC` (3), what CLIP uses.
    Bicubic,
}

/// `preprocessor_config.json` of a CLIP checkpoint: what `CLIPImageProcessor` does.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessorConfig {
    /// Whether to resize the shortest edge to [`Self::shortest_edge`].
    pub do_resize: bool,
    /// Target length of the shortest edge.
    pub shortest_edge: usize,
    /// Resampling filter.
    pub resample: Resample,
    /// Whether to center-crop to [`Self::crop_size`].
    pub do_center_crop: bool,
    /// Crop size as (height, width).
    pub crop_size: (usize, usize),
    /// Whether to multiply by [`Self::rescale_factor`].
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Whether to normalise with mean and std.
    pub do_normalize: bool,
    /// Per-channel mean.
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation.
    pub image_std: [f32; 3],
}

/// OpenAI CLIP's per-channel mean.
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation.
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl PreprocessorConfig {
    /// HF `CLIPImageProcessor` defaults for a model of the given input resolution.
    pub fn for_image_size(image_size: usize) -> Self {
        Self {
            do_resize: true,
            shortest_edge: image_size,
            resample: Resample::Bicubic,
            do_center_crop: true,
            crop_size: (image_size, image_size),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
        }
    }

    /// Reads `preprocessor_config.json`; fields it lacks take the defaults of
    /// [`Self::for_image_size`].
    pub fn from_file(path: impl AsRef<Path>, image_size: usize) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path, image_size)
    }

    /// Parses a `preprocessor_config.json`; `path` is only used in error messages.
    pub fn from_json_str(json: &str, path: impl AsRef<Path>, image_size: usize) -> Result<Self> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let value: Value = serde_json::from_str(json).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        let Value::Object(m) = value else {
            return Err(config_err(&path, "top level is not a JSON object"));
        };
        let mut c = Self::for_image_size(image_size);
        let get_bool = |k: &str, d: bool| m.get(k).and_then(Value::as_bool).unwrap_or(d);
        c.do_resize = get_bool("do_resize", true);
        c.do_center_crop = get_bool("do_center_crop", true);
        c.do_rescale = get_bool("do_rescale", true);
        c.do_normalize = get_bool("do_normalize", true);
        if let Some(f) = m.get("rescale_factor").and_then(Value::as_f64) {
            c.rescale_factor = f;
        }
        match m.get("size") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => c.shortest_edge = n.as_u64().unwrap_or(0) as usize,
            Some(Value::Object(s)) => {
                if let Some(e) = s.get("shortest_edge").and_then(Value::as_u64) {
                    c.shortest_edge = e as usize;
                } else {
                    return Err(config_err(
                        &path,
                        "only `size.shortest_edge` resizing is supported",
                    ));
                }
            }
            Some(_) => {
                return Err(config_err(
                    &path,
                    "`size` is neither a number nor an object",
                ));
            }
        }
        match m.get("crop_size") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let s = n.as_u64().unwrap_or(0) as usize;
                c.crop_size = (s, s);
            }
            Some(Value::Object(s)) => {
                let h = s.get("height").and_then(Value::as_u64);
                let w = s.get("width").and_then(Value::as_u64);
                match (h, w) {
                    (Some(h), Some(w)) => c.crop_size = (h as usize, w as usize),
                    _ => return Err(config_err(&path, "`crop_size` lacks height/width")),
                }
            }
            Some(_) => {
                return Err(config_err(
                    &path,
                    "`crop_size` is neither a number nor an object",
                ));
            }
        }
        match m.get("resample").and_then(Value::as_u64) {
            None | Some(3) => c.resample = Resample::Bicubic,
            Some(2) => c.resample = Resample::Bilinear,
            Some(0) => c.resample = Resample::Nearest,
            Some(r) => {
                return Err(config_err(
                    &path,
                    format!("resample {r} is not supported (0, 2, 3 are)"),
                ));
            }
        }
        for (key, dst) in [
            ("image_mean", &mut c.image_mean),
            ("image_std", &mut c.image_std),
        ] {
            match m.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) if a.len() == 3 => {
                    for (d, v) in dst.iter_mut().zip(a) {
                        *d = v
                            .as_f64()
                            .ok_or_else(|| config_err(&path, format!("`{key}` is not numeric")))?
                            as f32;
                    }
                }
                Some(Value::Number(n)) => {
                    let v = n.as_f64().unwrap_or(0.0) as f32;
                    *dst = [v; 3];
                }
                Some(_) => return Err(config_err(&path, format!("`{key}` must have 3 values"))),
            }
        }
        if c.do_normalize && c.image_std.contains(&0.0) {
            return Err(config_err(&path, "`image_std` has a zero"));
        }
        if (c.do_resize && c.shortest_edge == 0)
            || (c.do_center_crop && (c.crop_size.0 == 0 || c.crop_size.1 == 0))
        {
            return Err(config_err(&path, "zero `size` or `crop_size`"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_vit_b_32() {
        let c = ClipConfig::from_json_str(r#"{"model_type": "clip"}"#, "config.json").unwrap();
        assert_eq!(c, ClipConfig::vit_b_32());
        assert_eq!(c.text.eos_token_id, 49407);
        assert_eq!(c.vision.num_positions(), 50);
    }

    #[test]
    fn legacy_dict_overrides_and_nulls() {
        let json = r#"{
            "model_type": "clip", "projection_dim": 768,
            "text_config": {"hidden_size": 512, "eos_token_id": 2, "hidden_act": "gelu", "bos_token_id": null},
            "text_config_dict": {"hidden_size": 768, "num_attention_heads": 12},
            "vision_config": {"patch_size": 14, "image_size": 336, "hidden_act": "gelu_pytorch_tanh",
                              "layer_norm_eps": 1e-6},
            "vision_config_dict": null
        }"#;
        let c = ClipConfig::from_json_str(json, "config.json").unwrap();
        assert_eq!(c.text.hidden_size, 768);
        assert_eq!(c.text.num_attention_heads, 12);
        assert_eq!(c.text.eos_token_id, 2);
        assert_eq!(c.text.bos_token_id, 49406);
        assert_eq!(c.text.hidden_act, Activation::Gelu);
        assert_eq!(c.vision.hidden_act, Activation::GeluTanh);
        assert_eq!(c.vision.num_positions(), 24 * 24 + 1);
        assert_eq!(c.vision.layer_norm_eps, 1e-6);
        assert_eq!(c.projection_dim, 768);
    }

    #[test]
    fn bad_configs_are_errors() {
        for json in [
            r#"{"model_type": "bert"}"#,
            r#"{"text_config": {"hidden_size": 100, "num_attention_heads": 8}}"#,
            r#"{"vision_config": {"hidden_act": "relu"}}"#,
            r#"[1, 2]"#,
        ] {
            assert!(ClipConfig::from_json_str(json, "c.json").is_err(), "{json}");
        }
    }

    #[test]
    fn preprocessor_forms() {
        let p = PreprocessorConfig::from_json_str(
            r#"{"size": 256, "crop_size": 224, "resample": 2, "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5]}"#,
            "p.json",
            224,
        )
        .unwrap();
        assert_eq!(p.shortest_edge, 256);
        assert_eq!(p.crop_size, (224, 224));
        assert_eq!(p.resample, Resample::Bilinear);
        assert_eq!(p.image_mean, [0.5; 3]);
        let p = PreprocessorConfig::from_json_str("{}", "p.json", 336).unwrap();
        assert_eq!(p, PreprocessorConfig::for_image_size(336));
        assert!(PreprocessorConfig::from_json_str(r#"{"size": {"height": 3}}"#, "p", 224).is_err());
    }
}
