//! The typed training configuration. It is read from TOML (unknown or misspelt fields are
//! errors that name the field), overridden from the command line, and saved resolved with
//! every run so the run can be repeated or resumed exactly.
use crate::data::augment::{Augmentation, Normalization};
use crate::data::ManifestColumns;
use crate::training::radam::RAdamConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The two readings of a DEDL method: `faithful` (the paper as stated) and `corrected` (the
/// method with what the public code got wrong fixed, and CPU-sized inputs); saved with the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    Faithful,
    Corrected,
}

impl std::str::FromStr for Preset {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "faithful" => Ok(Self::Faithful),
            "corrected" => Ok(Self::Corrected),
            other => bail!("unknown preset '{other}'; use faithful or corrected"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// CSV manifest or a folder with one sub-folder per class.
    pub source: PathBuf,
    pub columns: ManifestColumns,
    /// Fraction of groups (slides/patients) held out for validation, per class.
    pub validation_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: PathBuf::new(),
            columns: ManifestColumns::default(),
            validation_fraction: 0.2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Trunk name from the registry (`myoscope models` lists them).
    pub arch: String,
    /// Patches per side: 4 → 16 patches (Kabeya et al.), 1 → a plain classifier.
    pub grid: i64,
    /// Side of the square network input; the grid must divide it.
    pub input_size: i64,
    /// λ in L = CE(final) + λ·Σ CE(patch).
    pub patch_loss_weight: f64,
    pub in_channels: i64,
    pub normalization: Normalization,
    /// Registry weights the trunk starts from (`myoscope weights list`); they fix the
    /// architecture and the normalisation. None: random initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

impl Default for ModelConfig {
    /// The paper's model: DenseNet-121, 4×4 grid at 640².
    fn default() -> Self {
        Self {
            arch: "densenet121".into(),
            grid: 4,
            input_size: 640,
            patch_loss_weight: 1.0,
            in_channels: 3,
            normalization: Normalization::default(),
            weights: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    pub optimizer: RAdamConfig,
    pub lr_schedule: LrSchedule,
    pub augmentation: Augmentation,
}

/// Learning rate over the epochs. Kabeya et al. keep it constant; a cosine decay to
/// `min_lr` steadies short runs from scratch (the demo) and is DEDL's schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LrSchedule {
    Constant,
    Cosine { min_lr: f64 },
}

impl LrSchedule {
    /// The learning rate of 0-based `epoch` out of `epochs`, from the base rate.
    pub fn lr_at(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine { min_lr } => {
                let t = epoch as f64 / (epochs.max(2) - 1) as f64;
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

impl Default for TrainingConfig {
    /// The paper's schedule: RAdam at 1e-4 for 60 epochs.
    fn default() -> Self {
        Self {
            epochs: 60,
            batch_size: 4,
            seed: 0,
            device: "auto".into(),
            optimizer: RAdamConfig::default(),
            lr_schedule: LrSchedule::Constant,
            augmentation: Augmentation::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub training: TrainingConfig,
}

impl TrainConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml_str(&text)
            .with_context(|| format!("config {} is not valid", path.display()))
    }

    pub fn from_toml_str(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks values that serde cannot, with a fix in each message.
    pub fn validate(&self) -> Result<()> {
        crate::models::validate_geometry(self.model.input_size, self.model.grid)?;
        anyhow::ensure!(
            self.training.epochs >= 1,
            "training.epochs must be at least 1"
        );
        anyhow::ensure!(
            self.training.batch_size >= 1,
            "training.batch_size must be at least 1"
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.data.validation_fraction),
            "data.validation_fraction must be in [0, 1), got {}",
            self.data.validation_fraction
        );
        anyhow::ensure!(
            self.training.optimizer.lr > 0.0,
            "training.optimizer.lr must be positive"
        );
        anyhow::ensure!(
            self.model.in_channels == 3,
            "model.in_channels must be 3 for photo classification (got {})",
            self.model.in_channels
        );
        crate::device::parse_device(&self.training.device)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults_follow_the_paper() {
        let c = TrainConfig::default();
        assert_eq!(c.model.input_size, 640);
        assert_eq!(c.training.epochs, 60);
        assert_eq!(c.training.optimizer.lr, 1e-4);
        let back = TrainConfig::from_toml_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn cosine_runs_from_base_to_min() {
        let s = LrSchedule::Cosine { min_lr: 1e-5 };
        assert_eq!(s.lr_at(1e-3, 0, 10), 1e-3);
        assert!((s.lr_at(1e-3, 9, 10) - 1e-5).abs() < 1e-15);
        assert!(s.lr_at(1e-3, 5, 10) < s.lr_at(1e-3, 4, 10));
        assert_eq!(LrSchedule::Constant.lr_at(1e-4, 7, 10), 1e-4);
        let c = TrainConfig::from_toml_str(
            "[training.lr_schedule]\nkind = \"cosine\"\nmin_lr = 1e-6\n",
        )
        .unwrap();
        assert_eq!(c.training.lr_schedule, LrSchedule::Cosine { min_lr: 1e-6 });
    }

    #[test]
    fn a_misspelt_field_is_named() {
        let err = TrainConfig::from_toml_str("[training]\nepochz = 3\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("epochz") && msg.contains("epochs"), "{msg}");
    }

    #[test]
    fn partial_files_take_defaults() {
        let c = TrainConfig::from_toml_str("[model]\ngrid = 2\ninput_size = 96\n").unwrap();
        assert_eq!(c.model.grid, 2);
        assert_eq!(c.model.arch, "densenet121");
        c.validate().unwrap();
        let bad = TrainConfig::from_toml_str("[model]\ngrid = 4\ninput_size = 102\n").unwrap();
        assert!(bad.validate().is_err());
    }
}
