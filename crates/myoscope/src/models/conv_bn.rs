//! Convolution + batch-norm units shared by the CNN backbones.
//!
//! The backbones must reproduce reference state-dict names exactly, and the references disagree
//! on where a conv's batch norm lives (`conv1`/`bn1` siblings in torchvision ResNet, `0`/`1` in a
//! `Sequential` elsewhere), so [`ConvBn`] takes the two paths separately instead of building them.

use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

/// Non-linearity applied after the batch norm of a [`ConvBn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// No activation: projection ("linear bottleneck") convs and pre-residual convs.
    Identity,
    Relu,
    Relu6,
}

impl Act {
    /// Applies the activation in place, saving a copy as the references' `inplace=True` does.
    /// Callers only pass freshly computed batch-norm outputs, which autograd does not need again.
    pub fn apply(self, mut xs: Tensor) -> Tensor {
        match self {
            Act::Identity => xs,
            Act::Relu => xs.relu_(),
            Act::Relu6 => xs.relu6_(),
        }
    }
}

/// How a conv pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// PyTorch convention: `(k - 1) / 2` on every side.
    Symmetric,
    /// TensorFlow "SAME": output size `ceil(in / stride)`, with any odd pixel of padding put on the
    /// bottom/right. Ported TF weights (timm `tf_*`) were trained with it, and the PyTorch
    /// convention shifts stride-2 sampling grids by one pixel.
    TfSame,
}

/// Weight initialisation scheme of the reference a backbone mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvInit {
    /// torchvision: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, whose fan-out counts
    /// every output channel even for grouped convs.
    TorchFanOut,
    /// timm `_init_weight_goog`: normal with std `sqrt(2 / fan_out)` where fan-out is divided by
    /// the number of groups, so depthwise kernels start much larger than under `TorchFanOut`.
    GoogFanOut,
}

/// Everything about a conv + BN + activation unit except its channel counts and names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvBnCfg {
    pub kernel: i64,
    pub stride: i64,
    pub groups: i64,
    pub act: Act,
    pub padding: Padding,
    pub init: ConvInit,
    pub bn_eps: f64,
}

impl ConvBnCfg {
    /// torchvision defaults: symmetric padding, BN eps 1e-5, fan-out init, stride 1, no groups.
    pub fn torchvision(kernel: i64, act: Act) -> Self {
        ConvBnCfg {
            kernel,
            stride: 1,
            groups: 1,
            act,
            padding: Padding::Symmetric,
            init: ConvInit::TorchFanOut,
            bn_eps: 1e-5,
        }
    }

    /// timm `tf_*` defaults: TF "SAME" padding, BN eps 1e-3, Google fan-out init.
    pub fn tf_same(kernel: i64, act: Act) -> Self {
        ConvBnCfg {
            kernel,
            stride: 1,
            groups: 1,
            act,
            padding: Padding::TfSame,
            init: ConvInit::GoogFanOut,
            bn_eps: 1e-3,
        }
    }

    pub fn stride(self, stride: i64) -> Self {
        ConvBnCfg { stride, ..self }
    }

    pub fn groups(self, groups: i64) -> Self {
        ConvBnCfg { groups, ..self }
    }
}

/// Bias-free `Conv2d` named `weight` under `p`, initialised per `cfg.init`.
///
/// For `Padding::TfSame` with stride > 1 the conv itself pads nothing; [`ConvBn`] pads the input
/// at run time, since the amount depends on the input size.
pub fn conv2d(p: &nn::Path, c_in: i64, c_out: i64, cfg: &ConvBnCfg) -> nn::Conv2D {
    let k = cfg.kernel;
    let ws_init = match cfg.init {
        ConvInit::TorchFanOut => Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ConvInit::GoogFanOut => {
            let fan_out = (k * k * c_out / cfg.groups) as f64;
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_out).sqrt(),
            }
        }
    };
    let padding = match cfg.padding {
        Padding::TfSame if cfg.stride > 1 => 0,
        _ => (k - 1) / 2,
    };
    let conv_cfg = nn::ConvConfig {
        stride: cfg.stride,
        padding,
        groups: cfg.groups,
        bias: false,
        ws_init,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, conv_cfg)
}

/// `BatchNorm2d` under `p` starting as PyTorch's does (weight 1, bias 0): tch's default draws the
/// weight from U[0, 1), so an untrained or partly loaded model would differ from the reference.
pub fn batch_norm2d(p: &nn::Path, channels: i64, eps: f64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        eps,
        ws_init: Init::Const(1.0),
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(p, channels, cfg)
}

/// Padding `(before, after)` along one spatial axis for TF "SAME" with dilation 1.
pub fn tf_same_pad(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// Conv (no bias) → BatchNorm → activation.
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    act: Act,
    /// `(kernel, stride)` when the input must be padded TF-style before the conv.
    dynamic_pad: Option<(i64, i64)>,
}

impl ConvBn {
    /// Creates the conv's `weight` under `conv_p` and the batch norm under `bn_p`.
    pub fn new(conv_p: &nn::Path, bn_p: &nn::Path, c_in: i64, c_out: i64, cfg: ConvBnCfg) -> Self {
        let dynamic_pad =
            (cfg.padding == Padding::TfSame && cfg.stride > 1).then_some((cfg.kernel, cfg.stride));
        ConvBn {
            conv: conv2d(conv_p, c_in, c_out, &cfg),
            bn: batch_norm2d(bn_p, c_out, cfg.bn_eps),
            act: cfg.act,
            dynamic_pad,
        }
    }

    /// The torchvision `Conv2dNormActivation` layout: conv at `p.0`, batch norm at `p.1`.
    pub fn seq(p: &nn::Path, c_in: i64, c_out: i64, cfg: ConvBnCfg) -> Self {
        Self::new(&(p / "0"), &(p / "1"), c_in, c_out, cfg)
    }

    /// Channels the unit produces.
    pub fn out_channels(&self) -> i64 {
        self.conv.ws.size()[0]
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = match self.dynamic_pad {
            Some((k, s)) => {
                let size = xs.size();
                let (top, bottom) = tf_same_pad(size[size.len() - 2], k, s);
                let (left, right) = tf_same_pad(size[size.len() - 1], k, s);
                if top + bottom + left + right == 0 {
                    xs.apply(&self.conv)
                } else {
                    xs.constant_pad_nd([left, right, top, bottom])
                        .apply(&self.conv)
                }
            }
            None => xs.apply(&self.conv),
        };
        self.act.apply(self.bn.forward_t(&ys, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn tf_same_pad_matches_tensorflow() {
        // Even input, stride 2: the single padding pixel goes after, unlike PyTorch's (1, 1).
        assert_eq!(tf_same_pad(224, 3, 2), (0, 1));
        assert_eq!(tf_same_pad(28, 5, 2), (1, 2));
        // Odd input, stride 2: symmetric.
        assert_eq!(tf_same_pad(225, 3, 2), (1, 1));
        assert_eq!(tf_same_pad(7, 5, 2), (2, 2));
        // Stride 1 keeps the size with (k - 1) / 2 per side.
        assert_eq!(tf_same_pad(10, 5, 1), (2, 2));
        // 1x1 strided conv never pads.
        assert_eq!(tf_same_pad(8, 1, 2), (0, 0));
    }

    #[test]
    fn tf_same_conv_samples_like_tensorflow() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ConvBnCfg::tf_same(3, Act::Identity).stride(2);
        let unit = ConvBn::new(&(vs.root() / "c"), &(vs.root() / "b"), 1, 1, cfg);
        tch::no_grad(|| {
            let _ = unit.conv.ws.shallow_clone().fill_(1.0);
        });
        // 4x4 ramp: with SAME the first output window covers rows/cols 0..=2 (no top/left pad).
        let xs = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
        let ys = unit.forward_t(&xs, false);
        assert_eq!(ys.size(), [1, 1, 2, 2]);
        let eps_scale = (1.0f64 + 1e-3).sqrt();
        let first = ys.double_value(&[0, 0, 0, 0]) * eps_scale;
        // Sum of rows 0..3 x cols 0..3 of the ramp: (0+1+2)*3 + (0+4+8)*3 = 45.
        assert!((first - 45.0).abs() < 1e-3, "got {first}");
        // Last window covers rows/cols 2..=3 plus one zero pad: (10+11+14+15) = 50.
        let last = ys.double_value(&[0, 0, 1, 1]) * eps_scale;
        assert!((last - 50.0).abs() < 1e-3, "got {last}");
    }
}
