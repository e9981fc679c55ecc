//! Which model the server runs and what is known about it: the folder given to `--model`
//! resolved to an ensemble or a single run, its name and version (a digest of its weights'
//! checksums, so two servers answering with the same version run the same weights), its
//! classes and decision settings, and the validation figures saved beside it.
use crate::cv::config::{EvaluationSettings, Hierarchy};
use crate::diagnose::Decision;
use crate::ensemble::{Ensemble, ENSEMBLE_FILE};
use crate::training::checkpoint::read_json;
use crate::training::{run_dir, ModelSpec};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The folder behind `--model`.
pub enum ModelSource {
    Ensemble(Box<Ensemble>),
    /// A run directory (`train`, or the `run/` of a `demo` folder) and the metrics file that
    /// describes it on held-out data, where there is one.
    Run {
        dir: PathBuf,
        metrics: Option<PathBuf>,
    },
}

impl ModelSource {
    pub fn resolve(dir: &Path) -> Result<Self> {
        if dir.join(ENSEMBLE_FILE).is_file() {
            return Ok(Self::Ensemble(Box::new(Ensemble::open(dir)?)));
        }
        let model_file = run_dir::MODEL_FILE;
        // A `myoscope demo` folder: its run, and its held-out metrics one level up.
        if dir.join("run").join(model_file).is_file() {
            let m = dir.join(run_dir::METRICS_FILE);
            return Ok(Self::Run {
                dir: dir.join("run"),
                metrics: m.is_file().then_some(m),
            });
        }
        if dir.join(model_file).is_file() {
            let m = dir.join(run_dir::METRICS_FILE);
            return Ok(Self::Run {
                dir: dir.to_path_buf(),
                metrics: m.is_file().then_some(m),
            });
        }
        if !dir.is_dir() {
            bail!("--model {}: no such folder", dir.display());
        }
        bail!(
            "--model {} holds neither {ENSEMBLE_FILE} (an ensemble from `myoscope cv`) nor {model_file} (a run from `myoscope train`, or a `myoscope demo` folder)",
            dir.display()
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageInfo {
    pub name: String,
    pub classes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub models: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub label: String,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Which file the figures come from, relative to the model folder.
    pub source: String,
    pub figures: Vec<Figure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// `ensemble` or `single model`.
    pub kind: String,
    /// First 12 hex digits of the sha256 over the weights' checksums.
    pub version: String,
    pub created: Option<String>,
    pub trained_with: Option<String>,
    pub server_version: String,
    pub architecture: String,
    pub input_size: i64,
    pub grid: i64,
    pub stages: Vec<StageInfo>,
    pub positive_group: String,
    pub threshold: f64,
    pub uncertainty_band: [f64; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hierarchy: Option<Hierarchy>,
    pub validation: Option<Validation>,
}

impl ModelInfo {
    pub fn describe(dir: &Path, source: &ModelSource) -> Result<Self> {
        let name = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        match source {
            ModelSource::Ensemble(ens) => {
                let m = &ens.manifest;
                let digest: String = m
                    .stages
                    .iter()
                    .flat_map(|s| s.models.iter().map(|e| e.weights_sha256.as_str()))
                    .collect::<Vec<_>>()
                    .join(",");
                let step1 = &m.stages[0].stage;
                let decision = Decision::new(
                    &step1.classes,
                    m.hierarchy.as_ref(),
                    &m.evaluation,
                    None,
                    None,
                );
                Ok(Self {
                    name,
                    kind: "ensemble".into(),
                    version: short_digest(digest.as_bytes()),
                    created: Some(m.created.clone()),
                    trained_with: Some(m.myoscope_version.clone()),
                    server_version: env!("CARGO_PKG_VERSION").into(),
                    architecture: ens.config.model.arch.clone(),
                    input_size: m.preprocessing.input_size,
                    grid: m.preprocessing.grid,
                    stages: m
                        .stages
                        .iter()
                        .map(|s| StageInfo {
                            name: s.stage.name.clone(),
                            classes: s.stage.classes.clone(),
                            group: s.stage.group.clone(),
                            models: s.models.len(),
                        })
                        .collect(),
                    positive_group: decision.positive,
                    threshold: decision.threshold,
                    uncertainty_band: decision.uncertainty_band,
                    hierarchy: m.hierarchy.clone(),
                    validation: ensemble_validation(&ens.dir),
                })
            }
            ModelSource::Run { dir: run, metrics } => {
                let spec = ModelSpec::read(&run.join(run_dir::MODEL_FILE))?;
                let weights = run.join(run_dir::BEST_WEIGHTS_FILE);
                let bytes = std::fs::read(&weights)
                    .with_context(|| format!("cannot read {}", weights.display()))?;
                let manifest: Option<run_dir::RunManifest> =
                    read_json(&run.join(run_dir::RUN_MANIFEST_FILE)).ok();
                let eval = EvaluationSettings::default();
                let decision = Decision::new(&spec.classes, None, &eval, None, None);
                Ok(Self {
                    name,
                    kind: "single model".into(),
                    version: short_digest(run_dir::sha256_hex(&bytes).as_bytes()),
                    created: manifest.as_ref().map(|m| m.started.clone()),
                    trained_with: manifest.map(|m| m.myoscope_version),
                    server_version: env!("CARGO_PKG_VERSION").into(),
                    architecture: spec.model.arch.clone(),
                    input_size: spec.model.input_size,
                    grid: spec.model.grid,
                    stages: vec![StageInfo {
                        name: "main".into(),
                        classes: spec.classes.clone(),
                        group: None,
                        models: 1,
                    }],
                    positive_group: decision.positive,
                    threshold: decision.threshold,
                    uncertainty_band: decision.uncertainty_band,
                    hierarchy: None,
                    validation: metrics
                        .as_ref()
                        .and_then(|m| run_validation(dir, m))
                        .or_else(|| run_validation(dir, &run.join(run_dir::METRICS_FILE))),
                })
            }
        }
    }
}

fn short_digest(bytes: &[u8]) -> String {
    run_dir::sha256_hex(bytes)[..12].to_string()
}

fn relative(base: &Path, file: &Path) -> String {
    file.strip_prefix(base)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// The headline of `evaluation/metrics.json` (from `myoscope evaluate` or `cv --evaluate`):
/// the ensemble on its held-out test slides.
fn ensemble_validation(dir: &Path) -> Option<Validation> {
    let file = dir.join("evaluation").join(run_dir::METRICS_FILE);
    let v: serde_json::Value = read_json(&file).ok()?;
    let mut figures = Vec::new();
    for (level, what) in [("per_slide", "slides"), ("per_image", "photos")] {
        let h = &v[level];
        let n = h["n"].as_u64().unwrap_or(0);
        if let Some(auc) = h["auc"].as_f64() {
            let ci = h["auc_ci"]
                .as_array()
                .and_then(|a| Some([a.first()?.as_f64()?, a.get(1)?.as_f64()?]));
            figures.push(Figure {
                label: format!("AUC, {n} test {what}"),
                value: auc,
                interval: ci,
            });
        }
        if let Some(acc) = h["accuracy"].as_f64() {
            figures.push(Figure {
                label: format!("accuracy, {n} test {what}"),
                value: acc,
                interval: None,
            });
        }
    }
    (!figures.is_empty()).then(|| Validation {
        source: relative(dir, &file),
        figures,
    })
}

/// A demo folder's held-out figures, or a training run's best validation accuracy.
fn run_validation(base: &Path, file: &Path) -> Option<Validation> {
    let v: serde_json::Value = read_json(file).ok()?;
    let mut figures = Vec::new();
    let mut push = |key: &str, label: String| {
        if let Some(x) = v[key].as_f64() {
            figures.push(Figure {
                label,
                value: x,
                interval: None,
            });
        }
    };
    if v.get("slide_accuracy").is_some() {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        push(
            "slide_accuracy",
            format!("accuracy, {} held-out slides", n("test_slides")),
        );
        push(
            "accuracy",
            format!("accuracy, {} held-out photos", n("test_images")),
        );
    } else {
        push(
            "best_validation_accuracy",
            format!(
                "best validation accuracy, {} photos",
                v["validation_images"].as_u64().unwrap_or(0)
            ),
        );
    }
    (!figures.is_empty()).then(|| Validation {
        source: relative(base, file),
        figures,
    })
}
