//! EfficientNet-B0…B7 encoders (Tan & Le 2019) with the parameter names of smp's
//! `timm-efficientnet-b*` encoders (timm's `EfficientNet`: `conv_stem`, `bn1`,
//! `blocks.{stage}.{block}.{conv_pw,bn1,conv_dw,bn2,se.conv_reduce,se.conv_expand,conv_pwl,bn3}`,
//! `conv_head`, `bn2`), so smp-trained checkpoints load by name.
//!
//! Unlike the Lite trunks in `models::efficientnet_lite` these keep squeeze-excitation and swish,
//! use PyTorch's symmetric padding and BN epsilon 1e-5, and drop residual branches at random while
//! training (stochastic depth, rate rising linearly to 0.2 over the blocks), as smp configures them.

use crate::models::conv_bn::{Act, ConvBn, ConvBnCfg, ConvInit, Padding};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// The B0 arch_def: (expand ratio, kernel, first stride, output channels, repeats) per stage;
/// stage 0 (expand 1) is a depthwise-separable block, the rest inverted residuals. Every block has
/// squeeze-excitation with a quarter of the block's input channels.
const STAGES: [(i64, i64, i64, i64, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];
const STEM_CHANNELS: i64 = 32;
const HEAD_CHANNELS: i64 = 1280;
const SE_RATIO: f64 = 0.25;
const DROP_PATH_RATE: f64 = 0.2;
/// Blocks run before each skip feature after the stem: smp takes features at strides 4, 8, 16
/// and 32 after stages 1, 2, 4 and 6.
const FEATURE_STAGES: [std::ops::Range<usize>; 4] = [0..2, 2..3, 3..5, 5..7];

/// Width and depth multipliers of one EfficientNet variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EfficientNetVariant {
    pub width: f64,
    pub depth: f64,
}

/// B0…B7 in order, as in the EfficientNet paper (and timm/smp).
pub const VARIANTS: [EfficientNetVariant; 8] = [
    EfficientNetVariant {
        width: 1.0,
        depth: 1.0,
    },
    EfficientNetVariant {
        width: 1.0,
        depth: 1.1,
    },
    EfficientNetVariant {
        width: 1.1,
        depth: 1.2,
    },
    EfficientNetVariant {
        width: 1.2,
        depth: 1.4,
    },
    EfficientNetVariant {
        width: 1.4,
        depth: 1.8,
    },
    EfficientNetVariant {
        width: 1.6,
        depth: 2.2,
    },
    EfficientNetVariant {
        width: 1.8,
        depth: 2.6,
    },
    EfficientNetVariant {
        width: 2.0,
        depth: 3.1,
    },
];

impl EfficientNetVariant {
    /// Channels scaled by the width multiplier, rounded to a multiple of 8 but never more than
    /// 10% below the exact value (timm's `round_channels`).
    fn channels(self, c: i64) -> i64 {
        let exact = c as f64 * self.width;
        let mut rounded = (((exact + 4.0) as i64) / 8 * 8).max(8);
        if (rounded as f64) < 0.9 * exact {
            rounded += 8;
        }
        rounded
    }

    /// Repeats scaled by the depth multiplier, rounded up.
    fn repeats(self, r: usize) -> usize {
        (r as f64 * self.depth).ceil() as usize
    }
}

fn cfg(kernel: i64, stride: i64, groups: i64) -> ConvBnCfg {
    ConvBnCfg {
        kernel,
        stride,
        groups,
        act: Act::Identity,
        padding: Padding::Symmetric,
        init: ConvInit::GoogFanOut,
        bn_eps: 1e-5,
    }
}

/// 1×1 conv with bias, timm's Google-style init (normal, std √(2 / fan-out), zero bias).
fn se_conv(p: &nn::Path, c_in: i64, c_out: i64) -> nn::Conv2D {
    let conv_cfg = nn::ConvConfig {
        ws_init: Init::Randn {
            mean: 0.0,
            stdev: (2.0 / c_out as f64).sqrt(),
        },
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, 1, conv_cfg)
}

/// Squeeze-excitation: a channel gate from the spatially averaged maps.
#[derive(Debug)]
struct SqueezeExcite {
    reduce: nn::Conv2D,
    expand: nn::Conv2D,
}

impl SqueezeExcite {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let gate = xs
            .mean_dim([2i64, 3].as_slice(), true, Kind::Float)
            .apply(&self.reduce)
            .silu()
            .apply(&self.expand)
            .sigmoid();
        xs * gate
    }
}

/// timm `DepthwiseSeparableConv` (expand 1) or `InvertedResidual`: swish units, SE, a linear
/// projection, and an identity skip (with stochastic depth) where shape allows.
#[derive(Debug)]
struct MbBlock {
    /// conv_dw/bn1 for depthwise-separable; conv_pw/bn1, conv_dw/bn2 for inverted residual.
    swish_units: Vec<ConvBn>,
    se: SqueezeExcite,
    project: ConvBn,
    residual: bool,
    drop_path: f64,
}

impl MbBlock {
    #[allow(clippy::too_many_arguments)]
    fn new(
        p: &nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        expand: i64,
        drop_path: f64,
    ) -> Self {
        let unit = |conv: &str, bn: &str, a: i64, b: i64, cfg: ConvBnCfg| {
            ConvBn::new(&(p / conv), &(p / bn), a, b, cfg)
        };
        let mid = c_in * expand;
        let (swish_units, project) = if expand == 1 {
            (
                vec![unit(
                    "conv_dw",
                    "bn1",
                    c_in,
                    c_in,
                    cfg(kernel, stride, c_in),
                )],
                unit("conv_pw", "bn2", c_in, c_out, cfg(1, 1, 1)),
            )
        } else {
            (
                vec![
                    unit("conv_pw", "bn1", c_in, mid, cfg(1, 1, 1)),
                    unit("conv_dw", "bn2", mid, mid, cfg(kernel, stride, mid)),
                ],
                unit("conv_pwl", "bn3", mid, c_out, cfg(1, 1, 1)),
            )
        };
        // timm sizes the SE bottleneck from the block input: mid × (ratio / expand), rounded.
        let reduced = (mid as f64 * (SE_RATIO / expand as f64)).round_ties_even() as i64;
        let se = SqueezeExcite {
            reduce: se_conv(&(p / "se" / "conv_reduce"), mid, reduced),
            expand: se_conv(&(p / "se" / "conv_expand"), reduced, mid),
        };
        MbBlock {
            swish_units,
            se,
            project,
            residual: stride == 1 && c_in == c_out,
            drop_path,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for unit in &self.swish_units {
            ys = unit.forward_t(&ys, train).silu();
        }
        ys = self.project.forward_t(&self.se.forward(&ys), train);
        if !self.residual {
            return ys;
        }
        if train && self.drop_path > 0.0 {
            // Stochastic depth: drop the whole branch per sample, rescale the survivors.
            let keep = 1.0 - self.drop_path;
            let n = ys.size()[0];
            let mask = Tensor::rand([n, 1, 1, 1], (ys.kind(), ys.device()))
                .lt(keep)
                .to_kind(ys.kind());
            ys = ys * mask / keep;
        }
        ys + xs
    }
}

/// smp's `timm-efficientnet-b*` encoder: stem, seven stages, and the unused 1×1 `conv_head`
/// (kept so checkpoints load strictly by name).
#[derive(Debug)]
pub struct EfficientNetEncoder {
    stem: ConvBn,
    stages: Vec<Vec<MbBlock>>,
    /// Channels after the stem and after each stage.
    stage_channels: Vec<i64>,
    /// The 1×1 `conv_head`/`bn2` the classifier (`models::efficientnet`) runs and the encoder
    /// does not.
    head: ConvBn,
}

impl EfficientNetEncoder {
    pub fn new(p: &nn::Path, in_channels: i64, variant: EfficientNetVariant) -> Self {
        let stem_channels = variant.channels(STEM_CHANNELS);
        let stem = ConvBn::new(
            &(p / "conv_stem"),
            &(p / "bn1"),
            in_channels,
            stem_channels,
            cfg(3, 2, 1),
        );
        let total: usize = STAGES.iter().map(|s| variant.repeats(s.4)).sum();
        let mut index = 0;
        let mut c_in = stem_channels;
        let mut stage_channels = vec![stem_channels];
        let blocks = p / "blocks";
        let stages = STAGES
            .iter()
            .enumerate()
            .map(|(i, &(expand, kernel, first_stride, c_out, repeats))| {
                let c_out = variant.channels(c_out);
                stage_channels.push(c_out);
                (0..variant.repeats(repeats))
                    .map(|j| {
                        let stride = if j == 0 { first_stride } else { 1 };
                        let rate = DROP_PATH_RATE * index as f64 / total as f64;
                        let bp = &blocks / i / j;
                        let block = MbBlock::new(&bp, c_in, c_out, kernel, stride, expand, rate);
                        index += 1;
                        c_in = c_out;
                        block
                    })
                    .collect()
            })
            .collect();
        let head = ConvBn::new(
            &(p / "conv_head"),
            &(p / "bn2"),
            c_in,
            variant.channels(HEAD_CHANNELS),
            cfg(1, 1, 1),
        );
        EfficientNetEncoder {
            stem,
            stages,
            stage_channels,
            head,
        }
    }

    /// The whole classification trunk: maps after the stem, after each of the seven stages and
    /// after `conv_head`/`bn2`/swish (the last is what timm's classifier pools).
    pub fn classifier_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let mut ys = self.stem.forward_t(xs, train).silu();
        let mut out = vec![ys.shallow_clone()];
        for stage in &self.stages {
            for block in stage {
                ys = block.forward_t(&ys, train);
            }
            out.push(ys.shallow_clone());
        }
        out.push(self.head.forward_t(&ys, train).silu());
        out
    }

    /// Channels of `conv_head`, the classifier's features.
    pub fn head_channels(&self) -> i64 {
        self.head.out_channels()
    }

    /// Channels of the skip features at strides 2, 4, 8, 16, 32.
    pub fn feature_channels(&self) -> [i64; 5] {
        let c = &self.stage_channels;
        [c[0], c[2], c[3], c[5], c[7]]
    }

    /// The first `depth` (1–5) skip features, strides 2 … 2^depth; deeper stages are not run.
    pub fn features(&self, xs: &Tensor, depth: usize, train: bool) -> Vec<Tensor> {
        let mut ys = self.stem.forward_t(xs, train).silu();
        let mut out = vec![ys.shallow_clone()];
        for range in FEATURE_STAGES.iter().take(depth.saturating_sub(1)) {
            for block in self.stages[range.clone()].iter().flatten() {
                ys = block.forward_t(&ys, train);
            }
            out.push(ys.shallow_clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Variant, blocks per stage, stem width, head width, SE width of each stage's first block.
    type Scaling = (usize, [usize; 7], i64, i64, [i64; 7]);

    /// As smp 0.6.0 builds `timm-efficientnet-b{0,3,7}` (printed from the model).
    #[test]
    fn variants_scale_like_timm() {
        let cases: [Scaling; 3] = [
            (
                0,
                [1, 2, 2, 3, 3, 4, 1],
                32,
                1280,
                [8, 4, 6, 10, 20, 28, 48],
            ),
            (
                3,
                [2, 3, 3, 5, 5, 6, 2],
                40,
                1536,
                [10, 6, 8, 12, 24, 34, 58],
            ),
            (
                7,
                [4, 7, 7, 10, 10, 13, 4],
                64,
                2560,
                [16, 8, 12, 20, 40, 56, 96],
            ),
        ];
        for (b, repeats, stem, head, se) in cases {
            let vs = nn::VarStore::new(Device::Cpu);
            let enc = EfficientNetEncoder::new(&vs.root(), 3, VARIANTS[b]);
            let lens: Vec<usize> = enc.stages.iter().map(Vec::len).collect();
            assert_eq!(lens, repeats, "b{b}");
            let vars = vs.variables();
            assert_eq!(vars["conv_stem.weight"].size()[0], stem, "b{b}");
            assert_eq!(vars["conv_head.weight"].size()[0], head, "b{b}");
            for (s, &c) in se.iter().enumerate() {
                let name = format!("blocks.{s}.0.se.conv_reduce.weight");
                assert_eq!(vars[&name].size()[0], c, "b{b} {name}");
            }
        }
    }

    #[test]
    fn features_follow_smp_strides_and_channels() {
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = EfficientNetEncoder::new(&vs.root(), 1, VARIANTS[2]);
        assert_eq!(enc.feature_channels(), [32, 24, 48, 120, 352]);
        let xs = Tensor::randn([2, 1, 64, 96], (Kind::Float, Device::Cpu));
        let feats = tch::no_grad(|| enc.features(&xs, 5, false));
        for (k, (f, c)) in feats.iter().zip(enc.feature_channels()).enumerate() {
            let s = 2i64 << k;
            assert_eq!(f.size(), [2, c, 64 / s, 96 / s]);
        }
        assert_eq!(tch::no_grad(|| enc.features(&xs, 3, false)).len(), 3);
    }

    #[test]
    fn stochastic_depth_drops_whole_branches_only_while_training() {
        let vs = nn::VarStore::new(Device::Cpu);
        let block = MbBlock::new(&vs.root(), 16, 16, 3, 1, 6, 0.5);
        let xs = Tensor::randn([64, 16, 8, 8], (Kind::Float, Device::Cpu));
        let ys = block.forward_t(&xs, true);
        // Per sample the branch is either dropped (output = input) or kept.
        let dropped = (0..64).filter(|&i| ys.get(i).equal(&xs.get(i))).count();
        assert!(
            (8..=56).contains(&dropped),
            "{dropped} of 64 dropped at rate 0.5"
        );
        let eval = tch::no_grad(|| block.forward_t(&xs, false));
        let changed = (0..64).filter(|&i| !eval.get(i).equal(&xs.get(i))).count();
        assert_eq!(changed, 64);

        let enc = EfficientNetEncoder::new(&(vs.root() / "enc"), 3, VARIANTS[0]);
        let last = enc.stages[5].last().unwrap();
        assert!(last.residual && (last.drop_path - 0.2 * 14.0 / 16.0).abs() < 1e-12);
        assert_eq!(enc.stages[0][0].drop_path, 0.0);
    }
}
