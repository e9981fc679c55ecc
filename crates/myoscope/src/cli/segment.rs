//! `myoscope segment train | predict | evaluate`: DEDL nucleus segmentation (Singh & Cirrone)
//! on DAPI / fluorescence images and multi-page TIFFs.
use crate::fluorescence::{read_channel, ChannelSelector, Normalisation};
use crate::progress;
use crate::segmentation::config::{AppChoice, LossChoice, Preset, SegTrainConfig};
use crate::segmentation::dataset::{load_all, SegManifest};
use crate::segmentation::models::Arch;
use crate::segmentation::outputs::geojson::{
    mask_to_feature_collection, write_geojson, GeoJsonOptions,
};
use crate::segmentation::outputs::mask_files::{write_mask_png, write_mask_tiff, MaskEncoding};
use crate::segmentation::outputs::overlay::{grey_from_values, write_overlay_png, OverlayStyle};
use crate::segmentation::outputs::LabelImage;
use crate::segmentation::predict::{argmax_mask, probabilities, tile_count, TiledInference};
use crate::segmentation::run::SegmentationRun;
use crate::segmentation::tiling::PlaneStack;
use crate::segmentation::train::{evaluate, train, SegTrainOptions};
use crate::training::checkpoint::write_json_atomic;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct SegmentArgs {
    #[command(subcommand)]
    pub command: SegmentCommand,
}

#[derive(Debug, Subcommand)]
pub enum SegmentCommand {
    /// Train a UNet/UNet++ on a manifest of image/mask pairs (columns image, mask, split).
    Train(Box<SegTrainArgs>),
    /// Segment images or TIFF channels: full-size mask (PNG, TIFF), overlay, QuPath GeoJSON.
    Predict(SegPredictArgs),
    /// Score a model on a manifest split: IoU, Dice (micro, macro, per class) and pixel accuracy.
    Evaluate(SegEvaluateArgs),
}

#[derive(Debug, Args)]
pub struct SegTrainArgs {
    /// Run directory to write (or to continue with --resume).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub resume: bool,
    /// TOML config (a saved config.toml works); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// CSV manifest with image, mask and split (train/validation/test) columns.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Folder the manifest's paths are relative to (default: the manifest's folder).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// faithful (the paper as stated: 480² tiles, fully-connected APP) or corrected (default).
    #[arg(long, default_value = "corrected")]
    pub preset: Preset,
    /// Channel name (DAPI) or 1-based position.
    #[arg(long)]
    pub channel: Option<String>,
    /// unet or unetplusplus.
    #[arg(long)]
    pub arch: Option<String>,
    /// resnet18/34/50/101, efficientnet-b0..b7, ...
    #[arg(long)]
    pub encoder: Option<String>,
    #[arg(long)]
    pub depth: Option<usize>,
    /// none, fc (the paper's fully-connected APP) or conv.
    #[arg(long)]
    pub app: Option<AppChoice>,
    /// weighted-ce (the paper's), dice or ce-dice.
    #[arg(long)]
    pub loss: Option<String>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Training crop and inference tile side.
    #[arg(long)]
    pub tile: Option<usize>,
    /// Overlap of neighbouring inference tiles (smaller than the tile).
    #[arg(long)]
    pub overlap: Option<usize>,
    #[arg(long)]
    pub crops_per_image: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SegPredictArgs {
    /// A segmentation run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "segment-out")]
    pub out: PathBuf,
    /// Channel name or 1-based position (default: the one the model was trained on).
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Nuclei smaller than this many pixels are left out of the GeoJSON.
    #[arg(long, default_value_t = 10)]
    pub min_area: u64,
    /// PNG, JPEG or (multi-page) TIFF images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SegEvaluateArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Manifest with image, mask (and split) columns.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Which rows to score: test, validation, train, or all.
    #[arg(long, default_value = "test")]
    pub split: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: SegmentArgs) -> Result<()> {
    match a.command {
        SegmentCommand::Train(t) => run_train(*t),
        SegmentCommand::Predict(p) => run_predict(p),
        SegmentCommand::Evaluate(e) => run_evaluate(e),
    }
}

/// The config a training starts from: the preset, then the config file, then the flags.
pub fn train_config(a: &SegTrainArgs) -> Result<SegTrainConfig> {
    let mut cfg = match &a.config {
        Some(path) => SegTrainConfig::from_toml_file(path)?,
        None => {
            let Some(data) = &a.data else {
                bail!("give --data MANIFEST.csv (columns image, mask, split) or --config FILE");
            };
            SegTrainConfig::preset(a.preset, data.clone())
        }
    };
    if let Some(d) = &a.data {
        cfg.data.manifest = d.clone();
    }
    if let Some(r) = &a.root {
        cfg.data.root = Some(r.clone());
    }
    if let Some(c) = &a.channel {
        cfg.data.channel = c.clone();
    }
    if let Some(arch) = &a.arch {
        cfg.model.arch = arch.parse::<Arch>()?;
    }
    if let Some(e) = &a.encoder {
        cfg.model.encoder = e.clone();
    }
    if let Some(d) = a.depth {
        cfg.model.depth = d;
        cfg.model.decoder_channels =
            crate::segmentation::models::SegmentationModelSpec::default_decoder_channels(d);
    }
    let t = &mut cfg.training;
    if let Some(app) = a.app {
        t.app = app;
    }
    if let Some(l) = &a.loss {
        t.loss = match l.as_str() {
            "weighted-ce" | "ce" => LossChoice::WeightedCrossEntropy,
            "dice" => LossChoice::SoftDice,
            "ce-dice" => LossChoice::CrossEntropyDice,
            other => bail!("unknown loss '{other}'; use weighted-ce, dice or ce-dice"),
        };
    }
    macro_rules! set {
        ($field:ident) => {
            if let Some(v) = a.$field.clone() {
                t.$field = v;
            }
        };
    }
    set!(epochs);
    set!(batch_size);
    set!(tile);
    set!(crops_per_image);
    set!(overlap);
    set!(seed);
    set!(device);
    if let Some(lr) = a.lr {
        t.optimizer.lr = lr;
    }
    Ok(cfg)
}

fn run_train(a: SegTrainArgs) -> Result<()> {
    let cfg = if a.resume {
        // The saved config wins; train() reads it.
        SegTrainConfig::preset(a.preset, PathBuf::new())
    } else {
        train_config(&a)?
    };
    let report = train(
        &cfg,
        &SegTrainOptions {
            out: a.out.clone(),
            resume: a.resume,
            progress: !a.quiet,
            stop_after: None,
        },
    )?;
    println!(
        "best validation IoU {:.4} (nucleus, micro over pixels) at epoch {}; {} parameters; {:.0} s",
        report.best_validation_iou, report.best_epoch, report.parameters, report.seconds
    );
    println!("run directory: {}", a.out.display());
    Ok(())
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

fn run_predict(a: SegPredictArgs) -> Result<()> {
    let device = crate::device::parse_device(&a.device)?;
    let run = SegmentationRun::open(&a.model, device)?;
    let channel: ChannelSelector = a
        .channel
        .clone()
        .unwrap_or_else(|| run.config.data.channel.clone())
        .parse()?;
    let tiles = run.tiles()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut summary = Vec::new();
    for path in &a.images {
        let plane = read_channel(path, &channel, &Normalisation::default())
            .with_context(|| format!("reading {}", path.display()))?;
        let (w, h) = (plane.width, plane.height);
        let n_tiles = tile_count(h, w, tiles)?;
        let bar = progress::bar(true, n_tiles as u64, &stem(path), "tiles");
        let stack = PlaneStack::new(&plane.data, 1, h, w)?;
        let how = TiledInference {
            tiles,
            batch_size: run.config.training.batch_size,
            device,
        };
        let (classes, probs) = probabilities(&run.net, &stack, &how, Some(&bar))?;
        bar.finish_and_clear();
        let mask = argmax_mask(&probs, classes, h, w);
        let labels = LabelImage::from_values(w, h, &mask)?;
        let s = stem(path);
        let mask_png = a.out.join(format!("{s}_mask.png"));
        let mask_tif = a.out.join(format!("{s}_mask.tif"));
        let overlay = a.out.join(format!("{s}_overlay.png"));
        let geojson = a.out.join(format!("{s}_nuclei.geojson"));
        write_mask_png(&mask_png, &labels, MaskEncoding::Binary)?;
        write_mask_tiff(&mask_tif, &labels, MaskEncoding::ClassIds)?;
        let grey = grey_from_values(&plane.data, w, h)?;
        write_overlay_png(&overlay, &grey, &labels, &OverlayStyle::default())?;
        let options = GeoJsonOptions {
            min_area: a.min_area,
            ..GeoJsonOptions::default()
        };
        let collection = mask_to_feature_collection(&labels, &options)?;
        let nuclei = collection["features"].as_array().map_or(0, |f| f.len());
        write_geojson(&geojson, &collection)?;
        let foreground = mask.iter().filter(|&&m| m != 0).count();
        println!(
            "{}: {w}×{h}, {n_tiles} tiles, {nuclei} nuclei, {:.1}% nucleus pixels → {}",
            path.display(),
            100.0 * foreground as f64 / (w * h) as f64,
            overlay.display()
        );
        summary.push(serde_json::json!({
            "image": path.display().to_string(),
            "width": w,
            "height": h,
            "tiles": n_tiles,
            "nuclei": nuclei,
            "nucleus_pixel_fraction": foreground as f64 / (w * h) as f64,
            "mask_png": mask_png.file_name().map(|f| f.to_string_lossy().into_owned()),
            "mask_tiff": mask_tif.file_name().map(|f| f.to_string_lossy().into_owned()),
            "overlay": overlay.file_name().map(|f| f.to_string_lossy().into_owned()),
            "geojson": geojson.file_name().map(|f| f.to_string_lossy().into_owned()),
        }));
    }
    write_json_atomic(
        &a.out.join("segment.json"),
        &serde_json::json!({"model": a.model.display().to_string(), "images": summary}),
    )
}

fn run_evaluate(a: SegEvaluateArgs) -> Result<()> {
    let device = crate::device::parse_device(&a.device)?;
    let run = SegmentationRun::open(&a.model, device)?;
    let root = a
        .root
        .clone()
        .unwrap_or_else(|| a.data.parent().map(Path::to_path_buf).unwrap_or_default());
    let manifest = SegManifest::read(&a.data, &root)?;
    let rows = if a.split == "all" {
        manifest.samples.clone()
    } else {
        manifest.split(&a.split)
    };
    if rows.is_empty() {
        bail!(
            "{} has no rows with split = {}; use --split test|validation|train|all",
            a.data.display(),
            a.split
        );
    }
    if let Some(r) = rows.iter().find(|r| r.mask.is_none()) {
        bail!(
            "line {} of {} has no mask to score against",
            r.line,
            a.data.display()
        );
    }
    manifest.check_files(&rows)?;
    let channel: ChannelSelector = run.config.data.channel.parse()?;
    let images = load_all(&rows, &channel, &Normalisation::default())?;
    let Some(report) = evaluate(
        &run.net,
        &images,
        run.tiles()?,
        run.config.training.batch_size,
        device,
        true,
    )?
    else {
        bail!("nothing to evaluate");
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let names: Vec<String> = rows.iter().map(|r| r.image.display().to_string()).collect();
    write_json_atomic(
        &a.out.join("metrics.json"),
        &serde_json::json!({
            "model": a.model.display().to_string(),
            "manifest": a.data.display().to_string(),
            "split": a.split,
            "images": names,
            "metrics": report,
        }),
    )?;
    println!(
        "{} {} images: IoU {:.4} micro / {:.4} micro-imagewise, Dice {:.4} micro, pixel accuracy {:.4} (nucleus class, binary)",
        rows.len(),
        a.split,
        report.iou_micro,
        report.iou_micro_imagewise,
        report.dice_micro,
        report.pixel_accuracy
    );
    println!("metrics: {}", a.out.join("metrics.json").display());
    Ok(())
}
