//! One fold model of the multi-label protocol: Adam with a cosine schedule, focal loss times
//! class weights from this fold's training labels, early stopping, stochastic weight averaging
//! with recomputed batch-norm statistics, thresholds, and the fold's validation and test
//! scores. A complete checkpoint after every epoch lets a killed run continue where it was.
use super::config::{Monitor, MultiLabelConfig, ThresholdRule};
use super::dataset::MultiLabelSet;
use super::images::{targets, ImageBank};
use super::loss::class_weights;
use super::metrics::{tune_thresholds, LabelCounts, MultiLabelReport};
use super::swa::{update_batch_norm, SwaAverage};
use crate::config::ModelConfig;
use crate::models::AggregatedClassifier;
use crate::training::adam::{Adam, AdamConfig};
use crate::training::checkpoint::{
    load_into_varstore, load_tensors, read_json, save_epoch_checkpoint, save_tensors,
    sorted_variables, write_json_atomic, EpochState,
};
use crate::training::model_spec::ModelSpec;
use crate::weights::pretrained::{init_trunk, settle_model_config};
use crate::weights::registry::Registry;
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

const SWA_PREFIX: &str = "training_only.swa";
pub const RESULT_FILE: &str = "fold.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MlEpoch {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_macro_f1: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FoldState {
    epochs_done: usize,
    checkpoint: String,
    best_epoch: usize,
    best_score: f64,
    stale_epochs: usize,
    history: Vec<MlEpoch>,
}

impl EpochState for FoldState {
    fn epochs_done(&self) -> usize {
        self.epochs_done
    }
    fn checkpoint_mut(&mut self) -> &mut String {
        &mut self.checkpoint
    }
}

/// Which weights the fold keeps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeptWeights {
    /// The SWA mean of the epochs from `swa_start` on.
    Swa,
    /// The epoch that scored best on validation (SWA off, or stopped before it began).
    BestEpoch,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldResult {
    pub seed: u64,
    pub fold: usize,
    pub train_images: usize,
    pub validation_images: usize,
    pub test_images: usize,
    pub class_weights: Vec<f64>,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub best_epoch: usize,
    pub kept: KeptWeights,
    pub swa_epochs: i64,
    pub batch_norms_recomputed: usize,
    pub thresholds: Vec<f64>,
    pub validation: MultiLabelReport,
    /// None when the protocol has no test part.
    pub test: Option<MultiLabelReport>,
    /// Test probabilities (images × classes) in the order of `test_names`, for the ensemble.
    pub test_probabilities: Vec<Vec<f64>>,
    pub test_names: Vec<String>,
    pub history: Vec<MlEpoch>,
    pub seconds: f64,
}

pub struct FoldData<'a> {
    pub set: &'a MultiLabelSet,
    pub bank: &'a ImageBank,
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

/// The classifier this protocol trains: the registry trunk, global pooling and one logit per
/// class (the aggregated classifier with a 1×1 grid).
pub fn model_spec(cfg: &MultiLabelConfig, classes: &[String]) -> ModelSpec {
    ModelSpec {
        model: ModelConfig {
            arch: cfg.model.arch.clone(),
            grid: 1,
            input_size: cfg.model.input_size,
            patch_loss_weight: 0.0,
            in_channels: 3,
            normalization: cfg.model.normalization.clone(),
            weights: cfg.model.weights.clone(),
        },
        classes: classes.to_vec(),
    }
}

/// Settles the weights' architecture and normalisation into the config before anything is
/// built; returns the registry entry of the weights, if any.
pub fn settle_weights(
    cfg: &mut MultiLabelConfig,
    registry: &Registry,
) -> Result<Option<crate::weights::registry::WeightsEntry>> {
    let mut model = model_spec(cfg, &[]).model;
    let entry = settle_model_config(&mut model, true, registry)?;
    cfg.model.arch = model.arch;
    cfg.model.normalization = model.normalization;
    Ok(entry)
}

/// Trains fold `fold` with `seed` in `dir` (resuming a checkpoint found there) and returns its
/// scores; a finished fold's saved result is returned without training.
pub fn train_fold(
    cfg: &MultiLabelConfig,
    data: &FoldData,
    seed: u64,
    fold: usize,
    dir: &Path,
    progress: bool,
) -> Result<FoldResult> {
    let result_path = dir.join(RESULT_FILE);
    if result_path.is_file() {
        return read_json(&result_path);
    }
    let started = Instant::now();
    let set = data.set;
    let classes = &set.classes;
    let weights = class_weights(
        classes,
        &set.labels_of(&data.train),
        cfg.training.class_weight_low,
    )
    .map_err(|e| anyhow::anyhow!("seed {seed}, fold {fold}: {e}"))?;
    let device = crate::device::parse_device(&cfg.training.device)?;
    let ckpt_dir = dir.join("checkpoints");
    crate::training::run_dir::ensure_dir(&ckpt_dir)?;

    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(device);
    let spec = model_spec(cfg, classes);
    let net = spec.build(&vs)?;
    write_json_atomic(&dir.join(crate::training::run_dir::MODEL_FILE), &spec)?;
    let mut opt = Adam::new(
        &vs,
        AdamConfig {
            lr: cfg.training.lr,
            weight_decay: cfg.training.weight_decay,
            ..Default::default()
        },
    );
    let mut swa = SwaAverage::new();
    let state_path = ckpt_dir.join("state.json");
    let mut state = if state_path.is_file() {
        let state: FoldState = read_json(&state_path)?;
        let ckpt = ckpt_dir.join(&state.checkpoint);
        let tensors = load_tensors(&ckpt)?;
        load_into_varstore(&vs, &tensors, &ckpt)?;
        opt.load_state(&tensors)?;
        swa.load_state(&vs, &tensors, SWA_PREFIX)?;
        eprintln!(
            "  resuming seed {seed} fold {fold} after epoch {}",
            state.epochs_done
        );
        state
    } else {
        if let Some(name) = &cfg.model.weights {
            let registry = Registry::open(None);
            let entry = registry.get(name)?;
            init_trunk(
                &vs,
                &registry,
                &entry,
                3,
                &[format!("{}.", net.head_name())],
            )?;
        }
        FoldState {
            epochs_done: 0,
            checkpoint: String::new(),
            best_epoch: 0,
            best_score: f64::NEG_INFINITY,
            stale_epochs: 0,
            history: Vec::new(),
        }
    };
    let weight_tensor = Tensor::from_slice(&weights)
        .to_kind(Kind::Float)
        .to_device(device);
    let norm = &cfg.model.normalization;
    let has_validation = !data.validation.is_empty();

    while state.epochs_done < cfg.training.epochs {
        if has_validation
            && cfg.training.patience > 0
            && state.stale_epochs >= cfg.training.patience
        {
            break;
        }
        let epoch = state.epochs_done;
        let t0 = Instant::now();
        let lr = cfg.lr_at(epoch);
        opt.set_lr(lr);
        let mut order = data.train.clone();
        let epoch_seed = crate::data::loader::mix_seed(seed, fold as u64, epoch as u64);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed));
        let bar = crate::progress::bar(
            progress,
            order.len() as u64,
            &format!(
                "seed {seed} fold {fold} {}",
                crate::progress::epoch_heading(epoch + 1, cfg.training.epochs)
            ),
            "images",
        );
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for (b, chunk) in order.chunks(cfg.training.batch_size).enumerate() {
            // A batch of one cannot be batch-normalised in training mode.
            if chunk.len() < 2 && order.len() >= 2 {
                continue;
            }
            let images = data
                .bank
                .batch(
                    chunk,
                    norm,
                    Some((&cfg.training.augmentation, epoch_seed ^ b as u64)),
                )
                .to_device(device);
            let truth = targets(set, chunk).to_device(device);
            let logits = net.forward_t(&images, true).logits;
            let loss = cfg
                .training
                .loss
                .forward(&logits, &truth, Some(&weight_tensor));
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                bail!(
                    "seed {seed}, fold {fold}: training diverged at epoch {} (loss {value}); lower training.lr",
                    epoch + 1
                );
            }
            opt.zero_grad();
            loss.backward();
            opt.step();
            loss_sum += value;
            batches += 1;
            bar.inc(chunk.len() as u64);
            bar.set_message(format!("loss {:.4}", loss_sum / batches as f64));
        }
        bar.finish_and_clear();
        let (validation_loss, validation_macro_f1) = if has_validation {
            let probs = probabilities(&net, data.bank, &data.validation, cfg, device);
            let loss = score_loss(cfg, &probs.1, set, &data.validation, &weight_tensor);
            let mut counts = LabelCounts::new(classes)?;
            counts.add_thresholded(
                &set.labels_of(&data.validation),
                &probs.0,
                &vec![0.5; classes.len()],
            )?;
            (loss, counts.report().macro_average.f1)
        } else {
            (f64::NAN, f64::NAN)
        };
        let record = MlEpoch {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / batches.max(1) as f64,
            validation_loss,
            validation_macro_f1,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if progress {
            eprintln!(
                "  seed {seed} fold {fold} epoch {:>2}/{}  lr {:.2e}  train loss {:.4}  val loss {:.4} macro F1 {:.3}  ({:.1}s)",
                record.epoch,
                cfg.training.epochs,
                lr,
                record.train_loss,
                validation_loss,
                validation_macro_f1,
                record.seconds
            );
        }
        let score = match (has_validation, cfg.training.monitor) {
            (false, _) => epoch as f64,
            (true, Monitor::ValidationLoss) => -validation_loss,
            (true, Monitor::ValidationMacroF1) => validation_macro_f1,
        };
        if score > state.best_score {
            state.best_score = score;
            state.best_epoch = epoch + 1;
            state.stale_epochs = 0;
            save_tensors(&dir.join("best_epoch.safetensors"), &sorted_variables(&vs))?;
        } else {
            state.stale_epochs += 1;
        }
        if cfg.training.swa_start > 0 && epoch + 1 >= cfg.training.swa_start {
            swa.add(&vs);
        }
        state.history.push(record);
        state.epochs_done = epoch + 1;
        let mut tensors = sorted_variables(&vs);
        tensors.extend(opt.state_tensors());
        tensors.extend(swa.state_tensors(SWA_PREFIX));
        save_epoch_checkpoint(&ckpt_dir, &tensors, &mut state)?;
    }
    let stopped_early = state.epochs_done < cfg.training.epochs;

    // The kept weights: the SWA mean with batch norms re-estimated on the training images, or
    // the best epoch.
    let (kept, batch_norms) = if swa.snapshots() > 0 {
        swa.copy_into(&vs)?;
        let chunks: Vec<Vec<usize>> = data
            .train
            .chunks(cfg.training.batch_size)
            .filter(|c| c.len() >= 2)
            .map(<[usize]>::to_vec)
            .collect();
        let n = update_batch_norm(
            &vs,
            chunks
                .iter()
                .map(|c| Ok(data.bank.batch(c, norm, None).to_device(device))),
            |x| {
                let _ = net.forward_t(x, true);
            },
        )?;
        (KeptWeights::Swa, n)
    } else {
        let best = dir.join("best_epoch.safetensors");
        let tensors = load_tensors(&best)?;
        load_into_varstore(&vs, &tensors, &best)?;
        (KeptWeights::BestEpoch, 0)
    };
    save_tensors(
        &dir.join(crate::training::run_dir::BEST_WEIGHTS_FILE),
        &sorted_variables(&vs),
    )?;

    let validation_truth = set.labels_of(&data.validation);
    let (validation_probs, _) = probabilities(&net, data.bank, &data.validation, cfg, device);
    let thresholds = match cfg.training.thresholds {
        ThresholdRule::TunedOnValidation if has_validation => {
            tune_thresholds(&validation_truth, &validation_probs)?
        }
        _ => vec![0.5; classes.len()],
    };
    write_json_atomic(
        &dir.join("thresholds.json"),
        &serde_json::json!({ "classes": classes, "thresholds": thresholds }),
    )?;
    let mut counts = LabelCounts::new(classes)?;
    counts.add_thresholded(&validation_truth, &validation_probs, &thresholds)?;
    let validation = counts.report();
    let (test, test_probabilities) = if data.test.is_empty() {
        (None, Vec::new())
    } else {
        let (probs, _) = probabilities(&net, data.bank, &data.test, cfg, device);
        let mut counts = LabelCounts::new(classes)?;
        counts.add_thresholded(&set.labels_of(&data.test), &probs, &thresholds)?;
        (Some(counts.report()), probs)
    };
    let result = FoldResult {
        seed,
        fold,
        train_images: data.train.len(),
        validation_images: data.validation.len(),
        test_images: data.test.len(),
        class_weights: weights,
        epochs_run: state.epochs_done,
        stopped_early,
        best_epoch: state.best_epoch,
        kept,
        swa_epochs: swa.snapshots(),
        batch_norms_recomputed: batch_norms,
        thresholds,
        validation,
        test,
        test_probabilities,
        test_names: data
            .test
            .iter()
            .map(|&i| set.images[i].name.clone())
            .collect(),
        history: state.history.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    write_json_atomic(&result_path, &result)?;
    // The fold is complete: its training checkpoints are no longer needed.
    let _ = std::fs::remove_dir_all(&ckpt_dir);
    Ok(result)
}

/// Probabilities (rows of the images) and logits [N, K] of `indices`, BN in inference mode.
fn probabilities(
    net: &AggregatedClassifier,
    bank: &ImageBank,
    indices: &[usize],
    cfg: &MultiLabelConfig,
    device: Device,
) -> (Vec<Vec<f64>>, Tensor) {
    if indices.is_empty() {
        return (
            Vec::new(),
            Tensor::zeros([0, net.num_classes()], (Kind::Float, Device::Cpu)),
        );
    }
    let logits: Vec<Tensor> = tch::no_grad(|| {
        indices
            .chunks(cfg.training.batch_size.max(1))
            .map(|c| {
                net.forward_t(
                    &bank
                        .batch(c, &cfg.model.normalization, None)
                        .to_device(device),
                    false,
                )
                .logits
                .to_device(Device::Cpu)
            })
            .collect()
    });
    let logits = Tensor::cat(&logits, 0).to_kind(Kind::Double);
    let probs = logits.sigmoid();
    let k = net.num_classes() as usize;
    let flat: Vec<f64> = probs.flatten(0, -1).try_into().unwrap_or_default();
    (flat.chunks(k).map(<[f64]>::to_vec).collect(), logits)
}

fn score_loss(
    cfg: &MultiLabelConfig,
    logits: &Tensor,
    set: &MultiLabelSet,
    indices: &[usize],
    weights: &Tensor,
) -> f64 {
    tch::no_grad(|| {
        cfg.training
            .loss
            .forward(
                &logits.to_kind(Kind::Float),
                &targets(set, indices),
                Some(&weights.to_device(Device::Cpu)),
            )
            .double_value(&[])
    })
}
