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
        let side = self.model.input_size / self.model.grid;
        if side < trunk.min_input_side() {
            anyhow::bail!(
                "{} needs patches of at least {}² pixels, but input size {} with a {}×{} grid gives {side}²; raise the input size",
                self.model.arch,
                trunk.min_input_side(),
                self.model.input_size,
                self.model.grid,
                self.model.grid
            );
        }
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
    /// The weight file it was loaded from (an exported `model.onnx` sits beside it).
    pub weights: std::path::PathBuf,
    /// Set by [`LoadedModel::use_engine`]: probabilities then come from ONNX Runtime.
    pub onnx: Option<crate::onnx::OnnxClassifier>,
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
            weights: weights.to_path_buf(),
            onnx: None,
            precision: crate::precision::Precision::Fp32,
        })
    }

    /// Runs this model with `engine` from now on. For ONNX Runtime it opens the `model.onnx`
    /// beside the weights when that was exported from these very weights (sha256 in its
    /// sidecar), and otherwise exports the model in memory, saying so.
    pub fn use_engine(&mut self, engine: crate::onnx::Engine, threads: usize) -> Result<()> {
        use crate::onnx::{export, Engine, OnnxClassifier};
        if engine == Engine::Torch {
            self.onnx = None;
            return Ok(());
        }
        let int8 = engine == Engine::OnnxInt8;
        let file = self.weights.with_file_name(if int8 {
            export::INT8_FILE
        } else {
            export::ONNX_FILE
        });
        let bytes = std::fs::read(&self.weights)
            .with_context(|| format!("cannot read {}", self.weights.display()))?;
        let sha = super::run_dir::sha256_hex(&bytes);
        let current =
            file.is_file() && export::read_sidecar(&file).is_ok_and(|s| s.weights_sha256 == sha);
        let dir = self.weights.parent().unwrap_or(Path::new("."));
        let problem = if file.is_file() {
            "was exported from other weights"
        } else {
            "does not exist"
        };
        self.onnx = Some(if current {
            OnnxClassifier::load(&file, threads)?
        } else if int8 {
            anyhow::bail!(
                "{} {problem}; make it with `myoscope export onnx --model {} --int8 --calibrate MANIFEST`",
                file.display(),
                dir.display()
            );
        } else {
            eprintln!(
                "note: {} {problem}; exporting it in memory (`myoscope export onnx --model {}` saves it)",
                file.display(),
                dir.display()
            );
            let vars = self.vs.variables();
            let (model, sidecar) = export::export_model(&self.spec, &vars, &sha)?;
            OnnxClassifier::from_bytes(&model, sidecar, threads)?
        });
        Ok(())
    }

    /// Converts the weights to `precision` (bf16 for the reduced-precision fast path; the
    /// probabilities stay f32). Applies to the libtorch engine only.
    pub fn set_precision(&mut self, precision: crate::precision::Precision) {
        self.vs.set_kind(precision.kind());
        self.precision = precision;
    }

    /// A normalised batch as the libtorch model takes it: on its device, in its precision.
    fn torch_input(&self, images: &tch::Tensor) -> tch::Tensor {
        images
            .to_device(self.vs.device())
            .to_kind(self.precision.kind())
    }

    /// Grad-CAM heat-maps `[N, h, w]` at the trunk's last maps (see
    /// [`crate::explain::gradcam::heat_maps`]). With ONNX Runtime the trunk runs there and its
    /// `feature_maps` output feeds the same closed form on the libtorch heads.
    pub fn heat_maps(
        &self,
        images: &tch::Tensor,
        classes: &[i64],
        method: crate::explain::gradcam::CamMethod,
    ) -> Result<tch::Tensor> {
        let Some(onnx) = &self.onnx else {
            let x = self.torch_input(images);
            return Ok(
                crate::explain::gradcam::heat_maps(&self.net, &x, classes, method)?
                    .to_device(tch::Device::Cpu),
            );
        };
        let maps = onnx.forward(images)?.patch_maps(&self.net);
        self.heat_maps_from(&maps, classes, method)
    }

    /// Class probabilities [B, K] (on the CPU) and, where the heat-maps' closed form applies
    /// (the heads read the trunk's last maps), those patch maps `[B·g², C, h, w]` from the
    /// same forward pass, for [`Self::heat_maps_from`]: a photo's call and its heat-map then
    /// cost one trunk pass instead of two.
    pub fn probabilities_with_maps(
        &self,
        images: &tch::Tensor,
    ) -> Result<(tch::Tensor, Option<tch::Tensor>)> {
        if !self.net.pools_maps() {
            return Ok((self.probabilities(images)?, None));
        }
        if let Some(onnx) = &self.onnx {
            let out = onnx.forward(images)?;
            return Ok((out.probabilities_tensor(), Some(out.patch_maps(&self.net))));
        }
        Ok(tch::no_grad(|| {
            let maps = self.net.patch_maps(&self.torch_input(images), false);
            let probabilities = softmax_on_cpu(&self.net.head_forward(&maps).logits);
            (probabilities, Some(maps))
        }))
    }

    /// [`Self::heat_maps`] from patch maps that [`Self::probabilities_with_maps`] gave.
    pub fn heat_maps_from(
        &self,
        patch_maps: &tch::Tensor,
        classes: &[i64],
        method: crate::explain::gradcam::CamMethod,
    ) -> Result<tch::Tensor> {
        let maps = patch_maps.to_device(self.vs.device());
        Ok(
            crate::explain::gradcam::heat_maps_from_maps(&self.net, &maps, classes, method)?
                .to_device(tch::Device::Cpu),
        )
    }

    /// Class probabilities [B, K] (on the CPU) for a normalised batch [B, 3, S, S].
    pub fn probabilities(&self, images: &tch::Tensor) -> Result<tch::Tensor> {
        if let Some(onnx) = &self.onnx {
            return onnx.probabilities(images);
        }
        Ok(tch::no_grad(|| {
            softmax_on_cpu(&self.net.forward_t(&self.torch_input(images), false).logits)
        }))
    }
}

/// Probabilities in f32 on the CPU, whatever kind and device the logits are in.
fn softmax_on_cpu(logits: &tch::Tensor) -> tch::Tensor {
    logits
        .softmax(-1, tch::Kind::Float)
        .to_device(tch::Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::gradcam::CamMethod;
    use tch::{Device, Kind, Tensor};

    /// One trunk pass gives what two gave: the same probabilities, and from its kept maps the
    /// same heat-maps as a fresh pass.
    #[test]
    fn kept_maps_give_the_same_probabilities_and_heat_maps() {
        let spec = ModelSpec {
            model: crate::config::ModelConfig {
                arch: "densenet-tiny".into(),
                grid: 2,
                input_size: 64,
                ..Default::default()
            },
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = spec.build(&vs).unwrap();
        let model = LoadedModel {
            spec,
            vs,
            net,
            weights: Default::default(),
            onnx: None,
            precision: crate::precision::Precision::Fp32,
        };
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let (p, maps) = model.probabilities_with_maps(&x).unwrap();
        let maps = maps.expect("a DenseNet's heads read its last maps");
        let expect = model.probabilities(&x).unwrap();
        assert!(p.allclose(&expect, 1e-5, 1e-6, false));
        let mut peak = 0f64;
        for method in [CamMethod::Plain, CamMethod::PatchWeighted] {
            let kept = model.heat_maps_from(&maps, &[0, 2], method).unwrap();
            let fresh = model.heat_maps(&x, &[0, 2], method).unwrap();
            assert_eq!((kept.size(), kept.size()[0]), (fresh.size(), 2));
            let d = (&kept - &fresh).abs().max().double_value(&[]);
            assert!(d < 1e-6, "{} maps differ by {d}", method.name());
            peak = peak.max(kept.max().double_value(&[]));
        }
        assert!(peak > 0.0, "every map was zero: nothing was compared");
    }
}
