//! Runs the folds of a cross-validation: each fold is an ordinary run directory, so a killed
//! run resumes at the fold and epoch where it stopped, and `--fold K` jobs can run apart (one
//! per cluster node) before a merge step gathers the models into the ensemble artifact.
use super::config::CvConfig;
use super::plan::{Plan, Stage, CONFIG_FILE};
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::ensemble::{EnsembleManifest, ModelEntry, StageEntry, ENSEMBLE_FILE};
use crate::training::checkpoint::{read_json, write_json_atomic};
use crate::training::run_dir;
use crate::training::{train, TrainOptions, TrainReport};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub struct CvOptions {
    pub out: PathBuf,
    /// The protocol; `None` continues the run already set up in `out`.
    pub config: Option<CvConfig>,
    /// Train only this fold (1-based), e.g. as one job of a cluster array.
    pub fold: Option<usize>,
    /// Only gather finished folds into the ensemble.
    pub merge_only: bool,
    pub progress: bool,
    /// Stop each fold after this many epochs of this invocation (tests of resumption).
    pub stop_after: Option<usize>,
}

pub enum CvOutcome {
    /// Every fold is done and `ensemble.json` is written.
    Merged(Box<EnsembleManifest>),
    /// Only some folds ran (`--fold`, or a stop requested by a test).
    FoldsDone(Vec<usize>),
}

/// Sets up (or reopens) the run directory and trains the requested folds.
pub fn run(opts: &CvOptions) -> Result<CvOutcome> {
    let plan = open_or_create(&opts.out, opts.config.as_ref())?;
    let k = plan.folds();
    if opts.merge_only {
        return merge(&plan).map(|m| CvOutcome::Merged(Box::new(m)));
    }
    let folds: Vec<usize> = match opts.fold {
        Some(f) if f == 0 || f > k => bail!("--fold {f}: this run has folds 1..={k}"),
        Some(f) => vec![f],
        None => (1..=k).collect(),
    };
    for &fold in &folds {
        for stage in &plan.stages {
            if !run_fold(&plan, stage, fold, opts)? {
                // Stopped on request: later stages of this fold need this one finished.
                return Ok(CvOutcome::FoldsDone(Vec::new()));
            }
        }
    }
    if opts.fold.is_none() {
        return merge(&plan).map(|m| CvOutcome::Merged(Box::new(m)));
    }
    if opts.fold.is_some() {
        eprintln!(
            "fold {} done; once every fold has finished, gather them with: myoscope cv --out {} --merge",
            folds[0],
            opts.out.display()
        );
    }
    Ok(CvOutcome::FoldsDone(folds))
}

fn open_or_create(out: &Path, config: Option<&CvConfig>) -> Result<Plan> {
    if out.join(CONFIG_FILE).is_file() {
        let plan = Plan::open(out)?;
        if let Some(c) = config {
            let diff = plan.config.differences(c);
            if !diff.is_empty() {
                bail!(
                    "{} was set up with another configuration (differs in: {}); leave out --config to continue it as it was, or choose another --out",
                    out.display(),
                    diff.join(", ")
                );
            }
        }
        return Ok(plan);
    }
    let Some(config) = config else {
        bail!(
            "{} holds no cross-validation run ({CONFIG_FILE} missing); start one with --config FILE (or --data)",
            out.display()
        );
    };
    let plan = Plan::create(out, config)?;
    eprintln!(
        "set up {}: {} test photos, {} folds, stages: {}",
        out.display(),
        plan.rows.iter().filter(|r| r.is_test()).count(),
        plan.folds(),
        plan.stages
            .iter()
            .map(|s| format!("{} ({} classes)", s.name, s.classes.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(plan)
}

/// Trains (or resumes, or skips when finished) fold `k` of `stage`. Returns whether it is finished.
fn run_fold(plan: &Plan, stage: &Stage, k: usize, opts: &CvOptions) -> Result<bool> {
    let dir = plan.fold_dir(stage, k);
    let expected = plan.fold_config(stage, k);
    check_fold_config(&dir, &expected)?;
    if fold_finished(&dir) {
        eprintln!("{} fold {k}/{}: already trained", stage.name, plan.folds());
        return Ok(true);
    }
    let init_from = match &stage.group {
        Some(_) => {
            let parent = plan.fold_dir(plan.primary(), k);
            if !fold_finished(&parent) {
                bail!(
                    "{} fold {k} starts from the step-1 fold-{k} model, which is not trained yet ({}); run step 1 first (myoscope cv --out {} --fold {k})",
                    stage.name,
                    parent.display(),
                    plan.dir.display()
                );
            }
            Some(parent.join(run_dir::BEST_WEIGHTS_FILE))
        }
        None => None,
    };
    let resume = dir
        .join(run_dir::CHECKPOINT_DIR)
        .join("state.json")
        .is_file();
    eprintln!(
        "== {} fold {k}/{}{} ==",
        stage.name,
        plan.folds(),
        if resume { " (resuming)" } else { "" }
    );
    let ds = Dataset::open(&expected.data.source, &expected.data.columns, None)?;
    let split = plan.fold_split(&ds, k)?;
    let report = train(
        &expected,
        &TrainOptions {
            out: dir.clone(),
            resume,
            progress: opts.progress,
            stop_after: opts.stop_after,
            split: Some(split),
            init_from,
        },
    )?;
    let finished = report.epochs.len() >= expected.training.epochs;
    if finished {
        crate::cli::train::write_pictures(&dir, &report)?;
    }
    Ok(finished)
}

/// A fold is finished when its last epoch is checkpointed (not merely when metrics exist:
/// a run stopped early also writes them).
fn fold_finished(dir: &Path) -> bool {
    let state = dir.join(run_dir::CHECKPOINT_DIR).join("state.json");
    let Ok(state) = read_json::<crate::training::trainer::TrainState>(&state) else {
        return false;
    };
    let Ok(cfg) = TrainConfig::from_toml_file(&dir.join(run_dir::CONFIG_FILE)) else {
        return false;
    };
    state.epochs_done >= cfg.training.epochs && dir.join(run_dir::BEST_WEIGHTS_FILE).is_file()
}

/// A fold folder made under another configuration must not be silently mixed in.
fn check_fold_config(dir: &Path, expected: &TrainConfig) -> Result<()> {
    let path = dir.join(run_dir::CONFIG_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let saved = TrainConfig::from_toml_file(&path)?;
    if &saved != expected {
        let wrap = |c: &TrainConfig| CvConfig {
            data: c.data.clone(),
            model: c.model.clone(),
            training: c.training.clone(),
            ..Default::default()
        };
        bail!(
            "{} was trained with another configuration than this cross-validation (differs in: {}); move it away or delete it, and run the fold again",
            dir.display(),
            wrap(&saved).differences(&wrap(expected)).join(", ")
        );
    }
    Ok(())
}

/// Checks that every fold of every stage is finished and consistent, then writes the
/// ensemble's table of contents.
pub fn merge(plan: &Plan) -> Result<EnsembleManifest> {
    let mut stages = Vec::new();
    let mut missing = Vec::new();
    for stage in &plan.stages {
        let mut models = Vec::new();
        for k in 1..=plan.folds() {
            let dir = plan.fold_dir(stage, k);
            check_fold_config(&dir, &plan.fold_config(stage, k))?;
            if !fold_finished(&dir) {
                missing.push(format!("{} fold {k}", stage.name));
                continue;
            }
            let weights = dir.join(run_dir::BEST_WEIGHTS_FILE);
            let bytes = std::fs::read(&weights)
                .with_context(|| format!("cannot read {}", weights.display()))?;
            let report: TrainReport = read_json(&dir.join(run_dir::METRICS_FILE))?;
            models.push(ModelEntry {
                fold: k,
                dir: format!("{}/fold-{k}", stage.name),
                weights_sha256: run_dir::sha256_hex(&bytes),
                best_epoch: report.best_epoch,
                best_validation_accuracy: report.best_validation_accuracy,
                train_images: report.train_images,
                validation_images: report.validation_images,
            });
        }
        stages.push(StageEntry {
            stage: stage.clone(),
            models,
        });
    }
    if !missing.is_empty() {
        bail!(
            "cannot merge {}: not finished: {}; run them with myoscope cv --out {} --fold K",
            plan.dir.display(),
            missing.join(", "),
            plan.dir.display()
        );
    }
    let manifest = EnsembleManifest::new(plan, stages);
    write_json_atomic(&plan.dir.join(ENSEMBLE_FILE), &manifest)?;
    eprintln!(
        "ensemble written: {} ({} models)",
        plan.dir.join(ENSEMBLE_FILE).display(),
        manifest
            .stages
            .iter()
            .map(|s| s.models.len())
            .sum::<usize>()
    );
    Ok(manifest)
}
