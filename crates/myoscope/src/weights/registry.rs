//! The local weights registry: one folder per imported weight set, holding the converted
//! tensors (`weights.safetensors`, myoscope names) and `weights.json` (where they came from,
//! both checksums, the preprocessing). An import is built in a hidden folder and renamed into
//! place, so a failure leaves nothing half-written. Nothing here ever touches the network.
use super::fit::fit;
use super::keymap;
use super::preprocessing::Preprocessing;
use super::profile::default_preprocessing;
use super::source::{self, SourceFormat};
use crate::training::checkpoint::{load_tensors, read_json, save_tensors, write_json_atomic};
use crate::training::run_dir::{sha256_hex, timestamp};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const ENTRY_FILE: &str = "weights.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightsEntry {
    pub name: String,
    pub arch: String,
    /// Classes of the stored classification head (1000 for ImageNet), if the file had one.
    pub classes: Option<i64>,
    /// Variable prefix of that head, left out when the weights initialise a new model.
    pub head: String,
    pub parameters: i64,
    pub tensors: usize,
    /// sha256 of `weights.safetensors`, checked on every load.
    pub weights_sha256: String,
    pub preprocessing: Preprocessing,
    pub source: SourceRecord,
    pub imported: String,
    pub myoscope_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    pub file_name: String,
    pub path: PathBuf,
    pub format: SourceFormat,
    pub sha256: String,
    pub shards_sha256: Option<String>,
    pub convention: String,
    /// Entries left out because they play no part in the network (`num_batches_tracked`).
    pub dropped: usize,
}

/// What to import and how to describe it.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub file: PathBuf,
    pub arch: String,
    pub name: Option<String>,
    /// Refuse the file unless its sha256 is this (hex).
    pub expected_sha256: Option<String>,
    /// Overrides of the architecture's default preprocessing.
    pub input_size: Option<i64>,
    pub mean: Option<[f64; 3]>,
    pub std: Option<[f64; 3]>,
    /// Replace an existing entry of the same name.
    pub replace: bool,
}

pub struct Registry {
    pub root: PathBuf,
}

impl Registry {
    /// `$MYOSCOPE_WEIGHTS`, else `$XDG_DATA_HOME/myoscope/weights`, else
    /// `~/.local/share/myoscope/weights`.
    pub fn default_root() -> PathBuf {
        if let Some(p) = std::env::var_os("MYOSCOPE_WEIGHTS") {
            return PathBuf::from(p);
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        data.join("myoscope").join("weights")
    }

    pub fn open(root: Option<&Path>) -> Self {
        Self {
            root: root
                .map(Path::to_path_buf)
                .unwrap_or_else(Self::default_root),
        }
    }

    pub fn import(&self, req: &ImportRequest) -> Result<WeightsEntry> {
        if let Some(want) = &req.expected_sha256 {
            let file = if source::detect(&req.file)? == SourceFormat::TfjsLayers {
                super::tfjs::model_json_path(&req.file)
            } else {
                req.file.clone()
            };
            let got = source::file_sha256(&file)?;
            if !got.eq_ignore_ascii_case(want.trim()) {
                bail!(
                    "{} has sha256 {got}, not the expected {want}: a different or damaged file; nothing was imported",
                    file.display()
                );
            }
        }
        let src = source::read(&req.file)?;
        let file_name = src
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match &req.name {
            Some(n) => n.clone(),
            None => default_name(&req.arch, &src.path, &src.sha256),
        };
        check_name(&name)?;
        let dest = self.root.join(&name);
        if dest.exists() && !req.replace {
            bail!(
                "the registry already has '{name}' ({}); pass --replace to overwrite it or --name to choose another name",
                dest.display()
            );
        }
        let (targets, _) = super::fit::model_variables(&req.arch, 1)?;
        let target_names: Vec<String> = targets.into_iter().map(|(n, _)| n).collect();
        let mapped = keymap::map(&req.arch, &src, &target_names)?;
        let fitted = fit(&req.arch, &mapped, &src.path.display().to_string())?;

        let mut preprocessing = default_preprocessing(&req.arch);
        if let Some(s) = req.input_size {
            preprocessing.input_size = s;
        }
        if let Some(m) = req.mean {
            preprocessing.mean = m;
        }
        if let Some(s) = req.std {
            preprocessing.std = s;
        }
        preprocessing.notes.extend(mapped.notes.iter().cloned());

        std::fs::create_dir_all(&self.root).with_context(|| {
            format!("cannot create the registry folder {}", self.root.display())
        })?;
        let staging = self
            .root
            .join(format!(".incoming-{name}-{}", std::process::id()));
        let result = (|| -> Result<WeightsEntry> {
            std::fs::create_dir_all(&staging)?;
            let weights_path = staging.join(WEIGHTS_FILE);
            save_tensors(&weights_path, &fitted.tensors)?;
            let entry = WeightsEntry {
                name: name.clone(),
                arch: req.arch.clone(),
                classes: fitted.classes,
                head: fitted.head.clone(),
                parameters: fitted.parameters,
                tensors: fitted.tensors.len(),
                weights_sha256: sha256_hex(&std::fs::read(&weights_path)?),
                preprocessing,
                source: SourceRecord {
                    file_name,
                    path: src.path.canonicalize().unwrap_or(src.path.clone()),
                    format: src.format,
                    sha256: src.sha256.clone(),
                    shards_sha256: src.shards_sha256.clone(),
                    convention: mapped.convention.clone(),
                    dropped: mapped.dropped.len(),
                },
                imported: timestamp(),
                myoscope_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            write_json_atomic(&staging.join(ENTRY_FILE), &entry)?;
            if dest.exists() {
                let old = self
                    .root
                    .join(format!(".replaced-{name}-{}", std::process::id()));
                std::fs::rename(&dest, &old)?;
                std::fs::rename(&staging, &dest)?;
                let _ = std::fs::remove_dir_all(&old);
            } else {
                std::fs::rename(&staging, &dest)?;
            }
            Ok(entry)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    pub fn list(&self) -> Result<Vec<WeightsEntry>> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !e.path().join(ENTRY_FILE).is_file() {
                continue;
            }
            entries.push(read_json::<WeightsEntry>(&e.path().join(ENTRY_FILE))?);
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    pub fn get(&self, name: &str) -> Result<WeightsEntry> {
        check_name(name)?;
        let path = self.root.join(name).join(ENTRY_FILE);
        if !path.is_file() {
            let known: Vec<String> = self.list()?.into_iter().map(|e| e.name).collect();
            bail!(
                "no weights named '{name}' in the registry {} (it has: {}); import them with `myoscope weights import FILE --arch ARCH --name {name}`",
                self.root.display(),
                if known.is_empty() { "nothing yet".into() } else { known.join(", ") }
            );
        }
        read_json(&path)
    }

    /// The stored tensors, after checking them against the recorded sha256.
    pub fn load(&self, entry: &WeightsEntry) -> Result<HashMap<String, Tensor>> {
        let path = self.root.join(&entry.name).join(WEIGHTS_FILE);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if sha256_hex(&bytes) != entry.weights_sha256 {
            bail!(
                "{} does not match the sha256 recorded at import; the registry entry '{}' is damaged: import it again",
                path.display(),
                entry.name
            );
        }
        load_tensors(&path)
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let entry = self.get(name)?;
        std::fs::remove_dir_all(self.root.join(&entry.name))
            .with_context(|| format!("cannot remove {}", self.root.join(name).display()))
    }
}

/// `mobilenet_v2-b0353104.pth` → `mobilenet_v2-b0353104`; a TF.js `model.json` is named after
/// its architecture and checksum.
fn default_name(arch: &str, path: &Path, sha256: &str) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean == "model" || path.is_dir() {
        format!("{arch}-{}", &sha256[..8.min(sha256.len())])
    } else {
        clean
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        bail!("'{name}' is not a usable weights name: use letters, digits, '.', '_' and '-' (not starting with '.')");
    }
    Ok(())
}
