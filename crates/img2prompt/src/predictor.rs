//! The online stage: [`Predictor`], composed from the traits in [`crate::components`].
//!
//! ```text
//! image ─► ImageEmbedder ─► query ─► NeighbourSearch ─► top-k hits ─┐
//!                              └───► EmbeddingHead ─► head vector ──┴─► Fusion ─► embedding
//!                                                                           └─► prompt text
//! ```
//!
//! Build one with [`Predictor::builder`]; [`PredictorBuilder::build`] checks that the parts fit
//! together (widths, and the model identities recorded in the index) before any image is seen.

use std::path::Path;
use std::sync::Arc;

use image::DynamicImage;
use prompt_fusion::FusionConfig;
use serde::{Deserialize, Serialize};

use crate::caption::{ModelCaptioner, index_captioner_dir};
use crate::components::Precision;
use crate::components::{
    ClipImageEmbedder, EmbeddingHead, Fusion, Hit, ImageCaptioner, ImageEmbedder, IndexSearch,
    NeighbourSearch, SentenceTextEmbedder, TextEmbedder,
};
use crate::compose::{ComposeOptions, PromptChoice, compose_prompt, pick_prompts};
use crate::error::{Error, Result};
use crate::head::{ClipHead, HEAD_FILE};
use crate::index_models::IndexModels;
use crate::tuned_fusion::resolve_fusion;

/// How [`Predictor::open`] assembles a predictor from an index directory.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Neighbours, weighting and blend weights; `None` (the default): the setting kept in the
    /// index's `fusion.json` when it holds for the head in use, else the paper's
    /// (see [`crate::tuned_fusion::resolve_fusion`]).
    pub fusion: Option<FusionConfig>,
    /// Ignore `head.safetensors` even when present (KNN prediction only).
    pub no_head: bool,
    /// Compose prompt texts from the neighbours' phrases instead of picking a neighbour's
    /// prompt (needs the sentence model in [`IndexModels`]).
    pub compose: Option<ComposeOptions>,
    /// Which corpus prompt is the text when neither composing nor captioning (default: the one
    /// nearest the fused prediction in the whole index).
    pub prompt: PromptChoice,
    /// Ignore the index's `captioner/` even when present: the text is then picked by `prompt`.
    pub no_captioner: bool,
    /// The arithmetic of the encoders' dense layers (default f32; see [`Precision`]).
    pub precision: Precision,
}

impl OpenOptions {
    /// These options with the given fusion setting (instead of the index's or the paper's).
    pub fn with_fusion(mut self, fusion: FusionConfig) -> Self {
        self.fusion = Some(fusion);
        self
    }

    /// These options with the head ignored (`true`) or used when present (`false`).
    pub fn with_no_head(mut self, no_head: bool) -> Self {
        self.no_head = no_head;
        self
    }

    /// These options composing prompt texts (`Some`) or picking a neighbour's.
    pub fn with_compose(mut self, compose: Option<ComposeOptions>) -> Self {
        self.compose = compose;
        self
    }

    /// These options picking the prompt text by `prompt` (when not composing).
    pub fn with_prompt(mut self, prompt: PromptChoice) -> Self {
        self.prompt = prompt;
        self
    }

    /// These options running the encoders' dense layers at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// These options ignoring the index's captioner (`true`) or using it when present.
    pub fn with_no_captioner(mut self, no_captioner: bool) -> Self {
        self.no_captioner = no_captioner;
        self
    }
}

/// One neighbour as reported with a prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictedNeighbour {
    /// The prompt's id in the index.
    pub id: u64,
    /// The prompt text.
    pub prompt: String,
    /// Cosine similarity of the image's embedding to the prompt's key.
    pub score: f32,
    /// The normalised aggregation weight the neighbour got in the KNN prediction (0 if unused).
    pub weight: f32,
}

/// What [`Predictor::predict`] returns for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The predicted sentence-space embedding of the image's prompt (unit length).
    pub embedding: Vec<f32>,
    /// The head's prediction alone, when a head is part of the predictor.
    pub head: Option<Vec<f32>>,
    /// The neighbours searched (the fusion's `k`), best first, with the weights used.
    pub neighbours: Vec<PredictedNeighbour>,
    /// The prompt text: the captioner's text when the predictor has one (and images were
    /// given), the composed prompt with composing on, else a corpus prompt picked by the
    /// predictor's [`PromptChoice`] (by default the one nearest `embedding` in the whole index).
    pub prompt: String,
}

/// How the prompt text of a prediction is chosen.
#[derive(Clone)]
enum PromptText {
    /// A neighbour's prompt.
    Pick(PromptChoice),
    /// Phrases of the neighbours composed to match the embedding (see [`crate::compose`]).
    Compose(Arc<dyn TextEmbedder>, ComposeOptions),
}

/// The image-to-prompt predictor: image embedder + neighbour search + optional head + fusion.
/// `Send + Sync`: share one across threads (e.g. behind an `Arc`).
#[derive(Clone)]
pub struct Predictor {
    image: Arc<dyn ImageEmbedder>,
    search: Arc<dyn NeighbourSearch>,
    head: Option<Arc<dyn EmbeddingHead>>,
    fusion: Arc<dyn Fusion>,
    prompt_text: PromptText,
    captioner: Option<Arc<dyn ImageCaptioner>>,
}

/// Builds a [`Predictor`]; see [`Predictor::builder`].
#[derive(Default)]
pub struct PredictorBuilder {
    image: Option<Arc<dyn ImageEmbedder>>,
    search: Option<Arc<dyn NeighbourSearch>>,
    head: Option<Arc<dyn EmbeddingHead>>,
    fusion: Option<Arc<dyn Fusion>>,
    compose: Option<(Arc<dyn TextEmbedder>, ComposeOptions)>,
    prompt: PromptChoice,
    captioner: Option<Arc<dyn ImageCaptioner>>,
}

impl PredictorBuilder {
    /// Which corpus prompt is the text when not composing (default
    /// [`PromptChoice::NearestInIndex`]).
    pub fn prompt_choice(mut self, prompt: PromptChoice) -> Self {
        self.prompt = prompt;
        self
    }

    /// The image embedder (required): CLIP's image tower or any [`ImageEmbedder`].
    pub fn image_encoder(mut self, embedder: impl ImageEmbedder + 'static) -> Self {
        self.image = Some(Arc::new(embedder));
        self
    }

    /// The image embedder, shared.
    pub fn image_encoder_shared(mut self, embedder: Arc<dyn ImageEmbedder>) -> Self {
        self.image = Some(embedder);
        self
    }

    /// The neighbour search (required): a prompt index or any [`NeighbourSearch`].
    pub fn index(mut self, search: impl NeighbourSearch + 'static) -> Self {
        self.search = Some(Arc::new(search));
        self
    }

    /// The neighbour search, shared.
    pub fn index_shared(mut self, search: Arc<dyn NeighbourSearch>) -> Self {
        self.search = Some(search);
        self
    }

    /// The head mapping image embeddings into the target space (optional: without one, the
    /// prediction is the KNN prediction alone).
    pub fn head(mut self, head: impl EmbeddingHead + 'static) -> Self {
        self.head = Some(Arc::new(head));
        self
    }

    /// The head, shared.
    pub fn head_shared(mut self, head: Arc<dyn EmbeddingHead>) -> Self {
        self.head = Some(head);
        self
    }

    /// The fusion (optional; default [`FusionConfig::default`]: k = 100, similarity-weighted,
    /// 0.6 KNN / 0.4 head).
    pub fn fusion(mut self, fusion: impl Fusion + 'static) -> Self {
        self.fusion = Some(Arc::new(fusion));
        self
    }

    /// Compose the prompt text from the neighbours' phrases with this sentence model (the one
    /// that made the index's targets) instead of picking a neighbour's prompt.
    pub fn compose(
        mut self,
        sentence: impl TextEmbedder + 'static,
        options: ComposeOptions,
    ) -> Self {
        self.compose = Some((Arc::new(sentence), options));
        self
    }

    /// A captioner that writes the prompt text of each image (unless composing); the picked
    /// text remains for [`Predictor::predict_embeddings`], which has no images.
    pub fn captioner(mut self, captioner: impl ImageCaptioner + 'static) -> Self {
        self.captioner = Some(Arc::new(captioner));
        self
    }

    /// The captioner, shared.
    pub fn captioner_shared(mut self, captioner: Arc<dyn ImageCaptioner>) -> Self {
        self.captioner = Some(captioner);
        self
    }

    /// Checks that the parts fit and builds the predictor.
    ///
    /// # Errors
    /// A missing image embedder or index; an empty index; widths that disagree (image embedding
    /// vs index keys, head input/output vs keys/targets, sentence model vs targets); model
    /// identities that disagree with the index manifest's ([`ModelId::matches`]).
    pub fn build(self) -> Result<Predictor> {
        let image = self
            .image
            .ok_or_else(|| Error::invalid("Predictor::builder", "no image encoder given"))?;
        let search = self
            .search
            .ok_or_else(|| Error::invalid("Predictor::builder", "no index given"))?;
        if search.is_empty() {
            return Err(Error::invalid("index", "the index holds no prompts"));
        }
        let fusion = self
            .fusion
            .unwrap_or_else(|| Arc::new(FusionConfig::default()));
        if fusion.k() == 0 {
            return Err(Error::invalid("k", "must be at least 1"));
        }
        // Identity first: another model is the more useful error than the width it also has.
        if let Some(recorded) = search.key_model() {
            recorded.check("index key model vs image encoder", image.model_id())?;
        }
        check_width(
            "image embedding vs index keys",
            search.key_dim(),
            image.dim(),
        )?;
        if let Some(head) = &self.head {
            check_width(
                "head input vs index keys",
                search.key_dim(),
                head.input_dim(),
            )?;
            check_width(
                "head output vs index targets",
                search.target_dim(),
                head.output_dim(),
            )?;
        }
        let prompt_text = match self.compose {
            None => PromptText::Pick(self.prompt),
            Some((sentence, options)) => {
                check_width(
                    "sentence model vs index targets",
                    search.target_dim(),
                    sentence.dim(),
                )?;
                if let Some(recorded) = search.target_model() {
                    recorded.check("index target model vs sentence model", sentence.model_id())?;
                }
                PromptText::Compose(sentence, options)
            }
        };
        Ok(Predictor {
            image,
            search,
            head: self.head,
            fusion,
            prompt_text,
            captioner: self.captioner,
        })
    }
}

fn check_width(what: &str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::Mismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }
}

impl Predictor {
    /// The predictor an index directory describes: the image tower of `models.clip`, the index
    /// itself, `head.safetensors` when present (unless `options.no_head`) and the fusion
    /// setting: `options.fusion`, else the one the index keeps in `fusion.json` (tuned on
    /// validation, when it holds for the head in use), else the paper's. The checkpoints are given, not looked up (see [`IndexModels::resolve`] for
    /// the optional lookup); their fingerprints must match the ones the index records.
    ///
    /// # Errors
    /// An unreadable or corrupt index; a checkpoint that fails to load or is not the model the
    /// index was built with; invalid fusion settings or a damaged `fusion.json`; composing without a sentence model.
    pub fn open(
        index_dir: impl AsRef<Path>,
        models: &IndexModels,
        options: &OpenOptions,
        device: &burn::tensor::Device,
    ) -> Result<Self> {
        let index_dir = index_dir.as_ref();
        let with_head = !options.no_head && index_dir.join(HEAD_FILE).is_file();
        let (fusion, _) = resolve_fusion(index_dir, options.fusion, options.no_head)?;
        let mut builder = Predictor::builder()
            .image_encoder(
                ClipImageEmbedder::load(&models.clip, device)?.with_precision(options.precision)?,
            )
            .index(IndexSearch::open(index_dir)?)
            .fusion(fusion)
            .prompt_choice(options.prompt);
        if with_head {
            builder = builder.head(ClipHead::load(index_dir, device)?);
        }
        if !options.no_captioner
            && let Some(dir) = index_captioner_dir(index_dir)
        {
            builder = builder.captioner(ModelCaptioner::load(dir, device)?);
        }
        if let Some(compose) = options.compose {
            let sentence = models.sentence_dir("composing prompt texts")?;
            let sentence =
                SentenceTextEmbedder::load(sentence, device)?.with_precision(options.precision)?;
            builder = builder.compose(sentence, compose);
        }
        builder.build()
    }

    /// A builder: `Predictor::builder().image_encoder(..).index(..).head(..).fusion(..).build()?`.
    pub fn builder() -> PredictorBuilder {
        PredictorBuilder::default()
    }

    /// The image embedder.
    pub fn image_encoder(&self) -> &dyn ImageEmbedder {
        self.image.as_ref()
    }

    /// The neighbour search.
    pub fn index(&self) -> &dyn NeighbourSearch {
        self.search.as_ref()
    }

    /// The head, if any.
    pub fn head(&self) -> Option<&dyn EmbeddingHead> {
        self.head.as_deref()
    }

    /// The fusion.
    pub fn fusion(&self) -> &dyn Fusion {
        self.fusion.as_ref()
    }

    /// The captioner that writes the prompt text, if any (none while composing: the composed
    /// text wins).
    pub fn captioner(&self) -> Option<&dyn ImageCaptioner> {
        match self.prompt_text {
            PromptText::Pick(_) => self.captioner.as_deref(),
            PromptText::Compose(..) => None,
        }
    }

    /// The prompt texts [`Predictor::captioner`] writes for `images`, one per image, or `None`
    /// when this predictor does not caption.
    ///
    /// # Errors
    /// The captioner's error, or a captioner that returns another number of texts.
    pub fn captions(&self, images: &[DynamicImage]) -> Result<Option<Vec<String>>> {
        let Some(captioner) = self.captioner() else {
            return Ok(None);
        };
        let texts = captioner.caption(images)?;
        if texts.len() != images.len() {
            return Err(Error::Mismatch {
                what: "captions (one per image)".into(),
                expected: images.len().to_string(),
                found: texts.len().to_string(),
            });
        }
        Ok(Some(texts))
    }

    /// How [`Predictor::predict_batch`] writes the prompt text: `compose`, `caption`, or the
    /// [`PromptChoice`] name of the pick.
    pub fn text_mode(&self) -> &'static str {
        match (&self.prompt_text, self.captioner()) {
            (PromptText::Compose(..), _) => "compose",
            (PromptText::Pick(_), Some(_)) => "caption",
            (PromptText::Pick(choice), None) => choice.name(),
        }
    }

    /// This predictor with another fusion (another `k` or blend for one request, say); the
    /// models, index and head are shared, not copied.
    pub fn with_fusion(&self, fusion: impl Fusion + 'static) -> Predictor {
        Predictor {
            fusion: Arc::new(fusion),
            ..self.clone()
        }
    }

    /// Predicts one image.
    pub fn predict(&self, image: &DynamicImage) -> Result<Prediction> {
        let mut out = self.predict_batch(std::slice::from_ref(image))?;
        out.pop()
            .ok_or_else(|| Error::Backend("the image encoder returned no embedding".into()))
    }

    /// Predicts a batch of images (embedded together), in order.
    pub fn predict_batch(&self, images: &[DynamicImage]) -> Result<Vec<Prediction>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let queries = self.image.embed_images(images)?;
        let mut predictions = self.predict_embeddings(&queries)?;
        if let Some(texts) = self.captions(images)? {
            for (prediction, text) in predictions.iter_mut().zip(texts) {
                prediction.prompt = text;
            }
        }
        Ok(predictions)
    }

    /// Predicts from image embeddings computed elsewhere (flat row-major, `key_dim` wide).
    pub fn predict_embeddings(&self, queries: &[f32]) -> Result<Vec<Prediction>> {
        let dim = self.search.key_dim();
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::Mismatch {
                what: "query embeddings width".into(),
                expected: format!("a multiple of {dim}"),
                found: queries.len().to_string(),
            });
        }
        let rows = queries.len() / dim;
        let neighbour_hits = self.search.search(queries, self.fusion.k())?;
        if neighbour_hits.len() != rows {
            return Err(Error::Mismatch {
                what: "neighbour search results (one list per query)".into(),
                expected: rows.to_string(),
                found: neighbour_hits.len().to_string(),
            });
        }
        let heads = match &self.head {
            Some(head) => {
                let out = head.predict(queries)?;
                let w = head.output_dim();
                // A custom head must return one row per query: checked, never indexed past.
                if out.len() != rows * w {
                    return Err(Error::Mismatch {
                        what: format!("head predictions ({rows} queries x {w} wide)"),
                        expected: format!("{} floats", rows * w),
                        found: format!("{} floats", out.len()),
                    });
                }
                Some(out.chunks_exact(w).map(<[f32]>::to_vec).collect::<Vec<_>>())
            }
            None => None,
        };
        let mut predictions = neighbour_hits
            .iter()
            .enumerate()
            .map(|(i, hits)| {
                let head = heads.as_ref().map(|h| h[i].clone());
                self.finish(hits, head)
            })
            .collect::<Result<Vec<_>>>()?;
        if let PromptText::Pick(choice) = &self.prompt_text {
            let texts = {
                let embeddings: Vec<&[f32]> =
                    predictions.iter().map(|p| p.embedding.as_slice()).collect();
                let neighbours: Vec<&[Hit]> = neighbour_hits.iter().map(Vec::as_slice).collect();
                pick_prompts(*choice, &embeddings, &neighbours, self.search.as_ref())?
            };
            for (prediction, hit) in predictions.iter_mut().zip(texts) {
                prediction.prompt = hit.map(|h| h.prompt).unwrap_or_default();
            }
        }
        Ok(predictions)
    }

    /// Fuses one query's hits and head prediction; composes its prompt text when asked (a
    /// picked text is set for the whole batch by [`pick_prompts`]).
    fn finish(&self, hits: &[Hit], head: Option<Vec<f32>>) -> Result<Prediction> {
        let fused = self.fusion.fuse(hits, head.as_deref())?;
        let prompt = match &self.prompt_text {
            PromptText::Pick(_) => String::new(),
            PromptText::Compose(sentence, options) => {
                let prompts: Vec<&str> = hits.iter().map(|h| h.prompt.as_str()).collect();
                compose_prompt(&fused.embedding, &prompts, sentence.as_ref(), options)?.text
            }
        };
        let neighbours = hits
            .iter()
            .zip(fused.weights.iter().copied().chain(std::iter::repeat(0.0)))
            .map(|(h, weight)| PredictedNeighbour {
                id: h.id,
                prompt: h.prompt.clone(),
                score: h.score,
                weight,
            })
            .collect();
        Ok(Prediction {
            embedding: fused.embedding,
            head,
            neighbours,
            prompt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_id::ModelId;

    /// Embeds an image as its mean RGB (3-d).
    struct MeanColour(ModelId);

    fn mean_colour(id: &str) -> MeanColour {
        MeanColour(ModelId::parse(id))
    }

    impl ImageEmbedder for MeanColour {
        fn model_id(&self) -> &ModelId {
            &self.0
        }
        fn dim(&self) -> usize {
            3
        }
        fn embed_images(&self, images: &[DynamicImage]) -> Result<Vec<f32>> {
            Ok(images
                .iter()
                .flat_map(|im| {
                    let rgb = im.to_rgb8();
                    let n = (rgb.width() * rgb.height()) as f32;
                    let mut s = [0f32; 3];
                    for p in rgb.pixels() {
                        for c in 0..3 {
                            s[c] += f32::from(p[c]) / n;
                        }
                    }
                    s
                })
                .collect())
        }
    }

    /// Three prompts keyed by the axis colours; targets 2-d.
    struct Colours(ModelId);

    fn colours() -> Colours {
        Colours(ModelId::parse("mean-colour@0001"))
    }

    impl NeighbourSearch for Colours {
        fn key_dim(&self) -> usize {
            3
        }
        fn target_dim(&self) -> usize {
            2
        }
        fn len(&self) -> usize {
            3
        }
        fn key_model(&self) -> Option<&ModelId> {
            Some(&self.0)
        }
        fn target_model(&self) -> Option<&ModelId> {
            None
        }
        fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>> {
            let table = [
                ("red", [1.0, 0.0]),
                ("green", [0.0, 1.0]),
                ("blue", [0.6, 0.8]),
            ];
            Ok(queries
                .chunks_exact(3)
                .map(|q| {
                    let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
                    let mut hits: Vec<Hit> = table
                        .iter()
                        .enumerate()
                        .map(|(i, (name, target))| Hit {
                            id: i as u64,
                            score: q[i] / norm,
                            prompt: format!("{name} image"),
                            target: target.to_vec(),
                        })
                        .collect();
                    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
                    hits.truncate(k);
                    hits
                })
                .collect())
        }
    }

    struct ConstantHead(Vec<f32>);

    impl EmbeddingHead for ConstantHead {
        fn input_dim(&self) -> usize {
            3
        }
        fn output_dim(&self) -> usize {
            self.0.len()
        }
        fn predict(&self, embeddings: &[f32]) -> Result<Vec<f32>> {
            Ok(embeddings
                .chunks_exact(3)
                .flat_map(|_| self.0.clone())
                .collect())
        }
    }

    fn solid(r: u8, g: u8, b: u8) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 4, image::Rgb([r, g, b])))
    }

    #[test]
    fn predicts_through_the_traits() {
        let fusion = FusionConfig {
            k: 2,
            ..FusionConfig::default()
        };
        let p = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@0001"))
            .index(colours())
            .head(ConstantHead(vec![0.0, 1.0]))
            .fusion(fusion)
            .build()
            .unwrap();
        let out = p
            .predict_batch(&[solid(255, 0, 0), solid(0, 0, 200)])
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].prompt, "red image");
        assert_eq!(out[1].prompt, "blue image");
        assert_eq!(out[0].neighbours.len(), 2);
        // Pure red: only "red" has a positive score, so it carries all the KNN weight.
        assert_eq!(out[0].neighbours[0].weight, 1.0);
        assert_eq!(out[0].neighbours[1].weight, 0.0);
        // Fusion of KNN [1, 0] and head [0, 1] at 0.6 / 0.4, normalised.
        let n = (0.36f32 + 0.16).sqrt();
        assert!((out[0].embedding[0] - 0.6 / n).abs() < 1e-6);
        assert!((out[0].embedding[1] - 0.4 / n).abs() < 1e-6);
        assert_eq!(out[0].head.as_deref(), Some(&[0.0, 1.0][..]));
    }

    /// Captions an image by its dominant channel; counts its calls.
    struct ChannelCaptioner(std::sync::atomic::AtomicUsize);

    impl ImageCaptioner for ChannelCaptioner {
        fn caption(&self, images: &[DynamicImage]) -> Result<Vec<String>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(images
                .iter()
                .map(|im| {
                    let p = im.to_rgb8().get_pixel(0, 0).0;
                    let channel = (0..3).max_by_key(|&c| p[c]).unwrap_or(0);
                    format!("a {} square", ["red", "green", "blue"][channel])
                })
                .collect())
        }
    }

    #[test]
    fn a_captioner_writes_the_text_of_image_predictions_only() {
        let captioner = Arc::new(ChannelCaptioner(Default::default()));
        let p = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@0001"))
            .index(colours())
            .captioner_shared(captioner.clone())
            .build()
            .unwrap();
        assert_eq!(p.text_mode(), "caption");
        let images = [solid(0, 200, 10), solid(0, 0, 200)];
        let out = p.predict_batch(&images).unwrap();
        let texts: Vec<&str> = out.iter().map(|o| o.prompt.as_str()).collect();
        assert_eq!(texts, ["a green square", "a blue square"]);
        assert_eq!(captioner.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The embedding is the fused one whatever writes the text.
        let picked = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@0001"))
            .index(colours())
            .build()
            .unwrap();
        assert_eq!(picked.text_mode(), "nearest-in-index");
        let without = picked.predict_batch(&images).unwrap();
        assert_eq!(out[0].embedding, without[0].embedding);
        assert_eq!(out[0].neighbours, without[0].neighbours);
        // Without images there is nothing to caption: the picked text stays.
        let queries = p.image_encoder().embed_images(&images).unwrap();
        let from_embeddings = p.predict_embeddings(&queries).unwrap();
        assert_eq!(from_embeddings[0].prompt, without[0].prompt);
        assert_eq!(captioner.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A captioner that returns one text too few.
    struct ShortCaptioner;

    impl ImageCaptioner for ShortCaptioner {
        fn caption(&self, images: &[DynamicImage]) -> Result<Vec<String>> {
            Ok(vec![String::new(); images.len().saturating_sub(1)])
        }
    }

    #[test]
    fn a_captioner_returning_too_few_texts_is_an_error() {
        let p = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@0001"))
            .index(colours())
            .captioner(ShortCaptioner)
            .build()
            .unwrap();
        let err = p.predict_batch(&[solid(9, 9, 9)]).unwrap_err();
        assert!(err.to_string().contains("captions"), "{err}");
    }

    /// `Colours` that can also scan its whole table by target.
    struct ScanningColours(Colours);

    impl NeighbourSearch for ScanningColours {
        fn key_dim(&self) -> usize {
            self.0.key_dim()
        }
        fn target_dim(&self) -> usize {
            self.0.target_dim()
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn key_model(&self) -> Option<&ModelId> {
            self.0.key_model()
        }
        fn target_model(&self) -> Option<&ModelId> {
            self.0.target_model()
        }
        fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>> {
            self.0.search(queries, k)
        }
        fn nearest_by_target(&self, queries: &[f32]) -> Result<Vec<Option<Hit>>> {
            // Every prompt is a hit of the all-ones key query.
            let all = self.0.search(&[1.0, 1.0, 1.0], 3)?.remove(0);
            Ok(crate::components::test_support::nearest_by_cosine(
                &all, queries, 2,
            ))
        }
    }

    #[test]
    fn the_default_text_is_the_nearest_prompt_in_the_whole_index() {
        // k = 1: red's only neighbour is "red"; the fused [0.83, 0.55] is nearer blue's
        // [0.6, 0.8] (cosine 0.94) than red's [1, 0] (0.83), and blue is no neighbour.
        let build = |choice: Option<PromptChoice>| {
            let mut b = Predictor::builder()
                .image_encoder(mean_colour("mean-colour@0001"))
                .index(ScanningColours(colours()))
                .head(ConstantHead(vec![0.0, 1.0]))
                .fusion(FusionConfig {
                    k: 1,
                    ..FusionConfig::default()
                });
            if let Some(choice) = choice {
                b = b.prompt_choice(choice);
            }
            b.build().unwrap()
        };
        let red = [solid(255, 0, 0)];
        let default = build(None).predict_batch(&red).unwrap();
        assert_eq!(default[0].prompt, "blue image");
        assert_eq!(default[0].neighbours.len(), 1);
        let among_neighbours = build(Some(PromptChoice::NearestToPrediction))
            .predict_batch(&red)
            .unwrap();
        assert_eq!(among_neighbours[0].prompt, "red image");
        // A search that cannot scan its targets falls back to the neighbour pick.
        let plain = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@0001"))
            .index(colours())
            .head(ConstantHead(vec![0.0, 1.0]))
            .fusion(FusionConfig {
                k: 1,
                ..FusionConfig::default()
            })
            .build()
            .unwrap();
        assert_eq!(plain.predict_batch(&red).unwrap()[0].prompt, "red image");
    }

    #[test]
    fn parts_that_do_not_fit_are_rejected() {
        let other_model = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@9999"))
            .index(colours())
            .build();
        assert!(
            matches!(other_model, Err(Error::Mismatch { .. })),
            "{:?}",
            other_model.err()
        );
        let bad_head = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@0001"))
            .index(colours())
            .head(ConstantHead(vec![1.0, 0.0, 0.0]))
            .build();
        assert!(matches!(bad_head, Err(Error::Mismatch { .. })));
        let zero_k = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@0001"))
            .index(colours())
            .fusion(FusionConfig {
                k: 0,
                ..FusionConfig::default()
            })
            .build();
        assert!(zero_k.is_err());
        assert!(Predictor::builder().index(colours()).build().is_err());
    }

    /// A faulty custom head: one row too few.
    struct ShortHead;

    impl EmbeddingHead for ShortHead {
        fn input_dim(&self) -> usize {
            3
        }
        fn output_dim(&self) -> usize {
            2
        }
        fn predict(&self, embeddings: &[f32]) -> Result<Vec<f32>> {
            let rows = embeddings.len() / 3;
            Ok(vec![0.5; rows.saturating_sub(1) * 2])
        }
    }

    #[test]
    fn a_head_returning_too_few_rows_is_an_error_not_a_panic() {
        let p = Predictor::builder()
            .image_encoder(mean_colour("mean-colour@0001"))
            .index(colours())
            .head(ShortHead)
            .build()
            .unwrap();
        let err = p
            .predict_batch(&[solid(255, 0, 0), solid(0, 255, 0)])
            .unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("head predictions"), "{err}");
    }

    #[test]
    fn predictor_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Predictor>();
    }
}
