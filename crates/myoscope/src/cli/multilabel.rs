//! `myoscope multilabel cv`: DEDL's multi-label classification protocol on a label table
//! (held-out test part, k-fold models per seed, mean ± sd report, ensembles);
//! `myoscope multilabel predict`: label new images with the fold models.
use crate::multilabel::config::{MultiLabelConfig, MultiLabelPreset};
use crate::multilabel::cv::{run_cv, CvOptions};
use crate::multilabel::loss::MultiLabelLoss;
use crate::multilabel::predict::{
    csv_text, load_for_model, MultiLabelPrediction, MultiLabelPredictor,
};
use crate::training::checkpoint::{write_atomic, write_json_atomic};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct MultiLabelArgs {
    #[command(subcommand)]
    pub command: MultiLabelCommand,
}

#[derive(Debug, Subcommand)]
pub enum MultiLabelCommand {
    /// Cross-validate on a label table: per-class precision/recall/F1, micro and macro F1.
    Cv(Box<MlCvArgs>),
    /// Label new images with a fold model or a cv run's ensemble (mean of its fold models).
    Predict(MlPredictArgs),
}

#[derive(Debug, Args)]
pub struct MlPredictArgs {
    /// A `multilabel cv` run folder (every fold model, averaged) or one fold folder.
    #[arg(long)]
    pub model: PathBuf,
    /// A CSV with an image column (paths relative to it) instead of loose images.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Image column of --manifest.
    #[arg(long, default_value = "path")]
    pub image_column: String,
    /// Image files to label.
    pub images: Vec<PathBuf>,
    /// Folder for predictions.csv and predictions.json; default: print only.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Accept grey images, repeating the grey value in the three channels.
    #[arg(long)]
    pub allow_grey: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct MlCvArgs {
    /// Run folder to write (or to continue with --resume).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub resume: bool,
    /// TOML config (a saved config.toml works); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// CSV with an image column and a `;`-separated labels column (or --class-columns).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Folder the image paths are relative to (default: the table's folder).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// faithful (the paper as stated, 384²) or corrected (the default, 224², tuned thresholds).
    #[arg(long, default_value = "corrected")]
    pub preset: MultiLabelPreset,
    #[arg(long)]
    pub arch: Option<String>,
    /// Registry weights to start from (`myoscope weights list`).
    #[arg(long)]
    pub weights: Option<String>,
    #[arg(long)]
    pub input_size: Option<i64>,
    #[arg(long)]
    pub image_column: Option<String>,
    #[arg(long)]
    pub labels_column: Option<String>,
    /// One 0/1 column per class instead of a label list (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub class_columns: Option<Vec<String>>,
    /// Column whose equal values stay in one fold (patient, slide).
    #[arg(long)]
    pub group: Option<String>,
    /// The class list and its order (comma-separated; default: the labels found).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    #[arg(long)]
    pub allow_empty: bool,
    /// Labels to drop from every row (comma-separated), e.g. a catch-all too rare to learn.
    #[arg(long, value_delimiter = ',')]
    pub ignore_labels: Option<Vec<String>>,
    #[arg(long)]
    pub folds: Option<usize>,
    /// Seeds, comma-separated: every fold is trained once per seed.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    #[arg(long)]
    pub test_fraction: Option<f64>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// First epoch (1-based) averaged by SWA; 0 turns SWA off.
    #[arg(long)]
    pub swa_start: Option<usize>,
    #[arg(long)]
    pub patience: Option<usize>,
    /// focal (the paper's, α 1, γ 2) or bce.
    #[arg(long)]
    pub loss: Option<String>,
    #[arg(long)]
    pub device: Option<String>,
    /// Stop after this many newly trained fold models (the run resumes with --resume).
    #[arg(long, hide = true)]
    pub stop_after_models: Option<usize>,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: MultiLabelArgs) -> Result<()> {
    match a.command {
        MultiLabelCommand::Cv(a) => cv(*a),
        MultiLabelCommand::Predict(a) => predict(a),
    }
}

/// The images to label: a manifest's image column (relative to the manifest) or the files given.
fn predict_inputs(a: &MlPredictArgs) -> Result<Vec<(String, PathBuf)>> {
    let Some(manifest) = &a.manifest else {
        if a.images.is_empty() {
            bail!("nothing to label: give image files or --manifest CSV");
        }
        return Ok(a
            .images
            .iter()
            .map(|p| (p.display().to_string(), p.clone()))
            .collect());
    };
    if !a.images.is_empty() {
        bail!("give image files or --manifest, not both");
    }
    let base = manifest.parent().unwrap_or(std::path::Path::new("."));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(manifest)
        .with_context(|| format!("cannot read manifest {}", manifest.display()))?;
    let headers = reader.headers()?.clone();
    let Some(col) = headers.iter().position(|h| h == a.image_column) else {
        bail!(
            "{} has no column '{}' (it has: {}); name the image column with --image-column",
            manifest.display(),
            a.image_column,
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{} line {}", manifest.display(), i + 2))?;
        let name = row.get(col).unwrap_or_default();
        if name.is_empty() {
            bail!("{} line {}: empty image path", manifest.display(), i + 2);
        }
        out.push((name.to_string(), base.join(name)));
    }
    if out.is_empty() {
        bail!("{} lists no images", manifest.display());
    }
    Ok(out)
}

fn predict(a: MlPredictArgs) -> Result<()> {
    let inputs = predict_inputs(&a)?;
    let device = crate::device::parse_device(&a.device)?;
    let predictor = MultiLabelPredictor::open(&a.model, device)?;
    let size = predictor.input_size as u32;
    let images = inputs
        .iter()
        .map(|(_, path)| load_for_model(path, size, a.allow_grey))
        .collect::<Result<Vec<_>>>()?;
    let probabilities = predictor.probabilities(images, a.batch_size);
    let predictions: Vec<MultiLabelPrediction> = inputs
        .iter()
        .zip(probabilities)
        .map(|((name, _), p)| MultiLabelPrediction {
            image: name.clone(),
            labels: predictor.labels(&p),
            probabilities: p,
        })
        .collect();
    println!(
        "{} model(s); thresholds {}",
        predictor.models(),
        predictor
            .classes
            .iter()
            .zip(&predictor.thresholds)
            .map(|(c, t)| format!("{c} {t:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<40} probabilities ({}) → labels",
        "image",
        predictor.classes.join(", ")
    );
    for p in &predictions {
        let probs: Vec<String> = p.probabilities.iter().map(|v| format!("{v:.3}")).collect();
        println!(
            "{:<40} {} → {}",
            p.image,
            probs.join(" "),
            p.labels.join(";")
        );
    }
    if let Some(out) = &a.out {
        crate::training::run_dir::ensure_dir(out)?;
        write_atomic(
            &out.join("predictions.csv"),
            csv_text(&predictor.classes, &predictions).as_bytes(),
        )?;
        write_json_atomic(
            &out.join("predictions.json"),
            &serde_json::json!({
                "model": a.model,
                "models": predictor.models(),
                "classes": predictor.classes,
                "thresholds": predictor.thresholds,
                "predictions": predictions,
            }),
        )?;
        println!("predictions: {}", out.display());
    }
    Ok(())
}

fn cv(a: MlCvArgs) -> Result<()> {
    let mut cfg = match (&a.config, &a.labels) {
        (Some(path), _) => MultiLabelConfig::from_toml_file(path)?,
        (None, Some(labels)) => MultiLabelConfig::preset(
            a.preset,
            labels.clone(),
            a.arch.as_deref().unwrap_or("resnet18"),
        ),
        (None, None) if a.resume => {
            MultiLabelConfig::from_toml_file(&a.out.join(crate::training::run_dir::CONFIG_FILE))?
        }
        (None, None) => bail!("give --labels TABLE.csv (or --config, or --resume an existing run)"),
    };
    if let Some(v) = a.labels {
        cfg.data.labels = v;
    }
    if let Some(v) = a.root {
        cfg.data.root = Some(v);
    }
    if let Some(v) = a.weights {
        // Without --arch, the architecture follows the weights (an explicit --arch is checked
        // against them when the run starts).
        cfg.model.arch = crate::weights::registry::Registry::open(None).get(&v)?.arch;
        cfg.model.weights = Some(v);
    }
    if let Some(v) = a.arch {
        cfg.model.arch = v;
    }
    if let Some(v) = a.input_size {
        cfg.model.input_size = v;
    }
    let cols = &mut cfg.data.columns;
    if let Some(v) = a.image_column {
        cols.image = v;
    }
    if let Some(v) = a.labels_column {
        cols.labels = v;
    }
    if let Some(v) = a.class_columns {
        cols.class_columns = v;
    }
    if let Some(v) = a.group {
        cols.group = Some(v);
    }
    cols.allow_empty |= a.allow_empty;
    if let Some(v) = a.ignore_labels {
        cols.ignore = v;
    }
    if let Some(v) = a.classes {
        cfg.data.classes = Some(v);
    }
    if let Some(v) = a.folds {
        cfg.protocol.folds = v;
    }
    if let Some(v) = a.seeds {
        cfg.protocol.seeds = v;
    }
    if let Some(v) = a.test_fraction {
        cfg.protocol.test_fraction = v;
    }
    let t = &mut cfg.training;
    if let Some(v) = a.epochs {
        t.epochs = v;
    }
    if let Some(v) = a.batch_size {
        t.batch_size = v;
    }
    if let Some(v) = a.swa_start {
        t.swa_start = v;
    }
    if let Some(v) = a.patience {
        t.patience = v;
    }
    if let Some(v) = a.loss {
        t.loss = match v.as_str() {
            "focal" => MultiLabelLoss::default(),
            "bce" => MultiLabelLoss::Bce,
            other => bail!("unknown loss '{other}'; use focal or bce"),
        };
    }
    if let Some(v) = a.device {
        t.device = v;
    }
    let opts = CvOptions {
        resume: a.resume,
        progress: !a.quiet,
        stop_after_models: a.stop_after_models,
    };
    let Some(report) = run_cv(&cfg, &a.out, &opts)? else {
        println!(
            "stopped as asked; continue with `myoscope multilabel cv --out {} --resume`",
            a.out.display()
        );
        return Ok(());
    };
    println!(
        "{} models, scored on the {} part: macro F1 {:.3} ± {:.3}, micro F1 {:.3} ± {:.3}, macro recall {:.3} ± {:.3}",
        report.models,
        report.scored_on,
        report.macro_f1.mean,
        report.macro_f1.sd,
        report.micro_f1.mean,
        report.micro_f1.sd,
        report.macro_recall.mean,
        report.macro_recall.sd
    );
    for c in &report.per_class {
        println!(
            "  {:<16} F1 {:.3} ± {:.3}  (support {})",
            c.class, c.f1.mean, c.f1.sd, c.support
        );
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    println!("results: {}", a.out.display());
    Ok(())
}
