//! The segmentation training loop: random augmented crops of the training images, the
//! weighted loss (plus the APP reconstruction loss when APP is on), Adam with a cosine
//! schedule, validation by tiled inference on the whole validation images after every epoch,
//! the best-validation-IoU weights kept, and an atomic checkpoint per epoch so a killed run
//! resumes where it stopped.
//!
//! The APP autoencoder and its optimiser live only here: `best.safetensors` holds the
//! segmentation network alone, so the saved model and its inference are the same with or
//! without APP.
use super::app::{foreground_probability, AutoencoderPostProcessing};
use super::augment::{augment, random_crop, ImageMask};
use super::config::{LossChoice, SegTrainConfig};
use super::dataset::{load_all, pixel_counts, SegManifest};
use super::loss::{ClassWeights, SegmentationLoss};
use super::metrics::{MaskMode, MetricsAccumulator, SegmentationReport};
use super::models::SegmentationModel;
use super::predict::{argmax_mask, probabilities, TiledInference};
use super::tiling::{PlaneStack, TileConfig};
use crate::fluorescence::{ChannelSelector, Normalisation};
use crate::progress;
use crate::training::adam::Adam;
use crate::training::checkpoint::{
    load_into_varstore, load_tensors, read_json, save_epoch_checkpoint, save_tensors,
    selection_score, sorted_variables, write_atomic, write_json_atomic, EpochState,
};
use crate::training::run_dir::{self, RunManifest};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Nucleus vs background.
const CLASSES: usize = 2;

#[derive(Debug, Clone)]
pub struct SegTrainOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub progress: bool,
    /// Stop after this many epochs of this invocation (tests of resuming).
    pub stop_after: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegEpoch {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    /// The APP reconstruction loss, when APP is on (part of `train_loss`).
    pub app_loss: Option<f64>,
    /// Nucleus IoU over all validation pixels (micro), the model-selection score.
    pub validation_iou: f64,
    pub validation_dice: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegTrainState {
    pub epochs_done: usize,
    pub checkpoint: String,
    pub best_epoch: usize,
    pub best_validation_iou: f64,
    pub history: Vec<SegEpoch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegTrainReport {
    pub train_images: usize,
    pub validation_images: usize,
    pub class_weights: Vec<f64>,
    pub best_epoch: usize,
    pub best_validation_iou: f64,
    /// The validation scores of the best epoch's weights, every reduction named.
    pub validation: Option<SegmentationReport>,
    pub epochs: Vec<SegEpoch>,
    pub seconds: f64,
    pub app: bool,
    pub parameters: i64,
}

pub fn tile_config(cfg: &SegTrainConfig) -> Result<TileConfig> {
    TileConfig::new(cfg.training.tile, cfg.training.overlap)
}

pub fn train(cfg: &SegTrainConfig, opts: &SegTrainOptions) -> Result<SegTrainReport> {
    let started = Instant::now();
    let out = &opts.out;
    let ckpt_dir = out.join(run_dir::CHECKPOINT_DIR);
    let state_path = ckpt_dir.join("state.json");
    let cfg = if opts.resume {
        if !state_path.is_file() {
            bail!(
                "--resume: {} has no checkpoint yet ({} missing); start it without --resume",
                out.display(),
                state_path.display()
            );
        }
        SegTrainConfig::from_toml_file(&out.join(run_dir::CONFIG_FILE))?
    } else {
        if state_path.exists() {
            bail!(
                "{} already holds a training run; pass --resume to continue it or choose another --out",
                out.display()
            );
        }
        cfg.clone()
    };
    cfg.validate()?;
    let device = crate::device::parse_device(&cfg.training.device)?;
    let channel: ChannelSelector = cfg.data.channel.parse()?;
    let norm = Normalisation::default();
    let manifest = SegManifest::read(&cfg.data.manifest, &cfg.data.root_dir())?;
    let train_rows = manifest.split("train");
    let val_rows = manifest.split("validation");
    if train_rows.is_empty() {
        bail!(
            "{} has no rows with split = train; add a split column (train/validation/test)",
            manifest.path.display()
        );
    }
    manifest.check_files(&train_rows)?;
    manifest.check_files(&val_rows)?;
    eprintln!(
        "loading {} training and {} validation images from {}",
        train_rows.len(),
        val_rows.len(),
        manifest.path.display()
    );
    let train_set = load_all(&train_rows, &channel, &norm)?;
    let val_set = load_all(&val_rows, &channel, &norm)?;
    let counts = pixel_counts(&train_set, CLASSES);
    let weights = ClassWeights::from_pixel_counts(&counts).with_context(|| {
        format!("class weights from the training masks (background, nucleus pixels: {counts:?})")
    })?;
    let loss_fn = match cfg.training.loss {
        LossChoice::WeightedCrossEntropy => SegmentationLoss::WeightedCrossEntropy {
            weights: weights.clone(),
        },
        LossChoice::SoftDice => SegmentationLoss::SoftDice { smooth: 1.0 },
        LossChoice::CrossEntropyDice => SegmentationLoss::CrossEntropyDice {
            weights: weights.clone(),
            smooth: 1.0,
            dice_weight: 1.0,
        },
    };

    run_dir::ensure_dir(&ckpt_dir)?;
    if !opts.resume {
        write_atomic(&out.join(run_dir::CONFIG_FILE), cfg.to_toml()?.as_bytes())?;
        cfg.model.save(&out.join(run_dir::MODEL_FILE))?;
        write_json_atomic(
            &out.join(run_dir::RUN_MANIFEST_FILE),
            &run_manifest(&cfg, &manifest.path, device)?,
        )?;
    }

    tch::manual_seed(cfg.training.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = cfg.model.build(&vs.root())?;
    let parameters: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    let mut opt = Adam::new(&vs, cfg.training.optimizer.clone());
    let mut app = match cfg.training.app.config(cfg.training.tile) {
        Some(c) => Some(AutoencoderPostProcessing::new(&c, device)?),
        None => None,
    };
    let mut state = SegTrainState {
        epochs_done: 0,
        checkpoint: String::new(),
        best_epoch: 0,
        best_validation_iou: f64::NEG_INFINITY,
        history: Vec::new(),
    };
    if opts.resume {
        state = read_json(&state_path)?;
        let ckpt = ckpt_dir.join(&state.checkpoint);
        let tensors = load_tensors(&ckpt)?;
        load_into_varstore(&vs, &tensors, &ckpt)?;
        opt.load_state(&tensors)?;
        if let Some(app) = &mut app {
            // The autoencoder travels in the training checkpoint only.
            load_app(app, &tensors, &ckpt)?;
        }
        eprintln!(
            "resuming {} after epoch {} of {}",
            out.display(),
            state.epochs_done,
            cfg.training.epochs
        );
    }
    eprintln!(
        "training {} on {} images ({} crops of {}² per epoch), validating on {}; class weights {:?}; APP {}; device {}",
        describe_model(&cfg),
        train_set.len(),
        train_set.len() * cfg.training.crops_per_image,
        cfg.training.tile,
        val_set.len(),
        weights.as_slice(),
        if app.is_some() { format!("{:?}", cfg.training.app) } else { "off".into() },
        crate::device::describe(device)
    );

    let tiles = tile_config(&cfg)?;
    let t = &cfg.training;
    for (ran, epoch) in (state.epochs_done..t.epochs).enumerate() {
        if opts.stop_after.is_some_and(|n| ran >= n) {
            break;
        }
        let t0 = Instant::now();
        let lr = t.lr_schedule.lr_at(t.optimizer.lr, epoch, t.epochs);
        opt.set_lr(lr);
        let mut rng = ChaCha8Rng::seed_from_u64(t.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9));
        let mut order: Vec<usize> = (0..train_set.len())
            .flat_map(|i| std::iter::repeat_n(i, t.crops_per_image))
            .collect();
        order.shuffle(&mut rng);
        let bar = progress::bar(
            opts.progress,
            order.len() as u64,
            &progress::epoch_heading(epoch + 1, t.epochs),
            "crops",
        );
        let (mut loss_sum, mut app_sum, mut batches) = (0.0, 0.0, 0usize);
        for chunk in order.chunks(t.batch_size) {
            let crops: Vec<ImageMask> = chunk
                .iter()
                .map(|&i| {
                    let c = random_crop(&train_set[i], t.tile, &mut rng);
                    augment(&c, &t.augmentation, &mut rng)
                })
                .collect();
            let (xs, ys) = batch_tensors(&crops, device);
            let logits = net.try_forward_t(&xs, true)?;
            let mut loss = loss_fn.loss(&logits, &ys)?;
            if let Some(app) = &app {
                let rec = app.loss(&foreground_probability(&logits)?, &ys)?;
                app_sum += rec.double_value(&[]);
                loss += rec;
            }
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                bail!(
                    "training diverged at epoch {} (loss {value}); lower training.optimizer.lr",
                    epoch + 1
                );
            }
            opt.zero_grad();
            if let Some(app) = &mut app {
                app.zero_grad();
            }
            loss.backward();
            opt.step();
            if let Some(app) = &mut app {
                app.step();
            }
            loss_sum += value;
            batches += 1;
            bar.inc(chunk.len() as u64);
            bar.set_message(format!("loss {:.4}", loss_sum / batches as f64));
        }
        bar.finish_and_clear();
        let report = evaluate(&net, &val_set, tiles, t.batch_size, device, opts.progress)?;
        let (iou, dice) = report
            .as_ref()
            .map(|r| (r.iou_micro, r.dice_micro))
            .unwrap_or((f64::NAN, f64::NAN));
        let record = SegEpoch {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / batches.max(1) as f64,
            app_loss: app.as_ref().map(|_| app_sum / batches.max(1) as f64),
            validation_iou: iou,
            validation_dice: dice,
            seconds: t0.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {:>3}/{}  lr {:.2e}  train loss {:.4}{}  val IoU {:.4} Dice {:.4} (nucleus, micro)  ({:.1}s)",
            record.epoch,
            t.epochs,
            lr,
            record.train_loss,
            record
                .app_loss
                .map(|a| format!(" (APP {a:.4})"))
                .unwrap_or_default(),
            iou,
            dice,
            record.seconds
        );
        let score = selection_score(!val_set.is_empty(), iou, epoch);
        if score > state.best_validation_iou {
            state.best_validation_iou = score;
            state.best_epoch = epoch + 1;
            save_tensors(
                &out.join(run_dir::BEST_WEIGHTS_FILE),
                &sorted_variables(&vs),
            )?;
        }
        state.history.push(record);
        state.epochs_done = epoch + 1;
        save_checkpoint(&ckpt_dir, &vs, &opt, app.as_ref(), &mut state)?;
    }

    // The report describes the weights that were kept, not the last epoch's.
    let best = out.join(run_dir::BEST_WEIGHTS_FILE);
    let validation = if best.is_file() && !val_set.is_empty() {
        load_into_varstore(&vs, &load_tensors(&best)?, &best)?;
        evaluate(&net, &val_set, tiles, t.batch_size, device, false)?
    } else {
        None
    };
    let report = SegTrainReport {
        train_images: train_set.len(),
        validation_images: val_set.len(),
        class_weights: weights.as_slice().to_vec(),
        best_epoch: state.best_epoch,
        best_validation_iou: if val_set.is_empty() {
            f64::NAN
        } else {
            state.best_validation_iou
        },
        validation,
        epochs: state.history.clone(),
        seconds: started.elapsed().as_secs_f64(),
        app: app.is_some(),
        parameters,
    };
    write_json_atomic(&out.join(run_dir::METRICS_FILE), &report)?;
    Ok(report)
}

fn describe_model(cfg: &SegTrainConfig) -> String {
    let m = &cfg.model;
    format!(
        "{:?}-{} (depth {}, decoder {:?}, {:?} attention)",
        m.arch, m.encoder, m.depth, m.decoder_channels, m.attention
    )
}

/// Scores of a model on whole images (tiled, stitched), every reduction named; `None` when
/// there are no images.
pub fn evaluate(
    net: &SegmentationModel,
    images: &[ImageMask],
    tiles: TileConfig,
    batch_size: usize,
    device: Device,
    progress: bool,
) -> Result<Option<SegmentationReport>> {
    if images.is_empty() {
        return Ok(None);
    }
    let bar = progress::bar(progress, images.len() as u64, "", "validation images");
    let mut acc = MetricsAccumulator::new(MaskMode::Binary, 1.0)?;
    for im in images {
        let stack = PlaneStack::new(&im.image, im.channels, im.height, im.width)?;
        let how = TiledInference {
            tiles,
            batch_size,
            device,
        };
        let (classes, probs) = probabilities(net, &stack, &how, None)?;
        let predicted = argmax_mask(&probs, classes, im.height, im.width);
        acc.add_image(&predicted, &im.mask)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Some(acc.report()?))
}

fn batch_tensors(crops: &[ImageMask], device: Device) -> (Tensor, Tensor) {
    let (c, h, w) = (crops[0].channels, crops[0].height, crops[0].width);
    let image: Vec<f32> = crops.iter().flat_map(|s| s.image.iter().copied()).collect();
    let mask: Vec<i64> = crops
        .iter()
        .flat_map(|s| s.mask.iter().map(|&m| m as i64))
        .collect();
    let n = crops.len() as i64;
    (
        Tensor::from_slice(&image)
            .view([n, c as i64, h as i64, w as i64])
            .to_device(device),
        Tensor::from_slice(&mask)
            .view([n, h as i64, w as i64])
            .to_kind(Kind::Int64)
            .to_device(device),
    )
}

const APP_PREFIX: &str = "training_only.app.";
const APP_OPTIMIZER_STEP: &str = "training_only.app_adam.step";

impl EpochState for SegTrainState {
    fn epochs_done(&self) -> usize {
        self.epochs_done
    }
    fn checkpoint_mut(&mut self) -> &mut String {
        &mut self.checkpoint
    }
}

/// The epoch's checkpoint: the model, its optimiser, and (training only) the autoencoder's
/// weights and optimiser, none of which reach the saved model.
fn save_checkpoint(
    dir: &Path,
    vs: &nn::VarStore,
    opt: &Adam,
    app: Option<&AutoencoderPostProcessing>,
    state: &mut SegTrainState,
) -> Result<()> {
    let mut tensors = sorted_variables(vs);
    tensors.extend(opt.state_tensors());
    if let Some(app) = app {
        for (n, t) in sorted_variables(app.var_store()) {
            tensors.push((format!("{APP_PREFIX}{n}"), t));
        }
        tensors.extend(app.optimizer_state());
    }
    save_epoch_checkpoint(dir, &tensors, state)
}

fn load_app(
    app: &mut AutoencoderPostProcessing,
    tensors: &std::collections::HashMap<String, Tensor>,
    source: &Path,
) -> Result<()> {
    let own: std::collections::HashMap<String, Tensor> = tensors
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(APP_PREFIX)
                .map(|n| (n.to_string(), v.shallow_clone()))
        })
        .collect();
    load_into_varstore(app.var_store(), &own, source)?;
    if !tensors.contains_key(APP_OPTIMIZER_STEP) {
        eprintln!(
            "{} was written by an older myoscope without the autoencoder's optimiser state; \
             its moments start afresh",
            source.display()
        );
        return Ok(());
    }
    app.load_optimizer_state(tensors)
        .with_context(|| format!("{}: the autoencoder's optimiser state", source.display()))
}

fn run_manifest(cfg: &SegTrainConfig, manifest: &Path, device: Device) -> Result<RunManifest> {
    let bytes =
        std::fs::read(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    Ok(RunManifest {
        myoscope_version: env!("CARGO_PKG_VERSION").into(),
        crate_versions: run_dir::crate_versions(),
        git_commit: run_dir::git_commit(),
        seed: cfg.training.seed,
        data_sha256: run_dir::sha256_hex(&bytes),
        // The split is part of the manifest (its split column).
        split_sha256: run_dir::sha256_hex(&bytes),
        backend: run_dir::Backend::current(device),
        command: std::env::args().collect(),
        started: run_dir::timestamp(),
        pretrained: None,
        preset: Some(cfg.preset),
    })
}
