//! Channel equalization before int8 quantization.
//!
//! A DenseNet's integer path quantizes each concatenation with one uint8 scale, and the next
//! norm (a depthwise convolution by then, see [`super::prepare`]) multiplies every channel by
//! its own `γ/σ`. The concatenated channels come from many convolutions and differ in range
//! by orders of magnitude, so a quiet channel is rounded coarsely and then magnified: on a
//! trained demo DenseNet this alone cost 0.10 of accuracy.
//!
//! The fix changes nothing in float. Each output channel c of a convolution whose output
//! reaches batch norms only (through ReLUs, pooling and channel concatenations, all of which
//! commute with a positive per-channel scale) is multiplied by `k_c = T / a_c`, where a_c is
//! the channel's largest |value| on the calibration photos and T the largest over all such
//! channels, so every one of them spans the shared range; the norms that read the channel
//! take `γ' = γ/k`, `mean' = k·mean`, giving the same output. Weights are quantized per output
//! channel, so scaling a row costs them no precision.
use super::proto::{Graph, Model};
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};

/// The largest gain given to one channel: a channel that was nearly silent on the calibration
/// photos keeps some headroom for photos where it is not.
pub const MAX_GAIN: f32 = 64.0;

/// The channel count of each activation whose count follows from the graph (conv weights,
/// then ops that keep or concatenate channels).
fn channel_counts(g: &Graph) -> HashMap<String, i64> {
    let dims: HashMap<&str, &[i64]> = g
        .initializers
        .iter()
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    let mut counts: HashMap<String, i64> = HashMap::new();
    for n in &g.nodes {
        let c = match n.op_type.as_str() {
            "Conv" => dims.get(n.inputs[1].as_str()).map(|d| d[0]),
            "BatchNormalization" | "Relu" | "MaxPool" | "AveragePool" => {
                counts.get(&n.inputs[0]).copied()
            }
            "Concat" if n.int_attribute("axis") == Some(1) => n
                .inputs
                .iter()
                .map(|i| counts.get(i).copied())
                .sum::<Option<i64>>(),
            _ => None,
        };
        if let Some(c) = c {
            counts.insert(n.outputs[0].clone(), c);
        }
    }
    counts
}

/// A convolution that can be equalized and the batch norms (node index, offset of the
/// convolution's channels in the norm's input) that read its channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub conv: usize,
    pub output: String,
    pub norms: Vec<(usize, i64)>,
}

/// Every convolution whose output reaches batch norms and nothing else.
pub fn candidates(g: &Graph) -> Vec<Candidate> {
    let consumers = g.consumers();
    let counts = channel_counts(g);
    let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let readers = |t: &str| -> Option<Vec<(usize, i64)>> {
        let mut found = Vec::new();
        let mut stack = vec![(t.to_string(), 0i64)];
        while let Some((name, offset)) = stack.pop() {
            if outputs.contains(name.as_str()) {
                return None;
            }
            for &i in consumers
                .get(name.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let n = &g.nodes[i];
                match n.op_type.as_str() {
                    "BatchNormalization" if n.inputs[0] == name => found.push((i, offset)),
                    "Relu" | "MaxPool" | "AveragePool" => {
                        stack.push((n.outputs[0].clone(), offset))
                    }
                    "Concat" if n.int_attribute("axis") == Some(1) => {
                        if n.inputs.iter().filter(|x| **x == name).count() != 1 {
                            return None;
                        }
                        let mut before = 0;
                        for x in n.inputs.iter().take_while(|x| **x != name) {
                            before += counts.get(x)?;
                        }
                        stack.push((n.outputs[0].clone(), offset + before));
                    }
                    _ => return None,
                }
            }
        }
        (!found.is_empty()).then_some(found)
    };
    g.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "Conv")
        .filter_map(|(i, n)| {
            readers(&n.outputs[0]).map(|norms| Candidate {
                conv: i,
                output: n.outputs[0].clone(),
                norms,
            })
        })
        .collect()
}

/// Each channel's gain, from the channels' largest |value| (`peaks` per candidate output):
/// every channel brought up to the loudest channel of all candidates, at most [`MAX_GAIN`].
pub fn gains(peaks: &HashMap<String, Vec<f32>>) -> HashMap<String, Vec<f32>> {
    let top = peaks
        .values()
        .flatten()
        .copied()
        .filter(|a| a.is_finite())
        .fold(0f32, f32::max);
    peaks
        .iter()
        .map(|(name, a)| {
            let k = a
                .iter()
                .map(|&a| {
                    if a > 0.0 && a.is_finite() {
                        (top / a).clamp(1.0, MAX_GAIN)
                    } else {
                        1.0
                    }
                })
                .collect();
            (name.clone(), k)
        })
        .collect()
}

/// The model with each candidate's channels scaled by its `gains` and the reading norms
/// compensated. Fails rather than scale one parameter twice.
pub fn equalize(
    model: &Model,
    candidates: &[Candidate],
    gains: &HashMap<String, Vec<f32>>,
) -> Result<Model> {
    let g = &model.graph;
    let mut values: HashMap<String, Vec<f32>> = HashMap::new();
    let mut touched: HashSet<(String, usize)> = HashSet::new();
    let mut edit = |name: &str, at: &dyn Fn(usize) -> Option<f32>, op: fn(f32, f32) -> f32| {
        if !values.contains_key(name) {
            let init = g
                .initializers
                .iter()
                .find(|i| i.name == name)
                .with_context(|| format!("'{name}' is not an initializer"))?;
            values.insert(name.to_string(), init.floats()?);
        }
        let v = values.get_mut(name).expect("just inserted");
        for (i, x) in v.iter_mut().enumerate() {
            if let Some(k) = at(i) {
                if !touched.insert((name.to_string(), i)) {
                    bail!("'{name}'[{i}] would be rescaled twice");
                }
                *x = op(*x, k);
            }
        }
        Ok(())
    };
    let times = |x: f32, k: f32| x * k;
    let over = |x: f32, k: f32| x / k;
    for c in candidates {
        let Some(k) = gains.get(&c.output) else {
            continue;
        };
        let conv = &g.nodes[c.conv];
        let rows = k.len();
        let w = &conv.inputs[1];
        let per_row = g
            .initializers
            .iter()
            .find(|i| &i.name == w)
            .map(|i| i.element_count() as usize / rows.max(1))
            .with_context(|| format!("conv weight '{w}' is not an initializer"))?;
        edit(w, &|i| Some(k[i / per_row]), times)?;
        if let Some(b) = conv.inputs.get(2) {
            edit(b, &|i| Some(k[i]), times)?;
        }
        for &(bn, offset) in &c.norms {
            let n = &g.nodes[bn];
            let at = |i: usize| {
                let j = i as i64 - offset;
                (j >= 0 && (j as usize) < rows).then(|| k[j as usize])
            };
            edit(&n.inputs[1], &at, over)?;
            edit(&n.inputs[3], &at, times)?;
        }
    }
    let mut out = model.clone();
    for init in out.graph.initializers.iter_mut() {
        if let Some(v) = values.get(&init.name) {
            init.set_floats(v);
        }
    }
    Ok(out)
}

/// The largest |value| of each channel (axis 1) of an NCHW output, folded into `peaks`.
pub fn fold_peaks(peaks: &mut Vec<f32>, shape: &[i64], values: &[f32]) {
    let channels = shape.get(1).copied().unwrap_or(1).max(1) as usize;
    let inner = shape.iter().skip(2).product::<i64>().max(1) as usize;
    if peaks.len() != channels {
        *peaks = vec![0.0; channels];
    }
    for (i, run) in values.chunks(inner).enumerate() {
        let p = &mut peaks[i % channels];
        for &x in run {
            if x.abs() > *p && x.is_finite() {
                *p = x.abs();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gains_lift_quiet_channels_to_the_loudest_of_all() {
        let peaks: HashMap<String, Vec<f32>> = [
            ("a".to_string(), vec![4.0, 1.0, 0.0]),
            ("b".to_string(), vec![0.5, 1e-6]),
        ]
        .into();
        let k = gains(&peaks);
        assert_eq!(k["a"], vec![1.0, 4.0, 1.0]);
        assert_eq!(k["b"], vec![8.0, MAX_GAIN]);
    }

    #[test]
    fn peaks_are_per_channel() {
        let mut p = Vec::new();
        // [N=2, C=2, 2 values each]
        fold_peaks(
            &mut p,
            &[2, 2, 1, 2],
            &[1.0, -3.0, 0.5, 0.25, 2.0, 0.0, -0.75, 0.1],
        );
        assert_eq!(p, vec![3.0, 0.75]);
    }

    /// Equalizing with arbitrary gains and then turning the norms into depthwise convolutions
    /// leaves a DenseNet's outputs unchanged in float (run in ONNX Runtime), and every
    /// growth and transition convolution qualifies.
    #[test]
    fn equalized_densenet_computes_the_same_function() {
        use crate::onnx::export::{build_graph, finish, sidecar};
        use crate::onnx::proto::Message;
        use crate::onnx::OnnxClassifier;
        use crate::training::ModelSpec;
        use tch::{nn, Device, Kind, Tensor};
        let spec = ModelSpec {
            model: crate::config::ModelConfig {
                arch: "densenet-tiny".into(),
                grid: 2,
                input_size: 64,
                ..Default::default()
            },
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        spec.build(&vs).unwrap();
        // Non-trivial norm statistics, so that a wrong compensation shows.
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.ends_with("running_mean") || name.ends_with(".bias") {
                    t.copy_(&(Tensor::randn_like(&t) * 0.1));
                } else if name.ends_with("running_var")
                    || (t.dim() == 1 && name.ends_with(".weight"))
                {
                    t.copy_(&(Tensor::rand_like(&t) + 0.5));
                }
            }
        });
        let meta = sidecar(&spec, "test", "fp32", None);
        let model = finish(build_graph(&spec, &vs.variables()).unwrap(), &meta);
        let found = candidates(&model.graph);
        let convs = |pat: &str| found.iter().filter(|c| c.output.contains(pat)).count();
        let layers = crate::models::densenet::DenseNetConfig::tiny()
            .block_config
            .iter()
            .sum::<i64>() as usize;
        assert_eq!(convs("conv2"), layers, "every growth conv is a candidate");
        assert!(convs("transition") >= 1 && convs("conv0") == 1);
        let gains: HashMap<String, Vec<f32>> = found
            .iter()
            .map(|c| {
                let rows = model
                    .graph
                    .initializers
                    .iter()
                    .find(|i| i.name == model.graph.nodes[c.conv].inputs[1])
                    .unwrap()
                    .dims[0] as usize;
                (
                    c.output.clone(),
                    (0..rows).map(|r| 1.0 + (r % 5) as f32 * 3.0).collect(),
                )
            })
            .collect();
        let eq = equalize(&model, &found, &gains).unwrap();
        let (eq, converted) = crate::onnx::prepare::batch_norms_as_convolutions(&eq).unwrap();
        assert!(converted >= layers, "{converted} norms became convolutions");
        if let Err(e) = crate::onnx::runtime::init() {
            eprintln!("SKIP (the rest): ONNX Runtime is not available here: {e:#}");
            return;
        }
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let run = |m: &Model| {
            let c = OnnxClassifier::from_bytes(&m.to_bytes(), meta.clone(), 1).unwrap();
            c.forward(&x).unwrap()
        };
        let (a, b) = (run(&model), run(&eq));
        let d = a
            .logits
            .iter()
            .zip(&b.logits)
            .map(|(p, q)| (p - q).abs() / p.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "logits moved by {d}");
        let d = a
            .feature_maps
            .iter()
            .zip(&b.feature_maps)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "feature maps moved by {d}");
    }
}
