//! `myoscope train`: a config file and/or flags → a run directory.
use crate::config::{DataConfig, ModelConfig, TrainConfig, TrainingConfig};
use crate::evaluation::svg;
use crate::training::{train, TrainOptions, TrainReport};
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML config; flags given on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory to write (or to continue with --resume).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue an interrupted run from its last finished epoch.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub overrides: ConfigOverrides,
    #[arg(long)]
    pub validation_fraction: Option<f64>,
    /// Hide the progress bars (epoch summaries are still printed).
    #[arg(long)]
    pub quiet: bool,
}

/// Command-line settings that override the config file, shared by `train` and `cv`.
#[derive(Debug, Args, Default)]
pub struct ConfigOverrides {
    /// CSV manifest or folder with one sub-folder per class.
    #[arg(long)]
    pub data: Option<PathBuf>,
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
    /// Trunk architecture (`myoscope models`); with --weights it follows the weights.
    #[arg(long)]
    pub arch: Option<String>,
    /// Start the trunk from imported weights (`myoscope weights list`); the output layers
    /// start fresh and the input normalisation becomes the weights' own.
    #[arg(long)]
    pub weights: Option<String>,
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
}

impl ConfigOverrides {
    /// True when any setting is given (a resumed run must not be given new settings).
    pub fn any(&self) -> bool {
        let mut c = TrainConfig::default();
        let before = c.clone();
        self.apply(&mut c.data, &mut c.model, &mut c.training);
        c != before
    }

    pub fn apply(
        &self,
        data: &mut DataConfig,
        model: &mut ModelConfig,
        training: &mut TrainingConfig,
    ) {
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                dst.clone_from(v);
            }
        };
        if let Some(v) = &self.data {
            data.source = v.clone();
        }
        set(&mut data.columns.label, &self.label);
        set(&mut data.columns.path, &self.path_column);
        if let Some(v) = &self.slide {
            data.columns.slide = Some(v.clone());
        }
        if let Some(v) = &self.group {
            data.columns.group = Some(v.clone());
        }
        set(&mut model.arch, &self.arch);
        if let Some(w) = &self.weights {
            model.weights = Some(w.clone());
        }
        model.grid = self.grid.unwrap_or(model.grid);
        model.input_size = self.input_size.unwrap_or(model.input_size);
        training.epochs = self.epochs.unwrap_or(training.epochs);
        training.batch_size = self.batch_size.unwrap_or(training.batch_size);
        training.optimizer.lr = self.lr.unwrap_or(training.optimizer.lr);
        training.seed = self.seed.unwrap_or(training.seed);
        set(&mut training.device, &self.device);
    }
}

impl TrainArgs {
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(p) => TrainConfig::from_toml_file(p)?,
            None => TrainConfig::default(),
        };
        self.overrides
            .apply(&mut c.data, &mut c.model, &mut c.training);
        if let Some(v) = self.validation_fraction {
            c.data.validation_fraction = v;
        }
        crate::weights::pretrained::settle_model_config(
            &mut c.model,
            self.overrides.arch.is_some(),
            &crate::weights::registry::Registry::open(None),
        )?;
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
            split: None,
            init_from: None,
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
