//! A contact sheet: images with their true and predicted prompts, in an 8×8 bitmap font.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// One cell of a contact sheet.
#[derive(Clone, Debug)]
pub struct SheetEntry {
    /// The image.
    pub image: RgbImage,
    /// The true prompt.
    pub truth: String,
    /// The predicted prompt.
    pub predicted: String,
    /// A score to print under the prompts (e.g. the prediction's similarity), if any.
    pub score: Option<f32>,
}

/// Padding around and between a cell's parts, in pixels.
pub const SHEET_PAD: u32 = 4;
/// Height of one text line (8 px glyphs plus 2 px leading).
pub const SHEET_LINE_HEIGHT: u32 = 10;
/// The narrowest text column, in pixels (20 characters).
pub const SHEET_MIN_TEXT_WIDTH: u32 = 160;

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const GRID: Rgb<u8> = Rgb([200, 200, 200]);
const TRUTH: Rgb<u8> = Rgb([20, 20, 20]);
const PREDICTED_RIGHT: Rgb<u8> = Rgb([20, 130, 40]);
const PREDICTED_WRONG: Rgb<u8> = Rgb([190, 30, 30]);
const SCORE: Rgb<u8> = Rgb([40, 60, 150]);

/// Greedy word wrap to `width` characters; words longer than a line are cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        if word.is_empty() {
            continue;
        }
        if line.is_empty() {
            line = word;
        } else if line.chars().count() + 1 + word.chars().count() <= width {
            line.push(' ');
            line.push_str(&word);
        } else {
            lines.push(std::mem::replace(&mut line, word));
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn draw_text(img: &mut RgbImage, x0: u32, y0: u32, text: &str, colour: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (x, y) = (x0 + i as u32 * 8 + col, y0 + row as u32);
                    if x < img.width() && y < img.height() {
                        img.put_pixel(x, y, colour);
                    }
                }
            }
        }
    }
}

/// The text lines of an entry, with their colours.
fn entry_lines(e: &SheetEntry, chars: usize) -> Vec<(String, Rgb<u8>)> {
    let mut out: Vec<(String, Rgb<u8>)> = wrap(&format!("truth: {}", e.truth), chars)
        .into_iter()
        .map(|l| (l, TRUTH))
        .collect();
    let colour = if e.predicted == e.truth {
        PREDICTED_RIGHT
    } else {
        PREDICTED_WRONG
    };
    out.extend(
        wrap(&format!("pred: {}", e.predicted), chars)
            .into_iter()
            .map(|l| (l, colour)),
    );
    if let Some(score) = e.score {
        out.push((format!("score: {score:.3}"), SCORE));
    }
    out
}

/// Lays entries out in a grid, `columns` per row (at least 1), each cell an image above its
/// wrapped prompts ("truth: ..." in black, "pred: ..." in green when equal to the truth, red
/// otherwise, then "score: 0.123" when given).
///
/// Layout: images are drawn at the integer scale `s = max(1, 128 / widest image)`; a cell is
/// `cell_w = max(s × widest, SHEET_MIN_TEXT_WIDTH) + 2 × SHEET_PAD` wide, text wraps at
/// `(cell_w − 2 × SHEET_PAD) / 8` characters, and a cell is
/// `cell_h = 3 × SHEET_PAD + s × tallest + lines × SHEET_LINE_HEIGHT` high where `lines` is the
/// most lines of any entry. The sheet is `columns × cell_w` by `ceil(n / columns) × cell_h`
/// (columns capped at the number of entries); no entries give a 1×1 white image.
pub fn contact_sheet(entries: &[SheetEntry], columns: usize) -> RgbImage {
    if entries.is_empty() {
        return RgbImage::from_pixel(1, 1, BACKGROUND);
    }
    let columns = columns.clamp(1, entries.len());
    let rows = entries.len().div_ceil(columns);
    let max_w = entries
        .iter()
        .map(|e| e.image.width())
        .max()
        .unwrap_or(1)
        .max(1);
    let max_h = entries.iter().map(|e| e.image.height()).max().unwrap_or(0);
    let scale = (128 / max_w).max(1);
    let cell_w = (scale * max_w).max(SHEET_MIN_TEXT_WIDTH) + 2 * SHEET_PAD;
    let chars = ((cell_w - 2 * SHEET_PAD) / 8) as usize;
    let texts: Vec<Vec<(String, Rgb<u8>)>> =
        entries.iter().map(|e| entry_lines(e, chars)).collect();
    let lines = texts.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let cell_h = 3 * SHEET_PAD + scale * max_h + lines * SHEET_LINE_HEIGHT;
    let mut sheet = RgbImage::from_pixel(columns as u32 * cell_w, rows as u32 * cell_h, BACKGROUND);
    for (i, (entry, text)) in entries.iter().zip(&texts).enumerate() {
        let x0 = (i % columns) as u32 * cell_w;
        let y0 = (i / columns) as u32 * cell_h;
        let img_x = x0 + SHEET_PAD + (cell_w - 2 * SHEET_PAD - scale * entry.image.width()) / 2;
        let img_y = y0 + SHEET_PAD;
        for (x, y, px) in entry.image.enumerate_pixels() {
            for dy in 0..scale {
                for dx in 0..scale {
                    sheet.put_pixel(img_x + x * scale + dx, img_y + y * scale + dy, *px);
                }
            }
        }
        let text_y = img_y + scale * max_h + SHEET_PAD;
        for (l, (line, colour)) in text.iter().enumerate() {
            draw_text(
                &mut sheet,
                x0 + SHEET_PAD,
                text_y + l as u32 * SHEET_LINE_HEIGHT,
                line,
                *colour,
            );
        }
        // Cell borders on the right and bottom edges.
        for y in y0..y0 + cell_h {
            sheet.put_pixel(x0 + cell_w - 1, y, GRID);
        }
        for x in x0..x0 + cell_w {
            sheet.put_pixel(x, y0 + cell_h - 1, GRID);
        }
    }
    sheet
}
