//! DEDL's multi-label loss: sigmoid focal loss (Lin et al.) times per-class weights from
//! inverse label frequency, min–max normalised to [0.2, 1]; plain binary cross-entropy as the
//! alternative.
//!
//! Two readings of α exist. Lin et al.'s balanced form weighs positives by α and negatives by
//! 1 − α (torchvision's `sigmoid_focal_loss`); with the paper's α = 1 it would drop every
//! negative label from the loss, so the model would learn to call every label present. The
//! other form (the one common in Kaggle-era PyTorch code such as DEDL's) multiplies the whole
//! term by α, so α = 1 leaves it unweighted. We default to the second and offer the first.
use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlphaMode {
    /// α multiplies every term.
    Scale,
    /// α for positive labels, 1 − α for negative ones (Lin et al., torchvision).
    Balanced,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MultiLabelLoss {
    Focal {
        alpha: f64,
        gamma: f64,
        alpha_mode: AlphaMode,
    },
    Bce,
}

impl Default for MultiLabelLoss {
    /// The paper's α = 1, γ = 2.
    fn default() -> Self {
        Self::Focal {
            alpha: 1.0,
            gamma: 2.0,
            alpha_mode: AlphaMode::Scale,
        }
    }
}

impl MultiLabelLoss {
    pub fn validate(&self) -> Result<()> {
        if let Self::Focal {
            alpha,
            gamma,
            alpha_mode,
        } = self
        {
            ensure!(
                gamma.is_finite() && *gamma >= 0.0,
                "focal loss γ must be ≥ 0, not {gamma}"
            );
            match alpha_mode {
                AlphaMode::Scale => ensure!(
                    alpha.is_finite() && *alpha > 0.0,
                    "focal loss α (scale) must be > 0, not {alpha}"
                ),
                AlphaMode::Balanced => ensure!(
                    (0.0..=1.0).contains(alpha),
                    "focal loss α (balanced) must lie in [0, 1], not {alpha}"
                ),
            }
        }
        Ok(())
    }

    /// Mean over samples and classes of the per-element loss times its class's weight.
    /// `logits` and `targets` are [batch, classes]; `class_weights` is [classes] or absent.
    pub fn forward(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        class_weights: Option<&Tensor>,
    ) -> Tensor {
        let targets = targets.to_kind(logits.kind());
        let bce = logits.binary_cross_entropy_with_logits::<Tensor>(
            &targets,
            None,
            None,
            Reduction::None,
        );
        let per_element = match *self {
            Self::Bce => bce,
            Self::Focal {
                alpha,
                gamma,
                alpha_mode,
            } => {
                let p = logits.sigmoid();
                // p_t: the probability given to the true value of each label.
                let (one_minus_p, negatives) = (-&p + 1.0, -&targets + 1.0);
                let p_t: Tensor = &p * &targets + one_minus_p * &negatives;
                let modulated: Tensor = bce * (-p_t + 1.0).pow_tensor_scalar(gamma);
                match alpha_mode {
                    AlphaMode::Scale => modulated * alpha,
                    AlphaMode::Balanced => {
                        modulated * (&targets * alpha + negatives * (1.0 - alpha))
                    }
                }
            }
        };
        match class_weights {
            Some(w) => (per_element * w.to_kind(logits.kind()).unsqueeze(0)).mean(Kind::Float),
            None => per_element.mean(Kind::Float),
        }
    }
}

/// Per-class weights from the training labels: inverse label frequency, min–max normalised to
/// [`low`, 1] (the paper's [0.2, 1]), so the rarest class weighs 1 and the commonest `low`. Equal
/// frequencies give 1 everywhere. A class no training sample carries is an error: its weight
/// would be infinite and its F1 meaningless.
pub fn class_weights(classes: &[String], labels: &[Vec<bool>], low: f64) -> Result<Vec<f64>> {
    ensure!(
        (0.0..=1.0).contains(&low),
        "the lowest class weight must lie in [0, 1], not {low}"
    );
    ensure!(!labels.is_empty(), "no training samples to count labels in");
    let mut counts = vec![0u64; classes.len()];
    for (i, row) in labels.iter().enumerate() {
        ensure!(
            row.len() == classes.len(),
            "training sample {i} has {} label flags for {} classes",
            row.len(),
            classes.len()
        );
        for (c, &on) in row.iter().enumerate() {
            counts[c] += u64::from(on);
        }
    }
    let absent: Vec<&str> = classes
        .iter()
        .zip(&counts)
        .filter(|(_, &n)| n == 0)
        .map(|(c, _)| c.as_str())
        .collect();
    if !absent.is_empty() {
        bail!(
            "no training sample carries {}: remove the class, or change the folds so that every \
             training part holds at least one",
            absent.join(", ")
        );
    }
    let n = labels.len() as f64;
    let inverse: Vec<f64> = counts.iter().map(|&k| n / k as f64).collect();
    let (min, max) = inverse
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if max - min <= f64::EPSILON * max {
        return Ok(vec![1.0; classes.len()]);
    }
    Ok(inverse
        .iter()
        .map(|&x| low + (1.0 - low) * (x - min) / (max - min))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_zero_scale_one_focal_is_bce_and_easy_examples_fade() {
        let logits = Tensor::from_slice(&[3.0f32, -1.0, 0.5, -4.0]).view([2, 2]);
        let targets = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0]).view([2, 2]);
        let bce = MultiLabelLoss::Bce
            .forward(&logits, &targets, None)
            .double_value(&[]);
        let plain = MultiLabelLoss::Focal {
            alpha: 1.0,
            gamma: 0.0,
            alpha_mode: AlphaMode::Scale,
        };
        let f0 = plain.forward(&logits, &targets, None).double_value(&[]);
        assert!((bce - f0).abs() < 1e-7, "{bce} vs {f0}");
        let f2 = MultiLabelLoss::default()
            .forward(&logits, &targets, None)
            .double_value(&[]);
        assert!(f2 < f0 && f2 > 0.0);
        let w = Tensor::from_slice(&[1.0f32, 0.0]);
        let only_first = MultiLabelLoss::Bce
            .forward(&logits, &targets, Some(&w))
            .double_value(&[]);
        let first: f64 = logits
            .select(1, 0)
            .binary_cross_entropy_with_logits::<Tensor>(
                &targets.select(1, 0),
                None,
                None,
                Reduction::Sum,
            )
            .double_value(&[]);
        assert!((only_first - first / 4.0).abs() < 1e-6);
    }

    #[test]
    fn weights_span_low_to_one_and_absent_classes_are_named() {
        let classes: Vec<String> = ["common", "rare", "mid"].map(String::from).to_vec();
        let labels = vec![
            vec![true, true, true],
            vec![true, false, true],
            vec![true, false, false],
            vec![true, false, false],
        ];
        let w = class_weights(&classes, &labels, 0.2).unwrap();
        // Inverse frequencies 1, 4, 2 → 0.2, 1, 0.2 + 0.8/3.
        assert!((w[0] - 0.2).abs() < 1e-12 && (w[1] - 1.0).abs() < 1e-12);
        assert!((w[2] - (0.2 + 0.8 / 3.0)).abs() < 1e-12, "{w:?}");
        let same = class_weights(
            &classes[..1],
            &labels[..2].iter().map(|r| vec![r[0]]).collect::<Vec<_>>(),
            0.2,
        )
        .unwrap();
        assert_eq!(same, vec![1.0]);
        let missing = vec![vec![true, false, true]];
        let err = class_weights(&classes, &missing, 0.2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rare"), "{err}");
        assert!(MultiLabelLoss::Focal {
            alpha: 1.0,
            gamma: 2.0,
            alpha_mode: AlphaMode::Balanced
        }
        .validate()
        .is_ok());
        assert!(MultiLabelLoss::Focal {
            alpha: 1.0,
            gamma: -1.0,
            alpha_mode: AlphaMode::Scale
        }
        .validate()
        .is_err());
    }
}
