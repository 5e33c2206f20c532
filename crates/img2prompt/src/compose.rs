//! Composing a prompt text from the neighbours' comma-separated phrases.
//!
//! Prompts are lists of phrases ("a red star, striped background, pixel art"). Given the fused
//! sentence-space embedding of an image, [`compose_prompt`] collects the distinct phrases of the
//! best neighbours and builds a prompt greedily: each step appends the phrase whose addition gives
//! the highest cosine between the sentence embedding of the whole text and the target; it stops
//! when no phrase improves the cosine or `max_phrases` are chosen. Every step embeds all candidate
//! texts in one batch, so a prompt costs at most `max_phrases` encoder batches.

use std::collections::HashSet;

use prompt_fusion::cosine;

use crate::components::{Hit, NeighbourSearch, TextEmbedder};
use crate::error::{Error, Result};

/// How a prediction's prompt text is picked among the corpus's prompts (when not composed).
///
/// Measured on the 100k demo (1 000 test pairs, the paper's blend, retrained world CLIP,
/// 2026-12-06), mean cosine of the picked prompt's sentence embedding to the true prompt's: the
/// index prompt nearest the fused prediction 0.641, the neighbour nearest it 0.636, the best
/// neighbour by key 0.582 (cross-domain: 0.630, 0.621, 0.568). The prompts' sentence
/// embeddings are the index's stored targets, so no choice runs the sentence encoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PromptChoice {
    /// The prompt, anywhere in the index, whose stored sentence embedding is closest (cosine)
    /// to the fused prediction: an exhaustive scan of the index's targets
    /// ([`NeighbourSearch::nearest_by_target`](crate::NeighbourSearch::nearest_by_target)),
    /// a few milliseconds per image at 100k prompts (the default).
    #[default]
    NearestInIndex,
    /// The neighbour whose stored sentence embedding is closest (cosine) to the fused
    /// prediction: the prompt among the `k` neighbours that says most nearly what the
    /// prediction says.
    NearestToPrediction,
    /// The neighbour whose CLIP key is closest to the image: the search's first hit.
    BestNeighbour,
}

impl PromptChoice {
    /// Every choice, default first.
    pub const ALL: [PromptChoice; 3] = [
        PromptChoice::NearestInIndex,
        PromptChoice::NearestToPrediction,
        PromptChoice::BestNeighbour,
    ];

    /// The name used on command lines and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            PromptChoice::NearestInIndex => "nearest-in-index",
            PromptChoice::NearestToPrediction => "nearest",
            PromptChoice::BestNeighbour => "best-neighbour",
        }
    }

    /// Whether this choice searches the whole index ([`PromptChoice::NearestInIndex`]) rather
    /// than picking among the neighbours.
    pub fn searches_index(&self) -> bool {
        matches!(self, PromptChoice::NearestInIndex)
    }

    /// The index, among `targets` (the neighbours' sentence embeddings, best neighbour first),
    /// of the prompt this choice picks for the fused `prediction`; `None` without neighbours.
    /// [`PromptChoice::NearestInIndex`], given only the neighbours, picks as
    /// [`PromptChoice::NearestToPrediction`] does (its fallback when the search has no answer).
    pub fn pick<'a>(
        &self,
        prediction: &[f32],
        targets: impl IntoIterator<Item = &'a [f32]>,
    ) -> Option<usize> {
        let mut targets = targets.into_iter();
        match self {
            PromptChoice::BestNeighbour => targets.next().map(|_| 0),
            PromptChoice::NearestToPrediction | PromptChoice::NearestInIndex => targets
                .enumerate()
                .map(|(i, t)| (i, cosine(prediction, t).unwrap_or(f32::NEG_INFINITY)))
                .fold(None, |best: Option<(usize, f32)>, (i, c)| match best {
                    Some((_, b)) if b >= c => best,
                    _ => Some((i, c)),
                })
                .map(|(i, _)| i),
        }
    }
}

/// Picks the prompt text of each fused prediction in a batch, as `choice` says: what `predict`,
/// `eval` and the demo's contact sheet all print.
///
/// `predictions[i]` is one fused prediction (target space) and `neighbours[i]` its key
/// neighbours, best first. [`PromptChoice::NearestInIndex`] scans the search's targets once for
/// the whole batch ([`NeighbourSearch::nearest_by_target`]); where the search has no answer (a
/// custom search without a scan, a zero prediction) it falls back to the neighbour nearest the
/// prediction. Each answer is the picked [`Hit`] (its `target` is the prompt's sentence
/// embedding), `None` for a prediction without neighbours and without an index answer.
pub fn pick_prompts<P: AsRef<[f32]>>(
    choice: PromptChoice,
    predictions: &[P],
    neighbours: &[&[Hit]],
    search: &dyn NeighbourSearch,
) -> Result<Vec<Option<Hit>>> {
    if predictions.len() != neighbours.len() {
        return Err(Error::Mismatch {
            what: "neighbour lists (one per prediction)".into(),
            expected: predictions.len().to_string(),
            found: neighbours.len().to_string(),
        });
    }
    let mut in_index = if choice.searches_index() && !predictions.is_empty() {
        let flat: Vec<f32> = predictions
            .iter()
            .flat_map(|p| p.as_ref().iter().copied())
            .collect();
        search.nearest_by_target(&flat)?
    } else {
        Vec::new()
    };
    // A search answering fewer rows than asked leaves the rest to the fallback.
    in_index.resize(predictions.len(), None);
    Ok(predictions
        .iter()
        .zip(neighbours)
        .zip(in_index)
        .map(|((prediction, hits), found)| {
            found.or_else(|| {
                choice
                    .pick(
                        prediction.as_ref(),
                        hits.iter().map(|h| h.target.as_slice()),
                    )
                    .and_then(|j| hits.get(j))
                    .cloned()
            })
        })
        .collect())
}

impl std::fmt::Display for PromptChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PromptChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        PromptChoice::ALL
            .into_iter()
            .find(|c| c.name() == s.trim())
            .ok_or_else(|| {
                Error::invalid(
                    "prompt choice",
                    format!(
                        "{s:?} is not one of: {}",
                        PromptChoice::ALL.map(|c| c.name()).join(", ")
                    ),
                )
            })
    }
}

/// Limits of [`compose_prompt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComposeOptions {
    /// Phrases are taken from this many best neighbours.
    pub neighbours: usize,
    /// At most this many distinct candidate phrases are considered.
    pub max_candidates: usize,
    /// At most this many phrases in the composed prompt.
    pub max_phrases: usize,
}

impl Default for ComposeOptions {
    /// Phrases of the 20 best neighbours, at most 48 candidates, at most 8 phrases.
    fn default() -> Self {
        Self {
            neighbours: 20,
            max_candidates: 48,
            max_phrases: 8,
        }
    }
}

/// A composed prompt and the cosine of its own sentence embedding to the target.
#[derive(Clone, Debug, PartialEq)]
pub struct Composed {
    /// The prompt text: chosen phrases joined by ", ", in the order chosen.
    pub text: String,
    /// Cosine between the text's sentence embedding and the target.
    pub score: f32,
}

/// The distinct, non-empty, trimmed comma-separated phrases of `prompts`, in order of first
/// appearance, at most `limit`.
pub fn distinct_phrases<'a>(prompts: &[&'a str], limit: usize) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    let mut phrases = Vec::new();
    for phrase in prompts.iter().flat_map(|p| p.split(',')).map(str::trim) {
        if phrases.len() >= limit {
            break;
        }
        if !phrase.is_empty() && seen.insert(phrase) {
            phrases.push(phrase);
        }
    }
    phrases
}

/// Greedily composes a prompt from the phrases of `neighbour_prompts` (best first) that
/// maximises the cosine between its sentence embedding (by `embedder`) and `target`.
///
/// # Errors
/// No phrase at all in the neighbours, `target` not as wide as the embedder's output, or the
/// embedder's own errors.
pub fn compose_prompt(
    target: &[f32],
    neighbour_prompts: &[&str],
    embedder: &dyn TextEmbedder,
    options: &ComposeOptions,
) -> Result<Composed> {
    if target.len() != embedder.dim() {
        return Err(Error::Mismatch {
            what: format!(
                "compose: target width vs sentence model {}",
                embedder.model_id()
            ),
            expected: embedder.dim().to_string(),
            found: target.len().to_string(),
        });
    }
    let sources = &neighbour_prompts[..neighbour_prompts.len().min(options.neighbours)];
    let mut remaining = distinct_phrases(sources, options.max_candidates);
    if remaining.is_empty() {
        return Err(Error::invalid(
            "compose",
            "the neighbours' prompts contain no phrase",
        ));
    }
    let dim = embedder.dim();
    let mut chosen: Vec<&str> = Vec::new();
    let mut best = f32::NEG_INFINITY;
    while chosen.len() < options.max_phrases.max(1) && !remaining.is_empty() {
        let trials: Vec<String> = remaining
            .iter()
            .map(|p| {
                let mut parts = chosen.clone();
                parts.push(p);
                parts.join(", ")
            })
            .collect();
        let refs: Vec<&str> = trials.iter().map(String::as_str).collect();
        let embedded = embedder.embed_texts(&refs)?;
        let mut step_best: Option<(usize, f32)> = None;
        for (i, row) in embedded.chunks_exact(dim).enumerate() {
            let c = cosine(row, target)?;
            if step_best.is_none_or(|(_, s)| c > s) {
                step_best = Some((i, c));
            }
        }
        match step_best {
            Some((i, score)) if score > best => {
                best = score;
                chosen.push(remaining.remove(i));
            }
            _ => break,
        }
    }
    Ok(Composed {
        text: chosen.join(", "),
        score: best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Embeds a text as the counts of three keywords plus a constant 1 (a transparent stand-in
    /// for a sentence model; the constant keeps every embedding non-zero).
    struct KeywordEmbedder;

    impl TextEmbedder for KeywordEmbedder {
        fn model_id(&self) -> &crate::ModelId {
            static ID: std::sync::OnceLock<crate::ModelId> = std::sync::OnceLock::new();
            ID.get_or_init(|| crate::ModelId::new("keywords", ""))
        }
        fn dim(&self) -> usize {
            4
        }
        fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
            Ok(texts
                .iter()
                .flat_map(|t| {
                    let mut v: Vec<f32> = ["red", "star", "stripes"]
                        .iter()
                        .map(|w| t.matches(w).count() as f32)
                        .collect();
                    v.push(1.0);
                    v
                })
                .collect())
        }
    }

    #[test]
    fn phrases_are_distinct_trimmed_and_ordered() {
        let p = distinct_phrases(&["a, b ,, c", "b, d", " a "], 10);
        assert_eq!(p, vec!["a", "b", "c", "d"]);
        assert_eq!(distinct_phrases(&["a, b, c"], 2), vec!["a", "b"]);
    }

    #[test]
    fn greedy_picks_the_phrases_that_match_the_target() {
        // Target: "red" and "star" equally, no "stripes".
        let target = [1.0, 1.0, 0.0, 0.0];
        let prompts = ["a blue circle, stripes", "red square, a star", "stripes"];
        let c = compose_prompt(
            &target,
            &prompts,
            &KeywordEmbedder,
            &ComposeOptions::default(),
        )
        .unwrap();
        let mut parts: Vec<&str> = c.text.split(", ").collect();
        parts.sort_unstable();
        assert_eq!(parts, vec!["a star", "red square"]);
        // [1, 1, 0, 1] against [1, 1, 0, 0]: 2 / (sqrt 3 * sqrt 2).
        assert!((c.score - 2.0 / 6f32.sqrt()).abs() < 1e-6, "{c:?}");
    }

    #[test]
    fn stops_when_nothing_improves() {
        let target = [0.0, 0.0, 1.0, 0.0];
        let prompts = ["stripes, red, star"];
        let c = compose_prompt(
            &target,
            &prompts,
            &KeywordEmbedder,
            &ComposeOptions::default(),
        )
        .unwrap();
        assert_eq!(c.text, "stripes");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let opts = ComposeOptions::default();
        assert!(compose_prompt(&[1.0, 0.0], &["a"], &KeywordEmbedder, &opts).is_err());
        assert!(compose_prompt(&[1.0, 0.0, 0.0, 0.0], &[" , "], &KeywordEmbedder, &opts).is_err());
    }

    /// A 2-d target space: `stored` is the whole "index" (each prompt's target), `neighbours`
    /// what a key search would have found. `scans` says whether it answers `nearest_by_target`;
    /// `short` drops the last answer (a search answering fewer rows than asked).
    struct Stored {
        stored: Vec<Hit>,
        scans: bool,
        short: bool,
    }

    fn hit(id: u64, prompt: &str, target: [f32; 2]) -> Hit {
        Hit {
            id,
            score: 0.0,
            prompt: prompt.to_string(),
            target: target.to_vec(),
        }
    }

    impl NeighbourSearch for Stored {
        fn key_dim(&self) -> usize {
            2
        }
        fn target_dim(&self) -> usize {
            2
        }
        fn len(&self) -> usize {
            self.stored.len()
        }
        fn key_model(&self) -> Option<&crate::ModelId> {
            None
        }
        fn target_model(&self) -> Option<&crate::ModelId> {
            None
        }
        fn search(&self, _queries: &[f32], _k: usize) -> Result<Vec<Vec<Hit>>> {
            unreachable!("pick_prompts never searches keys")
        }
        fn nearest_by_target(&self, queries: &[f32]) -> Result<Vec<Option<Hit>>> {
            if !self.scans {
                return Ok(vec![None; queries.len() / 2]);
            }
            let mut found =
                crate::components::test_support::nearest_by_cosine(&self.stored, queries, 2);
            if self.short {
                found.pop();
            }
            Ok(found)
        }
    }

    #[test]
    fn picks_for_a_batch_follow_the_choice_and_fall_back_to_the_neighbours() {
        let east = hit(1, "east", [1.0, 0.0]);
        let north_east = hit(2, "north-east", [1.0, 1.0]);
        let north = hit(3, "north", [0.0, 1.0]);
        let all = vec![east.clone(), north_east.clone(), north.clone()];
        // Both predictions point almost north-east; their neighbours are east then north (the
        // north-east prompt is no neighbour), and the second has none.
        let predictions = [vec![0.9f32, 1.0], vec![1.0f32, 0.9]];
        let first = [east.clone(), north.clone()];
        let neighbours: [&[Hit]; 2] = [&first, &[]];
        let scanning = Stored {
            stored: all.clone(),
            scans: true,
            short: false,
        };
        let prompts = |search: &Stored, choice: PromptChoice| -> Vec<Option<String>> {
            pick_prompts(choice, &predictions, &neighbours, search)
                .unwrap()
                .into_iter()
                .map(|h| h.map(|h| h.prompt))
                .collect()
        };
        let name = |s: &str| Some(s.to_string());
        // The whole-index scan finds the prompt that is no neighbour, for both predictions.
        assert_eq!(
            prompts(&scanning, PromptChoice::NearestInIndex),
            [name("north-east"), name("north-east")]
        );
        // Among the neighbours: north is nearer [0.9, 1.0] than east; without neighbours, none.
        assert_eq!(
            prompts(&scanning, PromptChoice::NearestToPrediction),
            [name("north"), None]
        );
        assert_eq!(
            prompts(&scanning, PromptChoice::BestNeighbour),
            [name("east"), None]
        );
        // A search without a scan, or with a missing answer, falls back to the neighbours.
        let blind = Stored {
            stored: all.clone(),
            scans: false,
            short: false,
        };
        assert_eq!(
            prompts(&blind, PromptChoice::NearestInIndex),
            [name("north"), None]
        );
        let short = Stored {
            stored: all,
            scans: true,
            short: true,
        };
        assert_eq!(
            prompts(&short, PromptChoice::NearestInIndex),
            [name("north-east"), None]
        );
        // One neighbour list per prediction, or an error naming them.
        let err = pick_prompts(
            PromptChoice::NearestInIndex,
            &predictions,
            &neighbours[..1],
            &scanning,
        )
        .unwrap_err();
        assert!(err.to_string().contains("neighbour lists"), "{err}");
        // An empty batch asks nothing.
        let none: [Vec<f32>; 0] = [];
        assert!(
            pick_prompts(PromptChoice::NearestInIndex, &none, &[], &scanning)
                .unwrap()
                .is_empty()
        );
    }
}
