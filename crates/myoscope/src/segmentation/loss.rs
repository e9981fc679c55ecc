//! Segmentation losses on logits N×C×H×W against integer masks N×H×W: the paper's weighted
//! cross-entropy, soft Dice, and their sum.
//!
//! Class weights. The paper states the weights three times without a formula: "cross-entropy loss
//! with component normalized weights" (§4.2), "normalized weights of blank pixels and pixels that
//! aren't blank (i.e., hold some information)" (§5.1) and "cross-entropy loss with dark/light pixel
//! normalization" (§7.5). It names what is counted (blank vs non-blank pixels of the training
//! masks) and that the weights are normalised, not the direction. We take the direction that makes
//! a weighting worth having, inverse frequency: the rare class (nuclei) weighs more, so
//! `w_c = (1 / n_c) / Σ_k (1 / n_k)`, which sums to 1. With two classes this is
//! `w_blank = n_nonblank / N` and `w_nonblank = n_blank / N`: each class gets the other's share.
//!
//! Reduction: the weighted mean `Σ w_{y_i} · (−log p_i[y_i]) / Σ w_{y_i}`, libtorch's
//! `cross_entropy(weight=…, reduction='mean')`, so weights that sum to 1 or to 7 train alike.
use crate::segmentation::metrics::ClassLabel;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Per-class cross-entropy weights, normalised to sum 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassWeights {
    weights: Vec<f64>,
}

impl ClassWeights {
    /// Inverse-frequency weights from the number of training pixels of each class (class id =
    /// position), normalised to sum 1.
    pub fn from_pixel_counts(counts: &[u64]) -> Result<Self> {
        ensure!(
            counts.len() >= 2,
            "class weights need the pixel counts of at least two classes, got {}",
            counts.len()
        );
        if let Some(empty) = counts.iter().position(|&n| n == 0) {
            bail!(
                "class {empty} has no pixels in the training masks, so it has no frequency to \
                 weight by: check the masks (are they all blank?), lower num_classes, or give \
                 explicit weights (pixel counts per class: {counts:?})"
            );
        }
        let inverse: Vec<f64> = counts.iter().map(|&n| 1.0 / n as f64).collect();
        let total: f64 = inverse.iter().sum();
        Ok(Self {
            weights: inverse.iter().map(|w| w / total).collect(),
        })
    }

    /// The paper's weights: blank (class 0) against non-blank (any other value) pixels over every
    /// training mask. Two classes; instance label masks can be given as they are.
    pub fn blank_vs_nonblank<'a, T: ClassLabel + 'a>(
        masks: impl IntoIterator<Item = &'a [T]>,
    ) -> Result<Self> {
        let mut counts = [0u64; 2];
        for (i, mask) in masks.into_iter().enumerate() {
            for &v in mask {
                match v.class_index() {
                    Some(0) => counts[0] += 1,
                    Some(_) => counts[1] += 1,
                    None => bail!("training mask {i} holds {v}, a negative label"),
                }
            }
        }
        Self::from_pixel_counts(&counts)
            .context("computing blank / non-blank weights from the training masks")
    }

    /// Inverse-frequency weights over `num_classes` class ids.
    pub fn from_masks<'a, T: ClassLabel + 'a>(
        masks: impl IntoIterator<Item = &'a [T]>,
        num_classes: usize,
    ) -> Result<Self> {
        let mut counts = vec![0u64; num_classes];
        for (i, mask) in masks.into_iter().enumerate() {
            for &v in mask {
                match v.class_index() {
                    Some(c) if c < num_classes => counts[c] += 1,
                    _ => {
                        bail!("training mask {i} holds {v}, outside the class ids 0..{num_classes}")
                    }
                }
            }
        }
        Self::from_pixel_counts(&counts)
    }

    /// Explicit weights (for example from a saved run), normalised to sum 1.
    pub fn from_weights(weights: &[f64]) -> Result<Self> {
        ensure!(
            weights.len() >= 2 && weights.iter().all(|w| w.is_finite() && *w >= 0.0),
            "class weights must be at least two finite, non-negative numbers, got {weights:?}"
        );
        let total: f64 = weights.iter().sum();
        ensure!(total > 0.0, "class weights are all zero");
        Ok(Self {
            weights: weights.iter().map(|w| w / total).collect(),
        })
    }

    pub fn uniform(num_classes: usize) -> Result<Self> {
        Self::from_weights(&vec![1.0; num_classes])
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.weights
    }

    pub fn num_classes(&self) -> usize {
        self.weights.len()
    }

    pub fn to_tensor(&self, kind: Kind, device: Device) -> Tensor {
        Tensor::from_slice(&self.weights)
            .to_kind(kind)
            .to_device(device)
    }
}

/// Checks logits N×C×H×W (floating point) and masks N×H×W (integer ids below C); returns the
/// masks as Int64 and C.
fn checked(logits: &Tensor, masks: &Tensor) -> Result<(Tensor, i64)> {
    let ls = logits.size();
    let ms = masks.size();
    ensure!(
        ls.len() == 4,
        "segmentation logits must be N×C×H×W, got shape {ls:?}"
    );
    ensure!(
        matches!(
            logits.kind(),
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        ),
        "segmentation logits must be floating point, got {:?}",
        logits.kind()
    );
    ensure!(
        ms.len() == 3 && ms[0] == ls[0] && ms[1] == ls[2] && ms[2] == ls[3],
        "masks must be N×H×W matching logits {ls:?}, got {ms:?}: the mask and the image must \
         have the same size"
    );
    ensure!(
        !matches!(
            masks.kind(),
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 | Kind::Bool
        ),
        "masks must hold integer class ids, got {:?}",
        masks.kind()
    );
    let classes = ls[1];
    ensure!(
        classes >= 2,
        "segmentation needs at least 2 classes, got {classes}"
    );
    let masks = masks.to_kind(Kind::Int64);
    if masks.numel() > 0 {
        let (lo, hi) = (masks.min().int64_value(&[]), masks.max().int64_value(&[]));
        ensure!(
            lo >= 0 && hi < classes,
            "mask values run from {lo} to {hi}, outside the class ids 0..{classes}: convert \
             instance labels to classes, or raise the number of classes"
        );
    }
    Ok((masks, classes))
}

/// Class-weighted cross-entropy, the weighted mean over pixels (see the module documentation).
pub fn weighted_cross_entropy(
    logits: &Tensor,
    masks: &Tensor,
    weights: &ClassWeights,
) -> Result<Tensor> {
    let (masks, classes) = checked(logits, masks)?;
    ensure!(
        weights.num_classes() as i64 == classes,
        "there are {} class weights but the logits have {classes} classes",
        weights.num_classes()
    );
    let log_p = logits.log_softmax(1, logits.kind());
    let nll = -log_p.gather(1, &masks.unsqueeze(1), false).squeeze_dim(1);
    let w = weights
        .to_tensor(logits.kind(), logits.device())
        .index_select(0, &masks.flatten(0, -1))
        .view_as(&masks);
    Ok((&w * nll).sum(logits.kind()) / w.sum(logits.kind()))
}

/// Soft Dice loss: `1 − mean_c (2 Σ p_c g_c + s) / (Σ p_c + Σ g_c + s)`, with `p` the softmax
/// probabilities, `g` the one-hot truth, sums over the whole batch, and `s` a smoothing term.
/// With `s > 0` a class absent from the truth scores ≈1 once its predicted probability vanishes,
/// and ≈0 while it is predicted, so absent classes are pushed down rather than ignored.
pub fn soft_dice_loss(logits: &Tensor, masks: &Tensor, smooth: f64) -> Result<Tensor> {
    ensure!(
        smooth.is_finite() && smooth >= 0.0,
        "the Dice smoothing term must be finite and non-negative, got {smooth}"
    );
    let (masks, classes) = checked(logits, masks)?;
    let probs = logits.softmax(1, logits.kind());
    let truth = masks
        .one_hot(classes)
        .permute([0, 3, 1, 2])
        .to_kind(logits.kind());
    let dims: &[i64] = &[0, 2, 3];
    let overlap = (&probs * &truth).sum_dim_intlist(dims, false, logits.kind());
    let size = probs.sum_dim_intlist(dims, false, logits.kind())
        + truth.sum_dim_intlist(dims, false, logits.kind());
    let dice = (overlap * 2.0 + smooth) / (size + smooth).clamp_min(1e-12);
    Ok(1.0 - dice.mean(logits.kind()))
}

/// Which loss trains the segmentation network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SegmentationLoss {
    /// The paper's loss.
    WeightedCrossEntropy {
        weights: ClassWeights,
    },
    SoftDice {
        smooth: f64,
    },
    /// `CE + dice_weight · Dice`.
    CrossEntropyDice {
        weights: ClassWeights,
        smooth: f64,
        dice_weight: f64,
    },
}

impl SegmentationLoss {
    pub fn loss(&self, logits: &Tensor, masks: &Tensor) -> Result<Tensor> {
        match self {
            SegmentationLoss::WeightedCrossEntropy { weights } => {
                weighted_cross_entropy(logits, masks, weights)
            }
            SegmentationLoss::SoftDice { smooth } => soft_dice_loss(logits, masks, *smooth),
            SegmentationLoss::CrossEntropyDice {
                weights,
                smooth,
                dice_weight,
            } => {
                ensure!(
                    dice_weight.is_finite() && *dice_weight >= 0.0,
                    "the Dice weight must be finite and non-negative, got {dice_weight}"
                );
                let ce = weighted_cross_entropy(logits, masks, weights)?;
                Ok(ce + soft_dice_loss(logits, masks, *smooth)? * *dice_weight)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Reduction;

    fn cpu() -> (Kind, Device) {
        (Kind::Double, Device::Cpu)
    }

    #[test]
    fn weights_are_inverse_frequencies_summing_to_one() {
        let w = ClassWeights::from_pixel_counts(&[900, 100]).unwrap();
        assert!((w.as_slice()[0] - 0.1).abs() < 1e-15 && (w.as_slice()[1] - 0.9).abs() < 1e-15);
        let w = ClassWeights::from_pixel_counts(&[1, 2, 4]).unwrap();
        // 1 : 1/2 : 1/4 over 7/4.
        let expect = [4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0];
        for (a, b) in w.as_slice().iter().zip(expect) {
            assert!((a - b).abs() < 1e-15);
        }
        let masks: Vec<Vec<u16>> = vec![vec![0, 0, 0, 5], vec![0, 0, 3, 0]];
        let w = ClassWeights::blank_vs_nonblank(masks.iter().map(|m| m.as_slice())).unwrap();
        assert_eq!(w.as_slice(), &[0.25, 0.75]);
    }

    #[test]
    fn a_class_without_pixels_is_a_clear_error() {
        let e = ClassWeights::from_pixel_counts(&[10, 0]).unwrap_err();
        assert!(e.to_string().contains("class 1 has no pixels"), "{e}");
        let blank = [vec![0u8; 16]];
        let e = ClassWeights::blank_vs_nonblank(blank.iter().map(|m| m.as_slice())).unwrap_err();
        assert!(format!("{e:#}").contains("all blank"), "{e:#}");
        assert!(ClassWeights::from_pixel_counts(&[3]).is_err());
        let bad = [vec![0u8, 4]];
        assert!(ClassWeights::from_masks(bad.iter().map(|m| m.as_slice()), 3).is_err());
    }

    #[test]
    fn weighted_cross_entropy_by_hand() {
        // One row of two pixels, N×C×H×W = 1×2×1×2. Channel 0 holds (0, ln 3), channel 1
        // (ln 3, 0), so pixel x=0 has p = (1/4, 3/4) and pixel x=1 has p = (3/4, 1/4).
        let l3 = 3f64.ln();
        let logits = Tensor::from_slice(&[0.0, l3, l3, 0.0]).view([1, 2, 1, 2]);
        let w = ClassWeights::from_weights(&[0.2, 0.8]).unwrap();
        // Both right (truth 1, 0): −ln(3/4) at weights 0.8 and 0.2, weighted mean −ln(3/4).
        let masks = Tensor::from_slice(&[1i64, 0]).view([1, 1, 2]);
        let got = weighted_cross_entropy(&logits, &masks, &w)
            .unwrap()
            .double_value(&[]);
        assert!((got + 0.75f64.ln()).abs() < 1e-12, "{got}");
        // Both wrong: −ln(1/4) each.
        let masks = Tensor::from_slice(&[0i64, 1]).view([1, 1, 2]);
        let got = weighted_cross_entropy(&logits, &masks, &w)
            .unwrap()
            .double_value(&[]);
        assert!((got - 4f64.ln()).abs() < 1e-12, "{got}");
        // Both truth 1: (0.8·(−ln 3/4) + 0.8·(−ln 1/4)) / 1.6, the weights cancel.
        let masks = Tensor::from_slice(&[1i64, 1]).view([1, 1, 2]);
        let got = weighted_cross_entropy(&logits, &masks, &w)
            .unwrap()
            .double_value(&[]);
        let expect = (-(0.75f64).ln() - 0.25f64.ln()) / 2.0;
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
        // Three pixels with different classes, so the weights matter.
        let logits3 = Tensor::from_slice(&[0.0, l3, 0.0, l3, 0.0, 0.0]).view([1, 2, 1, 3]);
        // x=0: p = (1/4, 3/4); x=1: p = (3/4, 1/4); x=2: p = (1/2, 1/2).
        let masks = Tensor::from_slice(&[1i64, 1, 0]).view([1, 1, 3]);
        let got = weighted_cross_entropy(&logits3, &masks, &w)
            .unwrap()
            .double_value(&[]);
        let expect =
            (0.8 * -(0.75f64).ln() + 0.8 * -(0.25f64).ln() + 0.2 * 2f64.ln()) / (0.8 + 0.8 + 0.2);
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
    }

    #[test]
    fn weighted_cross_entropy_equals_libtorch() {
        tch::manual_seed(7);
        let logits = Tensor::randn([2, 3, 4, 5], cpu()) * 2.0;
        let masks = Tensor::randint(3, [2, 4, 5], (Kind::Int64, Device::Cpu));
        let w = ClassWeights::from_pixel_counts(&[70, 20, 10]).unwrap();
        let ours = weighted_cross_entropy(&logits, &masks, &w).unwrap();
        let theirs = logits.cross_entropy_loss::<Tensor>(
            &masks,
            Some(w.to_tensor(Kind::Double, Device::Cpu)),
            Reduction::Mean,
            -100,
            0.0,
        );
        let d = (ours.double_value(&[]) - theirs.double_value(&[])).abs();
        assert!(d < 1e-12, "ours {ours} vs libtorch {theirs}");
        // Gradients too.
        let a = logits.set_requires_grad(true);
        let g_ours = tch::Tensor::run_backward(
            &[weighted_cross_entropy(&a, &masks, &w).unwrap()],
            &[&a],
            false,
            false,
        );
        let g_torch = tch::Tensor::run_backward(
            &[a.cross_entropy_loss::<Tensor>(
                &masks,
                Some(w.to_tensor(Kind::Double, Device::Cpu)),
                Reduction::Mean,
                -100,
                0.0,
            )],
            &[&a],
            false,
            false,
        );
        let gd = (&g_ours[0] - &g_torch[0]).abs().max().double_value(&[]);
        assert!(gd < 1e-12, "gradient difference {gd}");
    }

    #[test]
    fn soft_dice_by_hand() {
        // One image, two pixels, two classes, logits equal → p = 1/2 everywhere.
        let logits = Tensor::zeros([1, 2, 1, 2], cpu());
        let masks = Tensor::from_slice(&[0i64, 1]).view([1, 1, 2]);
        // Each class: overlap 1/2, size 1 + 1 = 2 → dice (1 + s) / (2 + s).
        let got = soft_dice_loss(&logits, &masks, 0.0)
            .unwrap()
            .double_value(&[]);
        assert!((got - 0.5).abs() < 1e-12, "{got}");
        let got = soft_dice_loss(&logits, &masks, 1.0)
            .unwrap()
            .double_value(&[]);
        assert!((got - (1.0 - 2.0 / 3.0)).abs() < 1e-12, "{got}");
        // A confident, right prediction has a loss near 0.
        let sure = Tensor::from_slice(&[20.0, -20.0, -20.0, 20.0]).view([1, 2, 1, 2]);
        let got = soft_dice_loss(&sure, &masks, 1.0)
            .unwrap()
            .double_value(&[]);
        assert!(got < 1e-6, "{got}");
        let combined = SegmentationLoss::CrossEntropyDice {
            weights: ClassWeights::uniform(2).unwrap(),
            smooth: 0.0,
            dice_weight: 2.0,
        }
        .loss(&logits, &masks)
        .unwrap()
        .double_value(&[]);
        assert!((combined - (2f64.ln() + 1.0)).abs() < 1e-12, "{combined}");
    }

    #[test]
    fn bad_shapes_and_labels_are_errors_not_panics() {
        let w = ClassWeights::uniform(2).unwrap();
        let logits = Tensor::zeros([1, 2, 3, 3], cpu());
        let wrong_size = Tensor::zeros([1, 3, 4], (Kind::Int64, Device::Cpu));
        let e = weighted_cross_entropy(&logits, &wrong_size, &w).unwrap_err();
        assert!(e.to_string().contains("same size"), "{e}");
        let too_big = Tensor::full([1, 3, 3], 2, (Kind::Int64, Device::Cpu));
        let e = weighted_cross_entropy(&logits, &too_big, &w).unwrap_err();
        assert!(e.to_string().contains("outside the class ids"), "{e}");
        let three = ClassWeights::uniform(3).unwrap();
        let ok = Tensor::zeros([1, 3, 3], (Kind::Int64, Device::Cpu));
        assert!(weighted_cross_entropy(&logits, &ok, &three).is_err());
        assert!(soft_dice_loss(&logits.view([2, 3, 3]), &ok, 1.0).is_err());
        assert!(soft_dice_loss(&logits, &ok.to_kind(Kind::Float), 1.0).is_err());
        assert!(soft_dice_loss(&logits, &ok, f64::NAN).is_err());
    }
}
