//! EfficientNet-Lite0 trunk with timm `tf_efficientnet_lite0` parameter names (`conv_stem`, `bn1`,
//! `blocks.{stage}.{block}.*`, `conv_head`, `bn2`), so those ImageNet weights (ported from the
//! TensorFlow release) load by name.
//!
//! "Lite" drops squeeze-excitation and swaps swish for ReLU6; the `tf_` variant keeps TensorFlow's
//! "SAME" padding and BN epsilon (1e-3), both of which the ported weights depend on.

use super::backbone::Backbone;
use super::conv_bn::{Act, ConvBn, ConvBnCfg};
use super::mobile_trunk::{MobileTrunk, ResidualChain};
use tch::{nn, Tensor};

/// timm's arch_def for Lite0: (expand ratio, kernel, first stride, output channels, repeats) per
/// stage; stage 0 (expand 1) is a depthwise-separable block, the rest inverted residuals.
const STAGES: [(i64, i64, i64, i64, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];
/// Lite models fix stem and head widths regardless of the channel multiplier.
const STEM_CHANNELS: i64 = 32;
const HEAD_CHANNELS: i64 = 1280;

fn tf(kernel: i64, act: Act) -> ConvBnCfg {
    ConvBnCfg::tf_same(kernel, act)
}

/// timm `DepthwiseSeparableConv` (`conv_dw`/`bn1`, `conv_pw`/`bn2`) or `InvertedResidual`
/// (`conv_pw`/`bn1`, `conv_dw`/`bn2`, `conv_pwl`/`bn3`); the last unit is linear either way.
fn mb_block(
    p: &nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    expand: i64,
) -> ResidualChain {
    let unit = |conv: &str, bn: &str, a: i64, b: i64, cfg: ConvBnCfg| {
        ConvBn::new(&(p / conv), &(p / bn), a, b, cfg)
    };
    let dw = |c: i64| tf(kernel, Act::Relu6).stride(stride).groups(c);
    let convs = if expand == 1 {
        vec![
            unit("conv_dw", "bn1", c_in, c_in, dw(c_in)),
            unit("conv_pw", "bn2", c_in, c_out, tf(1, Act::Identity)),
        ]
    } else {
        let mid = c_in * expand;
        vec![
            unit("conv_pw", "bn1", c_in, mid, tf(1, Act::Relu6)),
            unit("conv_dw", "bn2", mid, mid, dw(mid)),
            unit("conv_pwl", "bn3", mid, c_out, tf(1, Act::Identity)),
        ]
    };
    ResidualChain {
        convs,
        residual: stride == 1 && c_in == c_out,
    }
}

/// timm `tf_efficientnet_lite0` without its `classifier` linear.
#[derive(Debug)]
pub struct EfficientNetLite {
    trunk: MobileTrunk,
}

/// timm `tf_efficientnet_lite0` trunk, 1280 output channels.
pub fn efficientnet_lite0(p: &nn::Path, in_channels: i64) -> EfficientNetLite {
    let stem_cfg = tf(3, Act::Relu6).stride(2);
    let stem = ConvBn::new(
        &(p / "conv_stem"),
        &(p / "bn1"),
        in_channels,
        STEM_CHANNELS,
        stem_cfg,
    );
    let blocks = p / "blocks";
    let mut c_in = STEM_CHANNELS;
    let stages = STAGES
        .iter()
        .enumerate()
        .map(|(i, &(expand, kernel, first_stride, c_out, repeats))| {
            let sp = &blocks / i;
            (0..repeats)
                .map(|j| {
                    let stride = if j == 0 { first_stride } else { 1 };
                    let block = mb_block(&(&sp / j), c_in, c_out, kernel, stride, expand);
                    c_in = c_out;
                    block
                })
                .collect()
        })
        .collect();
    let head_cfg = tf(1, Act::Relu6);
    let head = ConvBn::new(
        &(p / "conv_head"),
        &(p / "bn2"),
        c_in,
        HEAD_CHANNELS,
        head_cfg,
    );
    EfficientNetLite {
        trunk: MobileTrunk { stem, stages, head },
    }
}

impl EfficientNetLite {
    /// Feature maps after the stem (stride 2) and after each of the seven block stages (strides 2,
    /// 4, 8, 16, 16, 32, 32), like timm's `features_only`. The 1×1 widening `conv_head` serves
    /// classification and is left to [`Backbone::features`].
    pub fn stages(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.trunk.stages(xs, train)
    }

    /// Channels of each map returned by [`EfficientNetLite::stages`].
    pub fn stage_channels(&self) -> Vec<i64> {
        std::iter::once(STEM_CHANNELS)
            .chain(STAGES.iter().map(|s| s.3))
            .collect()
    }
}

impl Backbone for EfficientNetLite {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk.features(xs, train)
    }

    fn out_channels(&self) -> i64 {
        HEAD_CHANNELS
    }

    fn head_name(&self) -> &'static str {
        "classifier"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn build(in_channels: i64) -> (nn::VarStore, EfficientNetLite) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = efficientnet_lite0(&vs.root(), in_channels);
        (vs, net)
    }

    fn shape_of(vs: &nn::VarStore, name: &str) -> Vec<i64> {
        vs.variables()
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .size()
    }

    #[test]
    fn parameter_count_matches_timm() {
        let (vs, net) = build(3);
        let _fc = nn::linear(
            vs.root() / net.head_name(),
            net.out_channels(),
            1000,
            Default::default(),
        );
        let n: usize = vs.trainable_variables().iter().map(Tensor::numel).sum();
        assert_eq!(n, 4_652_008);
    }

    #[test]
    fn names_and_shapes_match_timm() {
        let (vs, _) = build(3);
        assert_eq!(shape_of(&vs, "conv_stem.weight"), [32, 3, 3, 3]);
        assert_eq!(shape_of(&vs, "bn1.running_var"), [32]);
        assert_eq!(shape_of(&vs, "blocks.0.0.conv_dw.weight"), [32, 1, 3, 3]);
        assert_eq!(shape_of(&vs, "blocks.0.0.bn1.weight"), [32]);
        assert_eq!(shape_of(&vs, "blocks.0.0.conv_pw.weight"), [16, 32, 1, 1]);
        assert_eq!(shape_of(&vs, "blocks.0.0.bn2.bias"), [16]);
        assert_eq!(shape_of(&vs, "blocks.1.0.conv_pw.weight"), [96, 16, 1, 1]);
        assert_eq!(shape_of(&vs, "blocks.1.0.conv_dw.weight"), [96, 1, 3, 3]);
        assert_eq!(shape_of(&vs, "blocks.2.1.conv_dw.weight"), [240, 1, 5, 5]);
        assert_eq!(
            shape_of(&vs, "blocks.5.3.conv_pwl.weight"),
            [192, 1152, 1, 1]
        );
        assert_eq!(
            shape_of(&vs, "blocks.6.0.conv_pwl.weight"),
            [320, 1152, 1, 1]
        );
        assert_eq!(shape_of(&vs, "blocks.6.0.bn3.running_mean"), [320]);
        assert_eq!(shape_of(&vs, "conv_head.weight"), [1280, 320, 1, 1]);
        assert_eq!(shape_of(&vs, "bn2.weight"), [1280]);
        assert!(!vs.variables().contains_key("blocks.5.4.conv_pw.weight"));
        assert!(!vs.variables().contains_key("blocks.0.0.conv_pwl.weight"));
        // 1 stem + 2 + 15 × 3 + 1 head convs, no conv biases.
        let vars = vs.variables();
        assert_eq!(vars.values().filter(|t| t.dim() == 4).count(), 49);
        assert_eq!(vars.keys().filter(|k| k.ends_with(".bias")).count(), 49);

        let (vs, _) = build(1);
        assert_eq!(shape_of(&vs, "conv_stem.weight"), [32, 1, 3, 3]);
    }

    #[test]
    fn feature_shapes() {
        let (_vs, net) = build(3);
        assert_eq!(net.out_channels(), 1280);
        for (hw, out) in [(224, 7), (160, 5)] {
            let xs = Tensor::randn([1, 3, hw, hw], (Kind::Float, Device::Cpu));
            let ys = tch::no_grad(|| net.features(&xs, false));
            assert_eq!(ys.size(), [1, 1280, out, out]);
        }
    }

    #[test]
    fn stages_follow_tf_same_sizes() {
        let (_vs, net) = build(1);
        // Odd sizes: every stride-2 conv gives ceil(in / 2), as TensorFlow does.
        let xs = Tensor::randn([2, 1, 75, 100], (Kind::Float, Device::Cpu));
        let stages = tch::no_grad(|| net.stages(&xs, false));
        let expected_hw = [
            (38, 50),
            (38, 50),
            (19, 25),
            (10, 13),
            (5, 7),
            (5, 7),
            (3, 4),
            (3, 4),
        ];
        assert_eq!(stages.len(), expected_hw.len());
        for ((ys, (h, w)), c) in stages.iter().zip(expected_hw).zip(net.stage_channels()) {
            assert_eq!(ys.size(), [2, c, h, w]);
        }
    }

    #[test]
    fn trains_with_batch_statistics() {
        let (vs, net) = build(3);
        let xs = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        net.features(&xs, true).mean(Kind::Float).backward();
        let grad = vs.variables()["conv_stem.weight"].grad();
        assert!(grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
