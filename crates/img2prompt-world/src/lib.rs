//! The procedural image-prompt world of `img2prompt demo`: a prompt grammar, a renderer that
//! draws each prompt faithfully, and deterministic splits, so every true prompt is known; plus
//! the demo itself ([`demo`]) and the world CLIP shipped inside this crate ([`shipped`]).
//!
//! - [`grammar`]: [`Scene`], its canonical [`Scene::prompt`] and [`Scene::parse`],
//!   [`vocabulary`], [`tokenize`].
//! - [`World::generate`]: corpus / validation / test / cross-domain splits from a seed
//!   ([`splits`] documents the held-out (colour, shape) rule).
//! - [`World::render`]: one image per (scene, variant), deterministic in the seed.
//! - [`contact_sheet`] and [`export_pairs`]: looking at results and writing `eval --pairs` files.
//!
//! See `docs/WORLD.md`.

mod atomic;
pub mod demo;
pub mod export;
pub mod grammar;
mod layout;
mod render;
pub mod sheet;
pub mod shipped;
pub mod splits;

pub use img2prompt::{Error, Result};

use serde::{Deserialize, Serialize};

pub use export::export_pairs;
pub use grammar::{
    Background, BackgroundKind, Colour, Fill, MIN_CONTRAST, Object, Position, Relation, Scene,
    Shape, Size, Style, tokenize, vocabulary,
};
pub use render::pixel_art_factor;
pub use sheet::{SheetEntry, contact_sheet};
pub use splits::held_out_pairs;

/// Seed, image size and split sizes of a world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorldConfig {
    /// Seeds the splits, the held-out pairs and every rendering.
    pub seed: u64,
    /// Side of the square RGB images, in pixels.
    pub image_size: u32,
    /// Corpus size (unique prompts: the index and training text).
    pub corpus: usize,
    /// Validation size (unique, disjoint from everything else).
    pub validation: usize,
    /// Test size (unique, disjoint from everything else).
    pub test: usize,
    /// Cross-domain size: each scene has at least one held-out (colour, shape) pair.
    pub cross_domain: usize,
}

impl WorldConfig {
    /// The seed every shipped configuration uses (the paper's arXiv number).
    pub const SEED: u64 = 240_109_763;

    /// The `img2prompt demo` world: 64 px, corpus 100 000, validation/test/cross-domain 1 000.
    pub fn demo() -> Self {
        WorldConfig {
            seed: Self::SEED,
            image_size: 64,
            corpus: 100_000,
            validation: 1_000,
            test: 1_000,
            cross_domain: 1_000,
        }
    }

    /// A smoke-test world: 64 px, corpus 2 000, validation/test/cross-domain 100.
    pub fn tiny() -> Self {
        WorldConfig {
            corpus: 2_000,
            validation: 100,
            test: 100,
            cross_domain: 100,
            ..Self::demo()
        }
    }
}

/// A generated world: its configuration and its four disjoint splits of unique scenes.
#[derive(Clone, Debug)]
pub struct World {
    /// The configuration it was generated from.
    pub config: WorldConfig,
    /// Unique in-domain scenes for the index / training.
    pub corpus: Vec<Scene>,
    /// Unique in-domain scenes in no other split.
    pub validation: Vec<Scene>,
    /// Unique in-domain scenes in no other split.
    pub test: Vec<Scene>,
    /// Unique scenes each holding at least one held-out (colour, shape) pair.
    pub cross_domain: Vec<Scene>,
}

impl World {
    /// Generates the splits, deterministically from `config` (validation, test, corpus and
    /// cross-domain each draw from their own RNG stream of `config.seed`; a prompt drawn
    /// again is skipped). A split comes out shorter than configured only if the grammar runs
    /// out of unique prompts, which the shipped sizes are far from.
    pub fn generate(config: WorldConfig) -> World {
        let [validation, test, corpus, cross_domain] = splits::make_splits(
            config.seed,
            config.corpus,
            config.validation,
            config.test,
            config.cross_domain,
        );
        World {
            config,
            corpus,
            validation,
            test,
            cross_domain,
        }
    }

    /// Draws `scene` as an RGB `image_size × image_size` image. Deterministic in
    /// `(config.seed, scene, variant)`; different variants jitter positions (within the
    /// relation's region), sizes (−10 %..+8 %), rotations (for shapes where it shows) and
    /// background pattern phase/scale/angle, and draw their own style noise.
    pub fn render(&self, scene: &Scene, variant: u64) -> image::RgbImage {
        render::render(self.config.seed, scene, variant, self.config.image_size)
    }

    /// The (colour, shape) pairs held out of corpus, validation and test.
    pub fn held_out_pairs(&self) -> Vec<(Colour, Shape)> {
        splits::held_out_pairs(self.config.seed)
    }
}
