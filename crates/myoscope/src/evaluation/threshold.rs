//! Binary decisions at a threshold on the positive probability, and the sensitivity-first
//! threshold: Kabeya et al. lowered theirs to 0.3 so that no myositis slide was missed.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BinaryCounts {
    pub tp: usize,
    pub tn: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

impl BinaryCounts {
    /// Sums counts (the paper sums TP/TN/FP/FN over the folds).
    pub fn add(&mut self, other: &BinaryCounts) {
        self.tp += other.tp;
        self.tn += other.tn;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }
    pub fn total(&self) -> usize {
        self.tp + self.tn + self.fp + self.fn_
    }
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
}

/// Counts with an item called positive when its score is ≥ `threshold` (scikit-learn's rule).
/// Items are paired up to the shorter slice; a NaN score is never ≥ anything, so it is called
/// negative.
pub fn counts_at(truth: &[bool], scores: &[f64], threshold: f64) -> BinaryCounts {
    let mut c = BinaryCounts::default();
    for (&t, &s) in truth.iter().zip(scores) {
        match (t, s >= threshold) {
            (true, true) => c.tp += 1,
            (true, false) => c.fn_ += 1,
            (false, true) => c.fp += 1,
            (false, false) => c.tn += 1,
        }
    }
    c
}

/// The highest threshold that still calls every positive positive: the lowest positive score.
/// `None` when there are no positives.
pub fn sensitivity_first_threshold(truth: &[bool], scores: &[f64]) -> Option<f64> {
    truth
        .iter()
        .zip(scores)
        .filter(|(&t, _)| t)
        .map(|(_, &s)| s)
        .min_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sensitivity_first_threshold_misses_no_positive() {
        let truth = [true, false, true, false, true];
        let scores = [0.9, 0.35, 0.31, 0.2, 0.6];
        let t = sensitivity_first_threshold(&truth, &scores).unwrap();
        assert_eq!(t, 0.31);
        let c = counts_at(&truth, &scores, t);
        assert_eq!(
            c,
            BinaryCounts {
                tp: 3,
                tn: 1,
                fp: 1,
                fn_: 0
            }
        );
        assert_eq!(c.sensitivity(), 1.0);
        let half = counts_at(&truth, &scores, 0.5);
        assert_eq!((half.tp, half.fn_), (2, 1));
        assert_eq!(sensitivity_first_threshold(&[false], &[0.4]), None);
        assert!(BinaryCounts::default().accuracy().is_nan());
    }
}
