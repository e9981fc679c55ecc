//! ROC curves and AUC exactly as scikit-learn computes them (`roc_curve` with
//! `drop_intermediate=True`, `roc_auc_score`), so our figures can be checked against the
//! field's reference; and a bootstrap interval that resamples slides, not photos, because
//! photos of one slide are not independent.
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    /// Decreasing; the first is +∞ (nothing called positive). JSON has no infinity, so it is
    /// written as null.
    #[serde(with = "infinite_as_null")]
    pub thresholds: Vec<f64>,
}

mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|x| x.is_finite().then_some(*x))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v: Vec<Option<f64>> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f64::INFINITY)).collect())
    }
}

impl RocCurve {
    /// Area under the curve by the trapezoid rule (sklearn.metrics.auc).
    pub fn auc(&self) -> f64 {
        self.fpr
            .windows(2)
            .zip(self.tpr.windows(2))
            .map(|(x, y)| (x[1] - x[0]) * (y[1] + y[0]) / 2.0)
            .sum()
    }
}

fn check(truth: &[bool], scores: &[f64]) -> Result<()> {
    if truth.len() != scores.len() {
        bail!("ROC: {} truths but {} scores", truth.len(), scores.len());
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        bail!("ROC: score {i} is {} (not a number)", scores[i]);
    }
    Ok(())
}

/// Cumulative false and true positives at each distinct score, highest score first.
fn cumulative_counts(truth: &[bool], scores: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut fps, mut tps, mut thr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fp, mut tp) = (0.0, 0.0);
    for (pos, &i) in order.iter().enumerate() {
        if truth[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_value = order
            .get(pos + 1)
            .is_none_or(|&next| scores[next] != scores[i]);
        if last_of_value {
            fps.push(fp);
            tps.push(tp);
            thr.push(scores[i]);
        }
    }
    (fps, tps, thr)
}

/// sklearn's `roc_curve(y, s)` (drop_intermediate=True). `Ok(None)` when only one class is
/// present, where the curve is undefined.
pub fn roc_curve(truth: &[bool], scores: &[f64]) -> Result<Option<RocCurve>> {
    check(truth, scores)?;
    let positives = truth.iter().filter(|&&t| t).count();
    if positives == 0 || positives == truth.len() {
        return Ok(None);
    }
    let (fps, tps, thr) = cumulative_counts(truth, scores);
    // Keep the ends and every point where the curve bends (non-zero second difference).
    let n = fps.len();
    let keep: Vec<usize> = (0..n)
        .filter(|&i| {
            i == 0
                || i == n - 1
                || (fps[i + 1] - 2.0 * fps[i] + fps[i - 1]) != 0.0
                || (tps[i + 1] - 2.0 * tps[i] + tps[i - 1]) != 0.0
        })
        .collect();
    let (p, f) = (*tps.last().unwrap_or(&1.0), *fps.last().unwrap_or(&1.0));
    let mut curve = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    for i in keep {
        curve.fpr.push(fps[i] / f);
        curve.tpr.push(tps[i] / p);
        curve.thresholds.push(thr[i]);
    }
    Ok(Some(curve))
}

/// `roc_auc_score` for a binary truth; `None` when only one class is present.
pub fn roc_auc(truth: &[bool], scores: &[f64]) -> Result<Option<f64>> {
    Ok(roc_curve(truth, scores)?.map(|c| c.auc()))
}

/// Macro one-vs-rest AUC (sklearn's `multi_class="ovr", average="macro"`) and the AUC of each
/// class; classes absent from the truth have `None` and are left out of the mean.
pub fn one_vs_rest_auc(
    truth: &[usize],
    probabilities: &[Vec<f64>],
    classes: usize,
) -> Result<(Option<f64>, Vec<Option<f64>>)> {
    if truth.len() != probabilities.len() {
        bail!(
            "AUC: {} truths but {} probability rows",
            truth.len(),
            probabilities.len()
        );
    }
    if let Some(r) = probabilities.iter().position(|r| r.len() != classes) {
        bail!(
            "AUC: probability row {r} has {} values for {classes} classes",
            probabilities[r].len()
        );
    }
    let per_class = (0..classes)
        .map(|c| {
            let t: Vec<bool> = truth.iter().map(|&y| y == c).collect();
            let s: Vec<f64> = probabilities.iter().map(|r| r[c]).collect();
            roc_auc(&t, &s)
        })
        .collect::<Result<Vec<_>>>()?;
    let defined: Vec<f64> = per_class.iter().flatten().copied().collect();
    let macro_auc =
        (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
    Ok((macro_auc, per_class))
}

/// Percentile bootstrap interval of the AUC: each replicate draws as many clusters (slides)
/// as there are, with replacement, and takes all their items. Replicates with a single class
/// are redrawn (up to 10× the requested number of tries).
pub fn bootstrap_auc_ci(
    truth: &[bool],
    scores: &[f64],
    clusters: &[usize],
    replicates: usize,
    confidence: f64,
    seed: u64,
) -> Result<Option<(f64, f64)>> {
    check(truth, scores)?;
    if clusters.len() != truth.len() {
        bail!(
            "bootstrap: {} cluster ids for {} items",
            clusters.len(),
            truth.len()
        );
    }
    if replicates == 0 || roc_auc(truth, scores)?.is_none() {
        return Ok(None);
    }
    let n_clusters = clusters.iter().max().map_or(0, |m| m + 1);
    let mut members = vec![Vec::new(); n_clusters];
    for (i, &c) in clusters.iter().enumerate() {
        members[c].push(i);
    }
    members.retain(|m| !m.is_empty());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut aucs = Vec::with_capacity(replicates);
    let (mut t, mut s) = (Vec::new(), Vec::new());
    for _ in 0..replicates * 10 {
        if aucs.len() == replicates {
            break;
        }
        t.clear();
        s.clear();
        for _ in 0..members.len() {
            for &i in &members[rng.gen_range(0..members.len())] {
                t.push(truth[i]);
                s.push(scores[i]);
            }
        }
        if let Some(a) = roc_auc(&t, &s)? {
            aucs.push(a);
        }
    }
    if aucs.is_empty() {
        return Ok(None);
    }
    aucs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Ok(Some((quantile(&aucs, tail), quantile(&aucs, 1.0 - tail))))
}

/// Linear-interpolated quantile of sorted values (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_reversed_scores() {
        let t = [false, false, true, true];
        assert_eq!(roc_auc(&t, &[0.1, 0.2, 0.8, 0.9]).unwrap(), Some(1.0));
        assert_eq!(roc_auc(&t, &[0.9, 0.8, 0.2, 0.1]).unwrap(), Some(0.0));
        assert_eq!(roc_auc(&t, &[0.5; 4]).unwrap(), Some(0.5));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]).unwrap(), None);
        assert!(roc_auc(&t, &[0.1]).is_err());
        assert!(roc_auc(&t, &[0.1, f64::NAN, 0.2, 0.3]).is_err());
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_estimate() {
        let truth: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        let scores: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 0.6 } else { 0.4 } + ((i * 7 % 11) as f64 - 5.0) * 0.03)
            .collect();
        let clusters: Vec<usize> = (0..40).map(|i| i / 2).collect();
        let a = bootstrap_auc_ci(&truth, &scores, &clusters, 300, 0.95, 5)
            .unwrap()
            .unwrap();
        let b = bootstrap_auc_ci(&truth, &scores, &clusters, 300, 0.95, 5)
            .unwrap()
            .unwrap();
        assert_eq!(a, b);
        let auc = roc_auc(&truth, &scores).unwrap().unwrap();
        assert!(a.0 <= auc && auc <= a.1, "{a:?} vs {auc}");
        assert!(a.1 - a.0 > 0.0);
    }
}
