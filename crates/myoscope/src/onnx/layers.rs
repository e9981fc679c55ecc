//! The units the trunks are made of, as ONNX nodes: conv + eval-mode batch norm folded into
//! one biased Conv, a standalone batch norm (DenseNet's pre-activation norms, which follow a
//! concatenation and cannot fold), and the weight look-up by the trunk's parameter names.
use super::graph::{Activation, ConvGeometry, GraphBuilder, Value};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// The model's parameters by their state-dict names.
pub struct Weights<'a> {
    vars: &'a HashMap<String, Tensor>,
}

impl<'a> Weights<'a> {
    pub fn new(vars: &'a HashMap<String, Tensor>) -> Self {
        Self { vars }
    }

    pub fn has(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// The parameter in double precision on the CPU (folding happens in f64).
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let t = self.vars.get(name).with_context(|| {
            format!(
                "the model has no parameter '{name}'; its weights do not match its architecture"
            )
        })?;
        Ok(t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Double))
    }

    pub fn shape(&self, name: &str) -> Result<Vec<i64>> {
        Ok(self.get(name)?.size())
    }
}

/// A tensor's values as f32, in row-major order.
pub fn floats(t: &Tensor) -> Result<Vec<f32>> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().flatten(0, -1))
        .context("reading a weight tensor")
}

/// How a convolution pads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// PyTorch: `(k - 1) / 2` on every side.
    Symmetric,
    /// TensorFlow "SAME" (the timm `tf_*` ports): output `ceil(in / stride)`, the odd pixel of
    /// padding at the bottom/right. Known at export since the patch size is fixed.
    TfSame,
}

fn pads(padding: Padding, kernel: i64, stride: i64, (h, w): (i64, i64)) -> [i64; 4] {
    match padding {
        Padding::TfSame if stride > 1 => {
            let (top, bottom) = crate::models::conv_bn::tf_same_pad(h, kernel, stride);
            let (left, right) = crate::models::conv_bn::tf_same_pad(w, kernel, stride);
            [top, left, bottom, right]
        }
        _ => {
            let p = (kernel - 1) / 2;
            [p, p, p, p]
        }
    }
}

/// Eval-mode batch norm as a per-channel affine map `y = x·scale + shift`, in f64.
pub struct BatchNorm {
    pub scale: Tensor,
    pub shift: Tensor,
}

impl BatchNorm {
    /// Reads `{p}.weight`, `{p}.bias`, `{p}.running_mean`, `{p}.running_var`.
    pub fn read(w: &Weights, p: &str, eps: f64) -> Result<Self> {
        let gamma = w.get(&format!("{p}.weight"))?;
        let beta = w.get(&format!("{p}.bias"))?;
        let mean = w.get(&format!("{p}.running_mean"))?;
        let var = w.get(&format!("{p}.running_var"))?;
        let scale = gamma / (var + eps).sqrt();
        let shift = beta - &mean * &scale;
        Ok(Self { scale, shift })
    }
}

/// Conv (weight `{conv}.weight`, no bias) → batch norm `{bn}` → activation, the batch norm
/// folded into the conv's weight and bias: `W' = W·s`, `b' = β − μ·s`, `s = γ/√(σ²+ε)`.
#[allow(clippy::too_many_arguments)]
pub fn conv_bn(
    g: &mut GraphBuilder,
    w: &Weights,
    x: &Value,
    conv: &str,
    bn: &str,
    stride: i64,
    padding: Padding,
    eps: f64,
    act: Activation,
) -> Result<Value> {
    let weight = w.get(&format!("{conv}.weight"))?;
    let norm = BatchNorm::read(w, bn, eps)?;
    let shape = weight.size();
    let (c_out, c_in_per_group, kernel) = (shape[0], shape[1], shape[2]);
    if x.channels() % c_in_per_group != 0 {
        bail!(
            "{conv}: weight expects {c_in_per_group} input channels per group, the input has {}",
            x.channels()
        );
    }
    let groups = x.channels() / c_in_per_group;
    let folded = &weight * norm.scale.view([c_out, 1, 1, 1]);
    let wname = g.constant(&format!("{conv}.weight"), &shape, &floats(&folded)?);
    let bname = g.constant(&format!("{conv}.bias"), &[c_out], &floats(&norm.shift)?);
    let geo = ConvGeometry {
        stride,
        pads: pads(padding, kernel, stride, x.hw()),
        groups,
    };
    let y = g.conv(x, &wname, Some(&bname), kernel, c_out, geo, conv)?;
    Ok(g.activation(y, act))
}

/// A plain bias-free conv with symmetric padding (DenseNet's, whose norm comes before it).
pub fn conv(
    g: &mut GraphBuilder,
    w: &Weights,
    x: &Value,
    conv: &str,
    stride: i64,
    pad: i64,
) -> Result<Value> {
    let weight = w.get(&format!("{conv}.weight"))?;
    let shape = weight.size();
    let wname = g.constant(&format!("{conv}.weight"), &shape, &floats(&weight)?);
    let geo = ConvGeometry {
        stride,
        pads: [pad; 4],
        groups: 1,
    };
    g.conv(x, &wname, None, shape[2], shape[0], geo, conv)
}

/// A conv followed by a batch norm with nothing between them (DenseNet's `conv1` → `norm2`):
/// the norm folds into the conv, which gains a bias.
pub fn conv_then_bn(
    g: &mut GraphBuilder,
    w: &Weights,
    x: &Value,
    conv: &str,
    bn: &str,
    eps: f64,
    act: Activation,
) -> Result<Value> {
    conv_bn(g, w, x, conv, bn, 1, Padding::Symmetric, eps, act)
}

/// A batch norm on its own, as ONNX `BatchNormalization` (inference mode).
pub fn batch_norm(
    g: &mut GraphBuilder,
    w: &Weights,
    x: &Value,
    p: &str,
    eps: f64,
) -> Result<Value> {
    let mut names = Vec::with_capacity(4);
    for part in ["weight", "bias", "running_mean", "running_var"] {
        let key = format!("{p}.{part}");
        let t = w.get(&key)?;
        names.push(g.constant(&key, &t.size(), &floats(&t)?));
    }
    Ok(g.batch_norm(x, [&names[0], &names[1], &names[2], &names[3]], eps, p))
}

/// The source weights of a linear layer `{p}.weight` `[out, in]`, `{p}.bias` `[out]`.
pub fn linear_params(g: &mut GraphBuilder, w: &Weights, p: &str) -> Result<(String, String, i64)> {
    let weight = w.get(&format!("{p}.weight"))?;
    let bias = w.get(&format!("{p}.bias"))?;
    let shape = weight.size();
    let wn = g.constant(&format!("{p}.weight"), &shape, &floats(&weight)?);
    let bn = g.constant(&format!("{p}.bias"), &[shape[0]], &floats(&bias)?);
    Ok((wn, bn, shape[0]))
}
