//! Grouped, stratified splits: every image of a slide (or patient) lands on one side, so the
//! model is never validated on a slide it has seen.
use super::manifest::Dataset;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Indices of the samples on each side of a split.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// Groups with their images, each group labelled by its most frequent class.
fn groups_by_class(ds: &Dataset) -> BTreeMap<usize, Vec<Vec<usize>>> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in ds.samples.iter().enumerate() {
        groups.entry(s.group.as_str()).or_default().push(i);
    }
    let mut by_class: BTreeMap<usize, Vec<Vec<usize>>> = BTreeMap::new();
    for members in groups.into_values() {
        let mut counts = vec![0usize; ds.classes.len()];
        for &i in &members {
            counts[ds.samples[i].label] += 1;
        }
        let majority = (0..counts.len())
            .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
            .unwrap_or(0);
        by_class.entry(majority).or_default().push(members);
    }
    by_class
}

/// Holds out about `fraction` of each class's groups (at least one per class that has two or
/// more groups) for validation.
pub fn grouped_holdout(ds: &Dataset, fraction: f64, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split {
        train: Vec::new(),
        validation: Vec::new(),
    };
    for (_, mut groups) in groups_by_class(ds) {
        groups.shuffle(&mut rng);
        let n = groups.len();
        let mut k = (n as f64 * fraction).round() as usize;
        if n >= 2 {
            k = k.clamp(1, n - 1);
        } else {
            k = 0;
        }
        for (g, members) in groups.into_iter().enumerate() {
            if g < k {
                split.validation.extend(members);
            } else {
                split.train.extend(members);
            }
        }
    }
    split.train.sort_unstable();
    split.validation.sort_unstable();
    split
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::manifest::Sample;
    use std::collections::HashSet;

    fn ds() -> Dataset {
        let samples = (0..60)
            .map(|i| Sample {
                path: format!("{i}.png").into(),
                rel_path: format!("{i}.png"),
                label: i % 3,
                group: format!("slide{}", i / 3 % 20 * 3 + i % 3),
                slide: None,
                row: i + 1,
            })
            .collect();
        Dataset {
            source: "x".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            samples,
            labelled: true,
        }
    }

    #[test]
    fn no_group_on_both_sides_and_every_class_validated() {
        let d = ds();
        let s = grouped_holdout(&d, 0.25, 1);
        assert_eq!(s.train.len() + s.validation.len(), 60);
        let tg: HashSet<_> = s.train.iter().map(|&i| &d.samples[i].group).collect();
        let vg: HashSet<_> = s.validation.iter().map(|&i| &d.samples[i].group).collect();
        assert!(tg.is_disjoint(&vg));
        for c in 0..3 {
            assert!(s.validation.iter().any(|&i| d.samples[i].label == c));
        }
        assert_eq!(s, grouped_holdout(&d, 0.25, 1));
    }
}
