//! The decoder block UNet and UNet++ share (smp's `UnetDecoderBlock` / `DecoderBlock`):
//! nearest-neighbour upsampling, concatenation with the skip features, optional scSE
//! (`attention1`), two conv-BN-ReLU units (`conv1`, `conv2`) and scSE again (`attention2`).

use super::scse::{decoder_conv, Scse};
use super::spec::Attention;
use crate::models::conv_bn::batch_norm2d;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// smp's `Conv2dReLU`: 3×3 conv without bias at `p.0`, batch norm at `p.1`, ReLU.
#[derive(Debug)]
pub struct ConvBnRelu {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBnRelu {
    pub fn new(p: &nn::Path, c_in: i64, c_out: i64) -> Self {
        ConvBnRelu {
            conv: decoder_conv(&(p / 0), c_in, c_out, 3, false),
            bn: batch_norm2d(&(p / 1), c_out, 1e-5),
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&xs.apply(&self.conv), train).relu_()
    }
}

/// One decoder step: upsample `xs` to the skip's resolution, fuse, refine.
#[derive(Debug)]
pub struct DecoderBlock {
    /// scSE over the concatenation. smp creates it even for a block without skip (where it is
    /// never applied), so its parameters exist there too and checkpoints load by name.
    attention1: Option<Scse>,
    conv1: ConvBnRelu,
    conv2: ConvBnRelu,
    attention2: Option<Scse>,
}

impl DecoderBlock {
    pub fn new(
        p: &nn::Path,
        in_channels: i64,
        skip_channels: i64,
        out_channels: i64,
        attention: Attention,
    ) -> Self {
        let fused = in_channels + skip_channels;
        let scse = |name: &str, c: i64| match attention {
            Attention::Scse => Some(Scse::new(&(p / name / "attention"), c)),
            Attention::None => None,
        };
        DecoderBlock {
            attention1: scse("attention1", fused),
            conv1: ConvBnRelu::new(&(p / "conv1"), fused, out_channels),
            conv2: ConvBnRelu::new(&(p / "conv2"), out_channels, out_channels),
            attention2: scse("attention2", out_channels),
        }
    }

    /// `xs` upsampled (nearest) to `size` = (h, w), then concatenated with `skip` (already at
    /// `size`) along channels.
    pub fn forward_t(
        &self,
        xs: &Tensor,
        size: [i64; 2],
        skip: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let mut ys = xs.upsample_nearest2d(size, None, None);
        if let Some(skip) = skip {
            ys = Tensor::cat(&[&ys, skip], 1);
            if let Some(att) = &self.attention1 {
                ys = att.forward(&ys);
            }
        }
        ys = self.conv1.forward_t(&ys, train);
        ys = self.conv2.forward_t(&ys, train);
        match &self.attention2 {
            Some(att) => att.forward(&ys),
            None => ys,
        }
    }
}

/// Spatial size (h, w) of an NCHW tensor.
pub fn spatial_size(xs: &Tensor) -> [i64; 2] {
    let s = xs.size();
    [s[s.len() - 2], s[s.len() - 1]]
}
