//! The aggregated classifier as one ONNX graph, and the export of run and ensemble folders.
//!
//! Graph (batch axis symbolic, everything else fixed by the model's input size and grid):
//!
//! ```text
//! image [N, C, S, S]
//!   → Reshape [N, C, g, S/g, g, S/g] → Transpose (0,2,4,1,3,5) → Reshape [N·g², C, S/g, S/g]
//!   → trunk → maps [N·g², C', h, w]
//!   → Reshape [N, g, g, C', h, w] → Transpose (0,3,1,4,2,5) → Reshape = feature_maps [N, C', g·h, g·w]
//!   → GlobalAveragePool → Gemm (head) = logits [N, K] → Softmax = probabilities
//! maps → GlobalAveragePool → Gemm (patch head) → Reshape = patch_logits [N, g², K]
//!   → Softmax = patch_probabilities
//! ```
//!
//! `feature_maps` is the stitched mosaic of the trunk's last maps, so a patch-weighted
//! Grad-CAM can be computed from forward outputs alone (the patch head is GAP + linear, so the
//! gradient of a patch's confidence with respect to its maps is spatially constant).
use super::graph::{GraphBuilder, Value};
use super::layers::{linear_params, Weights};
use super::proto::{Message, Model};
use crate::ensemble::{Ensemble, Preprocessing};
use crate::training::checkpoint::{load_tensors, write_atomic, write_json_atomic};
use crate::training::{run_dir, ModelSpec};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The exported model's file name inside a run directory.
pub const ONNX_FILE: &str = "model.onnx";
/// The int8 model's file name inside a run directory.
pub const INT8_FILE: &str = "model.int8.onnx";
const FORMAT: &str = "myoscope-onnx";
const VERSION: u32 = 1;

/// Output names, in graph order.
pub const PROBABILITIES: &str = "probabilities";
pub const LOGITS: &str = "logits";
pub const PATCH_PROBABILITIES: &str = "patch_probabilities";
pub const PATCH_LOGITS: &str = "patch_logits";
pub const FEATURE_MAPS: &str = "feature_maps";
pub const INPUT: &str = "image";

/// What travels beside a `.onnx` file (`<file>.json`): enough to feed it and to trust it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnnxSidecar {
    pub format: String,
    pub version: u32,
    pub myoscope_version: String,
    pub arch: String,
    pub classes: Vec<String>,
    pub input: String,
    /// `[batch, C, S, S]` with batch = -1 (any).
    pub input_shape: Vec<i64>,
    pub outputs: Vec<String>,
    pub preprocessing: Preprocessing,
    /// `float32`, or `int8` for a quantized model.
    pub precision: String,
    pub opset: i64,
    /// sha256 of the `best.safetensors` the model was exported from.
    pub weights_sha256: String,
    /// For an int8 model: how its activation ranges were calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

/// `model.onnx` → `model.onnx.json`.
pub fn sidecar_path(onnx: &Path) -> PathBuf {
    let mut name = onnx.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    onnx.with_file_name(name)
}

/// Builds the ONNX graph of an aggregated classifier from its spec and parameters (by name).
pub fn build_graph(spec: &ModelSpec, vars: &HashMap<String, Tensor>) -> Result<GraphBuilder> {
    let m = &spec.model;
    crate::models::validate_geometry(m.input_size, m.grid)?;
    let (s, gsz, c) = (m.input_size, m.grid, m.in_channels);
    let p = s / gsz;
    let k = spec.classes.len() as i64;
    let w = Weights::new(vars);
    let mut g = GraphBuilder::new(&format!("myoscope aggregated {}", m.arch));
    let image = g.input(INPUT, &[c, s, s]);
    let patches = if gsz > 1 {
        let v = g.reshape(&image, &[c, gsz, p, gsz, p], "patch_grid");
        let v = g.transpose(&v, &[0, 2, 4, 1, 3, 5], "patch_order");
        g.reshape(&v, &[c, p, p], "patches")
    } else {
        image.clone()
    };
    let maps = trunk(&mut g, &w, &m.arch, &patches)?;
    let (cf, h, wd) = (maps.channels(), maps.shape[1], maps.shape[2]);
    let mosaic = if gsz > 1 {
        let v = g.reshape(&maps, &[gsz, gsz, cf, h, wd], "maps_grid");
        let v = g.transpose(&v, &[0, 3, 1, 4, 2, 5], "mosaic_order");
        g.reshape(&v, &[cf, gsz * h, gsz * wd], "mosaic")
    } else {
        maps.clone()
    };
    let head_name = head_name(&m.arch)?;
    let pooled = g.global_average(&mosaic, "pooled");
    let (hw, hb, out) = linear_params(&mut g, &w, head_name)?;
    if out != k {
        bail!(
            "the head '{head_name}' has {out} outputs but the model lists {k} classes; the weights do not belong to this model.json"
        );
    }
    let logits = g.linear(&pooled, &hw, &hb, k, "head");
    let probs = g.softmax(&logits, "softmax");
    g.output(&probs, PROBABILITIES);
    g.output(&logits, LOGITS);
    if gsz > 1 {
        let per_patch = g.global_average(&maps, "patch_pooled");
        let (pw, pb, _) = linear_params(&mut g, &w, "patch_classifier")?;
        let pl = g.linear(&per_patch, &pw, &pb, k, "patch_head");
        let pl = g.reshape(&pl, &[gsz * gsz, k], "patch_logits_grid");
        let pp = g.softmax(&pl, "patch_softmax");
        g.output(&pp, PATCH_PROBABILITIES);
        g.output(&pl, PATCH_LOGITS);
    }
    g.output(&mosaic, FEATURE_MAPS);
    Ok(g)
}

/// The output names a model of this grid has, in graph order.
pub fn output_names(grid: i64) -> Vec<String> {
    let mut v = vec![PROBABILITIES, LOGITS];
    if grid > 1 {
        v.extend([PATCH_PROBABILITIES, PATCH_LOGITS]);
    }
    v.push(FEATURE_MAPS);
    v.into_iter().map(String::from).collect()
}

fn trunk(g: &mut GraphBuilder, w: &Weights, arch: &str, x: &Value) -> Result<Value> {
    match arch {
        "densenet121" | "densenet-tiny" => super::densenet::trunk(g, w, arch, x),
        "resnet18" | "resnet34" | "resnet50" | "resnet50_keras" => {
            super::resnet::trunk(g, w, arch, x)
        }
        "mobilenet_v2" => super::mobile::mobilenet_v2(g, w, x),
        "efficientnet_lite0" | "efficientnet_lite1" | "efficientnet_lite2" => {
            super::mobile::efficientnet_lite(g, w, x)
        }
        other => bail!("ONNX export does not know the architecture '{other}'"),
    }
}

/// The name of the image head under the model root (the trunk family's reference name).
fn head_name(arch: &str) -> Result<&'static str> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let trunk = crate::models::build_backbone(arch, &vs.root(), 3)?;
    Ok(trunk.head_name())
}

/// Serialized fp32 model plus its sidecar.
pub fn export_model(
    spec: &ModelSpec,
    vars: &HashMap<String, Tensor>,
    weights_sha256: &str,
) -> Result<(Vec<u8>, OnnxSidecar)> {
    let g = build_graph(spec, vars)?;
    let sidecar = sidecar(spec, weights_sha256, "float32", None);
    let model = finish(g, &sidecar);
    Ok((model.to_bytes(), sidecar))
}

pub(crate) fn finish(g: GraphBuilder, sidecar: &OnnxSidecar) -> Model {
    g.finish(
        &format!(
            "myoscope aggregated classifier ({}, {}² input, {}×{} grid, classes: {})",
            sidecar.arch,
            sidecar.preprocessing.input_size,
            sidecar.preprocessing.grid,
            sidecar.preprocessing.grid,
            sidecar.classes.join(", ")
        ),
        vec![
            ("classes".into(), sidecar.classes.join("\n")),
            ("weights_sha256".into(), sidecar.weights_sha256.clone()),
            ("precision".into(), sidecar.precision.clone()),
        ],
    )
}

pub(crate) fn sidecar(
    spec: &ModelSpec,
    weights_sha256: &str,
    precision: &str,
    calibration: Option<String>,
) -> OnnxSidecar {
    let m = &spec.model;
    OnnxSidecar {
        format: FORMAT.into(),
        version: VERSION,
        myoscope_version: env!("CARGO_PKG_VERSION").into(),
        arch: m.arch.clone(),
        classes: spec.classes.clone(),
        input: INPUT.into(),
        input_shape: vec![-1, m.in_channels, m.input_size, m.input_size],
        outputs: output_names(m.grid),
        preprocessing: Preprocessing {
            crop: "centre square of the photo, resized".into(),
            input_size: m.input_size,
            grid: m.grid,
            colour_order: "RGB, 0-1 scale, then (x - mean) / std per channel".into(),
            normalization: m.normalization.clone(),
        },
        precision: precision.into(),
        opset: super::graph::OPSET,
        weights_sha256: weights_sha256.into(),
        calibration,
    }
}

/// A run directory's spec, parameters and weights sha256.
pub fn read_run_dir(dir: &Path) -> Result<(ModelSpec, HashMap<String, Tensor>, String)> {
    let spec_path = dir.join(run_dir::MODEL_FILE);
    if !spec_path.is_file() {
        bail!(
            "{} is not a trained model: it has no {} (pass a run directory written by `myoscope train`, or an ensemble written by `myoscope cv`)",
            dir.display(),
            run_dir::MODEL_FILE
        );
    }
    let spec = ModelSpec::read(&spec_path)?;
    let weights = dir.join(run_dir::BEST_WEIGHTS_FILE);
    let bytes =
        std::fs::read(&weights).with_context(|| format!("cannot read {}", weights.display()))?;
    let sha = run_dir::sha256_hex(&bytes);
    let vars = load_tensors(&weights)?;
    Ok((spec, vars, sha))
}

/// Writes `file` and its sidecar atomically.
pub fn write_model(file: &Path, bytes: &[u8], sidecar: &OnnxSidecar) -> Result<()> {
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    write_atomic(file, bytes)?;
    write_json_atomic(&sidecar_path(file), sidecar)
}

/// Reads a sidecar, with a clear error when it is missing or not ours.
pub fn read_sidecar(onnx: &Path) -> Result<OnnxSidecar> {
    let path = sidecar_path(onnx);
    let s: OnnxSidecar = crate::training::checkpoint::read_json(&path).with_context(|| {
        format!(
            "{} has no readable description {} (export it with `myoscope export onnx`)",
            onnx.display(),
            path.display()
        )
    })?;
    if s.format != FORMAT || s.version > VERSION {
        bail!(
            "{} is format '{}' version {}; this myoscope reads {FORMAT} up to version {VERSION}",
            path.display(),
            s.format,
            s.version
        );
    }
    Ok(s)
}

/// The folders `export onnx` works on: a run directory, or every model of an ensemble
/// (`(run dir, its path relative to the ensemble)`).
pub fn model_dirs(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    if dir.join(crate::ensemble::ENSEMBLE_FILE).is_file() {
        let ens = Ensemble::open(dir)?;
        Ok(ens
            .manifest
            .stages
            .iter()
            .flat_map(|s| s.models.iter())
            .map(|m| (dir.join(&m.dir), PathBuf::from(&m.dir)))
            .collect())
    } else if dir.join(run_dir::MODEL_FILE).is_file() {
        Ok(vec![(dir.to_path_buf(), PathBuf::new())])
    } else if dir.join("run").join(run_dir::MODEL_FILE).is_file() {
        // A `myoscope demo` output folder holds its model in `run/`.
        Ok(vec![(dir.join("run"), PathBuf::from("run"))])
    } else {
        bail!(
            "{} is neither a run directory (no {}) nor an ensemble (no {})",
            dir.display(),
            run_dir::MODEL_FILE,
            crate::ensemble::ENSEMBLE_FILE
        )
    }
}
