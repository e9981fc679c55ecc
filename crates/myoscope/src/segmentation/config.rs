//! A segmentation run's settings, saved with the run so that `--resume` and `predict` rebuild
//! exactly what was trained. Two presets: `faithful` (Singh & Cirrone as stated: 480² tiles,
//! Adam 3.6e-4 with weight decay 1e-5, cosine to 3.4e-4, weighted cross-entropy, the paper's
//! fully-connected APP) and `corrected`, the default, which keeps the method and fixes what the
//! public code got wrong (image and mask augmented together, APP loss reaching the gradients,
//! metrics reset per evaluation) — both of which this implementation always does — and trains
//! on CPU-sized tiles with the small convolutional APP.
use crate::config::LrSchedule;
pub use crate::config::Preset;
use crate::segmentation::app::AppConfig;
use crate::segmentation::augment::SegAugmentation;
use crate::segmentation::models::SegmentationModelSpec;
use crate::training::adam::AdamConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegDataConfig {
    /// CSV with `image` and `mask` columns (and optionally `split`: train/validation/test).
    pub manifest: PathBuf,
    /// Folder the manifest's paths are relative to (default: the manifest's folder).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// The channel the network reads: a name (`DAPI`) or a 1-based position.
    #[serde(default = "default_channel")]
    pub channel: String,
}

fn default_channel() -> String {
    "1".into()
}

impl SegDataConfig {
    pub fn root_dir(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| {
            self.manifest
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
    }
}

/// The loss the network trains on; class weights are counted from the training masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossChoice {
    /// The paper's: cross-entropy weighted by normalised inverse pixel frequencies.
    WeightedCrossEntropy,
    SoftDice,
    /// Weighted cross-entropy plus soft Dice.
    CrossEntropyDice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppChoice {
    None,
    /// The paper's fully-connected stack along the tile width.
    FullyConnected,
    /// A small strided-convolution autoencoder.
    Convolutional,
}

impl std::str::FromStr for AppChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" | "off" => Ok(AppChoice::None),
            "fc" | "fully-connected" | "faithful" => Ok(AppChoice::FullyConnected),
            "conv" | "convolutional" => Ok(AppChoice::Convolutional),
            other => bail!("unknown APP '{other}'; use none, fc (the paper's) or conv"),
        }
    }
}

impl AppChoice {
    pub fn config(self, tile: usize) -> Option<AppConfig> {
        match self {
            AppChoice::None => None,
            AppChoice::FullyConnected => Some(AppConfig::faithful(tile as i64)),
            AppChoice::Convolutional => Some(AppConfig::convolutional()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegTrainingConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Side of the square training crops, and of the inference tiles.
    pub tile: usize,
    /// Overlap of neighbouring inference tiles.
    pub overlap: usize,
    /// Random crops drawn from each training image per epoch.
    pub crops_per_image: usize,
    pub seed: u64,
    pub device: String,
    pub optimizer: AdamConfig,
    pub lr_schedule: LrSchedule,
    pub loss: LossChoice,
    pub app: AppChoice,
    pub augmentation: SegAugmentation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegTrainConfig {
    pub preset: Preset,
    pub data: SegDataConfig,
    pub model: SegmentationModelSpec,
    pub training: SegTrainingConfig,
}

impl SegTrainConfig {
    pub fn preset(preset: Preset, manifest: PathBuf) -> Self {
        let data = SegDataConfig {
            manifest,
            root: None,
            channel: default_channel(),
        };
        let optimizer = AdamConfig {
            lr: 3.6e-4,
            weight_decay: 1e-5,
            ..AdamConfig::default()
        };
        let lr_schedule = LrSchedule::Cosine { min_lr: 3.4e-4 };
        let (tile, app, epochs, batch_size) = match preset {
            Preset::Faithful => (480, AppChoice::FullyConnected, 50, 8),
            Preset::Corrected => (256, AppChoice::Convolutional, 20, 8),
        };
        Self {
            preset,
            data,
            model: SegmentationModelSpec::dedl(),
            training: SegTrainingConfig {
                epochs,
                batch_size,
                tile,
                overlap: 64,
                crops_per_image: 1,
                seed: 0,
                device: "auto".into(),
                optimizer,
                lr_schedule,
                loss: LossChoice::WeightedCrossEntropy,
                app,
                augmentation: SegAugmentation::default(),
            },
        }
    }

    pub fn validate(&self) -> Result<()> {
        let t = &self.training;
        if t.epochs == 0 || t.batch_size == 0 || t.crops_per_image == 0 {
            bail!("epochs, batch_size and crops_per_image must all be at least 1");
        }
        if t.overlap >= t.tile {
            bail!(
                "the tile overlap ({}) must be smaller than the tile ({}); set --overlap (a quarter of the tile is a good start)",
                t.overlap,
                t.tile
            );
        }
        self.model.validate()?;
        self.model
            .check_input(t.tile as i64, t.tile as i64)
            .with_context(|| format!("tile size {}", t.tile))?;
        if !(t.optimizer.lr > 0.0 && t.optimizer.lr.is_finite()) {
            bail!("the learning rate must be a positive number");
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a segmentation config", path.display()))
    }
}
