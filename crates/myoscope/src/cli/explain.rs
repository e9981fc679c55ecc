//! `myoscope explain`: Grad-CAM heat-maps of photos, the visualisation test's AI-focused and
//! AI-unfocused images, contact sheets per slide, and the pointing game against lesion masks.
use crate::ensemble::Ensemble;
use crate::explain::gradcam::CamMethod;
use crate::explain::job::{run as explain, ClassChoice, ExplainOptions};
use crate::explain::photos::{from_files, from_manifest, Columns};
use crate::training::LoadedModel;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    PatchWeighted,
    Plain,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A run directory (`train`), an ensemble (`cv`), or a `demo` output folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Ensemble stage to explain (default: the first, `main` or `step1`).
    #[arg(long)]
    pub stage: Option<String>,
    /// A manifest of photos (optional label, slide and lesion-mask columns).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Photo files.
    pub photos: Vec<PathBuf>,
    /// Heat-map method drawn in the pictures (patch-weighted needs a patch grid).
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// Trunk layer for the heat-map (default: the last feature map); a wrong name lists them.
    #[arg(long)]
    pub layer: Option<String>,
    /// Class to explain: `predicted`, `true` (the manifest label) or a class name.
    #[arg(long, default_value = "predicted")]
    pub class: String,
    /// Score the heat-maps against the manifest's lesion masks (pointing_game.json).
    #[arg(long)]
    pub pointing_game: bool,
    #[arg(long, default_value = "path")]
    pub path_column: String,
    #[arg(long, default_value = "label")]
    pub label: String,
    #[arg(long, default_value = "slide")]
    pub slide: String,
    #[arg(long, default_value = "mask")]
    pub mask_column: String,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub quiet: bool,
}

/// The models behind `--model`, and the manifest a demo folder implies.
fn open_models(
    a: &ExplainArgs,
    device: tch::Device,
) -> Result<(Vec<LoadedModel>, Option<PathBuf>)> {
    let dir = &a.model;
    if dir.join(crate::ensemble::ENSEMBLE_FILE).is_file() {
        let ens = Ensemble::open(dir)?;
        let stage = match &a.stage {
            Some(s) => s.clone(),
            None => ens.manifest.stages[0].stage.name.clone(),
        };
        return Ok((ens.load_stage(&stage, device)?, None));
    }
    if dir.join("run").join("model.json").is_file() {
        // A `myoscope demo` folder: its model and its held-out photos with lesion masks.
        let test = dir.join("data").join("test.csv");
        return Ok((
            vec![LoadedModel::from_run_dir(&dir.join("run"), device)?],
            test.is_file().then_some(test),
        ));
    }
    Ok((vec![LoadedModel::from_run_dir(dir, device)?], None))
}

pub fn run(a: ExplainArgs) -> Result<()> {
    let device = crate::device::parse_device(&a.device)?;
    let (models, implied_manifest) = open_models(&a, device)?;
    let cols = Columns {
        path: &a.path_column,
        label: &a.label,
        slide: &a.slide,
        mask: &a.mask_column,
    };
    let items = match (&a.manifest, a.photos.is_empty(), &implied_manifest) {
        (Some(m), _, _) => from_manifest(m, &cols)?,
        (None, false, _) => from_files(&a.photos),
        (None, true, Some(m)) => from_manifest(m, &cols)?,
        (None, true, None) => bail!("nothing to explain: give photo files or --manifest"),
    };
    if a.pointing_game && !items.iter().any(|i| i.mask.is_some()) {
        bail!(
            "--pointing-game needs lesion masks: a manifest with a '{}' column",
            a.mask_column
        );
    }
    let grid = models[0].spec.model.grid;
    let method = match a.method {
        Some(MethodArg::Plain) => CamMethod::Plain,
        Some(MethodArg::PatchWeighted) if grid < 2 => {
            bail!("--method patch-weighted needs a patch grid; this model is a plain classifier (grid 1)")
        }
        Some(MethodArg::PatchWeighted) => CamMethod::PatchWeighted,
        None if grid < 2 => CamMethod::Plain,
        None => CamMethod::PatchWeighted,
    };
    let class = match a.class.as_str() {
        "predicted" => ClassChoice::Predicted,
        "true" => ClassChoice::True,
        other => ClassChoice::Named(other.to_string()),
    };
    let report = explain(
        &models,
        &items,
        &ExplainOptions {
            out: a.out.clone(),
            method,
            class,
            layer: a.layer.clone(),
            pointing_game: a.pointing_game,
            progress: !a.quiet,
        },
    )?;
    println!(
        "{} photos explained with {} Grad-CAM at layer {} ({} model{}) → {}",
        report.photos.len(),
        method.name(),
        report.layer,
        report.models,
        if report.models == 1 { "" } else { "s" },
        display(&a.out.join("photos"))
    );
    if let Some(pg) = &report.pointing_game {
        for (m, s) in pg {
            println!(
                "pointing game ({m}): hit rate {:.3} ({:.3} within 15 px) on {} lesion photos; heat mass inside lesions {:.3} (lesion area {:.3})",
                s.hit_rate, s.hit_rate_within_15px, s.photos, s.mean_mass_inside, s.mean_lesion_area
            );
        }
    }
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
