//! The models of one worker thread and what they answer: the two-step diagnosis of one slide
//! (its uploaded photos), each photo's probabilities, and the heat-map pictures. The maths is
//! the command line's: [`Decision`] calls step 1, [`Prepared`] crops and normalises a photo
//! exactly as `explain` does, the ensemble probability is the mean over its fold models and
//! the slide probability the mean over its photos.
use super::model_info::ModelSource;
use super::pictures::{png_data_uri, rgb_data_uri};
use super::upload::Photo;
use crate::cv::config::{EvaluationSettings, Hierarchy};
use crate::diagnose::{single_subtype, Decision, SlideDiagnosis};
use crate::explain::gradcam::CamMethod;
use crate::explain::job::{check_models, Prepared};
use crate::explain::render::{focus_split, overlay, SquareHeat};
use crate::training::LoadedModel;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// A step-2 stage: the subtypes within one group.
struct Step2 {
    group: String,
    classes: Vec<String>,
    models: Vec<LoadedModel>,
}

pub struct Classifier {
    step1: Vec<LoadedModel>,
    step2: Vec<Step2>,
    decision: Decision,
    hierarchy: Option<Hierarchy>,
    method: CamMethod,
}

/// The overlay and the visualisation test's AI-focused / AI-unfocused images of one photo.
#[derive(Debug, Clone, Serialize)]
pub struct HeatPictures {
    /// The class the map explains.
    pub class: String,
    pub method: String,
    pub overlay: String,
    pub focused: String,
    pub unfocused: String,
    /// The map itself as a 16-bit grey PNG at the square's resolution (explain only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heat_map_16bit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhotoResult {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Step-1 probabilities of this photo (mean over the ensemble's models).
    pub group_probabilities: BTreeMap<String, f64>,
    /// Step-2 probabilities within the slide's called group, where there is a step 2.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subtype_probabilities: BTreeMap<String, f64>,
    pub predicted: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heat_map: Option<HeatPictures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlideResult {
    pub diagnosis: SlideDiagnosis,
    pub photos: Vec<PhotoResult>,
}

impl Classifier {
    /// Loads the models onto `device`, then switches them to `engine` (ONNX Runtime uses
    /// `threads` intra-op threads per model; 0: one per core).
    pub fn open(
        source: &ModelSource,
        device: tch::Device,
        engine: crate::onnx::Engine,
        threads: usize,
    ) -> Result<Self> {
        let (mut step1, mut step2, hierarchy, eval, classes) = match source {
            ModelSource::Ensemble(ens) => {
                let m = &ens.manifest;
                let first = &m.stages[0].stage;
                let step1 = ens.load_stage(&first.name, device)?;
                let mut step2 = Vec::new();
                for s in m.stages.iter().skip(1) {
                    if let Some(group) = &s.stage.group {
                        step2.push(Step2 {
                            group: group.clone(),
                            classes: s.stage.classes.clone(),
                            models: ens.load_stage(&s.stage.name, device)?,
                        });
                    }
                }
                (
                    step1,
                    step2,
                    m.hierarchy.clone(),
                    m.evaluation.clone(),
                    first.classes.clone(),
                )
            }
            ModelSource::Run { dir, .. } => {
                let model = LoadedModel::from_run_dir(dir, device)?;
                let classes = model.spec.classes.clone();
                (
                    vec![model],
                    Vec::new(),
                    None,
                    EvaluationSettings::default(),
                    classes,
                )
            }
        };
        for m in step1
            .iter_mut()
            .chain(step2.iter_mut().flat_map(|s| s.models.iter_mut()))
        {
            m.use_engine(engine, threads)?;
        }
        check_models(&step1)?;
        for s in &step2 {
            check_models(&s.models)?;
            let (a, b) = (&s.models[0].spec.model, &step1[0].spec.model);
            if a.input_size != b.input_size || a.normalization != b.normalization {
                bail!(
                    "step 2 '{}' preprocesses photos differently from step 1",
                    s.group
                );
            }
        }
        let method = if step1[0].spec.model.grid >= 2 {
            CamMethod::PatchWeighted
        } else {
            CamMethod::Plain
        };
        let decision = Decision::new(&classes, hierarchy.as_ref(), &eval, None, None);
        Ok(Self {
            step1,
            step2,
            decision,
            hierarchy,
            method,
        })
    }

    /// The smallest short side a photo may have (eight pixels per patch of the grid).
    pub fn min_side(&self) -> u32 {
        Prepared::min_side(&self.step1)
    }

    pub fn classes(&self) -> &[String] {
        &self.decision.classes
    }

    /// The two-step diagnosis of one slide from its photos, with each photo's heat-map of the
    /// called group when `heat_maps` is set.
    pub fn diagnose(
        &self,
        slide: &str,
        photos: &[Photo],
        heat_maps: bool,
        picture_side: u32,
    ) -> Result<SlideResult> {
        if photos.is_empty() {
            bail!("no photos to diagnose");
        }
        let prepared = photos
            .iter()
            .map(|p| Prepared::from_image(&p.image, &self.step1).with_context(|| p.name.clone()))
            .collect::<Result<Vec<_>>>()?;
        // Each step-1 trunk pass keeps its maps, so the call's heat-maps need no second pass.
        let (per_photo, kept): (Vec<_>, Vec<_>) = prepared
            .iter()
            .map(|p| p.probabilities_keeping_maps(&self.step1))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let mean = crate::diagnose::mean_rows(per_photo.iter());
        let (p, call) = self.decision.call(&mean);

        // Step 2 of the called group, on every photo of the slide.
        let step2 = self.step2.iter().find(|s| s.group == call);
        let subtype_rows = match step2 {
            Some(s) => prepared
                .iter()
                .map(|p| p.probabilities(&s.models))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let subtype_probabilities: BTreeMap<String, f64> = match step2 {
            Some(s) => s
                .classes
                .iter()
                .cloned()
                .zip(crate::diagnose::mean_rows(subtype_rows.iter()))
                .collect(),
            None => BTreeMap::new(),
        };
        let subtype = subtype_probabilities
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(s, _)| s.clone())
            .or_else(|| single_subtype(self.hierarchy.as_ref(), &call));
        let classes = &self.decision.classes;
        let call_index = classes.iter().position(|c| *c == call).unwrap_or(0) as i64;

        let mut results = Vec::with_capacity(photos.len());
        for (i, (photo, prep)) in photos.iter().zip(&prepared).enumerate() {
            let heat_map = if heat_maps {
                Some(self.pictures(prep, &kept[i], call_index, picture_side, false)?)
            } else {
                None
            };
            results.push(PhotoResult {
                name: photo.name.clone(),
                width: prep.photo_size.0,
                height: prep.photo_size.1,
                group_probabilities: named(classes, &per_photo[i]),
                subtype_probabilities: match step2 {
                    Some(s) => named(&s.classes, &subtype_rows[i]),
                    None => BTreeMap::new(),
                },
                predicted: classes[argmax(&per_photo[i])].clone(),
                heat_map,
            });
        }
        Ok(SlideResult {
            diagnosis: SlideDiagnosis {
                slide: slide.to_string(),
                images: photos.len(),
                group_probabilities: named(classes, &mean),
                positive_group: self.decision.positive.clone(),
                positive_probability: p,
                threshold: self.decision.threshold,
                uncertain: self.decision.is_uncertain(p),
                call,
                subtype_probabilities,
                subtype,
                truth: None,
            },
            photos: results,
        })
    }

    /// Each photo's step-1 probabilities and the heat-map of `class` (default: the photo's
    /// most probable class), with the raw 16-bit map.
    pub fn explain(
        &self,
        photos: &[Photo],
        class: Option<&str>,
        picture_side: u32,
    ) -> Result<Vec<PhotoResult>> {
        let classes = &self.decision.classes;
        let named_class = match class {
            Some(c) => Some(classes.iter().position(|k| k == c).with_context(|| {
                format!(
                    "class '{c}' is not one of the model's step-1 classes ({})",
                    classes.join(", ")
                )
            })? as i64),
            None => None,
        };
        photos
            .iter()
            .map(|photo| {
                let prep = Prepared::from_image(&photo.image, &self.step1)
                    .with_context(|| photo.name.clone())?;
                let (probs, kept) = prep.probabilities_keeping_maps(&self.step1)?;
                let predicted = argmax(&probs);
                let target = named_class.unwrap_or(predicted as i64);
                Ok(PhotoResult {
                    name: photo.name.clone(),
                    width: prep.photo_size.0,
                    height: prep.photo_size.1,
                    group_probabilities: named(classes, &probs),
                    subtype_probabilities: BTreeMap::new(),
                    predicted: classes[predicted].clone(),
                    heat_map: Some(self.pictures(&prep, &kept, target, picture_side, true)?),
                })
            })
            .collect()
    }

    fn pictures(
        &self,
        prep: &Prepared,
        kept: &[Option<tch::Tensor>],
        class: i64,
        side: u32,
        with_raw: bool,
    ) -> Result<HeatPictures> {
        let layer = self.step1[0]
            .net
            .layer_names()
            .last()
            .cloned()
            .unwrap_or_default();
        let heat: SquareHeat = prep.heat(&self.step1, kept, class, self.method, &layer)?;
        let overlaid = overlay(&prep.square, &heat, 0.45)?;
        let (focused, unfocused) = focus_split(&prep.square, &heat)?;
        let heat_map_16bit = if with_raw {
            let raw = heat.to_png16();
            let bytes: Vec<u8> = raw.as_raw().iter().flat_map(|v| v.to_ne_bytes()).collect();
            Some(png_data_uri(
                &bytes,
                raw.width(),
                raw.height(),
                image::ExtendedColorType::L16,
            )?)
        } else {
            None
        };
        Ok(HeatPictures {
            class: self.decision.classes[class as usize].clone(),
            method: self.method.name().to_string(),
            overlay: rgb_data_uri(&overlaid, side)?,
            focused: rgb_data_uri(&focused, side)?,
            unfocused: rgb_data_uri(&unfocused, side)?,
            heat_map_16bit,
        })
    }
}

fn named(classes: &[String], values: &[f64]) -> BTreeMap<String, f64> {
    classes
        .iter()
        .cloned()
        .zip(values.iter().copied())
        .collect()
}

fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}
