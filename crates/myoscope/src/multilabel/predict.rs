//! Applying trained multi-label models to new images: one fold model (its folder holds
//! `model.json`, `best.safetensors` and `thresholds.json`) or every fold model of a
//! `multilabel cv` run, whose probabilities are averaged. Each class is called present where
//! its probability reaches the class's threshold — the one tuned on the fold's validation
//! images, or for an ensemble the mean of the members' thresholds, as the cv report's ensemble
//! does.
use super::images::ImageBank;
use crate::data::augment::Normalization;
use crate::training::checkpoint::read_json;
use crate::training::run_dir::{BEST_WEIGHTS_FILE, MODEL_FILE};
use crate::training::LoadedModel;
use anyhow::{bail, Context, Result};
use image::{imageops, DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

pub const THRESHOLDS_FILE: &str = "thresholds.json";

#[derive(Debug, Deserialize)]
struct SavedThresholds {
    classes: Vec<String>,
    thresholds: Vec<f64>,
}

struct Member {
    dir: PathBuf,
    model: LoadedModel,
}

/// The fold models of a run, ready to classify.
pub struct MultiLabelPredictor {
    pub classes: Vec<String>,
    /// Per class, the probability from which the class is called present.
    pub thresholds: Vec<f64>,
    pub input_size: i64,
    normalization: Normalization,
    members: Vec<Member>,
}

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct MultiLabelPrediction {
    pub image: String,
    /// Per class, in the order of [`MultiLabelPredictor::classes`] (ensemble mean).
    pub probabilities: Vec<f64>,
    /// The classes at or above their threshold.
    pub labels: Vec<String>,
}

/// Fold folders under a cv run (`seed-S/fold-K`), in a stable order.
fn fold_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .with_context(|| format!("cannot read {}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        Ok(v)
    };
    for seed in entries(dir)? {
        let is_seed = seed
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"));
        if !is_seed {
            continue;
        }
        for fold in entries(&seed)? {
            if fold.join(MODEL_FILE).is_file() {
                found.push(fold);
            }
        }
    }
    Ok(found)
}

impl MultiLabelPredictor {
    /// Opens a fold folder or a whole cv run folder.
    pub fn open(dir: &Path, device: Device) -> Result<Self> {
        let dirs = if dir.join(MODEL_FILE).is_file() {
            vec![dir.to_path_buf()]
        } else if dir.is_dir() {
            fold_dirs(dir)?
        } else {
            bail!("--model {}: no such folder", dir.display());
        };
        if dirs.is_empty() {
            bail!(
                "{} holds no multi-label model: give a `multilabel cv` run folder (with seed-*/fold-*) or one of its fold folders",
                dir.display()
            );
        }
        let mut members: Vec<Member> = Vec::new();
        let mut sums: Vec<f64> = Vec::new();
        for d in dirs {
            let weights = d.join(BEST_WEIGHTS_FILE);
            let saved = d.join(THRESHOLDS_FILE);
            if !weights.is_file() || !saved.is_file() {
                bail!(
                    "fold {} is unfinished (no {BEST_WEIGHTS_FILE} or {THRESHOLDS_FILE}); finish the run with `myoscope multilabel cv --out RUN --resume`",
                    d.display()
                );
            }
            let model = LoadedModel::from_run_dir(&d, device)?;
            let t: SavedThresholds = read_json(&saved)?;
            if t.classes != model.spec.classes || t.thresholds.len() != t.classes.len() {
                bail!(
                    "{}: the thresholds are for classes {:?}, the model for {:?}",
                    saved.display(),
                    t.classes,
                    model.spec.classes
                );
            }
            if let Some(first) = members.first() {
                let (a, b) = (&first.model.spec, &model.spec);
                if a.classes != b.classes
                    || a.model.input_size != b.model.input_size
                    || a.model.normalization != b.model.normalization
                {
                    bail!(
                        "{} and {} are models of different runs (classes, input size or normalisation differ)",
                        first.dir.display(),
                        d.display()
                    );
                }
            }
            if sums.is_empty() {
                sums = vec![0.0; t.thresholds.len()];
            }
            for (s, v) in sums.iter_mut().zip(&t.thresholds) {
                *s += v;
            }
            members.push(Member { dir: d, model });
        }
        let n = members.len() as f64;
        let spec = &members[0].model.spec;
        Ok(Self {
            classes: spec.classes.clone(),
            thresholds: sums.iter().map(|s| s / n).collect(),
            input_size: spec.model.input_size,
            normalization: spec.model.normalization.clone(),
            members,
        })
    }

    /// How many fold models are averaged.
    pub fn models(&self) -> usize {
        self.members.len()
    }

    /// Mean probabilities [images][classes] of already decoded, resized RGB images.
    pub fn probabilities(&self, images: Vec<RgbImage>, batch_size: usize) -> Vec<Vec<f64>> {
        let count = images.len();
        let bank = ImageBank::from_images(self.input_size as u32, images);
        let k = self.classes.len();
        let mut mean = vec![vec![0.0; k]; count];
        let indices: Vec<usize> = (0..count).collect();
        for chunk in indices.chunks(batch_size.max(1)) {
            let batch = bank.batch(chunk, &self.normalization, None);
            for m in &self.members {
                let probs = tch::no_grad(|| {
                    m.model
                        .net
                        .forward_t(&batch.to_device(m.model.vs.device()), false)
                        .logits
                        .to_device(Device::Cpu)
                        .to_kind(Kind::Double)
                        .sigmoid()
                });
                let flat: Vec<f64> = probs.flatten(0, -1).try_into().unwrap_or_default();
                for (row, p) in chunk.iter().zip(flat.chunks(k)) {
                    for (a, b) in mean[*row].iter_mut().zip(p) {
                        *a += b / self.members.len() as f64;
                    }
                }
            }
        }
        mean
    }

    /// The classes whose probability reaches their threshold.
    pub fn labels(&self, probabilities: &[f64]) -> Vec<String> {
        self.classes
            .iter()
            .zip(probabilities.iter().zip(&self.thresholds))
            .filter(|(_, (p, t))| p >= t)
            .map(|(c, _)| c.clone())
            .collect()
    }
}

/// Decodes an image for a 3-channel model, resized to `size`². RGB and RGBA (alpha dropped)
/// are taken; a grey image is an error unless `allow_grey` (then the grey value fills all three
/// channels, as training does), and so is anything the decoder cannot read.
pub fn load_for_model(path: &Path, size: u32, allow_grey: bool) -> Result<RgbImage> {
    if !path.is_file() {
        bail!("image {} does not exist", path.display());
    }
    let img = crate::data::decode::decode(path)?;
    let channels = img.color().channel_count();
    let grey = matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLumaA16(_)
    );
    if grey && !allow_grey {
        bail!(
            "image {} has {channels} channel(s) (grey{}), but the model reads 3-channel RGB photos; \
             convert it to RGB, or pass --allow-grey to repeat the grey value in all three channels",
            path.display(),
            if channels == 2 { " + alpha" } else { "" }
        );
    }
    if !grey && channels != 3 && channels != 4 {
        bail!(
            "image {} has {channels} channels; the model reads 3-channel RGB photos",
            path.display()
        );
    }
    let rgb = img.to_rgb8();
    Ok(imageops::resize(
        &rgb,
        size,
        size,
        imageops::FilterType::Triangle,
    ))
}

/// `predictions.csv`: image, one probability column per class, then the label set (`;`).
pub fn csv_text(classes: &[String], predictions: &[MultiLabelPrediction]) -> String {
    use super::dataset::csv_field;
    let mut s = String::from("image");
    for c in classes {
        s.push(',');
        s.push_str(&csv_field(c));
    }
    s.push_str(",labels\n");
    for p in predictions {
        s.push_str(&csv_field(&p.image));
        for v in &p.probabilities {
            s.push_str(&format!(",{v:.6}"));
        }
        s.push(',');
        s.push_str(&csv_field(&p.labels.join(";")));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multilabel::test_dir::Scratch;
    use image::{GrayImage, Luma, Rgb};

    #[test]
    fn grey_images_need_consent_and_missing_ones_are_named() {
        let dir = Scratch::new("ml-predict", line!());
        let grey = dir.0.join("grey.png");
        GrayImage::from_pixel(5, 4, Luma([90])).save(&grey).unwrap();
        let err = load_for_model(&grey, 8, false).unwrap_err().to_string();
        assert!(
            err.contains("1 channel") && err.contains("--allow-grey"),
            "{err}"
        );
        let img = load_for_model(&grey, 8, true).unwrap();
        assert_eq!(
            (img.dimensions(), img.get_pixel(3, 3)),
            ((8, 8), &Rgb([90, 90, 90]))
        );
        let err = load_for_model(&dir.0.join("nope.png"), 8, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        let junk = dir.0.join("junk.png");
        std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let err = format!("{:#}", load_for_model(&junk, 8, false).unwrap_err());
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn csv_lists_probabilities_and_labels() {
        let classes = vec!["T cell".to_string(), "B,cell".to_string()];
        let p = MultiLabelPrediction {
            image: "a.png".into(),
            probabilities: vec![0.9, 0.25],
            labels: vec!["T cell".into()],
        };
        let text = csv_text(&classes, &[p]);
        assert_eq!(
            text,
            "image,T cell,\"B,cell\",labels\na.png,0.900000,0.250000,T cell\n"
        );
    }
}
