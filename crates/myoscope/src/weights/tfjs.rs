//! TensorFlow.js "layers" models: `model.json` (the Keras topology plus a weights manifest) and
//! binary shards that, concatenated in manifest order, hold every weight back to back in
//! row-major order. Keras names (`conv1/kernel`, `bn_conv1/moving_mean`) and layouts (HWIO
//! kernels) are kept here; mapping them onto a PyTorch layout is the key map's job.
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelJson {
    format: Option<String>,
    model_topology: Option<serde_json::Value>,
    weights_manifest: Vec<ManifestGroup>,
}

#[derive(Debug, Deserialize)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<WeightSpec>,
}

#[derive(Debug, Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<i64>,
    dtype: String,
    quantization: Option<Quantization>,
}

/// Affine quantisation of the converter's `--quantize_*` options: value = q · scale + min.
#[derive(Debug, Deserialize)]
struct Quantization {
    dtype: String,
    scale: Option<f64>,
    min: Option<f64>,
}

/// A TF.js layers model: its weights under their Keras names and each layer's config.
pub struct TfjsModel {
    pub tensors: Vec<(String, Tensor)>,
    /// Layer name → (Keras class name, config), from the topology.
    pub layers: HashMap<String, (String, serde_json::Value)>,
    /// Every file read: `model.json` then the shards, for checksums.
    pub files: Vec<PathBuf>,
}

impl TfjsModel {
    /// A layer's config value, e.g. `("bn_conv1", "epsilon")`.
    pub fn layer_config(&self, layer: &str, key: &str) -> Option<&serde_json::Value> {
        self.layers.get(layer).and_then(|(_, cfg)| cfg.get(key))
    }
}

/// Accepts `model.json` itself or the folder holding it.
pub fn model_json_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("model.json")
    } else {
        path.to_path_buf()
    }
}

/// Whether a JSON file looks like a TF.js model (has a weights manifest).
pub fn looks_like_tfjs(path: &Path) -> bool {
    let json = model_json_path(path);
    json.extension().is_some_and(|e| e == "json")
        && std::fs::read(&json)
            .map(|b| {
                let head = String::from_utf8_lossy(&b[..b.len().min(1 << 20)]).into_owned();
                head.contains("weightsManifest")
            })
            .unwrap_or(false)
}

pub fn read(path: &Path) -> Result<TfjsModel> {
    let json_path = model_json_path(path);
    let text = std::fs::read_to_string(&json_path)
        .with_context(|| format!("cannot read {}", json_path.display()))?;
    let model: ModelJson = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a TensorFlow.js model.json (no valid weightsManifest)",
            json_path.display()
        )
    })?;
    if let Some(format) = &model.format {
        if format != "layers-model" {
            bail!(
                "{} is a TF.js '{format}'; only the Keras 'layers-model' format carries layer names to map",
                json_path.display()
            );
        }
    }
    let dir = json_path.parent().unwrap_or(Path::new("."));
    let mut files = vec![json_path.clone()];
    let mut tensors = Vec::new();
    for group in &model.weights_manifest {
        let mut bytes = Vec::new();
        for shard in &group.paths {
            if shard.contains("..") || shard.starts_with('/') {
                bail!(
                    "{}: shard path '{shard}' leaves the model folder",
                    json_path.display()
                );
            }
            let p = dir.join(shard);
            let mut data = std::fs::read(&p).with_context(|| {
                format!(
                    "{} names the weight shard {}, which cannot be read",
                    json_path.display(),
                    p.display()
                )
            })?;
            bytes.append(&mut data);
            files.push(p);
        }
        let mut offset = 0usize;
        for spec in &group.weights {
            let (tensor, used) = decode_weight(spec, &bytes[offset.min(bytes.len())..])
                .with_context(|| format!("{}: weight '{}'", json_path.display(), spec.name))?;
            offset += used;
            tensors.push((spec.name.clone(), tensor));
        }
        if offset != bytes.len() {
            bail!(
                "{}: the shards hold {} bytes but the manifest describes {offset}; a shard is missing, truncated or from another model",
                json_path.display(),
                bytes.len()
            );
        }
    }
    if tensors.is_empty() {
        bail!("{} lists no weights", json_path.display());
    }
    Ok(TfjsModel {
        tensors,
        layers: topology_layers(model.model_topology.as_ref()),
        files,
    })
}

/// Decodes one weight from the front of `bytes`; returns it and the bytes it used.
fn decode_weight(spec: &WeightSpec, bytes: &[u8]) -> Result<(Tensor, usize)> {
    if spec.shape.iter().any(|&d| d < 0) {
        bail!("negative dimension in shape {:?}", spec.shape);
    }
    let numel = spec
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
        .context("shape too large")?;
    let (stored, width) = match &spec.quantization {
        Some(q) => (q.dtype.as_str(), dtype_width(&q.dtype)?),
        None => (spec.dtype.as_str(), dtype_width(&spec.dtype)?),
    };
    let need = numel.checked_mul(width).context("shape too large")?;
    if bytes.len() < need {
        bail!(
            "needs {need} bytes but only {} are left in the shards (truncated download?)",
            bytes.len()
        );
    }
    let raw = &bytes[..need];
    let values: Vec<f32> = match (stored, &spec.quantization) {
        ("float32", None) => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        ("int32", None) => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        ("uint8", Some(q)) => dequantise(raw.iter().map(|&b| b as f64), q)?,
        ("uint16", Some(q)) => dequantise(
            raw.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as f64),
            q,
        )?,
        (other, _) => bail!("unsupported weight dtype '{other}'"),
    };
    if spec.dtype != "float32" && spec.quantization.is_some() {
        bail!(
            "quantised weights must decode to float32, not {}",
            spec.dtype
        );
    }
    let tensor = Tensor::from_slice(&values)
        .to_kind(Kind::Float)
        .reshape(&spec.shape);
    Ok((tensor, need))
}

fn dequantise(q_values: impl Iterator<Item = f64>, q: &Quantization) -> Result<Vec<f32>> {
    let (Some(scale), Some(min)) = (q.scale, q.min) else {
        bail!("quantised weight without scale and min (float16 quantisation is not supported)");
    };
    Ok(q_values.map(|v| (v * scale + min) as f32).collect())
}

fn dtype_width(dtype: &str) -> Result<usize> {
    Ok(match dtype {
        "float32" | "int32" => 4,
        "uint16" | "float16" => 2,
        "uint8" => 1,
        other => bail!("unsupported weight dtype '{other}'"),
    })
}

fn topology_layers(
    topology: Option<&serde_json::Value>,
) -> HashMap<String, (String, serde_json::Value)> {
    let layers = topology
        .and_then(|t| t.get("model_config").or(Some(t)))
        .and_then(|m| m.get("config"))
        .and_then(|c| c.get("layers"))
        .and_then(|l| l.as_array());
    layers
        .into_iter()
        .flatten()
        .filter_map(|layer| {
            let name = layer.get("name")?.as_str()?.to_string();
            let class = layer.get("class_name")?.as_str()?.to_string();
            let cfg = layer.get("config").cloned().unwrap_or_default();
            Some((name, (class, cfg)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_model(dir: &Path, shard: &[u8], manifest_bytes_for: &[(&str, Vec<i64>)]) {
        std::fs::create_dir_all(dir).unwrap();
        let weights: Vec<serde_json::Value> = manifest_bytes_for
            .iter()
            .map(|(n, s)| serde_json::json!({"name": n, "shape": s, "dtype": "float32"}))
            .collect();
        let json = serde_json::json!({
            "format": "layers-model",
            "modelTopology": {"model_config": {"class_name": "Model", "config": {"layers": [
                {"name": "bn", "class_name": "BatchNormalization", "config": {"epsilon": 0.001}}
            ]}}},
            "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": weights}]
        });
        std::fs::write(dir.join("model.json"), json.to_string()).unwrap();
        std::fs::write(dir.join("group1-shard1of1.bin"), shard).unwrap();
    }

    fn floats(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_weights_in_manifest_order() {
        let dir = std::env::temp_dir().join(format!("myoscope-tfjs-{}", std::process::id()));
        let bytes = floats(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        write_model(
            &dir,
            &bytes,
            &[("conv/kernel", vec![1, 1, 2, 3]), ("bn/gamma", vec![1])],
        );
        assert!(looks_like_tfjs(&dir));
        let m = read(&dir).unwrap();
        assert_eq!(m.tensors[0].0, "conv/kernel");
        assert_eq!(m.tensors[0].1.size(), [1, 1, 2, 3]);
        assert_eq!(m.tensors[0].1.double_value(&[0, 0, 1, 0]), 4.0);
        assert_eq!(m.tensors[1].1.double_value(&[0]), 7.0);
        assert_eq!(
            m.layer_config("bn", "epsilon").unwrap().as_f64(),
            Some(0.001)
        );
        assert_eq!(m.files.len(), 2);

        // A shard that is too short or too long is an error, not a silent misread.
        write_model(
            &dir,
            &bytes[..20],
            &[("conv/kernel", vec![1, 1, 2, 3]), ("bn/gamma", vec![1])],
        );
        let err = format!("{:#}", read(&dir).err().unwrap());
        assert!(err.contains("truncated"), "{err}");
        write_model(
            &dir,
            &floats(&[0.0; 9]),
            &[("conv/kernel", vec![1, 1, 2, 3]), ("bn/gamma", vec![1])],
        );
        let err = format!("{:#}", read(&dir).err().unwrap());
        assert!(err.contains("36 bytes") && err.contains("28"), "{err}");
        std::fs::remove_file(dir.join("group1-shard1of1.bin")).unwrap();
        let err = format!("{:#}", read(&dir).err().unwrap());
        assert!(err.contains("group1-shard1of1.bin"), "{err}");
    }
}
