//! Drawing a scene: background pattern, tiny-skia paths for the shapes, then the global style.

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tiny_skia::{FillRule, LineJoin, Paint, Path, PathBuilder, Pixmap, Stroke, Transform};

use crate::grammar::{Background, BackgroundKind, Fill, Scene, Shape, Style};
use crate::layout::{self, Placed};

/// Amplitude of the `noisy` style, per channel.
const NOISE_AMPLITUDE: i16 = 40;
/// Gaussian sigma of the `blurred` style, in pixels at 64 px (scaled with the image).
const BLUR_SIGMA_AT_64: f32 = 1.0;
/// Contrast gain of the `high contrast` style around mid-gray.
const CONTRAST_GAIN: f32 = 1.6;

/// The RNG seed of one rendering: a hash of the world seed, the prompt and the variant.
fn render_seed(seed: u64, scene: &Scene, variant: u64) -> u64 {
    let prompt_hash = xxhash_rust::xxh3::xxh3_64_with_seed(scene.prompt().as_bytes(), seed);
    splitmix(prompt_hash ^ splitmix(variant.wrapping_add(0x9E37_79B9_7F4A_7C15)))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The integer upscale factor of the pixel-art style at `size` px (2 at 64 px, 4 at 128 px).
pub fn pixel_art_factor(size: u32) -> u32 {
    ((size as f32 / 32.0).round() as u32).max(2)
}

/// Renders `scene` at `size × size`; deterministic in `(seed, scene, variant)`.
pub(crate) fn render(seed: u64, scene: &Scene, variant: u64, size: u32) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(render_seed(seed, scene, variant));
    let pixel_art = scene.style == Style::PixelArt;
    let factor = if pixel_art { pixel_art_factor(size) } else { 1 };
    let canvas = size.div_ceil(factor);
    let Some(mut pixmap) = Pixmap::new(canvas, canvas) else {
        return RgbImage::new(size, size);
    };
    draw_background(&mut pixmap, scene.background, &mut rng);
    for placed in layout::place(scene, &mut rng) {
        if let Some(object) = scene.objects.get(placed.group) {
            draw_object(
                &mut pixmap,
                object.shape,
                object.colour.rgb(),
                object.fill,
                placed,
                !pixel_art,
            );
        }
    }
    let small = to_rgb(&pixmap);
    let mut img = if factor > 1 {
        RgbImage::from_fn(size, size, |x, y| *small.get_pixel(x / factor, y / factor))
    } else {
        small
    };
    match scene.style {
        Style::None | Style::PixelArt => {}
        Style::Blurred => blur(&mut img, BLUR_SIGMA_AT_64 * size as f32 / 64.0),
        Style::Noisy => {
            for v in img.iter_mut() {
                let n = rng.random_range(-NOISE_AMPLITUDE..=NOISE_AMPLITUDE);
                *v = (*v as i16 + n).clamp(0, 255) as u8;
            }
        }
        Style::HighContrast => {
            for v in img.iter_mut() {
                *v = ((*v as f32 - 128.0) * CONTRAST_GAIN + 128.0)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

fn to_rgb(pixmap: &Pixmap) -> RgbImage {
    // Every pixel is opaque, so premultiplied RGBA equals RGB.
    let data: Vec<u8> = pixmap
        .data()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    RgbImage::from_raw(pixmap.width(), pixmap.height(), data)
        .unwrap_or_else(|| RgbImage::new(pixmap.width(), pixmap.height()))
}

fn lerp(a: [u8; 3], b: [u8; 3], t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|i| (a[i] as f32 + (b[i] as f32 - a[i] as f32) * t).round() as u8)
}

/// Fills the pixmap with the background pattern; pattern scale, angle and phase are jittered.
fn draw_background<R: Rng>(pixmap: &mut Pixmap, bg: Background, rng: &mut R) {
    let n = pixmap.width() as f32;
    let main = bg.colour.rgb();
    let tint = bg.colour.tint();
    let width = pixmap.width() as usize;
    // Pattern parameters (units of the image side).
    let theta = match bg.kind {
        BackgroundKind::Gradient => rng.random_range(0.0..std::f32::consts::TAU),
        BackgroundKind::Striped => [0.0f32, 45.0, 90.0, 135.0][rng.random_range(0..4)].to_radians(),
        _ => 0.0,
    };
    let period = rng.random_range(0.11f32..0.16);
    let phase_x = rng.random_range(0.0f32..1.0);
    let phase_y = rng.random_range(0.0f32..1.0);
    let (c, s) = (theta.cos(), theta.sin());
    let dot_radius_px = (0.24 * period * n).max(0.8);
    for (i, px) in pixmap.data_mut().chunks_exact_mut(4).enumerate() {
        let u = ((i % width) as f32 + 0.5) / n;
        let v = ((i / width) as f32 + 0.5) / n;
        let rgb = match bg.kind {
            BackgroundKind::Plain => main,
            BackgroundKind::Gradient => {
                let t = 0.5 + ((u - 0.5) * c + (v - 0.5) * s) / (c.abs() + s.abs());
                lerp(main, tint, t)
            }
            BackgroundKind::Striped => {
                let t = (u * c + v * s) / period + phase_x;
                if t.rem_euclid(1.0) < 0.5 { main } else { tint }
            }
            BackgroundKind::Checkered => {
                let a = (u / period + phase_x).floor() as i64;
                let b = (v / period + phase_y).floor() as i64;
                if (a + b).rem_euclid(2) == 0 {
                    main
                } else {
                    tint
                }
            }
            BackgroundKind::Dotted => {
                let fu = (u / period + phase_x).rem_euclid(1.0) - 0.5;
                let fv = (v / period + phase_y).rem_euclid(1.0) - 0.5;
                let dist_px = (fu * fu + fv * fv).sqrt() * period * n;
                lerp(main, tint, dot_radius_px - dist_px + 0.5)
            }
        };
        px.copy_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
    }
}

fn polygon(points: &[(f32, f32)]) -> Option<Path> {
    let mut pb = PathBuilder::new();
    let (&(x0, y0), rest) = points.split_first()?;
    pb.move_to(x0, y0);
    for &(x, y) in rest {
        pb.line_to(x, y);
    }
    pb.close();
    pb.finish()
}

fn regular(n: usize, start_deg: f32, radius: f32, dy: f32) -> Vec<(f32, f32)> {
    (0..n)
        .map(|i| {
            let a = (start_deg + 360.0 * i as f32 / n as f32).to_radians();
            (radius * a.cos(), radius * a.sin() + dy)
        })
        .collect()
}

/// The outline of a shape in unit coordinates: centred on the origin, within `[-1, 1]²`.
pub(crate) fn shape_path(shape: Shape) -> Option<Path> {
    match shape {
        Shape::Circle => PathBuilder::from_circle(0.0, 0.0, 1.0),
        Shape::Ring => {
            let mut pb = PathBuilder::new();
            pb.push_circle(0.0, 0.0, 1.0);
            pb.push_circle(0.0, 0.0, 0.55);
            pb.finish()
        }
        Shape::Square => polygon(&[(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]),
        Shape::Triangle => polygon(&[(0.0, -0.85), (0.98, 0.85), (-0.98, 0.85)]),
        Shape::Star => {
            let pts: Vec<(f32, f32)> = (0..10)
                .map(|i| {
                    let r = if i % 2 == 0 { 1.0 } else { 0.5 };
                    let a = (-90.0 + 36.0 * i as f32).to_radians();
                    (r * a.cos(), r * a.sin() + 0.095)
                })
                .collect();
            polygon(&pts)
        }
        Shape::Cross => {
            let (a, w) = (1.0, 0.32);
            polygon(&[
                (-w, -a),
                (w, -a),
                (w, -w),
                (a, -w),
                (a, w),
                (w, w),
                (w, a),
                (-w, a),
                (-w, w),
                (-a, w),
                (-a, -w),
                (-w, -w),
            ])
        }
        Shape::Heart => {
            let pts: Vec<(f32, f32)> = (0..48)
                .map(|i| {
                    let t = std::f32::consts::TAU * i as f32 / 48.0;
                    let x = 16.0 * t.sin().powi(3);
                    let y = 13.0 * t.cos()
                        - 5.0 * (2.0 * t).cos()
                        - 2.0 * (3.0 * t).cos()
                        - (4.0 * t).cos();
                    (x / 16.5, (-y - 2.5) / 16.5)
                })
                .collect();
            polygon(&pts)
        }
        Shape::Diamond => polygon(&[(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)]),
        Shape::Hexagon => polygon(&regular(6, 0.0, 1.0, 0.0)),
        Shape::Pentagon => polygon(&regular(5, -90.0, 1.0, 0.095)),
        Shape::Crescent => {
            // Disc of radius 1 minus a disc of radius r2 centred at (c, 0); opens to the right.
            let (c, r2) = (0.5f32, 0.85f32);
            let xi = (1.0 - r2 * r2 + c * c) / (2.0 * c);
            let yi = (1.0 - xi * xi).max(0.0).sqrt();
            let phi = yi.atan2(xi);
            let psi = yi.atan2(xi - c);
            let shift = (1.0 - xi) / 2.0;
            let steps = 24;
            let mut pts = Vec::with_capacity(2 * steps + 2);
            for i in 0..=steps {
                let a = phi + (std::f32::consts::TAU - 2.0 * phi) * i as f32 / steps as f32;
                pts.push((a.cos() + shift, a.sin()));
            }
            for i in 0..=steps {
                let a = (std::f32::consts::TAU - psi)
                    - (std::f32::consts::TAU - 2.0 * psi) * i as f32 / steps as f32;
                pts.push((c + r2 * a.cos() + shift, r2 * a.sin()));
            }
            polygon(&pts)
        }
        Shape::Arrow => polygon(&[
            (-1.0, -0.22),
            (0.15, -0.22),
            (0.15, -0.62),
            (1.0, 0.0),
            (0.15, 0.62),
            (0.15, 0.22),
            (-1.0, 0.22),
        ]),
        Shape::Semicircle => {
            let steps = 24;
            let pts: Vec<(f32, f32)> = (0..=steps)
                .map(|i| {
                    let a = std::f32::consts::PI * (1.0 + i as f32 / steps as f32);
                    (a.cos(), a.sin() + 0.5)
                })
                .collect();
            polygon(&pts)
        }
        Shape::Bolt => polygon(&[
            (-0.025, -1.0),
            (0.575, -1.0),
            (0.175, -0.2),
            (0.525, -0.2),
            (-0.425, 1.0),
            (-0.175, 0.15),
            (-0.575, 0.15),
        ]),
    }
}

fn draw_object(
    pixmap: &mut Pixmap,
    shape: Shape,
    rgb: [u8; 3],
    fill: Fill,
    p: Placed,
    anti_alias: bool,
) {
    let n = pixmap.width() as f32;
    let radius_px = p.d * n / 2.0;
    let ts = Transform::from_scale(radius_px, radius_px)
        .post_rotate(p.angle)
        .post_translate(p.cx * n, p.cy * n);
    let Some(path) = shape_path(shape).and_then(|path| path.transform(ts)) else {
        return;
    };
    let mut paint = Paint::default();
    paint.set_color_rgba8(rgb[0], rgb[1], rgb[2], 255);
    paint.anti_alias = anti_alias;
    match fill {
        Fill::Filled => {
            pixmap.fill_path(
                &path,
                &paint,
                FillRule::EvenOdd,
                Transform::identity(),
                None,
            );
        }
        Fill::Outlined => {
            let stroke = Stroke {
                width: (0.09 * 2.0 * radius_px).max(1.25),
                line_join: LineJoin::Round,
                ..Stroke::default()
            };
            pixmap.stroke_path(&path, &paint, &stroke, Transform::identity(), None);
        }
    }
}

/// Separable Gaussian blur with clamped edges.
fn blur(img: &mut RgbImage, sigma: f32) {
    let radius = (3.0 * sigma).ceil().max(1.0) as i64;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = (img.width() as i64, img.height() as i64);
    let src: Vec<f32> = img.iter().map(|&v| v as f32).collect();
    let mut tmp = vec![0.0f32; src.len()];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..3 {
                let mut acc = 0.0;
                for (k, wgt) in kernel.iter().enumerate() {
                    let xx = (x + k as i64 - radius).clamp(0, w - 1);
                    acc += wgt * src[((y * w + xx) * 3 + ch) as usize];
                }
                tmp[((y * w + x) * 3 + ch) as usize] = acc;
            }
        }
    }
    for (i, out) in img.iter_mut().enumerate() {
        let i = i as i64;
        let (pix, ch) = (i / 3, i % 3);
        let (x, y) = (pix % w, pix / w);
        let mut acc = 0.0;
        for (k, wgt) in kernel.iter().enumerate() {
            let yy = (y + k as i64 - radius).clamp(0, h - 1);
            acc += wgt * tmp[((yy * w + x) * 3 + ch) as usize];
        }
        *out = acc.round().clamp(0.0, 255.0) as u8;
    }
}
