//! The multi-label protocol's split: a held-out test part, then k cross-validation folds of
//! the rest, both at the level of groups (a patient's images never straddle two parts) and
//! stratified over label combinations as far as the groups allow, so that a rare class lands
//! in every part that can hold it.
//!
//! The split is written as a CSV (`image,group,part`) that the PyTorch reference reads too, so
//! both train on exactly the same images.
use super::dataset::{csv_field, MultiLabelSet};
use anyhow::{bail, ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

/// Where each image goes: `None` is the test part, `Some(k)` cross-validation fold k.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldPlan {
    pub folds: usize,
    pub part: Vec<Option<usize>>,
}

impl FoldPlan {
    pub fn test(&self) -> Vec<usize> {
        self.indices(|p| p.is_none())
    }

    /// Fold k's validation images.
    pub fn validation(&self, k: usize) -> Vec<usize> {
        self.indices(|p| p == Some(k))
    }

    /// Fold k's training images: every other fold.
    pub fn train(&self, k: usize) -> Vec<usize> {
        self.indices(|p| p.is_some() && p != Some(k))
    }

    fn indices(&self, keep: impl Fn(Option<usize>) -> bool) -> Vec<usize> {
        (0..self.part.len())
            .filter(|&i| keep(self.part[i]))
            .collect()
    }

    pub fn write_csv(&self, set: &MultiLabelSet, path: &Path) -> Result<()> {
        let mut text = String::from("image,group,part\n");
        for (img, part) in set.images.iter().zip(&self.part) {
            let part = part.map_or("test".to_string(), |k| k.to_string());
            text.push_str(&format!(
                "{},{},{part}\n",
                csv_field(&img.name),
                csv_field(&img.group)
            ));
        }
        crate::training::checkpoint::write_atomic(path, text.as_bytes())
    }

    /// Re-reads a written split, matching images by name: a resumed or reference run uses the
    /// same parts even if the label table's rows were reordered.
    pub fn read_csv(set: &MultiLabelSet, path: &Path) -> Result<Self> {
        let mut reader = csv::Reader::from_path(path)
            .with_context(|| format!("cannot open the fold file {}", path.display()))?;
        let mut by_name = BTreeMap::new();
        for (i, rec) in reader.records().enumerate() {
            let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
            let part = match rec.get(2) {
                Some("test") => None,
                Some(k) => Some(k.parse::<usize>().with_context(|| {
                    format!(
                        "{}: line {}: part '{k}' is neither 'test' nor a fold number",
                        path.display(),
                        i + 2
                    )
                })?),
                None => bail!("{}: line {} has no part", path.display(), i + 2),
            };
            by_name.insert(rec.get(0).unwrap_or("").to_string(), part);
        }
        let part: Vec<Option<usize>> = set
            .images
            .iter()
            .map(|img| {
                by_name.get(&img.name).copied().with_context(|| {
                    format!("{}: image '{}' has no part", path.display(), img.name)
                })
            })
            .collect::<Result<_>>()?;
        let folds = part.iter().flatten().max().map_or(0, |k| k + 1);
        Ok(Self { folds, part })
    }
}

/// Holds out about `test_fraction` of the groups, then deals the rest into `folds` folds.
pub fn plan_folds(
    set: &MultiLabelSet,
    test_fraction: f64,
    folds: usize,
    seed: u64,
) -> Result<FoldPlan> {
    ensure!(
        folds >= 2,
        "cross-validation needs at least 2 folds, not {folds}"
    );
    ensure!(
        (0.0..0.9).contains(&test_fraction),
        "the test fraction must lie in [0, 0.9), not {test_fraction}"
    );
    let groups = groups_of(set);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all: Vec<usize> = (0..groups.len()).collect();
    let (test_groups, rest) = if test_fraction > 0.0 {
        let parts = (1.0 / test_fraction).round().max(2.0) as usize;
        let dealt = deal(&groups, &all, parts, &mut rng);
        let test: Vec<usize> = all.iter().copied().filter(|&g| dealt[g] == 0).collect();
        let rest: Vec<usize> = all.iter().copied().filter(|&g| dealt[g] != 0).collect();
        (test, rest)
    } else {
        (Vec::new(), all)
    };
    ensure!(
        rest.len() >= folds,
        "{} group(s) left for {folds} folds; use fewer folds or a smaller test fraction",
        rest.len()
    );
    let dealt = deal(&groups, &rest, folds, &mut rng);
    let mut part = vec![None; set.images.len()];
    for &g in &rest {
        for &i in &groups[g].images {
            part[i] = Some(dealt[g]);
        }
    }
    for &g in &test_groups {
        for &i in &groups[g].images {
            part[i] = None;
        }
    }
    Ok(FoldPlan { folds, part })
}

struct Group {
    images: Vec<usize>,
    /// The union of the group's labels: the stratum it belongs to.
    signature: Vec<bool>,
}

fn groups_of(set: &MultiLabelSet) -> Vec<Group> {
    let mut by_name: BTreeMap<&str, Group> = BTreeMap::new();
    for (i, img) in set.images.iter().enumerate() {
        let g = by_name.entry(img.group.as_str()).or_insert_with(|| Group {
            images: Vec::new(),
            signature: vec![false; set.classes.len()],
        });
        g.images.push(i);
        for (s, &l) in g.signature.iter_mut().zip(&img.labels) {
            *s |= l;
        }
    }
    by_name.into_values().collect()
}

/// Deals `chosen` groups into `parts` parts: the rarest label combinations first, each
/// stratum shuffled and its groups given one by one to the part that holds the fewest of that
/// stratum so far (ties: the fewest images), so every part gets its share of each combination
/// and of images. Returns the part of every group index (unchosen ones: 0, unused).
fn deal(groups: &[Group], chosen: &[usize], parts: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut strata: BTreeMap<&[bool], Vec<usize>> = BTreeMap::new();
    for &g in chosen {
        strata.entry(&groups[g].signature).or_default().push(g);
    }
    let mut strata: Vec<Vec<usize>> = strata.into_values().collect();
    strata.sort_by_key(|s| s.len());
    let mut assigned = vec![0usize; groups.len()];
    let mut images = vec![0usize; parts];
    for mut stratum in strata {
        stratum.shuffle(rng);
        let mut here = vec![0usize; parts];
        // Rotating the tie-break start keeps small strata from always filling part 0 first.
        let offset = rand::Rng::gen_range(rng, 0..parts);
        for g in stratum {
            let best = (0..parts)
                .map(|j| (j + offset) % parts)
                .min_by_key(|&j| (here[j], images[j]))
                .unwrap_or(0);
            assigned[g] = best;
            here[best] += 1;
            images[best] += groups[g].images.len();
        }
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::super::dataset::LabelledImage;
    use super::super::test_dir::Scratch;
    use super::*;

    fn set(n: usize) -> MultiLabelSet {
        let images = (0..n)
            .map(|i| LabelledImage {
                row: i + 2,
                path: format!("{i}.png").into(),
                name: format!("{i}.png"),
                // A rare class on every 10th image, patients of 2 images.
                labels: vec![true, i % 10 == 0],
                group: format!("p{}", i / 2),
            })
            .collect();
        MultiLabelSet {
            source: "x.csv".into(),
            classes: vec!["common".into(), "rare".into()],
            images,
        }
    }

    #[test]
    fn parts_are_grouped_stratified_balanced_and_reproducible() {
        let s = set(120);
        let plan = plan_folds(&s, 0.2, 6, 7).unwrap();
        assert_eq!(plan, plan_folds(&s, 0.2, 6, 7).unwrap());
        let test = plan.test();
        assert!((20..=28).contains(&test.len()), "{}", test.len());
        for i in (0..120).step_by(2) {
            assert_eq!(plan.part[i], plan.part[i + 1], "patient split");
        }
        for k in 0..6 {
            let v = plan.validation(k);
            assert!((14..=18).contains(&v.len()), "fold {k}: {}", v.len());
            assert!(
                v.iter().any(|&i| s.images[i].labels[1]),
                "fold {k} lacks the rare class"
            );
            let t = plan.train(k);
            assert_eq!(t.len() + v.len() + test.len(), 120);
        }
        assert!(test.iter().any(|&i| s.images[i].labels[1]));
    }

    #[test]
    fn fold_file_round_trips() {
        let s = set(30);
        let plan = plan_folds(&s, 0.0, 3, 1).unwrap();
        let dir = Scratch::new("ml-folds", line!());
        let p = dir.0.as_path().join("folds.csv");
        plan.write_csv(&s, &p).unwrap();
        assert_eq!(FoldPlan::read_csv(&s, &p).unwrap(), plan);
        assert!(plan.test().is_empty());
    }

    #[test]
    fn too_few_groups_is_an_error() {
        let err = plan_folds(&set(6), 0.0, 6, 0).unwrap_err().to_string();
        assert!(err.contains("3 group(s) left for 6 folds"), "{err}");
    }
}
