//! MobileNetV2 and EfficientNet-Lite trunks as ONNX nodes, mirroring
//! [`crate::models::mobile_trunk::MobileTrunk`]: a conv stem, stages of inverted-residual
//! blocks (identity skip where stride is 1 and channels match), a 1×1 widening head. Every
//! batch norm follows its conv and folds into it; depthwise convs keep their groups.
//!
//! Strides per stage come from the model definitions' own tables; kernels, groups and whether
//! a block expands come from the weights' names and shapes.
use super::graph::{Activation, GraphBuilder, Value};
use super::layers::{conv_bn, Padding, Weights};
use crate::models::{efficientnet_lite, mobilenet_v2};
use anyhow::{bail, Result};

const RELU6: Activation = Activation::Relu6;
const LINEAR: Activation = Activation::None;

fn residual(g: &mut GraphBuilder, x: &Value, y: Value, stride: i64) -> Value {
    if stride == 1 && x.channels() == y.channels() {
        g.add(&y, x)
    } else {
        y
    }
}

/// torchvision `mobilenet_v2` (`features.0` … `features.18`).
pub fn mobilenet_v2(g: &mut GraphBuilder, w: &Weights, x: &Value) -> Result<Value> {
    let sym = Padding::Symmetric;
    let eps = 1e-5;
    let unit = |g: &mut GraphBuilder, x: &Value, c: &str, b: &str, s: i64, act| {
        conv_bn(g, w, x, c, b, s, sym, eps, act)
    };
    let mut ys = unit(g, x, "features.0.0", "features.0.1", 2, RELU6)?;
    let mut index = 1;
    for &(_, _, repeats, first_stride) in mobilenet_v2::SETTINGS.iter() {
        for j in 0..repeats {
            let stride = if j == 0 { first_stride } else { 1 };
            let p = format!("features.{index}.conv");
            let expands = w.has(&format!("{p}.3.weight"));
            let mut h = ys.clone();
            let mut i = 0;
            if expands {
                h = unit(g, &h, &format!("{p}.0.0"), &format!("{p}.0.1"), 1, RELU6)?;
                i = 1;
            }
            h = unit(
                g,
                &h,
                &format!("{p}.{i}.0"),
                &format!("{p}.{i}.1"),
                stride,
                RELU6,
            )?;
            let proj = format!("{p}.{}", i + 1);
            let bn = format!("{p}.{}", i + 2);
            h = unit(g, &h, &proj, &bn, 1, LINEAR)?;
            ys = residual(g, &ys, h, stride);
            index += 1;
        }
    }
    let head = format!("features.{index}");
    unit(g, &ys, &format!("{head}.0"), &format!("{head}.1"), 1, RELU6)
}

/// timm `tf_efficientnet_lite0/1/2` (`conv_stem`, `blocks.{stage}.{block}`, `conv_head`),
/// with TensorFlow "SAME" padding and BN epsilon 1e-3.
pub fn efficientnet_lite(g: &mut GraphBuilder, w: &Weights, x: &Value) -> Result<Value> {
    let same = Padding::TfSame;
    let eps = 1e-3;
    let unit = |g: &mut GraphBuilder, x: &Value, c: &str, b: &str, s: i64, act| {
        conv_bn(g, w, x, c, b, s, same, eps, act)
    };
    let mut ys = unit(g, x, "conv_stem", "bn1", 2, RELU6)?;
    for (stage, &(_, _, first_stride, _, _)) in efficientnet_lite::STAGES.iter().enumerate() {
        let mut j = 0;
        while w.has(&format!("blocks.{stage}.{j}.conv_dw.weight")) {
            let p = format!("blocks.{stage}.{j}");
            let stride = if j == 0 { first_stride } else { 1 };
            let c = |n: &str| format!("{p}.{n}");
            let h = if w.has(&c("conv_pwl.weight")) {
                let h = unit(g, &ys, &c("conv_pw"), &c("bn1"), 1, RELU6)?;
                let h = unit(g, &h, &c("conv_dw"), &c("bn2"), stride, RELU6)?;
                unit(g, &h, &c("conv_pwl"), &c("bn3"), 1, LINEAR)?
            } else {
                let h = unit(g, &ys, &c("conv_dw"), &c("bn1"), stride, RELU6)?;
                unit(g, &h, &c("conv_pw"), &c("bn2"), 1, LINEAR)?
            };
            ys = residual(g, &ys, h, stride);
            j += 1;
        }
        if j == 0 {
            bail!("the weights have no blocks.{stage}: they are not an EfficientNet-Lite");
        }
    }
    unit(g, &ys, "conv_head", "bn2", 1, RELU6)
}
