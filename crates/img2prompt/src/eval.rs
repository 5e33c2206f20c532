//! Evaluation the way the paper (arXiv 2401.09763) and the Kaggle "Stable Diffusion - Image to
//! Prompts" competition scored it: the mean cosine between predicted and true sentence
//! embeddings, for the CLIP head alone, the KNN prediction per `k`, the fused prediction per blend
//! weight, and the *text score* (the cosine of the output prompt text's own sentence embedding).
//!
//! [`EvalSet::gather`] runs the expensive parts once (one search at the largest `k`, one head
//! pass); every row of the table is then pure arithmetic over the same neighbours
//! ([`prompt_fusion::evaluate`]), so the rows are comparable and the tuning in `demo` reuses them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prompt_fusion::{
    Aggregation, BlendWeights, FusionConfig, Neighbour, TuningGrid, TuningReport, ValidationQuery,
    cosine, evaluate, tune,
};
use serde::{Deserialize, Serialize};

use crate::components::{EmbeddingHead, Hit, NeighbourSearch};
use crate::compose::{PromptChoice, pick_prompts};
use crate::error::{Error, Result};

/// One image with the prompt that made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalPair {
    /// The image file (relative paths in a pairs file are resolved against its directory).
    pub image: PathBuf,
    /// The true prompt.
    pub prompt: String,
    /// The 1-based line of the pairs file that names this pair (for messages; 0 when the pair
    /// did not come from a file).
    #[serde(skip)]
    pub line: usize,
}

/// Reads image-prompt pairs: `.jsonl` lines `{"image": .., "prompt": ..}` or `.csv` (cargo
/// feature `csv`) with a header naming `image` and `prompt` columns. Relative image paths are
/// resolved against the pairs file's directory. Errors name the file and line; a pair whose
/// image later fails to load can be reported by its [`EvalPair::line`].
pub fn read_pairs(path: &Path) -> Result<Vec<EvalPair>> {
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let bad = |line: Option<usize>, message: String| Error::Input {
        path: path.to_path_buf(),
        line,
        message,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mut pairs = match ext.as_deref() {
        Some("jsonl") => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let mut pairs = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let mut pair: EvalPair = serde_json::from_str(line).map_err(|e| {
                    bad(
                        Some(i + 1),
                        format!("expected {{\"image\": .., \"prompt\": ..}}: {e}"),
                    )
                })?;
                pair.line = i + 1;
                pairs.push(pair);
            }
            pairs
        }
        #[cfg(feature = "csv")]
        Some("csv") => read_csv_pairs(path)?,
        _ => {
            let formats = if cfg!(feature = "csv") {
                ".jsonl or .csv"
            } else {
                ".jsonl (or .csv with the cargo feature `csv`)"
            };
            return Err(bad(None, format!("pairs must be a {formats} file")));
        }
    };
    if pairs.is_empty() {
        return Err(bad(None, "no image-prompt pairs".to_string()));
    }
    for pair in &mut pairs {
        if pair.image.as_os_str().is_empty() {
            return Err(bad(Some(pair.line), "empty image path".to_string()));
        }
        crate::corpus::check_text(
            path,
            crate::corpus::Position::Line(pair.line as u64),
            &pair.prompt,
        )?;
        if pair.image.is_relative() {
            pair.image = base.join(&pair.image);
        }
    }
    Ok(pairs)
}

#[cfg(feature = "csv")]
fn read_csv_pairs(path: &Path) -> Result<Vec<EvalPair>> {
    let bad = |line: Option<usize>, message: String| Error::Input {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(None, e.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|e| bad(Some(1), e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| bad(Some(1), format!("no {name:?} column in the header")))
    };
    let (image, prompt) = (column("image")?, column("prompt")?);
    let mut pairs = Vec::new();
    let mut last_start = None;
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize);
            bad(line, e.to_string())
        })?;
        let position = record.position().cloned();
        let line = position.as_ref().map_or(0, |p| p.line() as usize);
        last_start = position.map(|p| (p.byte(), line));
        let field = |c: usize| {
            record
                .get(c)
                .map(str::to_string)
                .ok_or_else(|| bad(Some(line), "missing field".to_string()))
        };
        pairs.push(EvalPair {
            image: PathBuf::from(field(image)?),
            prompt: field(prompt)?,
            line,
        });
    }
    if let Some((byte, line)) = last_start
        && crate::corpus::unclosed_csv_quote(path, byte)?
    {
        return Err(bad(
            Some(line),
            "a quoted field is never closed (its quote runs to the end of the file)".to_string(),
        ));
    }
    Ok(pairs)
}

/// Which rows the evaluation table has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// `k`s of the KNN-only rows.
    pub ks: Vec<usize>,
    /// KNN shares of the fused rows (the head gets `1 - share`).
    pub knn_shares: Vec<f32>,
    /// `k` of the fused rows.
    pub fused_k: usize,
    /// Neighbour weighting for every row.
    pub aggregation: Aggregation,
    /// The fusion whose prediction the text rows aim at (what `predict` uses); `None`: the
    /// paper's 0.6 / 0.4 blend at `fused_k` with `aggregation`.
    #[serde(default)]
    pub text_fusion: Option<FusionConfig>,
    /// The pick `predict` prints when no text is composed or captioned (`--text`): the table
    /// marks it as the text. Not serialised (the default pick when read back).
    #[serde(skip)]
    pub text_choice: PromptChoice,
}

impl Default for EvalOptions {
    /// The paper's ablation: KNN at k in {1, 10, 50, 100, 200}, fused at k = 100 with
    /// w_knn in {0.5, 0.6, 0.7, 0.8, 0.9}, similarity-weighted.
    fn default() -> Self {
        Self {
            ks: vec![1, 10, 50, 100, 200],
            knn_shares: vec![0.5, 0.6, 0.7, 0.8, 0.9],
            fused_k: 100,
            aggregation: Aggregation::SimilarityWeighted,
            text_fusion: None,
            text_choice: PromptChoice::default(),
        }
    }
}

impl EvalOptions {
    /// The fusion the text rows aim at: `text_fusion`, else the paper's blend at `fused_k`.
    pub fn text_fusion(&self) -> FusionConfig {
        self.text_fusion.unwrap_or(FusionConfig {
            k: self.fused_k,
            aggregation: self.aggregation,
            weights: BlendWeights::knn_share(0.6),
        })
    }

    /// The largest `k` any row needs.
    pub fn max_k(&self) -> usize {
        self.ks
            .iter()
            .copied()
            .chain([self.fused_k, self.text_fusion().k])
            .max()
            .unwrap_or(1)
    }
}

/// Output texts that are not a corpus prompt (composed or captioned), as their sentence
/// embeddings, for [`EvalSet::report`].
#[derive(Clone, Copy, Debug)]
pub struct OutputTexts<'a> {
    /// The text mode's name in the table (`compose`, `caption`).
    pub mode: &'a str,
    /// The texts' sentence embeddings, flat, one target-wide row per query.
    pub embeddings: &'a [f32],
    /// Seconds per image spent writing the texts (their embedding for scoring excluded).
    pub seconds_per_image: f64,
}

/// The evaluation table, serialisable as `eval --json` writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Number of evaluated pairs.
    pub n: usize,
    /// Mean cosine of the head's predictions alone (absent without a head).
    pub clip_head: Option<f64>,
    /// Mean cosine of the KNN prediction per `k`.
    pub knn: BTreeMap<usize, f64>,
    /// `k` used by the fused rows.
    pub fused_k: usize,
    /// Mean cosine of the fused prediction per KNN share (keys like `"0.6"`); absent without a head.
    pub fused: BTreeMap<String, f64>,
    /// Mean cosine of the output prompt texts' own sentence embeddings (the texts `predict`
    /// prints: composed ones when given, else the default [`PromptChoice`]'s).
    pub text_score: f64,
    /// How the output prompt texts were chosen (a [`PromptChoice`] name, or `compose`).
    pub text_mode: String,
    /// The text score of every way of choosing the text that was evaluated (each
    /// [`PromptChoice`] by name, aimed at `text_fusion`'s prediction, and `compose` when given).
    #[serde(default)]
    pub text_scores: BTreeMap<String, f64>,
    /// Seconds per image each text mode took to write its texts (picks: the pick alone, the
    /// prediction excluded; captions: the captioner; compose: the composition).
    #[serde(default)]
    pub text_seconds_per_image: BTreeMap<String, f64>,
    /// The fusion whose prediction the picked texts aim at ([`EvalOptions::text_fusion`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_fusion: Option<FusionConfig>,
    /// Mean cosine of the prediction at `text_fusion` (the embedding `predict` returns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_fusion_score: Option<f64>,
    /// What the evaluated head was trained on, when its file records it (filled in by the
    /// caller that loaded the head; [`EvalSet::report`] leaves it `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_training: Option<crate::head::HeadTraining>,
}

impl EvalReport {
    /// The table as printed by `img2prompt eval`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:>5} {:>6} {:>12}\n",
            "prediction", "k", "w_knn", "mean cosine"
        );
        if let Some(h) = self.clip_head {
            out += &format!(
                "{:<28} {:>5} {:>6} {:>12.4}\n",
                "CLIP head only", "-", "0.0", h
            );
        }
        for (k, s) in &self.knn {
            out += &format!("{:<28} {:>5} {:>6} {:>12.4}\n", "KNN", k, "1.0", s);
        }
        for (w, s) in &self.fused {
            out += &format!("{:<28} {:>5} {:>6} {:>12.4}\n", "fused", self.fused_k, w, s);
        }
        if let (Some(f), Some(score)) = (&self.text_fusion, self.text_fusion_score) {
            out += &format!(
                "{:<28} {:>5} {:>6.2} {:>12.4}\n",
                "fused, predict's setting", f.k, f.weights.knn, score
            );
        }
        if self.text_scores.is_empty() {
            out += &format!(
                "{:<28} {:>5} {:>6} {:>12.4}\n",
                format!("text score ({})", self.text_mode),
                "-",
                "-",
                self.text_score
            );
        }
        for (mode, score) in &self.text_scores {
            let default = if *mode == self.text_mode { " *" } else { "" };
            let cost = self
                .text_seconds_per_image
                .get(mode)
                .map(|s| format!("  ({:.1} ms/image)", s * 1000.0))
                .unwrap_or_default();
            out += &format!(
                "{:<28} {:>5} {:>6} {:>12.4}{cost}\n",
                format!("text score ({mode}){default}"),
                "-",
                "-",
                score
            );
        }
        out += &format!("({} image-prompt pairs)\n", self.n);
        if let Some(f) = &self.text_fusion {
            out += &format!(
                "(texts aim at the prediction fused with k {}, w_knn {}, w_clip {}, {})\n",
                f.k, f.weights.knn, f.weights.clip, f.aggregation
            );
        }
        if let Some(training) = &self.head_training {
            out += &format!("(head trained on {training})\n");
        }
        out
    }
}

/// Everything the table needs, gathered once: per query, the neighbours (best first, up to the
/// largest `k`), the head's prediction and the true target.
#[derive(Clone, Debug)]
pub struct EvalSet {
    /// Neighbours per query.
    pub hits: Vec<Vec<Hit>>,
    /// Head predictions per query (when a head was given).
    pub heads: Option<Vec<Vec<f32>>>,
    /// True sentence embeddings per query.
    pub truths: Vec<Vec<f32>>,
}

impl EvalSet {
    /// Searches `k_max` neighbours for each image embedding in `queries` (flat, key-wide rows)
    /// and runs the head; `truths` are the true prompts' sentence embeddings (flat, target-wide).
    pub fn gather(
        queries: &[f32],
        truths: &[f32],
        search: &dyn NeighbourSearch,
        head: Option<&dyn EmbeddingHead>,
        k_max: usize,
    ) -> Result<Self> {
        let (kd, td) = (search.key_dim(), search.target_dim());
        if !queries.len().is_multiple_of(kd)
            || !truths.len().is_multiple_of(td)
            || queries.len() / kd != truths.len() / td
        {
            return Err(Error::Mismatch {
                what: "evaluation queries vs truths".into(),
                expected: format!("n rows of {kd} and n rows of {td}"),
                found: format!("{} and {} values", queries.len(), truths.len()),
            });
        }
        if queries.is_empty() {
            return Err(Error::invalid("pairs", "nothing to evaluate"));
        }
        let hits = search.search(queries, k_max)?;
        let heads = match head {
            Some(h) => Some(
                h.predict(queries)?
                    .chunks_exact(h.output_dim())
                    .map(<[f32]>::to_vec)
                    .collect(),
            ),
            None => None,
        };
        Ok(Self {
            hits,
            heads,
            truths: truths.chunks_exact(td).map(<[f32]>::to_vec).collect(),
        })
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.truths.len()
    }

    /// Whether there are no queries.
    pub fn is_empty(&self) -> bool {
        self.truths.is_empty()
    }

    /// The queries in prompt-fusion's form (borrowing this set).
    pub fn queries(&self) -> Vec<ValidationQuery<'_>> {
        self.truths
            .iter()
            .enumerate()
            .map(|(i, truth)| ValidationQuery {
                neighbours: self.hits[i]
                    .iter()
                    .map(|h| Neighbour::new(h.score, &h.target))
                    .collect(),
                head: self.heads.as_ref().map(|h| h[i].as_slice()),
                truth,
            })
            .collect()
    }

    /// Grid search of fusion settings on this set (see [`prompt_fusion::tune`]).
    pub fn tune(&self, grid: &TuningGrid) -> Result<TuningReport> {
        Ok(tune(&self.queries(), grid)?)
    }

    /// Mean cosine of one fusion setting.
    pub fn score(&self, config: &FusionConfig) -> Result<f64> {
        Ok(evaluate(&self.queries(), config)?)
    }

    /// The table. `texts` are output prompts that are not a corpus prompt (composed, captioned),
    /// scored by their own sentence embeddings; the first of them is the text `predict` prints
    /// (without any, the default [`PromptChoice`]'s). Every [`PromptChoice`] is scored too, by
    /// the picked prompt's stored target, which *is* its prompt's sentence embedding.
    /// `search` is the one the set was gathered from: [`PromptChoice::NearestInIndex`] scans
    /// its targets.
    pub fn report(
        &self,
        options: &EvalOptions,
        texts: &[OutputTexts<'_>],
        search: &dyn NeighbourSearch,
    ) -> Result<EvalReport> {
        let queries = self.queries();
        let config = |k: usize, weights: BlendWeights| FusionConfig {
            k,
            aggregation: options.aggregation,
            weights,
        };
        let mut knn = BTreeMap::new();
        for &k in &options.ks {
            // Without a head the KNN prediction is the result whatever the weights.
            knn.insert(
                k,
                evaluate(&queries, &config(k, BlendWeights::knn_share(1.0)))?,
            );
        }
        let mut fused = BTreeMap::new();
        let clip_head = match &self.heads {
            Some(heads) => {
                for &w in &options.knn_shares {
                    let s = evaluate(
                        &queries,
                        &config(options.fused_k, BlendWeights::knn_share(w)),
                    )?;
                    fused.insert(
                        format!("{w:.2}")
                            .trim_end_matches('0')
                            .trim_end_matches('.')
                            .to_string(),
                        s,
                    );
                }
                Some(mean_cosine(heads.iter().map(Vec::as_slice), &self.truths)?)
            }
            None => None,
        };
        // Each way of picking a prompt, for the prediction `predict` makes (the text fusion's,
        // among its k neighbours): the picked prompt's stored target is its sentence embedding.
        let text_fusion = options.text_fusion();
        let predictions = queries
            .iter()
            .map(|q| text_fusion.fuse(&q.neighbours, q.head).map(|f| f.embedding))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let neighbours: Vec<&[Hit]> = self
            .hits
            .iter()
            .map(|hits| &hits[..hits.len().min(text_fusion.k)])
            .collect();
        let mut text_scores = BTreeMap::new();
        let mut text_seconds_per_image = BTreeMap::new();
        for choice in PromptChoice::ALL {
            let start = std::time::Instant::now();
            let picked = pick_prompts(choice, &predictions, &neighbours, search)?
                .into_iter()
                .map(|hit| {
                    hit.map(|h| h.target)
                        .ok_or(prompt_fusion::FusionError::NoNeighbours)
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            text_seconds_per_image.insert(
                choice.name().to_string(),
                start.elapsed().as_secs_f64() / self.len().max(1) as f64,
            );
            text_scores.insert(
                choice.name().to_string(),
                mean_cosine(picked.iter().map(Vec::as_slice), &self.truths)?,
            );
        }
        let td = self.truths.first().map_or(1, Vec::len);
        for t in texts {
            let score = mean_cosine(t.embeddings.chunks_exact(td), &self.truths)?;
            text_scores.insert(t.mode.to_string(), score);
            text_seconds_per_image.insert(t.mode.to_string(), t.seconds_per_image);
        }
        let text_mode = texts.first().map_or(options.text_choice.name(), |t| t.mode);
        let text_score = text_scores.get(text_mode).copied().unwrap_or(0.0);
        Ok(EvalReport {
            n: self.len(),
            clip_head,
            knn,
            fused_k: options.fused_k,
            fused,
            text_score,
            text_mode: text_mode.to_string(),
            text_scores,
            text_seconds_per_image,
            text_fusion: Some(text_fusion),
            text_fusion_score: Some(evaluate(&queries, &text_fusion)?),
            head_training: None,
        })
    }
}

/// Mean cosine of `predictions` to `truths`, pairwise, in f64.
fn mean_cosine<'a>(
    predictions: impl Iterator<Item = &'a [f32]>,
    truths: &[Vec<f32>],
) -> Result<f64> {
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for (p, t) in predictions.zip(truths) {
        sum += f64::from(cosine(p, t)?);
        n += 1;
    }
    if n != truths.len() || n == 0 {
        return Err(Error::Mismatch {
            what: "predictions vs truths".into(),
            expected: truths.len().to_string(),
            found: n.to_string(),
        });
    }
    Ok(sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table(Vec<Hit>);

    impl NeighbourSearch for Table {
        fn key_dim(&self) -> usize {
            2
        }
        fn target_dim(&self) -> usize {
            2
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn key_model(&self) -> Option<&crate::ModelId> {
            None
        }
        fn target_model(&self) -> Option<&crate::ModelId> {
            None
        }
        fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>> {
            Ok(queries
                .chunks_exact(2)
                .map(|_| self.0.iter().take(k).cloned().collect())
                .collect())
        }
        /// The whole table, not only the first `k`, by cosine to the query.
        fn nearest_by_target(&self, queries: &[f32]) -> Result<Vec<Option<Hit>>> {
            Ok(crate::components::test_support::nearest_by_cosine(
                &self.0, queries, 2,
            ))
        }
    }

    struct Fixed(Vec<f32>);

    impl EmbeddingHead for Fixed {
        fn input_dim(&self) -> usize {
            2
        }
        fn output_dim(&self) -> usize {
            2
        }
        fn predict(&self, e: &[f32]) -> Result<Vec<f32>> {
            Ok(e.chunks_exact(2).flat_map(|_| self.0.clone()).collect())
        }
    }

    fn hit(id: u64, score: f32, target: [f32; 2]) -> Hit {
        Hit {
            id,
            score,
            prompt: format!("p{id}"),
            target: target.to_vec(),
        }
    }

    #[test]
    fn table_rows_follow_from_the_neighbours() {
        // Truth [1, 0]; best neighbour exact, second orthogonal; the head says [0, 1].
        // A third prompt, beyond the k = 2 neighbours, lies along the fused prediction.
        let along = [0.569f32, 0.590];
        let n = (along[0] * along[0] + along[1] * along[1]).sqrt();
        let search = Table(vec![
            hit(0, 0.75, [1.0, 0.0]),
            hit(1, 0.25, [0.0, 1.0]),
            hit(2, 0.1, [along[0] / n, along[1] / n]),
        ]);
        let head = Fixed(vec![0.0, 1.0]);
        let set = EvalSet::gather(&[1.0, 0.0], &[1.0, 0.0], &search, Some(&head), 2).unwrap();
        let options = EvalOptions {
            ks: vec![1, 2],
            knn_shares: vec![0.5],
            fused_k: 2,
            ..EvalOptions::default()
        };
        let r = set.report(&options, &[], &search).unwrap();
        assert!((r.knn[&1] - 1.0).abs() < 1e-6);
        // k = 2: weights 0.75 / 0.25 -> [3, 1] / sqrt(10).
        let knn2 = 3.0 / 10f64.sqrt();
        assert!((r.knn[&2] - knn2).abs() < 1e-6);
        assert!(r.clip_head.unwrap().abs() < 1e-6);
        // Fused 0.5 / 0.5 of u = [3, 1]/sqrt(10) and [0, 1]: cos to [1, 0].
        let u = [3.0 / 10f64.sqrt(), 1.0 / 10f64.sqrt()];
        let f = [0.5 * u[0], 0.5 * u[1] + 0.5];
        let expected = f[0] / (f[0] * f[0] + f[1] * f[1]).sqrt();
        assert!((r.fused["0.5"] - expected).abs() < 1e-6, "{:?}", r.fused);
        // Texts: the best neighbour's is the truth; the paper's 0.6 / 0.4 blend at k = 2,
        // 0.6 u + 0.4 [0, 1] = [0.569, 0.590], is nearer the second neighbour's [0, 1], whose
        // text scores 0. The default searches the whole table and finds the third prompt,
        // whose cosine to the truth is its first coordinate.
        assert!((r.text_scores["best-neighbour"] - 1.0).abs() < 1e-6);
        assert!(r.text_scores["nearest"].abs() < 1e-6);
        let third = f64::from(along[0] / n);
        assert!((r.text_scores["nearest-in-index"] - third).abs() < 1e-6);
        assert_eq!(r.text_mode, "nearest-in-index");
        assert_eq!(r.text_score, r.text_scores["nearest-in-index"]);
        assert!(r.table().contains("CLIP head only"));
        assert!(r.table().contains("text score (nearest-in-index) *"));
        let composed = OutputTexts {
            mode: "compose",
            embeddings: &[0.0, 1.0],
            seconds_per_image: 0.5,
        };
        let captioned = OutputTexts {
            mode: "caption",
            embeddings: &[0.6, 0.8],
            ..composed
        };
        let r2 = set
            .report(&options, &[composed, captioned], &search)
            .unwrap();
        assert!(r2.text_score.abs() < 1e-6);
        assert_eq!(r2.text_mode, "compose");
        assert_eq!(r2.text_scores.len(), 5);
        assert!((r2.text_scores["caption"] - 0.6).abs() < 1e-6);
        assert_eq!(r2.text_seconds_per_image["caption"], 0.5);
        assert!(r2.table().contains("text score (caption)"));
        assert!(r2.table().contains("(500.0 ms/image)"));
        let r3 = set.report(&options, &[captioned], &search).unwrap();
        assert_eq!(r3.text_mode, "caption");
        assert!((r3.text_score - 0.6).abs() < 1e-6);
        // With another pick for the text and nothing composed or captioned, that pick is it.
        let best = EvalOptions {
            text_choice: PromptChoice::BestNeighbour,
            ..options.clone()
        };
        let r4 = set.report(&best, &[], &search).unwrap();
        assert_eq!(r4.text_mode, "best-neighbour");
        assert!((r4.text_score - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pairs_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("p.jsonl");
        std::fs::write(&jsonl, "{\"image\": \"a.png\", \"prompt\": \"x\"}\n\n").unwrap();
        let pairs = read_pairs(&jsonl).unwrap();
        assert_eq!(pairs[0].image, dir.path().join("a.png"));
        let csv = dir.path().join("p.csv");
        std::fs::write(&csv, "prompt,image\n\"a, b\",/abs/b.png\n").unwrap();
        if cfg!(feature = "csv") {
            let pairs = read_pairs(&csv).unwrap();
            assert_eq!(pairs[0].prompt, "a, b");
            assert_eq!(pairs[0].image, PathBuf::from("/abs/b.png"));
            std::fs::write(&csv, "image,text\nx.png,y\n").unwrap();
            let err = read_pairs(&csv).unwrap_err().to_string();
            assert!(err.contains("prompt") && err.contains("p.csv"), "{err}");
        } else {
            // Without the feature a .csv is refused with the feature named.
            let err = read_pairs(&csv).unwrap_err().to_string();
            assert!(err.contains("`csv`") && err.contains("p.csv"), "{err}");
        }
        std::fs::write(&jsonl, "{\"image\": 3}\n").unwrap();
        let err = read_pairs(&jsonl).unwrap_err().to_string();
        assert!(err.contains("p.jsonl:1"), "{err}");
        assert!(read_pairs(&dir.path().join("p.txt")).is_err());
    }
}
