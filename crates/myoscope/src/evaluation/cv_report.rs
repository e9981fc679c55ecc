//! The figures of Kabeya et al.'s evaluation for an ensemble: per image and per slide, for the
//! ensemble and for each fold's model alone (their Fig. 2d comparison); ROC and AUC with a
//! bootstrap interval over slides; confusion at 0.5 and at the sensitivity-first threshold;
//! a per-fold table like their Extended Data Table 1; and the two-step diagnosis end to end.
use super::metrics::{argmax_rows, ConfusionMatrix};
use super::roc::{bootstrap_auc_ci, one_vs_rest_auc, roc_auc, roc_curve, RocCurve};
use super::threshold::{counts_at, sensitivity_first_threshold, BinaryCounts};
use crate::cv::plan::{Plan, Stage};
use crate::data::Dataset;
use crate::diagnose::{diagnose, DiagnoseOptions, SlideDiagnosis};
use crate::ensemble::{mean_over_models, probabilities_per_model, Ensemble};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub struct EvaluateOptions {
    pub device: tch::Device,
    pub batch_size: usize,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CvMetrics {
    pub ensemble: String,
    /// The stage the headline figures describe (step 1, or the only one).
    pub primary_stage: String,
    pub positive_class: Option<String>,
    /// Headline: the ensemble on the held-out test photos.
    pub per_image: Headline,
    pub per_slide: Headline,
    pub stages: Vec<StageReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_step: Option<TwoStepReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Headline {
    pub auc: Option<f64>,
    pub auc_ci: Option<[f64; 2]>,
    pub accuracy: f64,
    pub n: usize,
}

/// Figures at one level (photos or slides) for one predictor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelMetrics {
    pub n: usize,
    /// Binary: AUC of the positive class; more classes: macro one-vs-rest AUC.
    pub auc: Option<f64>,
    /// Percentile bootstrap interval, resampling slides.
    pub auc_ci: Option<[f64; 2]>,
    /// Binary: at threshold 0.5 on the positive class; more classes: the most probable class.
    pub accuracy: f64,
    pub per_class_auc: BTreeMap<String, Option<f64>>,
    pub per_class_auc_ci: BTreeMap<String, Option<[f64; 2]>>,
    /// Recall of each class (accuracy among the photos/slides of that class).
    pub per_class_accuracy: BTreeMap<String, f64>,
    pub confusion: ConfusionMatrix,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
}

/// TP/TN/FP/FN with the rates people read off them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Counts {
    #[serde(flatten)]
    pub counts: BinaryCounts,
    pub accuracy: f64,
    pub sensitivity: f64,
    pub specificity: f64,
}

impl From<BinaryCounts> for Counts {
    fn from(c: BinaryCounts) -> Self {
        Self {
            counts: c,
            accuracy: c.accuracy(),
            sensitivity: c.sensitivity(),
            specificity: c.specificity(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Levels<T> {
    pub per_image: T,
    pub per_slide: T,
}

/// The k single models: mean and sd of their figures, and their confusion summed over folds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spread {
    pub auc_mean: Option<f64>,
    pub auc_sd: Option<f64>,
    pub accuracy_mean: f64,
    pub accuracy_sd: f64,
    pub summed_confusion: ConfusionMatrix,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summed_counts: Option<Counts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldRow {
    pub fold: usize,
    pub train_images: usize,
    pub validation_images: usize,
    pub test_images: usize,
    pub train_slides: usize,
    pub validation_slides: usize,
    pub test_slides: usize,
    pub best_epoch: usize,
    pub best_validation_accuracy: f64,
    pub per_image: Brief,
    pub per_slide: Brief,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Brief {
    pub auc: Option<f64>,
    pub accuracy: f64,
}

/// The sensitivity-first operating point: the highest threshold that misses no positive
/// slide of the out-of-fold validation predictions, then applied to the test slides.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdReport {
    pub sensitivity_first: Option<f64>,
    pub found_on: String,
    pub validation_per_slide: Option<Counts>,
    pub test_per_slide: BTreeMap<String, Counts>,
    pub test_per_image: BTreeMap<String, Counts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedCurve {
    pub name: String,
    pub curve: RocCurve,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageReport {
    pub stage: String,
    pub classes: Vec<String>,
    pub positive_class: Option<String>,
    pub ensemble: Levels<LevelMetrics>,
    pub single_models: Levels<Spread>,
    pub folds: Vec<FoldRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<ThresholdReport>,
    /// ROC curves: the ensemble's (one per class beyond two classes), then each fold model's.
    pub roc: Levels<Vec<NamedCurve>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TwoStepReport {
    pub slides: usize,
    pub threshold: f64,
    pub group_accuracy: f64,
    /// Share of slides whose final subtype is right (a wrong group call counts as wrong).
    pub subtype_accuracy: f64,
    pub per_subtype: BTreeMap<String, SubtypeTally>,
    pub uncertain_slides: usize,
    pub diagnoses: Vec<SlideDiagnosis>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubtypeTally {
    pub slides: usize,
    pub correct: usize,
    pub accuracy: f64,
}

/// Runs every model of the ensemble on its test photos and on its own validation fold.
pub fn evaluate(ens: &Ensemble, plan: &Plan, opts: &EvaluateOptions) -> Result<CvMetrics> {
    let mut stages = Vec::new();
    for entry in &ens.manifest.stages {
        eprintln!(
            "evaluating {} ({} models)",
            entry.stage.name,
            entry.models.len()
        );
        stages.push(evaluate_stage(ens, plan, &entry.stage, opts)?);
    }
    let primary = &stages[0];
    let headline = |m: &LevelMetrics| Headline {
        auc: m.auc,
        auc_ci: m.auc_ci,
        accuracy: m.accuracy,
        n: m.n,
    };
    let two_step = match &ens.manifest.hierarchy {
        Some(_) => Some(two_step(ens, plan, opts)?),
        None => None,
    };
    Ok(CvMetrics {
        ensemble: ens.dir.display().to_string(),
        primary_stage: primary.stage.clone(),
        positive_class: primary.positive_class.clone(),
        per_image: headline(&primary.ensemble.per_image),
        per_slide: headline(&primary.ensemble.per_slide),
        two_step,
        stages,
    })
}

/// The positive class of a two-class stage.
fn positive_of(ens: &Ensemble, stage: &Stage) -> Option<usize> {
    if stage.classes.len() != 2 {
        return None;
    }
    let named = match (&ens.manifest.hierarchy, &stage.group) {
        (Some(h), None) => Some(h.positive_group.clone()),
        (None, _) => ens.manifest.evaluation.positive_class.clone(),
        _ => None,
    };
    Some(
        named
            .and_then(|n| stage.classes.iter().position(|c| *c == n))
            .unwrap_or(1),
    )
}

/// Photo → slide index, and the slide names.
struct Slides {
    of_image: Vec<usize>,
    truth: Vec<usize>,
}

impl Slides {
    fn of(ds: &Dataset) -> Self {
        let names: BTreeSet<&str> = ds
            .samples
            .iter()
            .filter_map(|s| s.slide.as_deref())
            .collect();
        let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let of_image: Vec<usize> = ds
            .samples
            .iter()
            .map(|s| index[s.slide.as_deref().unwrap_or_default()])
            .collect();
        let mut truth = vec![0; names.len()];
        for (s, &i) in ds.samples.iter().zip(&of_image) {
            truth[i] = s.label;
        }
        Self { of_image, truth }
    }

    fn count(&self) -> usize {
        self.truth.len()
    }

    /// Slide probability = mean over the slide's photos.
    fn means(&self, probs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let k = probs.first().map_or(0, Vec::len);
        let mut sum = vec![vec![0.0; k]; self.count()];
        let mut n = vec![0.0; self.count()];
        for (p, &s) in probs.iter().zip(&self.of_image) {
            for (a, v) in sum[s].iter_mut().zip(p) {
                *a += v;
            }
            n[s] += 1.0;
        }
        sum.into_iter()
            .zip(n)
            .map(|(row, n)| row.into_iter().map(|v| v / n).collect())
            .collect()
    }
}

fn predictions(probs: &[Vec<f64>], positive: Option<usize>) -> Vec<usize> {
    match positive {
        Some(p) => probs
            .iter()
            .map(|r| if r[p] >= 0.5 { p } else { 1 - p })
            .collect(),
        None => argmax_rows(probs),
    }
}

fn binary(truth: &[usize], probs: &[Vec<f64>], p: usize) -> (Vec<bool>, Vec<f64>) {
    (
        truth.iter().map(|&t| t == p).collect(),
        probs.iter().map(|r| r[p]).collect(),
    )
}

/// Figures of one predictor at one level. `clusters` are the slides the bootstrap resamples.
fn level_metrics(
    classes: &[String],
    positive: Option<usize>,
    truth: &[usize],
    probs: &[Vec<f64>],
    clusters: &[usize],
    ens: &Ensemble,
    with_ci: bool,
) -> Result<LevelMetrics> {
    let eval = &ens.manifest.evaluation;
    let confusion = ConfusionMatrix::new(classes, truth, &predictions(probs, positive));
    let ci = |t: &[bool], s: &[f64]| -> Result<Option<[f64; 2]>> {
        if !with_ci {
            return Ok(None);
        }
        Ok(
            bootstrap_auc_ci(t, s, clusters, eval.bootstrap, eval.confidence, 0)?
                .map(|(a, b)| [a, b]),
        )
    };
    let mut per_class_auc = BTreeMap::new();
    let mut per_class_auc_ci = BTreeMap::new();
    for (c, name) in classes.iter().enumerate() {
        let (t, s) = binary(truth, probs, c);
        per_class_auc.insert(name.clone(), roc_auc(&t, &s)?);
        per_class_auc_ci.insert(name.clone(), ci(&t, &s)?);
    }
    let (auc, auc_ci, counts) = match positive {
        Some(p) => {
            let (t, s) = binary(truth, probs, p);
            (
                roc_auc(&t, &s)?,
                ci(&t, &s)?,
                Some(counts_at(&t, &s, 0.5).into()),
            )
        }
        None => (one_vs_rest_auc(truth, probs, classes.len())?.0, None, None),
    };
    let recall = confusion.recall();
    Ok(LevelMetrics {
        n: truth.len(),
        auc,
        auc_ci,
        accuracy: confusion.accuracy(),
        per_class_auc,
        per_class_auc_ci,
        per_class_accuracy: classes
            .iter()
            .cloned()
            .zip(recall)
            .filter(|(_, r)| r.is_finite())
            .collect(),
        confusion,
        counts,
    })
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn spread(levels: &[&LevelMetrics], classes: &[String]) -> Spread {
    let aucs: Vec<f64> = levels.iter().filter_map(|m| m.auc).collect();
    let (auc_mean, auc_sd) = if aucs.is_empty() {
        (None, None)
    } else {
        let (m, s) = mean_sd(&aucs);
        (Some(m), Some(s))
    };
    let accs: Vec<f64> = levels.iter().map(|m| m.accuracy).collect();
    let (accuracy_mean, accuracy_sd) = mean_sd(&accs);
    let mut summed = ConfusionMatrix::new(classes, &[], &[]);
    let mut counts: Option<BinaryCounts> = None;
    for m in levels {
        for (row, other) in summed.counts.iter_mut().zip(&m.confusion.counts) {
            for (a, b) in row.iter_mut().zip(other) {
                *a += b;
            }
        }
        if let Some(c) = &m.counts {
            counts
                .get_or_insert_with(BinaryCounts::default)
                .add(&c.counts);
        }
    }
    Spread {
        auc_mean,
        auc_sd,
        accuracy_mean,
        accuracy_sd,
        summed_confusion: summed,
        summed_counts: counts.map(Counts::from),
    }
}

fn evaluate_stage(
    ens: &Ensemble,
    plan: &Plan,
    stage: &Stage,
    opts: &EvaluateOptions,
) -> Result<StageReport> {
    let positive = positive_of(ens, stage);
    let test = plan.test_set(stage);
    let slides = Slides::of(&test);
    let models = ens.load_stage(&stage.name, opts.device)?;
    let per_model = probabilities_per_model(&models, test.clone(), opts.batch_size, opts.progress)?;
    let truth: Vec<usize> = test.samples.iter().map(|s| s.label).collect();
    let ens_img = mean_over_models(&per_model);
    let ens_slide = slides.means(&ens_img);
    let slide_ids: Vec<usize> = (0..slides.count()).collect();
    let c = &stage.classes;
    let ensemble = Levels {
        per_image: level_metrics(c, positive, &truth, &ens_img, &slides.of_image, ens, true)?,
        per_slide: level_metrics(
            c,
            positive,
            &slides.truth,
            &ens_slide,
            &slide_ids,
            ens,
            true,
        )?,
    };

    let entry = ens.stage(&stage.name)?;
    let mut single_img = Vec::new();
    let mut single_slide = Vec::new();
    let mut folds = Vec::new();
    let mut oof_truth = Vec::new();
    let mut oof_scores = Vec::new();
    for ((model, probs), m) in models.iter().zip(&per_model).zip(&entry.models) {
        let img = level_metrics(c, positive, &truth, probs, &slides.of_image, ens, false)?;
        let sl = level_metrics(
            c,
            positive,
            &slides.truth,
            &slides.means(probs),
            &slide_ids,
            ens,
            false,
        )?;
        folds.push(fold_row(plan, stage, m, &img, &sl));
        single_img.push(img);
        single_slide.push(sl);
        if let Some(p) = positive {
            // Out-of-fold validation: each model on the fold it never trained on.
            let val = plan.fold_set(stage, m.fold);
            let val_slides = Slides::of(&val);
            let probs =
                probabilities_per_model(std::slice::from_ref(model), val, opts.batch_size, false)?;
            let means = val_slides.means(&probs[0]);
            oof_truth.extend(val_slides.truth.iter().map(|&t| t == p));
            oof_scores.extend(means.iter().map(|r| r[p]));
        }
    }
    let single_models = Levels {
        per_image: spread(&single_img.iter().collect::<Vec<_>>(), c),
        per_slide: spread(&single_slide.iter().collect::<Vec<_>>(), c),
    };
    let thresholds = positive.map(|p| {
        let t = sensitivity_first_threshold(&oof_truth, &oof_scores);
        let mut test_per_slide = BTreeMap::new();
        let mut test_per_image = BTreeMap::new();
        let (st, ss) = binary(&slides.truth, &ens_slide, p);
        let (it, is) = binary(&truth, &ens_img, p);
        for (name, th) in [
            ("0.5".to_string(), Some(0.5)),
            ("sensitivity_first".to_string(), t),
        ] {
            if let Some(th) = th {
                test_per_slide.insert(name.clone(), counts_at(&st, &ss, th).into());
                test_per_image.insert(name, counts_at(&it, &is, th).into());
            }
        }
        ThresholdReport {
            sensitivity_first: t,
            found_on: "out-of-fold validation slides (each fold model on its own validation fold)"
                .into(),
            validation_per_slide: t.map(|t| counts_at(&oof_truth, &oof_scores, t).into()),
            test_per_slide,
            test_per_image,
        }
    });
    let roc = Levels {
        per_image: curves(c, positive, &truth, &ens_img, &per_model, None)?,
        per_slide: curves(
            c,
            positive,
            &slides.truth,
            &ens_slide,
            &per_model,
            Some(&slides),
        )?,
    };
    Ok(StageReport {
        stage: stage.name.clone(),
        classes: c.clone(),
        positive_class: positive.map(|p| c[p].clone()),
        ensemble,
        single_models,
        folds,
        thresholds,
        roc,
    })
}

/// Binary: the ensemble's curve, then each fold model's; more classes: one curve per class.
fn curves(
    classes: &[String],
    positive: Option<usize>,
    truth: &[usize],
    ensemble: &[Vec<f64>],
    per_model: &[Vec<Vec<f64>>],
    slides: Option<&Slides>,
) -> Result<Vec<NamedCurve>> {
    let mut out = Vec::new();
    match positive {
        Some(p) => {
            let (t, s) = binary(truth, ensemble, p);
            if let Some(curve) = roc_curve(&t, &s)? {
                out.push(NamedCurve {
                    name: "ensemble".into(),
                    curve,
                });
            }
            for (i, probs) in per_model.iter().enumerate() {
                let probs = match slides {
                    Some(sl) => sl.means(probs),
                    None => probs.clone(),
                };
                let (t, s) = binary(truth, &probs, p);
                if let Some(curve) = roc_curve(&t, &s)? {
                    out.push(NamedCurve {
                        name: format!("fold {}", i + 1),
                        curve,
                    });
                }
            }
        }
        None => {
            for (c, name) in classes.iter().enumerate() {
                let (t, s) = binary(truth, ensemble, c);
                if let Some(curve) = roc_curve(&t, &s)? {
                    out.push(NamedCurve {
                        name: name.clone(),
                        curve,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn fold_row(
    plan: &Plan,
    stage: &Stage,
    m: &crate::ensemble::ModelEntry,
    img: &LevelMetrics,
    sl: &LevelMetrics,
) -> FoldRow {
    let mut images = [0usize; 3];
    let mut slides: [BTreeSet<&str>; 3] = Default::default();
    for r in plan
        .rows
        .iter()
        .filter(|r| plan.label_in(stage, r).is_some())
    {
        let side = match r.fold_number() {
            None => 2,
            Some(f) if f == m.fold => 1,
            Some(_) => 0,
        };
        images[side] += 1;
        slides[side].insert(r.slide.as_str());
    }
    FoldRow {
        fold: m.fold,
        train_images: images[0],
        validation_images: images[1],
        test_images: images[2],
        train_slides: slides[0].len(),
        validation_slides: slides[1].len(),
        test_slides: slides[2].len(),
        best_epoch: m.best_epoch,
        best_validation_accuracy: m.best_validation_accuracy,
        per_image: Brief {
            auc: img.auc,
            accuracy: img.accuracy,
        },
        per_slide: Brief {
            auc: sl.auc,
            accuracy: sl.accuracy,
        },
    }
}

/// The diagnosis a user gets, run on the test slides: group call at the configured threshold,
/// then the subtype within the called group, scored against the true subtype.
fn two_step(ens: &Ensemble, plan: &Plan, opts: &EvaluateOptions) -> Result<TwoStepReport> {
    let Some(h) = &ens.manifest.hierarchy else {
        anyhow::bail!("not a two-step ensemble");
    };
    let photos = plan.test_photos();
    let diagnoses = diagnose(
        ens,
        &photos,
        &DiagnoseOptions {
            threshold: None,
            uncertainty_band: None,
            batch_size: opts.batch_size,
            device: opts.device,
            progress: opts.progress,
            engine: crate::onnx::Engine::Torch,
        },
    )?;
    let mut per_subtype: BTreeMap<String, SubtypeTally> = BTreeMap::new();
    let (mut group_ok, mut subtype_ok) = (0, 0);
    for d in &diagnoses {
        let Some(truth) = &d.truth else { continue };
        let tally = per_subtype.entry(truth.clone()).or_default();
        tally.slides += 1;
        group_ok += usize::from(h.group_of(truth) == Some(d.call.as_str()));
        if d.subtype.as_ref() == Some(truth) {
            subtype_ok += 1;
            tally.correct += 1;
        }
    }
    for t in per_subtype.values_mut() {
        t.accuracy = t.correct as f64 / t.slides.max(1) as f64;
    }
    let n = diagnoses.len().max(1) as f64;
    Ok(TwoStepReport {
        slides: diagnoses.len(),
        threshold: ens.manifest.evaluation.threshold,
        group_accuracy: group_ok as f64 / n,
        subtype_accuracy: subtype_ok as f64 / n,
        per_subtype,
        uncertain_slides: diagnoses.iter().filter(|d| d.uncertain).count(),
        diagnoses,
    })
}
