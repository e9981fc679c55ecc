//! A trained segmentation run loaded for inference: the spec, the kept (best) weights and the
//! settings inference must share with training (tile geometry, channel).
use super::config::SegTrainConfig;
use super::models::{SegmentationModel, SegmentationModelSpec};
use super::tiling::TileConfig;
use crate::training::checkpoint::{load_into_varstore, load_tensors};
use crate::training::run_dir;
use anyhow::{bail, Result};
use std::path::Path;
use tch::{nn, Device};

pub struct SegmentationRun {
    pub config: SegTrainConfig,
    pub net: SegmentationModel,
    pub vs: nn::VarStore,
    pub device: Device,
}

impl SegmentationRun {
    pub fn open(dir: &Path, device: Device) -> Result<Self> {
        let weights = dir.join(run_dir::BEST_WEIGHTS_FILE);
        if !weights.is_file() {
            bail!(
                "{} holds no trained segmentation model ({} missing): train one with `myoscope segment train --out {}`",
                dir.display(),
                run_dir::BEST_WEIGHTS_FILE,
                dir.display()
            );
        }
        let config = SegTrainConfig::from_toml_file(&dir.join(run_dir::CONFIG_FILE))?;
        let spec = SegmentationModelSpec::load(&dir.join(run_dir::MODEL_FILE))?;
        let mut vs = nn::VarStore::new(device);
        let net = spec.build(&vs.root())?;
        load_into_varstore(&vs, &load_tensors(&weights)?, &weights)?;
        vs.freeze();
        Ok(Self {
            config,
            net,
            vs,
            device,
        })
    }

    pub fn tiles(&self) -> Result<TileConfig> {
        TileConfig::new(self.config.training.tile, self.config.training.overlap)
    }
}
