//! Multi-label scores: per-class precision, recall and F1, their micro, macro and
//! support-weighted averages, sample-averaged F1 and exact-match accuracy, with scikit-learn's
//! definitions (`precision_recall_fscore_support`, `f1_score`, `accuracy_score`).
//!
//! Recall is reported under its own name: the public DEDL code returned recall and called it
//! "F1". A ratio whose denominator is zero (no predicted positives for precision, no true
//! positives in the data for recall) counts as 0, as scikit-learn's default does, and is listed
//! in `undefined` so that a report never shows such a 0 without saying why.
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// True and false positives and negatives per class, over samples.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelCounts {
    classes: Vec<String>,
    tp: Vec<u64>,
    fp: Vec<u64>,
    fn_: Vec<u64>,
    samples: u64,
    exact_matches: u64,
    /// Σ over samples of that sample's F1 (for the sample average), and the samples whose F1
    /// was undefined (no true and no predicted labels).
    sample_f1_sum: f64,
    empty_samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Samples that carry this label in the truth.
    pub support: u64,
    pub predicted: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelReport {
    pub samples: u64,
    pub per_class: Vec<ClassScore>,
    /// Pooled counts over all classes.
    pub micro: Averages,
    /// Unweighted mean over classes.
    pub macro_average: Averages,
    /// Mean over classes weighted by support.
    pub weighted: Averages,
    /// Mean over samples of each sample's F1 (sklearn `average="samples"`).
    pub samples_f1: f64,
    /// Share of samples whose predicted label set equals the true one.
    pub exact_match_accuracy: f64,
    /// Ratios that had a zero denominator and were counted as 0, in words.
    pub undefined: Vec<String>,
}

impl LabelCounts {
    pub fn new(classes: &[String]) -> Result<Self> {
        ensure!(
            !classes.is_empty(),
            "a multi-label task needs at least one class"
        );
        let k = classes.len();
        Ok(Self {
            classes: classes.to_vec(),
            tp: vec![0; k],
            fp: vec![0; k],
            fn_: vec![0; k],
            samples: 0,
            exact_matches: 0,
            sample_f1_sum: 0.0,
            empty_samples: 0,
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// One sample's true and predicted label sets, as one flag per class.
    pub fn add(&mut self, truth: &[bool], predicted: &[bool]) -> Result<()> {
        let k = self.classes.len();
        ensure!(
            truth.len() == k && predicted.len() == k,
            "a sample has {} true and {} predicted flags for {k} classes",
            truth.len(),
            predicted.len()
        );
        let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
        for c in 0..k {
            match (truth[c], predicted[c]) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fn_ += 1,
                (false, false) => {}
            }
            self.tp[c] += u64::from(truth[c] && predicted[c]);
            self.fp[c] += u64::from(!truth[c] && predicted[c]);
            self.fn_[c] += u64::from(truth[c] && !predicted[c]);
        }
        self.samples += 1;
        self.exact_matches += u64::from(fp == 0 && fn_ == 0);
        if tp + fp + fn_ == 0 {
            self.empty_samples += 1;
        } else {
            self.sample_f1_sum += 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64;
        }
        Ok(())
    }

    /// Adds every sample of `probabilities` (samples × classes, row-major) thresholded per
    /// class: a label is predicted when its probability exceeds the class's threshold.
    pub fn add_thresholded(
        &mut self,
        truth: &[Vec<bool>],
        probabilities: &[Vec<f64>],
        thresholds: &[f64],
    ) -> Result<()> {
        ensure!(
            truth.len() == probabilities.len(),
            "{} true label rows but {} probability rows",
            truth.len(),
            probabilities.len()
        );
        ensure!(
            thresholds.len() == self.classes.len(),
            "{} thresholds for {} classes",
            thresholds.len(),
            self.classes.len()
        );
        for (t, p) in truth.iter().zip(probabilities) {
            ensure!(
                p.len() == thresholds.len(),
                "a probability row has {} values for {} classes",
                p.len(),
                thresholds.len()
            );
            let predicted: Vec<bool> = p.iter().zip(thresholds).map(|(p, t)| p > t).collect();
            self.add(t, &predicted)?;
        }
        Ok(())
    }

    pub fn report(&self) -> MultiLabelReport {
        let mut undefined = Vec::new();
        let mut per_class = Vec::with_capacity(self.classes.len());
        for (c, class) in self.classes.iter().enumerate() {
            let (tp, fp, fn_) = (self.tp[c], self.fp[c], self.fn_[c]);
            let precision = ratio(tp, tp + fp).unwrap_or_else(|| {
                undefined.push(format!(
                    "precision of {class}: no sample was predicted to carry it"
                ));
                0.0
            });
            let recall = ratio(tp, tp + fn_).unwrap_or_else(|| {
                undefined.push(format!("recall of {class}: no sample carries it"));
                0.0
            });
            let f1 = ratio(2 * tp, 2 * tp + fp + fn_).unwrap_or_else(|| {
                undefined.push(format!(
                    "F1 of {class}: neither carried nor predicted by any sample"
                ));
                0.0
            });
            per_class.push(ClassScore {
                class: class.clone(),
                precision,
                recall,
                f1,
                support: tp + fn_,
                predicted: tp + fp,
            });
        }
        let (tp, fp, fn_) = (
            self.tp.iter().sum::<u64>(),
            self.fp.iter().sum::<u64>(),
            self.fn_.iter().sum::<u64>(),
        );
        let micro = Averages {
            precision: ratio(tp, tp + fp).unwrap_or(0.0),
            recall: ratio(tp, tp + fn_).unwrap_or(0.0),
            f1: ratio(2 * tp, 2 * tp + fp + fn_).unwrap_or(0.0),
        };
        let k = per_class.len() as f64;
        let macro_average = Averages {
            precision: per_class.iter().map(|s| s.precision).sum::<f64>() / k,
            recall: per_class.iter().map(|s| s.recall).sum::<f64>() / k,
            f1: per_class.iter().map(|s| s.f1).sum::<f64>() / k,
        };
        let total_support: u64 = per_class.iter().map(|s| s.support).sum();
        let weighted = if total_support == 0 {
            undefined.push("support-weighted averages: no sample carries any label".into());
            Averages {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
            }
        } else {
            let w = |f: fn(&ClassScore) -> f64| {
                per_class
                    .iter()
                    .map(|s| f(s) * s.support as f64)
                    .sum::<f64>()
                    / total_support as f64
            };
            Averages {
                precision: w(|s| s.precision),
                recall: w(|s| s.recall),
                f1: w(|s| s.f1),
            }
        };
        if self.empty_samples > 0 {
            undefined.push(format!(
                "F1 of {} sample(s) with no true and no predicted label, counted as 0 in the sample average",
                self.empty_samples
            ));
        }
        let n = self.samples.max(1) as f64;
        MultiLabelReport {
            samples: self.samples,
            per_class,
            micro,
            macro_average,
            weighted,
            samples_f1: self.sample_f1_sum / n,
            exact_match_accuracy: self.exact_matches as f64 / n,
            undefined,
        }
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Per class, the threshold on validation probabilities that maximises that class's F1: the
/// midpoint below the best-scoring distinct probability (so "p > t" predicts it), 0.5 when the
/// class has no positive sample to tune on. Ties keep the threshold closest to 0.5.
pub fn tune_thresholds(truth: &[Vec<bool>], probabilities: &[Vec<f64>]) -> Result<Vec<f64>> {
    ensure!(
        !truth.is_empty() && truth.len() == probabilities.len(),
        "threshold tuning needs as many probability rows as label rows, and at least one ({} vs {})",
        probabilities.len(),
        truth.len()
    );
    let k = truth[0].len();
    ensure!(
        truth.iter().all(|t| t.len() == k) && probabilities.iter().all(|p| p.len() == k),
        "every row must have {k} values"
    );
    let mut thresholds = Vec::with_capacity(k);
    for c in 0..k {
        let mut pairs: Vec<(f64, bool)> = probabilities
            .iter()
            .zip(truth)
            .map(|(p, t)| (p[c], t[c]))
            .collect();
        ensure!(
            pairs.iter().all(|(p, _)| p.is_finite()),
            "probabilities of class {c} contain NaN or infinity"
        );
        let positives = pairs.iter().filter(|(_, t)| *t).count() as u64;
        if positives == 0 {
            thresholds.push(0.5);
            continue;
        }
        // Descending: predicting the first i samples as positive is "p > t" for t just below
        // the i-th distinct probability.
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut best_f1, mut best_t) = (-1.0f64, 0.5f64);
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut i = 0;
        while i < pairs.len() {
            let value = pairs[i].0;
            while i < pairs.len() && pairs[i].0 == value {
                if pairs[i].1 {
                    tp += 1;
                } else {
                    fp += 1;
                }
                i += 1;
            }
            let next = pairs.get(i).map_or(value.min(0.0) - 1e-6, |p| p.0);
            let t = 0.5 * (value + next);
            let f1 = 2.0 * tp as f64 / (tp + fp + positives) as f64;
            let better = f1 > best_f1 + 1e-12
                || ((f1 - best_f1).abs() <= 1e-12 && (t - 0.5).abs() < (best_t - 0.5).abs());
            if better {
                best_f1 = f1;
                best_t = t;
            }
        }
        thresholds.push(best_t);
    }
    Ok(thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn counts_give_textbook_scores_and_name_what_is_undefined() {
        let mut c = LabelCounts::new(&names(3)).unwrap();
        c.add(&[true, false, false], &[true, true, false]).unwrap();
        c.add(&[true, false, false], &[false, false, false])
            .unwrap();
        c.add(&[false, false, false], &[false, false, false])
            .unwrap();
        let r = c.report();
        // c0: tp 1, fn 1 → P 1, R 0.5, F1 2/3; c1: fp 1 → 0; c2 undefined everywhere.
        assert_eq!(r.per_class[0].precision, 1.0);
        assert_eq!(r.per_class[0].recall, 0.5);
        assert!((r.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.per_class[1].f1, 0.0);
        assert!((r.micro.f1 - 2.0 / 4.0).abs() < 1e-12);
        assert!((r.macro_average.f1 - 2.0 / 9.0).abs() < 1e-12);
        assert!((r.exact_match_accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!(r.undefined.iter().any(|u| u.contains("recall of c1")));
        assert!(r.undefined.iter().any(|u| u.contains("F1 of c2")));
        assert!(r.undefined.iter().any(|u| u.contains("1 sample(s)")));
        assert!(c.add(&[true], &[true]).is_err());
    }

    #[test]
    fn tuned_threshold_separates_a_separable_class() {
        let truth = vec![vec![true], vec![true], vec![false], vec![false]];
        let probs = vec![vec![0.3], vec![0.25], vec![0.2], vec![0.1]];
        let t = tune_thresholds(&truth, &probs).unwrap();
        assert!(t[0] > 0.2 && t[0] < 0.25, "{t:?}");
        let mut c = LabelCounts::new(&names(1)).unwrap();
        c.add_thresholded(&truth, &probs, &t).unwrap();
        assert_eq!(c.report().per_class[0].f1, 1.0);
        let none = tune_thresholds(&[vec![false]], &[vec![0.9]]).unwrap();
        assert_eq!(none, vec![0.5]);
        assert!(tune_thresholds(&[vec![true]], &[vec![f64::NAN]]).is_err());
    }
}
