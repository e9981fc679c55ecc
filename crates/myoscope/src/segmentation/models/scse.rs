//! Concurrent spatial and channel squeeze & excitation (scSE, Roy et al. 2018), as
//! segmentation_models_pytorch's `SCSEModule`: parameters `cSE.1`, `cSE.3` (the two 1×1 convs of
//! the channel gate) and `sSE.0` (the 1×1 conv of the spatial gate).
//!
//! The channel gate (cSE) re-weights feature maps by what the whole tile contains; the spatial
//! gate (sSE) re-weights pixels by what all channels say about them. Summing the two recalibrated
//! maps lets the decoder both suppress background channels and sharpen nucleus borders.

use tch::nn::{self, Init};
use tch::Tensor;

/// smp's channel-gate reduction: the bottleneck has `channels / 16` channels.
pub const SCSE_REDUCTION: i64 = 16;

#[derive(Debug)]
pub struct Scse {
    channel_reduce: nn::Conv2D,
    channel_expand: nn::Conv2D,
    spatial: nn::Conv2D,
}

/// 1×1 conv with bias, initialised as smp initialises decoder convs (Kaiming-uniform over the
/// fan-in, zero bias).
pub(crate) fn decoder_conv(
    p: &nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    bias: bool,
) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        padding: (kernel - 1) / 2,
        bias,
        ws_init: Init::Kaiming {
            dist: nn::init::NormalOrUniform::Uniform,
            fan: nn::init::FanInOut::FanIn,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, kernel, cfg)
}

impl Scse {
    /// scSE over `channels` maps; `channels` must be at least [`SCSE_REDUCTION`] (the spec
    /// validation says so before any model is built).
    pub fn new(p: &nn::Path, channels: i64) -> Self {
        let reduced = channels / SCSE_REDUCTION;
        Scse {
            channel_reduce: decoder_conv(&(p / "cSE" / 1), channels, reduced, 1, true),
            channel_expand: decoder_conv(&(p / "cSE" / 3), reduced, channels, 1, true),
            spatial: decoder_conv(&(p / "sSE" / 0), channels, 1, 1, true),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let channel_gate = xs
            .adaptive_avg_pool2d([1, 1])
            .apply(&self.channel_reduce)
            .relu()
            .apply(&self.channel_expand)
            .sigmoid();
        let spatial_gate = xs.apply(&self.spatial).sigmoid();
        xs * channel_gate + xs * spatial_gate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_shapes_and_gating() {
        let vs = nn::VarStore::new(Device::Cpu);
        let scse = Scse::new(&(vs.root() / "attention"), 32);
        let vars = vs.variables();
        let shape = |n: &str| vars[n].size();
        assert_eq!(shape("attention.cSE.1.weight"), [2, 32, 1, 1]);
        assert_eq!(shape("attention.cSE.1.bias"), [2]);
        assert_eq!(shape("attention.cSE.3.weight"), [32, 2, 1, 1]);
        assert_eq!(shape("attention.cSE.3.bias"), [32]);
        assert_eq!(shape("attention.sSE.0.weight"), [1, 32, 1, 1]);
        assert_eq!(shape("attention.sSE.0.bias"), [1]);
        assert_eq!(vars.len(), 6);

        // With every weight zero both gates are sigmoid(0) = 1/2, so scSE is the identity.
        tch::no_grad(|| {
            for t in vs.trainable_variables() {
                let _ = t.shallow_clone().zero_();
            }
        });
        let xs = Tensor::randn([2, 32, 5, 7], (Kind::Float, Device::Cpu));
        assert!(scse.forward(&xs).allclose(&xs, 1e-6, 1e-6, false));

        // A strongly positive spatial bias opens the spatial gate fully: output = 1.5 x.
        tch::no_grad(|| {
            let _ = vars["attention.sSE.0.bias"].shallow_clone().fill_(50.0);
        });
        assert!(scse.forward(&xs).allclose(&(&xs * 1.5), 1e-5, 1e-5, false));
    }
}
