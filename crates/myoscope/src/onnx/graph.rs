//! A small builder for ONNX inference graphs: each operator call appends a node, names its
//! output and returns it with its shape, so the family exporters read like their forward
//! passes. The batch axis is symbolic; every other axis is known at export time (the input
//! size and grid are fixed per model), which also settles TensorFlow "SAME" padding.
use super::proto::{Attribute, DataType, Dim, Graph, Model, Node, TensorProto, ValueInfo};
use anyhow::{bail, Result};

/// ONNX opset we emit (ONNX 1.12+, every ONNX Runtime since 1.13).
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
pub const IR_VERSION: i64 = 8;

/// A tensor in the graph: its name and its shape without the (symbolic) batch axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub name: String,
    pub shape: Vec<i64>,
}

impl Value {
    /// Channels of an NCHW value.
    pub fn channels(&self) -> i64 {
        self.shape[0]
    }

    /// Height and width of an NCHW value.
    pub fn hw(&self) -> (i64, i64) {
        (self.shape[1], self.shape[2])
    }
}

/// A non-linearity after a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

/// Convolution geometry; `pads` are `[top, left, bottom, right]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: i64,
    pub pads: [i64; 4],
    pub groups: i64,
}

#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: Graph,
    counter: usize,
    relu6_bounds: Option<(String, String)>,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        Self {
            graph: Graph {
                name: name.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Declares a float graph input `[batch, shape...]`.
    pub fn input(&mut self, name: &str, shape: &[i64]) -> Value {
        self.graph.inputs.push(value_info(name, shape));
        Value {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    /// Marks `v` as a graph output under `name` (through Identity when it is named otherwise).
    pub fn output(&mut self, v: &Value, name: &str) {
        if v.name != name {
            self.push_named("Identity", &[&v.name], name, vec![]);
        }
        self.graph.outputs.push(value_info(name, &v.shape));
    }

    /// A float constant; `hint` makes its name readable (e.g. the source weight's name).
    pub fn constant(&mut self, hint: &str, dims: &[i64], data: &[f32]) -> String {
        let name = self.unique(hint);
        self.graph
            .initializers
            .push(TensorProto::float(&name, dims, data));
        name
    }

    pub fn constant_i64(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.unique(hint);
        self.graph
            .initializers
            .push(TensorProto::int64(&name, &[data.len() as i64], data));
        name
    }

    /// Adds a prepared initializer (quantized weights, scales).
    pub fn initializer(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.graph.initializers.push(t);
        name
    }

    pub fn unique(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Appends a node with one output named after `hint` (made unique), returning its name.
    pub fn push(&mut self, op: &str, inputs: &[&str], hint: &str, attrs: Vec<Attribute>) -> String {
        let out = self.unique(hint);
        self.push_named(op, inputs, &out, attrs);
        out
    }

    /// Appends a node whose single output has exactly the name `out`.
    pub fn push_named(&mut self, op: &str, inputs: &[&str], out: &str, mut attrs: Vec<Attribute>) {
        // Sorted by name, as `onnx.helper.make_node` writes them.
        attrs.sort_by(|a, b| a.name.cmp(&b.name));
        self.graph.nodes.push(Node {
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.to_string()],
            name: format!("{op}_{}", self.graph.nodes.len()),
            op_type: op.into(),
            attributes: attrs,
            domain: String::new(),
        });
    }

    /// Conv with weight `[C_out, C_in/groups, k, k]` and an optional bias.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: &Value,
        weight: &str,
        bias: Option<&str>,
        kernel: i64,
        c_out: i64,
        geo: ConvGeometry,
        hint: &str,
    ) -> Result<Value> {
        let (h, w) = x.hw();
        let [t, l, b, r] = geo.pads;
        let oh = (h + t + b - kernel) / geo.stride + 1;
        let ow = (w + l + r - kernel) / geo.stride + 1;
        if oh < 1 || ow < 1 {
            bail!("{hint}: a {h}×{w} input is too small for a {kernel}×{kernel} convolution");
        }
        let mut inputs = vec![x.name.as_str(), weight];
        inputs.extend(bias);
        let name = self.push(
            "Conv",
            &inputs,
            hint,
            vec![
                Attribute::ints("kernel_shape", &[kernel, kernel]),
                Attribute::ints("strides", &[geo.stride, geo.stride]),
                Attribute::ints("pads", &[t, l, b, r]),
                Attribute::int("group", geo.groups),
            ],
        );
        Ok(Value {
            name,
            shape: vec![c_out, oh, ow],
        })
    }

    pub fn activation(&mut self, x: Value, act: Activation) -> Value {
        match act {
            Activation::None => x,
            Activation::Relu => self.relu(&x),
            Activation::Relu6 => {
                let (lo, hi) = match &self.relu6_bounds {
                    Some(b) => b.clone(),
                    None => {
                        let lo = self.scalar("relu6_min", 0.0);
                        let hi = self.scalar("relu6_max", 6.0);
                        self.relu6_bounds = Some((lo.clone(), hi.clone()));
                        (lo, hi)
                    }
                };
                let name = self.push("Clip", &[&x.name, &lo, &hi], "relu6", vec![]);
                Value { name, ..x }
            }
        }
    }

    fn scalar(&mut self, hint: &str, v: f32) -> String {
        self.constant(hint, &[], &[v])
    }

    pub fn relu(&mut self, x: &Value) -> Value {
        let name = self.push("Relu", &[&x.name], "relu", vec![]);
        Value {
            name,
            shape: x.shape.clone(),
        }
    }

    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        let name = self.push("Add", &[&a.name, &b.name], "add", vec![]);
        Value {
            name,
            shape: a.shape.clone(),
        }
    }

    /// Inference-mode batch norm with the given per-channel parameters.
    pub fn batch_norm(&mut self, x: &Value, params: [&str; 4], eps: f64, hint: &str) -> Value {
        let [scale, bias, mean, var] = params;
        let name = self.push(
            "BatchNormalization",
            &[&x.name, scale, bias, mean, var],
            hint,
            vec![Attribute::float("epsilon", eps as f32)],
        );
        Value {
            name,
            shape: x.shape.clone(),
        }
    }

    /// Concatenation along channels.
    pub fn concat(&mut self, xs: &[Value], hint: &str) -> Value {
        let names: Vec<&str> = xs.iter().map(|v| v.name.as_str()).collect();
        let name = self.push("Concat", &names, hint, vec![Attribute::int("axis", 1)]);
        let mut shape = xs[0].shape.clone();
        shape[0] = xs.iter().map(|v| v.channels()).sum();
        Value { name, shape }
    }

    /// Max pool with symmetric padding; `ceil_mode` off, like PyTorch's default.
    pub fn max_pool(&mut self, x: &Value, kernel: i64, stride: i64, pad: i64) -> Value {
        let name = self.push(
            "MaxPool",
            &[&x.name],
            "maxpool",
            vec![
                Attribute::ints("kernel_shape", &[kernel, kernel]),
                Attribute::ints("strides", &[stride, stride]),
                Attribute::ints("pads", &[pad, pad, pad, pad]),
            ],
        );
        pooled(name, x, kernel, stride, pad)
    }

    /// Average pool without padding.
    pub fn avg_pool(&mut self, x: &Value, kernel: i64, stride: i64) -> Value {
        let name = self.push(
            "AveragePool",
            &[&x.name],
            "avgpool",
            vec![
                Attribute::ints("kernel_shape", &[kernel, kernel]),
                Attribute::ints("strides", &[stride, stride]),
            ],
        );
        pooled(name, x, kernel, stride, 0)
    }

    /// [N, C, H, W] → [N, C] by the spatial mean.
    pub fn global_average(&mut self, x: &Value, hint: &str) -> Value {
        let pooled = self.push("GlobalAveragePool", &[&x.name], hint, vec![]);
        let name = self.push(
            "Flatten",
            &[&pooled],
            &format!("{hint}_flat"),
            vec![Attribute::int("axis", 1)],
        );
        Value {
            name,
            shape: vec![x.channels()],
        }
    }

    /// `x · Wᵀ + b` with a PyTorch `Linear` weight `[out, in]`.
    pub fn linear(&mut self, x: &Value, weight: &str, bias: &str, out: i64, hint: &str) -> Value {
        let name = self.push(
            "Gemm",
            &[&x.name, weight, bias],
            hint,
            vec![Attribute::int("transB", 1)],
        );
        Value {
            name,
            shape: vec![out],
        }
    }

    /// Reshape to `[-1, shape...]`: the batch axis absorbs whatever the rest leaves.
    pub fn reshape(&mut self, x: &Value, shape: &[i64], hint: &str) -> Value {
        let mut full = vec![-1];
        full.extend_from_slice(shape);
        let target = self.constant_i64(&format!("{hint}_shape"), &full);
        let name = self.push("Reshape", &[&x.name, &target], hint, vec![]);
        Value {
            name,
            shape: shape.to_vec(),
        }
    }

    /// Transpose with a permutation that keeps the batch axis first.
    pub fn transpose(&mut self, x: &Value, perm: &[i64], hint: &str) -> Value {
        debug_assert_eq!(perm[0], 0);
        let name = self.push(
            "Transpose",
            &[&x.name],
            hint,
            vec![Attribute::ints("perm", perm)],
        );
        let shape = perm[1..].iter().map(|&p| x.shape[p as usize - 1]).collect();
        Value { name, shape }
    }

    pub fn softmax(&mut self, x: &Value, hint: &str) -> Value {
        let name = self.push(
            "Softmax",
            &[&x.name],
            hint,
            vec![Attribute::int("axis", -1)],
        );
        Value {
            name,
            shape: x.shape.clone(),
        }
    }

    pub fn finish(self, doc: &str, metadata: Vec<(String, String)>) -> Model {
        let mut graph = self.graph;
        graph.doc_string = doc.into();
        Model {
            ir_version: IR_VERSION,
            producer_name: "myoscope".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: String::new(),
            graph,
            opset: OPSET,
            metadata,
        }
    }

    /// Nodes so far (the quantizer rewrites them).
    pub fn graph_mut(&mut self) -> &mut Graph {
        &mut self.graph
    }
}

fn pooled(name: String, x: &Value, kernel: i64, stride: i64, pad: i64) -> Value {
    let (h, w) = x.hw();
    Value {
        name,
        shape: vec![
            x.channels(),
            (h + 2 * pad - kernel) / stride + 1,
            (w + 2 * pad - kernel) / stride + 1,
        ],
    }
}

fn value_info(name: &str, shape: &[i64]) -> ValueInfo {
    let mut dims = vec![Dim::Symbolic("batch".into())];
    dims.extend(shape.iter().map(|&d| Dim::Fixed(d)));
    ValueInfo {
        name: name.into(),
        elem_type: DataType::Float,
        shape: dims,
    }
}
