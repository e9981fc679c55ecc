//! Segmentation metrics from integer masks: per-image, per-class pixel counts (TP/FP/FN/TN), then
//! IoU (Jaccard), Dice (F1) and accuracy under named reductions, equal to
//! `segmentation_models_pytorch.metrics` (`get_stats` + `iou_score` / `f1_score` / `accuracy`).
//!
//! Reductions (the names smp uses, and the suffixes of every field in [`SegmentationReport`]):
//! - `micro`: counts summed over all images and classes, one score.
//! - `macro`: counts summed over images per class, a score per class (`per_class`), then their mean.
//! - `micro_imagewise`: counts summed over classes per image, a score per image, then their mean.
//! - `macro_imagewise`: a score per image and class, averaged over classes, then over images.
//!
//! A score whose denominator is zero (for IoU and Dice: a class absent from both prediction and
//! truth) is replaced by `zero_division`, 1.0 by default as in smp: agreeing that a class is absent
//! counts as perfect. smp leaves the `micro` reduction unguarded and returns NaN when every count
//! is zero (binary mode, an empty truth and an empty prediction); we apply `zero_division` there
//! too, so no report ever carries a NaN. That is the one place we differ from smp.
//!
//! Pixel accuracy is the fraction of pixels whose predicted class equals the true class. It is not
//! smp's `accuracy` in multiclass mode, which is a one-vs-rest (TP + TN) / all per class; both are
//! offered ([`Metric::Accuracy`] is smp's).
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How mask values map to the classes that are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskMode {
    /// smp's `binary` mode: any nonzero value is foreground, and only the foreground class is
    /// scored (background IoU is not averaged in). Instance label masks work as they are.
    Binary,
    /// smp's `multiclass` mode: values are class ids `0..num_classes`, all classes scored,
    /// background (0) included.
    Multiclass { num_classes: usize },
}

impl MaskMode {
    /// Number of scored classes (1 in binary mode).
    pub fn scored_classes(&self) -> usize {
        match self {
            MaskMode::Binary => 1,
            MaskMode::Multiclass { num_classes } => *num_classes,
        }
    }

    fn describe(&self) -> String {
        match self {
            MaskMode::Binary => "binary: nonzero = foreground, only the foreground scored".into(),
            MaskMode::Multiclass { num_classes } => {
                format!("multiclass: class ids 0..{num_classes}, background included")
            }
        }
    }
}

/// A mask value that names a class; negative values are invalid.
pub trait ClassLabel: Copy + std::fmt::Display {
    fn class_index(self) -> Option<usize>;
}

macro_rules! class_label {
    ($($t:ty),*) => {$(
        impl ClassLabel for $t {
            fn class_index(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
        }
    )*};
}
class_label!(u8, u16, u32, u64, usize, i32, i64);

/// Pixel counts of one class in one image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub true_positive: u64,
    pub false_positive: u64,
    pub false_negative: u64,
    pub true_negative: u64,
}

impl ClassCounts {
    fn add(&mut self, other: &ClassCounts) {
        self.true_positive += other.true_positive;
        self.false_positive += other.false_positive;
        self.false_negative += other.false_negative;
        self.true_negative += other.true_negative;
    }
}

/// The counts of one image: one [`ClassCounts`] per scored class, and pixel agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCounts {
    pub per_class: Vec<ClassCounts>,
    pub pixels: u64,
    /// Pixels whose predicted class equals the true class (in binary mode: foreground agreement).
    pub correct_pixels: u64,
}

impl ImageCounts {
    /// Counts one image. `predicted` and `truth` are the same image's masks, row-major, the same
    /// length.
    pub fn from_masks<T: ClassLabel>(predicted: &[T], truth: &[T], mode: MaskMode) -> Result<Self> {
        ensure!(
            predicted.len() == truth.len(),
            "the predicted mask has {} pixels but the true mask {}: both must come from the same \
             image at the same size",
            predicted.len(),
            truth.len()
        );
        ensure!(!truth.is_empty(), "the masks have no pixels");
        let classes = mode.scored_classes();
        ensure!(
            classes >= 1,
            "multiclass metrics need at least one class (num_classes = 0)"
        );
        let index = |v: T, which: &str| -> Result<usize> {
            match mode {
                MaskMode::Binary => match v.class_index() {
                    Some(i) => Ok(usize::from(i != 0)),
                    None => bail!("the {which} mask holds {v}, a negative label"),
                },
                MaskMode::Multiclass { num_classes } => match v.class_index() {
                    Some(i) if i < num_classes => Ok(i),
                    _ => bail!(
                        "the {which} mask holds {v}, outside the class ids 0..{num_classes}: \
                         check num_classes or convert instance labels to classes first"
                    ),
                },
            }
        };
        // Multiclass: a confusion matrix, from which every class's counts follow.
        // Binary: the same with two rows (background, foreground), scoring the foreground only.
        let rows = match mode {
            MaskMode::Binary => 2,
            MaskMode::Multiclass { num_classes } => num_classes,
        };
        let mut confusion = vec![0u64; rows * rows];
        for (&p, &t) in predicted.iter().zip(truth) {
            let (p, t) = (index(p, "predicted")?, index(t, "true")?);
            confusion[t * rows + p] += 1;
        }
        let pixels = truth.len() as u64;
        let correct_pixels = (0..rows).map(|c| confusion[c * rows + c]).sum();
        let counts_of = |c: usize| {
            let tp = confusion[c * rows + c];
            let predicted_c: u64 = (0..rows).map(|t| confusion[t * rows + c]).sum();
            let true_c: u64 = (0..rows).map(|p| confusion[c * rows + p]).sum();
            ClassCounts {
                true_positive: tp,
                false_positive: predicted_c - tp,
                false_negative: true_c - tp,
                true_negative: pixels + tp - predicted_c - true_c,
            }
        };
        let per_class = match mode {
            MaskMode::Binary => vec![counts_of(1)],
            MaskMode::Multiclass { num_classes } => (0..num_classes).map(counts_of).collect(),
        };
        Ok(ImageCounts {
            per_class,
            pixels,
            correct_pixels,
        })
    }

    /// Counts every image of a batch of predicted and true masks, both N×H×W integer tensors (for
    /// example `logits.argmax(1)` and the batch's masks).
    pub fn from_batch(predicted: &Tensor, truth: &Tensor, mode: MaskMode) -> Result<Vec<Self>> {
        ensure!(
            predicted.size() == truth.size(),
            "predicted masks are {:?} but true masks {:?}: they must have the same N×H×W shape",
            predicted.size(),
            truth.size()
        );
        let size = truth.size();
        ensure!(size.len() == 3, "masks must be N×H×W, got shape {size:?}");
        for t in [predicted, truth] {
            ensure!(
                !matches!(
                    t.kind(),
                    Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
                ),
                "masks must hold integer class ids, got {:?}: take argmax over the class axis \
                 or threshold the probabilities first",
                t.kind()
            );
        }
        let n = size[0] as usize;
        let flat = |t: &Tensor| -> Result<Vec<i64>> {
            Vec::<i64>::try_from(t.to_kind(Kind::Int64).flatten(0, -1))
                .context("reading the masks back from the tensor")
        };
        let (p, t) = (flat(predicted)?, flat(truth)?);
        if n == 0 {
            return Ok(Vec::new());
        }
        let per = p.len() / n;
        (0..n)
            .map(|i| {
                Self::from_masks(&p[i * per..(i + 1) * per], &t[i * per..(i + 1) * per], mode)
                    .with_context(|| format!("image {i} of the batch"))
            })
            .collect()
    }
}

/// The scores smp computes from the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// TP / (TP + FP + FN).
    Iou,
    /// F1: 2 TP / (2 TP + FP + FN).
    Dice,
    /// smp's `accuracy`: (TP + TN) / all, per class (one-vs-rest).
    Accuracy,
}

/// The ways counts are pooled into one score; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    Micro,
    Macro,
    MicroImagewise,
    MacroImagewise,
}

impl Metric {
    /// The score, or None where its denominator is zero.
    fn raw(&self, c: &ClassCounts) -> Option<f64> {
        let (tp, fp, fn_, tn) = (
            c.true_positive as f64,
            c.false_positive as f64,
            c.false_negative as f64,
            c.true_negative as f64,
        );
        let (num, den) = match self {
            Metric::Iou => (tp, tp + fp + fn_),
            Metric::Dice => (2.0 * tp, 2.0 * tp + fp + fn_),
            Metric::Accuracy => (tp + tn, tp + fp + fn_ + tn),
        };
        (den > 0.0).then(|| num / den)
    }

    fn score(&self, c: &ClassCounts, zero_division: f64) -> f64 {
        self.raw(c).unwrap_or(zero_division)
    }
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

fn check_counts(images: &[ImageCounts]) -> Result<usize> {
    let first = images
        .first()
        .context("no images were counted: there is nothing to score")?;
    let classes = first.per_class.len();
    ensure!(
        images.iter().all(|i| i.per_class.len() == classes),
        "the images were counted with different numbers of classes"
    );
    Ok(classes)
}

/// Per-class counts summed over images.
pub fn counts_per_class(images: &[ImageCounts]) -> Vec<ClassCounts> {
    let classes = images.first().map_or(0, |i| i.per_class.len());
    let mut total = vec![ClassCounts::default(); classes];
    for image in images {
        for (t, c) in total.iter_mut().zip(&image.per_class) {
            t.add(c);
        }
    }
    total
}

fn sum_classes(counts: &[ClassCounts]) -> ClassCounts {
    let mut total = ClassCounts::default();
    for c in counts {
        total.add(c);
    }
    total
}

/// One score under one reduction (smp's `iou_score(tp, fp, fn, tn, reduction=...)`).
pub fn score(
    metric: Metric,
    reduction: Reduction,
    images: &[ImageCounts],
    zero_division: f64,
) -> Result<f64> {
    check_counts(images)?;
    Ok(match reduction {
        Reduction::Micro => metric.score(&sum_classes(&counts_per_class(images)), zero_division),
        Reduction::Macro => mean(
            counts_per_class(images)
                .iter()
                .map(|c| metric.score(c, zero_division)),
        ),
        Reduction::MicroImagewise => mean(
            images
                .iter()
                .map(|i| metric.score(&sum_classes(&i.per_class), zero_division)),
        ),
        Reduction::MacroImagewise => mean(
            images
                .iter()
                .flat_map(|i| i.per_class.iter().map(|c| metric.score(c, zero_division))),
        ),
    })
}

/// Per-class scores with counts summed over images (the vector `macro` averages).
pub fn score_per_class(
    metric: Metric,
    images: &[ImageCounts],
    zero_division: f64,
) -> Result<Vec<f64>> {
    check_counts(images)?;
    Ok(counts_per_class(images)
        .iter()
        .map(|c| metric.score(c, zero_division))
        .collect())
}

/// One score per image and class (smp's reduction `none`), images outermost.
pub fn score_per_image_per_class(
    metric: Metric,
    images: &[ImageCounts],
    zero_division: f64,
) -> Vec<Vec<f64>> {
    images
        .iter()
        .map(|i| {
            i.per_class
                .iter()
                .map(|c| metric.score(c, zero_division))
                .collect()
        })
        .collect()
}

/// The scores of one image. `micro` pools the image's classes, `macro` averages them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMetrics {
    /// Position of the image in the evaluation order.
    pub image: usize,
    pub iou_micro: f64,
    pub iou_macro: f64,
    pub iou_per_class: Vec<f64>,
    pub dice_micro: f64,
    pub dice_macro: f64,
    pub dice_per_class: Vec<f64>,
    /// Fraction of the image's pixels with the right class.
    pub pixel_accuracy: f64,
}

/// Every score of an evaluation, each field named by its reduction (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentationReport {
    /// Which classes were scored.
    pub mode: String,
    /// The score given to a class absent from both prediction and truth.
    pub zero_division: f64,
    pub images: usize,
    pub iou_micro: f64,
    pub iou_macro: f64,
    pub iou_micro_imagewise: f64,
    pub iou_macro_imagewise: f64,
    /// Per class, counts summed over all images (in binary mode: the foreground only).
    pub iou_per_class: Vec<f64>,
    pub dice_micro: f64,
    pub dice_macro: f64,
    pub dice_micro_imagewise: f64,
    pub dice_macro_imagewise: f64,
    pub dice_per_class: Vec<f64>,
    /// Correct pixels over all pixels of all images.
    pub pixel_accuracy: f64,
    /// Mean over images of each image's pixel accuracy.
    pub pixel_accuracy_imagewise: f64,
    pub per_image: Vec<ImageMetrics>,
    /// The counts everything above was computed from, summed over images, per class.
    pub counts_per_class: Vec<ClassCounts>,
}

/// Collects the counts of an evaluation image by image; a new accumulator per evaluation, so
/// scores never leak from one epoch into the next.
#[derive(Debug, Clone)]
pub struct MetricsAccumulator {
    mode: MaskMode,
    zero_division: f64,
    images: Vec<ImageCounts>,
}

impl MetricsAccumulator {
    /// `zero_division` 1.0 matches smp's default.
    pub fn new(mode: MaskMode, zero_division: f64) -> Result<Self> {
        ensure!(
            zero_division.is_finite(),
            "zero_division must be a finite number (smp's default is 1.0), got {zero_division}"
        );
        if let MaskMode::Multiclass { num_classes } = mode {
            ensure!(
                num_classes >= 1,
                "multiclass metrics need at least one class (num_classes = 0)"
            );
        }
        Ok(Self {
            mode,
            zero_division,
            images: Vec::new(),
        })
    }

    pub fn add_image<T: ClassLabel>(&mut self, predicted: &[T], truth: &[T]) -> Result<()> {
        let counts = ImageCounts::from_masks(predicted, truth, self.mode)
            .with_context(|| format!("image {}", self.images.len()))?;
        self.images.push(counts);
        Ok(())
    }

    /// Adds every image of an N×H×W batch of predicted and true class ids.
    pub fn add_batch(&mut self, predicted: &Tensor, truth: &Tensor) -> Result<()> {
        let counts = ImageCounts::from_batch(predicted, truth, self.mode)?;
        self.images.extend(counts);
        Ok(())
    }

    pub fn images(&self) -> &[ImageCounts] {
        &self.images
    }

    pub fn report(&self) -> Result<SegmentationReport> {
        let images = &self.images;
        let z = self.zero_division;
        check_counts(images)?;
        let per_image = images
            .iter()
            .enumerate()
            .map(|(i, counts)| {
                let one = std::slice::from_ref(counts);
                Ok(ImageMetrics {
                    image: i,
                    iou_micro: score(Metric::Iou, Reduction::Micro, one, z)?,
                    iou_macro: score(Metric::Iou, Reduction::Macro, one, z)?,
                    iou_per_class: score_per_class(Metric::Iou, one, z)?,
                    dice_micro: score(Metric::Dice, Reduction::Micro, one, z)?,
                    dice_macro: score(Metric::Dice, Reduction::Macro, one, z)?,
                    dice_per_class: score_per_class(Metric::Dice, one, z)?,
                    pixel_accuracy: counts.correct_pixels as f64 / counts.pixels as f64,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let correct: u64 = images.iter().map(|i| i.correct_pixels).sum();
        let pixels: u64 = images.iter().map(|i| i.pixels).sum();
        Ok(SegmentationReport {
            mode: self.mode.describe(),
            zero_division: z,
            images: images.len(),
            iou_micro: score(Metric::Iou, Reduction::Micro, images, z)?,
            iou_macro: score(Metric::Iou, Reduction::Macro, images, z)?,
            iou_micro_imagewise: score(Metric::Iou, Reduction::MicroImagewise, images, z)?,
            iou_macro_imagewise: score(Metric::Iou, Reduction::MacroImagewise, images, z)?,
            iou_per_class: score_per_class(Metric::Iou, images, z)?,
            dice_micro: score(Metric::Dice, Reduction::Micro, images, z)?,
            dice_macro: score(Metric::Dice, Reduction::Macro, images, z)?,
            dice_micro_imagewise: score(Metric::Dice, Reduction::MicroImagewise, images, z)?,
            dice_macro_imagewise: score(Metric::Dice, Reduction::MacroImagewise, images, z)?,
            dice_per_class: score_per_class(Metric::Dice, images, z)?,
            pixel_accuracy: correct as f64 / pixels as f64,
            pixel_accuracy_imagewise: mean(per_image.iter().map(|m| m.pixel_accuracy)),
            per_image,
            counts_per_class: counts_per_class(images),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn counts_of_a_hand_made_three_class_image() {
        // truth 0 0 1 1 2 2, prediction 0 1 1 1 2 0
        let truth = [0u8, 0, 1, 1, 2, 2];
        let pred = [0u8, 1, 1, 1, 2, 0];
        let c = ImageCounts::from_masks(&pred, &truth, MaskMode::Multiclass { num_classes: 3 })
            .unwrap();
        let expect = |tp, fp, fn_, tn| ClassCounts {
            true_positive: tp,
            false_positive: fp,
            false_negative: fn_,
            true_negative: tn,
        };
        assert_eq!(c.per_class[0], expect(1, 1, 1, 3));
        assert_eq!(c.per_class[1], expect(2, 1, 0, 3));
        assert_eq!(c.per_class[2], expect(1, 0, 1, 4));
        assert_eq!(c.correct_pixels, 4);
        let one = [c];
        // IoU per class 1/3, 2/3, 1/2; micro pools 4 / (4 + 2 + 2).
        let per = score_per_class(Metric::Iou, &one, 1.0).unwrap();
        assert!(close(per[0], 1.0 / 3.0) && close(per[1], 2.0 / 3.0) && close(per[2], 0.5));
        assert!(close(
            score(Metric::Iou, Reduction::Micro, &one, 1.0).unwrap(),
            0.5
        ));
        assert!(close(
            score(Metric::Iou, Reduction::Macro, &one, 1.0).unwrap(),
            0.5
        ));
        // Dice per class 2/4, 4/5, 2/3.
        let dice = score_per_class(Metric::Dice, &one, 1.0).unwrap();
        assert!(close(dice[1], 0.8) && close(dice[2], 2.0 / 3.0));
    }

    #[test]
    fn a_class_absent_from_both_masks_scores_zero_division() {
        let truth = [0u8, 0, 1, 1];
        let pred = [0u8, 0, 1, 1];
        let mut acc =
            MetricsAccumulator::new(MaskMode::Multiclass { num_classes: 3 }, 1.0).unwrap();
        acc.add_image(&pred, &truth).unwrap();
        let r = acc.report().unwrap();
        assert_eq!(r.iou_per_class, vec![1.0, 1.0, 1.0]);
        let mut acc =
            MetricsAccumulator::new(MaskMode::Multiclass { num_classes: 3 }, 0.0).unwrap();
        acc.add_image(&pred, &truth).unwrap();
        let r = acc.report().unwrap();
        assert_eq!(r.iou_per_class, vec![1.0, 1.0, 0.0]);
        assert!(close(r.iou_macro, 2.0 / 3.0));
    }

    #[test]
    fn empty_binary_masks_never_give_nan() {
        let mut acc = MetricsAccumulator::new(MaskMode::Binary, 1.0).unwrap();
        acc.add_image(&[0u16; 9], &[0u16; 9]).unwrap();
        let r = acc.report().unwrap();
        assert_eq!(r.iou_micro, 1.0);
        assert_eq!(r.dice_macro_imagewise, 1.0);
        assert_eq!(r.pixel_accuracy, 1.0);
        assert!(serde_json::to_string(&r)
            .unwrap()
            .contains("\"iou_micro\":1.0"));
    }

    #[test]
    fn binary_mode_treats_instance_labels_as_foreground() {
        let truth = [0u32, 7, 7, 3];
        let pred = [0u32, 1, 0, 1];
        let c = ImageCounts::from_masks(&pred, &truth, MaskMode::Binary).unwrap();
        assert_eq!(c.per_class.len(), 1);
        assert_eq!(c.per_class[0].true_positive, 2);
        assert_eq!(c.per_class[0].false_negative, 1);
        assert_eq!(c.correct_pixels, 3);
    }

    #[test]
    fn bad_masks_are_clear_errors() {
        let mode = MaskMode::Multiclass { num_classes: 2 };
        let e = ImageCounts::from_masks(&[0u8, 1], &[0u8], mode).unwrap_err();
        assert!(e.to_string().contains("same image"), "{e}");
        let e = ImageCounts::from_masks(&[0u8, 2], &[0u8, 1], mode).unwrap_err();
        assert!(e.to_string().contains("outside the class ids"), "{e}");
        let e = ImageCounts::from_masks(&[0i64, -1], &[0i64, 1], MaskMode::Binary).unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
        let acc = MetricsAccumulator::new(mode, 1.0).unwrap();
        assert!(acc.report().is_err());
        assert!(MetricsAccumulator::new(mode, f64::NAN).is_err());
    }

    #[test]
    fn batches_are_split_into_images() {
        let pred = Tensor::from_slice(&[0i64, 1, 1, 1, 0, 0, 0, 0]).view([2, 2, 2]);
        let truth = Tensor::from_slice(&[0i64, 1, 0, 1, 0, 0, 0, 1]).view([2, 2, 2]);
        let mut acc =
            MetricsAccumulator::new(MaskMode::Multiclass { num_classes: 2 }, 1.0).unwrap();
        acc.add_batch(&pred, &truth).unwrap();
        assert_eq!(acc.images().len(), 2);
        let r = acc.report().unwrap();
        assert!(close(r.per_image[0].pixel_accuracy, 0.75));
        assert!(close(r.per_image[1].pixel_accuracy, 0.75));
        assert!(close(r.pixel_accuracy, 0.75));
        let logits = Tensor::zeros([2, 2, 2, 2], (Kind::Float, tch::Device::Cpu));
        assert!(acc.add_batch(&logits, &truth).is_err());
        assert!(acc
            .add_batch(&pred.view([2, 4]), &truth.view([2, 4]))
            .is_err());
    }
}
