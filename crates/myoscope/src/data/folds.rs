//! Kabeya et al.'s evaluation split: held-out test groups, then a stratified k-fold over the
//! rest, every image of a group (slide or patient) always on one side.
use super::manifest::Dataset;
use super::split::Split;
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Sample indices of the test set and of each fold (fold `k` is `folds[k - 1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldAssignment {
    pub test: Vec<usize>,
    pub folds: Vec<Vec<usize>>,
}

impl FoldAssignment {
    /// Training on every other fold, validating on fold `k` (1-based).
    pub fn split_for(&self, k: usize) -> Split {
        let mut train: Vec<usize> = self
            .folds
            .iter()
            .enumerate()
            .filter(|(i, _)| i + 1 != k)
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        train.sort_unstable();
        Split {
            train,
            validation: self.folds[k - 1].clone(),
        }
    }

    /// The fold (1-based) of every sample, `None` for test samples.
    pub fn fold_of(&self, n: usize) -> Vec<Option<usize>> {
        let mut out = vec![None; n];
        for (f, members) in self.folds.iter().enumerate() {
            for &i in members {
                out[i] = Some(f + 1);
            }
        }
        out
    }
}

/// A slide (or patient) whose images carry different labels cannot be scored per slide and
/// would leak between folds under any label; say which, and how to fix it.
pub fn check_units_are_single_class(ds: &Dataset) -> Result<()> {
    let mut problems = Vec::new();
    for what in ["slide", "group"] {
        let mut labels: BTreeMap<&str, BTreeMap<usize, usize>> = BTreeMap::new();
        for s in &ds.samples {
            let key = match what {
                "slide" => s.slide.as_deref(),
                _ => Some(s.group.as_str()),
            };
            if let Some(k) = key {
                *labels.entry(k).or_default().entry(s.label).or_default() += 1;
            }
        }
        for (unit, counts) in labels.into_iter().filter(|(_, c)| c.len() > 1) {
            let mixed: Vec<String> = counts
                .iter()
                .map(|(&c, n)| format!("{} ×{n}", ds.classes[c]))
                .collect();
            problems.push(format!(
                "{what} '{unit}' has images in {}",
                mixed.join(" and ")
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} in {}: every slide and group must hold a single class, because slides are scored as a whole and never split across folds. Correct the labels, or choose other slide/group columns (data.columns.slide / data.columns.group):\n  {}",
            if problems.len() == 1 { "1 mixed unit".to_string() } else { format!("{} mixed units", problems.len()) },
            ds.source.display(),
            problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
        );
    }
    Ok(())
}

/// Groups per class (groups must be single-class: see [`check_units_are_single_class`]).
fn groups_per_class(ds: &Dataset) -> Vec<Vec<Vec<usize>>> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in ds.samples.iter().enumerate() {
        groups.entry(s.group.as_str()).or_default().push(i);
    }
    let mut per_class = vec![Vec::new(); ds.classes.len()];
    for members in groups.into_values() {
        per_class[ds.samples[members[0]].label].push(members);
    }
    per_class
}

/// Holds out about `test_fraction` of each class's groups, then deals the remaining groups of
/// each class over `k` folds, largest first, always to the fold with the fewest images of
/// that class so far (then the fewest overall) — stratified by class and balanced in images,
/// not only in groups.
pub fn assign_folds(
    ds: &Dataset,
    k: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<FoldAssignment> {
    if k < 2 {
        bail!("cv.folds is {k}; cross-validation needs at least 2 folds (the paper uses 5)");
    }
    if !(0.0..1.0).contains(&test_fraction) {
        bail!("cv.test_fraction is {test_fraction}; it must be in [0, 1), e.g. 0.2");
    }
    check_units_are_single_class(ds)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = FoldAssignment {
        test: Vec::new(),
        folds: vec![Vec::new(); k],
    };
    let mut short = Vec::new();
    // Photos per fold over all classes: breaks ties so no fold is the largest in every class.
    let mut total = vec![0usize; k];
    for (class, mut groups) in groups_per_class(ds).into_iter().enumerate() {
        groups.shuffle(&mut rng);
        let n = groups.len();
        let n_test = ((n as f64 * test_fraction).round() as usize)
            .max(usize::from(test_fraction > 0.0 && n > k))
            .min(n.saturating_sub(k));
        if n - n_test < k {
            short.push(format!(
                "'{}' has {n} group(s){}",
                ds.classes[class],
                if n_test > 0 {
                    format!(", {} after the test hold-out", n - n_test)
                } else {
                    String::new()
                }
            ));
            continue;
        }
        let (test, rest) = groups.split_at_mut(n_test);
        out.test.extend(test.iter().flatten());
        // Stable sort after the shuffle: equal-sized groups stay in random order.
        rest.sort_by_key(|g| std::cmp::Reverse(g.len()));
        let mut load = vec![0usize; k];
        for group in rest.iter() {
            let f = (0..k).min_by_key(|&f| (load[f], total[f], f)).unwrap_or(0);
            load[f] += group.len();
            total[f] += group.len();
            out.folds[f].extend(group);
        }
    }
    if !short.is_empty() {
        bail!(
            "too few slides/groups for {k} folds: {}. Every class needs at least {k} groups outside the test set; lower cv.folds (or --folds), lower cv.test_fraction, or add slides",
            short.join("; ")
        );
    }
    out.test.sort_unstable();
    for f in &mut out.folds {
        f.sort_unstable();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::manifest::Sample;
    use std::collections::HashSet;

    /// `varied`: groups hold 0–2 extra photos, so folds cannot balance by counting groups.
    fn ds(groups_per_class: usize, images_per_group: usize, varied: bool) -> Dataset {
        let mut samples = Vec::new();
        for c in 0..2 {
            for g in 0..groups_per_class {
                for i in 0..images_per_group + g % 3 * usize::from(varied) {
                    samples.push(Sample {
                        path: format!("{c}-{g}-{i}.png").into(),
                        rel_path: format!("{c}-{g}-{i}.png"),
                        label: c,
                        group: format!("p{c}-{g}"),
                        slide: Some(format!("p{c}-{g}")),
                        row: samples.len() + 1,
                    });
                }
            }
        }
        Dataset {
            source: "m.csv".into(),
            classes: vec!["a".into(), "b".into()],
            samples,
            labelled: true,
        }
    }

    #[test]
    fn folds_partition_the_non_test_images_without_splitting_groups() {
        let d = ds(12, 2, true);
        let a = assign_folds(&d, 5, 0.2, 7).unwrap();
        let mut seen = HashSet::new();
        for i in a.test.iter().chain(a.folds.iter().flatten()) {
            assert!(seen.insert(*i), "sample {i} assigned twice");
        }
        assert_eq!(seen.len(), d.samples.len());
        let fold_of = a.fold_of(d.samples.len());
        let mut group_fold = BTreeMap::new();
        for (i, s) in d.samples.iter().enumerate() {
            let prev = group_fold.insert(s.group.clone(), fold_of[i]);
            assert!(
                prev.is_none() || prev == Some(fold_of[i]),
                "group {} split",
                s.group
            );
        }
        for f in &a.folds {
            let classes: HashSet<usize> = f.iter().map(|&i| d.samples[i].label).collect();
            assert_eq!(classes.len(), 2, "every fold holds both classes");
        }
        // 12 groups per class, 20% → 2 test groups per class.
        let test_groups: HashSet<&str> = a
            .test
            .iter()
            .map(|&i| d.samples[i].group.as_str())
            .collect();
        assert_eq!(test_groups.len(), 4);
        let split = a.split_for(2);
        assert_eq!(split.validation, a.folds[1]);
        assert_eq!(
            split.train.len() + split.validation.len() + a.test.len(),
            d.samples.len()
        );
        assert_eq!(
            a,
            assign_folds(&d, 5, 0.2, 7).unwrap(),
            "deterministic for a seed"
        );
        // Equal groups, 3 per class over 2 folds: the odd group goes to alternate folds.
        let b = assign_folds(&ds(3, 3, false), 2, 0.0, 1).unwrap();
        let sizes: Vec<usize> = b.folds.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![9, 9], "the odd group alternates between folds");
    }

    #[test]
    fn a_class_with_fewer_groups_than_folds_is_refused_with_the_fix() {
        let err = assign_folds(&ds(4, 2, true), 5, 0.0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'a' has 4 group(s)") && err.contains("lower cv.folds"),
            "{err}"
        );
    }

    #[test]
    fn a_slide_with_two_classes_is_refused() {
        let mut d = ds(6, 2, true);
        d.samples[1].label = 1;
        let err = assign_folds(&d, 3, 0.0, 0).unwrap_err().to_string();
        assert!(
            err.contains("slide 'p0-0' has images in a ×1 and b ×1"),
            "{err}"
        );
    }
}
