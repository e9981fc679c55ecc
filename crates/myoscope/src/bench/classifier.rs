//! The aggregated classifier (Kabeya et al.; DenseNet-121 at 640², 4×4 patches of 160²):
//! inference on a batch of photos, and one training step with the aggregated loss and RAdam.
use super::{Params, Precision, Runnable};
use crate::models::{build_backbone, AggregatedClassifier};
use crate::training::loss::aggregated_loss;
use crate::training::radam::{RAdam, RAdamConfig};
use anyhow::Result;
use tch::{nn, Device, Kind, Tensor};

/// A seeded random-init aggregated model with `classes` outputs.
pub fn model(
    params: &Params,
    classes: i64,
    device: Device,
) -> Result<(nn::VarStore, AggregatedClassifier)> {
    crate::models::validate_geometry(params.size, params.grid)?;
    let vs = nn::VarStore::new(device);
    let trunk = build_backbone(&params.arch, &vs.root(), 3)?;
    let net = AggregatedClassifier::new(&vs.root(), trunk, params.grid, classes);
    Ok((vs, net))
}

fn patches(params: &Params) -> f64 {
    (params.batch * params.grid * params.grid) as f64
}

/// "aggregated densenet121 at 640², 4×4 patches, batch 1" and what one run does.
fn describe(params: &Params, what: &str) -> String {
    format!(
        "aggregated {} at {}², {}×{} patches, batch {}: {what}",
        params.arch, params.size, params.grid, params.grid, params.batch
    )
}

pub struct Inference {
    _vs: nn::VarStore,
    net: AggregatedClassifier,
    x: Tensor,
    params: Params,
    precision: Precision,
    device: Device,
}

impl Inference {
    pub fn new(params: &Params, precision: Precision, device: Device) -> Result<Self> {
        tch::manual_seed(0);
        let (mut vs, net) = model(params, 2, device)?;
        vs.freeze();
        vs.set_kind(precision.kind());
        let x = Tensor::randn(
            [params.batch, 3, params.size, params.size],
            (Kind::Float, device),
        )
        .to_kind(precision.kind());
        Ok(Self {
            _vs: vs,
            net,
            x,
            params: params.clone(),
            precision,
            device,
        })
    }
}

impl Runnable for Inference {
    fn run(&mut self) -> Result<()> {
        let p = tch::no_grad(|| {
            self.net
                .forward_t(&self.x, false)
                .logits
                .softmax(-1, Kind::Float)
        });
        sync(self.device);
        anyhow::ensure!(p.double_value(&[0, 0]).is_finite(), "non-finite output");
        Ok(())
    }
    fn items(&self) -> f64 {
        patches(&self.params)
    }
    fn unit(&self) -> &'static str {
        "patches"
    }
    fn detail(&self) -> String {
        describe(
            &self.params,
            &format!("forward + softmax, {}", self.precision.name()),
        )
    }
}

/// Calibration batches for the bench's int8 models, decoded once per case.
pub type Calibration = Vec<(Vec<f32>, [i64; 4])>;

/// The bench photos that calibrate its int8 models (they are random-init, so any photos
/// serve to set the ranges the timing runs through).
pub fn calibration(params: &Params) -> Result<Calibration> {
    if params.photos.is_empty() {
        anyhow::bail!("the int8 cases calibrate on the bench photos, and there are none");
    }
    super::inputs::calibration_batches(&params.photos, CALIBRATION_PHOTOS, params.size)
}

/// Our ONNX export of a built model (`vs` holds its weights, `classes` outputs) in an ONNX
/// Runtime session: fp32, or, given `int8` calibration batches, the static int8 model
/// (99.999th-percentile ranges, as `myoscope export onnx --int8` does by default).
pub fn onnx_session(
    params: &Params,
    vs: &nn::VarStore,
    classes: i64,
    int8: Option<&Calibration>,
) -> Result<crate::onnx::OnnxClassifier> {
    use crate::{config::ModelConfig, training::ModelSpec};
    let spec = ModelSpec {
        model: ModelConfig {
            arch: params.arch.clone(),
            grid: params.grid,
            input_size: params.size,
            ..Default::default()
        },
        classes: (0..classes).map(|k| format!("class{k}")).collect(),
    };
    let threads = usize::try_from(params.threads).unwrap_or(0);
    let vars = vs.variables();
    let (bytes, sidecar) = if let Some(batches) = int8 {
        crate::onnx::quantize::export_int8(
            &spec,
            &vars,
            "bench",
            batches.iter().cloned().map(Ok),
            crate::onnx::calibrate::Calibration::Percentile(99.999),
            format!("{CALIBRATION_PHOTOS} bench photos"),
            threads,
        )?
    } else {
        crate::onnx::export::export_model(&spec, &vars, "bench")?
    };
    crate::onnx::OnnxClassifier::from_bytes(&bytes, sidecar, threads)
}

/// Photos that calibrate each int8 model of the bench.
pub const CALIBRATION_PHOTOS: usize = 2;

/// The same forward pass through ONNX Runtime, on our export of the same seeded model
/// (exported in memory; the clinic's `--engine onnx` or `onnx-int8`).
pub struct OnnxInference {
    model: crate::onnx::OnnxClassifier,
    x: Vec<f32>,
    shape: [i64; 4],
    params: Params,
    int8: bool,
}

impl OnnxInference {
    pub fn new(params: &Params, int8: bool) -> Result<Self> {
        tch::manual_seed(0);
        let (vs, _net) = model(params, 2, Device::Cpu)?;
        let batches = if int8 {
            Some(calibration(params)?)
        } else {
            None
        };
        let model = onnx_session(params, &vs, 2, batches.as_ref())?;
        let shape = [params.batch, 3, params.size, params.size];
        let x = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        let x = Vec::<f32>::try_from(x.flatten(0, -1))?;
        Ok(Self {
            model,
            x,
            shape,
            params: params.clone(),
            int8,
        })
    }
}

impl Runnable for OnnxInference {
    fn run(&mut self) -> Result<()> {
        let out = self.model.run(self.x.clone(), self.shape)?;
        anyhow::ensure!(
            out.probabilities.iter().all(|p| p.is_finite()),
            "non-finite output"
        );
        Ok(())
    }
    fn items(&self) -> f64 {
        patches(&self.params)
    }
    fn unit(&self) -> &'static str {
        "patches"
    }
    fn detail(&self) -> String {
        describe(
            &self.params,
            if self.int8 {
                "forward + softmax, ONNX Runtime int8 (QDQ, calibrated on 2 bench photos) on our export"
            } else {
                "forward + softmax, ONNX Runtime fp32 on our export"
            },
        )
    }
}

pub struct Training {
    _vs: nn::VarStore,
    net: AggregatedClassifier,
    opt: RAdam,
    x: Tensor,
    labels: Tensor,
    params: Params,
    device: Device,
}

impl Training {
    pub fn new(params: &Params, device: Device) -> Result<Self> {
        tch::manual_seed(0);
        let (vs, net) = model(params, 2, device)?;
        let opt = RAdam::new(&vs, RAdamConfig::default());
        let x = Tensor::randn(
            [params.batch, 3, params.size, params.size],
            (Kind::Float, device),
        );
        let labels = Tensor::zeros([params.batch], (Kind::Int64, device));
        Ok(Self {
            _vs: vs,
            net,
            opt,
            x,
            labels,
            params: params.clone(),
            device,
        })
    }
}

impl Runnable for Training {
    fn run(&mut self) -> Result<()> {
        self.opt.zero_grad();
        let out = self.net.forward_t(&self.x, true);
        let loss = aggregated_loss(&out, &self.labels, 1.0);
        loss.backward();
        self.opt.step();
        sync(self.device);
        anyhow::ensure!(loss.double_value(&[]).is_finite(), "non-finite loss");
        Ok(())
    }
    fn items(&self) -> f64 {
        patches(&self.params)
    }
    fn unit(&self) -> &'static str {
        "patches"
    }
    fn detail(&self) -> String {
        describe(
            &self.params,
            "forward, image + patch cross-entropy, backward, RAdam",
        )
    }
}

/// Waits for queued GPU work so that the clock sees it.
pub fn sync(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}
