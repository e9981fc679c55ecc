//! Proof that imported weights compute what PyTorch computes: the logits that
//! `scripts/weights_reference.py` recorded with torchvision / timm / a PyTorch port of the
//! Keras graph, on real photographs, recomputed here from the registry entry (its tensors and
//! its recorded preprocessing) and compared element by element.
use super::registry::{Registry, WeightsEntry};
use crate::data::crop::{crop_box, Crop};
use crate::models::{build_backbone, AggregatedClassifier};
use crate::training::checkpoint::load_into_varstore;
use crate::training::run_dir::sha256_hex;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// The reference logits, produced by `scripts/weights_reference.py`.
pub const FIXTURE: &str = include_str!("../../tests/fixtures/weights_parity.json");
/// The largest logit difference accepted.
pub const TOLERANCE: f64 = 1e-4;

#[derive(Debug, Deserialize)]
pub struct Fixture {
    pub versions: BTreeMap<String, String>,
    pub photos: BTreeMap<String, Photo>,
    pub entries: Vec<ReferenceEntry>,
}

#[derive(Debug, Deserialize)]
pub struct Photo {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
pub struct ReferenceEntry {
    /// Path relative to the sources folder.
    pub file: String,
    pub sha256: String,
    pub arch: String,
    pub reference: String,
    pub input_size: i64,
    pub logits: BTreeMap<String, Vec<f32>>,
    pub top1: BTreeMap<String, i64>,
    pub top1_label: BTreeMap<String, String>,
}

pub fn fixture() -> Result<Fixture> {
    serde_json::from_str(FIXTURE).context("the embedded weights_parity.json is malformed")
}

/// `$MYOSCOPE_SOURCES`, else `~/.cache/myoscope/sources`: where `scripts/fetch_weights.sh`
/// puts the registry packages' weight files and photos.
pub fn default_sources() -> PathBuf {
    if let Some(p) = std::env::var_os("MYOSCOPE_SOURCES") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/myoscope/sources")
}

/// One photo's comparison.
#[derive(Debug, Clone)]
pub struct PhotoCheck {
    pub photo: String,
    pub max_abs_diff: f64,
    pub top1: i64,
    pub reference_top1: i64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct EntryCheck {
    pub name: String,
    pub file: String,
    pub reference: String,
    pub photos: Vec<PhotoCheck>,
}

impl EntryCheck {
    pub fn max_abs_diff(&self) -> f64 {
        self.photos
            .iter()
            .map(|p| p.max_abs_diff)
            .fold(0.0, f64::max)
    }

    pub fn passed(&self) -> bool {
        self.max_abs_diff() <= TOLERANCE && self.photos.iter().all(|p| p.top1 == p.reference_top1)
    }
}

/// The reference entry recorded for an imported file, if any.
pub fn reference_for<'a>(fixture: &'a Fixture, entry: &WeightsEntry) -> Option<&'a ReferenceEntry> {
    fixture
        .entries
        .iter()
        .find(|r| r.sha256 == entry.source.sha256 && r.arch == entry.arch)
}

/// Recomputes the reference logits of `entry` on every fixture photo.
pub fn check(
    registry: &Registry,
    entry: &WeightsEntry,
    reference: &ReferenceEntry,
    fixture: &Fixture,
    sources: &Path,
) -> Result<EntryCheck> {
    let Some(classes) = entry.classes else {
        bail!(
            "'{}' was imported without its classification head; there are no logits to compare",
            entry.name
        );
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let trunk = build_backbone(&entry.arch, &vs.root(), 3)?;
    let net = AggregatedClassifier::new(&vs.root(), trunk, 1, classes);
    let tensors = registry.load(entry)?;
    load_into_varstore(&vs, &tensors, &registry.root.join(&entry.name))?;
    let mut photos = Vec::new();
    for (key, want) in &reference.logits {
        let photo = fixture
            .photos
            .get(key)
            .with_context(|| format!("the fixture has logits for an unknown photo '{key}'"))?;
        let pixels = photo_pixels(
            &sources.join(&photo.file),
            &photo.sha256,
            reference.input_size,
        )?;
        let input = entry.preprocessing.normalise_pixels(&pixels);
        let logits = tch::no_grad(|| net.forward_t(&input, false).logits).view([-1]);
        let want_t = Tensor::from_slice(want);
        if want_t.size() != logits.size() {
            bail!(
                "reference has {} logits, the model {}",
                want.len(),
                logits.size()[0]
            );
        }
        let diff = (&logits - &want_t).abs().max().double_value(&[]);
        let top1 = logits.argmax(0, false).int64_value(&[]);
        photos.push(PhotoCheck {
            photo: key.clone(),
            max_abs_diff: diff,
            top1,
            reference_top1: reference.top1.get(key).copied().unwrap_or(-1),
            label: reference.top1_label.get(key).cloned().unwrap_or_default(),
        });
    }
    Ok(EntryCheck {
        name: entry.name.clone(),
        file: reference.file.clone(),
        reference: reference.reference.clone(),
        photos,
    })
}

/// The reference scripts' input: the photo's centre square as 0–255 floats [1, 3, S, S],
/// resized with the antialiased bilinear kernel PyTorch's `interpolate` uses.
pub fn photo_pixels(path: &Path, sha256: &str, size: i64) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the reference photo {} (run scripts/fetch_weights.sh, or pass --sources)",
            path.display()
        )
    })?;
    if sha256_hex(&bytes) != sha256 {
        bail!(
            "{} is not the photo the reference logits were computed on (sha256 differs)",
            path.display()
        );
    }
    let img = crate::data::decode::load_rgb(path)?;
    let (x, y, side) = crop_box(img.width(), img.height(), Crop::Centre);
    let square = image::imageops::crop_imm(&img, x, y, side, side).to_image();
    let hwc = Tensor::from_slice(square.as_raw()).view([side as i64, side as i64, 3]);
    let chw = hwc.permute([2, 0, 1]).unsqueeze(0).to_kind(Kind::Float);
    Ok(chw.internal_upsample_bilinear2d_aa([size, size], false, None, None))
}
