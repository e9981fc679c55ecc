//! The ensemble artifact: a cross-validation directory whose `ensemble.json` lists, per stage,
//! the k fold models (with their weights' sha256), next to the config (`cv.toml`), the class
//! lists, the preprocessing and the split (`assignment.csv`). Its probability for a photo is
//! the mean of its models' probabilities (Kabeya et al.).
use crate::cv::config::{CvConfig, EvaluationSettings, Hierarchy};
use crate::cv::plan::{Plan, Stage};
use crate::data::augment::Normalization;
use crate::data::loader::{centre_items, spawn_epoch, EpochPlan, ImageSource};
use crate::data::Dataset;
use crate::training::checkpoint::read_json;
use crate::training::{run_dir, LoadedModel};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const ENSEMBLE_FILE: &str = "ensemble.json";
const FORMAT: &str = "myoscope-ensemble";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleManifest {
    pub format: String,
    pub version: u32,
    pub myoscope_version: String,
    pub created: String,
    pub preprocessing: Preprocessing,
    pub evaluation: EvaluationSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hierarchy: Option<Hierarchy>,
    pub stages: Vec<StageEntry>,
}

/// What a photo goes through before the network, so nobody has to guess.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preprocessing {
    pub crop: String,
    pub input_size: i64,
    pub grid: i64,
    pub colour_order: String,
    pub normalization: Normalization,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageEntry {
    #[serde(flatten)]
    pub stage: Stage,
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    pub fold: usize,
    /// Run directory relative to the ensemble directory.
    pub dir: String,
    pub weights_sha256: String,
    pub best_epoch: usize,
    pub best_validation_accuracy: f64,
    pub train_images: usize,
    pub validation_images: usize,
}

impl EnsembleManifest {
    pub fn new(plan: &Plan, stages: Vec<StageEntry>) -> Self {
        let m = &plan.config.model;
        Self {
            format: FORMAT.into(),
            version: VERSION,
            myoscope_version: env!("CARGO_PKG_VERSION").into(),
            created: run_dir::timestamp(),
            preprocessing: Preprocessing {
                crop: "centre square of the photo, resized".into(),
                input_size: m.input_size,
                grid: m.grid,
                colour_order: "RGB, 0-1 scale".into(),
                normalization: m.normalization.clone(),
            },
            evaluation: plan.config.evaluation.clone(),
            hierarchy: plan.config.hierarchy.clone(),
            stages,
        }
    }
}

/// An opened ensemble directory.
pub struct Ensemble {
    pub dir: PathBuf,
    pub manifest: EnsembleManifest,
    pub config: CvConfig,
}

impl Ensemble {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(ENSEMBLE_FILE);
        if !path.is_file() {
            bail!(
                "{} is not an ensemble: it has no {ENSEMBLE_FILE} (train one with `myoscope cv`, or finish it with `myoscope cv --out {} --merge`)",
                dir.display(),
                dir.display()
            );
        }
        let manifest: EnsembleManifest = read_json(&path)?;
        if manifest.format != FORMAT || manifest.version > VERSION {
            bail!(
                "{} is format '{}' version {}; this myoscope reads {FORMAT} up to version {VERSION}",
                path.display(),
                manifest.format,
                manifest.version
            );
        }
        let config = CvConfig::from_toml_file(&dir.join(crate::cv::plan::CONFIG_FILE))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            config,
        })
    }

    pub fn stage(&self, name: &str) -> Result<&StageEntry> {
        self.manifest
            .stages
            .iter()
            .find(|s| s.stage.name == name)
            .with_context(|| {
                format!(
                    "the ensemble has no stage '{name}' (it has: {})",
                    self.manifest
                        .stages
                        .iter()
                        .map(|s| s.stage.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Loads a stage's fold models, checking each weight file against its recorded sha256.
    pub fn load_stage(&self, name: &str, device: tch::Device) -> Result<Vec<LoadedModel>> {
        let entry = self.stage(name)?;
        entry
            .models
            .iter()
            .map(|m| {
                let dir = self.dir.join(&m.dir);
                let weights = dir.join(run_dir::BEST_WEIGHTS_FILE);
                let bytes = std::fs::read(&weights)
                    .with_context(|| format!("cannot read {}", weights.display()))?;
                if run_dir::sha256_hex(&bytes) != m.weights_sha256 {
                    bail!(
                        "{} does not match the sha256 recorded in {ENSEMBLE_FILE}; the ensemble was changed after it was merged",
                        weights.display()
                    );
                }
                LoadedModel::from_run_dir(&dir, device)
            })
            .collect()
    }
}

/// Probabilities of every model for every photo of `ds` (centre square), in one pass over
/// the photos: `[model][photo][class]`.
pub fn probabilities_per_model(
    models: &[LoadedModel],
    ds: Dataset,
    batch_size: usize,
    progress: bool,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let Some(first) = models.first() else {
        bail!("no models to run");
    };
    let n = ds.samples.len();
    let src = Arc::new(ImageSource::new(
        Arc::new(ds),
        first.spec.model.input_size as u32,
        first.spec.model.normalization.clone(),
    ));
    let plan = EpochPlan {
        items: centre_items(n),
        batch_size: batch_size.max(1),
        augmentation: None,
        shuffle: false,
        seed: 0,
        epoch: 0,
    };
    let bar = crate::progress::bar(progress, n as u64, "", "photos");
    let mut out = vec![Vec::with_capacity(n); models.len()];
    for batch in spawn_epoch(src, plan) {
        let images = batch?.images();
        for (m, rows) in models.iter().zip(out.iter_mut()) {
            let probs = m.probabilities(&images)?;
            let batch_rows = Vec::<Vec<f32>>::try_from(&probs).context("reading probabilities")?;
            rows.extend(
                batch_rows
                    .into_iter()
                    .map(|r| r.into_iter().map(f64::from).collect::<Vec<_>>()),
            );
        }
        bar.inc(images.size()[0] as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// The ensemble's probability: the mean over models, photo by photo.
pub fn mean_over_models(per_model: &[Vec<Vec<f64>>]) -> Vec<Vec<f64>> {
    let Some(first) = per_model.first() else {
        return Vec::new();
    };
    let m = per_model.len() as f64;
    (0..first.len())
        .map(|i| {
            let k = first[i].len();
            (0..k)
                .map(|c| per_model.iter().map(|p| p[i][c]).sum::<f64>() / m)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensemble_probability_is_the_mean_of_the_models() {
        let a = vec![vec![0.2, 0.8], vec![1.0, 0.0]];
        let b = vec![vec![0.6, 0.4], vec![0.5, 0.5]];
        let m = mean_over_models(&[a, b]);
        assert!((m[0][0] - 0.4).abs() < 1e-12 && (m[1][1] - 0.25).abs() < 1e-12);
    }
}
