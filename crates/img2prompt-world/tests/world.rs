//! The procedural world: determinism, splits, grammar coverage, renderer faithfulness,
//! contact sheet and pair export.

use std::collections::HashSet;

use image::RgbImage;
use img2prompt_world::{
    Background, BackgroundKind, Colour, Fill, Object, Position, Relation, Scene, Shape, SheetEntry,
    Size, Style, World, WorldConfig, contact_sheet, export_pairs, held_out_pairs, pixel_art_factor,
    tokenize, vocabulary,
};

fn tiny() -> World {
    World::generate(WorldConfig::tiny())
}

fn all_scenes(w: &World) -> impl Iterator<Item = &Scene> {
    w.corpus
        .iter()
        .chain(&w.validation)
        .chain(&w.test)
        .chain(&w.cross_domain)
}

fn obj(shape: Shape, colour: Colour, size: Size) -> Object {
    Object {
        shape,
        colour,
        size,
        fill: Fill::Filled,
        count: 1,
    }
}

fn scene(objects: Vec<Object>, relation: Relation, bg: Colour, style: Style) -> Scene {
    Scene {
        objects,
        relation,
        background: Background {
            kind: BackgroundKind::Plain,
            colour: bg,
        },
        style,
    }
}

fn lone(o: Object, position: Position, style: Style) -> Scene {
    scene(vec![o], Relation::At(position), Colour::White, style)
}

fn close(px: &[u8], rgb: [u8; 3], tol: i32) -> bool {
    px.iter()
        .zip(rgb)
        .all(|(&a, b)| (a as i32 - b as i32).abs() <= tol)
}

/// Pixels within `tol` of `rgb` per channel: their count and centroid (x, y).
fn colour_stats(img: &RgbImage, rgb: [u8; 3], tol: i32) -> (usize, f32, f32) {
    let (mut n, mut sx, mut sy) = (0usize, 0f32, 0f32);
    for (x, y, p) in img.enumerate_pixels() {
        if close(&p.0, rgb, tol) {
            n += 1;
            sx += x as f32;
            sy += y as f32;
        }
    }
    (n, sx / n.max(1) as f32, sy / n.max(1) as f32)
}

/// Number of 4-connected components of pixels within `tol` of `rgb`.
fn components(img: &RgbImage, rgb: [u8; 3], tol: i32) -> usize {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut seen = vec![false; (w * h) as usize];
    let mut count = 0;
    for start in 0..(w * h) {
        let (sx, sy) = (start % w, start / w);
        if seen[start as usize] || !close(&img.get_pixel(sx as u32, sy as u32).0, rgb, tol) {
            continue;
        }
        count += 1;
        let mut stack = vec![(sx, sy)];
        seen[start as usize] = true;
        while let Some((x, y)) = stack.pop() {
            for (nx, ny) in [(x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)] {
                if nx < 0 || ny < 0 || nx >= w || ny >= h {
                    continue;
                }
                let i = (ny * w + nx) as usize;
                if !seen[i] && close(&img.get_pixel(nx as u32, ny as u32).0, rgb, tol) {
                    seen[i] = true;
                    stack.push((nx, ny));
                }
            }
        }
    }
    count
}

#[test]
fn same_seed_gives_same_prompts_and_image_bytes() {
    let (a, b) = (tiny(), tiny());
    let prompts = |w: &World| all_scenes(w).map(Scene::prompt).collect::<Vec<_>>();
    assert_eq!(prompts(&a), prompts(&b));
    for s in a.test.iter().take(10).chain(a.cross_domain.iter().take(10)) {
        assert_eq!(
            a.render(s, 3).as_raw(),
            b.render(s, 3).as_raw(),
            "{}",
            s.prompt()
        );
    }
    let other = World::generate(WorldConfig {
        seed: 7,
        ..WorldConfig::tiny()
    });
    assert_ne!(prompts(&a), prompts(&other), "the seed must matter");
    let s = &a.test[0];
    assert_ne!(a.render(s, 0).as_raw(), other.render(s, 0).as_raw());
}

#[test]
fn variants_give_different_images_of_the_same_prompt() {
    let w = tiny();
    for s in w.test.iter().take(30) {
        let prompt = s.prompt();
        let (v0, v1) = (w.render(s, 0), w.render(s, 1));
        assert_eq!((v0.width(), v0.height()), (64, 64));
        assert_ne!(v0.as_raw(), v1.as_raw(), "{prompt}");
        assert_eq!(s.prompt(), prompt);
        assert_eq!(Scene::parse(&prompt).as_ref(), Some(s));
    }
}

#[test]
fn splits_are_disjoint_unique_and_sized_as_configured() {
    let cfg = WorldConfig::tiny();
    let w = World::generate(cfg);
    assert_eq!(w.corpus.len(), cfg.corpus);
    assert_eq!(w.validation.len(), cfg.validation);
    assert_eq!(w.test.len(), cfg.test);
    assert_eq!(w.cross_domain.len(), cfg.cross_domain);
    let mut all = HashSet::new();
    for s in all_scenes(&w) {
        assert!(all.insert(s.prompt()), "duplicate prompt {}", s.prompt());
    }
    assert_eq!(
        all.len(),
        cfg.corpus + cfg.validation + cfg.test + cfg.cross_domain
    );
    let demo = WorldConfig::demo();
    assert_eq!((demo.seed, demo.image_size), (240_109_763, 64));
    assert_eq!(
        (demo.corpus, demo.validation, demo.test, demo.cross_domain),
        (100_000, 1_000, 1_000, 1_000)
    );
    assert_eq!((cfg.seed, cfg.image_size), (demo.seed, 64));
}

#[test]
fn held_out_pairs_never_leak_and_mark_every_cross_domain_scene() {
    let w = tiny();
    let held = w.held_out_pairs();
    assert_eq!(held.len(), 17, "10% of 12 colours x 14 shapes");
    for &c in Colour::ALL {
        assert!(held.iter().filter(|p| p.0 == c).count() <= 2);
    }
    for &s in Shape::ALL {
        assert!(held.iter().filter(|p| p.1 == s).count() <= 2);
    }
    assert_ne!(
        held,
        held_out_pairs(1),
        "the held-out pairs depend on the seed"
    );
    for s in w.corpus.iter().chain(&w.validation).chain(&w.test) {
        assert!(
            s.colour_shapes().all(|p| !held.contains(&p)),
            "held-out pair in {}",
            s.prompt()
        );
    }
    for s in &w.cross_domain {
        assert!(
            s.colour_shapes().any(|p| held.contains(&p)),
            "no held-out pair in cross-domain {}",
            s.prompt()
        );
    }
}

#[test]
fn every_grammar_feature_appears_in_the_tiny_corpus() {
    let w = tiny();
    let c = &w.corpus;
    let objects = || c.iter().flat_map(|s| s.objects.iter());
    for &shape in Shape::ALL {
        assert!(objects().any(|o| o.shape == shape), "{shape:?}");
    }
    for &colour in Colour::ALL {
        assert!(objects().any(|o| o.colour == colour), "{colour:?}");
        assert!(
            c.iter().any(|s| s.background.colour == colour),
            "bg {colour:?}"
        );
    }
    for &size in Size::ALL {
        assert!(objects().any(|o| o.size == size), "{size:?}");
    }
    for count in 1..=3 {
        assert!(objects().any(|o| o.count == count), "count {count}");
    }
    for &fill in Fill::ALL {
        assert!(objects().any(|o| o.fill == fill), "{fill:?}");
    }
    for relation in Relation::all() {
        assert!(c.iter().any(|s| s.relation == relation), "{relation:?}");
    }
    for &kind in BackgroundKind::ALL {
        assert!(c.iter().any(|s| s.background.kind == kind), "{kind:?}");
    }
    for &style in Style::ALL {
        assert!(c.iter().any(|s| s.style == style), "{style:?}");
    }
    for groups in 1..=3 {
        assert!(
            c.iter().any(|s| s.objects.len() == groups),
            "{groups} groups"
        );
    }
}

#[test]
fn vocabulary_is_exactly_the_tokens_prompts_use() {
    let w = tiny();
    let vocab = vocabulary();
    let mut sorted = vocab.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(vocab, sorted, "sorted and deduplicated");
    let vocab: HashSet<&str> = vocab.into_iter().collect();
    let mut used = HashSet::new();
    for s in all_scenes(&w) {
        let p = s.prompt();
        assert!(
            p.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch == ' ' || ch == ','),
            "{p}"
        );
        for t in tokenize(&p) {
            assert!(
                vocab.contains(t),
                "token {t:?} of {p:?} not in the vocabulary"
            );
            used.insert(t.to_owned());
        }
    }
    let unused: Vec<_> = vocab.iter().filter(|t| !used.contains(**t)).collect();
    assert!(unused.is_empty(), "never emitted: {unused:?}");
    assert_eq!(
        tokenize("two red stars, plain white background, pixel art"),
        [
            "two",
            "red",
            "stars",
            ",",
            "plain",
            "white",
            "background",
            ",",
            "pixel",
            "art"
        ]
    );
}

#[test]
fn prompts_read_as_documented_and_parse_back() {
    let s = Scene {
        objects: vec![
            Object {
                shape: Shape::Star,
                colour: Colour::Red,
                size: Size::Small,
                fill: Fill::Filled,
                count: 2,
            },
            Object {
                shape: Shape::Ring,
                colour: Colour::Blue,
                size: Size::Large,
                fill: Fill::Filled,
                count: 1,
            },
        ],
        relation: Relation::LeftOf,
        background: Background {
            kind: BackgroundKind::Striped,
            colour: Colour::Yellow,
        },
        style: Style::PixelArt,
    };
    assert_eq!(
        s.prompt(),
        "two small red stars left of a large blue ring, striped yellow background, pixel art"
    );
    assert_eq!(s.validate(), Ok(()));
    let o = lone(
        Object {
            fill: Fill::Outlined,
            ..obj(Shape::Arrow, Colour::Orange, Size::Medium)
        },
        Position::TopLeft,
        Style::None,
    );
    assert_eq!(
        o.prompt(),
        "an outlined orange arrow in the top left corner, plain white background"
    );
    let w = tiny();
    for s in all_scenes(&w) {
        assert_eq!(
            Scene::parse(&s.prompt()).as_ref(),
            Some(s),
            "{}",
            s.prompt()
        );
    }
    for bad in [
        "two small red stars left of a large blue ring",
        "a blue ring right of two small red stars, striped yellow background",
        "an red star, plain white background",
        "a red star, plain red background",
        "a red star, plain white background, sepia",
        "a red star,  plain white background",
    ] {
        assert_eq!(Scene::parse(bad), None, "{bad}");
    }
}

#[test]
fn validate_rejects_ambiguous_or_unrenderable_scenes() {
    let red = obj(Shape::Star, Colour::Red, Size::Medium);
    let blue = obj(Shape::Ring, Colour::Blue, Size::Medium);
    assert!(
        scene(
            vec![red, blue],
            Relation::LeftOf,
            Colour::White,
            Style::None
        )
        .validate()
        .is_ok()
    );
    // Non-canonical order: the same picture is "a red star right of a blue ring".
    assert!(
        scene(
            vec![blue, red],
            Relation::LeftOf,
            Colour::White,
            Style::None
        )
        .validate()
        .is_err()
    );
    let red_ring = obj(Shape::Ring, Colour::Red, Size::Medium);
    assert!(
        scene(
            vec![red_ring, red],
            Relation::LeftOf,
            Colour::White,
            Style::None
        )
        .validate()
        .is_err()
    );
    assert!(lone(red, Position::Center, Style::None).validate().is_ok());
    assert!(
        scene(
            vec![red],
            Relation::At(Position::Center),
            Colour::Red,
            Style::None
        )
        .validate()
        .is_err()
    );
    assert!(
        scene(vec![red], Relation::LeftOf, Colour::White, Style::None)
            .validate()
            .is_err()
    );
    let two_large = Object {
        count: 2,
        ..obj(Shape::Circle, Colour::Red, Size::Large)
    };
    assert!(
        lone(two_large, Position::TopLeft, Style::None)
            .validate()
            .is_err()
    );
    assert!(
        lone(two_large, Position::Top, Style::None)
            .validate()
            .is_ok()
    );
    assert!(
        lone(Object { count: 4, ..red }, Position::Center, Style::None)
            .validate()
            .is_err()
    );
}

#[test]
fn a_large_red_circle_at_the_centre_is_red_at_the_centre() {
    let w = tiny();
    let s = lone(
        obj(Shape::Circle, Colour::Red, Size::Large),
        Position::Center,
        Style::None,
    );
    for v in 0..16 {
        let img = w.render(&s, v);
        assert!(
            close(&img.get_pixel(32, 32).0, [220, 30, 30], 10),
            "variant {v}"
        );
        assert!(
            close(&img.get_pixel(1, 1).0, [245, 245, 245], 0),
            "variant {v}"
        );
        let (n, _, _) = colour_stats(&img, [220, 30, 30], 10);
        // Diameter 0.27..0.324 of 64 px: area 260..330 px.
        assert!((200..=360).contains(&n), "variant {v}: {n} red pixels");
    }
}

#[test]
fn every_colour_is_drawn_exactly() {
    let w = tiny();
    for &c in Colour::ALL {
        let bg = if c == Colour::Black {
            Colour::White
        } else {
            Colour::Black
        };
        let s = scene(
            vec![obj(Shape::Square, c, Size::Large)],
            Relation::At(Position::Center),
            bg,
            Style::None,
        );
        let img = w.render(&s, 0);
        assert_eq!(img.get_pixel(32, 32).0, c.rgb(), "{c:?}");
        assert_eq!(img.get_pixel(0, 0).0, bg.rgb(), "{c:?}");
    }
}

#[test]
fn relations_put_groups_where_they_say() {
    let w = tiny();
    let (a, b) = (
        obj(Shape::Square, Colour::Blue, Size::Medium),
        obj(Shape::Star, Colour::Red, Size::Medium),
    );
    let (ca, cb) = (Colour::Blue.rgb(), Colour::Red.rgb());
    for v in 0..8 {
        for rel in [
            Relation::LeftOf,
            Relation::RightOf,
            Relation::Above,
            Relation::Below,
        ] {
            let s = scene(vec![a, b], rel, Colour::White, Style::None);
            let img = w.render(&s, v);
            let (na, xa, ya) = colour_stats(&img, ca, 12);
            let (nb, xb, yb) = colour_stats(&img, cb, 12);
            assert!(na > 20 && nb > 20, "{}: {na} {nb}", s.prompt());
            let ok = match rel {
                Relation::LeftOf => xa + 8.0 < xb,
                Relation::RightOf => xa > xb + 8.0,
                Relation::Above => ya + 8.0 < yb,
                _ => ya > yb + 8.0,
            };
            assert!(
                ok,
                "{} variant {v}: A ({xa}, {ya}) B ({xb}, {yb})",
                s.prompt()
            );
        }
        let c = obj(Shape::Circle, Colour::Green, Size::Medium);
        for rel in [Relation::InARow, Relation::InAColumn] {
            let s = scene(vec![b, c, a], rel, Colour::White, Style::None);
            let img = w.render(&s, v);
            let centres: Vec<(f32, f32)> = [cb, Colour::Green.rgb(), ca]
                .iter()
                .map(|&rgb| {
                    let (_, x, y) = colour_stats(&img, rgb, 12);
                    (x, y)
                })
                .collect();
            let key = |p: &(f32, f32)| if rel == Relation::InARow { p.0 } else { p.1 };
            assert!(
                key(&centres[0]) < key(&centres[1]) && key(&centres[1]) < key(&centres[2]),
                "{}: {centres:?}",
                s.prompt()
            );
        }
    }
    for (pos, x_left, y_top) in [
        (Position::TopLeft, Some(true), Some(true)),
        (Position::BottomRight, Some(false), Some(false)),
        (Position::Top, None, Some(true)),
        (Position::Left, Some(true), None),
    ] {
        let s = lone(
            obj(Shape::Circle, Colour::Red, Size::Small),
            pos,
            Style::None,
        );
        for v in 0..8 {
            let (n, x, y) = colour_stats(&w.render(&s, v), cb, 12);
            assert!(n > 20, "{}", s.prompt());
            if let Some(left) = x_left {
                assert_eq!(x < 32.0, left, "{} variant {v}: x {x}", s.prompt());
            }
            if let Some(top) = y_top {
                assert_eq!(y < 32.0, top, "{} variant {v}: y {y}", s.prompt());
            }
        }
    }
}

#[test]
fn counts_sizes_and_fills_are_visible() {
    let w = tiny();
    let red = Colour::Red.rgb();
    for count in 1..=3u8 {
        let o = Object {
            count,
            ..obj(Shape::Circle, Colour::Red, Size::Small)
        };
        for pos in [Position::Center, Position::Bottom] {
            let s = lone(o, pos, Style::None);
            for v in 0..6 {
                assert_eq!(
                    components(&w.render(&s, v), red, 40),
                    count as usize,
                    "{}",
                    s.prompt()
                );
            }
        }
    }
    let area = |size: Size, fill: Fill| {
        let s = lone(
            Object {
                fill,
                ..obj(Shape::Circle, Colour::Red, size)
            },
            Position::Center,
            Style::None,
        );
        (0..4)
            .map(|v| colour_stats(&w.render(&s, v), red, 40).0)
            .sum::<usize>() as f32
    };
    let (small, medium, large) = (
        area(Size::Small, Fill::Filled),
        area(Size::Medium, Fill::Filled),
        area(Size::Large, Fill::Filled),
    );
    assert!(
        small * 1.5 < medium && medium * 1.5 < large,
        "{small} {medium} {large}"
    );
    assert!(area(Size::Large, Fill::Outlined) * 2.0 < large);
    let outlined = lone(
        Object {
            fill: Fill::Outlined,
            ..obj(Shape::Circle, Colour::Red, Size::Large)
        },
        Position::Center,
        Style::None,
    );
    assert_eq!(
        w.render(&outlined, 0).get_pixel(32, 32).0,
        Colour::White.rgb()
    );
}

#[test]
fn every_shape_draws_a_distinct_mask() {
    let w = tiny();
    // Each shape's silhouette, shifted so its centroid sits at (32, 32).
    let masks: Vec<HashSet<(i64, i64)>> = Shape::ALL
        .iter()
        .map(|&shape| {
            let s = lone(
                obj(shape, Colour::Black, Size::Large),
                Position::Center,
                Style::None,
            );
            let img = w.render(&s, 0);
            let (n, cx, cy) = colour_stats(&img, [20, 20, 20], 100);
            assert!(n > 50, "{shape:?}: {n} pixels");
            img.enumerate_pixels()
                .filter(|(_, _, p)| close(&p.0, [20, 20, 20], 100))
                .map(|(x, y, _)| {
                    (
                        x as i64 - cx.round() as i64 + 32,
                        y as i64 - cy.round() as i64 + 32,
                    )
                })
                .collect()
        })
        .collect();
    for i in 0..masks.len() {
        for j in i + 1..masks.len() {
            let diff = masks[i].symmetric_difference(&masks[j]).count();
            assert!(
                diff > 20,
                "{:?} vs {:?}: {diff} pixels differ",
                Shape::ALL[i],
                Shape::ALL[j]
            );
        }
    }
}

#[test]
fn backgrounds_show_their_colours() {
    let w = tiny();
    let c = Colour::Yellow;
    for &kind in BackgroundKind::ALL {
        let s = Scene {
            background: Background { kind, colour: c },
            ..lone(
                obj(Shape::Circle, Colour::Blue, Size::Small),
                Position::TopLeft,
                Style::None,
            )
        };
        let img = w.render(&s, 0);
        let (main, _, _) = colour_stats(&img, c.rgb(), 6);
        let (tint, _, _) = colour_stats(&img, c.tint(), 6);
        match kind {
            BackgroundKind::Plain => assert!(main > 3500 && tint == 0, "{kind:?}: {main} {tint}"),
            // A gradient runs from the colour to the tint: both ends present, mostly between.
            BackgroundKind::Gradient => assert!(
                main > 0 && tint > 0 && main + tint < 2000,
                "{kind:?}: {main} {tint}"
            ),
            BackgroundKind::Dotted => assert!(
                main > 2000 && tint > 40 && tint < 1000,
                "{kind:?}: {main} {tint}"
            ),
            _ => assert!(main > 1200 && tint > 1200, "{kind:?}: {main} {tint}"),
        }
    }
}

#[test]
fn styles_change_the_pixels_as_named() {
    let w = tiny();
    let base = lone(
        obj(Shape::Circle, Colour::Red, Size::Large),
        Position::Center,
        Style::None,
    );
    let with = |style| Scene {
        style,
        ..base.clone()
    };
    // Pixel art: constant f×f blocks.
    let f = pixel_art_factor(64);
    assert_eq!(f, 2);
    let img = w.render(&with(Style::PixelArt), 0);
    for (x, y, p) in img.enumerate_pixels() {
        assert_eq!(p, img.get_pixel(x - x % f, y - y % f), "({x}, {y})");
    }
    let blocky = |img: &RgbImage| {
        img.enumerate_pixels()
            .all(|(x, y, p)| p == img.get_pixel(x - x % 2, y - y % 2))
    };
    assert!(
        !blocky(&w.render(&base, 0)),
        "the unstyled image is not blocky"
    );
    // Noisy: the plain white background is no longer flat.
    let noisy = w.render(&with(Style::Noisy), 0);
    let corner: HashSet<[u8; 3]> = (0..8)
        .flat_map(|x| (0..8).map(move |y| (x, y)))
        .map(|(x, y)| noisy.get_pixel(x, y).0)
        .collect();
    assert!(
        corner.len() > 20,
        "{} distinct corner colours",
        corner.len()
    );
    // Blurred: no pixel stays exactly red, but the centre stays red-ish.
    let blurred = w.render(&with(Style::Blurred), 0);
    let hard = w.render(&base, 0);
    let edge_colours = |img: &RgbImage| img.pixels().map(|p| p.0).collect::<HashSet<_>>().len();
    assert!(edge_colours(&blurred) > 2 * edge_colours(&hard));
    assert!(close(&blurred.get_pixel(32, 32).0, Colour::Red.rgb(), 20));
    // High contrast: red saturates to pure red, the white background to pure white.
    let hc = w.render(&with(Style::HighContrast), 0);
    assert_eq!(hc.get_pixel(32, 32).0, [255, 0, 0]);
    assert_eq!(hc.get_pixel(0, 0).0, [255, 255, 255]);
}

#[test]
fn contact_sheet_has_the_documented_size_and_shows_its_entries() {
    let w = tiny();
    let entries: Vec<SheetEntry> = w
        .test
        .iter()
        .take(5)
        .map(|s| SheetEntry {
            image: w.render(s, 0),
            truth: "a red star".to_owned(),
            predicted: "a blue ring".to_owned(),
            score: Some(0.5),
        })
        .collect();
    let sheet = contact_sheet(&entries, 3);
    // 64 px images at scale 2 in 160 + 2*4 px cells; 3 one-line texts: 3*4 + 128 + 30 px.
    assert_eq!((sheet.width(), sheet.height()), (3 * 168, 2 * 170));
    // The first image sits at (4 + (160 - 128) / 2, 4), doubled.
    let first = &entries[0].image;
    for (x, y) in [(0u32, 0u32), (10, 20), (63, 63)] {
        assert_eq!(
            sheet.get_pixel(20 + 2 * x, 4 + 2 * y),
            first.get_pixel(x, y)
        );
    }
    let dark = sheet
        .pixels()
        .filter(|p| p.0.iter().all(|&c| c < 60))
        .count();
    assert!(dark > 500, "text drawn: {dark} dark pixels");
    // Wrapping: a long prompt takes several lines, making every cell taller.
    let long = vec![SheetEntry {
        image: entries[0].image.clone(),
        truth: w.test[0].prompt() + " " + &w.test[1].prompt(),
        predicted: String::new(),
        score: None,
    }];
    assert!(contact_sheet(&long, 4).height() > 170);
    assert_eq!(contact_sheet(&[], 3).dimensions(), (1, 1));
}

#[test]
fn export_pairs_writes_images_and_jsonl() {
    let w = tiny();
    let dir = tempfile::tempdir().unwrap();
    let scenes = &w.test[..4];
    let jsonl = export_pairs(&w, "test", scenes, 2, dir.path()).unwrap();
    assert_eq!(jsonl, dir.path().join("test.jsonl"));
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    for (i, (line, s)) in lines.iter().zip(scenes).enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["prompt"], s.prompt());
        let path = std::path::PathBuf::from(v["image"].as_str().unwrap());
        assert!(path.is_absolute());
        assert!(path.ends_with(format!("images/test_{i:05}.png")));
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.as_raw(), w.render(s, 2).as_raw());
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    let err = export_pairs(&w, "../x", scenes, 0, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("split"), "{err}");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = export_pairs(&w, "test", scenes, 0, &file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("plain-file"), "{err}");
}

/// Regenerates the example images of docs/WORLD.md (run by hand with `--ignored`).
#[test]
#[ignore]
fn write_docs_images() {
    let w = World::generate(WorldConfig::tiny());
    let dir = std::env::var_os("WORLD_DOCS_IMG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img"));
    std::fs::create_dir_all(&dir).unwrap();
    let two = |style, kind, colour| Scene {
        objects: vec![
            Object {
                count: 2,
                ..obj(Shape::Star, Colour::Red, Size::Small)
            },
            Object {
                fill: Fill::Outlined,
                ..obj(Shape::Ring, Colour::Blue, Size::Large)
            },
        ],
        relation: Relation::RightOf,
        background: Background { kind, colour },
        style,
    };
    let mut examples = Vec::new();
    for (&kind, colour) in BackgroundKind::ALL.iter().zip([
        Colour::White,
        Colour::Yellow,
        Colour::Green,
        Colour::Gray,
        Colour::Cyan,
    ]) {
        examples.push((
            format!("world_bg_{}.png", format!("{kind:?}").to_lowercase()),
            two(Style::None, kind, colour),
        ));
    }
    for &style in Style::ALL {
        let s = Scene {
            objects: vec![
                obj(Shape::Heart, Colour::Pink, Size::Large),
                obj(Shape::Arrow, Colour::Black, Size::Small),
                Object {
                    count: 3,
                    ..obj(Shape::Triangle, Colour::Orange, Size::Small)
                },
            ],
            relation: Relation::InARow,
            background: Background {
                kind: BackgroundKind::Gradient,
                colour: Colour::Cyan,
            },
            style,
        };
        examples.push((
            format!("world_style_{}.png", format!("{style:?}").to_lowercase()),
            s,
        ));
    }
    for (name, s) in &examples {
        assert_eq!(s.validate(), Ok(()), "{}", s.prompt());
        let img = w.render(s, 0);
        let big = image::imageops::resize(&img, 128, 128, image::imageops::FilterType::Nearest);
        big.save(dir.join(name)).unwrap();
        println!("{name}\t{}", s.prompt());
    }
    let entries: Vec<SheetEntry> = w
        .test
        .iter()
        .take(4)
        .map(|s| SheetEntry {
            image: w.render(s, 0),
            truth: s.prompt(),
            predicted: s.prompt(),
            score: None,
        })
        .collect();
    contact_sheet(&entries, 4)
        .save(dir.join("world_sheet.png"))
        .unwrap();
    // Every shape in declaration order (two per row: filled, outlined), blue on white.
    let mut grid = RgbImage::from_pixel(4 * 66, 7 * 66, image::Rgb([255, 255, 255]));
    for (i, &shape) in Shape::ALL.iter().enumerate() {
        for (j, fill) in [Fill::Filled, Fill::Outlined].into_iter().enumerate() {
            let s = lone(
                Object {
                    fill,
                    ..obj(shape, Colour::Blue, Size::Large)
                },
                Position::Center,
                Style::None,
            );
            let (col, row) = ((i % 2) * 2 + j, i / 2);
            image::imageops::replace(
                &mut grid,
                &w.render(&s, 0),
                col as i64 * 66,
                row as i64 * 66,
            );
        }
    }
    grid.save(dir.join("world_shapes.png")).unwrap();
}
