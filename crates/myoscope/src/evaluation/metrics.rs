//! Classification figures computed from predicted probabilities: accuracy and the confusion
//! matrix (rows = true class, columns = predicted class).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub classes: Vec<String>,
    /// counts[true][predicted]
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    pub fn new(classes: &[String], truth: &[usize], predicted: &[usize]) -> Self {
        let k = classes.len();
        let mut counts = vec![vec![0; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            counts[t][p] += 1;
        }
        Self {
            classes: classes.to_vec(),
            counts,
        }
    }

    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: usize = (0..self.classes.len()).map(|i| self.counts[i][i]).sum();
        correct as f64 / self.total().max(1) as f64
    }

    /// Recall per class (sensitivity); NaN where a class has no examples.
    pub fn recall(&self) -> Vec<f64> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, row)| row[i] as f64 / row.iter().sum::<usize>() as f64)
            .collect()
    }
}

/// Index of the largest probability in each row.
pub fn argmax_rows(probabilities: &[Vec<f64>]) -> Vec<usize> {
    probabilities
        .iter()
        .map(|p| {
            p.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accuracy_and_recall() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let cm = ConfusionMatrix::new(&classes, &[0, 0, 1, 1, 1], &[0, 1, 1, 1, 0]);
        assert_eq!(cm.counts, vec![vec![1, 1], vec![1, 2]]);
        assert!((cm.accuracy() - 0.6).abs() < 1e-12);
        assert_eq!(cm.recall(), vec![0.5, 2.0 / 3.0]);
        assert_eq!(argmax_rows(&[vec![0.2, 0.8], vec![0.9, 0.1]]), vec![1, 0]);
    }
}
