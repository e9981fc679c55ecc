//! MobileNetV2 (width 1.0) trunk with torchvision's parameter names (`features.0.0`,
//! `features.i.conv.*`, `features.18.*`), so torchvision ImageNet state dicts load by name.

use super::backbone::Backbone;
use super::conv_bn::{Act, ConvBn, ConvBnCfg};
use super::mobile_trunk::{MobileTrunk, ResidualChain};
use tch::{nn, Tensor};

/// torchvision's `inverted_residual_setting`: (expand ratio t, output channels c, repeats n,
/// first stride s) per stage.
pub(crate) const SETTINGS: [(i64, i64, usize, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
const STEM_CHANNELS: i64 = 32;
const LAST_CHANNELS: i64 = 1280;

/// torchvision `InvertedResidual`: optional 1×1 expansion, 3×3 depthwise, linear 1×1 projection.
fn inverted_residual(
    p: &nn::Path,
    c_in: i64,
    c_out: i64,
    stride: i64,
    expand: i64,
) -> ResidualChain {
    let tv = ConvBnCfg::torchvision;
    let p = p / "conv";
    let hidden = c_in * expand;
    let mut convs = Vec::with_capacity(3);
    // Without expansion torchvision drops the 1×1 expand unit, shifting later indices down by
    // one: the depthwise unit is `conv.0` and the projection `conv.1`/`conv.2`.
    if expand != 1 {
        convs.push(ConvBn::seq(&(&p / 0), c_in, hidden, tv(1, Act::Relu6)));
    }
    let i = convs.len();
    let dw = tv(3, Act::Relu6).stride(stride).groups(hidden);
    convs.push(ConvBn::seq(&(&p / i), hidden, hidden, dw));
    // The projection is a bare conv + BN pair directly in the block's Sequential.
    let proj = tv(1, Act::Identity);
    convs.push(ConvBn::new(
        &(&p / (i + 1)),
        &(&p / (i + 2)),
        hidden,
        c_out,
        proj,
    ));
    ResidualChain {
        convs,
        residual: stride == 1 && c_in == c_out,
    }
}

/// torchvision `mobilenet_v2` without its `classifier` (dropout + `classifier.1` linear).
#[derive(Debug)]
pub struct MobileNetV2 {
    trunk: MobileTrunk,
}

/// torchvision `mobilenet_v2` trunk, 1280 output channels.
pub fn mobilenet_v2(p: &nn::Path, in_channels: i64) -> MobileNetV2 {
    let features = p / "features";
    let tv = ConvBnCfg::torchvision;
    let stem = ConvBn::seq(
        &(&features / 0),
        in_channels,
        STEM_CHANNELS,
        tv(3, Act::Relu6).stride(2),
    );
    let mut index = 1;
    let mut c_in = STEM_CHANNELS;
    let stages = SETTINGS
        .iter()
        .map(|&(expand, c_out, repeats, first_stride)| {
            (0..repeats)
                .map(|j| {
                    let stride = if j == 0 { first_stride } else { 1 };
                    let block =
                        inverted_residual(&(&features / index), c_in, c_out, stride, expand);
                    index += 1;
                    c_in = c_out;
                    block
                })
                .collect()
        })
        .collect();
    let head = ConvBn::seq(&(&features / index), c_in, LAST_CHANNELS, tv(1, Act::Relu6));
    MobileNetV2 {
        trunk: MobileTrunk { stem, stages, head },
    }
}

impl MobileNetV2 {
    /// Feature maps after the stem (`features.0`, stride 2) and after each of the seven
    /// inverted-residual stages (strides 2, 4, 8, 16, 16, 32, 32). The 1×1 widening conv to 1280
    /// channels (`features.18`) serves classification and is left to [`Backbone::features`].
    pub fn stages(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.trunk.stages(xs, train)
    }

    /// Channels of each map returned by [`MobileNetV2::stages`].
    pub fn stage_channels(&self) -> Vec<i64> {
        std::iter::once(STEM_CHANNELS)
            .chain(SETTINGS.iter().map(|s| s.1))
            .collect()
    }
}

impl Backbone for MobileNetV2 {
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
        LAST_CHANNELS
    }

    fn head_name(&self) -> &'static str {
        "classifier.1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn build(in_channels: i64) -> (nn::VarStore, MobileNetV2) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = mobilenet_v2(&vs.root(), in_channels);
        (vs, net)
    }

    fn shape_of(vs: &nn::VarStore, name: &str) -> Vec<i64> {
        vs.variables()
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .size()
    }

    #[test]
    fn parameter_count_matches_torchvision() {
        let (vs, net) = build(3);
        // `classifier.1` lives two levels down, as in torchvision's `classifier` Sequential.
        let head = net
            .head_name()
            .split('.')
            .fold(vs.root(), |p, part| p / part);
        let _fc = nn::linear(head, net.out_channels(), 1000, Default::default());
        let n: usize = vs.trainable_variables().iter().map(Tensor::numel).sum();
        assert_eq!(n, 3_504_872);
        assert_eq!(shape_of(&vs, "classifier.1.weight"), [1000, 1280]);
    }

    #[test]
    fn names_and_shapes_match_torchvision() {
        let (vs, _) = build(3);
        assert_eq!(shape_of(&vs, "features.0.0.weight"), [32, 3, 3, 3]);
        assert_eq!(shape_of(&vs, "features.0.1.running_mean"), [32]);
        // Expansion 1: depthwise at conv.0, projection at conv.1 / conv.2.
        assert_eq!(shape_of(&vs, "features.1.conv.0.0.weight"), [32, 1, 3, 3]);
        assert_eq!(shape_of(&vs, "features.1.conv.0.1.weight"), [32]);
        assert_eq!(shape_of(&vs, "features.1.conv.1.weight"), [16, 32, 1, 1]);
        assert_eq!(shape_of(&vs, "features.1.conv.2.running_var"), [16]);
        // Expansion 6: expand at conv.0, depthwise at conv.1, projection at conv.2 / conv.3.
        assert_eq!(shape_of(&vs, "features.2.conv.0.0.weight"), [96, 16, 1, 1]);
        assert_eq!(shape_of(&vs, "features.2.conv.1.0.weight"), [96, 1, 3, 3]);
        assert_eq!(shape_of(&vs, "features.2.conv.2.weight"), [24, 96, 1, 1]);
        assert_eq!(shape_of(&vs, "features.2.conv.3.bias"), [24]);
        assert_eq!(shape_of(&vs, "features.17.conv.2.weight"), [320, 960, 1, 1]);
        assert_eq!(shape_of(&vs, "features.18.0.weight"), [1280, 320, 1, 1]);
        assert_eq!(shape_of(&vs, "features.18.1.weight"), [1280]);
        assert!(!vs.variables().contains_key("features.19.0.weight"));
        // 52 convs, each followed by a batch norm, and no conv biases.
        let vars = vs.variables();
        assert_eq!(vars.values().filter(|t| t.dim() == 4).count(), 52);
        assert_eq!(
            vars.keys().filter(|k| k.ends_with(".running_mean")).count(),
            52
        );
        assert_eq!(vars.keys().filter(|k| k.ends_with(".bias")).count(), 52);

        let (vs, _) = build(1);
        assert_eq!(shape_of(&vs, "features.0.0.weight"), [32, 1, 3, 3]);
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
    fn stages_are_strided_pyramid() {
        let (_vs, net) = build(1);
        let xs = Tensor::randn([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        let stages = tch::no_grad(|| net.stages(&xs, false));
        let sizes: Vec<Vec<i64>> = stages.iter().map(Tensor::size).collect();
        let expected_hw = [32, 32, 16, 8, 4, 4, 2, 2];
        assert_eq!(sizes.len(), expected_hw.len());
        for ((size, hw), c) in sizes.iter().zip(expected_hw).zip(net.stage_channels()) {
            assert_eq!(size, &[2, c, hw, hw]);
        }
    }

    #[test]
    fn trains_with_batch_statistics() {
        let (vs, net) = build(3);
        let xs = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        net.features(&xs, true).mean(Kind::Float).backward();
        let grad = vs.variables()["features.1.conv.0.0.weight"].grad();
        assert!(grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
