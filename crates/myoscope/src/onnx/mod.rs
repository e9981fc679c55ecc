//! ONNX export of the aggregated classifier, and CPU inference through ONNX Runtime.
//!
//! # Exporting
//! [`export::export_model`] turns a [`crate::training::ModelSpec`] and its parameters (by
//! state-dict name) into the bytes of an `.onnx` file plus an [`export::OnnxSidecar`]
//! (classes, preprocessing, weights sha256). Our own protobuf writer ([`proto`]) encodes it; no
//! ONNX library is involved. Eval-mode batch norms fold into the preceding convs; the 4×4 patch
//! split and the mosaic stitch are Reshape/Transpose; heads are GlobalAveragePool + Gemm +
//! Softmax. Trunks: DenseNet-121/tiny, ResNet-18/34/50 (and the Keras ResNet-50),
//! MobileNetV2, EfficientNet-Lite0/1/2. Inputs `image [N, C, S, S]` (N dynamic); outputs
//! `probabilities [N, K]`, `logits [N, K]`, `patch_probabilities`/`patch_logits [N, g², K]`
//! (grid > 1), `feature_maps [N, C', g·h, g·w]` (the stitched last trunk maps).
//! [`quantize::export_int8`] writes a static int8 QDQ model calibrated on photos.
//!
//! # Running
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use myoscope::onnx::OnnxClassifier;
//! // Threads: intra-op threads, 0 = one per core.
//! let model = OnnxClassifier::load(std::path::Path::new("runs/x/model.onnx"), 2)?;
//! let images = tch::Tensor::zeros([1, 3, 640, 640], (tch::Kind::Float, tch::Device::Cpu));
//! let probs: tch::Tensor = model.probabilities(&images)?; // [N, K], like LoadedModel's
//! let all = model.forward(&images)?; // OnnxOutput: probabilities, logits, patch outputs, maps
//! let raw = model.run(vec![0.0; 3 * 640 * 640], [1, 3, 640, 640])?; // from plain NCHW floats
//! # Ok(()) }
//! ```
//! The ONNX Runtime library is loaded at run time ([`runtime::library_path`] says where it is
//! looked for: `$MYOSCOPE_ONNXRUNTIME`, or the PyPI `onnxruntime` wheel in `.venv`).
//! [`Engine`] is what `--engine torch|onnx` selects; `LoadedModel::use_engine` switches a
//! loaded model over, exporting it in memory when its folder holds no current `model.onnx`.
pub mod calibrate;
pub mod densenet;
pub mod equalize;
pub mod export;
pub mod graph;
pub mod layers;
pub mod mobile;
pub mod prepare;
pub mod proto;
pub mod quantize;
pub mod resnet;
pub mod runtime;

pub use export::{export_model, OnnxSidecar, ONNX_FILE};
pub use runtime::{OnnxClassifier, OnnxOutput};

/// Which inference engine runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Engine {
    /// libtorch through tch (CPU or GPU).
    #[default]
    Torch,
    /// ONNX Runtime on the CPU, from the exported `model.onnx` (exported in memory if absent).
    Onnx,
    /// ONNX Runtime with the int8 model `model.int8.onnx` (`export onnx --int8 --calibrate`).
    OnnxInt8,
}

impl Engine {
    /// As the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Torch => "torch",
            Engine::Onnx => "onnx",
            Engine::OnnxInt8 => "onnx-int8",
        }
    }
}
