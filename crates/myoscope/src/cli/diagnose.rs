//! `myoscope diagnose`: photos of one or more slides → per slide the group probability, the
//! call at the threshold, an uncertainty flag and the subtype probabilities within the group.
use crate::data::{Dataset, ManifestColumns};
use crate::diagnose::{diagnose, DiagnoseOptions};
use crate::ensemble::Ensemble;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// Ensemble directory written by `myoscope cv`.
    #[arg(long)]
    pub ensemble: PathBuf,
    /// Photos, or folders of photos (a folder is one slide, named after it).
    pub inputs: Vec<PathBuf>,
    /// Slide name for loose photos given on the command line (default: one slide "slide").
    #[arg(long, default_value = "slide")]
    pub slide: String,
    /// A manifest with a path column and a slide column instead of loose photos.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    #[arg(long, default_value = "path")]
    pub path_column: String,
    #[arg(long, default_value = "slide")]
    pub slide_column: String,
    /// Threshold on the positive group's probability (default: the ensemble's, 0.5 unless configured).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Flag slides whose positive probability lies in [LOW, HIGH] (default: the ensemble's).
    #[arg(long, num_args = 2, value_names = ["LOW", "HIGH"])]
    pub uncertainty_band: Option<Vec<f64>>,
    /// Write diagnoses.json here as well as printing them.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Inference engine: libtorch, or ONNX Runtime on the CPU (uses each model's exported
    /// model.onnx, or exports it in memory).
    #[arg(long, value_enum, default_value = "torch")]
    pub engine: crate::onnx::Engine,
}

pub fn run(a: DiagnoseArgs) -> Result<()> {
    let ens = Ensemble::open(&a.ensemble)?;
    let device = crate::device::parse_device(&a.device)?;
    if let Some(t) = a.threshold {
        if !(0.0..=1.0).contains(&t) {
            bail!("--threshold must be in [0, 1], got {t}");
        }
    }
    let ds = photos(&a, &ens)?;
    let diagnoses = diagnose(
        &ens,
        &ds,
        &DiagnoseOptions {
            threshold: a.threshold,
            uncertainty_band: a.uncertainty_band.as_ref().map(|v| [v[0], v[1]]),
            batch_size: a.batch_size,
            device,
            progress: true,
            engine: a.engine,
        },
    )?;
    for d in &diagnoses {
        let subtypes: Vec<String> = d
            .subtype_probabilities
            .iter()
            .map(|(k, v)| format!("{k} {v:.3}"))
            .collect();
        println!(
            "slide {} ({} photo(s)): P({}) = {:.3} → {} at threshold {:.2}{}{}",
            d.slide,
            d.images,
            d.positive_group,
            d.positive_probability,
            d.call,
            d.threshold,
            if d.uncertain {
                "  [UNCERTAIN: second look advised]"
            } else {
                ""
            },
            match &d.subtype {
                Some(s) if subtypes.is_empty() => format!("; subtype {s}"),
                Some(s) => format!("; subtype {s} ({})", subtypes.join(", ")),
                None => String::new(),
            }
        );
    }
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out)?;
        crate::training::checkpoint::write_json_atomic(&out.join("diagnoses.json"), &diagnoses)?;
        println!("written {}", out.join("diagnoses.json").display());
    }
    Ok(())
}

/// The photos to diagnose, each with its slide.
fn photos(a: &DiagnoseArgs, ens: &Ensemble) -> Result<Dataset> {
    let classes = ens.manifest.stages[0].stage.classes.clone();
    if let Some(m) = &a.manifest {
        let cols = ManifestColumns {
            path: a.path_column.clone(),
            label: a.path_column.clone(),
            slide: Some(a.slide_column.clone()),
            group: None,
        };
        let mut ds = Dataset::from_manifest(m, &cols, None)?;
        ds.labelled = false;
        ds.classes = classes;
        for s in &mut ds.samples {
            s.label = 0;
        }
        return Ok(ds);
    }
    if a.inputs.is_empty() {
        bail!("nothing to diagnose: give photos, folders of photos (one per slide), or --manifest");
    }
    let mut files = Vec::new();
    let mut slides = Vec::new();
    for input in &a.inputs {
        if input.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(input)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| crate::data::manifest::is_image_path(p))
                .collect();
            if in_dir.is_empty() {
                bail!("{} holds no photos (jpg, png, tif)", input.display());
            }
            in_dir.sort();
            let name = input.file_name().map_or_else(
                || input.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            slides.extend(std::iter::repeat_n(name, in_dir.len()));
            files.extend(in_dir);
        } else {
            files.push(input.clone());
            slides.push(a.slide.clone());
        }
    }
    let mut ds = Dataset::unlabelled_files(&files, &classes)?;
    for (s, slide) in ds.samples.iter_mut().zip(slides) {
        s.slide = Some(slide);
    }
    Ok(ds)
}
