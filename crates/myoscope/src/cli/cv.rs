//! `myoscope cv`: Kabeya et al.'s protocol — test hold-out by slide, k-fold cross-validation,
//! one model per fold (optionally two-step), merged into an ensemble directory.
use super::train::ConfigOverrides;
use crate::cv::{run, CvConfig, CvOptions, CvOutcome};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CvArgs {
    /// TOML config: [data] [model] [training] as for `train`, plus [cv], [evaluation] and an
    /// optional [hierarchy] for the two-step diagnosis.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Ensemble directory to write; an existing one is continued where it stopped.
    #[arg(long)]
    pub out: PathBuf,
    /// Train only fold K (1-based): one job of a cluster array. Merge afterwards with --merge.
    #[arg(long)]
    pub fold: Option<usize>,
    /// Only gather the finished folds into the ensemble (ensemble.json).
    #[arg(long, conflicts_with = "fold")]
    pub merge: bool,
    /// Number of folds (k).
    #[arg(long)]
    pub folds: Option<usize>,
    /// Share of each class's slides held out as the test set.
    #[arg(long)]
    pub test_fraction: Option<f64>,
    #[command(flatten)]
    pub overrides: ConfigOverrides,
    /// After merging, evaluate on the test set and write the report into OUT/evaluation.
    #[arg(long)]
    pub evaluate: bool,
    #[arg(long)]
    pub quiet: bool,
}

impl CvArgs {
    /// The config to set up a new run with, or `None` to continue the one in --out.
    fn resolve(&self) -> Result<Option<CvConfig>> {
        let fresh = !self.out.join(crate::cv::plan::CONFIG_FILE).is_file();
        let given = self.config.is_some()
            || self.overrides.any()
            || self.folds.is_some()
            || self.test_fraction.is_some();
        if !fresh && !given {
            return Ok(None);
        }
        let mut c = match &self.config {
            Some(p) => CvConfig::from_toml_file(p)?,
            None => CvConfig::default(),
        };
        self.overrides
            .apply(&mut c.data, &mut c.model, &mut c.training);
        crate::weights::pretrained::settle_model_config(
            &mut c.model,
            self.overrides.arch.is_some(),
            &crate::weights::registry::Registry::open(None),
        )?;
        c.cv.folds = self.folds.unwrap_or(c.cv.folds);
        c.cv.test_fraction = self.test_fraction.unwrap_or(c.cv.test_fraction);
        if fresh && c.data.source.as_os_str().is_empty() {
            anyhow::bail!("no data: pass --data MANIFEST.csv, or set data.source in --config");
        }
        Ok(Some(c))
    }
}

pub fn run_cli(a: CvArgs) -> Result<()> {
    let outcome = run(&CvOptions {
        out: a.out.clone(),
        config: a.resolve()?,
        fold: a.fold,
        merge_only: a.merge,
        progress: !a.quiet,
        stop_after: None,
    })?;
    match outcome {
        CvOutcome::Merged(m) => {
            println!(
                "ensemble of {} model(s) in {} (stages: {})",
                m.stages.iter().map(|s| s.models.len()).sum::<usize>(),
                a.out.display(),
                m.stages
                    .iter()
                    .map(|s| s.stage.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if a.evaluate {
                let device = crate::device::parse_device(
                    &crate::cv::Plan::open(&a.out)?.config.training.device,
                )?;
                let report = super::evaluate::evaluate_to(
                    &a.out,
                    &a.out.join("evaluation"),
                    device,
                    16,
                    !a.quiet,
                    0,
                )?;
                println!("report: {}", report.display());
            }
        }
        CvOutcome::FoldsDone(f) => println!("finished fold(s) {f:?} in {}", a.out.display()),
    }
    Ok(())
}
