//! Image decoding and the preprocessing of HF `CLIPImageProcessor` (its PIL path):
//! RGB conversion, shortest-edge resize with PIL's resampling filters (re-implemented here
//! with PIL's fixed-point arithmetic, so results are bit-exact on RGB input), center crop,
//! rescale and normalisation.

use std::io::Cursor;
use std::ops::Range;
use std::path::Path;

use image::{DynamicImage, ImageReader, Limits, RgbImage};
use rayon::prelude::*;

use crate::config::{PreprocessorConfig, Resample};
use crate::error::{Error, Result};

/// Default upper bound on the pixels of a decoded image (100 megapixels).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Decodes images and turns them into the normalised `[3, h, w]` tensors the vision tower takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePreprocessor {
    config: PreprocessorConfig,
    max_pixels: u64,
}

impl ImagePreprocessor {
    /// A preprocessor following `config`, refusing images above [`DEFAULT_MAX_PIXELS`].
    pub fn new(config: PreprocessorConfig) -> Self {
        Self {
            config,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    /// Changes the largest accepted image, in pixels (width x height).
    pub fn with_max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &PreprocessorConfig {
        &self.config
    }

    /// The `(height, width)` of the tensors this preprocessor produces;
    /// `None` when the size depends on the input (no center crop).
    pub fn output_size(&self) -> Option<(usize, usize)> {
        self.config.do_center_crop.then_some(self.config.crop_size)
    }

    /// Reads and decodes an image file with this preprocessor's pixel limit; see
    /// [`decode_image_file`].
    pub fn decode_file(&self, path: impl AsRef<Path>) -> Result<DynamicImage> {
        decode_image_file(path, self.max_pixels)
    }

    /// Decodes an encoded image held in memory with this preprocessor's pixel limit; see
    /// [`decode_image_bytes`].
    pub fn decode_bytes(&self, bytes: &[u8], name: &str) -> Result<DynamicImage> {
        decode_image_bytes(bytes, name, self.max_pixels)
    }

    /// Converts to 8-bit RGB as PIL's `convert("RGB")` does: gray is replicated, alpha is
    /// dropped (not composited), 16-bit samples are scaled to 8 bits.
    pub fn to_rgb(image: &DynamicImage) -> RgbImage {
        match image {
            DynamicImage::ImageRgb8(rgb) => rgb.clone(),
            other => other.to_rgb8(),
        }
    }

    /// Resize (shortest edge, PIL filter) and center crop, still 8-bit: the image HF would
    /// rescale and normalise. `name` is used in error messages.
    ///
    /// With center crop on, only the part of the resized image that the crop keeps is computed
    /// (bit-identical: each output pixel of the separable resize depends on its own filter
    /// window only), so the work and memory are bounded by the input and the crop, whatever the
    /// aspect ratio: a 100000x1 image would otherwise resize to 22400000x224 (15 GB) first.
    /// Without center crop the resized image itself must stay within the pixel limit.
    pub fn resize_and_crop(&self, rgb: &RgbImage, name: &str) -> Result<RgbImage> {
        let c = &self.config;
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let fail = |message: String| Error::Image {
            name: name.to_string(),
            message,
        };
        if w == 0 || h == 0 {
            return Err(fail(format!("image is {w}x{h}")));
        }
        let (nh, nw) = if c.do_resize {
            shortest_edge_size(h, w, c.shortest_edge)
        } else {
            (h, w)
        };
        if nh == 0 || nw == 0 {
            return Err(fail(format!("image {w}x{h} would resize to {nw}x{nh}")));
        }
        if !c.do_center_crop {
            if (nh as u64).saturating_mul(nw as u64) > self.max_pixels {
                return Err(fail(format!(
                    "image {w}x{h} would resize to {nw}x{nh}, more than the limit of {} pixels",
                    self.max_pixels
                )));
            }
            return Ok(if c.do_resize {
                resize(rgb, nw, nh, c.resample)
            } else {
                rgb.clone()
            });
        }
        let (crop_h, crop_w) = c.crop_size;
        let xs = crop_window(nw, crop_w);
        let ys = crop_window(nh, crop_h);
        let window = if c.do_resize {
            resize_window(rgb, nw, nh, c.resample, xs, ys)
        } else {
            sub_image(rgb, xs, ys)
        };
        Ok(center_crop(&window, crop_h, crop_w))
    }

    /// Rescales and normalises an 8-bit image into a channel-first `[3, h, w]` buffer.
    pub fn normalize(&self, rgb: &RgbImage) -> Vec<f32> {
        let c = &self.config;
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let plane = w * h;
        let mut out = vec![0f32; 3 * plane];
        let scale = if c.do_rescale { c.rescale_factor } else { 1.0 };
        let (mean, std) = if c.do_normalize {
            (c.image_mean, c.image_std)
        } else {
            ([0.0; 3], [1.0; 3])
        };
        for (i, px) in rgb.pixels().enumerate() {
            for ch in 0..3 {
                // HF rescales in float64, then normalises in float32.
                let v = (f64::from(px.0[ch]) * scale) as f32;
                out[ch * plane + i] = (v - mean[ch]) / std[ch];
            }
        }
        out
    }

    /// The whole pipeline for one decoded image: `[3, h, w]` floats.
    pub fn preprocess(&self, image: &DynamicImage, name: &str) -> Result<Vec<f32>> {
        check_dimensions(image.width(), image.height(), self.max_pixels).map_err(|message| {
            Error::Image {
                name: name.to_string(),
                message,
            }
        })?;
        let rgb = Self::to_rgb(image);
        let cropped = self.resize_and_crop(&rgb, name)?;
        Ok(self.normalize(&cropped))
    }

    /// Preprocesses decoded images in parallel (rayon) into one `[n, 3, h, w]` buffer; all
    /// images must come out the same size (they do whenever center crop is on).
    pub fn preprocess_batch(&self, images: &[DynamicImage]) -> Result<(Vec<f32>, [usize; 4])> {
        let items: Vec<Result<Prepared>> = images
            .par_iter()
            .enumerate()
            .map(|(i, img)| {
                let name = format!("image #{i}");
                let v = self.preprocess(img, &name)?;
                let hw = self.output_hw(img);
                Ok((v, hw))
            })
            .collect();
        stack(items)
    }

    /// Decodes and preprocesses files in parallel (rayon) into one `[n, 3, h, w]` buffer.
    /// The first failing file (in input order) is reported by name.
    pub fn preprocess_files<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
    ) -> Result<(Vec<f32>, [usize; 4])> {
        let items: Vec<Result<Prepared>> = paths
            .par_iter()
            .map(|p| {
                let p = p.as_ref();
                let img = self.decode_file(p)?;
                let v = self.preprocess(&img, &p.display().to_string())?;
                let hw = self.output_hw(&img);
                Ok((v, hw))
            })
            .collect();
        stack(items)
    }

    fn output_hw(&self, img: &DynamicImage) -> (usize, usize) {
        let c = &self.config;
        if c.do_center_crop {
            return c.crop_size;
        }
        let (w, h) = (img.width() as usize, img.height() as usize);
        if c.do_resize {
            shortest_edge_size(h, w, c.shortest_edge)
        } else {
            (h, w)
        }
    }
}

/// Reads and decodes an image file (format guessed from its content), refusing images of more
/// than `max_pixels` pixels before their pixels are allocated. The one decoding path of the
/// workspace: every command and service reports a bad image with the same message. Errors name
/// the file: unreadable, not an image, truncated, 0x0 or larger than the limit.
pub fn decode_image_file(path: impl AsRef<Path>, max_pixels: u64) -> Result<DynamicImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image_bytes(&bytes, &path.display().to_string(), max_pixels)
}

/// Decodes an encoded image held in memory (see [`decode_image_file`]); `name` is used in
/// error messages.
pub fn decode_image_bytes(bytes: &[u8], name: &str, max_pixels: u64) -> Result<DynamicImage> {
    let err = |message: String| Error::Image {
        name: name.to_string(),
        message,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    match reader.format() {
        None => return Err(err("not a recognised image format".into())),
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(err(
                "truncated JPEG (no end-of-image marker after the last scan)".into(),
            ));
        }
        Some(_) => {}
    }
    let (w, h) = reader.into_dimensions().map_err(|e| err(e.to_string()))?;
    check_dimensions(w, h, max_pixels).map_err(err)?;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(16).max(64 << 20));
    reader.limits(limits);
    let image = reader.decode().map_err(|e| err(e.to_string()))?;
    check_dimensions(image.width(), image.height(), max_pixels).map_err(err)?;
    Ok(image)
}

fn check_dimensions(w: u32, h: u32, max_pixels: u64) -> std::result::Result<(), String> {
    if w == 0 || h == 0 {
        return Err(format!("image is {w}x{h}"));
    }
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(format!(
            "image is {w}x{h}, more than the limit of {max_pixels} pixels"
        ));
    }
    Ok(())
}

/// One preprocessed image: `[3, h, w]` values and `(h, w)`.
type Prepared = (Vec<f32>, (usize, usize));

/// Whether a JPEG stream has an end-of-image marker after its last start-of-scan. Entropy-coded
/// data never contains `FF D9` / `FF DA` (0xFF bytes are stuffed), so a file cut inside its
/// scan data has none; the decoder would otherwise fill the missing part with gray, where
/// PIL reports "image file is truncated".
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

fn stack(items: Vec<Result<Prepared>>) -> Result<(Vec<f32>, [usize; 4])> {
    let n = items.len();
    let mut out = Vec::new();
    let mut shape: Option<(usize, usize)> = None;
    for item in items {
        let (v, hw) = item?;
        match shape {
            None => {
                shape = Some(hw);
                out.reserve(n * v.len());
            }
            Some(s) if s != hw => {
                return Err(Error::InvalidInput(format!(
                    "images preprocess to different sizes ({s:?} vs {hw:?}); enable center crop"
                )));
            }
            _ => {}
        }
        out.extend_from_slice(&v);
    }
    let (h, w) = shape.unwrap_or((0, 0));
    Ok((out, [n, 3, h, w]))
}

/// HF's `get_resize_output_image_size(default_to_square=False)`: the short side becomes `size`,
/// the long side `int(size * long / short)`. Returns `(height, width)`.
pub fn shortest_edge_size(height: usize, width: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = ((size * long) as f64 / short as f64) as usize;
    if width <= height {
        (new_long, size)
    } else {
        (size, new_long)
    }
}

/// HF's numpy `center_crop` to `(crop_h, crop_w)`, zero-padding when the image is smaller.
pub fn center_crop(img: &RgbImage, crop_h: usize, crop_w: usize) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (ch, cw) = (crop_h as i64, crop_w as i64);
    let top = (h - ch).div_euclid(2);
    let left = (w - cw).div_euclid(2);
    if top >= 0 && left >= 0 {
        let mut out = RgbImage::new(crop_w as u32, crop_h as u32);
        for y in 0..ch {
            for x in 0..cw {
                let p = *img.get_pixel((left + x) as u32, (top + y) as u32);
                out.put_pixel(x as u32, y as u32, p);
            }
        }
        return out;
    }
    // Pad to at least the crop size (image centred, ceil of the half padding), then crop.
    let nh = ch.max(h);
    let nw = cw.max(w);
    let top_pad = (nh - h + 1) / 2;
    let left_pad = (nw - w + 1) / 2;
    let (top, left) = (top + top_pad, left + left_pad);
    let y0 = top.max(0);
    let y1 = (top + ch).min(nh);
    let x0 = left.max(0);
    let x1 = (left + cw).min(nw);
    let mut out = RgbImage::new((x1 - x0) as u32, (y1 - y0) as u32);
    for y in y0..y1 {
        for x in x0..x1 {
            let (sy, sx) = (y - top_pad, x - left_pad);
            if sy >= 0 && sy < h && sx >= 0 && sx < w {
                let p = *img.get_pixel(sx as u32, sy as u32);
                out.put_pixel((x - x0) as u32, (y - y0) as u32, p);
            }
        }
    }
    out
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output index in `outputs`, the
/// first input index and the fixed-point weights.
fn coefficients(
    in_size: usize,
    out_size: usize,
    resample: Resample,
    outputs: Range<usize>,
) -> Vec<(usize, Vec<i32>)> {
    let (filter, support): (fn(f64) -> f64, f64) = match resample {
        Resample::Bicubic => (bicubic, 2.0),
        Resample::Bilinear | Resample::Nearest => (triangle, 1.0),
    };
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ss = 1.0 / filterscale;
    outputs
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let mut k: Vec<f64> = (0..n)
                .map(|x| filter(((x + xmin) as f64 - center + 0.5) * ss))
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                for v in &mut k {
                    *v /= ww;
                }
            }
            let one = f64::from(1u32 << PRECISION_BITS);
            let ki = k
                .iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * one) as i32
                    } else {
                        (0.5 + v * one) as i32
                    }
                })
                .collect();
            (xmin, ki)
        })
        .collect()
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes as PIL's `Image.resize(size, resample)` on an RGB image: two separable passes,
/// horizontal first, 8-bit fixed-point weights and 8-bit intermediate.
pub fn resize(img: &RgbImage, new_w: usize, new_h: usize, resample: Resample) -> RgbImage {
    resize_window(img, new_w, new_h, resample, 0..new_w, 0..new_h)
}

/// The window `xs` x `ys` of the image [`resize`] would make at `new_w` x `new_h`, computed
/// without the rest: the same pixels, with work and memory bounded by the input and the window.
pub fn resize_window(
    img: &RgbImage,
    new_w: usize,
    new_h: usize,
    resample: Resample,
    xs: Range<usize>,
    ys: Range<usize>,
) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (xs, ys) = (xs.start..xs.end.min(new_w), ys.start..ys.end.min(new_h));
    let (ow, oh) = (xs.len(), ys.len());
    if w == new_w && h == new_h {
        return sub_image(img, xs, ys);
    }
    if resample == Resample::Nearest {
        let mut out = RgbImage::new(ow as u32, oh as u32);
        for (oy, y) in ys.clone().enumerate() {
            let sy = (((y as f64 + 0.5) * h as f64 / new_h as f64) as usize).min(h - 1);
            for (ox, x) in xs.clone().enumerate() {
                let sx = (((x as f64 + 0.5) * w as f64 / new_w as f64) as usize).min(w - 1);
                out.put_pixel(ox as u32, oy as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
        return out;
    }
    let half = 1i32 << (PRECISION_BITS - 1);
    // The input rows the vertical pass reads, and its coefficients relative to the first one.
    let (rows, vertical) = if h != new_h {
        let coeffs = coefficients(h, new_h, resample, ys.clone());
        let first = coeffs.iter().map(|(ymin, _)| *ymin).min().unwrap_or(0);
        let last = coeffs
            .iter()
            .map(|(ymin, k)| ymin + k.len())
            .max()
            .unwrap_or(first);
        (first..last.max(first), Some(coeffs))
    } else {
        (ys.clone(), None)
    };
    let src = img.as_raw();
    // Horizontal pass, on those rows only.
    let tmp = if w != new_w {
        let coeffs = coefficients(w, new_w, resample, xs.clone());
        let mut tmp = vec![0u8; ow * rows.len() * 3];
        tmp.par_chunks_mut((ow * 3).max(1))
            .zip(rows.clone().into_par_iter())
            .for_each(|(row, y)| {
                let srow = &src[y * w * 3..(y + 1) * w * 3];
                for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                    let mut ss = [half; 3];
                    for (i, &kv) in k.iter().enumerate() {
                        let p = &srow[(xmin + i) * 3..(xmin + i) * 3 + 3];
                        for c in 0..3 {
                            ss[c] += i32::from(p[c]) * kv;
                        }
                    }
                    for c in 0..3 {
                        row[xx * 3 + c] = clip8(ss[c]);
                    }
                }
            });
        tmp
    } else {
        sub_image(img, xs.clone(), rows.clone()).into_raw()
    };
    // Vertical pass.
    let out = match vertical {
        Some(coeffs) => {
            let mut out = vec![0u8; ow * oh * 3];
            out.par_chunks_mut((ow * 3).max(1))
                .zip(coeffs.par_iter())
                .for_each(|(row, (ymin, k))| {
                    let base = ymin - rows.start;
                    for xc in 0..ow * 3 {
                        let mut ss = half;
                        for (i, &kv) in k.iter().enumerate() {
                            ss += i32::from(tmp[(base + i) * ow * 3 + xc]) * kv;
                        }
                        row[xc] = clip8(ss);
                    }
                });
            out
        }
        None => tmp,
    };
    RgbImage::from_raw(ow as u32, oh as u32, out).expect("buffer size matches")
}

/// The pixels `xs` x `ys` of `img` (clamped to it).
fn sub_image(img: &RgbImage, xs: Range<usize>, ys: Range<usize>) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (xs, ys) = (
        xs.start.min(w)..xs.end.min(w),
        ys.start.min(h)..ys.end.min(h),
    );
    let mut out = Vec::with_capacity(xs.len() * ys.len() * 3);
    for y in ys.clone() {
        out.extend_from_slice(&img.as_raw()[(y * w + xs.start) * 3..(y * w + xs.end) * 3]);
    }
    RgbImage::from_raw(xs.len() as u32, ys.len() as u32, out).expect("buffer size matches")
}

/// The part of an axis of `len` pixels that HF's center crop to `crop` keeps: the centred
/// `crop` pixels, or the whole axis when it is shorter (the crop then pads).
fn crop_window(len: usize, crop: usize) -> Range<usize> {
    if len >= crop {
        let start = (len - crop) / 2;
        start..start + crop
    } else {
        0..len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_truncates_the_long_side() {
        assert_eq!(shortest_edge_size(300, 451, 224), (224, 336));
        assert_eq!(shortest_edge_size(451, 300, 224), (336, 224));
        assert_eq!(shortest_edge_size(5, 7, 224), (224, 313));
        assert_eq!(shortest_edge_size(224, 224, 224), (224, 224));
    }

    #[test]
    fn center_crop_pads_small_images() {
        let img = RgbImage::from_pixel(3, 2, image::Rgb([9, 9, 9]));
        let out = center_crop(&img, 4, 5);
        assert_eq!((out.width(), out.height()), (5, 4));
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 1).0, [9, 9, 9]);
    }

    /// A deterministic image with detail everywhere.
    fn noise(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) as u8;
            image::Rgb([v, v.wrapping_mul(3), v ^ 0x5a])
        })
    }

    #[test]
    fn windows_are_the_same_pixels_as_the_full_resize() {
        for (w, h, nw, nh) in [
            (37, 23, 61, 50),
            (40, 30, 13, 9),
            (5, 64, 224, 2867),
            (64, 5, 20, 3),
        ] {
            let img = noise(w, h);
            for r in [Resample::Bicubic, Resample::Bilinear, Resample::Nearest] {
                let full = resize(&img, nw, nh, r);
                let (xs, ys) = (nw / 4..nw * 3 / 4, nh / 3..nh / 3 + nh.min(7));
                let window = resize_window(&img, nw, nh, r, xs.clone(), ys.clone());
                assert_eq!(
                    window,
                    sub_image(&full, xs, ys),
                    "{w}x{h} -> {nw}x{nh} {r:?}"
                );
            }
        }
    }

    #[test]
    fn extreme_aspect_ratios_preprocess_within_bounds() {
        let p = ImagePreprocessor::new(PreprocessorConfig::for_image_size(224));
        // 100000x1 would resize to 22400000x224 (15 GB) before cropping.
        let thin = noise(100_000, 1);
        let out = p.resize_and_crop(&thin, "thin.png").unwrap();
        assert_eq!((out.width(), out.height()), (224, 224));
        let tall = noise(1, 20_000);
        let out = p.resize_and_crop(&tall, "tall.png").unwrap();
        assert_eq!((out.width(), out.height()), (224, 224));
        // Without a crop, the resized image itself is bounded.
        let mut config = PreprocessorConfig::for_image_size(224);
        config.do_center_crop = false;
        let p = ImagePreprocessor::new(config).with_max_pixels(1_000_000);
        let err = p
            .resize_and_crop(&thin, "thin.png")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("thin.png") && err.contains("would resize to"),
            "{err}"
        );
    }

    #[test]
    fn resize_keeps_constant_images_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 77]));
        for r in [Resample::Bicubic, Resample::Bilinear, Resample::Nearest] {
            let out = resize(&img, 11, 50, r);
            assert!(out.pixels().all(|p| p.0 == [200, 10, 77]), "{r:?}");
        }
    }
}
