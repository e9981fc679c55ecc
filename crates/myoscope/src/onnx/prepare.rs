//! Rewrites an fp32 graph, before quantization, so that more of it can run on integers.
//!
//! ONNX Runtime has no integer batch norm. A DenseNet's pre-activation norms (BN → ReLU → conv
//! on every concatenation) therefore ran in float between integer convolutions: each cost a
//! dequantize, a float pass, a quantize and a pair of NCHW↔NHWC transposes, since the layout
//! optimiser cannot move a transpose through a batch norm. Profiled on DenseNet-121 at 640²,
//! the integer convolutions were only a third of the int8 model's time.
//!
//! An inference-mode batch norm is a per-channel affine map, which is exactly a depthwise 1×1
//! convolution: weight `γ/√(var+ε)`, bias `β − mean·γ/√(var+ε)`. As a convolution it quantizes
//! like the others (one weight per channel, so the per-channel int8 weight is exact up to
//! rounding of one value), its ReLU fuses into it, and the chain concat → norm → conv stays
//! in uint8 and NHWC.
use super::proto::{Attribute, Graph, Model, Node, TensorProto};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;

/// Whether a batch norm's output reaches only convolutions (directly or through one ReLU):
/// then it sits between integer convolutions and is worth converting. A norm that feeds the
/// heads or a graph output stays a float batch norm.
fn feeds_convolutions_only(g: &Graph, consumers: &HashMap<&str, Vec<usize>>, out: &str) -> bool {
    let graph_outputs = |t: &str| g.outputs.iter().any(|o| o.name == t);
    let readers = |t: &str| consumers.get(t).map(Vec::as_slice).unwrap_or(&[]);
    if graph_outputs(out) || readers(out).is_empty() {
        return false;
    }
    readers(out).iter().all(|&i| {
        let n = &g.nodes[i];
        match n.op_type.as_str() {
            "Conv" => n.inputs[0] == out,
            "Relu" => {
                let r = &n.outputs[0];
                !graph_outputs(r)
                    && !readers(r).is_empty()
                    && readers(r)
                        .iter()
                        .all(|&j| g.nodes[j].op_type == "Conv" && g.nodes[j].inputs[0] == *r)
            }
            _ => false,
        }
    })
}

/// The model with every batch norm that feeds convolutions replaced by the equivalent
/// depthwise 1×1 convolution; returns how many were replaced.
pub fn batch_norms_as_convolutions(model: &Model) -> Result<(Model, usize)> {
    let g = &model.graph;
    let consumers = g.consumers();
    let inits: HashMap<&str, &TensorProto> = g
        .initializers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let get = |name: &str| -> Result<Vec<f32>> {
        inits
            .get(name)
            .with_context(|| format!("batch-norm parameter '{name}' is not an initializer"))?
            .floats()
    };
    let mut out = model.clone();
    let mut added = Vec::new();
    let mut replaced = 0;
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type != "BatchNormalization"
            || !feeds_convolutions_only(g, &consumers, &n.outputs[0])
        {
            continue;
        }
        let (gamma, beta, mean, var) = (
            get(&n.inputs[1])?,
            get(&n.inputs[2])?,
            get(&n.inputs[3])?,
            get(&n.inputs[4])?,
        );
        let c = gamma.len();
        if [beta.len(), mean.len(), var.len()] != [c, c, c] {
            bail!(
                "batch norm '{}' has parameters of different lengths",
                n.name
            );
        }
        let eps = n.float_attribute("epsilon").unwrap_or(1e-5);
        let w: Vec<f32> = (0..c).map(|k| gamma[k] / (var[k] + eps).sqrt()).collect();
        let b: Vec<f32> = (0..c).map(|k| beta[k] - mean[k] * w[k]).collect();
        let (wn, bn) = (
            format!("{}.depthwise_weight", n.outputs[0]),
            format!("{}.depthwise_bias", n.outputs[0]),
        );
        added.push(TensorProto::float(&wn, &[c as i64, 1, 1, 1], &w));
        added.push(TensorProto::float(&bn, &[c as i64], &b));
        out.graph.nodes[i] = Node {
            inputs: vec![n.inputs[0].clone(), wn, bn],
            outputs: n.outputs.clone(),
            name: format!("{}:depthwise", n.name),
            op_type: "Conv".into(),
            attributes: vec![
                Attribute::ints("kernel_shape", &[1, 1]),
                Attribute::ints("strides", &[1, 1]),
                Attribute::ints("pads", &[0, 0, 0, 0]),
                Attribute::int("group", c as i64),
            ],
            domain: String::new(),
        };
        replaced += 1;
    }
    // Parameters no node reads any more are dropped; the new ones follow the old.
    let used: std::collections::HashSet<&str> = out
        .graph
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .collect();
    let kept: Vec<TensorProto> = out
        .graph
        .initializers
        .iter()
        .filter(|t| used.contains(t.name.as_str()))
        .cloned()
        .collect();
    out.graph.initializers = kept.into_iter().chain(added).collect();
    Ok((out, replaced))
}
