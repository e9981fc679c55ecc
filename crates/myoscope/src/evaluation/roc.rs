//! ROC curves and AUC exactly as scikit-learn computes them (`roc_curve` with
//! `drop_intermediate=True`, `roc_auc_score`), so our figures can be checked against the
//! field's reference; and a bootstrap interval that resamples slides, not photos, because
//! photos of one slide are not independent.
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
        bail!("ROC: score {i} is {} (not a finite number)", scores[i]);
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
/// class. Where sklearn refuses a class absent from the truth, that class gets `None` here and
/// is left out of the mean: a small test fold may lack a rare diagnosis, and the other classes'
/// figures are still worth reporting.
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
    if let Some(i) = truth.iter().position(|&y| y >= classes) {
        bail!(
            "AUC: true class {} of item {i} is not below {classes}",
            truth[i]
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
/// as there are, with replacement, and takes all their items, because photos of one slide
/// are not independent. Replicates with a single class have no AUC and are redrawn, up to
/// 10× the requested number of tries. `None` when the AUC itself is undefined, when no
/// replicate had both classes, or when `replicates` is 0.
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
    if !(confidence > 0.0 && confidence < 1.0) {
        bail!("bootstrap: confidence {confidence} is not between 0 and 1");
    }
    if replicates == 0 || roc_auc(truth, scores)?.is_none() {
        return Ok(None);
    }
    let mut aucs = replicate_aucs(truth, scores, &cluster_members(clusters), replicates, seed)?;
    if aucs.is_empty() {
        return Ok(None);
    }
    aucs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Ok(Some((quantile(&aucs, tail), quantile(&aucs, 1.0 - tail))))
}

/// Item indices of each cluster, in increasing order of cluster id (so a seed gives the same
/// draws whatever the ids are; they need not be contiguous).
fn cluster_members(clusters: &[usize]) -> Vec<Vec<usize>> {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in clusters.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    members.into_values().collect()
}

/// Up to `replicates` AUCs of cluster resamples, drawn from a ChaCha8 stream seeded by `seed`.
fn replicate_aucs(
    truth: &[bool],
    scores: &[f64],
    members: &[Vec<usize>],
    replicates: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut aucs = Vec::with_capacity(replicates);
    let (mut t, mut s) = (Vec::new(), Vec::new());
    for _ in 0..replicates.saturating_mul(10) {
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
    Ok(aucs)
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
    fn collinear_points_are_dropped_like_scikit_learn() {
        // sklearn: roc_curve([1,1,1,0,0,0], [.9,.8,.7,.6,.5,.4])
        let truth = [true, true, true, false, false, false];
        let c = roc_curve(&truth, &[0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
            .unwrap()
            .unwrap();
        assert_eq!(c.fpr, vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(c.tpr, vec![0.0, 1.0 / 3.0, 1.0, 1.0]);
        assert_eq!(c.thresholds, vec![f64::INFINITY, 0.9, 0.7, 0.4]);
        assert_eq!(c.auc(), 1.0);
    }

    #[test]
    fn infinite_threshold_is_null_in_json_and_back() {
        let c = roc_curve(&[false, true], &[0.2, 0.7]).unwrap().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""thresholds":[null,0.7,0.2]"#), "{json}");
        assert_eq!(serde_json::from_str::<RocCurve>(&json).unwrap(), c);
    }

    #[test]
    fn one_vs_rest_skips_absent_classes_and_rejects_bad_input() {
        // sklearn's macro OvR AUC of the first three columns is 0.9629…; class 3 never occurs.
        let truth = [0, 1, 2, 1, 0, 1];
        let rows = [
            [0.7, 0.2, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.1, 0.8],
            [0.3, 0.6, 0.1],
            [0.5, 0.4, 0.1],
            [0.4, 0.3, 0.3],
        ];
        let probs: Vec<Vec<f64>> = rows.iter().map(|r| [&r[..], &[0.0]].concat()).collect();
        let (macro_auc, per_class) = one_vs_rest_auc(&truth, &probs, 4).unwrap();
        assert!((macro_auc.unwrap() - 0.962_962_962_962_963).abs() < 1e-12);
        assert_eq!(per_class[3], None);
        assert!((per_class[1].unwrap() - 8.0 / 9.0).abs() < 1e-12);
        assert!(one_vs_rest_auc(&truth, &probs, 3).is_err());
        assert!(one_vs_rest_auc(&[0, 1, 2, 1, 0, 4], &probs, 4).is_err());
        assert!(one_vs_rest_auc(&truth[..5], &probs, 4).is_err());
    }

    /// Forty items on twenty slides (two each), positives scoring higher with some overlap.
    fn two_per_slide() -> (Vec<bool>, Vec<f64>, Vec<usize>) {
        let truth: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        let scores: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 0.6 } else { 0.4 } + ((i * 7 % 11) as f64 - 5.0) * 0.03)
            .collect();
        let clusters: Vec<usize> = (0..40).map(|i| i / 2).collect();
        (truth, scores, clusters)
    }

    #[test]
    fn bootstrap_ids_need_not_be_contiguous() {
        let (truth, scores, clusters) = two_per_slide();
        let sparse: Vec<usize> = clusters
            .iter()
            .map(|&c| usize::MAX - 1000 + 7 * c)
            .collect();
        assert_eq!(
            bootstrap_auc_ci(&truth, &scores, &clusters, 200, 0.9, 1).unwrap(),
            bootstrap_auc_ci(&truth, &scores, &sparse, 200, 0.9, 1).unwrap()
        );
        assert_ne!(
            bootstrap_auc_ci(&truth, &scores, &clusters, 200, 0.9, 1).unwrap(),
            bootstrap_auc_ci(&truth, &scores, &clusters, 200, 0.9, 2).unwrap()
        );
    }

    #[test]
    fn bootstrap_rejects_bad_input_and_has_no_interval_for_one_class() {
        let (truth, scores, clusters) = two_per_slide();
        let ci = |t: &[bool], c: &[usize], conf| bootstrap_auc_ci(t, &scores, c, 50, conf, 0);
        assert!(ci(&truth, &clusters[1..], 0.95).is_err());
        assert!(ci(&truth, &clusters, 1.5).is_err());
        assert!(ci(&truth, &clusters, f64::NAN).is_err());
        assert_eq!(ci(&[true; 40], &clusters, 0.95).unwrap(), None);
        assert_eq!(
            bootstrap_auc_ci(&truth, &scores, &clusters, 0, 0.95, 0).unwrap(),
            None
        );
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_estimate() {
        let (truth, scores, clusters) = two_per_slide();
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
