//! Starting a model from registry weights: the architecture and input normalisation come with
//! the weights (a mismatch is an error, not a silent accuracy loss), the trunk is copied in,
//! the output layers start fresh, and the run records which weights it started from.
use super::channels::adapt_first_conv;
use super::profile::first_conv;
use super::registry::{Registry, WeightsEntry};
use crate::config::ModelConfig;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::{nn, Tensor};

/// What a run manifest records about its starting weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainedRecord {
    pub name: String,
    pub arch: String,
    pub weights_sha256: String,
    pub source_file: String,
    pub source_sha256: String,
}

impl From<&WeightsEntry> for PretrainedRecord {
    fn from(e: &WeightsEntry) -> Self {
        Self {
            name: e.name.clone(),
            arch: e.arch.clone(),
            weights_sha256: e.weights_sha256.clone(),
            source_file: e.source.file_name.clone(),
            source_sha256: e.source.sha256.clone(),
        }
    }
}

/// Settles a model config that names weights: the architecture is the weights' (an explicit
/// different one is an error) and the normalisation is theirs. Returns the entry.
pub fn settle_model_config(
    model: &mut ModelConfig,
    arch_given: bool,
    registry: &Registry,
) -> Result<Option<WeightsEntry>> {
    let Some(name) = model.weights.clone() else {
        return Ok(None);
    };
    let entry = registry.get(&name)?;
    if arch_given && model.arch != entry.arch {
        bail!(
            "weights '{name}' are for {}, but the model is {}: drop --arch (it follows the weights) or pick weights for {}",
            entry.arch,
            model.arch,
            model.arch
        );
    }
    model.arch = entry.arch.clone();
    let norm = entry.preprocessing.normalization()?;
    if model.normalization != norm && model.normalization != Default::default() {
        eprintln!(
            "note: normalisation {:?}/{:?} replaced by the one weights '{name}' were trained with",
            model.normalization.mean, model.normalization.std
        );
    }
    model.normalization = norm;
    Ok(Some(entry))
}

/// Copies the trunk of `entry` into `vs` (every variable except those under `fresh`
/// prefixes), adapting the first convolution to the model's input channels. Returns how many
/// tensors were copied.
pub fn init_trunk(
    vs: &nn::VarStore,
    registry: &Registry,
    entry: &WeightsEntry,
    in_channels: i64,
    fresh: &[String],
) -> Result<usize> {
    let mut tensors: HashMap<String, Tensor> = registry.load(entry)?;
    if in_channels != 3 {
        let Some(conv) = first_conv(&entry.arch) else {
            bail!(
                "{} has no known first convolution to adapt to {in_channels} channels",
                entry.arch
            );
        };
        if let Some(w) = tensors.get(conv) {
            let adapted = adapt_first_conv(w, in_channels)?;
            tensors.insert(conv.to_string(), adapted);
        }
    }
    let source = registry.root.join(&entry.name);
    crate::training::checkpoint::load_matching(vs, &tensors, &source, |name| {
        !fresh.iter().any(|p| name.starts_with(p.as_str()))
    })
}
