//! The training curve of the world CLIP, drawn with tiny-skia (lines) and font8x8 (labels):
//! left panel the loss, right panel the in-batch accuracy and the validation retrieval top-1.

use std::path::Path;

use img2prompt::{Error, Result};
use tiny_skia::{Color, Paint, PathBuilder, Pixmap, Rect, Stroke, Transform};

/// One training step's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    /// Step (1-based).
    pub step: usize,
    /// Symmetric InfoNCE loss.
    pub loss: f64,
    /// In-batch image -> text accuracy.
    pub accuracy: f64,
    /// `ln` of the logit scale.
    pub logit_scale: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Seconds since training started.
    pub elapsed_s: f64,
}

/// One validation retrieval measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalPoint {
    /// Step (1-based).
    pub step: usize,
    /// Image -> text top-1.
    pub i2t: f64,
    /// Text -> image top-1.
    pub t2i: f64,
}

const W: u32 = 960;
const H: u32 = 400;
const PANEL_W: f32 = 400.0;
const TOP: f32 = 40.0;
const PLOT_H: f32 = 300.0;

fn rgb(r: u8, g: u8, b: u8) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color(Color::from_rgba8(r, g, b, 255));
    p.anti_alias = true;
    p
}

/// Draws `text` at `(x, y)` (top-left) with the 8x8 font, `scale` pixels per font pixel.
fn text(pix: &mut Pixmap, x: f32, y: f32, s: &str, color: (u8, u8, u8), scale: f32) {
    use font8x8::UnicodeFonts;
    let paint = rgb(color.0, color.1, color.2);
    for (k, ch) in s.chars().enumerate() {
        let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else {
            continue;
        };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let px = x + (k as f32 * 8.0 + col as f32) * scale;
                    let py = y + row as f32 * scale;
                    if let Some(r) = Rect::from_xywh(px, py, scale, scale) {
                        pix.fill_rect(r, &paint, Transform::identity(), None);
                    }
                }
            }
        }
    }
}

/// Exponential moving average (the raw series is drawn faintly behind it).
fn smooth(v: &[f64], alpha: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(v.len());
    let mut acc: Option<f64> = None;
    for &x in v {
        let y = match acc {
            None => x,
            Some(a) => a + alpha * (x - a),
        };
        acc = Some(y);
        out.push(y);
    }
    out
}

struct Panel {
    x0: f32,
    y_max: f64,
    steps: usize,
}

impl Panel {
    fn at(&self, step: usize, y: f64) -> (f32, f32) {
        let fx = step as f32 / self.steps.max(1) as f32;
        let fy = (y / self.y_max).clamp(0.0, 1.0) as f32;
        (self.x0 + fx * PANEL_W, TOP + PLOT_H * (1.0 - fy))
    }

    fn frame(&self, pix: &mut Pixmap, title: &str, ticks: &[f64], fmt: fn(f64) -> String) {
        let axis = rgb(60, 60, 60);
        let grid = rgb(225, 225, 225);
        for &t in ticks {
            let (_, y) = self.at(0, t);
            line(pix, &[(self.x0, y), (self.x0 + PANEL_W, y)], &grid, 1.0);
            text(pix, self.x0 - 44.0, y - 4.0, &fmt(t), (60, 60, 60), 1.0);
        }
        line(
            pix,
            &[
                (self.x0, TOP),
                (self.x0, TOP + PLOT_H),
                (self.x0 + PANEL_W, TOP + PLOT_H),
            ],
            &axis,
            1.5,
        );
        for k in 0..=4 {
            let s = self.steps * k / 4;
            let (x, _) = self.at(s, 0.0);
            let label = s.to_string();
            text(
                pix,
                x - label.len() as f32 * 4.0,
                TOP + PLOT_H + 6.0,
                &label,
                (60, 60, 60),
                1.0,
            );
        }
        text(pix, self.x0, 12.0, title, (20, 20, 20), 2.0);
        text(
            pix,
            self.x0 + PANEL_W - 32.0,
            TOP + PLOT_H + 20.0,
            "step",
            (60, 60, 60),
            1.0,
        );
    }
}

fn line(pix: &mut Pixmap, pts: &[(f32, f32)], paint: &Paint, width: f32) {
    if pts.len() < 2 {
        return;
    }
    let mut pb = PathBuilder::new();
    pb.move_to(pts[0].0, pts[0].1);
    for p in &pts[1..] {
        pb.line_to(p.0, p.1);
    }
    if let Some(path) = pb.finish() {
        let stroke = Stroke {
            width,
            ..Stroke::default()
        };
        pix.stroke_path(&path, paint, &stroke, Transform::identity(), None);
    }
}

fn dot(pix: &mut Pixmap, (x, y): (f32, f32), paint: &Paint) {
    if let Some(path) = PathBuilder::from_circle(x, y, 3.5) {
        pix.fill_path(
            &path,
            paint,
            tiny_skia::FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
}

/// Draws the curve: loss (raw and smoothed), in-batch accuracy (smoothed), validation
/// retrieval top-1 both ways, and the final test numbers in the legend.
pub fn draw(steps: &[StepPoint], evals: &[EvalPoint], test: (f64, f64)) -> Result<Pixmap> {
    let mut pix =
        Pixmap::new(W, H).ok_or_else(|| Error::Backend("cannot allocate the plot".into()))?;
    pix.fill(Color::WHITE);
    let n = steps.last().map(|p| p.step).unwrap_or(1).max(1);
    let loss: Vec<f64> = steps.iter().map(|p| p.loss).collect();
    let y_max = loss.iter().copied().fold(0.0, f64::max).max(1e-3) * 1.05;
    let left = Panel {
        x0: 60.0,
        y_max,
        steps: n,
    };
    let ticks: Vec<f64> = (0..=4).map(|k| y_max * k as f64 / 4.0).collect();
    left.frame(&mut pix, "loss", &ticks, |t| format!("{t:.2}"));
    let raw: Vec<(f32, f32)> = steps.iter().map(|p| left.at(p.step, p.loss)).collect();
    line(&mut pix, &raw, &rgb(190, 205, 235), 1.0);
    let sm = smooth(&loss, 0.05);
    let pts: Vec<(f32, f32)> = steps
        .iter()
        .zip(&sm)
        .map(|(p, &y)| left.at(p.step, y))
        .collect();
    line(&mut pix, &pts, &rgb(30, 80, 200), 2.0);

    let right = Panel {
        x0: 540.0,
        y_max: 1.0,
        steps: n,
    };
    let ticks: Vec<f64> = (0..=4).map(|k| k as f64 / 4.0).collect();
    right.frame(&mut pix, "accuracy", &ticks, |t| format!("{t:.2}"));
    let acc: Vec<f64> = steps.iter().map(|p| p.accuracy).collect();
    let sm = smooth(&acc, 0.05);
    let pts: Vec<(f32, f32)> = steps
        .iter()
        .zip(&sm)
        .map(|(p, &y)| right.at(p.step, y))
        .collect();
    line(&mut pix, &pts, &rgb(30, 150, 60), 2.0);
    let i2t: Vec<(f32, f32)> = evals.iter().map(|e| right.at(e.step, e.i2t)).collect();
    let t2i: Vec<(f32, f32)> = evals.iter().map(|e| right.at(e.step, e.t2i)).collect();
    line(&mut pix, &i2t, &rgb(210, 90, 20), 1.5);
    line(&mut pix, &t2i, &rgb(150, 40, 170), 1.5);
    for &p in &i2t {
        dot(&mut pix, p, &rgb(210, 90, 20));
    }
    for &p in &t2i {
        dot(&mut pix, p, &rgb(150, 40, 170));
    }
    let legend = [
        ("in-batch acc (img->txt)", (30, 150, 60)),
        ("val top-1 img->txt", (210, 90, 20)),
        ("val top-1 txt->img", (150, 40, 170)),
    ];
    for (k, (label, c)) in legend.iter().enumerate() {
        let y = TOP + 8.0 + 14.0 * k as f32;
        if let Some(r) = Rect::from_xywh(right.x0 + 10.0, y, 10.0, 8.0) {
            pix.fill_rect(r, &rgb(c.0, c.1, c.2), Transform::identity(), None);
        }
        text(&mut pix, right.x0 + 26.0, y, label, (40, 40, 40), 1.0);
    }
    let summary = format!("test top-1: img->txt {:.3}, txt->img {:.3}", test.0, test.1);
    text(
        &mut pix,
        right.x0 + 10.0,
        TOP + 8.0 + 14.0 * 3.0,
        &summary,
        (40, 40, 40),
        1.0,
    );
    Ok(pix)
}

/// Saves the plot as PNG through a temporary file.
pub fn save_png(pix: &Pixmap, path: &Path) -> Result<()> {
    // The canvas is opaque, so premultiplied RGBA is plain RGBA.
    let rgb: Vec<u8> = pix
        .data()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let img = image::RgbImage::from_raw(pix.width(), pix.height(), rgb)
        .ok_or_else(|| Error::Backend("plot buffer has the wrong size".into()))?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Backend(format!("{}: {e}", path.display())))?;
    crate::train_world_clip::write_atomic(path, &bytes)
}
