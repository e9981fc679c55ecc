//! `myoscope predict`: photos or a manifest → per-image (and per-slide) probabilities.
use crate::data::{Dataset, ManifestColumns};
use crate::evaluation::svg;
use crate::inference::{confusion, predict, slide_means, write_csv, write_slide_csv};
use crate::training::LoadedModel;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Run directory written by `myoscope train`.
    #[arg(long)]
    pub model: PathBuf,
    /// A manifest (labels and slides optional) instead of loose images.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Image files to classify.
    pub images: Vec<PathBuf>,
    #[arg(long, default_value = "path")]
    pub path_column: String,
    /// Label column of the manifest, if it has one (for accuracy and a confusion matrix).
    #[arg(long, default_value = "label")]
    pub label: String,
    /// Slide column of the manifest: adds slide-level mean probabilities.
    #[arg(long)]
    pub slide: Option<String>,
    /// Folder for predictions.csv/.json (and slides.csv); default: print only.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Inference engine: libtorch, or ONNX Runtime on the CPU (uses the run's exported
    /// model.onnx, or exports it in memory).
    #[arg(long, value_enum, default_value = "torch")]
    pub engine: crate::onnx::Engine,
    /// Intra-op threads for ONNX Runtime (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// fp32, or bf16 (weights and input in bfloat16: faster on CPUs with AVX-512 BF16 or AMX;
    /// `myoscope bench --precision-model` measures what it changes).
    #[arg(long, default_value = "fp32")]
    pub precision: crate::precision::Precision,
}

pub fn run(a: PredictArgs) -> Result<()> {
    let device = crate::device::parse_device(&a.device)?;
    let mut model = LoadedModel::from_run_dir(&a.model, device)?;
    model.use_engine(a.engine, a.threads)?;
    model.set_precision(a.precision);
    let classes = model.spec.classes.clone();
    let ds = match &a.manifest {
        Some(m) => {
            let cols = ManifestColumns {
                path: a.path_column.clone(),
                label: a.label.clone(),
                slide: a.slide.clone(),
                group: None,
            };
            Dataset::from_manifest(m, &cols, Some(&classes))?
        }
        None if a.images.is_empty() => {
            anyhow::bail!("nothing to classify: give image files or --manifest")
        }
        None => Dataset::unlabelled_files(&a.images, &classes)?,
    };
    let preds = predict(&model, ds, a.batch_size, true)?;
    let slides = slide_means(&preds, &classes);
    println!(
        "{:<40} {:<20} probabilities ({})",
        "image",
        "predicted",
        classes.join(", ")
    );
    for p in &preds {
        let probs: Vec<String> = p.probabilities.iter().map(|v| format!("{v:.3}")).collect();
        println!("{:<40} {:<20} {}", p.path, p.predicted, probs.join(" "));
    }
    for s in &slides {
        println!(
            "slide {:<34} {:<20} mean of {} image(s)",
            s.slide, s.predicted, s.images
        );
    }
    let image_cm = confusion(
        &classes,
        preds.iter().map(|p| (p.truth.as_ref(), &p.predicted)),
    );
    if let Some(cm) = &image_cm {
        println!(
            "image accuracy {:.4} ({} images)",
            cm.accuracy(),
            cm.total()
        );
    }
    let slide_cm = confusion(
        &classes,
        slides.iter().map(|s| (s.truth.as_ref(), &s.predicted)),
    );
    if let Some(cm) = &slide_cm {
        println!(
            "slide accuracy {:.4} ({} slides)",
            cm.accuracy(),
            cm.total()
        );
    }
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out)?;
        write_csv(&out.join("predictions.csv"), &classes, &preds)?;
        std::fs::write(
            out.join("predictions.json"),
            serde_json::to_string_pretty(&serde_json::json!({
                "classes": classes,
                "images": preds,
                "slides": slides,
                "image_accuracy": image_cm.as_ref().map(|c| c.accuracy()),
                "slide_accuracy": slide_cm.as_ref().map(|c| c.accuracy()),
            }))?,
        )?;
        if !slides.is_empty() {
            write_slide_csv(&out.join("slides.csv"), &classes, &slides)?;
        }
        if let Some(cm) = &image_cm {
            std::fs::write(
                out.join("confusion_images.svg"),
                svg::confusion_matrix(cm, "Images (centre square)"),
            )?;
        }
        if let Some(cm) = &slide_cm {
            std::fs::write(
                out.join("confusion_slides.svg"),
                svg::confusion_matrix(cm, "Slides (mean probability)"),
            )?;
        }
        println!("predictions written to {}", out.display());
    }
    Ok(())
}
