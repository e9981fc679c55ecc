//! What reduced precision costs in accuracy: a trained model's probabilities on labelled
//! held-out photos in fp32 and in bf16, with the macro one-vs-rest AUC and accuracy of each
//! and how far the probabilities move.
use crate::data::{Dataset, ManifestColumns};
use crate::ensemble::probabilities_per_model;
use crate::evaluation::metrics::argmax_rows;
use crate::evaluation::roc::one_vs_rest_auc;
use crate::precision::Precision;
use crate::training::LoadedModel;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrecisionFigures {
    pub precision: Precision,
    pub macro_auc: Option<f64>,
    pub accuracy: f64,
    /// Wall time of the pass over all photos (decoding included).
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrecisionCheck {
    pub model: String,
    pub data: String,
    pub photos: usize,
    pub classes: Vec<String>,
    pub fp32: PrecisionFigures,
    pub bf16: PrecisionFigures,
    /// bf16 AUC − fp32 AUC.
    pub auc_change: Option<f64>,
    /// Share of photos whose predicted class is the same in both.
    pub same_prediction: f64,
    pub max_abs_probability_change: f64,
    pub mean_abs_probability_change: f64,
}

/// Runs the check on `model_dir` (a `myoscope train` run directory) and a labelled manifest
/// (`path` and `label` columns, paths relative to it) or class-folder directory.
pub fn run(model_dir: &Path, data: &Path, batch_size: usize) -> Result<PrecisionCheck> {
    let mut model = LoadedModel::from_run_dir(model_dir, tch::Device::Cpu)?;
    let classes = model.spec.classes.clone();
    let ds = Dataset::open(data, &ManifestColumns::default(), Some(classes.as_slice()))
        .with_context(|| format!("reading the validation photos {}", data.display()))?;
    if !ds.labelled || ds.samples.is_empty() {
        bail!(
            "{} has no labelled photos; the precision check needs the truth to compute AUC",
            data.display()
        );
    }
    let truth: Vec<usize> = ds.samples.iter().map(|s| s.label).collect();
    let pass = |model: &LoadedModel| -> Result<(Vec<Vec<f64>>, PrecisionFigures)> {
        let t = Instant::now();
        let probs =
            probabilities_per_model(std::slice::from_ref(model), ds.clone(), batch_size, false)?
                .pop()
                .unwrap_or_default();
        let seconds = t.elapsed().as_secs_f64();
        let (macro_auc, _) = one_vs_rest_auc(&truth, &probs, classes.len())?;
        let predicted = argmax_rows(&probs);
        let accuracy = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count() as f64
            / truth.len() as f64;
        Ok((
            probs,
            PrecisionFigures {
                precision: model.precision,
                macro_auc,
                accuracy,
                seconds,
            },
        ))
    };
    let (p32, fp32) = pass(&model)?;
    model.set_precision(Precision::Bf16);
    let (p16, bf16) = pass(&model)?;
    let diffs: Vec<f64> = p32
        .iter()
        .zip(&p16)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .collect();
    let same = argmax_rows(&p32)
        .iter()
        .zip(argmax_rows(&p16))
        .filter(|(a, b)| **a == *b)
        .count() as f64
        / p32.len() as f64;
    Ok(PrecisionCheck {
        model: model_dir.display().to_string(),
        data: data.display().to_string(),
        photos: truth.len(),
        classes,
        auc_change: fp32.macro_auc.zip(bf16.macro_auc).map(|(a, b)| b - a),
        fp32,
        bf16,
        same_prediction: same,
        max_abs_probability_change: diffs.iter().copied().fold(0.0, f64::max),
        mean_abs_probability_change: diffs.iter().sum::<f64>() / diffs.len().max(1) as f64,
    })
}
