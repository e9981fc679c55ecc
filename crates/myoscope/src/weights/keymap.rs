//! Explicit key maps from the names and layouts weight files use to myoscope's (torchvision /
//! timm names). Each map is written out per source convention, so a file that fits none of
//! them fails with a list of keys instead of loading half its tensors.
use super::source::{Source, SourceFormat};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use tch::Tensor;

/// Tensors renamed (and, where a layout differs, converted) to myoscope's names.
pub struct Mapped {
    pub tensors: Vec<(String, Tensor)>,
    /// Which naming convention the file followed.
    pub convention: String,
    /// Bookkeeping entries with no role in the network (`num_batches_tracked`).
    pub dropped: Vec<String>,
    /// Conversions applied beyond renaming, in words, for the registry record.
    pub notes: Vec<String>,
    /// The file's input channel order was reversed into the first convolution (BGR → RGB).
    pub bgr_folded: bool,
}

/// Maps a source's tensors for `arch`; `targets` are the model's variable names in order.
pub fn map(arch: &str, source: &Source, targets: &[String]) -> Result<Mapped> {
    if source.format == SourceFormat::TfjsLayers {
        if arch != "resnet50_keras" {
            bail!(
                "TensorFlow.js weights map onto resnet50_keras only (Keras's ResNet-50); got --arch {arch}"
            );
        }
        let model = source.tfjs.as_ref().context("TF.js topology missing")?;
        return keras_resnet50(&source.tensors, model);
    }
    if arch == "resnet50_keras" {
        bail!(
            "resnet50_keras takes Keras weights (a TF.js model.json); a {} with ResNet-50 names is torchvision's layout: import it with --arch resnet50",
            source.format.describe()
        );
    }
    let (mut tensors, mut dropped, mut notes) = without_bookkeeping(&source.tensors);
    strip_data_parallel_prefix(&mut tensors, &mut notes);
    let (tensors, convention) = if arch.starts_with("efficientnet_lite")
        && tensors.iter().any(|(n, _)| n.starts_with("_blocks."))
    {
        (
            lukemelas_to_timm(tensors, targets)?,
            "EfficientNet-PyTorch (lukemelas) names → timm".to_string(),
        )
    } else if arch.starts_with("densenet") && tensors.iter().any(|(n, _)| is_old_densenet_key(n)) {
        let renamed = tensors
            .into_iter()
            .map(|(n, t)| (new_densenet_key(&n), t))
            .collect();
        (
            renamed,
            "torchvision, old DenseNet keys (norm.1 → norm1)".to_string(),
        )
    } else {
        (tensors, "torchvision / timm names".to_string())
    };
    dropped.sort();
    Ok(Mapped {
        tensors,
        convention,
        dropped,
        notes,
        bgr_folded: false,
    })
}

type Named = Vec<(String, Tensor)>;

fn without_bookkeeping(tensors: &[(String, Tensor)]) -> (Named, Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (name, t) in tensors {
        if name.ends_with("num_batches_tracked") {
            dropped.push(name.clone());
        } else {
            kept.push((name.clone(), t.shallow_clone()));
        }
    }
    (kept, dropped, Vec::new())
}

/// `nn.DataParallel` checkpoints prefix every key with `module.`.
fn strip_data_parallel_prefix(tensors: &mut Named, notes: &mut Vec<String>) {
    if !tensors.is_empty() && tensors.iter().all(|(n, _)| n.starts_with("module.")) {
        for (n, _) in tensors.iter_mut() {
            *n = n["module.".len()..].to_string();
        }
        notes.push("removed the DataParallel 'module.' prefix".into());
    }
}

/// torchvision before 0.3 named DenseNet layers `norm.1`, `conv.1`, `norm.2`, `conv.2`; its
/// own loader still renames them, and old checkpoints circulate with those keys.
fn is_old_densenet_key(name: &str) -> bool {
    new_densenet_key(name) != name
}

fn new_densenet_key(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let mut out: Vec<String> = Vec::with_capacity(parts.len());
    let mut i = 0;
    while i < parts.len() {
        let in_layer = i > 0 && parts[i - 1].starts_with("denselayer");
        let unit = matches!(parts[i], "norm" | "relu" | "conv");
        let index = parts.get(i + 1).filter(|p| matches!(**p, "1" | "2"));
        match (in_layer && unit, index) {
            (true, Some(idx)) => {
                out.push(format!("{}{}", parts[i], idx));
                i += 2;
            }
            _ => {
                out.push(parts[i].to_string());
                i += 1;
            }
        }
    }
    out.join(".")
}

/// lukemelas EfficientNet-PyTorch (and the EfficientNet-Lite ports built on it) number blocks
/// flat (`_blocks.7`); timm nests them by stage (`blocks.2.1`). The target model lists its
/// blocks in order, so the n-th flat block is the n-th nested one.
fn lukemelas_to_timm(tensors: Named, targets: &[String]) -> Result<Named> {
    let mut nested: BTreeMap<(usize, usize), bool> = BTreeMap::new();
    for name in targets {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 3 && parts[0] == "blocks" {
            if let (Ok(s), Ok(j)) = (parts[1].parse(), parts[2].parse()) {
                let expands = nested.entry((s, j)).or_insert(false);
                *expands |= parts[3] == "conv_pwl";
            }
        }
    }
    let blocks: Vec<((usize, usize), bool)> = nested.into_iter().collect();
    let top: HashMap<&str, &str> = [
        ("_conv_stem", "conv_stem"),
        ("_bn0", "bn1"),
        ("_conv_head", "conv_head"),
        ("_bn1", "bn2"),
        ("_fc", "classifier"),
    ]
    .into_iter()
    .collect();
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let parts: Vec<&str> = name.splitn(4, '.').collect();
        let renamed = match parts.as_slice() {
            ["_blocks", flat, layer, param] => {
                let n: usize = flat
                    .parse()
                    .with_context(|| format!("'{name}': block index is not a number"))?;
                let Some(&((s, j), inverted)) = blocks.get(n) else {
                    bail!(
                        "'{name}': block {n} does not exist in this architecture ({} blocks); is the file for a larger variant?",
                        blocks.len()
                    );
                };
                // Depthwise-separable blocks (no expansion) name their units differently.
                let unit = match (inverted, *layer) {
                    (true, "_expand_conv") => "conv_pw",
                    (true, "_bn0") => "bn1",
                    (true, "_depthwise_conv") => "conv_dw",
                    (true, "_bn1") => "bn2",
                    (true, "_project_conv") => "conv_pwl",
                    (true, "_bn2") => "bn3",
                    (false, "_depthwise_conv") => "conv_dw",
                    (false, "_bn1") => "bn1",
                    (false, "_project_conv") => "conv_pw",
                    (false, "_bn2") => "bn2",
                    (_, other) => bail!("'{name}': unknown block layer '{other}' (squeeze-excitation weights mean a non-Lite EfficientNet)"),
                };
                format!("blocks.{s}.{j}.{unit}.{param}")
            }
            [head, rest @ ..] if top.contains_key(head) => {
                let mut n = top[head].to_string();
                for r in rest {
                    n.push('.');
                    n.push_str(r);
                }
                n
            }
            _ => name.clone(),
        };
        out.push((renamed, t));
    }
    Ok(out)
}

/// Keras `ResNet50` (as converted to TF.js) → torchvision names on the `resnet50_keras`
/// layout. Kernels go HWIO → OIHW, the dense kernel is transposed, each conv bias is folded
/// into the running mean of the batch norm that follows it (exact: BN subtracts its mean right
/// after the bias is added), and the BGR input order is folded into `conv1`.
fn keras_resnet50(tensors: &[(String, Tensor)], model: &super::tfjs::TfjsModel) -> Result<Mapped> {
    check_keras_topology(model)?;
    let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut conv_bias: Vec<(String, Tensor)> = Vec::new();
    for (name, t) in tensors {
        let (layer, param) = name
            .split_once('/')
            .with_context(|| format!("TF.js weight '{name}' is not named layer/param"))?;
        let param = param.split(':').next().unwrap_or(param);
        let target = keras_layer_to_torchvision(layer)
            .with_context(|| format!("TF.js weight '{name}' is not part of Keras's ResNet50"))?;
        let (key, value) = match param {
            "kernel" if t.dim() == 4 => (format!("{target}.weight"), t.permute([3, 2, 0, 1])),
            "kernel" if t.dim() == 2 => (format!("{target}.weight"), t.transpose(0, 1)),
            "bias" if target == "fc" => ("fc.bias".to_string(), t.shallow_clone()),
            "bias" => {
                conv_bias.push((target, t.shallow_clone()));
                continue;
            }
            "gamma" => (format!("{target}.weight"), t.shallow_clone()),
            "beta" => (format!("{target}.bias"), t.shallow_clone()),
            "moving_mean" => (format!("{target}.running_mean"), t.shallow_clone()),
            "moving_variance" => (format!("{target}.running_var"), t.shallow_clone()),
            other => bail!("TF.js weight '{name}': unknown parameter '{other}'"),
        };
        if out.insert(key.clone(), value.contiguous()).is_some() {
            bail!("two TF.js weights map onto '{key}'");
        }
    }
    for (conv, bias) in &conv_bias {
        let bn = keras_bn_of(conv);
        let key = format!("{bn}.running_mean");
        let mean = out.get(&key).with_context(|| {
            format!("conv '{conv}' has a bias but no batch norm '{bn}' follows it")
        })?;
        let folded = mean - bias;
        out.insert(key, folded);
    }
    let conv1 = out
        .get("conv1.weight")
        .context("TF.js model has no conv1 kernel")?
        .flip([1])
        .contiguous();
    out.insert("conv1.weight".into(), conv1);
    Ok(Mapped {
        tensors: out.into_iter().collect(),
        convention: "Keras ResNet50 (TF.js layers) → torchvision names".into(),
        dropped: Vec::new(),
        notes: vec![
            "source input: BGR, 0–255, Caffe means [103.939, 116.779, 123.68] subtracted (Keras preprocess_input mode 'caffe')".into(),
            "BGR order folded into conv1 (input channels reversed): the imported model takes RGB".into(),
            format!("{} conv biases folded into the running means of the batch norms they feed", conv_bias.len()),
            "kernels transposed HWIO → OIHW, dense kernel transposed".into(),
        ],
        bgr_folded: true,
    })
}

/// The variant this layout needs: stride on the first 1×1 of each downsampling block and BN
/// epsilon 1e-3. Another Keras ResNet would load without error and compute something else.
fn check_keras_topology(model: &super::tfjs::TfjsModel) -> Result<()> {
    let strides = |layer: &str| {
        model
            .layer_config(layer, "strides")
            .and_then(|s| serde_json::from_value::<Vec<i64>>(s.clone()).ok())
    };
    match (strides("res3a_branch2a"), strides("res3a_branch2b")) {
        (Some(a), Some(b)) if a == [2, 2] && b == [1, 1] => {}
        (a, b) => bail!(
            "this Keras ResNet does not stride on the first 1×1 conv (res3a_branch2a strides {a:?}, res3a_branch2b {b:?}); resnet50_keras needs the original layout"
        ),
    }
    for (name, (class, cfg)) in &model.layers {
        if class == "BatchNormalization" {
            let eps = cfg.get("epsilon").and_then(|e| e.as_f64()).unwrap_or(1e-3);
            if (eps - 1e-3).abs() > 1e-9 {
                bail!(
                    "batch norm '{name}' uses epsilon {eps}; resnet50_keras runs with Keras's 1e-3"
                );
            }
        }
    }
    Ok(())
}

/// `conv1`, `bn_conv1`, `fc1000`, `res3b_branch2a`, `bn3b_branch2a`, `res2a_branch1`, … →
/// `conv1`, `bn1`, `fc`, `layer2.1.conv1`, `layer2.1.bn1`, `layer1.0.downsample.0`, …
fn keras_layer_to_torchvision(layer: &str) -> Option<String> {
    match layer {
        "conv1" => return Some("conv1".into()),
        "bn_conv1" => return Some("bn1".into()),
        "fc1000" => return Some("fc".into()),
        _ => {}
    }
    let (is_bn, rest) = if let Some(r) = layer.strip_prefix("res") {
        (false, r)
    } else {
        (true, layer.strip_prefix("bn")?)
    };
    let (block, branch) = rest.split_once("_branch")?;
    let mut chars = block.chars();
    let stage = chars.next()?.to_digit(10)? as i64;
    let letter = chars.next()?;
    if chars.next().is_some() || !(2..=5).contains(&stage) || !letter.is_ascii_lowercase() {
        return None;
    }
    let index = letter as u8 - b'a';
    let prefix = format!("layer{}.{index}", stage - 1);
    let unit = match (branch, is_bn) {
        ("1", false) => "downsample.0".to_string(),
        ("1", true) => "downsample.1".to_string(),
        ("2a" | "2b" | "2c", _) => {
            let k = (branch.as_bytes()[1] - b'a' + 1) as usize;
            format!("{}{k}", if is_bn { "bn" } else { "conv" })
        }
        _ => return None,
    };
    Some(format!("{prefix}.{unit}"))
}

/// The batch norm right after a (renamed) conv.
fn keras_bn_of(conv: &str) -> String {
    if conv == "conv1" {
        "bn1".into()
    } else if let Some(p) = conv.strip_suffix("downsample.0") {
        format!("{p}downsample.1")
    } else {
        conv.replacen(".conv", ".bn", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_densenet_keys_become_new_ones() {
        assert_eq!(
            new_densenet_key("features.denseblock1.denselayer1.norm.1.weight"),
            "features.denseblock1.denselayer1.norm1.weight"
        );
        assert_eq!(
            new_densenet_key("features.denseblock4.denselayer16.conv.2.weight"),
            "features.denseblock4.denselayer16.conv2.weight"
        );
        // Transitions and the stem keep their names.
        for k in [
            "features.transition1.norm.weight",
            "features.norm0.running_var",
            "features.conv0.weight",
        ] {
            assert_eq!(new_densenet_key(k), k);
            assert!(!is_old_densenet_key(k));
        }
    }

    #[test]
    fn keras_layers_map_to_torchvision_names() {
        let m = |l: &str| keras_layer_to_torchvision(l);
        assert_eq!(m("res2a_branch2a").as_deref(), Some("layer1.0.conv1"));
        assert_eq!(m("bn3d_branch2c").as_deref(), Some("layer2.3.bn3"));
        assert_eq!(m("res4a_branch1").as_deref(), Some("layer3.0.downsample.0"));
        assert_eq!(m("bn5a_branch1").as_deref(), Some("layer4.0.downsample.1"));
        assert_eq!(m("bn_conv1").as_deref(), Some("bn1"));
        assert_eq!(m("res6a_branch2a"), None);
        assert_eq!(m("dense_1"), None);
        assert_eq!(keras_bn_of("layer2.3.conv3"), "layer2.3.bn3");
        assert_eq!(
            keras_bn_of("layer4.0.downsample.0"),
            "layer4.0.downsample.1"
        );
        assert_eq!(keras_bn_of("conv1"), "bn1");
    }

    #[test]
    fn lukemelas_blocks_nest_by_stage() {
        let targets: Vec<String> = [
            "blocks.0.0.conv_dw.weight",
            "blocks.0.0.conv_pw.weight",
            "blocks.1.0.conv_pw.weight",
            "blocks.1.0.conv_pwl.weight",
            "blocks.1.1.conv_pwl.weight",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let t = || Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let named = vec![
            ("_blocks.0._depthwise_conv.weight".to_string(), t()),
            ("_blocks.0._project_conv.weight".to_string(), t()),
            ("_blocks.2._expand_conv.weight".to_string(), t()),
            ("_blocks.2._bn2.running_var".to_string(), t()),
            ("_bn1.weight".to_string(), t()),
            ("_fc.bias".to_string(), t()),
        ];
        let out: Vec<String> = lukemelas_to_timm(named, &targets)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            out,
            [
                "blocks.0.0.conv_dw.weight",
                "blocks.0.0.conv_pw.weight",
                "blocks.1.1.conv_pw.weight",
                "blocks.1.1.bn3.running_var",
                "bn2.weight",
                "classifier.bias"
            ]
        );
        let too_many = vec![("_blocks.9._bn1.weight".to_string(), t())];
        let err = lukemelas_to_timm(too_many, &targets)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("larger variant"), "{err}");
    }
}
