//! `myoscope export onnx`: a run directory or every model of an ensemble → `.onnx` files
//! (our own writer) with a JSON sidecar each, checked against libtorch when ONNX Runtime is
//! there.
use crate::data::loader::{centre_items, spawn_epoch, EpochPlan, ImageSource};
use crate::data::{Dataset, ManifestColumns};
use crate::onnx::calibrate::Calibration;
use crate::onnx::export::{
    export_model, model_dirs, read_run_dir, sidecar_path, write_model, INT8_FILE,
};
use crate::onnx::quantize::export_int8;
use crate::onnx::{OnnxClassifier, ONNX_FILE};
use crate::training::{LoadedModel, ModelSpec};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub format: ExportFormat,
}

#[derive(Debug, Subcommand)]
pub enum ExportFormat {
    /// ONNX (opset 17) for ONNX Runtime and other ONNX engines; a `.json` sidecar beside each
    /// file gives classes, preprocessing and the source weights' sha256.
    Onnx(OnnxArgs),
}

#[derive(Debug, Args)]
pub struct OnnxArgs {
    /// A run directory (`myoscope train`), an ensemble (`myoscope cv`) or a demo folder.
    #[arg(long)]
    pub model: PathBuf,
    /// A `.onnx` file (single model) or a folder; default: `model.onnx` inside each run
    /// directory, where `--engine onnx` finds it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip running the exported file next to libtorch on a random batch.
    #[arg(long)]
    pub no_check: bool,
    /// Also write an int8 model (`model.int8.onnx`, for `--engine onnx-int8`): per-channel
    /// int8 weights, uint8 activations calibrated on the photos of --calibrate.
    #[arg(long, requires = "calibrate")]
    pub int8: bool,
    /// Manifest (CSV with a path column) of photos for the int8 calibration; use photos like
    /// those the model will see (e.g. its training or validation photos).
    #[arg(long)]
    pub calibrate: Option<PathBuf>,
    #[arg(long, default_value = "path")]
    pub path_column: String,
    /// How many photos of the manifest calibrate (spread evenly over it).
    #[arg(long, default_value_t = 32)]
    pub calibration_photos: usize,
    /// How the activation ranges are chosen from the calibration photos: `percentile` clips
    /// the rare extremes (see --percentile), `minmax` keeps them.
    #[arg(long, value_enum, default_value_t = RangeMethod::Percentile)]
    pub calibration: RangeMethod,
    /// The percentile kept at each end with `--calibration percentile`.
    #[arg(long, default_value_t = 99.999)]
    pub percentile: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RangeMethod {
    Percentile,
    Minmax,
}

impl OnnxArgs {
    fn calibration(&self) -> Result<Calibration> {
        Ok(match self.calibration {
            RangeMethod::Minmax => Calibration::MinMax,
            RangeMethod::Percentile => {
                if !(50.0..=100.0).contains(&self.percentile) {
                    bail!(
                        "--percentile must lie between 50 and 100, got {}",
                        self.percentile
                    );
                }
                Calibration::Percentile(self.percentile)
            }
        })
    }
}

pub fn run(a: ExportArgs) -> Result<()> {
    match a.format {
        ExportFormat::Onnx(o) => onnx(o),
    }
}

/// Where each model's file goes.
fn destination(
    out: Option<&Path>,
    run_dir: &Path,
    relative: &Path,
    single: bool,
    name: &str,
) -> Result<PathBuf> {
    Ok(match out {
        None => run_dir.join(name),
        Some(o) if o.extension().is_some_and(|e| e == "onnx") => {
            if !single {
                bail!(
                    "--out {} names one file, but the ensemble has several models; give a folder",
                    o.display()
                );
            }
            o.to_path_buf()
        }
        Some(o) => o.join(relative).join(name),
    })
}

fn onnx(a: OnnxArgs) -> Result<()> {
    let dirs = model_dirs(&a.model)?;
    let single = dirs.len() == 1;
    for (dir, relative) in &dirs {
        let (spec, vars, sha) = read_run_dir(dir)?;
        let (bytes, sidecar) = export_model(&spec, &vars, &sha)?;
        let file = destination(a.out.as_deref(), dir, relative, single, ONNX_FILE)?;
        write_model(&file, &bytes, &sidecar)?;
        println!(
            "{} → {} ({:.1} MB, {} {}² {}×{}; sidecar {})",
            dir.display(),
            file.display(),
            bytes.len() as f64 / 1e6,
            spec.model.arch,
            spec.model.input_size,
            spec.model.grid,
            spec.model.grid,
            sidecar_path(&file).display()
        );
        if !a.no_check {
            check(dir, &file)?;
        }
        if let (true, Some(manifest)) = (a.int8, &a.calibrate) {
            let file = destination(a.out.as_deref(), dir, relative, single, INT8_FILE)?;
            let file = if file.extension().is_some_and(|e| e == "onnx") && a.out.is_some() && single
            {
                file.with_extension("int8.onnx")
            } else {
                file
            };
            let how = a.calibration()?;
            let (photos, batches) = calibration_batches(&spec, manifest, &a)?;
            let note = format!("{photos} photo(s) of {}", manifest.display());
            let (bytes, sidecar) = export_int8(&spec, &vars, &sha, batches, how, note, 0)?;
            write_model(&file, &bytes, &sidecar)?;
            println!(
                "{} → {} (int8, {:.1} MB, {} ranges from {photos} photo(s))",
                dir.display(),
                file.display(),
                bytes.len() as f64 / 1e6,
                how.describe()
            );
        }
    }
    Ok(())
}

type Batches = Box<dyn Iterator<Item = Result<(Vec<f32>, [i64; 4])>>>;

/// Normalised centre squares of up to `--calibration-photos` photos of the manifest, spread
/// evenly over it, one per batch.
fn calibration_batches(
    spec: &ModelSpec,
    manifest: &Path,
    a: &OnnxArgs,
) -> Result<(usize, Batches)> {
    let cols = ManifestColumns {
        path: a.path_column.clone(),
        label: a.path_column.clone(),
        slide: None,
        group: None,
    };
    let all = Dataset::from_manifest(manifest, &cols, None)
        .with_context(|| format!("reading the calibration manifest {}", manifest.display()))?;
    let n = all.samples.len();
    if n == 0 {
        bail!("{} lists no photos to calibrate on", manifest.display());
    }
    let k = a.calibration_photos.clamp(1, n);
    let picked: Vec<usize> = (0..k).map(|i| i * n / k).collect();
    let ds = all.subset(&picked);
    let m = &spec.model;
    let src = Arc::new(ImageSource::new(
        Arc::new(ds),
        m.input_size as u32,
        m.normalization.clone(),
    ));
    let plan = EpochPlan {
        items: centre_items(k),
        // One photo per pass: the calibration model outputs every activation at once.
        batch_size: 1,
        augmentation: None,
        shuffle: false,
        seed: 0,
        epoch: 0,
    };
    let bar = crate::progress::bar(true, k as u64, "calibrating", "photos");
    let s = m.input_size;
    let batches = spawn_epoch(src, plan).into_iter().map(move |b| {
        let b = b?;
        bar.inc(b.items.len() as u64);
        let shape = [b.items.len() as i64, 3, s, s];
        Ok((b.pixels, shape))
    });
    Ok((k, Box::new(batches)))
}

/// Runs the file in ONNX Runtime and the run directory in libtorch on the same random
/// batch and prints the largest probability difference.
fn check(dir: &Path, file: &Path) -> Result<()> {
    if let Err(e) = crate::onnx::runtime::init() {
        println!("  not checked: {e:#}");
        return Ok(());
    }
    let torch = LoadedModel::from_run_dir(dir, tch::Device::Cpu)?;
    let onnx = OnnxClassifier::load(file, 0)?;
    let m = &torch.spec.model;
    tch::manual_seed(0);
    let images = tch::Tensor::randn(
        [2, m.in_channels, m.input_size, m.input_size],
        (tch::Kind::Float, tch::Device::Cpu),
    );
    let expect = torch.probabilities(&images)?;
    let got = onnx.probabilities(&images)?;
    let diff = (expect - got).abs().max().double_value(&[]);
    println!(
        "  checked in ONNX Runtime against libtorch on 2 random images: max |Δp| = {diff:.2e}"
    );
    if diff > 1e-3 {
        bail!("the exported model disagrees with libtorch (max |Δp| = {diff:.2e}); please report this");
    }
    Ok(())
}
