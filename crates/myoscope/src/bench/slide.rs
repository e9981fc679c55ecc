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
//! no backward pass. With an ONNX engine the trunk runs in ONNX Runtime (fp32 or int8), whose
//! `feature_maps` output feeds the same closed form.
use super::classifier::{model, onnx_session, sync};
use super::inputs::centre_squares;
use super::{Engine, Params, Precision, Runnable};
use crate::explain::gradcam::{ensemble_mean, heat_maps_from_maps, CamMethod};
use crate::models::AggregatedClassifier;
use crate::onnx::OnnxClassifier;
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

/// Photos per slide in this case.
pub const PHOTOS: usize = 3;

struct Member {
    _vs: nn::VarStore,
    /// The libtorch model; with an ONNX engine only its heads are used (for the heat-maps).
    net: AggregatedClassifier,
    onnx: Option<OnnxClassifier>,
}

pub struct SlideDiagnosis {
    step1: Vec<Member>,
    step2: Vec<Member>,
    photos: Vec<PathBuf>,
    params: Params,
    precision: Precision,
    engine: Engine,
    device: Device,
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
    pub fn new(
        params: &Params,
        precision: Precision,
        engine: Engine,
        device: Device,
    ) -> Result<Self> {
        if params.photos.len() < PHOTOS {
            bail!("the slide case needs {PHOTOS} photos");
        }
        if engine != Engine::Libtorch && (precision != Precision::Fp32 || device != Device::Cpu) {
            bail!("the ONNX engines run on the CPU from fp32 models");
        }
        let batches = match engine {
            Engine::OnnxInt8 => Some(super::classifier::calibration(params)?),
            _ => None,
        };
        let build = |classes: i64, seed: i64| -> Result<Vec<Member>> {
            (0..params.ensemble as i64)
                .map(|k| {
                    tch::manual_seed(seed + k);
                    let (mut vs, net) = model(params, classes, device)?;
                    vs.freeze();
                    let onnx = match engine {
                        Engine::Libtorch => None,
                        Engine::Onnx | Engine::OnnxInt8 => {
                            Some(onnx_session(params, &vs, classes, batches.as_ref())?)
                        }
                    };
                    vs.set_kind(precision.kind());
                    Ok(Member { _vs: vs, net, onnx })
                })
                .collect()
        };
        Ok(Self {
            step1: build(params.step1_classes, 100)?,
            step2: build(params.step2_classes, 200)?,
            photos: params.photos[..PHOTOS].to_vec(),
            params: params.clone(),
            precision,
            engine,
            device,
            last: None,
        })
    }

    /// Decodes, crops, resizes and normalises the photos in parallel into one batch.
    fn batch(&self) -> Result<(Batch, u32)> {
        let (pixels, side) = centre_squares(&self.photos, self.params.size as u32)?;
        let s = self.params.size;
        let shape = [self.photos.len() as i64, 3, s, s];
        let tensor = (self.engine == Engine::Libtorch).then(|| {
            Tensor::from_slice(&pixels)
                .view(shape)
                .to_device(self.device)
                .to_kind(self.precision.kind())
        });
        Ok((
            Batch {
                pixels,
                shape,
                tensor,
            },
            side,
        ))
    }
}

/// The photos as ONNX Runtime reads them, and as a libtorch tensor for the libtorch engine.
struct Batch {
    pixels: Vec<f32>,
    shape: [i64; 4],
    tensor: Option<Tensor>,
}

/// One model on the batch: its class probabilities [N, K] and its trunk's patch maps
/// [N·g², C, h, w].
fn forward(m: &Member, x: &Batch) -> Result<(Tensor, Tensor)> {
    match (&m.onnx, &x.tensor) {
        (Some(onnx), _) => {
            let out = onnx.run(x.pixels.clone(), x.shape)?;
            Ok((out.probabilities_tensor(), out.patch_maps(&m.net)))
        }
        (None, Some(x)) => {
            let maps = tch::no_grad(|| m.net.patch_maps(x, false));
            let probs = tch::no_grad(|| m.net.head_forward(&maps).logits.softmax(-1, Kind::Float));
            Ok((probs, maps))
        }
        (None, None) => bail!("the libtorch engine needs the batch as a tensor"),
    }
}

/// One ensemble on the batch: the slide's mean probabilities (over models, then photos), the
/// class it picks (the first class at ≥ 0.5 for a two-class step, else the most probable),
/// and the ensemble's heat-maps for that class.
fn ensemble_step(members: &[Member], x: &Batch) -> Result<(Vec<f64>, usize, Tensor)> {
    let mut maps = Vec::with_capacity(members.len());
    let mut sum: Option<Tensor> = None;
    for m in members {
        let (probs, patch_maps) = forward(m, x)?;
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
    let n = x.shape[0] as usize;
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
            match self.engine {
                Engine::Libtorch => format!("libtorch {}", self.precision.name()),
                Engine::Onnx => "ONNX Runtime fp32".into(),
                Engine::OnnxInt8 => "ONNX Runtime int8".into(),
            }
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
        let mut slide =
            SlideDiagnosis::new(&params, Precision::Fp32, Engine::Libtorch, Device::Cpu).unwrap();
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

    /// The ONNX engine gives the libtorch engine's diagnosis and heat-maps (its feature maps
    /// feed the same closed form); int8 gives a diagnosis of the same shape.
    #[test]
    fn the_onnx_engines_give_the_same_slide() {
        if let Err(e) = crate::onnx::runtime::init() {
            eprintln!("SKIP: ONNX Runtime is not available here: {e:#}");
            return;
        }
        let dir =
            std::env::temp_dir().join(format!("myoscope-bench-slide-onnx-{}", std::process::id()));
        let photos = super::super::inputs::write_photos(&dir, 4, 136, 102).unwrap();
        let params = Params {
            arch: "densenet-tiny".into(),
            size: 64,
            grid: 2,
            ensemble: 2,
            threads: 1,
            photos,
            ..Params::default()
        };
        let mut outcomes = Vec::new();
        for engine in [Engine::Libtorch, Engine::Onnx, Engine::OnnxInt8] {
            let mut slide =
                SlideDiagnosis::new(&params, Precision::Fp32, engine, Device::Cpu).unwrap();
            slide.run().unwrap();
            outcomes.push(slide.last.take().unwrap());
        }
        let (torch, onnx, int8) = (&outcomes[0], &outcomes[1], &outcomes[2]);
        let close =
            |a: &[f64], b: &[f64], tol: f64| a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol);
        assert!(
            close(&torch.step1, &onnx.step1, 1e-5),
            "{:?} vs {:?}",
            torch.step1,
            onnx.step1
        );
        assert!(
            close(&torch.step2, &onnx.step2, 1e-5),
            "{:?} vs {:?}",
            torch.step2,
            onnx.step2
        );
        assert_eq!((torch.call, torch.subtype), (onnx.call, onnx.subtype));
        let d = (&torch.call_maps - &onnx.call_maps)
            .abs()
            .max()
            .double_value(&[]);
        assert!(d < 1e-4, "heat-maps differ by {d}");
        assert_eq!(int8.call_maps.size(), torch.call_maps.size());
        assert!(
            close(&torch.step1, &int8.step1, 0.05),
            "{:?} vs {:?}",
            torch.step1,
            int8.step1
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
