//! What a trained model is, apart from its weights: architecture, geometry, class list and
//! input preprocessing. Saved beside the weights so `predict` rebuilds the same network.
use crate::config::ModelConfig;
use crate::models::{build_backbone, AggregatedClassifier};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub model: ModelConfig,
    pub classes: Vec<String>,
}

impl ModelSpec {
    pub fn build(&self, vs: &nn::VarStore) -> Result<AggregatedClassifier> {
        crate::models::validate_geometry(self.model.input_size, self.model.grid)?;
        let trunk = build_backbone(&self.model.arch, &vs.root(), self.model.in_channels)?;
        Ok(AggregatedClassifier::new(
            &vs.root(),
            trunk,
            self.model.grid,
            self.classes.len() as i64,
        ))
    }

    pub fn read(path: &Path) -> Result<Self> {
        super::checkpoint::read_json(path)
            .with_context(|| format!("{} does not describe a myoscope model", path.display()))
    }
}

/// A model ready for inference: spec + weights on a device, in evaluation mode.
pub struct LoadedModel {
    pub spec: ModelSpec,
    pub vs: nn::VarStore,
    pub net: AggregatedClassifier,
    /// The kind the weights are held in; inputs are converted to it.
    pub precision: crate::precision::Precision,
}

impl LoadedModel {
    /// Loads `model.json` and `best.safetensors` from a run directory.
    pub fn from_run_dir(dir: &Path, device: tch::Device) -> Result<Self> {
        let spec_path = dir.join(super::run_dir::MODEL_FILE);
        if !spec_path.is_file() {
            anyhow::bail!(
                "{} is not a trained model: it has no {} (pass the run directory written by `myoscope train`)",
                dir.display(),
                super::run_dir::MODEL_FILE
            );
        }
        let spec = ModelSpec::read(&spec_path)?;
        let weights = dir.join(super::run_dir::BEST_WEIGHTS_FILE);
        Self::from_parts(spec, &weights, device)
    }

    pub fn from_parts(spec: ModelSpec, weights: &Path, device: tch::Device) -> Result<Self> {
        let mut vs = nn::VarStore::new(device);
        let net = spec.build(&vs)?;
        let tensors = super::checkpoint::load_tensors(weights)?;
        super::checkpoint::load_into_varstore(&vs, &tensors, weights)?;
        vs.freeze();
        Ok(Self {
            spec,
            vs,
            net,
            precision: crate::precision::Precision::Fp32,
        })
    }

    /// Converts the weights to `precision` (bf16 for the reduced-precision fast path; the
    /// probabilities stay f32).
    pub fn set_precision(&mut self, precision: crate::precision::Precision) {
        self.vs.set_kind(precision.kind());
        self.precision = precision;
    }

    /// Class probabilities [B, K] for a normalised batch [B, 3, S, S].
    pub fn probabilities(&self, images: &tch::Tensor) -> tch::Tensor {
        tch::no_grad(|| {
            let x = images
                .to_device(self.vs.device())
                .to_kind(self.precision.kind());
            self.net
                .forward_t(&x, false)
                .logits
                .softmax(-1, tch::Kind::Float)
                .to_device(tch::Device::Cpu)
        })
    }
}
