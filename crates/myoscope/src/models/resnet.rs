//! ResNet-18/34/50 trunks with torchvision's parameter names (`conv1`, `bn1`, `layer1.0.conv1`,
//! `layer2.0.downsample.0`, …), so torchvision ImageNet state dicts load by name.
//!
//! ResNet-50 is torchvision's "v1.5": the stride of a downsampling bottleneck sits on its 3×3
//! conv, not on the first 1×1 as in the original paper. `resnet50_keras` is that original
//! layout as Keras (and Caffe before it) shipped its ImageNet weights: stride on the first 1×1,
//! BN epsilon 1e-3. Keras's conv biases are not parameters here: a bias feeding a batch norm
//! is redundant (batch statistics subtract it; running statistics absorb it), so the importer
//! folds it into the BN running mean.

use super::backbone::Backbone;
use super::conv_bn::{Act, ConvBn, ConvBnCfg};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Basic,
    Bottleneck,
}

/// Where a downsampling bottleneck strides, and the batch-norm epsilon: the two things that
/// differ between torchvision's ResNet and the original (Caffe/Keras) one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// torchvision v1.5: stride on the 3×3, BN eps 1e-5.
    Torchvision,
    /// He et al.'s original, as Keras ships it: stride on the first 1×1, BN eps 1e-3.
    Keras,
}

impl Style {
    fn cfg(self, kernel: i64, act: Act) -> ConvBnCfg {
        let cfg = ConvBnCfg::torchvision(kernel, act);
        match self {
            Style::Torchvision => cfg,
            Style::Keras => ConvBnCfg {
                bn_eps: 1e-3,
                ..cfg
            },
        }
    }
}

impl BlockKind {
    fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// One residual block; `convs` are `conv1`/`bn1`, `conv2`/`bn2`(, `conv3`/`bn3`), the last one
/// without activation because ReLU follows the residual sum.
#[derive(Debug)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn new(
        p: &nn::Path,
        kind: BlockKind,
        style: Style,
        c_in: i64,
        planes: i64,
        stride: i64,
    ) -> Self {
        let c_out = planes * kind.expansion();
        let tv = |k, act| style.cfg(k, act);
        let (stride_1x1, stride_3x3) = match style {
            Style::Torchvision => (1, stride),
            Style::Keras => (stride, 1),
        };
        let unit = |i: usize, a: i64, b: i64, cfg: ConvBnCfg| {
            ConvBn::new(
                &(p / format!("conv{i}")),
                &(p / format!("bn{i}")),
                a,
                b,
                cfg,
            )
        };
        let convs = match kind {
            BlockKind::Basic => vec![
                unit(1, c_in, planes, tv(3, Act::Relu).stride(stride)),
                unit(2, planes, planes, tv(3, Act::Identity)),
            ],
            BlockKind::Bottleneck => vec![
                unit(1, c_in, planes, tv(1, Act::Relu).stride(stride_1x1)),
                unit(2, planes, planes, tv(3, Act::Relu).stride(stride_3x3)),
                unit(3, planes, c_out, tv(1, Act::Identity)),
            ],
        };
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let ds = p / "downsample";
            ConvBn::seq(&ds, c_in, c_out, tv(1, Act::Identity).stride(stride))
        });
        Block { convs, downsample }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.convs[0].forward_t(xs, train);
        for unit in &self.convs[1..] {
            ys = unit.forward_t(&ys, train);
        }
        let shortcut = match &self.downsample {
            Some(ds) => ds.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu_()
    }
}

/// A torchvision ResNet without its `fc` head.
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    layers: Vec<Vec<Block>>,
    stage_channels: Vec<i64>,
}

impl ResNet {
    fn new(
        p: &nn::Path,
        in_channels: i64,
        kind: BlockKind,
        style: Style,
        depths: [usize; 4],
    ) -> Self {
        let stem_cfg = style.cfg(7, Act::Relu).stride(2);
        let stem = ConvBn::new(&(p / "conv1"), &(p / "bn1"), in_channels, 64, stem_cfg);
        let mut c_in = 64;
        let mut layers = Vec::with_capacity(4);
        let mut stage_channels = vec![64];
        for (i, (&depth, planes)) in depths.iter().zip([64, 128, 256, 512]).enumerate() {
            let lp = p / format!("layer{}", i + 1);
            let first_stride = if i == 0 { 1 } else { 2 };
            let blocks = (0..depth)
                .map(|j| {
                    let stride = if j == 0 { first_stride } else { 1 };
                    let block = Block::new(&(&lp / j), kind, style, c_in, planes, stride);
                    c_in = planes * kind.expansion();
                    block
                })
                .collect();
            layers.push(blocks);
            stage_channels.push(c_in);
        }
        ResNet {
            stem,
            layers,
            stage_channels,
        }
    }

    /// Feature maps after the stem (conv1/bn1/ReLU, stride 2, before the max-pool) and after each
    /// of `layer1`..`layer4` (strides 4, 8, 16, 32); the last equals [`Backbone::features`].
    pub fn stages(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.stages_upto(xs, train, 1 + self.layers.len())
    }

    /// The first `count` maps of [`ResNet::stages`], computing nothing deeper: a depth-3
    /// segmentation encoder needs the stem, layer1 and layer2 only, and running layer3/layer4
    /// would cost time and move their batch-norm statistics for nothing.
    pub fn stages_upto(&self, xs: &Tensor, train: bool, count: usize) -> Vec<Tensor> {
        let mut outs = Vec::with_capacity(count);
        let stem = self.stem.forward_t(xs, train);
        outs.push(stem.shallow_clone());
        if count <= 1 {
            return outs;
        }
        let mut ys = stem.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for layer in self.layers.iter().take(count - 1) {
            for block in layer {
                ys = block.forward_t(&ys, train);
            }
            outs.push(ys.shallow_clone());
        }
        outs
    }

    /// Channels of each map returned by [`ResNet::stages`].
    pub fn stage_channels(&self) -> &[i64] {
        &self.stage_channels
    }
}

impl Backbone for ResNet {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys =
            self.stem
                .forward_t(xs, train)
                .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in self.layers.iter().flatten() {
            ys = block.forward_t(&ys, train);
        }
        ys
    }

    fn layer_names(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        names.extend((1..=self.layers.len()).map(|i| format!("layer{i}")));
        names
    }

    fn feature_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.stages(xs, train)
    }

    fn out_channels(&self) -> i64 {
        self.stage_channels[self.stage_channels.len() - 1]
    }

    fn head_name(&self) -> &'static str {
        "fc"
    }
}

/// torchvision `resnet18` trunk (BasicBlock, 2-2-2-2), 512 output channels.
pub fn resnet18(p: &nn::Path, in_channels: i64) -> ResNet {
    ResNet::new(
        p,
        in_channels,
        BlockKind::Basic,
        Style::Torchvision,
        [2, 2, 2, 2],
    )
}

/// torchvision `resnet34` trunk (BasicBlock, 3-4-6-3), 512 output channels.
pub fn resnet34(p: &nn::Path, in_channels: i64) -> ResNet {
    ResNet::new(
        p,
        in_channels,
        BlockKind::Basic,
        Style::Torchvision,
        [3, 4, 6, 3],
    )
}

/// torchvision `resnet50` trunk (Bottleneck v1.5, 3-4-6-3), 2048 output channels.
pub fn resnet50(p: &nn::Path, in_channels: i64) -> ResNet {
    ResNet::new(
        p,
        in_channels,
        BlockKind::Bottleneck,
        Style::Torchvision,
        [3, 4, 6, 3],
    )
}

/// torchvision `resnet101` trunk (Bottleneck v1.5, 3-4-23-3), 2048 output channels.
pub fn resnet101(p: &nn::Path, in_channels: i64) -> ResNet {
    ResNet::new(
        p,
        in_channels,
        BlockKind::Bottleneck,
        Style::Torchvision,
        [3, 4, 23, 3],
    )
}

/// Keras `ResNet50` trunk (Bottleneck v1, stride on the first 1×1, BN eps 1e-3) under
/// torchvision's names, 2048 output channels. The Keras stem pads before its max-pool with
/// zeros where PyTorch pads with −∞; after the ReLU both give the same maxima.
pub fn resnet50_keras(p: &nn::Path, in_channels: i64) -> ResNet {
    ResNet::new(
        p,
        in_channels,
        BlockKind::Bottleneck,
        Style::Keras,
        [3, 4, 6, 3],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn build(f: fn(&nn::Path, i64) -> ResNet, in_channels: i64) -> (nn::VarStore, ResNet) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = f(&vs.root(), in_channels);
        (vs, net)
    }

    /// Trainable parameters of trunk + a 1000-class `fc`, as torchvision counts them.
    fn classifier_params(f: fn(&nn::Path, i64) -> ResNet) -> i64 {
        let (vs, net) = build(f, 3);
        let _fc = nn::linear(
            vs.root() / net.head_name(),
            net.out_channels(),
            1000,
            Default::default(),
        );
        vs.trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64
    }

    fn shape_of(vs: &nn::VarStore, name: &str) -> Vec<i64> {
        vs.variables()
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .size()
    }

    #[test]
    fn parameter_counts_match_torchvision() {
        assert_eq!(classifier_params(resnet18), 11_689_512);
        assert_eq!(classifier_params(resnet34), 21_797_672);
        assert_eq!(classifier_params(resnet50), 25_557_032);
        // Keras's conv biases fold into BN, so the parameter set is torchvision's.
        assert_eq!(classifier_params(resnet50_keras), 25_557_032);
    }

    #[test]
    fn names_and_shapes_match_torchvision() {
        let (vs, _) = build(resnet50, 3);
        assert_eq!(shape_of(&vs, "conv1.weight"), [64, 3, 7, 7]);
        assert_eq!(shape_of(&vs, "bn1.running_var"), [64]);
        assert_eq!(shape_of(&vs, "layer1.0.conv1.weight"), [64, 64, 1, 1]);
        assert_eq!(
            shape_of(&vs, "layer1.0.downsample.0.weight"),
            [256, 64, 1, 1]
        );
        assert_eq!(shape_of(&vs, "layer2.0.conv2.weight"), [128, 128, 3, 3]);
        assert_eq!(
            shape_of(&vs, "layer2.0.downsample.0.weight"),
            [512, 256, 1, 1]
        );
        assert_eq!(shape_of(&vs, "layer2.0.downsample.1.running_mean"), [512]);
        assert_eq!(shape_of(&vs, "layer4.2.bn3.weight"), [2048]);
        let vars = vs.variables();
        // 1 stem + 16 blocks × 3 + 4 downsamples, and every bias belongs to a batch norm.
        assert_eq!(vars.values().filter(|t| t.dim() == 4).count(), 53);
        for name in vars.keys().filter(|k| k.ends_with(".bias")) {
            let stats = name.replace(".bias", ".running_mean");
            assert!(vars.contains_key(&stats), "{name} is not a batch-norm bias");
        }

        let (vs, _) = build(resnet18, 1);
        assert_eq!(shape_of(&vs, "conv1.weight"), [64, 1, 7, 7]);
        assert_eq!(shape_of(&vs, "layer1.0.conv1.weight"), [64, 64, 3, 3]);
        assert!(!vs.variables().contains_key("layer1.0.downsample.0.weight"));
        assert_eq!(
            shape_of(&vs, "layer3.0.downsample.0.weight"),
            [256, 128, 1, 1]
        );
        assert_eq!(shape_of(&vs, "layer4.1.bn2.bias"), [512]);
    }

    #[test]
    fn feature_shapes() {
        for (f, c) in [
            (resnet18 as fn(&nn::Path, i64) -> ResNet, 512),
            (resnet50, 2048),
        ] {
            let (_vs, net) = build(f, 3);
            assert_eq!(net.out_channels(), c);
            for (hw, out) in [(224, 7), (160, 5)] {
                let xs = Tensor::randn([1, 3, hw, hw], (Kind::Float, Device::Cpu));
                let ys = tch::no_grad(|| net.features(&xs, false));
                assert_eq!(ys.size(), [1, c, out, out]);
            }
        }
    }

    #[test]
    fn stages_are_strided_pyramid() {
        let (_vs, net) = build(resnet18, 1);
        let xs = Tensor::randn([2, 1, 64, 96], (Kind::Float, Device::Cpu));
        let stages = tch::no_grad(|| net.stages(&xs, false));
        let sizes: Vec<Vec<i64>> = stages.iter().map(Tensor::size).collect();
        assert_eq!(
            sizes,
            [
                [2, 64, 32, 48],
                [2, 64, 16, 24],
                [2, 128, 8, 12],
                [2, 256, 4, 6],
                [2, 512, 2, 3]
            ]
        );
        let channels: Vec<i64> = sizes.iter().map(|s| s[1]).collect();
        assert_eq!(channels, net.stage_channels());
        let feats = tch::no_grad(|| net.features(&xs, false));
        assert!(feats.allclose(&stages[4], 1e-6, 1e-6, false));
    }

    #[test]
    fn trains_with_batch_statistics() {
        let (vs, net) = build(resnet18, 3);
        let xs = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let loss = net.features(&xs, true).mean(Kind::Float);
        loss.backward();
        let grad = vs.variables()["conv1.weight"].grad();
        assert!(grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        // Running statistics moved away from their (0, 1) initial state.
        let mean = &vs.variables()["bn1.running_mean"];
        assert!(mean.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
