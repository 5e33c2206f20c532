//! Where object groups go: one region per group, a grid of cells per region, one object per cell.
//!
//! All coordinates are in units of the image side (the image is `[0, 1]²`, y down).

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};

use crate::grammar::{Position, Relation, Scene, Shape, Size};

/// Inner margin of every region.
const MARGIN: f32 = 0.01;
/// Free space kept between objects in neighbouring cells, so they never touch.
const GAP: f32 = 0.012;
/// The most an object moves away from its cell centre, along each axis.
const JITTER_CAP: f32 = 0.12;
/// The same for a lone group at the (unsaid) centre: it stays over the image centre.
const CENTER_JITTER_CAP: f32 = 0.06;
/// The boundary between two groups lies in `0.5 ± SPLIT_JITTER`.
const SPLIT_JITTER: f32 = 0.06;
/// Per-variant size factor range (clamped to the cell).
const SIZE_JITTER: (f32, f32) = (0.9, 1.08);

/// An axis-aligned rectangle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rect {
    pub x0: f32,
    pub y0: f32,
    pub w: f32,
    pub h: f32,
}

const fn rect(x0: f32, y0: f32, w: f32, h: f32) -> Rect {
    Rect { x0, y0, w, h }
}

/// One placed object: centre, diameter (units of the image side), rotation in degrees, group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed {
    pub cx: f32,
    pub cy: f32,
    pub d: f32,
    pub angle: f32,
    pub group: usize,
}

/// Nominal diameter of a size class.
pub(crate) fn nominal_diameter(size: Size) -> f32 {
    match size {
        Size::Small => 0.14,
        Size::Medium => 0.21,
        Size::Large => 0.30,
    }
}

/// The largest rotation (degrees, either way) that keeps a shape recognisably itself.
pub(crate) fn max_rotation(shape: Shape) -> f32 {
    match shape {
        Shape::Circle | Shape::Ring => 0.0,
        Shape::Square | Shape::Diamond => 15.0,
        Shape::Triangle | Shape::Cross | Shape::Heart | Shape::Bolt => 20.0,
        Shape::Semicircle => 25.0,
        Shape::Hexagon | Shape::Crescent | Shape::Arrow => 30.0,
        Shape::Star | Shape::Pentagon => 36.0,
    }
}

/// The region of each group, in prompt order, for a two-group boundary at `split`.
pub(crate) fn regions(relation: Relation, split: f32) -> Vec<Rect> {
    let third = 1.0 / 3.0;
    match relation {
        Relation::At(p) => vec![match p {
            Position::Center => rect(0.1, 0.1, 0.8, 0.8),
            Position::TopLeft => rect(0.0, 0.0, 0.5, 0.5),
            Position::TopRight => rect(0.5, 0.0, 0.5, 0.5),
            Position::BottomLeft => rect(0.0, 0.5, 0.5, 0.5),
            Position::BottomRight => rect(0.5, 0.5, 0.5, 0.5),
            Position::Top => rect(0.0, 0.0, 1.0, 0.5),
            Position::Bottom => rect(0.0, 0.5, 1.0, 0.5),
            Position::Left => rect(0.0, 0.0, 0.5, 1.0),
            Position::Right => rect(0.5, 0.0, 0.5, 1.0),
        }],
        Relation::LeftOf => vec![
            rect(0.0, 0.0, split, 1.0),
            rect(split, 0.0, 1.0 - split, 1.0),
        ],
        Relation::RightOf => vec![
            rect(split, 0.0, 1.0 - split, 1.0),
            rect(0.0, 0.0, split, 1.0),
        ],
        Relation::Above => vec![
            rect(0.0, 0.0, 1.0, split),
            rect(0.0, split, 1.0, 1.0 - split),
        ],
        Relation::Below => vec![
            rect(0.0, split, 1.0, 1.0 - split),
            rect(0.0, 0.0, 1.0, split),
        ],
        Relation::InARow => (0..3)
            .map(|i| rect(i as f32 * third, 0.0, third, 1.0))
            .collect(),
        Relation::InAColumn => (0..3)
            .map(|i| rect(0.0, i as f32 * third, 1.0, third))
            .collect(),
    }
}

/// Grid shapes (columns, rows) that hold `count` objects.
fn arrangements(count: u8) -> &'static [(u32, u32)] {
    match count {
        1 => &[(1, 1)],
        2 => &[(2, 1), (1, 2)],
        _ => &[(3, 1), (1, 3), (2, 2)],
    }
}

/// Cell width and height of a `cols × rows` grid in `r`.
fn cell(r: Rect, cols: u32, rows: u32) -> (f32, f32) {
    (
        (r.w - 2.0 * MARGIN) / cols as f32,
        (r.h - 2.0 * MARGIN) / rows as f32,
    )
}

fn fitting(r: Rect, count: u8, d: f32) -> Vec<(u32, u32)> {
    arrangements(count)
        .iter()
        .copied()
        .filter(|&(c, w)| {
            let (cw, ch) = cell(r, c, w);
            d <= cw.min(ch) - GAP + 1e-6
        })
        .collect()
}

/// Whether every group fits its region at its nominal size, for every two-group boundary.
pub(crate) fn fits(scene: &Scene) -> bool {
    let splits: &[f32] = if scene.relation.groups() == 2 {
        &[0.5 - SPLIT_JITTER, 0.5 + SPLIT_JITTER]
    } else {
        &[0.5]
    };
    splits.iter().all(|&split| {
        let regions = regions(scene.relation, split);
        regions.len() == scene.objects.len()
            && scene
                .objects
                .iter()
                .zip(&regions)
                .all(|(o, &r)| !fitting(r, o.count, nominal_diameter(o.size)).is_empty())
    })
}

/// Places every object of a valid scene, jittered by `rng`.
pub(crate) fn place<R: Rng>(scene: &Scene, rng: &mut R) -> Vec<Placed> {
    let split = 0.5 + rng.random_range(-SPLIT_JITTER..=SPLIT_JITTER);
    let regions = regions(scene.relation, split);
    let cap = if scene.relation == Relation::At(Position::Center) {
        CENTER_JITTER_CAP
    } else {
        JITTER_CAP
    };
    let mut out = Vec::new();
    for (group, (o, &r)) in scene.objects.iter().zip(&regions).enumerate() {
        let nominal = nominal_diameter(o.size);
        let options = fitting(r, o.count, nominal);
        // A valid scene always has an option; an invalid one gets the roomiest grid.
        let (cols, rows) = options.choose(rng).copied().unwrap_or_else(|| {
            arrangements(o.count)
                .iter()
                .copied()
                .max_by(|a, b| {
                    let (aw, ah) = cell(r, a.0, a.1);
                    let (bw, bh) = cell(r, b.0, b.1);
                    aw.min(ah).total_cmp(&bw.min(bh))
                })
                .unwrap_or((1, 1))
        });
        let (cw, ch) = cell(r, cols, rows);
        let mut cells: Vec<(u32, u32)> = (0..rows)
            .flat_map(|y| (0..cols).map(move |x| (x, y)))
            .collect();
        if cells.len() > o.count as usize {
            cells.shuffle(rng);
            cells.truncate(o.count as usize);
            cells.sort_unstable();
        }
        let max_rot = max_rotation(o.shape);
        for (x, y) in cells {
            let d = (nominal * rng.random_range(SIZE_JITTER.0..=SIZE_JITTER.1))
                .min(cw.min(ch) - GAP)
                .max(0.0);
            let jx = ((cw - GAP - d) / 2.0).clamp(0.0, cap);
            let jy = ((ch - GAP - d) / 2.0).clamp(0.0, cap);
            let cx = r.x0 + MARGIN + (x as f32 + 0.5) * cw + rng.random_range(-1.0..=1.0) * jx;
            let cy = r.y0 + MARGIN + (y as f32 + 0.5) * ch + rng.random_range(-1.0..=1.0) * jy;
            let angle = if max_rot > 0.0 {
                rng.random_range(-max_rot..=max_rot)
            } else {
                0.0
            };
            out.push(Placed {
                cx,
                cy,
                d,
                angle,
                group,
            });
        }
    }
    out
}
