//! The two-step diagnosis of a slide (Kabeya et al.): step 1 gives the probability of each
//! group (inflammatory myopathy or not), the call follows the chosen threshold on the positive
//! group, then the called group's step-2 ensemble gives the subtype probabilities. Every
//! probability is a mean over the slide's photos and over the ensemble's models.
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
    let eval = &ens.manifest.evaluation;
    let threshold = opts.threshold.unwrap_or(eval.threshold);
    let [lo, hi] = opts.uncertainty_band.unwrap_or(eval.uncertainty_band);
    let step1 = &ens.manifest.stages[0].stage;
    let positive = match &ens.manifest.hierarchy {
        Some(h) => h.positive_group.clone(),
        None => eval
            .positive_class
            .clone()
            .unwrap_or_else(|| step1.classes[step1.classes.len().min(2) - 1].clone()),
    };
    let pos_idx = step1
        .classes
        .iter()
        .position(|c| *c == positive)
        .unwrap_or(0);

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
        let p = mean[pos_idx];
        let call = if step1.classes.len() == 2 {
            if p >= threshold {
                positive.clone()
            } else {
                step1.classes[1 - pos_idx].clone()
            }
        } else {
            step1.classes[crate::evaluation::metrics::argmax_rows(std::slice::from_ref(&mean))[0]]
                .clone()
        };
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
                .or_else(|| single_subtype(ens, &call));
            let truth = ds
                .labelled
                .then(|| ds.classes[ds.samples[members[0]].label].clone());
            SlideDiagnosis {
                slide: slide.clone(),
                images: members.len(),
                group_probabilities: step1.classes.iter().cloned().zip(mean).collect(),
                positive_group: positive.clone(),
                positive_probability: p,
                threshold,
                call,
                uncertain: (lo..=hi).contains(&p),
                subtype_probabilities: subtypes,
                subtype,
                truth,
            }
        })
        .collect())
}

/// A group with one subtype has no step-2 model; its subtype is known once it is called.
fn single_subtype(ens: &Ensemble, group: &str) -> Option<String> {
    let h = ens.manifest.hierarchy.as_ref()?;
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

fn mean_rows<'a>(rows: impl Iterator<Item = &'a Vec<f64>>) -> Vec<f64> {
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
