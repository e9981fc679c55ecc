//! One slide end to end, as a clinic PC would run it: 3 camera photos (JPEG, 1360×1024) →
//! centre 1024² square → 640² → step 1 (5 DenseNet-121 aggregated models, ensemble mean, slide
//! mean, call at 0.5) → step 2 (5 models of the called group, subtype) → the patch-weighted
//! Grad-CAM heat-map of every photo for the call and for the subtype (ensemble mean of
//! unit-max maps, upsampled onto the 1024² square). Models are random-init and built once,
//! as a resident service would hold them; loading weight files is not timed.
//!
//! The fast path: the three photos go through each model as one batch, and each model's one
//! forward pass gives both the probabilities and, by the closed-form gradients of
//! [`crate::explain::gradcam::heat_maps_from_maps`], the heat-maps — no second trunk pass and
//! no backward pass.
use super::classifier::{model, sync};
use super::{Params, Precision, Runnable};
use crate::data::augment::{to_chw, ColourJitter, Normalization};
use crate::data::crop::{crop_and_resize, crop_box, Crop};
use crate::data::decode::load_rgb;
use crate::explain::gradcam::{ensemble_mean, heat_maps_from_maps, CamMethod};
use crate::models::AggregatedClassifier;
use anyhow::{bail, Result};
use rayon::prelude::*;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

/// Photos per slide in this case.
pub const PHOTOS: usize = 3;

struct Member {
    _vs: nn::VarStore,
    net: AggregatedClassifier,
}

pub struct SlideDiagnosis {
    step1: Vec<Member>,
    step2: Vec<Member>,
    photos: Vec<PathBuf>,
    params: Params,
    precision: Precision,
    device: Device,
    norm: Normalization,
    /// The last run's outcome, kept so the work cannot be optimised away and for checks.
    pub last: Option<Outcome>,
}

/// What a slide's diagnosis produces.
#[derive(Debug)]
pub struct Outcome {
    /// Step-1 slide probabilities and the called class.
    pub step1: Vec<f64>,
    pub call: usize,
    /// Step-2 slide probabilities and the subtype.
    pub step2: Vec<f64>,
    pub subtype: usize,
    /// Heat-maps [photos, side, side] for the call and for the subtype.
    pub call_maps: Tensor,
    pub subtype_maps: Tensor,
}

impl SlideDiagnosis {
    pub fn new(params: &Params, precision: Precision, device: Device) -> Result<Self> {
        if params.photos.len() < PHOTOS {
            bail!("the slide case needs {PHOTOS} photos");
        }
        let build = |classes: i64, seed: i64| -> Result<Vec<Member>> {
            (0..params.ensemble as i64)
                .map(|k| {
                    tch::manual_seed(seed + k);
                    let (mut vs, net) = model(params, classes, device)?;
                    vs.freeze();
                    vs.set_kind(precision.kind());
                    Ok(Member { _vs: vs, net })
                })
                .collect()
        };
        Ok(Self {
            step1: build(params.step1_classes, 100)?,
            step2: build(params.step2_classes, 200)?,
            photos: params.photos[..PHOTOS].to_vec(),
            params: params.clone(),
            precision,
            device,
            norm: Normalization::default(),
            last: None,
        })
    }

    /// Decodes, crops, resizes and normalises the photos in parallel into one batch.
    fn batch(&self) -> Result<(Tensor, u32)> {
        let size = self.params.size as u32;
        let norm = &self.norm;
        let parts: Vec<(Vec<f32>, u32)> = self
            .photos
            .par_iter()
            .map(|p| -> Result<(Vec<f32>, u32)> {
                let img = load_rgb(p)?;
                let side = crop_box(img.width(), img.height(), Crop::Centre).2;
                let square = crop_and_resize(&img, Crop::Centre, size);
                Ok((to_chw(&square, ColourJitter::NONE, norm), side))
            })
            .collect::<Result<_>>()?;
        let side = parts[0].1;
        let n = parts.len() as i64;
        let mut pixels = Vec::with_capacity(parts.len() * parts[0].0.len());
        for (p, _) in &parts {
            pixels.extend_from_slice(p);
        }
        let s = size as i64;
        let x = Tensor::from_slice(&pixels)
            .view([n, 3, s, s])
            .to_device(self.device)
            .to_kind(self.precision.kind());
        Ok((x, side))
    }
}

/// One ensemble on the batch: the slide's mean probabilities (over models, then photos), the
/// class it picks (the first class at ≥ 0.5 for a two-class step, else the most probable),
/// and the ensemble's heat-maps for that class.
fn ensemble_step(members: &[Member], x: &Tensor) -> Result<(Vec<f64>, usize, Tensor)> {
    let mut maps = Vec::with_capacity(members.len());
    let mut sum: Option<Tensor> = None;
    for m in members {
        let patch_maps = tch::no_grad(|| m.net.patch_maps(x, false));
        let probs = tch::no_grad(|| {
            m.net
                .head_forward(&patch_maps)
                .logits
                .softmax(-1, Kind::Float)
        });
        sum = Some(match sum {
            Some(s) => s + probs,
            None => probs,
        });
        maps.push(patch_maps);
    }
    let Some(sum) = sum else {
        bail!("an empty ensemble");
    };
    let per_photo = sum / members.len() as f64;
    let slide: Vec<f64> = Vec::<f64>::try_from(
        per_photo
            .mean_dim(&[0i64][..], false, Kind::Double)
            .to_device(Device::Cpu),
    )?;
    let class = if slide.len() == 2 {
        if slide[0] >= 0.5 {
            0
        } else {
            1
        }
    } else {
        crate::evaluation::metrics::argmax_rows(std::slice::from_ref(&slide))[0]
    };
    let n = x.size()[0] as usize;
    let classes = vec![class as i64; n];
    let heat = members
        .iter()
        .zip(&maps)
        .map(|(m, a)| heat_maps_from_maps(&m.net, a, &classes, CamMethod::PatchWeighted))
        .collect::<Result<Vec<_>>>()?;
    Ok((slide, class, ensemble_mean(&heat)?))
}

/// [N, h, w] maps → [N, side, side], bilinear, onto the photo's square.
fn onto_square(maps: &Tensor, side: u32) -> Tensor {
    let s = side as i64;
    maps.unsqueeze(1)
        .upsample_bilinear2d([s, s], false, None, None)
        .squeeze_dim(1)
}

impl Runnable for SlideDiagnosis {
    fn run(&mut self) -> Result<()> {
        let (x, side) = self.batch()?;
        let (step1, call, call_maps) = ensemble_step(&self.step1, &x)?;
        let (step2, subtype, subtype_maps) = ensemble_step(&self.step2, &x)?;
        let call_maps = onto_square(&call_maps, side).to_device(Device::Cpu);
        let subtype_maps = onto_square(&subtype_maps, side).to_device(Device::Cpu);
        sync(self.device);
        anyhow::ensure!(
            step1.iter().chain(&step2).all(|p| p.is_finite()),
            "non-finite probabilities"
        );
        self.last = Some(Outcome {
            step1,
            call,
            step2,
            subtype,
            call_maps,
            subtype_maps,
        });
        Ok(())
    }
    fn items(&self) -> f64 {
        1.0
    }
    fn unit(&self) -> &'static str {
        "slides"
    }
    fn detail(&self) -> String {
        format!(
            "{PHOTOS} JPEG photos 1360×1024 → centre square → {}²; 2 steps × {} aggregated {} models ({}), each photo batch in one pass; ensemble + slide means; patch-weighted Grad-CAM per photo for the call and the subtype, upsampled to the square",
            self.params.size,
            self.params.ensemble,
            self.params.arch,
            self.precision.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small geometry end to end: the outcome is a proper diagnosis with one map per photo.
    #[test]
    fn a_small_slide_is_diagnosed_with_heat_maps() {
        let dir = std::env::temp_dir().join(format!("myoscope-bench-slide-{}", std::process::id()));
        let photos = super::super::inputs::write_photos(&dir, 3, 136, 102).unwrap();
        let params = Params {
            arch: "densenet-tiny".into(),
            size: 64,
            grid: 2,
            ensemble: 2,
            photos,
            ..Params::default()
        };
        let mut slide = SlideDiagnosis::new(&params, Precision::Fp32, Device::Cpu).unwrap();
        slide.run().unwrap();
        let out = slide.last.take().unwrap();
        assert!((out.step1.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        assert!((out.step2.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        assert_eq!(out.step2.len(), 4);
        assert!(out.call < 2 && out.subtype < 4);
        assert_eq!(out.call_maps.size(), [3, 102, 102]);
        assert_eq!(out.subtype_maps.size(), [3, 102, 102]);
        assert!(out.call_maps.max().double_value(&[]) > 0.0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
