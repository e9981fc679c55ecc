//! `myoscope evaluate`: an ensemble on its held-out test set → metrics.json, ROC and
//! confusion pictures (SVG + PNG) and report.html.
use crate::cv::Plan;
use crate::ensemble::Ensemble;
use crate::evaluation::cv_report::{evaluate, CvMetrics, EvaluateOptions};
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Ensemble directory written by `myoscope cv`.
    #[arg(long)]
    pub ensemble: PathBuf,
    /// Folder for metrics.json, the pictures and report.html.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Also draw patch-weighted Grad-CAM heat-maps of this many test photos (spread over the
    /// classes) into report.html, with their AI-focused and AI-unfocused images.
    #[arg(long, default_value_t = 0)]
    pub heatmaps: usize,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: EvaluateArgs) -> Result<()> {
    let device = crate::device::parse_device(&a.device)?;
    let report = evaluate_to(
        &a.ensemble,
        &a.out,
        device,
        a.batch_size,
        !a.quiet,
        a.heatmaps,
    )?;
    println!("report: {}", report.display());
    Ok(())
}

/// Evaluates the ensemble in `dir`, writes everything into `out`, prints the headline and
/// returns the report's path.
pub fn evaluate_to(
    dir: &Path,
    out: &Path,
    device: tch::Device,
    batch_size: usize,
    progress: bool,
    heatmaps: usize,
) -> Result<PathBuf> {
    let ens = Ensemble::open(dir)?;
    let plan = Plan::open(dir)?;
    let metrics = evaluate(
        &ens,
        &plan,
        &EvaluateOptions {
            device,
            batch_size,
            progress,
        },
    )?;
    print_summary(&metrics);
    let explained = if heatmaps > 0 {
        Some(explain_test_photos(
            &ens, &plan, out, device, heatmaps, progress,
        )?)
    } else {
        None
    };
    crate::evaluation::report::write_all_with(out, &metrics, explained.as_ref())
}

/// Heat-maps of `n` test photos of the first stage, taken round-robin over the classes so
/// every class is shown, written to `out/heatmaps`.
fn explain_test_photos(
    ens: &Ensemble,
    plan: &Plan,
    out: &Path,
    device: tch::Device,
    n: usize,
    progress: bool,
) -> Result<crate::explain::job::ExplainReport> {
    use crate::explain::{gradcam::CamMethod, job, photos::PhotoItem};
    let stage = &ens.manifest.stages[0].stage.name;
    let models = ens.load_stage(stage, device)?;
    let ds = plan.test_photos();
    let mut by_class: Vec<Vec<&crate::data::Sample>> = vec![Vec::new(); ds.classes.len()];
    for s in &ds.samples {
        by_class[s.label].push(s);
    }
    let mut picked = Vec::new();
    for round in 0.. {
        let before = picked.len();
        for class in &by_class {
            if picked.len() < n {
                if let Some(s) = class.get(round) {
                    picked.push(PhotoItem {
                        path: s.path.clone(),
                        key: s.rel_path.clone(),
                        label: ds.labelled.then(|| ds.classes[s.label].clone()),
                        slide: None,
                        mask: None,
                    });
                }
            }
        }
        if picked.len() == before || picked.len() >= n {
            break;
        }
    }
    let grid = models[0].spec.model.grid;
    job::run(
        &models,
        &picked,
        &job::ExplainOptions {
            out: out.join("heatmaps"),
            method: if grid > 1 {
                CamMethod::PatchWeighted
            } else {
                CamMethod::Plain
            },
            class: job::ClassChoice::Predicted,
            layer: None,
            pointing_game: false,
            progress,
        },
    )
}

fn print_summary(m: &CvMetrics) {
    let fmt = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.4}"));
    for s in &m.stages {
        println!(
            "{:<22} ensemble: AUC {} / accuracy {:.4} per photo, AUC {} / accuracy {:.4} per slide; single models: accuracy {:.4} ± {:.4} per slide",
            s.stage,
            fmt(s.ensemble.per_image.auc),
            s.ensemble.per_image.accuracy,
            fmt(s.ensemble.per_slide.auc),
            s.ensemble.per_slide.accuracy,
            s.single_models.per_slide.accuracy_mean,
            s.single_models.per_slide.accuracy_sd
        );
        if let Some(t) = s
            .thresholds
            .as_ref()
            .and_then(|t| t.sensitivity_first.map(|v| (v, t)))
        {
            if let Some(c) = t.1.test_per_slide.get("sensitivity_first") {
                println!(
                    "{:<22} sensitivity-first threshold {:.3}: test slides accuracy {:.4}, missed positives {}",
                    "", t.0, c.accuracy, c.counts.fn_
                );
            }
        }
    }
    if let Some(t) = &m.two_step {
        println!(
            "two-step diagnosis: group accuracy {:.4}, subtype accuracy {:.4} over {} test slides ({} uncertain)",
            t.group_accuracy, t.subtype_accuracy, t.slides, t.uncertain_slides
        );
    }
}
