//! The training loop: epochs over the left/right squares of the training photos, validation
//! on the validation slides after each epoch, the best-accuracy weights kept, and a complete
//! checkpoint after every epoch so a killed run resumes where it stopped.
use super::checkpoint::{
    load_into_varstore, load_matching, load_tensors, read_json, save_epoch_checkpoint,
    save_tensors, selection_score, sorted_variables, write_atomic, write_json_atomic, EpochState,
};
use super::loss::aggregated_loss;
use super::model_spec::ModelSpec;
use super::radam::RAdam;
use super::run_dir::{self, Backend, RunManifest};
use crate::config::TrainConfig;
use crate::data::loader::{edge_items, spawn_epoch, EpochPlan, ImageSource};
use crate::data::split::{grouped_holdout, Split};
use crate::data::Dataset;
use crate::weights::pretrained::{init_trunk, settle_model_config};
use crate::weights::registry::{Registry, WeightsEntry};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::nn;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub validation_loss: f64,
    pub validation_accuracy: f64,
    pub seconds: f64,
}

/// The pointer to the latest complete checkpoint, replaced atomically after each epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs finished (1-based count).
    pub epochs_done: usize,
    pub checkpoint: String,
    pub best_epoch: usize,
    pub best_validation_accuracy: f64,
    pub history: Vec<EpochMetrics>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub classes: Vec<String>,
    pub train_images: usize,
    pub validation_images: usize,
    pub best_epoch: usize,
    pub best_validation_accuracy: f64,
    /// Alias of the best validation accuracy, the figure a reader looks for first.
    pub accuracy: f64,
    pub epochs: Vec<EpochMetrics>,
    pub seconds: f64,
}

pub struct TrainOptions {
    pub out: PathBuf,
    pub resume: bool,
    /// Show progress bars (off in tests).
    pub progress: bool,
    /// Stop after this many epochs of this invocation (for tests of resumption).
    pub stop_after: Option<usize>,
    /// A fixed train/validation split (a cross-validation fold) instead of a random hold-out.
    pub split: Option<Split>,
    /// Weights whose trunk initialises the model (transfer learning); the heads start fresh.
    pub init_from: Option<PathBuf>,
}

impl TrainOptions {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            resume: false,
            progress: false,
            stop_after: None,
            split: None,
            init_from: None,
        }
    }
}

/// Trains a model as configured, writing everything into `opts.out`.
pub fn train(cfg: &TrainConfig, opts: &TrainOptions) -> Result<TrainReport> {
    let started = Instant::now();
    let out = &opts.out;
    let state_path = out.join(run_dir::CHECKPOINT_DIR).join("state.json");
    let mut pretrained = None;
    let registry = Registry::open(None);
    let cfg = if opts.resume {
        if !state_path.is_file() {
            bail!(
                "--resume: {} has no checkpoint yet ({} missing); start it without --resume",
                out.display(),
                state_path.display()
            );
        }
        // The saved config wins: a resumed run must be the same run.
        TrainConfig::from_toml_file(&out.join(run_dir::CONFIG_FILE))?
    } else {
        if state_path.exists() {
            bail!(
                "{} already holds a training run; pass --resume to continue it or choose another --out",
                out.display()
            );
        }
        let mut cfg = cfg.clone();
        // Step-2 models start from their step-1 trunk, which already descends from the weights.
        if opts.init_from.is_none() {
            pretrained = settle_model_config(&mut cfg.model, true, &registry)?;
        }
        cfg
    };
    cfg.validate()?;
    let device = crate::device::parse_device(&cfg.training.device)?;
    let dataset = Arc::new(Dataset::open(&cfg.data.source, &cfg.data.columns, None)?);
    if dataset.classes.len() < 2 {
        bail!(
            "{} has a single class ({}) in column '{}'; a classifier needs at least two",
            cfg.data.source.display(),
            dataset.classes.join(", "),
            cfg.data.columns.label
        );
    }
    check_headers(&dataset)?;
    let split_path = out.join(run_dir::SPLIT_FILE);
    let split = if opts.resume {
        read_split(&split_path, &dataset)?
    } else if let Some(given) = &opts.split {
        let n = dataset.samples.len();
        if given.train.iter().chain(&given.validation).any(|&i| i >= n) {
            bail!(
                "the given split refers to images beyond the {n} of {}",
                cfg.data.source.display()
            );
        }
        given.clone()
    } else {
        grouped_holdout(&dataset, cfg.data.validation_fraction, cfg.training.seed)
    };
    if split.train.is_empty() {
        bail!("no training images after holding out validation groups; lower data.validation_fraction");
    }
    if split.validation.is_empty() {
        eprintln!("note: no validation groups (every class has a single slide/group or validation_fraction is 0); the last epoch is kept as best");
    }

    run_dir::ensure_dir(&out.join(run_dir::CHECKPOINT_DIR))?;
    let spec = ModelSpec {
        model: cfg.model.clone(),
        classes: dataset.classes.clone(),
    };
    if !opts.resume {
        write_atomic(&out.join(run_dir::CONFIG_FILE), cfg.to_toml()?.as_bytes())?;
        write_split(&split_path, &dataset, &split)?;
        write_json_atomic(&out.join(run_dir::MODEL_FILE), &spec)?;
        run_dir::write_manifest(
            out,
            &run_manifest(&cfg, &dataset, &split_path, device, pretrained.as_ref())?,
        )?;
    }

    tch::manual_seed(cfg.training.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = spec.build(&vs)?;
    if let (Some(init), false) = (&opts.init_from, opts.resume) {
        let tensors = load_tensors(init)?;
        let heads = [
            format!("{}.", net.head_name()),
            "patch_classifier.".to_string(),
        ];
        let copied = load_matching(&vs, &tensors, init, |name| {
            !heads.iter().any(|h| name.starts_with(h.as_str()))
        })?;
        eprintln!(
            "initialised {copied} trunk tensors from {} (new output layers, all weights trainable)",
            init.display()
        );
    }
    if let (Some(entry), false) = (&pretrained, opts.resume) {
        let fresh = [
            format!("{}.", net.head_name()),
            "patch_classifier.".to_string(),
        ];
        let copied = init_trunk(&vs, &registry, entry, cfg.model.in_channels, &fresh)?;
        eprintln!(
            "initialised {copied} trunk tensors from weights '{}' ({}, sha256 {}…); new output layers, all weights trainable",
            entry.name,
            entry.source.file_name,
            &entry.weights_sha256[..12]
        );
    }
    let mut opt = RAdam::new(&vs, cfg.training.optimizer.clone());

    let mut state = TrainState {
        epochs_done: 0,
        checkpoint: String::new(),
        best_epoch: 0,
        best_validation_accuracy: f64::NEG_INFINITY,
        history: Vec::new(),
    };
    if opts.resume {
        state = read_json(&state_path)?;
        let ckpt = out.join(run_dir::CHECKPOINT_DIR).join(&state.checkpoint);
        let tensors = load_tensors(&ckpt)?;
        load_into_varstore(&vs, &tensors, &ckpt)?;
        opt.load_state(&tensors)?;
        eprintln!(
            "resuming {} after epoch {} of {}",
            out.display(),
            state.epochs_done,
            cfg.training.epochs
        );
    }

    let train_src = Arc::new(ImageSource::new(
        Arc::new(dataset.subset(&split.train)),
        cfg.model.input_size as u32,
        cfg.model.normalization.clone(),
    ));
    let val_src = Arc::new(ImageSource::new(
        Arc::new(dataset.subset(&split.validation)),
        cfg.model.input_size as u32,
        cfg.model.normalization.clone(),
    ));
    let train_items = edge_items(split.train.len());
    let val_items = edge_items(split.validation.len());
    eprintln!(
        "training {} on {} photos ({} squares), validating on {} photos; classes: {}; device {}",
        cfg.model.arch,
        split.train.len(),
        train_items.len(),
        split.validation.len(),
        dataset.classes.join(", "),
        crate::device::describe(device)
    );

    for (ran, epoch) in (state.epochs_done..cfg.training.epochs).enumerate() {
        if opts.stop_after.is_some_and(|n| ran >= n) {
            break;
        }
        let t0 = Instant::now();
        let base_lr = cfg.training.optimizer.lr;
        opt.set_lr(
            cfg.training
                .lr_schedule
                .lr_at(base_lr, epoch, cfg.training.epochs),
        );
        let bar = crate::progress::bar(
            opts.progress,
            train_items.len() as u64,
            &crate::progress::epoch_heading(epoch + 1, cfg.training.epochs),
            "squares",
        );
        let (train_loss, train_accuracy) = {
            let plan = EpochPlan {
                items: train_items.clone(),
                batch_size: cfg.training.batch_size,
                augmentation: Some(cfg.training.augmentation.clone()),
                shuffle: true,
                seed: cfg.training.seed,
                epoch: epoch as u64,
            };
            let mut acc = Accumulator::default();
            for batch in spawn_epoch(train_src.clone(), plan) {
                let batch = batch?;
                let images = batch.images().to_device(device);
                let labels = batch.labels().to_device(device);
                let out = net.forward_t(&images, true);
                let loss = aggregated_loss(&out, &labels, cfg.model.patch_loss_weight);
                let loss_value = loss.double_value(&[]);
                if !loss_value.is_finite() {
                    bail!("training diverged at epoch {} (loss {loss_value}); lower training.optimizer.lr", epoch + 1);
                }
                opt.zero_grad();
                loss.backward();
                opt.step();
                acc.add(loss_value, &out.logits, &labels);
                bar.inc(batch.items.len() as u64);
                bar.set_message(format!("loss {:.4} acc {:.3}", acc.loss(), acc.accuracy()));
            }
            (acc.loss(), acc.accuracy())
        };
        bar.finish_and_clear();
        let (validation_loss, validation_accuracy) =
            evaluate(&net, &val_src, &val_items, &cfg, device)?;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss,
            train_accuracy,
            validation_loss,
            validation_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {:>3}/{}  train loss {:.4} acc {:.3}  val loss {:.4} acc {:.3}  ({:.1}s)",
            metrics.epoch,
            cfg.training.epochs,
            train_loss,
            train_accuracy,
            validation_loss,
            validation_accuracy,
            metrics.seconds
        );
        let score = selection_score(!val_items.is_empty(), validation_accuracy, epoch);
        if score > state.best_validation_accuracy {
            state.best_validation_accuracy = score;
            state.best_epoch = epoch + 1;
            save_tensors(
                &out.join(run_dir::BEST_WEIGHTS_FILE),
                &sorted_variables(&vs),
            )?;
        }
        state.history.push(metrics);
        state.epochs_done = epoch + 1;
        save_checkpoint(out, &vs, &opt, &mut state)?;
    }

    let best_validation_accuracy = if val_items.is_empty() {
        f64::NAN
    } else {
        state.best_validation_accuracy
    };
    let report = TrainReport {
        classes: dataset.classes.clone(),
        train_images: split.train.len(),
        validation_images: split.validation.len(),
        best_epoch: state.best_epoch,
        best_validation_accuracy,
        accuracy: best_validation_accuracy,
        epochs: state.history.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    write_json_atomic(&out.join(run_dir::METRICS_FILE), &report)?;
    Ok(report)
}

impl EpochState for TrainState {
    fn epochs_done(&self) -> usize {
        self.epochs_done
    }
    fn checkpoint_mut(&mut self) -> &mut String {
        &mut self.checkpoint
    }
}

/// The epoch's checkpoint: the model and the optimiser's moments.
fn save_checkpoint(
    out: &Path,
    vs: &nn::VarStore,
    opt: &RAdam,
    state: &mut TrainState,
) -> Result<()> {
    let mut tensors = sorted_variables(vs);
    tensors.extend(opt.state_tensors());
    save_epoch_checkpoint(&out.join(run_dir::CHECKPOINT_DIR), &tensors, state)
}

/// Loss and accuracy over `items` without augmentation, BN in inference mode.
pub fn evaluate(
    net: &crate::models::AggregatedClassifier,
    src: &Arc<ImageSource>,
    items: &[crate::data::loader::Item],
    cfg: &TrainConfig,
    device: tch::Device,
) -> Result<(f64, f64)> {
    if items.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    let plan = EpochPlan {
        items: items.to_vec(),
        batch_size: cfg.training.batch_size,
        augmentation: None,
        shuffle: false,
        seed: 0,
        epoch: 0,
    };
    let mut acc = Accumulator::default();
    for batch in spawn_epoch(src.clone(), plan) {
        let batch = batch?;
        tch::no_grad(|| {
            let labels = batch.labels().to_device(device);
            let out = net.forward_t(&batch.images().to_device(device), false);
            let loss =
                aggregated_loss(&out, &labels, cfg.model.patch_loss_weight).double_value(&[]);
            acc.add(loss, &out.logits, &labels);
        });
    }
    Ok((acc.loss(), acc.accuracy()))
}

#[derive(Default)]
struct Accumulator {
    loss_sum: f64,
    batches: usize,
    correct: i64,
    seen: i64,
}

impl Accumulator {
    fn add(&mut self, loss: f64, logits: &tch::Tensor, labels: &tch::Tensor) {
        self.loss_sum += loss;
        self.batches += 1;
        self.correct += logits
            .argmax(-1, false)
            .eq_tensor(labels)
            .sum(tch::Kind::Int64)
            .int64_value(&[]);
        self.seen += labels.size()[0];
    }

    fn loss(&self) -> f64 {
        self.loss_sum / self.batches.max(1) as f64
    }

    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// Opens every image's header up front, so a corrupt file is reported before hours of training.
fn check_headers(ds: &Dataset) -> Result<()> {
    use rayon::prelude::*;
    let problems: Vec<String> = ds
        .samples
        .par_iter()
        .filter_map(|s| {
            crate::data::decode::dimensions(&s.path)
                .err()
                .map(|e| format!("row {}: {e:#}", s.row))
        })
        .collect();
    if !problems.is_empty() {
        bail!(
            "{} unreadable image(s) in {}:\n  {}",
            problems.len(),
            ds.source.display(),
            problems
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct SplitFile {
    train: Vec<String>,
    validation: Vec<String>,
}

fn write_split(path: &Path, ds: &Dataset, split: &Split) -> Result<()> {
    let names = |idx: &[usize]| {
        idx.iter()
            .map(|&i| ds.samples[i].rel_path.clone())
            .collect()
    };
    write_json_atomic(
        path,
        &SplitFile {
            train: names(&split.train),
            validation: names(&split.validation),
        },
    )
}

/// Re-reads a saved split by file name, so resuming cannot silently change it.
fn read_split(path: &Path, ds: &Dataset) -> Result<Split> {
    let file: SplitFile = read_json(path)?;
    let index: std::collections::HashMap<&str, usize> = ds
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (s.rel_path.as_str(), i))
        .collect();
    let lookup = |names: &[String]| -> Result<Vec<usize>> {
        names
            .iter()
            .map(|n| {
                index.get(n.as_str()).copied().with_context(|| {
                    format!(
                        "{}: image '{n}' of the saved split is no longer in the data set",
                        path.display()
                    )
                })
            })
            .collect()
    };
    Ok(Split {
        train: lookup(&file.train)?,
        validation: lookup(&file.validation)?,
    })
}

fn run_manifest(
    cfg: &TrainConfig,
    ds: &Dataset,
    split_path: &Path,
    device: tch::Device,
    pretrained: Option<&WeightsEntry>,
) -> Result<RunManifest> {
    let data_bytes = if ds.source.is_file() {
        std::fs::read(&ds.source).with_context(|| format!("cannot read {}", ds.source.display()))?
    } else {
        ds.samples
            .iter()
            .map(|s| format!("{}\t{}\n", s.rel_path, s.label))
            .collect::<String>()
            .into_bytes()
    };
    Ok(RunManifest {
        myoscope_version: env!("CARGO_PKG_VERSION").into(),
        crate_versions: run_dir::crate_versions(),
        git_commit: run_dir::git_commit(),
        seed: cfg.training.seed,
        data_sha256: run_dir::sha256_hex(&data_bytes),
        split_sha256: run_dir::sha256_hex(&std::fs::read(split_path)?),
        backend: Backend::current(device),
        command: std::env::args().collect(),
        started: run_dir::timestamp(),
        pretrained: pretrained.map(Into::into),
        preset: None,
    })
}
