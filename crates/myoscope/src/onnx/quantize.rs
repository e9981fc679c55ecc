//! Static int8 quantization of an exported model, written as a QDQ graph
//! (QuantizeLinear/DequantizeLinear pairs) that ONNX Runtime turns into integer convolutions
//! (VNNI on x86).
//!
//! - **Weights**: per output channel, symmetric int8 (`scale = max|W_c| / 127`, zero point 0),
//!   biases int32 with scale `s_input · s_weight[c]`, as integer convolution needs.
//! - **Activations**: every convolution's input and output (after its ReLU/ReLU6, which ONNX
//!   Runtime then folds into the quantization) get one uint8 scale and zero point per tensor,
//!   from the range seen on calibration photos (always including 0): by default the 99.999th
//!   percentile at each end, or the extremes ([`super::calibrate`]).
//!
//! Everything else (batch norms on concatenations, pooling, heads, softmax) stays float.
use super::calibrate::{ranges, Calibration, Collectors};
use super::equalize;
use super::export::{build_graph, finish, sidecar, OnnxSidecar};
use super::prepare::batch_norms_as_convolutions;
use super::proto::{Attribute, DataType, Graph, Message, Model, Node, TensorProto, ValueInfo};
use crate::training::ModelSpec;
use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};

/// The activation tensors to quantize, in graph order: each Conv's input, and its output or,
/// where a ReLU/Clip is the output's only consumer, that activation's output; and the inputs
/// and outputs of channel concatenations and pooling, so that a DenseNet's concat → norm →
/// conv chain stays in uint8 (ONNX Runtime runs them as integer concatenation and pooling).
pub fn activation_tensors(g: &Graph) -> Vec<String> {
    let consumers = g.consumers();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut add = |t: &str| {
        if seen.insert(t.to_string()) {
            out.push(t.to_string());
        }
    };
    for n in &g.nodes {
        match n.op_type.as_str() {
            "Conv" => {
                add(&n.inputs[0]);
                let o = n.outputs[0].as_str();
                match consumers.get(o).map(Vec::as_slice) {
                    Some(&[only]) if matches!(g.nodes[only].op_type.as_str(), "Relu" | "Clip") => {
                        add(&g.nodes[only].outputs[0])
                    }
                    _ => add(o),
                }
            }
            "Concat" | "MaxPool" | "AveragePool" => {
                for i in &n.inputs {
                    add(i);
                }
                add(&n.outputs[0]);
            }
            _ => {}
        }
    }
    out
}

/// Gives tensors that meet in a channel concatenation one shared range (the union of
/// theirs), and a max pool's output its input's. Then ONNX Runtime concatenates the uint8
/// values by plain copies instead of requantizing each input through a lookup table, and
/// pools them directly. After [`super::equalize`] the concatenated channels span about the
/// same range anyway, so sharing costs little resolution.
///
/// A max pool's output stays out of the concatenation's group: it shares its input's range,
/// which comes from a ReLU and starts at 0, and only a zero point of 0 lets ONNX Runtime fold
/// that ReLU into the integer convolution before it.
fn share_ranges(g: &Graph, ranges: &mut HashMap<String, (f32, f32)>) {
    let pooled: HashSet<&str> = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "MaxPool")
        .map(|n| n.outputs[0].as_str())
        .collect();
    let mut parent: HashMap<String, String> = HashMap::new();
    fn root(parent: &mut HashMap<String, String>, t: &str) -> String {
        let mut r = t.to_string();
        while let Some(p) = parent.get(&r).filter(|p| **p != r) {
            r = p.clone();
        }
        parent.insert(t.to_string(), r.clone());
        r
    }
    for n in g.nodes.iter().filter(|n| n.op_type == "Concat") {
        let tied: Vec<&String> = n
            .inputs
            .iter()
            .chain(&n.outputs)
            .filter(|t| !pooled.contains(t.as_str()))
            .collect();
        let Some((head, rest)) = tied.split_first() else {
            continue;
        };
        let first = root(&mut parent, head);
        for t in rest {
            let r = root(&mut parent, t);
            parent.insert(r, first.clone());
        }
    }
    let members: Vec<String> = parent.keys().cloned().collect();
    let mut union: HashMap<String, (f32, f32)> = HashMap::new();
    for t in &members {
        if let Some(&(lo, hi)) = ranges.get(t) {
            let r = root(&mut parent, t);
            let e = union.entry(r).or_insert((lo, hi));
            *e = (e.0.min(lo), e.1.max(hi));
        }
    }
    for t in &members {
        let r = root(&mut parent, t);
        if let (Some(&u), true) = (union.get(&r), ranges.contains_key(t)) {
            ranges.insert(t.clone(), u);
        }
    }
    for n in g.nodes.iter().filter(|n| n.op_type == "MaxPool") {
        if let Some(&r) = ranges.get(&n.inputs[0]) {
            ranges.insert(n.outputs[0].clone(), r);
        }
    }
}

/// The model with `tensors` as extra outputs, for collecting their ranges.
pub fn with_extra_outputs(model: &Model, tensors: &[String]) -> Model {
    let mut m = model.clone();
    for t in tensors {
        m.graph.outputs.push(ValueInfo {
            name: t.clone(),
            elem_type: DataType::Float,
            shape: Vec::new(),
        });
    }
    m
}

/// uint8 affine parameters covering `[lo, hi]` (widened to include 0, so zero is exact).
pub fn uint8_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Symmetric per-row int8: row-major `[rows, rest]` → values and one scale per row.
pub fn int8_per_channel(w: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / rows;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows);
    for row in w.chunks(per) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<Attribute>) -> Node {
    Node {
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        name: format!("{op}:{output}"),
        op_type: op.into(),
        attributes,
        domain: String::new(),
    }
}

/// Rewrites an fp32 model into its QDQ int8 form with the calibrated activation `ranges`.
pub fn quantize(model: &Model, ranges: &HashMap<String, (f32, f32)>) -> Result<Model> {
    let src = &model.graph;
    let tensors = activation_tensors(src);
    let mut inits: HashMap<String, TensorProto> = src
        .initializers
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut nodes = Vec::with_capacity(src.nodes.len() * 3);
    // Activation tensor → (scale, zero point, dequantized name).
    let mut act: HashMap<String, (f32, u8, String)> = HashMap::new();
    let quantize_tensor = |t: &str,
                           nodes: &mut Vec<Node>,
                           new_inits: &mut Vec<TensorProto>,
                           act: &mut HashMap<String, (f32, u8, String)>|
     -> Result<()> {
        let &(lo, hi) = ranges
            .get(t)
            .with_context(|| format!("no calibration range for '{t}'"))?;
        let (scale, zp) = uint8_params(lo, hi);
        let s = format!("{t}.scale");
        let z = format!("{t}.zero_point");
        new_inits.push(TensorProto::float(&s, &[], &[scale]));
        new_inits.push(TensorProto::uint8(&z, &[], &[zp]));
        let q = format!("{t}.q");
        let dq = format!("{t}.dq");
        nodes.push(node("QuantizeLinear", &[t, &s, &z], &q, vec![]));
        nodes.push(node("DequantizeLinear", &[&q, &s, &z], &dq, vec![]));
        act.insert(t.to_string(), (scale, zp, dq));
        Ok(())
    };
    let wanted: HashSet<&str> = tensors.iter().map(String::as_str).collect();
    for input in &src.inputs {
        if wanted.contains(input.name.as_str()) {
            quantize_tensor(&input.name, &mut nodes, &mut new_inits, &mut act)?;
        }
    }
    for n in &src.nodes {
        let mut n = n.clone();
        if n.op_type == "Conv" {
            let x = n.inputs[0].clone();
            let &(s_x, _, _) = act
                .get(&x)
                .with_context(|| format!("conv input '{x}' was not quantized"))?;
            let wname = n.inputs[1].clone();
            let w = inits
                .remove(&wname)
                .with_context(|| format!("conv weight '{wname}' is not an initializer"))?;
            let rows = w.dims[0] as usize;
            let (wq, ws) = int8_per_channel(&w.floats()?, rows);
            let (wq_n, ws_n, wz_n) = (
                format!("{wname}.q"),
                format!("{wname}.scale"),
                format!("{wname}.zero_point"),
            );
            new_inits.push(TensorProto::int8(&wq_n, &w.dims, &wq));
            new_inits.push(TensorProto::float(&ws_n, &[rows as i64], &ws));
            new_inits.push(TensorProto::int8(&wz_n, &[rows as i64], &vec![0; rows]));
            let w_dq = format!("{wname}.dq");
            let axis = vec![Attribute::int("axis", 0)];
            nodes.push(node(
                "DequantizeLinear",
                &[&wq_n, &ws_n, &wz_n],
                &w_dq,
                axis.clone(),
            ));
            n.inputs[1] = w_dq;
            if let Some(bname) = n.inputs.get(2).cloned() {
                let b = inits
                    .remove(&bname)
                    .with_context(|| format!("conv bias '{bname}' is not an initializer"))?;
                let bs: Vec<f32> = ws.iter().map(|s| s * s_x).collect();
                let bq: Vec<i32> = b
                    .floats()?
                    .iter()
                    .zip(&bs)
                    .map(|(v, s)| (v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32)
                    .collect();
                let (bq_n, bs_n, bz_n) = (
                    format!("{bname}.q"),
                    format!("{bname}.scale"),
                    format!("{bname}.zero_point"),
                );
                new_inits.push(TensorProto::int32(&bq_n, &b.dims, &bq));
                new_inits.push(TensorProto::float(&bs_n, &[rows as i64], &bs));
                new_inits.push(TensorProto::int32(&bz_n, &[rows as i64], &vec![0; rows]));
                let b_dq = format!("{bname}.dq");
                nodes.push(node(
                    "DequantizeLinear",
                    &[&bq_n, &bs_n, &bz_n],
                    &b_dq,
                    axis,
                ));
                n.inputs[2] = b_dq;
            }
        }
        // Every consumer reads the dequantized copy of a quantized activation.
        for i in n.inputs.iter_mut() {
            if let Some((_, _, dq)) = act.get(i.as_str()) {
                *i = dq.clone();
            }
        }
        let outs = n.outputs.clone();
        nodes.push(n);
        for o in outs.iter().filter(|o| wanted.contains(o.as_str())) {
            quantize_tensor(o, &mut nodes, &mut new_inits, &mut act)?;
        }
    }
    let mut graph = src.clone();
    graph.nodes = nodes;
    // Keep the surviving float initializers in their original order, then the new ones.
    graph.initializers = src
        .initializers
        .iter()
        .filter(|t| inits.contains_key(&t.name))
        .cloned()
        .chain(new_inits)
        .collect();
    Ok(Model {
        graph,
        ..model.clone()
    })
}

/// Exports the model, calibrates its activation ranges on `images` (normalised batches as
/// row-major NCHW floats with their shapes) in ONNX Runtime by `how`, and returns the int8 QDQ
/// model. `calibration` says for the sidecar what the photos were.
pub fn export_int8(
    spec: &ModelSpec,
    vars: &HashMap<String, tch::Tensor>,
    weights_sha256: &str,
    images: impl IntoIterator<Item = Result<(Vec<f32>, [i64; 4])>>,
    how: Calibration,
    calibration: String,
    threads: usize,
) -> Result<(Vec<u8>, OnnxSidecar)> {
    let note = format!(
        "{} per activation tensor over {calibration}",
        how.describe()
    );
    let meta = sidecar(spec, weights_sha256, "int8", Some(note));
    // Two passes over the photos: channel peaks for the equalization, then the ranges of the
    // equalized graph.
    let batches: Vec<(Vec<f32>, [i64; 4])> = images.into_iter().collect::<Result<_>>()?;
    let fp32 = finish(build_graph(spec, vars)?, &meta);
    let candidates = equalize::candidates(&fp32.graph);
    let fp32 = if candidates.is_empty() {
        fp32
    } else {
        let names: Vec<String> = candidates.iter().map(|c| c.output.clone()).collect();
        let probe = with_extra_outputs(&fp32, &names).to_bytes();
        let mut peaks: HashMap<String, Vec<f32>> = HashMap::new();
        super::runtime::visit_outputs(&probe, &names, &batches, threads, |name, shape, v| {
            equalize::fold_peaks(peaks.entry(name.to_string()).or_default(), shape, v)
        })?;
        equalize::equalize(&fp32, &candidates, &equalize::gains(&peaks))?
    };
    let (fp32, _) = batch_norms_as_convolutions(&fp32)?;
    let tensors = activation_tensors(&fp32.graph);
    let probe = with_extra_outputs(&fp32, &tensors).to_bytes();
    let mut collectors = Collectors::new();
    super::runtime::visit_outputs(&probe, &tensors, &batches, threads, |name, _, v| {
        collectors.entry(name.to_string()).or_default().add(v)
    })?;
    let mut ranges = ranges(&collectors, how);
    share_ranges(&fp32.graph, &mut ranges);
    let int8 = quantize(&fp32, &ranges)?;
    Ok((int8.to_bytes(), meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concatenated tensors end up with the union of their ranges, a max pool's output with
    /// its input's, and tensors outside both keep theirs.
    #[test]
    fn concatenations_and_max_pools_share_ranges() {
        let g = Graph {
            nodes: vec![
                node("Concat", &["a", "b"], "c", vec![]),
                node("MaxPool", &["p"], "q", vec![]),
                node("Concat", &["q", "d"], "e", vec![]),
                node("Relu", &["e"], "f", vec![]),
            ],
            ..Default::default()
        };
        let mut r: HashMap<String, (f32, f32)> = [
            ("a", (-1.0, 2.0)),
            ("b", (0.0, 5.0)),
            ("c", (-1.0, 5.0)),
            ("p", (0.0, 3.0)),
            ("q", (0.0, 2.5)),
            ("d", (-2.0, 1.0)),
            ("e", (-2.0, 3.0)),
            ("f", (0.0, 9.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        share_ranges(&g, &mut r);
        for t in ["a", "b", "c"] {
            assert_eq!(r[t], (-1.0, 5.0), "{t}");
        }
        // The pooled tensor keeps its input's range; the rest of its concatenation shares.
        assert_eq!((r["p"], r["q"]), ((0.0, 3.0), (0.0, 3.0)));
        for t in ["d", "e"] {
            assert_eq!(r[t], (-2.0, 3.0), "{t}");
        }
        assert_eq!(r["f"], (0.0, 9.0));
    }

    #[test]
    fn uint8_range_keeps_zero_exact() {
        let (s, z) = uint8_params(0.0, 6.0);
        assert_eq!(z, 0);
        assert!((s - 6.0 / 255.0).abs() < 1e-9);
        let (s, z) = uint8_params(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-9);
        assert_eq!(z, 64);
        // A positive-only range still starts at 0.
        assert_eq!(uint8_params(2.0, 4.0).1, 0);
    }

    #[test]
    fn per_channel_int8_is_symmetric_per_row() {
        let w = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0, -0.5];
        let (q, s) = int8_per_channel(&w, 3);
        assert_eq!(s.len(), 3);
        assert!((s[0] - 1.0 / 127.0).abs() < 1e-9);
        assert_eq!(&q[..3], &[64, -127, 32]);
        // An all-zero channel gets scale 1 and zeros.
        assert_eq!((s[1], &q[3..6]), (1.0, &[0i8, 0, 0][..]));
        assert_eq!(&q[6..], &[127, 64, -32]);
        // Reconstruction error is at most half a step.
        for (i, &v) in w.iter().enumerate() {
            let back = q[i] as f32 * s[i / 3];
            assert!((back - v).abs() <= s[i / 3] / 2.0 + 1e-7);
        }
    }

    /// Every convolution of a quantized ResNet-18 reads dequantized input, weight and bias,
    /// and its output (after the ReLU where there is one) is quantized: the pattern ONNX
    /// Runtime fuses into an integer convolution.
    #[test]
    fn every_convolution_gets_the_qdq_pattern() {
        let spec = ModelSpec {
            model: crate::config::ModelConfig {
                arch: "resnet18".into(),
                grid: 2,
                input_size: 64,
                ..Default::default()
            },
            classes: vec!["a".into(), "b".into()],
        };
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _net = spec.build(&vs).unwrap();
        let meta = sidecar(&spec, "x", "int8", None);
        let fp32 = finish(build_graph(&spec, &vs.variables()).unwrap(), &meta);
        let tensors = activation_tensors(&fp32.graph);
        let ranges = tensors.iter().map(|t| (t.clone(), (-1.0, 5.0))).collect();
        let q = quantize(&fp32, &ranges).unwrap();
        let producer: HashMap<&str, &str> = q
            .graph
            .nodes
            .iter()
            .map(|n| (n.outputs[0].as_str(), n.op_type.as_str()))
            .collect();
        let convs: Vec<&Node> = q
            .graph
            .nodes
            .iter()
            .filter(|n| n.op_type == "Conv")
            .collect();
        assert_eq!(convs.len(), 20);
        for c in &convs {
            assert_eq!(c.inputs.len(), 3);
            for i in &c.inputs {
                assert_eq!(producer.get(i.as_str()), Some(&"DequantizeLinear"), "{i}");
            }
        }
        let quantized: HashSet<&str> = q
            .graph
            .nodes
            .iter()
            .filter(|n| n.op_type == "QuantizeLinear")
            .map(|n| n.inputs[0].as_str())
            .collect();
        assert_eq!(quantized.len(), tensors.len());
        // No float conv weight survives.
        let inits: HashSet<&str> = q
            .graph
            .initializers
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        for c in fp32.graph.nodes.iter().filter(|n| n.op_type == "Conv") {
            assert!(!inits.contains(c.inputs[1].as_str()));
        }
    }
}
