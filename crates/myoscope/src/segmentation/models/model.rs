//! A whole segmentation network: encoder, UNet or UNet++ decoder, and the 3×3 convolution
//! (`segmentation_head.0`) that turns the decoder's last maps into per-class logits.

use super::decoder_block::spatial_size;
use super::encoder::{first_conv_weight, Encoder};
use super::spec::{Arch, SegmentationModelSpec};
use super::unet::UnetDecoder;
use super::unetplusplus::UnetPlusPlusDecoder;
use anyhow::{bail, Result};
use tch::nn::{self, Init};
use tch::Tensor;

#[derive(Debug)]
enum Decoder {
    Unet(UnetDecoder),
    UnetPlusPlus(UnetPlusPlusDecoder),
}

/// Image batch [N, in_channels, H, W] → logits [N, classes, H, W] (no activation: the loss
/// applies its own softmax).
#[derive(Debug)]
pub struct SegmentationModel {
    spec: SegmentationModelSpec,
    encoder: Encoder,
    decoder: Decoder,
    head: nn::Conv2D,
}

impl SegmentationModel {
    /// Validates `spec` and builds the model under `p` with smp's parameter names and smp's
    /// initialisation of decoder (Kaiming-uniform, fan-in) and head (Xavier-uniform).
    pub fn new(p: &nn::Path, spec: &SegmentationModelSpec) -> Result<Self> {
        spec.validate()?;
        let encoder = Encoder::new(
            &(p / "encoder"),
            &spec.encoder,
            spec.in_channels,
            spec.depth,
        )?;
        let dp = p / "decoder";
        let channels = encoder.out_channels();
        let decoder = match spec.arch {
            Arch::Unet => Decoder::Unet(UnetDecoder::new(
                &dp,
                channels,
                &spec.decoder_channels,
                spec.attention,
            )),
            Arch::UnetPlusPlus => Decoder::UnetPlusPlus(UnetPlusPlusDecoder::new(
                &dp,
                channels,
                &spec.decoder_channels,
                spec.attention,
            )),
        };
        let last = spec.decoder_channels[spec.depth - 1];
        let bound = (6.0 / (9 * (last + spec.classes)) as f64).sqrt();
        let head_cfg = nn::ConvConfig {
            padding: 1,
            ws_init: Init::Uniform {
                lo: -bound,
                up: bound,
            },
            bs_init: Init::Const(0.0),
            ..Default::default()
        };
        let head = nn::conv2d(p / "segmentation_head" / 0, last, spec.classes, 3, head_cfg);
        Ok(SegmentationModel {
            spec: spec.clone(),
            encoder,
            decoder,
            head,
        })
    }

    pub fn spec(&self) -> &SegmentationModelSpec {
        &self.spec
    }

    /// Full name of the encoder's first conv weight (`encoder.conv1.weight`,
    /// `encoder.conv_stem.weight`): the one to pass through [`super::adapt_first_conv`] when
    /// loading RGB ImageNet weights into a model with other than three input channels.
    pub fn first_conv_weight_name(&self) -> String {
        format!("encoder.{}", first_conv_weight(&self.spec.encoder))
    }

    /// See [`SegmentationModelSpec::check_input`].
    pub fn check_input(&self, height: i64, width: i64) -> Result<()> {
        self.spec.check_input(height, width)
    }

    /// Logits for a batch whose shape the caller has already checked (see
    /// [`SegmentationModel::try_forward_t`]).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let features = self.encoder.forward_t(xs, train);
        let decoded = match &self.decoder {
            Decoder::Unet(d) => d.forward_t(&features, spatial_size(xs), train),
            Decoder::UnetPlusPlus(d) => d.forward_t(&features, train),
        };
        decoded.apply(&self.head)
    }

    /// [`SegmentationModel::forward_t`] after checking the batch is [N, in_channels, H, W] with
    /// H and W the encoder can divide.
    pub fn try_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let size = xs.size();
        if size.len() != 4 {
            bail!("expected an image batch [N, C, H, W], got shape {size:?}");
        }
        if size[1] != self.spec.in_channels {
            bail!(
                "the model reads {} input channel(s) but the batch has {}; select the channel(s) \
                 the model was trained on",
                self.spec.in_channels,
                size[1]
            );
        }
        self.check_input(size[2], size[3])?;
        Ok(self.forward_t(xs, train))
    }
}

impl nn::ModuleT for SegmentationModel {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        SegmentationModel::forward_t(self, xs, train)
    }
}
