//! ResNet trunks (`resnet18/34/50`, `resnet50_keras`) as ONNX nodes, mirroring
//! [`crate::models::resnet::ResNet`]: stem conv/bn/ReLU, 3×3/2 max-pool, four stages of
//! residual blocks. Every batch norm follows its conv and folds into it.
//!
//! Blocks are found by their parameter names (`layer{i}.{j}.conv1.weight`), the block kind by
//! the presence of a `conv3`, a projection shortcut by `downsample.0.weight`; strides follow
//! the architecture: 2 for the first block of stages 2–4, on the 3×3 (torchvision v1.5) or on
//! the first 1×1 (Keras).
use super::graph::{Activation, GraphBuilder, Value};
use super::layers::{conv_bn, Padding, Weights};
use anyhow::{bail, Result};

pub fn trunk(g: &mut GraphBuilder, w: &Weights, arch: &str, x: &Value) -> Result<Value> {
    let (eps, keras) = match arch {
        "resnet18" | "resnet34" | "resnet50" | "resnet101" => (1e-5, false),
        "resnet50_keras" => (1e-3, true),
        other => bail!("'{other}' is not a ResNet"),
    };
    let sym = Padding::Symmetric;
    let stem = conv_bn(g, w, x, "conv1", "bn1", 2, sym, eps, Activation::Relu)?;
    let mut ys = g.max_pool(&stem, 3, 2, 1);
    for stage in 1..=4 {
        let mut j = 0;
        while w.has(&format!("layer{stage}.{j}.conv1.weight")) {
            let p = format!("layer{stage}.{j}");
            let stride = if stage > 1 && j == 0 { 2 } else { 1 };
            let bottleneck = w.has(&format!("{p}.conv3.weight"));
            let unit = |g: &mut GraphBuilder, x: &Value, i: usize, s: i64, act| {
                conv_bn(
                    g,
                    w,
                    x,
                    &format!("{p}.conv{i}"),
                    &format!("{p}.bn{i}"),
                    s,
                    sym,
                    eps,
                    act,
                )
            };
            let relu = Activation::Relu;
            let branch = if bottleneck {
                let (s1, s3) = if keras { (stride, 1) } else { (1, stride) };
                let a = unit(g, &ys, 1, s1, relu)?;
                let b = unit(g, &a, 2, s3, relu)?;
                unit(g, &b, 3, 1, Activation::None)?
            } else {
                let a = unit(g, &ys, 1, stride, relu)?;
                unit(g, &a, 2, 1, Activation::None)?
            };
            let shortcut = if w.has(&format!("{p}.downsample.0.weight")) {
                let ds = format!("{p}.downsample");
                conv_bn(
                    g,
                    w,
                    &ys,
                    &format!("{ds}.0"),
                    &format!("{ds}.1"),
                    stride,
                    sym,
                    eps,
                    Activation::None,
                )?
            } else {
                ys
            };
            let sum = g.add(&branch, &shortcut);
            ys = g.relu(&sum);
            j += 1;
        }
        if j == 0 {
            bail!("the weights have no layer{stage}: they are not a {arch}");
        }
    }
    Ok(ys)
}
