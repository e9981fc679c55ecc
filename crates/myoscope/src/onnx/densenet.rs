//! DenseNet trunks (`densenet121`, `densenet-tiny`) as ONNX nodes, mirroring
//! [`crate::models::densenet::DenseNet`]'s forward pass: stem, dense blocks (each layer sees
//! the concatenation of all earlier maps), transitions, `norm5` + ReLU.
//!
//! BN → ReLU → conv is pre-activation, so `norm1` (on a concatenation) and the transitions'
//! norms stay `BatchNormalization` nodes; `norm0` and each layer's `norm2` directly follow a
//! conv and fold into it.
use super::graph::{Activation, GraphBuilder, Value};
use super::layers::{batch_norm, conv, conv_bn, conv_then_bn, Padding, Weights};
use crate::models::densenet::DenseNetConfig;
use anyhow::{bail, Result};

const EPS: f64 = 1e-5;

pub fn config(arch: &str) -> Result<DenseNetConfig> {
    Ok(match arch {
        "densenet121" => DenseNetConfig::densenet121(),
        "densenet-tiny" => DenseNetConfig::tiny(),
        other => bail!("'{other}' is not a DenseNet"),
    })
}

pub fn trunk(g: &mut GraphBuilder, w: &Weights, arch: &str, x: &Value) -> Result<Value> {
    let cfg = config(arch)?;
    // The stem conv pads (k - 1) / 2 (3 for the 7×7, 1 for the 3×3), as the model does.
    let stride = if cfg.imagenet_stem {
        2
    } else {
        cfg.small_stem_stride
    };
    let mut ys = conv_bn(
        g,
        w,
        x,
        "features.conv0",
        "features.norm0",
        stride,
        Padding::Symmetric,
        EPS,
        Activation::Relu,
    )?;
    if cfg.imagenet_stem {
        ys = g.max_pool(&ys, 3, 2, 1);
    }
    let blocks = cfg.block_config.len();
    for (i, &layers) in cfg.block_config.iter().enumerate() {
        let mut feats = vec![ys];
        for j in 0..layers {
            let p = format!("features.denseblock{}.denselayer{}", i + 1, j + 1);
            let input = if feats.len() == 1 {
                feats[0].clone()
            } else {
                g.concat(&feats, &format!("{p}.input"))
            };
            let a = batch_norm(g, w, &input, &format!("{p}.norm1"), EPS)?;
            let a = g.relu(&a);
            let b = conv_then_bn(
                g,
                w,
                &a,
                &format!("{p}.conv1"),
                &format!("{p}.norm2"),
                EPS,
                Activation::Relu,
            )?;
            feats.push(conv(g, w, &b, &format!("{p}.conv2"), 1, 1)?);
        }
        ys = g.concat(&feats, &format!("features.denseblock{}", i + 1));
        if i + 1 < blocks {
            let p = format!("features.transition{}", i + 1);
            let t = batch_norm(g, w, &ys, &format!("{p}.norm"), EPS)?;
            let t = g.relu(&t);
            let t = conv(g, w, &t, &format!("{p}.conv"), 1, 0)?;
            ys = g.avg_pool(&t, 2, 2);
        }
    }
    let out = batch_norm(g, w, &ys, "features.norm5", EPS)?;
    Ok(g.relu(&out))
}
