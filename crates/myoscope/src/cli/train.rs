//! `myoscope train`: a config file and/or flags → a run directory.
use crate::config::TrainConfig;
use crate::evaluation::svg;
use crate::training::{train, TrainOptions, TrainReport};
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// CSV manifest or folder with one sub-folder per class.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// TOML config; flags given on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory to write (or to continue with --resume).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue an interrupted run from its last finished epoch.
    #[arg(long)]
    pub resume: bool,
    /// Manifest column holding the class label.
    #[arg(long)]
    pub label: Option<String>,
    /// Manifest column holding the image path.
    #[arg(long)]
    pub path_column: Option<String>,
    /// Manifest column naming the slide (slide-level averaging; grouping if --group is absent).
    #[arg(long)]
    pub slide: Option<String>,
    /// Manifest column whose values never straddle train and validation (patient, field).
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub arch: Option<String>,
    #[arg(long)]
    pub grid: Option<i64>,
    #[arg(long)]
    pub input_size: Option<i64>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub validation_fraction: Option<f64>,
    /// Hide the progress bars (epoch summaries are still printed).
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(p) => TrainConfig::from_toml_file(p)?,
            None => TrainConfig::default(),
        };
        if let Some(v) = &self.data {
            c.data.source = v.clone();
        }
        if let Some(v) = &self.label {
            c.data.columns.label = v.clone();
        }
        if let Some(v) = &self.path_column {
            c.data.columns.path = v.clone();
        }
        if let Some(v) = &self.slide {
            c.data.columns.slide = Some(v.clone());
        }
        if let Some(v) = &self.group {
            c.data.columns.group = Some(v.clone());
        }
        if let Some(v) = self.validation_fraction {
            c.data.validation_fraction = v;
        }
        if let Some(v) = &self.arch {
            c.model.arch = v.clone();
        }
        if let Some(v) = self.grid {
            c.model.grid = v;
        }
        if let Some(v) = self.input_size {
            c.model.input_size = v;
        }
        if let Some(v) = self.epochs {
            c.training.epochs = v;
        }
        if let Some(v) = self.batch_size {
            c.training.batch_size = v;
        }
        if let Some(v) = self.lr {
            c.training.optimizer.lr = v;
        }
        if let Some(v) = self.seed {
            c.training.seed = v;
        }
        if let Some(v) = &self.device {
            c.training.device = v.clone();
        }
        if !self.resume && c.data.source.as_os_str().is_empty() {
            anyhow::bail!("no data: pass --data MANIFEST.csv (or a folder of class folders), or set data.source in --config");
        }
        Ok(c)
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let cfg = a.resolve()?;
    let report = train(
        &cfg,
        &TrainOptions {
            out: a.out.clone(),
            resume: a.resume,
            progress: !a.quiet,
            stop_after: None,
        },
    )?;
    write_pictures(&a.out, &report)?;
    println!(
        "best validation accuracy {:.4} at epoch {} ({} training / {} validation photos, {:.0} s)",
        report.best_validation_accuracy,
        report.best_epoch,
        report.train_images,
        report.validation_images,
        report.seconds
    );
    println!("run directory: {}", a.out.display());
    Ok(())
}

pub fn write_pictures(out: &Path, report: &TrainReport) -> Result<()> {
    std::fs::write(
        out.join("training_curves.svg"),
        svg::training_curves(&report.epochs),
    )?;
    Ok(())
}
