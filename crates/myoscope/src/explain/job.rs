//! One `explain` run: for every photo, the model's (or ensemble's) probabilities, the heat-map
//! of the chosen class on the square the model saw, its overlay and focused/unfocused images,
//! a contact sheet per slide and, where lesion masks exist, the pointing game.
use super::gradcam::{ensemble_mean, heat_maps_at_layer, CamMethod};
use super::photos::{stem_of, PhotoItem};
use super::pointing::{score, summarise, PhotoScore, PointingSummary};
use super::render::{contact_sheet, crop_mask, focus_split, overlay, SquareHeat};
use crate::data::augment::{to_chw, ColourJitter};
use crate::data::crop::{crop_and_resize, crop_box, Crop};
use crate::data::decode::load_rgb;
use crate::training::checkpoint::write_json_atomic;
use crate::training::LoadedModel;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Which class's heat-map to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassChoice {
    Predicted,
    /// The manifest's label (an error for photos without one).
    True,
    Named(String),
}

pub struct ExplainOptions {
    pub out: PathBuf,
    /// The method drawn in the pictures.
    pub method: CamMethod,
    pub class: ClassChoice,
    /// Trunk layer to take the maps from (default: the last).
    pub layer: Option<String>,
    /// Score both methods against the lesion masks (true class).
    pub pointing_game: bool,
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct PhotoReport {
    pub photo: String,
    pub label: Option<String>,
    pub slide: Option<String>,
    pub predicted: String,
    pub probabilities: BTreeMap<String, f64>,
    pub explained_class: String,
    pub overlay: String,
    pub focused: String,
    pub unfocused: String,
    pub heat_map: String,
}

#[derive(Debug, Serialize)]
pub struct ExplainReport {
    pub method: CamMethod,
    pub layer: String,
    pub models: usize,
    pub classes: Vec<String>,
    pub photos: Vec<PhotoReport>,
    pub pointing_game: Option<BTreeMap<String, PointingSummary>>,
}

/// The models must agree on what they take and predict (the fold models of one stage do).
pub fn check_models(models: &[LoadedModel]) -> Result<()> {
    let Some(first) = models.first() else {
        bail!("no model to explain");
    };
    for m in &models[1..] {
        if m.spec.classes != first.spec.classes
            || m.spec.model.input_size != first.spec.model.input_size
            || m.spec.model.normalization != first.spec.model.normalization
        {
            bail!("the ensemble's models differ in classes, input size or normalisation");
        }
    }
    Ok(())
}

pub fn run(
    models: &[LoadedModel],
    items: &[PhotoItem],
    opts: &ExplainOptions,
) -> Result<ExplainReport> {
    check_models(models)?;
    let spec = &models[0].spec;
    let classes = spec.classes.clone();
    let class_index = |name: &str| -> Result<i64> {
        classes
            .iter()
            .position(|c| c == name)
            .map(|i| i as i64)
            .with_context(|| {
                format!(
                    "class '{name}' is not one of the model's classes ({})",
                    classes.join(", ")
                )
            })
    };
    if let ClassChoice::Named(n) = &opts.class {
        class_index(n)?;
    }
    let layers = models[0].net.layer_names();
    let layer = match &opts.layer {
        Some(l) if !layers.contains(l) => bail!(
            "--layer {l}: the {} trunk has the layers {}",
            spec.model.arch,
            layers.join(", ")
        ),
        Some(l) => l.clone(),
        None => models[0].net.default_cam_layer(),
    };
    let photo_dir = opts.out.join("photos");
    std::fs::create_dir_all(&photo_dir)
        .with_context(|| format!("cannot create {}", photo_dir.display()))?;

    let bar = crate::progress::bar(opts.progress, items.len() as u64, "explain", "photos");
    let mut photos = Vec::new();
    let mut sheets: BTreeMap<String, Vec<image::RgbImage>> = BTreeMap::new();
    let mut scores: BTreeMap<&'static str, Vec<PhotoScore>> = BTreeMap::new();
    for item in items {
        bar.set_message(item.key.clone());
        let prepared = Prepared::load(item, models)?;
        let (probs, kept) = prepared.probabilities_keeping_maps(models)?;
        let predicted = argmax(&probs);
        let explained = match &opts.class {
            ClassChoice::Predicted => predicted as i64,
            ClassChoice::Named(n) => class_index(n)?,
            ClassChoice::True => match &item.label {
                Some(l) => class_index(l)?,
                None => bail!(
                    "{} has no label; --class true needs a manifest label column",
                    item.key
                ),
            },
        };
        let heat = prepared.heat(models, &kept, explained, opts.method, &layer)?;
        let stem = stem_of(&item.key);
        let (files, overlaid) = write_pictures(&photo_dir, &stem, &prepared.square, &heat)?;
        if let Some(slide) = &item.slide {
            let thumb =
                image::imageops::resize(&overlaid, 256, 256, image::imageops::FilterType::Triangle);
            sheets.entry(slide.clone()).or_default().push(thumb);
        }
        if opts.pointing_game {
            if let (Some(mask_path), Some(label)) = (&item.mask, &item.label) {
                let truth = class_index(label)?;
                let mask = image::open(mask_path)
                    .with_context(|| format!("cannot read lesion mask {}", mask_path.display()))?
                    .to_luma8();
                if mask.dimensions() != prepared.photo_size {
                    bail!(
                        "lesion mask {} is {:?}, its photo {:?}",
                        mask_path.display(),
                        mask.dimensions(),
                        prepared.photo_size
                    );
                }
                let (x, y, side) = prepared.crop;
                let mask = crop_mask(&mask, x, y, side);
                for method in [CamMethod::PatchWeighted, CamMethod::Plain] {
                    if method == CamMethod::PatchWeighted && spec.model.grid < 2 {
                        continue;
                    }
                    let h = if method == opts.method && truth == explained {
                        heat.clone()
                    } else {
                        prepared.heat(models, &kept, truth, method, &layer)?
                    };
                    if let Some(s) = score(&h, &mask) {
                        scores.entry(method.name()).or_default().push(s);
                    }
                }
            }
        }
        photos.push(PhotoReport {
            photo: item.key.clone(),
            label: item.label.clone(),
            slide: item.slide.clone(),
            predicted: classes[predicted].clone(),
            probabilities: classes.iter().cloned().zip(probs.iter().copied()).collect(),
            explained_class: classes[explained as usize].clone(),
            overlay: format!("photos/{}", files[0]),
            focused: format!("photos/{}", files[1]),
            unfocused: format!("photos/{}", files[2]),
            heat_map: format!("photos/{}", files[3]),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();

    if !sheets.is_empty() {
        let dir = opts.out.join("slides");
        std::fs::create_dir_all(&dir)?;
        for (slide, tiles) in &sheets {
            if let Some(sheet) = contact_sheet(tiles, 4) {
                sheet.save(dir.join(format!("{}.png", stem_of(slide))))?;
            }
        }
    }
    let pointing_game = opts.pointing_game.then(|| {
        scores
            .iter()
            .map(|(m, s)| (m.to_string(), summarise(s)))
            .collect::<BTreeMap<_, _>>()
    });
    let report = ExplainReport {
        method: opts.method,
        layer,
        models: models.len(),
        classes,
        photos,
        pointing_game,
    };
    write_json_atomic(&opts.out.join("explain.json"), &report)?;
    if let Some(pg) = &report.pointing_game {
        write_pointing_json(&opts.out, pg)?;
    }
    Ok(report)
}

/// `pointing_game.json`: per method, plus the patch-weighted figures at the top level (the
/// method of the paper) when the model has a patch grid.
fn write_pointing_json(out: &Path, pg: &BTreeMap<String, PointingSummary>) -> Result<()> {
    let mut doc = serde_json::Map::new();
    let main = pg.get("patch-weighted").or_else(|| pg.get("plain"));
    if let Some(m) = main {
        doc.insert(
            "method".into(),
            (if pg.contains_key("patch-weighted") {
                "patch-weighted"
            } else {
                "plain"
            })
            .into(),
        );
        doc.insert("hit_rate".into(), m.hit_rate.into());
        doc.insert("hit_rate_within_15px".into(), m.hit_rate_within_15px.into());
        doc.insert("mean_mass_inside".into(), m.mean_mass_inside.into());
        doc.insert("photos".into(), m.photos.into());
    }
    for (k, v) in pg {
        doc.insert(k.replace('-', "_"), serde_json::to_value(v)?);
    }
    write_json_atomic(
        &out.join("pointing_game.json"),
        &serde_json::Value::Object(doc),
    )
}

/// A photo decoded, cropped and normalised for the models: the centre square the models see,
/// at photo resolution (for the pictures) and as their input tensor.
pub struct Prepared {
    pub photo_size: (u32, u32),
    /// (x, y, side) of the centre square within the photo.
    pub crop: (u32, u32, u32),
    pub square: image::RgbImage,
    pub input: Tensor,
}

impl Prepared {
    fn load(item: &PhotoItem, models: &[LoadedModel]) -> Result<Self> {
        let img = load_rgb(&item.path)?;
        Self::from_image(&img, models).with_context(|| item.path.display().to_string())
    }

    /// The smallest short side a photo may have for these models: eight pixels per patch.
    pub fn min_side(models: &[LoadedModel]) -> u32 {
        models.first().map_or(8, |m| (m.spec.model.grid * 8) as u32)
    }

    /// From a decoded photo (the clinic server decodes uploads in memory).
    pub fn from_image(img: &image::RgbImage, models: &[LoadedModel]) -> Result<Self> {
        let Some(first) = models.first() else {
            bail!("no model to run");
        };
        let spec = &first.spec.model;
        let (w, h) = img.dimensions();
        let min_side = Self::min_side(models);
        if w.min(h) < min_side {
            bail!(
                "the photo is {w}×{h}: too small for a {}×{} patch grid (the short side needs at least {min_side} pixels)",
                spec.grid,
                spec.grid
            );
        }
        let crop = crop_box(w, h, Crop::Centre);
        let square = image::imageops::crop_imm(img, crop.0, crop.1, crop.2, crop.2).to_image();
        let s = spec.input_size as u32;
        let resized = crop_and_resize(img, Crop::Centre, s);
        let chw = to_chw(&resized, ColourJitter::NONE, &spec.normalization);
        let input = Tensor::from_slice(&chw).view([1, 3, s as i64, s as i64]);
        Ok(Self {
            photo_size: (w, h),
            crop,
            square,
            input,
        })
    }

    /// Mean of the models' class probabilities.
    pub fn probabilities(&self, models: &[LoadedModel]) -> Result<Vec<f64>> {
        Ok(self.probabilities_keeping_maps(models)?.0)
    }

    /// Mean of the models' class probabilities, keeping each model's trunk maps (where it has
    /// them) for [`Self::heat`].
    pub fn probabilities_keeping_maps(
        &self,
        models: &[LoadedModel],
    ) -> Result<(Vec<f64>, Vec<Option<Tensor>>)> {
        let mut sum: Option<Tensor> = None;
        let mut kept = Vec::with_capacity(models.len());
        for m in models {
            let (p, maps) = m.probabilities_with_maps(&self.input)?;
            let p = p.view([-1]).to_kind(Kind::Double);
            sum = Some(match sum {
                Some(s) => s + p,
                None => p,
            });
            kept.push(maps);
        }
        let mean = sum.context("no model")? / models.len() as f64;
        Ok((Vec::<f64>::try_from(mean)?, kept))
    }

    /// The heat-map of `class` on the square (the mean over the models, each scaled to a
    /// maximum of 1), reusing the trunk maps that [`Self::probabilities_keeping_maps`] kept
    /// (one per model; an empty slice runs each trunk again).
    pub fn heat(
        &self,
        models: &[LoadedModel],
        kept: &[Option<Tensor>],
        class: i64,
        method: CamMethod,
        layer: &str,
    ) -> Result<SquareHeat> {
        let maps = models
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let last =
                    m.net.pools_maps() && m.net.layer_names().last().is_some_and(|l| l == layer);
                if let (true, Some(Some(maps))) = (last, kept.get(i)) {
                    m.heat_maps_from(maps, &[class], method)
                } else if last {
                    m.heat_maps(&self.input, &[class], method)
                } else {
                    // Inner layers need libtorch's trunk, whatever engine gives the probabilities.
                    let x = self.input.to_device(m.vs.device());
                    heat_maps_at_layer(&m.net, &x, &[class], method, layer)
                        .map(|h| h.to_device(tch::Device::Cpu))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let map = if maps.len() == 1 {
            maps[0].shallow_clone()
        } else {
            ensemble_mean(&maps)?
        };
        SquareHeat::from_map(&map.get(0), self.crop.2)
    }
}

/// Overlay, focused, unfocused and 16-bit heat-map files for one photo: their names, and the
/// overlay itself for the slide's contact sheet.
fn write_pictures(
    dir: &Path,
    stem: &str,
    square: &image::RgbImage,
    heat: &SquareHeat,
) -> Result<([String; 4], image::RgbImage)> {
    let names = [
        format!("{stem}_overlay.png"),
        format!("{stem}_focused.png"),
        format!("{stem}_unfocused.png"),
        format!("{stem}_heat16.png"),
    ];
    let save = |name: &str, img: &image::RgbImage| {
        img.save(dir.join(name))
            .with_context(|| format!("cannot write {}", dir.join(name).display()))
    };
    let overlaid = overlay(square, heat, 0.45)?;
    save(&names[0], &overlaid)?;
    let (focused, unfocused) = focus_split(square, heat)?;
    save(&names[1], &focused)?;
    save(&names[2], &unfocused)?;
    heat.to_png16()
        .save(dir.join(&names[3]))
        .with_context(|| format!("cannot write {}", dir.join(&names[3]).display()))?;
    Ok((names, overlaid))
}

fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}
