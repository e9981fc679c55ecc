//! Running exported models with ONNX Runtime through the `ort` crate, loading
//! `libonnxruntime.so` at run time (the `ort` build never downloads anything).
//!
//! The library comes from the PyPI wheel `onnxruntime` (`scripts/setup.sh` installs it into
//! `.venv`). It is looked for, in order: `$MYOSCOPE_ONNXRUNTIME` (the library or a folder
//! holding it), `$ORT_DYLIB_PATH`, then `onnxruntime/capi/` in the site-packages of the
//! project's `.venv` (found from the executable's location and from the source tree).
use super::export::{
    read_sidecar, OnnxSidecar, FEATURE_MAPS, INPUT, LOGITS, PATCH_LOGITS, PATCH_PROBABILITIES,
    PROBABILITIES,
};
use anyhow::{anyhow, bail, Context, Result};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The env variable that points at `libonnxruntime.so*` or its folder.
pub const LIBRARY_ENV: &str = "MYOSCOPE_ONNXRUNTIME";

fn ort_err<R>(e: ort::Error<R>) -> anyhow::Error {
    anyhow!("ONNX Runtime: {e}")
}

/// `libonnxruntime.so.*` (or `.so`) inside a folder, newest version first.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "libonnxruntime.so" || n.starts_with("libonnxruntime.so."))
        })
        .collect();
    found.sort();
    found.pop()
}

/// `onnxruntime/capi/` under each `lib/python*/site-packages` of a virtual environment.
fn library_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons
        .iter()
        .find_map(|p| library_in(&p.join("site-packages/onnxruntime/capi")))
}

/// Where the ONNX Runtime library is, or an error saying how to get it.
pub fn library_path() -> Result<PathBuf> {
    for var in [LIBRARY_ENV, "ORT_DYLIB_PATH"] {
        if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(p);
            if p.is_dir() {
                return library_in(&p).with_context(|| {
                    format!("${var} = {} holds no libonnxruntime.so*", p.display())
                });
            }
            if !p.is_file() {
                bail!("${var} = {} does not exist", p.display());
            }
            return Ok(p);
        }
    }
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/myoscope (or .../deps/test-binary) → the project root.
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    roots
        .iter()
        .find_map(|r| library_in_venv(&r.join(".venv")))
        .with_context(|| {
            format!(
                "the ONNX Runtime library (libonnxruntime.so) was not found: run scripts/setup.sh, which installs the PyPI wheel onnxruntime=={} into .venv, or set {LIBRARY_ENV} to the library or its folder",
                ORT_VERSION
            )
        })
}

/// The onnxruntime release the `ort` binding (API 31) is built for.
pub const ORT_VERSION: &str = "1.31.1";

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

/// Loads the library and starts ONNX Runtime, once per process; later calls return the same
/// environment (or the same error).
pub fn init() -> Result<ort::environment::Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = library_path().map_err(|e| format!("{e:#}"))?;
            let builder = ort::init_from(&path).map_err(|e| {
                format!(
                    "cannot load ONNX Runtime from {}: {e} (it needs onnxruntime {ORT_VERSION} or newer)",
                    path.display()
                )
            })?;
            builder
                .with_name("myoscope")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Everything one forward pass returns. Tensors are row-major with their shapes.
#[derive(Debug, Clone)]
pub struct OnnxOutput {
    /// `[N, K]`.
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
    /// `[N, g², K]`, for a grid above 1.
    pub patch_probabilities: Option<Vec<f32>>,
    pub patch_logits: Option<Vec<f32>>,
    /// The stitched trunk maps `[N, C', g·h, g·w]` and that shape.
    pub feature_maps: Vec<f32>,
    pub feature_maps_shape: Vec<i64>,
    pub batch: usize,
}

impl OnnxOutput {
    /// The class probabilities as a CPU tensor `[N, K]`.
    pub fn probabilities_tensor(&self) -> tch::Tensor {
        let k = (self.probabilities.len() / self.batch.max(1)) as i64;
        tch::Tensor::from_slice(&self.probabilities).view([self.batch as i64, k])
    }

    /// The per-patch trunk maps `[N·g², C, h, w]` of `net` (the model this was exported from),
    /// for the closed-form heat-maps: ONNX gives them stitched into a mosaic, and splitting a
    /// mosaic is the same reshaping as splitting an image into patches.
    pub fn patch_maps(&self, net: &crate::models::AggregatedClassifier) -> tch::Tensor {
        let mosaic = tch::Tensor::from_slice(&self.feature_maps).view(&self.feature_maps_shape[..]);
        net.split_patches(&mosaic)
    }
}

/// An exported aggregated classifier in an ONNX Runtime session.
pub struct OnnxClassifier {
    session: Mutex<Session>,
    pub sidecar: OnnxSidecar,
    pub path: PathBuf,
}

impl std::fmt::Debug for OnnxClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxClassifier")
            .field("path", &self.path)
            .field("arch", &self.sidecar.arch)
            .finish()
    }
}

fn session_builder(threads: usize) -> Result<ort::session::builder::SessionBuilder> {
    let env = init()?;
    let mut b = Session::builder(&env)
        .map_err(ort_err)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort_err)?
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
        .map_err(ort_err)?;
    if threads > 0 {
        b = b.with_intra_threads(threads).map_err(ort_err)?;
    }
    // Each session owns its thread pool, and ONNX Runtime's threads spin for a while after a
    // run. With several sessions taking turns (an ensemble, a slide's two steps, serve's
    // workers) the idle pools' spinning took the cores from the running one: a 2-core slide
    // went from 3.5 s to 2.75 s without it, and one model alone runs no slower.
    b = b.with_intra_op_spinning(false).map_err(ort_err)?;
    Ok(b)
}

impl OnnxClassifier {
    /// Opens `path` (a `.onnx` written by `myoscope export onnx`, with its `.json` sidecar)
    /// with `threads` intra-op threads (0: ONNX Runtime's default, one per core).
    pub fn load(path: &Path, threads: usize) -> Result<Self> {
        if !path.is_file() {
            bail!(
                "{} does not exist (export the model with `myoscope export onnx --model RUN_DIR`)",
                path.display()
            );
        }
        let sidecar = read_sidecar(path)?;
        let session = session_builder(threads)?
            .commit_from_file(path)
            .map_err(|e| anyhow!("{} is not a valid ONNX model: {e}", path.display()))?;
        Ok(Self {
            session: Mutex::new(session),
            sidecar,
            path: path.to_path_buf(),
        })
    }

    /// A model exported in memory (no file written).
    pub fn from_bytes(bytes: &[u8], sidecar: OnnxSidecar, threads: usize) -> Result<Self> {
        let session = session_builder(threads)?
            .commit_from_memory(bytes)
            .map_err(|e| anyhow!("ONNX Runtime rejected the exported model: {e}"))?;
        Ok(Self {
            session: Mutex::new(session),
            sidecar,
            path: PathBuf::new(),
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.sidecar.classes
    }

    /// Runs a normalised batch given as row-major `[N, C, S, S]` floats.
    pub fn run(&self, images: Vec<f32>, shape: [i64; 4]) -> Result<OnnxOutput> {
        let expect = &self.sidecar.input_shape;
        if shape[1..] != expect[1..] {
            bail!(
                "the ONNX model takes images of shape [N, {}, {}, {}], got {:?}",
                expect[1],
                expect[2],
                expect[3],
                shape
            );
        }
        let input = OrtTensor::from_array((shape, images)).map_err(ort_err)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| anyhow!("the ONNX session was poisoned by an earlier failure"))?;
        let outputs = session.run(ort::inputs![INPUT => input]).map_err(ort_err)?;
        let read = |name: &str| -> Result<(Vec<i64>, Vec<f32>)> {
            let v = outputs
                .get(name)
                .with_context(|| format!("the ONNX model has no output '{name}'"))?;
            let (s, data) = v.try_extract_tensor::<f32>().map_err(ort_err)?;
            Ok((s.to_vec(), data.to_vec()))
        };
        let has = |name: &str| self.sidecar.outputs.iter().any(|o| o == name);
        let (_, probabilities) = read(PROBABILITIES)?;
        let (_, logits) = read(LOGITS)?;
        let patch_probabilities = has(PATCH_PROBABILITIES)
            .then(|| read(PATCH_PROBABILITIES).map(|v| v.1))
            .transpose()?;
        let patch_logits = has(PATCH_LOGITS)
            .then(|| read(PATCH_LOGITS).map(|v| v.1))
            .transpose()?;
        let (feature_maps_shape, feature_maps) = read(FEATURE_MAPS)?;
        Ok(OnnxOutput {
            probabilities,
            logits,
            patch_probabilities,
            patch_logits,
            feature_maps,
            feature_maps_shape,
            batch: shape[0] as usize,
        })
    }

    /// Runs a normalised image batch `[N, C, S, S]` (any device, any float kind).
    pub fn forward(&self, images: &tch::Tensor) -> Result<OnnxOutput> {
        let t = images
            .to_device(tch::Device::Cpu)
            .to_kind(tch::Kind::Float)
            .contiguous();
        let size = t.size();
        let &[n, c, h, w] = size.as_slice() else {
            bail!("expected an image batch [N, C, H, W], got {size:?}");
        };
        let data = Vec::<f32>::try_from(t.flatten(0, -1)).context("reading the image batch")?;
        self.run(data, [n, c, h, w])
    }

    /// Class probabilities `[N, K]` as a CPU tensor, like `LoadedModel::probabilities`.
    pub fn probabilities(&self, images: &tch::Tensor) -> Result<tch::Tensor> {
        Ok(self.forward(images)?.probabilities_tensor())
    }
}

/// Runs `model` on every batch (row-major NCHW floats with their shapes) and shows each named
/// output to `visit` (name, shape, values): the calibration passes of quantization.
pub fn visit_outputs(
    model: &[u8],
    names: &[String],
    batches: &[(Vec<f32>, [i64; 4])],
    threads: usize,
    mut visit: impl FnMut(&str, &[i64], &[f32]),
) -> Result<()> {
    let mut session = session_builder(threads)?
        .commit_from_memory(model)
        .map_err(|e| anyhow!("ONNX Runtime rejected the calibration model: {e}"))?;
    for (data, shape) in batches {
        let input = OrtTensor::from_array((*shape, data.clone())).map_err(ort_err)?;
        let outputs = session.run(ort::inputs![INPUT => input]).map_err(ort_err)?;
        for name in names {
            let v = outputs
                .get(name)
                .with_context(|| format!("the calibration model has no output '{name}'"))?;
            let (shape, data) = v.try_extract_tensor::<f32>().map_err(ort_err)?;
            visit(name, shape, data);
        }
    }
    Ok(())
}
