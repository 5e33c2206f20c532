//! The prompt grammar: the attributes of a scene, its one canonical prompt, and the parser back.
//!
//! A prompt reads `OBJECTS[ RELATION], BACKGROUND[, STYLE]`, lowercase, words and commas only:
//! `two small red stars left of a large outlined blue ring, striped yellow background, pixel art`.
//! [`Scene::prompt`] and [`Scene::parse`] are inverse on valid scenes ([`Scene::validate`]), so
//! prompt and scene are one-to-one.

use serde::{Deserialize, Serialize};

use crate::layout;

/// Declares a fieldless enum with its prompt words, an `ALL` table and `index()`.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The words this value contributes to a prompt (possibly empty for a default).
            pub fn word(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// Position of this value in [`Self::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

word_enum! {
    /// The shape of an object. Named by [`Shape::word`], plural by [`Shape::plural`].
    Shape {
        /// A filled disc.
        Circle => "circle",
        /// An axis-aligned square (rotated at most 15 degrees).
        Square => "square",
        /// An upward equilateral triangle.
        Triangle => "triangle",
        /// A five-pointed star.
        Star => "star",
        /// A thick annulus.
        Ring => "ring",
        /// A plus-shaped cross.
        Cross => "cross",
        /// A heart.
        Heart => "heart",
        /// A tall rhombus.
        Diamond => "diamond",
        /// A regular hexagon.
        Hexagon => "hexagon",
        /// A regular pentagon.
        Pentagon => "pentagon",
        /// A crescent moon.
        Crescent => "crescent",
        /// An arrow pointing right (rotated at most 30 degrees).
        Arrow => "arrow",
        /// A half disc, flat side down.
        Semicircle => "semicircle",
        /// A zigzag lightning bolt.
        Bolt => "bolt",
    }
}

impl Shape {
    /// The plural noun ("stars", "crosses").
    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Star => "stars",
            Shape::Ring => "rings",
            Shape::Cross => "crosses",
            Shape::Heart => "hearts",
            Shape::Diamond => "diamonds",
            Shape::Hexagon => "hexagons",
            Shape::Pentagon => "pentagons",
            Shape::Crescent => "crescents",
            Shape::Arrow => "arrows",
            Shape::Semicircle => "semicircles",
            Shape::Bolt => "bolts",
        }
    }
}

word_enum! {
    /// A named colour; [`Colour::rgb`] gives its exact value.
    Colour {
        /// (220, 30, 30)
        Red => "red",
        /// (245, 140, 20)
        Orange => "orange",
        /// (240, 220, 30)
        Yellow => "yellow",
        /// (30, 160, 50)
        Green => "green",
        /// (30, 200, 220)
        Cyan => "cyan",
        /// (30, 70, 220)
        Blue => "blue",
        /// (130, 40, 200)
        Purple => "purple",
        /// (245, 110, 180)
        Pink => "pink",
        /// (130, 80, 30)
        Brown => "brown",
        /// (20, 20, 20)
        Black => "black",
        /// (245, 245, 245)
        White => "white",
        /// (128, 128, 128)
        Gray => "gray",
    }
}

impl Colour {
    /// The sRGB value drawn for this colour.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Orange => [245, 140, 20],
            Colour::Yellow => [240, 220, 30],
            Colour::Green => [30, 160, 50],
            Colour::Cyan => [30, 200, 220],
            Colour::Blue => [30, 70, 220],
            Colour::Purple => [130, 40, 200],
            Colour::Pink => [245, 110, 180],
            Colour::Brown => [130, 80, 30],
            Colour::Black => [20, 20, 20],
            Colour::White => [245, 245, 245],
            Colour::Gray => [128, 128, 128],
        }
    }

    /// The second colour of patterned backgrounds: halfway to white (light gray for white).
    pub fn tint(self) -> [u8; 3] {
        if self == Colour::White {
            return [200, 200, 200];
        }
        self.rgb().map(|c| ((c as u16 + 255) / 2) as u8)
    }
}

word_enum! {
    /// Object size; medium is the default and is not said.
    Size {
        /// About 14% of the image side.
        Small => "small",
        /// About 21% of the image side (unsaid).
        Medium => "",
        /// About 30% of the image side.
        Large => "large",
    }
}

word_enum! {
    /// Filled (default, unsaid) or outlined.
    Fill {
        /// Solid colour (unsaid).
        Filled => "",
        /// Only the outline is drawn.
        Outlined => "outlined",
    }
}

word_enum! {
    /// Where a lone object group sits; the centre is the default and is not said.
    Position {
        /// Around the centre (unsaid).
        Center => "",
        /// The top-left quadrant.
        TopLeft => "in the top left corner",
        /// The top-right quadrant.
        TopRight => "in the top right corner",
        /// The bottom-left quadrant.
        BottomLeft => "in the bottom left corner",
        /// The bottom-right quadrant.
        BottomRight => "in the bottom right corner",
        /// The top half.
        Top => "at the top",
        /// The bottom half.
        Bottom => "at the bottom",
        /// The left half.
        Left => "on the left",
        /// The right half.
        Right => "on the right",
    }
}

word_enum! {
    /// The background pattern; each has a colour ([`Background::colour`]).
    BackgroundKind {
        /// One flat colour.
        Plain => "plain",
        /// A linear gradient from the colour to its tint, any direction.
        Gradient => "gradient",
        /// Stripes of the colour and its tint.
        Striped => "striped",
        /// Tint dots on the colour.
        Dotted => "dotted",
        /// A checkerboard of the colour and its tint.
        Checkered => "checkered",
    }
}

word_enum! {
    /// A global image style; `None` is not said.
    Style {
        /// No style (unsaid).
        None => "",
        /// Rendered without anti-aliasing at 1/[`pixel_art_factor`](crate::pixel_art_factor) of
        /// the size (1/2 at 64 px), upscaled nearest-neighbour.
        PixelArt => "pixel art",
        /// Gaussian blur (sigma 1 px at 64 px).
        Blurred => "blurred",
        /// Seeded per-pixel noise.
        Noisy => "noisy",
        /// Contrast stretched around mid-gray (saturated palette).
        HighContrast => "high contrast",
    }
}

/// A group of one to three identical objects ("two small outlined red stars").
///
/// Field order is the canonical order of groups in two-group scenes (derived `Ord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Object {
    /// The shape.
    pub shape: Shape,
    /// The colour.
    pub colour: Colour,
    /// The size.
    pub size: Size,
    /// Filled or outlined.
    pub fill: Fill,
    /// How many identical copies, 1 to 3.
    pub count: u8,
}

/// How the object groups are arranged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// One group, at a position.
    At(Position),
    /// Two groups: the first in the left part, the second in the right part.
    LeftOf,
    /// Two groups: the first in the right part, the second in the left part.
    RightOf,
    /// Two groups: the first in the top part, the second in the bottom part.
    Above,
    /// Two groups: the first in the bottom part, the second in the top part.
    Below,
    /// Three groups, left to right in the order listed.
    InARow,
    /// Three groups, top to bottom in the order listed.
    InAColumn,
}

impl Relation {
    /// Every relation (positions expanded).
    pub fn all() -> Vec<Relation> {
        let mut all: Vec<Relation> = Position::ALL.iter().map(|&p| Relation::At(p)).collect();
        all.extend([
            Relation::LeftOf,
            Relation::RightOf,
            Relation::Above,
            Relation::Below,
            Relation::InARow,
            Relation::InAColumn,
        ]);
        all
    }

    /// How many object groups this relation arranges.
    pub fn groups(self) -> usize {
        match self {
            Relation::At(_) => 1,
            Relation::InARow | Relation::InAColumn => 3,
            _ => 2,
        }
    }

    /// The words of this relation ("left of", "in a row", "in the top left corner", "" for the centre).
    pub fn words(self) -> &'static str {
        match self {
            Relation::At(p) => p.word(),
            Relation::LeftOf => "left of",
            Relation::RightOf => "right of",
            Relation::Above => "above",
            Relation::Below => "below",
            Relation::InARow => "in a row",
            Relation::InAColumn => "in a column",
        }
    }
}

/// The background: a pattern and a colour ("striped yellow background").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Background {
    /// The pattern.
    pub kind: BackgroundKind,
    /// The main colour (patterns alternate it with [`Colour::tint`]).
    pub colour: Colour,
}

impl Background {
    /// The background's words: "plain white background", "yellow gradient background",
    /// "striped yellow background", "dotted ...", "checkered ...".
    pub fn words(self) -> String {
        let c = self.colour.word();
        match self.kind {
            BackgroundKind::Gradient => format!("{c} gradient background"),
            kind => format!("{} {c} background", kind.word()),
        }
    }

    /// The colours this background shows: the colour, and for patterns also its tint.
    pub fn shown_colours(self) -> Vec<[u8; 3]> {
        match self.kind {
            BackgroundKind::Plain => vec![self.colour.rgb()],
            _ => vec![self.colour.rgb(), self.colour.tint()],
        }
    }
}

/// The smallest RGB distance between an object colour and any colour its background shows.
pub const MIN_CONTRAST: f32 = 80.0;

/// One image's content: 1-3 object groups, their arrangement, a background and a style.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scene {
    /// The object groups, 1 to 3, in prompt order (see [`Scene::validate`] for the canonical order).
    pub objects: Vec<Object>,
    /// Their arrangement; `relation.groups() == objects.len()`.
    pub relation: Relation,
    /// The background.
    pub background: Background,
    /// The global style.
    pub style: Style,
}

fn rgb_distance(a: [u8; 3], b: [u8; 3]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, y)| (x as f32 - y as f32).powi(2))
        .sum::<f32>()
        .sqrt()
}

fn article(next: &str) -> &'static str {
    if next.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl Object {
    /// The group's words: "a red star", "an outlined orange ring", "two small red stars".
    pub fn words(&self) -> String {
        let noun = if self.count == 1 {
            self.shape.word()
        } else {
            self.shape.plural()
        };
        let tail: Vec<&str> = [self.size.word(), self.fill.word(), self.colour.word(), noun]
            .into_iter()
            .filter(|w| !w.is_empty())
            .collect();
        let tail = tail.join(" ");
        let head = match self.count {
            1 => article(&tail),
            2 => "two",
            _ => "three",
        };
        format!("{head} {tail}")
    }
}

impl Scene {
    /// The one canonical prompt of this scene.
    pub fn prompt(&self) -> String {
        let groups: Vec<String> = self.objects.iter().map(Object::words).collect();
        let mut out = match groups.len() {
            0 => String::new(),
            1 => groups[0].clone(),
            2 => format!("{} {} {}", groups[0], self.relation.words(), groups[1]),
            _ => format!(
                "{}, {} and {} {}",
                groups[0],
                groups[1],
                groups[2..].join(" and "),
                self.relation.words()
            ),
        };
        if groups.len() == 1 && !self.relation.words().is_empty() {
            out.push(' ');
            out.push_str(self.relation.words());
        }
        out.push_str(", ");
        out.push_str(&self.background.words());
        if self.style != Style::None {
            out.push_str(", ");
            out.push_str(self.style.word());
        }
        out
    }

    /// The (colour, shape) pairs of this scene's object groups.
    pub fn colour_shapes(&self) -> impl Iterator<Item = (Colour, Shape)> + '_ {
        self.objects.iter().map(|o| (o.colour, o.shape))
    }

    /// Checks the grammar's rules; `Err` says which one fails. A valid scene has 1-3 groups
    /// matching the relation, counts 1-3, pairwise different colours, every object colour at
    /// least [`MIN_CONTRAST`] away from the background's colours, two groups in canonical
    /// (`Ord`) order, and a layout where every group fits its region at its nominal size.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.objects.len();
        if !(1..=3).contains(&n) {
            return Err(format!("{n} object groups (expected 1 to 3)"));
        }
        if self.relation.groups() != n {
            return Err(format!(
                "relation {:?} arranges {} groups, scene has {n}",
                self.relation,
                self.relation.groups()
            ));
        }
        for (i, o) in self.objects.iter().enumerate() {
            if !(1..=3).contains(&o.count) {
                return Err(format!("group {i} has count {} (expected 1 to 3)", o.count));
            }
            if self.objects[..i].iter().any(|p| p.colour == o.colour) {
                return Err(format!("colour {} used by two groups", o.colour.word()));
            }
            for bg in self.background.shown_colours() {
                if rgb_distance(o.colour.rgb(), bg) < MIN_CONTRAST {
                    return Err(format!(
                        "{} objects are not visible on a {}",
                        o.colour.word(),
                        self.background.words()
                    ));
                }
            }
        }
        if n == 2 && self.objects[0] >= self.objects[1] {
            return Err("two groups not in canonical order".to_owned());
        }
        if !layout::fits(self) {
            return Err("objects do not fit their regions".to_owned());
        }
        Ok(())
    }

    /// Parses a canonical prompt back into its scene; `None` unless `prompt` is exactly the
    /// prompt of a valid scene.
    pub fn parse(prompt: &str) -> Option<Scene> {
        let (objects_part, rest) = prompt.split_once(", ")?;
        // A three-group prompt has "A, B and C in a row, background": rejoin the first split.
        let (objects_part, rest) = if rest.contains(" and ") {
            let (second, rest2) = rest.split_once(", ")?;
            (format!("{objects_part}, {second}"), rest2)
        } else {
            (objects_part.to_owned(), rest)
        };
        let (bg_part, style) = match rest.split_once(", ") {
            Some((bg, st)) => (bg, parse_style(st)?),
            None => (rest, Style::None),
        };
        let background = parse_background(bg_part)?;
        let (objects, relation) = parse_objects(&objects_part)?;
        let scene = Scene {
            objects,
            relation,
            background,
            style,
        };
        (scene.validate().is_ok() && scene.prompt() == prompt).then_some(scene)
    }
}

fn parse_style(s: &str) -> Option<Style> {
    Style::ALL
        .iter()
        .copied()
        .find(|st| *st != Style::None && st.word() == s)
}

fn parse_background(s: &str) -> Option<Background> {
    for &kind in BackgroundKind::ALL {
        for &colour in Colour::ALL {
            let bg = Background { kind, colour };
            if bg.words() == s {
                return Some(bg);
            }
        }
    }
    None
}

fn parse_object(s: &str) -> Option<Object> {
    let words: Vec<&str> = s.split(' ').collect();
    let (count, rest) = match *words.first()? {
        "a" | "an" => (1u8, &words[1..]),
        "two" => (2, &words[1..]),
        "three" => (3, &words[1..]),
        _ => return None,
    };
    let mut i = 0;
    let mut size = Size::Medium;
    if let Some(&s) = rest
        .get(i)
        .and_then(|w| Size::ALL.iter().find(|z| z.word() == *w))
    {
        size = s;
        i += 1;
    }
    let mut fill = Fill::Filled;
    if rest.get(i) == Some(&Fill::Outlined.word()) {
        fill = Fill::Outlined;
        i += 1;
    }
    let colour = *Colour::ALL
        .iter()
        .find(|c| Some(&c.word()) == rest.get(i))?;
    let noun = *rest.get(i + 1)?;
    if rest.len() != i + 2 {
        return None;
    }
    let shape = *Shape::ALL.iter().find(|sh| {
        if count == 1 {
            sh.word() == noun
        } else {
            sh.plural() == noun
        }
    })?;
    Some(Object {
        shape,
        colour,
        size,
        fill,
        count,
    })
}

fn parse_objects(s: &str) -> Option<(Vec<Object>, Relation)> {
    for rel in [Relation::InARow, Relation::InAColumn] {
        if let Some(body) = s.strip_suffix(&format!(" {}", rel.words())) {
            let (first, rest) = body.split_once(", ")?;
            let (second, third) = rest.split_once(" and ")?;
            let objects = vec![
                parse_object(first)?,
                parse_object(second)?,
                parse_object(third)?,
            ];
            return Some((objects, rel));
        }
    }
    for rel in [
        Relation::LeftOf,
        Relation::RightOf,
        Relation::Above,
        Relation::Below,
    ] {
        let sep = format!(" {} ", rel.words());
        if let Some((a, b)) = s.split_once(&sep) {
            return Some((vec![parse_object(a)?, parse_object(b)?], rel));
        }
    }
    for &pos in Position::ALL.iter().rev() {
        if pos == Position::Center {
            return Some((vec![parse_object(s)?], Relation::At(pos)));
        }
        if let Some(body) = s.strip_suffix(&format!(" {}", pos.word())) {
            return Some((vec![parse_object(body)?], Relation::At(pos)));
        }
    }
    None
}

/// Splits a prompt into tokens: words, and "," as a token of its own.
pub fn tokenize(prompt: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in prompt.char_indices() {
        if ch == ',' || ch.is_whitespace() {
            if let Some(s) = start.take() {
                out.push(&prompt[s..i]);
            }
            if ch == ',' {
                out.push(",");
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&prompt[s..]);
    }
    out
}

/// Every token the grammar can emit (words and ","), sorted, deduplicated.
pub fn vocabulary() -> Vec<&'static str> {
    let mut words: Vec<&'static str> = vec![",", "a", "an", "two", "three", "and", "background"];
    let phrases = Shape::ALL
        .iter()
        .flat_map(|s| [s.word(), s.plural()])
        .chain(Colour::ALL.iter().map(|c| c.word()))
        .chain(Size::ALL.iter().map(|s| s.word()))
        .chain(Fill::ALL.iter().map(|f| f.word()))
        .chain(Relation::all().into_iter().map(Relation::words))
        .chain(BackgroundKind::ALL.iter().map(|b| b.word()))
        .chain(Style::ALL.iter().map(|s| s.word()));
    for phrase in phrases {
        words.extend(phrase.split_whitespace());
    }
    words.sort_unstable();
    words.dedup();
    words
}
