//! The DEDL classification protocol end to end: hold out a test part, split the rest into k
//! folds, train one model per fold and seed, and report every score as mean ± standard
//! deviation over those models, plus the per-seed ensemble (mean fold probabilities) on the
//! test part. Everything lands in one run folder; a killed run resumes at the fold it was in.
use super::config::MultiLabelConfig;
use super::dataset::MultiLabelSet;
use super::folds::{plan_folds, FoldPlan};
use super::images::ImageBank;
use super::metrics::{LabelCounts, MultiLabelReport};
use super::train::{settle_weights, train_fold, FoldData, FoldResult};
use crate::training::checkpoint::{write_atomic, write_json_atomic};
use crate::training::run_dir::{self, Backend, RunManifest};
use crate::weights::registry::Registry;
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

pub const FOLDS_FILE: &str = "folds.csv";
pub const REPORT_FILE: &str = "cv_metrics.json";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MeanSd {
    pub mean: f64,
    /// Sample standard deviation (n − 1) over the models; 0 for a single model.
    pub sd: f64,
}

impl MeanSd {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        if values.is_empty() {
            return Self {
                mean: f64::NAN,
                sd: f64::NAN,
            };
        }
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self { mean, sd }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassSummary {
    pub class: String,
    pub f1: MeanSd,
    pub precision: MeanSd,
    pub recall: MeanSd,
    /// Images of the scored part carrying the class (test part: the same in every model).
    pub support: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    pub preset: super::config::MultiLabelPreset,
    pub arch: String,
    pub classes: Vec<String>,
    /// "test" (the held-out part) or "validation" (each fold's own, without a test part).
    pub scored_on: String,
    pub models: usize,
    pub folds: usize,
    pub seeds: Vec<u64>,
    pub per_class: Vec<ClassSummary>,
    pub macro_f1: MeanSd,
    pub micro_f1: MeanSd,
    pub weighted_f1: MeanSd,
    pub samples_f1: MeanSd,
    /// Macro-averaged recall, under its own name (the public DEDL code called it F1).
    pub macro_recall: MeanSd,
    pub exact_match_accuracy: MeanSd,
    /// Per seed: the mean of the fold models' test probabilities, each class cut at the mean of
    /// the fold thresholds.
    pub ensembles: Vec<(u64, MultiLabelReport)>,
    /// Scores that were undefined in some model (counted as 0), with how often.
    pub warnings: Vec<String>,
    pub seconds: f64,
}

pub struct CvOptions {
    pub resume: bool,
    pub progress: bool,
    /// Stop after this many newly trained fold models (for tests of resumption).
    pub stop_after_models: Option<usize>,
}

/// Runs (or resumes) the protocol in `out`.
pub fn run_cv(cfg: &MultiLabelConfig, out: &Path, opts: &CvOptions) -> Result<Option<CvReport>> {
    let started = Instant::now();
    let config_path = out.join(run_dir::CONFIG_FILE);
    let mut pretrained = None;
    let cfg = if opts.resume {
        if !config_path.is_file() {
            bail!(
                "--resume: {} holds no multilabel run ({} missing); start it without --resume",
                out.display(),
                config_path.display()
            );
        }
        MultiLabelConfig::from_toml_file(&config_path)?
    } else {
        if config_path.exists() {
            bail!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                out.display()
            );
        }
        let mut cfg = cfg.clone();
        pretrained = settle_weights(&mut cfg, &Registry::open(None))?;
        cfg
    };
    cfg.validate()?;
    let set = MultiLabelSet::open(
        &cfg.data.labels,
        cfg.data.root.as_deref(),
        &cfg.data.columns,
        cfg.data.classes.as_deref(),
    )?;
    let folds_path = out.join(FOLDS_FILE);
    let plan = if folds_path.is_file() {
        FoldPlan::read_csv(&set, &folds_path)?
    } else {
        plan_folds(
            &set,
            cfg.protocol.test_fraction,
            cfg.protocol.folds,
            cfg.protocol.split_seed,
        )?
    };
    if !opts.resume {
        run_dir::ensure_dir(out)?;
        write_atomic(&config_path, cfg.to_toml()?.as_bytes())?;
        plan.write_csv(&set, &folds_path)?;
        let device = crate::device::parse_device(&cfg.training.device)?;
        run_dir::write_manifest(
            out,
            &RunManifest {
                myoscope_version: env!("CARGO_PKG_VERSION").into(),
                crate_versions: run_dir::crate_versions(),
                git_commit: run_dir::git_commit(),
                seed: cfg.protocol.split_seed,
                data_sha256: run_dir::sha256_hex(&std::fs::read(&cfg.data.labels)?),
                split_sha256: run_dir::sha256_hex(&std::fs::read(&folds_path)?),
                backend: Backend::current(device),
                command: std::env::args().collect(),
                started: run_dir::timestamp(),
                pretrained: pretrained.as_ref().map(Into::into),
                preset: Some(cfg.preset),
            },
        )?;
    }
    let counts = set.label_counts();
    if opts.progress {
        let listing: Vec<String> = set
            .classes
            .iter()
            .zip(&counts)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        eprintln!(
            "{} images, classes: {}; {} test, {} folds × {} seed(s); {} ({:?} preset) at {}², device {}",
            set.images.len(),
            listing.join(", "),
            plan.test().len(),
            plan.folds,
            cfg.protocol.seeds.len(),
            cfg.model.arch,
            cfg.preset,
            cfg.model.input_size,
            crate::device::describe(crate::device::parse_device(&cfg.training.device)?)
        );
    }
    let bank = ImageBank::load(&set, cfg.model.input_size as u32, opts.progress)?;
    let test = plan.test();
    let mut results = Vec::new();
    let mut trained = 0usize;
    for &seed in &cfg.protocol.seeds {
        for k in 0..plan.folds {
            let dir = out.join(format!("seed-{seed}")).join(format!("fold-{k}"));
            let finished = dir.join(super::train::RESULT_FILE).is_file();
            if !finished && opts.stop_after_models.is_some_and(|n| trained >= n) {
                return Ok(None);
            }
            run_dir::ensure_dir(&dir)?;
            let data = FoldData {
                set: &set,
                bank: &bank,
                train: plan.train(k),
                validation: plan.validation(k),
                test: test.clone(),
            };
            let r = train_fold(&cfg, &data, seed, k, &dir, opts.progress)?;
            if !finished {
                trained += 1;
            }
            if opts.progress {
                let scored = r.test.as_ref().unwrap_or(&r.validation);
                eprintln!(
                    "seed {seed} fold {}/{}: {} epochs{}, kept {:?}, {} macro F1 {:.3}, micro F1 {:.3} ({:.0}s)",
                    k + 1,
                    plan.folds,
                    r.epochs_run,
                    if r.stopped_early { " (stopped early)" } else { "" },
                    r.kept,
                    if r.test.is_some() { "test" } else { "validation" },
                    scored.macro_average.f1,
                    scored.micro.f1,
                    r.seconds
                );
            }
            results.push(r);
        }
    }
    let report = summarise(&cfg, &set, &test, &results, started.elapsed().as_secs_f64())?;
    write_json_atomic(&out.join(REPORT_FILE), &report)?;
    write_atomic(&out.join("summary.md"), markdown(&report).as_bytes())?;
    crate::evaluation::png::write_picture(
        &out.join("f1_per_class"),
        &super::chart::f1_bars(&report),
    )?;
    Ok(Some(report))
}

/// Mean ± sd of every score over the fold models, and the per-seed ensembles.
pub fn summarise(
    cfg: &MultiLabelConfig,
    set: &MultiLabelSet,
    test: &[usize],
    results: &[FoldResult],
    seconds: f64,
) -> Result<CvReport> {
    let on_test = !test.is_empty();
    let scored: Vec<&MultiLabelReport> = results
        .iter()
        .map(|r| r.test.as_ref().unwrap_or(&r.validation))
        .collect();
    let pick = |f: &dyn Fn(&MultiLabelReport) -> f64| -> MeanSd {
        MeanSd::of(&scored.iter().map(|r| f(r)).collect::<Vec<_>>())
    };
    let per_class = set
        .classes
        .iter()
        .enumerate()
        .map(|(c, class)| ClassSummary {
            class: class.clone(),
            f1: pick(&|r| r.per_class[c].f1),
            precision: pick(&|r| r.per_class[c].precision),
            recall: pick(&|r| r.per_class[c].recall),
            support: scored.first().map_or(0, |r| r.per_class[c].support),
        })
        .collect();
    let mut warnings: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &scored {
        for u in &r.undefined {
            *warnings.entry(u.clone()).or_default() += 1;
        }
    }
    let mut ensembles = Vec::new();
    if on_test {
        for &seed in &cfg.protocol.seeds {
            let members: Vec<&FoldResult> = results.iter().filter(|r| r.seed == seed).collect();
            if members.is_empty() {
                continue;
            }
            let k = set.classes.len();
            let n = members.len() as f64;
            let mut mean = vec![vec![0.0; k]; test.len()];
            let mut thresholds = vec![0.0; k];
            for m in &members {
                for (row, p) in mean.iter_mut().zip(&m.test_probabilities) {
                    for (a, b) in row.iter_mut().zip(p) {
                        *a += b / n;
                    }
                }
                for (t, s) in thresholds.iter_mut().zip(&m.thresholds) {
                    *t += s / n;
                }
            }
            let mut counts = LabelCounts::new(&set.classes)?;
            counts.add_thresholded(&set.labels_of(test), &mean, &thresholds)?;
            ensembles.push((seed, counts.report()));
        }
    }
    Ok(CvReport {
        preset: cfg.preset,
        arch: cfg.model.arch.clone(),
        classes: set.classes.clone(),
        scored_on: if on_test { "test" } else { "validation" }.into(),
        models: results.len(),
        folds: cfg.protocol.folds,
        seeds: cfg.protocol.seeds.clone(),
        per_class,
        macro_f1: pick(&|r| r.macro_average.f1),
        micro_f1: pick(&|r| r.micro.f1),
        weighted_f1: pick(&|r| r.weighted.f1),
        samples_f1: pick(&|r| r.samples_f1),
        macro_recall: pick(&|r| r.macro_average.recall),
        exact_match_accuracy: pick(&|r| r.exact_match_accuracy),
        ensembles,
        warnings: warnings
            .into_iter()
            .map(|(w, n)| format!("{w} (in {n} of {} models; counted as 0)", scored.len()))
            .collect(),
        seconds,
    })
}

fn markdown(r: &CvReport) -> String {
    let mut s = format!(
        "# {} ({:?} preset): {} models ({} folds × {} seed(s)), scored on the {} part\n\n\
         | class | F1 | precision | recall | support |\n|---|---|---|---|---|\n",
        r.arch,
        r.preset,
        r.models,
        r.folds,
        r.seeds.len(),
        r.scored_on
    );
    let ms = |m: &MeanSd| format!("{:.3} ± {:.3}", m.mean, m.sd);
    for c in &r.per_class {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.class,
            ms(&c.f1),
            ms(&c.precision),
            ms(&c.recall),
            c.support
        ));
    }
    s.push_str(&format!(
        "\nmacro F1 {}, micro F1 {}, weighted F1 {}, samples F1 {}, macro recall {}, exact match {}\n",
        ms(&r.macro_f1),
        ms(&r.micro_f1),
        ms(&r.weighted_f1),
        ms(&r.samples_f1),
        ms(&r.macro_recall),
        ms(&r.exact_match_accuracy)
    ));
    for (seed, e) in &r.ensembles {
        s.push_str(&format!(
            "\nensemble of seed {seed}: macro F1 {:.3}, micro F1 {:.3}\n",
            e.macro_average.f1, e.micro.f1
        ));
    }
    if !r.warnings.is_empty() {
        s.push_str("\nwarnings:\n");
        for w in &r.warnings {
            s.push_str(&format!("- {w}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let m = MeanSd::of(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m.mean - 2.5).abs() < 1e-12);
        assert!((m.sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(MeanSd::of(&[0.7]).sd, 0.0);
        assert!(MeanSd::of(&[]).mean.is_nan());
    }
}
