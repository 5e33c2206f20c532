//! The whole method offline, on the procedural world ([`crate::World`]) and the shipped world
//! CLIP: generate the world, build the index (world CLIP text keys + all-MiniLM-L6-v2 targets),
//! train the head, tune k / weights / aggregation on validation, and evaluate on the test and
//! cross-domain splits the paper's way. What `img2prompt demo` runs; also the end-to-end
//! regression benchmark of the workspace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use img2prompt::builder::{BuildObserver, IndexBuilder};
use img2prompt::burn::tensor::Device;
use img2prompt::caption::{CAPTIONER_DIR, ModelCaptioner, install_captioner};
use img2prompt::components::{
    ClipImageEmbedder, ClipTextEmbedder, Hit, ImageCaptioner, ImageEmbedder, IndexSearch,
    SentenceTextEmbedder, TextEmbedder,
};
use img2prompt::compose::{PromptChoice, pick_prompts};
use img2prompt::eval::{EvalOptions, EvalReport, EvalSet, OutputTexts};
use img2prompt::head::{
    ClipHead, HeadTrainConfig, HeadTraining, PairTrainOptions, image_cache_path,
    train_head_from_pairs, train_head_on_index,
};
use img2prompt::knn_index::{Manifest, PromptIndex};
use img2prompt::model_id::ModelId;
use img2prompt::prompt_fusion::{Aggregation, BlendWeights, FusionConfig, TuningGrid};
use img2prompt::tuned_fusion::{StoredFusion, head_fingerprint, save_fusion};
use img2prompt::{clip_encoder, image, prompt_fusion, sentence_encoder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::write_file_atomic;
use crate::{Error, Result, Scene, SheetEntry, World, WorldConfig, contact_sheet, export_pairs};

/// Image variant rendered for evaluation (training renders random variants of corpus scenes;
/// evaluation scenes are never in the corpus).
const EVAL_VARIANT: u64 = 0;
/// Unlabeled corpus renders whose mean image embedding corrects the head's modality gap.
const GAP_IMAGES: usize = 2_000;
/// Variant of those renders.
const GAP_VARIANT: u64 = 1;

/// What [`run_demo`] needs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Output directory: `index/`, `report.json`, `contact-sheet.png`, `pairs/`.
    pub out: PathBuf,
    /// The world to generate.
    pub world: WorldConfig,
    /// The CLIP checkpoint (the shipped world CLIP by default).
    pub clip: PathBuf,
    /// The sentence model (all-MiniLM-L6-v2).
    pub sentence: PathBuf,
    /// A captioner directory to keep in the index (`index/captioner`), which then writes
    /// `predict`'s prompt text (the shipped world captioner by default); `None`: no captioner,
    /// and any left by an earlier run is removed.
    pub captioner: Option<PathBuf>,
    /// Where the models run.
    pub device: Device,
    /// Texts / images per encoder batch.
    pub batch: usize,
    /// The arithmetic of the encoders' dense layers.
    pub precision: img2prompt::Precision,
    /// How the head is trained.
    pub head: HeadTrainConfig,
    /// Test images on the contact sheet.
    pub sheet_images: usize,
    /// Also train a head on rendered image-prompt pairs (`demo --pairs N`); `None`: text only.
    pub pairs: Option<DemoPairs>,
}

/// The pair-trained head of the demo: how many training pairs and how to train.
#[derive(Clone, Debug)]
pub struct DemoPairs {
    /// Training pairs rendered ([`crate::splits::training_split`]), written to
    /// `pairs/train.jsonl`.
    pub n: usize,
    /// How the pair head is trained.
    pub train: HeadTrainConfig,
    /// Mix in the corpus's text-key rows with this weight (`None`: pairs alone).
    pub text_weight: Option<f32>,
}

/// The scores of the pair-trained head (`report.json` field `pair_head`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairHeadScores {
    /// What it was trained on.
    pub training: HeadTraining,
    /// Training pairs rendered.
    pub n_pairs: usize,
    /// Distinct training images encoded (the rest came from the embedding cache).
    pub images_encoded: usize,
    /// Distinct training images read from the embedding cache.
    pub images_cached: usize,
    /// Test split, the pair head in the head's place (fusion tuned on validation with it).
    pub test: SplitScores,
    /// Cross-domain split, the same.
    pub cross_domain: SplitScores,
    /// Validation split, the same.
    pub validation: SplitScores,
}

/// A tuned fusion setting and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedScore {
    /// Neighbours used.
    pub k: usize,
    /// KNN share of the blend (the head gets `1 - w_knn`).
    pub w_knn: f32,
    /// Neighbour weighting (`similarity` or `softmax(t)`).
    pub aggregation: String,
    /// Mean cosine on the split reported.
    pub score: f64,
}

/// The scores of one evaluation split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitScores {
    /// CLIP head alone.
    pub clip_head: f64,
    /// KNN alone per k.
    pub knn: BTreeMap<usize, f64>,
    /// Fused at the paper's setting: k = 100, similarity-weighted, 0.6 / 0.4.
    pub fused_paper: f64,
    /// Fused at the setting tuned on validation.
    pub fused_tuned: TunedScore,
    /// Fused at k = 100 per KNN share.
    pub fused_by_weight: BTreeMap<String, f64>,
    /// Cosine of the output prompt text's own sentence embedding: `predict`'s default text
    /// (`text_mode`): the captioner's text when the index keeps one, else the prompt nearest the
    /// prediction in the whole index (the validation-tuned prediction, which the demo keeps in
    /// the index's fusion.json for `predict`).
    pub text_score: f64,
    /// How `predict`'s default text is written: `caption` or `nearest-in-index`.
    #[serde(default)]
    pub text_mode: String,
    /// Seconds per image that writing the default text took (the pick alone, or captioning).
    #[serde(default)]
    pub text_seconds_per_image: f64,
    /// The text score of the prompt nearest the prediction in the whole index (the default
    /// text without a captioner).
    #[serde(default)]
    pub text_score_nearest_in_index: f64,
    /// The same for the neighbour nearest the prediction (the default text before).
    #[serde(default)]
    pub text_score_nearest_neighbour: f64,
    /// The same for the best neighbour's prompt (the search's first hit), the text before.
    #[serde(default)]
    pub text_score_best_neighbour: f64,
    /// Image -> prompt retrieval: share of images whose own prompt's key is the nearest among
    /// the split's prompts (zero-shot top-1 of the CLIP model on this split).
    pub clip_retrieval_top1: f64,
    /// Number of image-prompt pairs.
    pub n: usize,
}

/// `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemoReport {
    /// Test split: CLIP head alone.
    pub clip_head: f64,
    /// Test split: KNN per k.
    pub knn: BTreeMap<usize, f64>,
    /// Test split: fused at the paper's 0.6 / 0.4, k = 100.
    pub fused_paper: f64,
    /// Test split: fused at the validation-tuned setting.
    pub fused_tuned: TunedScore,
    /// Test split: text score of `predict`'s default text (the neighbour nearest the prediction).
    pub text_score: f64,
    /// Test pairs.
    pub n_test: usize,
    /// Every score of the test split.
    pub test: SplitScores,
    /// The cross-domain split (held-out colour-shape pairs).
    pub cross_domain: SplitScores,
    /// The validation split the setting was tuned on (its best score is optimistic).
    pub validation: SplitScores,
    /// The world's configuration.
    pub world: WorldConfig,
    /// Identities of the models used.
    pub models: BTreeMap<String, String>,
    /// Head training: best validation cosine (text embeddings -> targets).
    pub head_validation_cosine: Option<f64>,
    /// Seconds per stage.
    pub seconds: BTreeMap<String, f64>,
    /// The head trained on rendered image-prompt pairs, when the demo trained one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_head: Option<PairHeadScores>,
}

impl DemoReport {
    /// The ablation table, as printed by `img2prompt demo`.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let row = |s: &mut String, name: &str, t: f64, c: f64| {
            s.push_str(&format!("{name:<48} {t:>8.4} {c:>13.4}\n"));
        };
        s.push_str(&format!(
            "{:<48} {:>8} {:>13}\n",
            "prediction (mean cosine to true prompt)", "test", "cross-domain"
        ));
        let (t, c) = (&self.test, &self.cross_domain);
        row(&mut s, "CLIP head only", t.clip_head, c.clip_head);
        for (k, v) in &t.knn {
            row(
                &mut s,
                &format!("KNN, k = {k}"),
                *v,
                c.knn.get(k).copied().unwrap_or(f64::NAN),
            );
        }
        row(
            &mut s,
            "fused, paper (k 100, 0.6 / 0.4)",
            t.fused_paper,
            c.fused_paper,
        );
        row(
            &mut s,
            &format!(
                "fused, tuned (k {}, {:.1} / {:.1}, {})",
                t.fused_tuned.k,
                t.fused_tuned.w_knn,
                1.0 - t.fused_tuned.w_knn,
                t.fused_tuned.aggregation
            ),
            t.fused_tuned.score,
            c.fused_tuned.score,
        );
        row(
            &mut s,
            &format!("text score, predict's default ({})", t.text_mode),
            t.text_score,
            c.text_score,
        );
        if t.text_mode != PromptChoice::NearestInIndex.name() {
            row(
                &mut s,
                "text score, index prompt nearest the prediction",
                t.text_score_nearest_in_index,
                c.text_score_nearest_in_index,
            );
        }
        row(
            &mut s,
            "text score, neighbour nearest the prediction",
            t.text_score_nearest_neighbour,
            c.text_score_nearest_neighbour,
        );
        row(
            &mut s,
            "text score, best neighbour by key",
            t.text_score_best_neighbour,
            c.text_score_best_neighbour,
        );
        row(
            &mut s,
            "CLIP zero-shot retrieval top-1",
            t.clip_retrieval_top1,
            c.clip_retrieval_top1,
        );
        if let Some(p) = &self.pair_head {
            s.push_str(&p.table_rows());
        }
        s.push_str(&format!(
            "({} test and {} cross-domain pairs; index of {} prompts)\n",
            t.n, c.n, self.world.corpus
        ));
        s
    }
}

impl PairHeadScores {
    /// The table rows of the pair head (head alone, fused at the paper's and the tuned setting).
    pub fn table_rows(&self) -> String {
        let (t, c) = (&self.test, &self.cross_domain);
        let mut s = format!("-- head trained on {} --\n", self.training);
        let mut row = |name: &str, a: f64, b: f64| {
            s.push_str(&format!("{name:<48} {a:>8.4} {b:>13.4}\n"));
        };
        row("CLIP head only (pairs head)", t.clip_head, c.clip_head);
        row(
            "fused, paper (k 100, 0.6 / 0.4), pairs head",
            t.fused_paper,
            c.fused_paper,
        );
        row(
            "fused, tuned, pairs head (setting below)",
            t.fused_tuned.score,
            c.fused_tuned.score,
        );
        s.push_str(&format!(
            "(pairs head tuned on validation: k {}, {:.1} / {:.1}, {})\n",
            t.fused_tuned.k,
            t.fused_tuned.w_knn,
            1.0 - t.fused_tuned.w_knn,
            t.fused_tuned.aggregation
        ));
        s
    }
}

/// `set` with `head`'s predictions for `queries` in place of its head predictions (the same
/// neighbours and truths).
fn with_head(set: &EvalSet, queries: &[f32], head: &ClipHead) -> Result<EvalSet> {
    use img2prompt::components::EmbeddingHead;
    let mut out = set.clone();
    out.heads = Some(
        head.predict(queries)?
            .chunks_exact(head.output_dim())
            .map(<[f32]>::to_vec)
            .collect(),
    );
    Ok(out)
}

/// Runs the demo, logging each stage through `log` and the index build's progress through
/// `observer`. Re-running with the same output directory reuses a finished index built with
/// the same models and corpus (and resumes an interrupted one).
pub fn run_demo(
    options: &DemoOptions,
    observer: Option<&dyn BuildObserver>,
    log: &mut dyn FnMut(&str),
) -> Result<DemoReport> {
    let total = Instant::now();
    let mut seconds = BTreeMap::new();
    std::fs::create_dir_all(&options.out).map_err(|e| Error::io(&options.out, e))?;

    let t = Instant::now();
    let world = World::generate(options.world);
    seconds.insert("world".to_string(), t.elapsed().as_secs_f64());
    log(&format!(
        "world: {} corpus / {} validation / {} test / {} cross-domain prompts ({:.1}s)",
        world.corpus.len(),
        world.validation.len(),
        world.test.len(),
        world.cross_domain.len(),
        t.elapsed().as_secs_f64()
    ));

    let clip_text = ClipTextEmbedder::load(&options.clip, &options.device)?
        .with_precision(options.precision)?;
    let clip_image = ClipImageEmbedder::new(
        clip_encoder::ClipVisionModel::load(&options.clip, &options.device)?
            .with_batch_size(options.batch)
            .with_precision(options.precision)?,
        clip_text.model_id().clone(),
    );
    let sentence = SentenceTextEmbedder::new(
        sentence_encoder::SentenceEncoder::load(&options.sentence, &options.device)?
            .with_batch_size(options.batch)
            .with_precision(options.precision)?,
        ModelId::of_dir(&options.sentence)?,
    );

    // Offline: the index.
    let t = Instant::now();
    let index_dir = options.out.join("index");
    let prompts: Vec<String> = world.corpus.iter().map(Scene::prompt).collect();
    if reusable_index(&index_dir, &clip_text, &sentence, prompts.len()) {
        log(&format!("index: reusing {}", index_dir.display()));
    } else {
        log(&format!(
            "index: encoding {} prompts with {} (keys) and {} (targets)",
            prompts.len(),
            clip_text.model_id(),
            sentence.model_id()
        ));
        let mut builder = IndexBuilder::new(&clip_text, &sentence).overwrite(true);
        if let Some(observer) = observer {
            builder = builder.observer(observer);
        }
        let report = builder.build(prompts.iter().map(|p| Ok(p.as_str())), &index_dir)?;
        log(&format!("index: {report}"));
    }
    seconds.insert("index".to_string(), t.elapsed().as_secs_f64());

    // Offline: the head, trained on the corpus' own text embeddings.
    let t = Instant::now();
    let index = PromptIndex::open(&index_dir)?;
    let (head, head_report) = train_head_on_index(&index, &options.head, &options.device)?;
    // The head learnt text embeddings -> targets; image embeddings sit elsewhere on the sphere
    // (CLIP's modality gap). Shift them by mean(text) - mean(image), both means of unit
    // embeddings, the image mean taken over unlabeled renders of corpus scenes.
    let text_mean = mean_unit_rows(&index.keys_in_rows(0, index.len())?.1, clip_text.dim());
    let unlabeled: Vec<image::DynamicImage> = world
        .corpus
        .par_iter()
        .take(GAP_IMAGES)
        .map(|s| image::DynamicImage::ImageRgb8(world.render(s, GAP_VARIANT)))
        .collect();
    let image_mean = mean_unit_rows(&clip_image.embed_images(&unlabeled)?, clip_image.dim());
    let shift: Vec<f32> = image_mean
        .iter()
        .zip(&text_mean)
        .map(|(i, t)| i - t)
        .collect();
    let gap = shift.iter().map(|x| x * x).sum::<f32>().sqrt();
    let head = head.with_input_mean(Some(shift))?;
    head.save(&index_dir)?;
    let head_validation_cosine = head_report.best_validation_cosine();
    log(&format!(
        "head: {} trained in {:.1}s, validation cosine {} (text -> target); image/text gap {gap:.3}",
        options.head.kind,
        t.elapsed().as_secs_f64(),
        head_validation_cosine.map_or("-".to_string(), |c| format!("{c:.4}"))
    ));
    seconds.insert("head".to_string(), t.elapsed().as_secs_f64());
    let search = IndexSearch::new(index);

    // The captioner `predict` writes its text with, kept in the index.
    let captioner = match &options.captioner {
        Some(dir) => {
            let installed = install_captioner(dir, &index_dir, &options.device)?;
            log(&format!(
                "captioner: {} kept in {}",
                dir.display(),
                installed.display()
            ));
            Some(ModelCaptioner::load(&installed, &options.device)?)
        }
        None => {
            let stale = index_dir.join(CAPTIONER_DIR);
            if stale.exists() {
                std::fs::remove_dir_all(&stale).map_err(|e| Error::io(&stale, e))?;
            }
            None
        }
    };

    // Online: the three evaluation splits.
    let t = Instant::now();
    let k_max = EvalOptions::default().max_k();
    let gather = |scenes: &[Scene]| -> Result<(EvalSet, f64, Vec<image::RgbImage>, Vec<f32>)> {
        let images: Vec<image::RgbImage> = scenes
            .par_iter()
            .map(|s| world.render(s, EVAL_VARIANT))
            .collect();
        let dynamic: Vec<image::DynamicImage> = images
            .iter()
            .cloned()
            .map(image::DynamicImage::ImageRgb8)
            .collect();
        let queries = clip_image.embed_images(&dynamic)?;
        let texts: Vec<String> = scenes.iter().map(Scene::prompt).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let truths = sentence.embed_texts(&refs)?;
        let keys = clip_text.embed_texts(&refs)?;
        let set = EvalSet::gather(&queries, &truths, &search, Some(&head), k_max)?;
        let top1 = retrieval_top1(&queries, &keys, clip_text.dim());
        Ok((set, top1, images, queries))
    };
    let (val_set, val_top1, _, val_queries) = gather(&world.validation)?;
    log(&format!("validation: {} pairs embedded", val_set.len()));
    let grid = tuning_grid();
    let tuning = val_set.tune(&grid)?;
    let best = tuning.best.config;
    // `predict` and `serve` use the tuned setting unless told otherwise.
    keep_tuned(&index_dir, &best, tuning.best.mean_cosine, val_set.len())?;
    log(&format!(
        "tuned on validation: k {}, w_knn {:.1}, {} -> {:.4}",
        best.k,
        best.weights.knn,
        aggregation_name(best.aggregation),
        tuning.best.mean_cosine
    ));
    let (test_set, test_top1, test_images, test_queries) = gather(&world.test)?;
    let (cross_set, cross_top1, cross_images, cross_queries) = gather(&world.cross_domain)?;
    let (test_captions, cross_captions) = match &captioner {
        None => (None, None),
        Some(captioner) => (
            Some(Captions::write(captioner, &test_images, &sentence)?),
            Some(Captions::write(captioner, &cross_images, &sentence)?),
        ),
    };
    if let (Some(t), Some(c)) = (&test_captions, &cross_captions) {
        log(&format!(
            "captions: {} test and {} cross-domain images, {:.1} ms per image",
            t.texts.len(),
            c.texts.len(),
            t.seconds_per_image * 1000.0
        ));
    }
    let validation = split_scores(&val_set, &search, &best, val_top1, None)?;
    let test = split_scores(&test_set, &search, &best, test_top1, test_captions.as_ref())?;
    let cross_domain = split_scores(
        &cross_set,
        &search,
        &best,
        cross_top1,
        cross_captions.as_ref(),
    )?;
    seconds.insert("evaluate".to_string(), t.elapsed().as_secs_f64());

    // Optional: the head trained on rendered image-prompt pairs, evaluated in the same sets.
    let pair_head = match &options.pairs {
        None => None,
        Some(pairs) => {
            let t = Instant::now();
            let pairs_dir = options.out.join("pairs");
            std::fs::create_dir_all(&pairs_dir).map_err(|e| Error::io(&pairs_dir, e))?;
            let file = crate::export::export_training_pairs(&world, pairs.n, &pairs_dir)?;
            log(&format!(
                "pairs: {} training pairs rendered to {} ({:.1}s)",
                pairs.n,
                file.display(),
                t.elapsed().as_secs_f64()
            ));
            let train_pairs = img2prompt::eval::read_pairs(&file)?;
            let mut train = PairTrainOptions::new(pairs.train.clone());
            train.text_weight = pairs.text_weight;
            train.cache = Some(image_cache_path(&index_dir));
            let (pair_head, report) = train_head_from_pairs(
                &clip_image,
                &sentence,
                search.index(),
                &train_pairs,
                &file,
                &train,
                &options.device,
                &mut |_| {},
            )?;
            let training = pair_head
                .training()
                .cloned()
                .ok_or_else(|| Error::Backend("the pair head has no training record".into()))?;
            log(&format!(
                "pair head: {} trained on {training} in {:.1}s ({} images encoded, {} cached, \
                 images {:.1}s)",
                pairs.train.kind,
                report.head.seconds,
                report.images_encoded,
                report.images_cached,
                report.image_seconds
            ));
            let val_p = with_head(&val_set, &val_queries, &pair_head)?;
            let tuning = val_p.tune(&grid)?;
            let best_p = tuning.best.config;
            let test_p = with_head(&test_set, &test_queries, &pair_head)?;
            let cross_p = with_head(&cross_set, &cross_queries, &pair_head)?;
            // The pair head becomes the index's head; the text head stays beside it.
            head.write_file(index_dir.join("head-text.safetensors"))?;
            pair_head.save(&index_dir)?;
            keep_tuned(&index_dir, &best_p, tuning.best.mean_cosine, val_p.len())?;
            seconds.insert("pair_head".to_string(), t.elapsed().as_secs_f64());
            Some(PairHeadScores {
                training,
                n_pairs: pairs.n,
                images_encoded: report.images_encoded,
                images_cached: report.images_cached,
                test: split_scores(&test_p, &search, &best_p, test_top1, test_captions.as_ref())?,
                cross_domain: split_scores(
                    &cross_p,
                    &search,
                    &best_p,
                    cross_top1,
                    cross_captions.as_ref(),
                )?,
                validation: split_scores(&val_p, &search, &best_p, val_top1, None)?,
            })
        }
    };

    // Pictures and files.
    let test_queries = test_set.queries();
    let shown = options.sheet_images.min(test_queries.len());
    let fused: Vec<Option<Vec<f32>>> = test_queries[..shown]
        .iter()
        .map(|q| best.fuse(&q.neighbours, q.head).ok().map(|f| f.embedding))
        .collect();
    // The text `predict` gives for the (shown) prediction, picked for the whole sheet at once.
    let (with_fused, neighbours): (Vec<&[f32]>, Vec<&[Hit]>) = fused
        .iter()
        .zip(&test_set.hits)
        .filter_map(|(f, hits)| Some((f.as_deref()?, &hits[..hits.len().min(best.k)])))
        .unzip();
    let mut texts =
        pick_prompts(PromptChoice::default(), &with_fused, &neighbours, &search)?.into_iter();
    // Each picture shows the text `predict` prints and that text's own score against the truth.
    let target_dim = test_queries.first().map_or(1, |q| q.truth.len());
    let mut captions = test_captions
        .as_ref()
        .map(|c| c.texts.iter().zip(c.embeddings.chunks_exact(target_dim)));
    let entries: Vec<SheetEntry> = test_images
        .into_iter()
        .zip(&world.test)
        .zip(&fused)
        .zip(&test_queries)
        .map(|(((image, scene), fused), q)| {
            let (predicted, embedding) = match (fused, captions.as_mut()) {
                (_, Some(captions)) => captions
                    .next()
                    .map(|(text, e)| (text.clone(), Some(e.to_vec())))
                    .unwrap_or_default(),
                (Some(_), None) => texts
                    .next()
                    .flatten()
                    .map(|h| (h.prompt, Some(h.target)))
                    .unwrap_or_default(),
                (None, None) => (String::new(), None),
            };
            SheetEntry {
                image,
                truth: scene.prompt(),
                score: embedding.and_then(|e| prompt_fusion::cosine(&e, q.truth).ok()),
                predicted,
            }
        })
        .collect();
    let sheet = contact_sheet(&entries, 4);
    write_png_atomic(&options.out.join("contact-sheet.png"), &sheet)?;
    let pairs_dir = options.out.join("pairs");
    std::fs::create_dir_all(&pairs_dir).map_err(|e| Error::io(&pairs_dir, e))?;
    export_pairs(&world, "test", &world.test, EVAL_VARIANT, &pairs_dir)?;
    export_pairs(
        &world,
        "cross_domain",
        &world.cross_domain,
        EVAL_VARIANT,
        &pairs_dir,
    )?;
    seconds.insert("total".to_string(), total.elapsed().as_secs_f64());

    let mut models = BTreeMap::new();
    models.insert("clip".to_string(), clip_text.model_id().to_string());
    models.insert("sentence".to_string(), sentence.model_id().to_string());
    let report = DemoReport {
        clip_head: test.clip_head,
        knn: test.knn.clone(),
        fused_paper: test.fused_paper,
        fused_tuned: test.fused_tuned.clone(),
        text_score: test.text_score,
        n_test: test.n,
        test,
        cross_domain,
        validation,
        world: options.world,
        models,
        head_validation_cosine,
        seconds,
        pair_head,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Backend(e.to_string()))?;
    write_file_atomic(&options.out.join("report.json"), json.as_bytes())?;
    Ok(report)
}

/// Keeps the setting tuned on `n` validation pairs in the index's fusion.json, tied to the
/// head now in the index.
fn keep_tuned(index_dir: &Path, best: &FusionConfig, score: f64, n: usize) -> Result<()> {
    let stored = StoredFusion {
        config: *best,
        tuned_on: format!("demo validation split: {n} pairs"),
        score: Some(score),
        head_xxh3: head_fingerprint(index_dir)?,
    };
    save_fusion(index_dir, &stored)
}

/// Mean of the L2-normalised rows of `flat`.
fn mean_unit_rows(flat: &[f32], dim: usize) -> Vec<f32> {
    let mut mean = vec![0.0f32; dim];
    let mut n = 0usize;
    for row in flat.chunks_exact(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            mean.iter_mut().zip(row).for_each(|(m, x)| *m += x / norm);
            n += 1;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f32);
    mean
}

/// The validation grid: k, neighbour weighting and KNN share.
pub fn tuning_grid() -> TuningGrid {
    TuningGrid {
        ks: vec![1, 5, 10, 20, 50, 100, 200],
        aggregations: vec![
            Aggregation::SimilarityWeighted,
            Aggregation::Softmax { temperature: 0.01 },
            Aggregation::Softmax { temperature: 0.03 },
            Aggregation::Softmax { temperature: 0.1 },
        ],
        weights: (0..=10)
            .map(|i| BlendWeights::knn_share(i as f32 / 10.0))
            .collect(),
    }
}

fn aggregation_name(a: Aggregation) -> String {
    match a {
        Aggregation::SimilarityWeighted => "similarity".to_string(),
        Aggregation::Softmax { temperature } => format!("softmax({temperature})"),
        Aggregation::Uniform => "uniform".to_string(),
    }
}

/// The captioner's texts for one split, with their sentence embeddings.
struct Captions {
    texts: Vec<String>,
    embeddings: Vec<f32>,
    seconds_per_image: f64,
}

impl Captions {
    /// Captions `images` (timed) and embeds the texts with `sentence` (not timed).
    fn write(
        captioner: &ModelCaptioner,
        images: &[image::RgbImage],
        sentence: &SentenceTextEmbedder,
    ) -> Result<Self> {
        let dynamic: Vec<image::DynamicImage> = images
            .iter()
            .cloned()
            .map(image::DynamicImage::ImageRgb8)
            .collect();
        let start = Instant::now();
        let texts = captioner.caption(&dynamic)?;
        let seconds_per_image = start.elapsed().as_secs_f64() / images.len().max(1) as f64;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let embeddings = sentence.embed_texts(&refs)?;
        Ok(Self {
            texts,
            embeddings,
            seconds_per_image,
        })
    }
}

fn split_scores(
    set: &EvalSet,
    search: &IndexSearch,
    tuned: &FusionConfig,
    retrieval_top1: f64,
    captions: Option<&Captions>,
) -> Result<SplitScores> {
    // The texts aim at the tuned prediction, as `predict`'s do with the index's fusion.json.
    let options = EvalOptions {
        text_fusion: Some(*tuned),
        ..EvalOptions::default()
    };
    let captioned: Vec<OutputTexts<'_>> = captions
        .map(|c| OutputTexts {
            mode: "caption",
            embeddings: &c.embeddings,
            seconds_per_image: c.seconds_per_image,
        })
        .into_iter()
        .collect();
    let report: EvalReport = set.report(&options, &captioned, search)?;
    let paper = FusionConfig::default();
    Ok(SplitScores {
        clip_head: report.clip_head.unwrap_or(f64::NAN),
        knn: report.knn,
        fused_paper: set.score(&paper)?,
        fused_tuned: TunedScore {
            k: tuned.k,
            w_knn: tuned.weights.knn,
            aggregation: aggregation_name(tuned.aggregation),
            score: set.score(tuned)?,
        },
        fused_by_weight: report.fused,
        text_score: report.text_score,
        text_seconds_per_image: report
            .text_seconds_per_image
            .get(&report.text_mode)
            .copied()
            .unwrap_or(f64::NAN),
        text_mode: report.text_mode,
        text_score_nearest_in_index: report
            .text_scores
            .get(PromptChoice::NearestInIndex.name())
            .copied()
            .unwrap_or(f64::NAN),
        text_score_nearest_neighbour: report
            .text_scores
            .get(PromptChoice::NearestToPrediction.name())
            .copied()
            .unwrap_or(f64::NAN),
        text_score_best_neighbour: report
            .text_scores
            .get(PromptChoice::BestNeighbour.name())
            .copied()
            .unwrap_or(f64::NAN),
        clip_retrieval_top1: retrieval_top1,
        n: report.n,
    })
}

/// Share of rows whose nearest key (cosine, among the same split's prompts) is their own.
fn retrieval_top1(queries: &[f32], keys: &[f32], dim: usize) -> f64 {
    let unit = |v: &[f32]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let keys: Vec<Vec<f32>> = keys.chunks_exact(dim).map(unit).collect();
    let hits = queries
        .par_chunks_exact(dim)
        .enumerate()
        .filter(|(i, q)| {
            let q = unit(q);
            let score = |k: &Vec<f32>| k.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>();
            let best = keys
                .iter()
                .enumerate()
                .max_by(|a, b| score(a.1).total_cmp(&score(b.1)))
                .map(|(j, _)| j);
            best == Some(*i)
        })
        .count();
    hits as f64 / keys.len().max(1) as f64
}

/// Whether `dir` holds a finished index of `n` prompts made with these two models.
fn reusable_index(
    dir: &Path,
    keys: &dyn TextEmbedder,
    targets: &dyn TextEmbedder,
    n: usize,
) -> bool {
    Manifest::read(dir).is_ok_and(|m| {
        m.count == n as u64
            && ModelId::parse(&m.key_model).matches(keys.model_id())
            && ModelId::parse(&m.target_model).matches(targets.model_id())
    })
}

/// Saves a PNG through a temp file in the same directory, then renames it.
fn write_png_atomic(path: &Path, image: &image::RgbImage) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::Backend(format!("{}: {e}", path.display())))?;
    write_file_atomic(path, bytes.get_ref())
}
