//! Sampling scenes and the deterministic splits: held-out (colour, shape) pairs, unique prompts.

use std::collections::HashSet;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::grammar::{
    Background, BackgroundKind, Colour, Fill, Object, Position, Relation, Scene, Shape, Size, Style,
};

/// Fraction of all (colour, shape) pairs held out for the cross-domain split.
pub const HELD_OUT_FRACTION: f64 = 0.10;
/// At most this many held-out pairs share a colour, and at most this many share a shape.
pub const HELD_OUT_PER_VALUE: usize = 2;

/// RNG stream of each split (and of the held-out choice).
const STREAM_HELD_OUT: u64 = 0;
const STREAM_VALIDATION: u64 = 1;
const STREAM_TEST: u64 = 2;
const STREAM_CORPUS: u64 = 3;
const STREAM_CROSS: u64 = 4;

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The (colour, shape) pairs held out of corpus, validation and test, sorted.
///
/// Rule: all 12 × 14 pairs are shuffled by a ChaCha8 RNG seeded with `seed` (stream 0) and
/// taken in that order, skipping a pair whose colour or shape already has
/// [`HELD_OUT_PER_VALUE`] held-out pairs, until `round(HELD_OUT_FRACTION × 168)` = 17 are held.
pub fn held_out_pairs(seed: u64) -> Vec<(Colour, Shape)> {
    let mut rng = rng_for(seed, STREAM_HELD_OUT);
    let mut all: Vec<(Colour, Shape)> = Colour::ALL
        .iter()
        .flat_map(|&c| Shape::ALL.iter().map(move |&s| (c, s)))
        .collect();
    let want = (HELD_OUT_FRACTION * all.len() as f64).round() as usize;
    all.shuffle(&mut rng);
    let mut per_colour = [0usize; 32];
    let mut per_shape = [0usize; 32];
    let mut held = Vec::with_capacity(want);
    for (c, s) in all {
        if held.len() == want {
            break;
        }
        if per_colour[c.index()] < HELD_OUT_PER_VALUE && per_shape[s.index()] < HELD_OUT_PER_VALUE {
            per_colour[c.index()] += 1;
            per_shape[s.index()] += 1;
            held.push((c, s));
        }
    }
    held.sort_unstable();
    held
}

fn weighted<R: Rng, T: Copy>(rng: &mut R, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|&(_, w)| w).sum();
    let mut pick = rng.random_range(0..total.max(1));
    for &(value, w) in table {
        if pick < w {
            return value;
        }
        pick -= w;
    }
    table[0].0
}

fn sample_object<R: Rng>(rng: &mut R) -> Object {
    Object {
        shape: *Shape::ALL.choose(rng).unwrap_or(&Shape::Circle),
        colour: *Colour::ALL.choose(rng).unwrap_or(&Colour::Red),
        size: weighted(
            rng,
            &[(Size::Small, 3), (Size::Medium, 4), (Size::Large, 3)],
        ),
        fill: weighted(rng, &[(Fill::Filled, 3), (Fill::Outlined, 1)]),
        count: weighted(rng, &[(1u8, 6), (2, 3), (3, 2)]),
    }
}

/// Draws one scene from the world's distribution, without the validity check.
fn sample_raw<R: Rng>(rng: &mut R) -> Scene {
    let groups = weighted(rng, &[(1usize, 35), (2, 40), (3, 25)]);
    let mut objects: Vec<Object> = (0..groups).map(|_| sample_object(rng)).collect();
    let relation = match groups {
        1 => {
            if rng.random_bool(0.3) {
                Relation::At(Position::Center)
            } else {
                Relation::At(*Position::ALL[1..].choose(rng).unwrap_or(&Position::TopLeft))
            }
        }
        2 => {
            objects.sort_unstable();
            *[
                Relation::LeftOf,
                Relation::RightOf,
                Relation::Above,
                Relation::Below,
            ]
            .choose(rng)
            .unwrap_or(&Relation::LeftOf)
        }
        _ => {
            if rng.random_bool(0.5) {
                Relation::InARow
            } else {
                Relation::InAColumn
            }
        }
    };
    let background = Background {
        kind: weighted(
            rng,
            &[
                (BackgroundKind::Plain, 3),
                (BackgroundKind::Gradient, 2),
                (BackgroundKind::Striped, 2),
                (BackgroundKind::Dotted, 2),
                (BackgroundKind::Checkered, 2),
            ],
        ),
        colour: *Colour::ALL.choose(rng).unwrap_or(&Colour::White),
    };
    let style = weighted(
        rng,
        &[
            (Style::None, 8),
            (Style::PixelArt, 3),
            (Style::Blurred, 3),
            (Style::Noisy, 3),
            (Style::HighContrast, 3),
        ],
    );
    Scene {
        objects,
        relation,
        background,
        style,
    }
}

/// Draws a valid scene with no held-out pair.
pub(crate) fn sample_in_domain<R: Rng>(rng: &mut R, held: &[(Colour, Shape)]) -> Scene {
    loop {
        let scene = sample_raw(rng);
        if scene.colour_shapes().all(|p| !held.contains(&p)) && scene.validate().is_ok() {
            return scene;
        }
    }
}

/// Draws a valid scene with at least one held-out pair: a world scene with one group's
/// (colour, shape) replaced by a held-out pair.
pub(crate) fn sample_cross_domain<R: Rng>(rng: &mut R, held: &[(Colour, Shape)]) -> Scene {
    loop {
        let mut scene = sample_raw(rng);
        let Some(&(colour, shape)) = held.choose(rng) else {
            return scene;
        };
        let i = rng.random_range(0..scene.objects.len());
        scene.objects[i].colour = colour;
        scene.objects[i].shape = shape;
        if scene.objects.len() == 2 {
            scene.objects.sort_unstable();
        }
        if scene.validate().is_ok() {
            return scene;
        }
    }
}

/// Most draws spent per wanted scene before a split is returned short (grammar exhausted).
const DRAWS_PER_SCENE: usize = 200;

/// `n` scenes with prompts not in `seen` (which receives them), from RNG stream `stream`.
fn draw_unique(
    seed: u64,
    stream: u64,
    n: usize,
    seen: &mut HashSet<String>,
    mut sample: impl FnMut(&mut ChaCha8Rng) -> Scene,
) -> Vec<Scene> {
    let mut rng = rng_for(seed, stream);
    let mut out = Vec::with_capacity(n);
    let mut budget = n.saturating_mul(DRAWS_PER_SCENE).saturating_add(10_000);
    while out.len() < n && budget > 0 {
        budget -= 1;
        let scene = sample(&mut rng);
        if seen.insert(scene.prompt()) {
            out.push(scene);
        }
    }
    out
}

/// The four splits, in the order validation, test, corpus, cross-domain.
pub(crate) fn make_splits(
    seed: u64,
    corpus: usize,
    validation: usize,
    test: usize,
    cross_domain: usize,
) -> [Vec<Scene>; 4] {
    let held = held_out_pairs(seed);
    let mut seen = HashSet::with_capacity(corpus + validation + test + cross_domain);
    let validation = draw_unique(seed, STREAM_VALIDATION, validation, &mut seen, |r| {
        sample_in_domain(r, &held)
    });
    let test = draw_unique(seed, STREAM_TEST, test, &mut seen, |r| {
        sample_in_domain(r, &held)
    });
    let corpus = draw_unique(seed, STREAM_CORPUS, corpus, &mut seen, |r| {
        sample_in_domain(r, &held)
    });
    let cross = draw_unique(seed, STREAM_CROSS, cross_domain, &mut seen, |r| {
        sample_cross_domain(r, &held)
    });
    [validation, test, corpus, cross]
}

/// First render variant of the training pairs. Variant 0 renders the evaluation scenes and
/// variant 1 the demo's unlabeled modality-gap renders, so a training image is never one of
/// those pictures.
pub const TRAIN_VARIANT: u64 = 2;

/// The training split of rendered image-prompt pairs: `n` pairs `(corpus scene, variant)`.
///
/// Rule: pair `i` is corpus scene `i mod c` (`c` = corpus size) rendered as variant
/// [`TRAIN_VARIANT`]` + i div c`: the first `c` pairs show distinct corpus prompts, further
/// pairs are new renders of the same prompts (as the Kaggle winners rendered each prompt
/// more than once). Corpus scenes are unique and disjoint from validation, test and
/// cross-domain, so the split is too. Empty when the corpus is empty or `n` is 0.
pub fn training_split(world: &crate::World, n: usize) -> Vec<(&Scene, u64)> {
    let c = world.corpus.len();
    if c == 0 {
        return Vec::new();
    }
    (0..n)
        .map(|i| (&world.corpus[i % c], TRAIN_VARIANT + (i / c) as u64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{World, WorldConfig};

    #[test]
    fn the_training_split_reuses_corpus_prompts_and_no_evaluation_prompt() {
        let mut config = WorldConfig::tiny();
        config.corpus = 300;
        let world = World::generate(config);
        let train = training_split(&world, 700);
        assert_eq!(train.len(), 700);
        let evaluation: HashSet<String> = world
            .validation
            .iter()
            .chain(&world.test)
            .chain(&world.cross_domain)
            .map(Scene::prompt)
            .collect();
        assert!(train.iter().all(|(s, _)| !evaluation.contains(&s.prompt())));
        // Each (scene, variant) once: 300 scenes as variants 2 and 3, then 100 as variant 4.
        let distinct: HashSet<(String, u64)> =
            train.iter().map(|(s, v)| (s.prompt(), *v)).collect();
        assert_eq!(distinct.len(), 700);
        assert_eq!(train[0], (&world.corpus[0], TRAIN_VARIANT));
        assert_eq!(train[699], (&world.corpus[99], TRAIN_VARIANT + 2));
        assert!(train.iter().all(|(_, v)| *v >= TRAIN_VARIANT));
        assert!(training_split(&world, 0).is_empty());
    }
}
