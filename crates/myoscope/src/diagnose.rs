//! The two-step diagnosis of a slide (Kabeya et al.): step 1 gives the probability of each
//! group (inflammatory myopathy or not), the call follows the chosen threshold on the positive
//! group, then the called group's step-2 ensemble gives the subtype probabilities. Every
//! probability is a mean over the slide's photos and over the ensemble's models.
use crate::cv::config::{EvaluationSettings, Hierarchy};
use crate::data::Dataset;
use crate::ensemble::{mean_over_models, probabilities_per_model, Ensemble};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlideDiagnosis {
    pub slide: String,
    pub images: usize,
    /// Step-1 probability of each group (or of each class, for a one-step ensemble).
    pub group_probabilities: BTreeMap<String, f64>,
    /// The group (class) whose probability is thresholded.
    pub positive_group: String,
    pub positive_probability: f64,
    pub threshold: f64,
    /// The step-1 call: the positive group when its probability reaches the threshold.
    pub call: String,
    /// True when the positive probability lies inside the uncertainty band: a case for a
    /// second look rather than for the machine.
    pub uncertain: bool,
    /// Step-2 probabilities within the called group (empty when the group has one subtype
    /// or the ensemble has one step).
    pub subtype_probabilities: BTreeMap<String, f64>,
    /// The most probable subtype within the called group.
    pub subtype: Option<String>,
    /// The truth, when the input says it (the subtype with a hierarchy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth: Option<String>,
}

pub struct DiagnoseOptions {
    pub threshold: Option<f64>,
    pub uncertainty_band: Option<[f64; 2]>,
    pub batch_size: usize,
    pub device: tch::Device,
    pub progress: bool,
    /// libtorch or ONNX Runtime (CPU).
    pub engine: crate::onnx::Engine,
}

/// A stage's models, switched to the chosen engine.
fn load_stage(
    ens: &Ensemble,
    name: &str,
    opts: &DiagnoseOptions,
) -> Result<Vec<crate::training::LoadedModel>> {
    let mut models = ens.load_stage(name, opts.device)?;
    for m in &mut models {
        m.use_engine(opts.engine, tch::get_num_threads().max(0) as usize)?;
    }
    Ok(models)
}

/// Diagnoses every slide of `ds` (photos grouped by `Sample::slide`, else one slide each).
/// `ds` labels, when present, are the ensemble's finest classes (subtypes).
pub fn diagnose(
    ens: &Ensemble,
    ds: &Dataset,
    opts: &DiagnoseOptions,
) -> Result<Vec<SlideDiagnosis>> {
    let step1 = &ens.manifest.stages[0].stage;
    let decision = Decision::new(
        &step1.classes,
        ens.manifest.hierarchy.as_ref(),
        &ens.manifest.evaluation,
        opts.threshold,
        opts.uncertainty_band,
    );

    let models = load_stage(ens, &step1.name, opts)?;
    let group_probs = mean_over_models(&probabilities_per_model(
        &models,
        ds.clone(),
        opts.batch_size,
        opts.progress,
    )?);
    drop(models);
    let slides = slides_of(ds);

    // Step 2 runs only on the slides called into each group.
    let mut calls: Vec<(String, Vec<f64>, f64, String)> = Vec::new();
    for (slide, members) in &slides {
        let mean = mean_rows(members.iter().map(|&i| &group_probs[i]));
        let (p, call) = decision.call(&mean);
        calls.push((slide.clone(), mean, p, call));
    }
    let mut subtype_probs: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for entry in ens.manifest.stages.iter().skip(1) {
        let Some(group) = &entry.stage.group else {
            continue;
        };
        let called: Vec<usize> = slides
            .iter()
            .zip(&calls)
            .filter(|(_, c)| &c.3 == group)
            .flat_map(|((_, members), _)| members.iter().copied())
            .collect();
        if called.is_empty() {
            continue;
        }
        let models = load_stage(ens, &entry.stage.name, opts)?;
        let probs = mean_over_models(&probabilities_per_model(
            &models,
            ds.subset(&called),
            opts.batch_size,
            opts.progress,
        )?);
        let by_image: BTreeMap<usize, &Vec<f64>> = called.iter().copied().zip(&probs).collect();
        for ((slide, members), c) in slides.iter().zip(&calls) {
            if &c.3 != group {
                continue;
            }
            let mean = mean_rows(members.iter().map(|i| by_image[i]));
            subtype_probs.insert(
                slide.clone(),
                entry.stage.classes.iter().cloned().zip(mean).collect(),
            );
        }
    }

    Ok(slides
        .iter()
        .zip(calls)
        .map(|((slide, members), (_, mean, p, call))| {
            let subtypes = subtype_probs.remove(slide).unwrap_or_default();
            let subtype = subtypes
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(s, _)| s.clone())
                .or_else(|| single_subtype(ens.manifest.hierarchy.as_ref(), &call));
            let truth = ds
                .labelled
                .then(|| ds.classes[ds.samples[members[0]].label].clone());
            SlideDiagnosis {
                slide: slide.clone(),
                images: members.len(),
                group_probabilities: step1.classes.iter().cloned().zip(mean).collect(),
                positive_group: decision.positive.clone(),
                positive_probability: p,
                threshold: decision.threshold,
                uncertain: decision.is_uncertain(p),
                call,
                subtype_probabilities: subtypes,
                subtype,
                truth,
            }
        })
        .collect())
}

/// How step 1 is called: which class is thresholded, at what threshold, and which
/// probabilities are too close to call. Shared by `diagnose` and the clinic server.
#[derive(Debug, Clone)]
pub struct Decision {
    pub classes: Vec<String>,
    pub positive: String,
    pub positive_index: usize,
    pub threshold: f64,
    pub uncertainty_band: [f64; 2],
}

impl Decision {
    /// The positive group of a hierarchy, else the configured positive class, else the
    /// second class; `threshold` and `band` override the ensemble's settings.
    pub fn new(
        classes: &[String],
        hierarchy: Option<&Hierarchy>,
        eval: &EvaluationSettings,
        threshold: Option<f64>,
        band: Option<[f64; 2]>,
    ) -> Self {
        let positive = match hierarchy {
            Some(h) => h.positive_group.clone(),
            None => eval
                .positive_class
                .clone()
                .unwrap_or_else(|| classes[classes.len().clamp(1, 2) - 1].clone()),
        };
        let positive_index = classes.iter().position(|c| *c == positive).unwrap_or(0);
        Self {
            classes: classes.to_vec(),
            positive,
            positive_index,
            threshold: threshold.unwrap_or(eval.threshold),
            uncertainty_band: band.unwrap_or(eval.uncertainty_band),
        }
    }

    /// (positive probability, call) for a slide's mean step-1 probabilities: with two groups
    /// the threshold decides, with more the most probable class.
    pub fn call(&self, mean: &[f64]) -> (f64, String) {
        let p = mean.get(self.positive_index).copied().unwrap_or(0.0);
        let call = if self.classes.len() == 2 {
            if p >= self.threshold {
                self.positive.clone()
            } else {
                self.classes[1 - self.positive_index].clone()
            }
        } else {
            self.classes[crate::evaluation::metrics::argmax_rows(&[mean.to_vec()])[0]].clone()
        };
        (p, call)
    }

    pub fn is_uncertain(&self, p: f64) -> bool {
        let [lo, hi] = self.uncertainty_band;
        (lo..=hi).contains(&p)
    }
}

/// A group with one subtype has no step-2 model; its subtype is known once it is called.
pub fn single_subtype(hierarchy: Option<&Hierarchy>, group: &str) -> Option<String> {
    let h = hierarchy?;
    let g = h.groups.iter().find(|g| g.name == group)?;
    (g.subtypes.len() == 1).then(|| g.subtypes[0].clone())
}

/// Photo indices per slide, in slide-name order; photos without a slide are slides of their own.
fn slides_of(ds: &Dataset) -> Vec<(String, Vec<usize>)> {
    let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in ds.samples.iter().enumerate() {
        let key = s.slide.clone().unwrap_or_else(|| s.rel_path.clone());
        by.entry(key).or_default().push(i);
    }
    by.into_iter().collect()
}

pub fn mean_rows<'a>(rows: impl Iterator<Item = &'a Vec<f64>>) -> Vec<f64> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0.0;
    for r in rows {
        if sum.is_empty() {
            sum = vec![0.0; r.len()];
        }
        for (s, v) in sum.iter_mut().zip(r) {
            *s += v;
        }
        n += 1.0;
    }
    sum.iter().map(|s| s / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn two_groups_are_called_at_the_threshold_and_flagged_in_the_band() {
        let eval = EvaluationSettings {
            threshold: 0.3,
            ..EvaluationSettings::default()
        };
        let h = Hierarchy {
            positive_group: "myositis".into(),
            groups: Vec::new(),
        };
        let d = Decision::new(&names(&["myositis", "other"]), Some(&h), &eval, None, None);
        assert_eq!(d.positive_index, 0);
        assert_eq!(d.call(&[0.35, 0.65]), (0.35, "myositis".to_string()));
        assert_eq!(d.call(&[0.25, 0.75]).1, "other");
        assert!(d.is_uncertain(0.35) && !d.is_uncertain(0.25));
        let strict = Decision::new(
            &names(&["myositis", "other"]),
            Some(&h),
            &eval,
            Some(0.5),
            Some([0.4, 0.6]),
        );
        assert_eq!(strict.call(&[0.35, 0.65]).1, "other");
        assert!(!strict.is_uncertain(0.35));
    }

    #[test]
    fn more_classes_are_called_by_the_most_probable() {
        let d = Decision::new(
            &names(&["a", "b", "c"]),
            None,
            &EvaluationSettings::default(),
            None,
            None,
        );
        assert_eq!(d.positive, "b");
        assert_eq!(d.call(&[0.2, 0.3, 0.5]), (0.3, "c".to_string()));
    }
}
