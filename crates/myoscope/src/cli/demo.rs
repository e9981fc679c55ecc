//! `myoscope demo`: the whole pipeline on a built-in data set. No muscle-biopsy data set is
//! public, so it renders synthetic H&E muscle photos (normal, inflammatory infiltrates,
//! perifascicular atrophy, central nuclei), holds out whole slides for testing, trains a small
//! aggregated DenseNet on the rest and reports held-out accuracy per image and per slide.
use crate::config::{LrSchedule, TrainConfig};
use crate::cv::config::{CvSettings, DiagnosticGroup, Hierarchy};
use crate::cv::{CvConfig, CvOptions};
use crate::data::split::grouped_holdout;
use crate::data::Dataset;
use crate::evaluation::svg;
use crate::inference::{confusion, predict, slide_means, write_csv, write_slide_csv};
use crate::synth::{manifest_columns, write_dataset, SynthClass, SynthSpec};
use crate::training::{train, LoadedModel, TrainOptions};
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder (data, run directory, predictions, metrics.json).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epochs per model (each fold model with --folds).
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Synthetic slides per class (3 photos each).
    #[arg(long, default_value_t = 32)]
    pub slides_per_class: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub quiet: bool,
    /// Run Kabeya et al.'s whole protocol instead of one training: a test hold-out by slide,
    /// this many cross-validation folds, the ensemble, and the evaluation report (report.html,
    /// ROC and confusion PNGs).
    #[arg(long)]
    pub folds: Option<usize>,
    /// With --folds: the two-step diagnosis (myositis or not, then the subtype within the
    /// group) instead of one four-class step; three times the training.
    #[arg(long, requires = "folds")]
    pub two_step: bool,
}

/// The demo's model: the aggregated classifier with a small trunk that trains in minutes on
/// two CPU cores. Everything else is the paper's recipe except the learning rate, raised
/// because the trunk starts from random weights rather than ImageNet, and decayed (cosine) so
/// the short run settles.
pub fn demo_config(manifest: &Path, a: &DemoArgs) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.data.source = manifest.to_path_buf();
    c.data.columns = manifest_columns();
    c.data.validation_fraction = 0.2;
    c.model.arch = "densenet-tiny".into();
    c.model.grid = 4;
    c.model.input_size = 128;
    c.training.epochs = a.epochs;
    c.training.batch_size = 16;
    c.training.seed = a.seed;
    c.training.device = a.device.clone();
    c.training.optimizer.lr = 2e-3;
    c.training.lr_schedule = LrSchedule::Cosine { min_lr: 2e-5 };
    c
}

pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let manifest = render_data(&a)?;
    if let Some(folds) = a.folds {
        return run_protocol(&a, &manifest, folds, t0);
    }
    let data_dir = a.out.join("data");

    // Hold out a quarter of each class's slides for the final test, as whole slides.
    let cols = manifest_columns();
    let all = Dataset::from_manifest(&manifest, &cols, None)?;
    let held = grouped_holdout(&all, 0.25, a.seed ^ 0x7e57);
    let train_manifest = data_dir.join("train.csv");
    let test_manifest = data_dir.join("test.csv");
    subset_manifest(&manifest, &train_manifest, &all, &held.train)?;
    subset_manifest(&manifest, &test_manifest, &all, &held.validation)?;

    let run_dir = a.out.join("run");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("cannot clear {}", run_dir.display()))?;
    }
    let cfg = demo_config(&train_manifest, &a);
    let report = train(
        &cfg,
        &TrainOptions {
            out: run_dir.clone(),
            resume: false,
            progress: !a.quiet,
            stop_after: None,
            split: None,
            init_from: None,
        },
    )?;
    super::train::write_pictures(&run_dir, &report)?;

    let device = crate::device::parse_device(&a.device)?;
    let model = LoadedModel::from_run_dir(&run_dir, device)?;
    let classes = model.spec.classes.clone();
    let test = Dataset::from_manifest(&test_manifest, &cols, Some(&classes))?;
    let preds = predict(&model, test, 16, !a.quiet)?;
    let slides = slide_means(&preds, &classes);
    let image_cm = confusion(
        &classes,
        preds.iter().map(|p| (p.truth.as_ref(), &p.predicted)),
    )
    .context("the held-out set has no labelled images")?;
    let slide_cm = confusion(
        &classes,
        slides.iter().map(|s| (s.truth.as_ref(), &s.predicted)),
    )
    .context("the held-out set has no slides")?;
    write_csv(&a.out.join("predictions.csv"), &classes, &preds)?;
    write_slide_csv(&a.out.join("slides.csv"), &classes, &slides)?;
    std::fs::write(
        a.out.join("confusion_images.svg"),
        svg::confusion_matrix(&image_cm, "Held-out synthetic photos"),
    )?;
    std::fs::write(
        a.out.join("confusion_slides.svg"),
        svg::confusion_matrix(&slide_cm, "Held-out synthetic slides"),
    )?;
    let metrics = serde_json::json!({
        "accuracy": image_cm.accuracy(),
        "slide_accuracy": slide_cm.accuracy(),
        "test_images": image_cm.total(),
        "test_slides": slide_cm.total(),
        "classes": classes,
        "confusion_images": image_cm.counts,
        "confusion_slides": slide_cm.counts,
        "recall_per_class": image_cm.recall(),
        "seed": a.seed,
        "best_validation_accuracy": report.best_validation_accuracy,
        "best_epoch": report.best_epoch,
        "train_images": report.train_images,
        "validation_images": report.validation_images,
        "seconds": t0.elapsed().as_secs_f64(),
        "run_directory": "run",
    });
    crate::training::checkpoint::write_json_atomic(&a.out.join("metrics.json"), &metrics)?;
    println!(
        "held-out accuracy: {:.4} per photo ({} photos), {:.4} per slide ({} slides)",
        image_cm.accuracy(),
        image_cm.total(),
        slide_cm.accuracy(),
        slide_cm.total()
    );
    println!("results in {}:", a.out.display());
    println!(
        "  metrics.json, predictions.csv, slides.csv, confusion_images.svg, confusion_slides.svg"
    );
    println!("  run/ (config.toml, run.json, best.safetensors, metrics.json, training_curves.svg)");
    println!("  data/ (synthetic photos, lesion masks, manifests)");
    Ok(())
}

/// Renders the synthetic slides into OUT/data and returns the manifest.
fn render_data(a: &DemoArgs) -> Result<PathBuf> {
    let data_dir = a.out.join("data");
    let spec = SynthSpec {
        slides_per_class: a.slides_per_class,
        photos_per_slide: 3,
        seed: a.seed,
        ..SynthSpec::default()
    };
    eprintln!(
        "rendering {} synthetic H&E slides × {} photos into {}",
        spec.slides_per_class * 4,
        spec.photos_per_slide,
        data_dir.display()
    );
    write_dataset(&data_dir, &spec)
}

/// The demo's two-step hierarchy, shaped like the paper's: the inflammatory myopathies
/// (infiltrates; perifascicular atrophy as in dermatomyositis) against the rest (normal
/// muscle; central nuclei as in a hereditary myopathy).
fn demo_hierarchy() -> Hierarchy {
    let group = |name: &str, subtypes: [SynthClass; 2]| DiagnosticGroup {
        name: name.into(),
        subtypes: subtypes.iter().map(|c| c.name().to_string()).collect(),
    };
    Hierarchy {
        positive_group: "myositis".into(),
        groups: vec![
            group(
                "myositis",
                [SynthClass::Inflammatory, SynthClass::PerifascicularAtrophy],
            ),
            group(
                "non_myositis",
                [SynthClass::Normal, SynthClass::CentralNuclei],
            ),
        ],
    }
}

/// `demo --folds K`: the cross-validated ensemble and its evaluation report.
fn run_protocol(a: &DemoArgs, manifest: &Path, folds: usize, t0: std::time::Instant) -> Result<()> {
    let base = demo_config(manifest, a);
    let config = CvConfig {
        data: base.data,
        model: base.model,
        training: base.training,
        cv: CvSettings {
            folds,
            test_fraction: 0.25,
            seed: a.seed ^ 0x7e57,
        },
        hierarchy: a.two_step.then(demo_hierarchy),
        ..Default::default()
    };
    let ensemble_dir = a.out.join("ensemble");
    if ensemble_dir.exists() {
        std::fs::remove_dir_all(&ensemble_dir)
            .with_context(|| format!("cannot clear {}", ensemble_dir.display()))?;
    }
    crate::cv::run(&CvOptions {
        out: ensemble_dir.clone(),
        config: Some(config),
        fold: None,
        merge_only: false,
        progress: !a.quiet,
        stop_after: None,
    })?;
    let device = crate::device::parse_device(&a.device)?;
    let report = super::evaluate::evaluate_to(&ensemble_dir, &a.out, device, 16, !a.quiet, 8)?;
    println!("protocol finished in {:.0} s", t0.elapsed().as_secs_f64());
    println!("results in {}:", a.out.display());
    println!(
        "  report.html ({}), metrics.json, ROC and confusion pictures (*.png, *.svg)",
        report.display()
    );
    println!("  ensemble/ (cv.toml, assignment.csv, ensemble.json, one run directory per stage and fold)");
    println!("  data/ (synthetic photos, lesion masks, manifest)");
    Ok(())
}

/// Writes the manifest rows of `indices` (1-based rows of `ds`) to a new manifest beside it.
fn subset_manifest(src: &Path, dst: &Path, ds: &Dataset, indices: &[usize]) -> Result<()> {
    let mut reader = csv::Reader::from_path(src)?;
    let headers = reader.headers()?.clone();
    let rows: Vec<csv::StringRecord> = reader.records().collect::<std::result::Result<_, _>>()?;
    let mut w = csv::Writer::from_path(dst)?;
    w.write_record(&headers)?;
    for &i in indices {
        w.write_record(&rows[ds.samples[i].row - 1])?;
    }
    w.flush()?;
    Ok(())
}
