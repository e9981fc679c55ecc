//! Weight files as they arrive: which format a file is in (by its bytes, not its name), its
//! checksum, and its tensors under the names its authors gave them.
use super::{tfjs, torch_file};
use crate::training::run_dir::sha256_hex;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// `torch.save` since PyTorch 1.6: a zip of `data.pkl` and raw storages.
    PthZip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)`: pickles back to back.
    PthLegacy,
    Safetensors,
    /// TensorFlow.js layers model: `model.json` + binary shards.
    TfjsLayers,
}

impl SourceFormat {
    pub fn describe(self) -> &'static str {
        match self {
            SourceFormat::PthZip => "PyTorch .pth (zip)",
            SourceFormat::PthLegacy => "PyTorch .pth (legacy pickle)",
            SourceFormat::Safetensors => "safetensors",
            SourceFormat::TfjsLayers => "TensorFlow.js layers model",
        }
    }
}

/// A weight file read into memory.
pub struct Source {
    pub format: SourceFormat,
    pub tensors: Vec<(String, Tensor)>,
    /// The TF.js topology, for the layer settings a key map must check.
    pub tfjs: Option<tfjs::TfjsModel>,
    /// sha256 of the file (of `model.json` for TF.js; the shards are in `shards_sha256`).
    pub sha256: String,
    /// sha256 of the TF.js shards concatenated in manifest order.
    pub shards_sha256: Option<String>,
    pub path: PathBuf,
}

pub fn detect(path: &Path) -> Result<SourceFormat> {
    if path.is_dir() || path.extension().is_some_and(|e| e == "json") {
        if tfjs::looks_like_tfjs(path) {
            return Ok(SourceFormat::TfjsLayers);
        }
        bail!(
            "{} is not a TensorFlow.js layers model (no model.json with a weightsManifest)",
            path.display()
        );
    }
    let mut head = [0u8; 9];
    let n = std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .read(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(SourceFormat::PthZip);
    }
    // A pickle stream opens with PROTO (0x80) and a protocol number; torch writes 2.
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Ok(SourceFormat::PthLegacy);
    }
    // safetensors: an 8-byte little-endian header length, then the JSON header.
    if head.len() == 9 && head[8] == b'{' {
        return Ok(SourceFormat::Safetensors);
    }
    bail!(
        "{} is not a weight file myoscope reads: expected a PyTorch .pth/.pt (zip or legacy), a .safetensors file, or a TF.js model.json",
        path.display()
    )
}

pub fn read(path: &Path) -> Result<Source> {
    let format = detect(path)?;
    let (tensors, tfjs, sha256, shards_sha256) = match format {
        SourceFormat::PthZip | SourceFormat::PthLegacy => {
            (torch_file::read(path)?, None, file_sha256(path)?, None)
        }
        SourceFormat::Safetensors => {
            let tensors = Tensor::read_safetensors(path).with_context(|| {
                format!(
                    "{} is not a valid safetensors file (truncated or corrupt?)",
                    path.display()
                )
            })?;
            (tensors, None, file_sha256(path)?, None)
        }
        SourceFormat::TfjsLayers => {
            let model = tfjs::read(path)?;
            let sha = file_sha256(&model.files[0])?;
            let mut shards = Vec::new();
            for f in &model.files[1..] {
                shards.extend(std::fs::read(f)?);
            }
            let tensors = model
                .tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect();
            (tensors, Some(model), sha, Some(sha256_hex(&shards)))
        }
    };
    if tensors.is_empty() {
        bail!("{} holds no tensors", path.display());
    }
    Ok(Source {
        format,
        tensors,
        tfjs,
        sha256,
        shards_sha256,
        path: path.to_path_buf(),
    })
}

pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(sha256_hex(&bytes))
}
