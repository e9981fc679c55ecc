//! Encoders of the segmentation models: the crate's classification trunks cut at a chosen
//! depth, returning their skip features at strides 2, 4, …, 2^depth.
//!
//! Parameter names follow segmentation_models_pytorch's encoders of the same name (under the
//! model's `encoder.` prefix), which for ResNets are torchvision's and for EfficientNets timm's.
//! As in smp, the whole trunk is built whatever the depth (a ResNet at depth 3 still has
//! `layer3`/`layer4`, an EfficientNet its `conv_head`), so checkpoints load by name either way.

use super::efficientnet::{EfficientNetEncoder, VARIANTS};
use crate::models::efficientnet_lite::{self, EfficientNetLite};
use crate::models::resnet::{self, ResNet};
use anyhow::{bail, Result};
use tch::{nn, Tensor};

/// Encoders by the names used in model specs and on the command line, with a description.
pub const ENCODERS: &[(&str, &str)] = &[
    ("resnet18", "ResNet-18 (torchvision layout)"),
    (
        "resnet34",
        "ResNet-34 (torchvision layout), the DEDL encoder",
    ),
    ("resnet50", "ResNet-50 (torchvision layout)"),
    ("resnet101", "ResNet-101 (torchvision layout)"),
    (
        "timm-efficientnet-b0",
        "EfficientNet-B0 (timm layout: SE, swish)",
    ),
    (
        "timm-efficientnet-b1",
        "EfficientNet-B1 (timm layout: SE, swish)",
    ),
    (
        "timm-efficientnet-b2",
        "EfficientNet-B2 (timm layout: SE, swish)",
    ),
    (
        "timm-efficientnet-b3",
        "EfficientNet-B3 (timm layout: SE, swish)",
    ),
    (
        "timm-efficientnet-b4",
        "EfficientNet-B4 (timm layout: SE, swish)",
    ),
    (
        "timm-efficientnet-b5",
        "EfficientNet-B5 (timm layout: SE, swish)",
    ),
    (
        "timm-efficientnet-b6",
        "EfficientNet-B6 (timm layout: SE, swish)",
    ),
    (
        "timm-efficientnet-b7",
        "EfficientNet-B7 (timm layout: SE, swish)",
    ),
    (
        "tf_efficientnet_lite0",
        "EfficientNet-Lite0 with TensorFlow padding: the trunk myoscope has ImageNet weights for \
         (names of smp's timm-tf_efficientnet_lite0, which pads the PyTorch way)",
    ),
];

/// Depths an encoder can be cut at: smp's UNet and UNet++ take 3 to 5.
pub const DEPTHS: std::ops::RangeInclusive<usize> = 3..=5;

#[derive(Debug)]
enum Trunk {
    ResNet(ResNet),
    EfficientNet(EfficientNetEncoder),
    Lite(EfficientNetLite),
}

/// A trunk and the depth it is cut at.
#[derive(Debug)]
pub struct Encoder {
    trunk: Trunk,
    depth: usize,
    /// Channels of the `depth` skip features, shallowest first.
    channels: Vec<i64>,
}

/// The names of [`ENCODERS`], comma-separated, for error messages.
pub fn encoder_names() -> String {
    ENCODERS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails with the list of known encoders when `name` is not one of them.
pub fn check_encoder_name(name: &str) -> Result<()> {
    if ENCODERS.iter().any(|(n, _)| *n == name) {
        return Ok(());
    }
    let hint = if name == "timm-tf_efficientnet_lite0" {
        " (myoscope's Lite0 keeps TensorFlow's padding, which its ImageNet weights need: use \
         tf_efficientnet_lite0)"
    } else {
        ""
    };
    bail!(
        "unknown encoder '{name}'{hint}; choose one of: {}",
        encoder_names()
    )
}

/// Lite0's `stages()` maps (stem, then seven stages) that smp uses as skip features.
const LITE_FEATURES: [usize; 5] = [0, 2, 3, 5, 7];

impl Encoder {
    /// Builds the named encoder under `p` (the model's `encoder` path).
    pub fn new(p: &nn::Path, name: &str, in_channels: i64, depth: usize) -> Result<Self> {
        check_encoder_name(name)?;
        if in_channels < 1 {
            bail!("in_channels must be at least 1 (got {in_channels}); use 1 for a single DAPI channel");
        }
        if !DEPTHS.contains(&depth) {
            bail!("encoder depth {depth} is outside 3–5; use 3 (the DEDL setting) up to 5");
        }
        let trunk = match name {
            "resnet18" => Trunk::ResNet(resnet::resnet18(p, in_channels)),
            "resnet34" => Trunk::ResNet(resnet::resnet34(p, in_channels)),
            "resnet50" => Trunk::ResNet(resnet::resnet50(p, in_channels)),
            "resnet101" => Trunk::ResNet(resnet::resnet101(p, in_channels)),
            "tf_efficientnet_lite0" => {
                Trunk::Lite(efficientnet_lite::efficientnet_lite0(p, in_channels))
            }
            other => {
                let b = other
                    .strip_prefix("timm-efficientnet-b")
                    .and_then(|b| b.parse::<usize>().ok())
                    .filter(|&b| b < VARIANTS.len());
                match b {
                    Some(b) => {
                        Trunk::EfficientNet(EfficientNetEncoder::new(p, in_channels, VARIANTS[b]))
                    }
                    None => bail!("encoder '{other}' is listed but not built; this is a bug"),
                }
            }
        };
        let all: Vec<i64> = match &trunk {
            Trunk::ResNet(net) => net.stage_channels().to_vec(),
            Trunk::EfficientNet(net) => net.feature_channels().to_vec(),
            Trunk::Lite(net) => {
                let c = net.stage_channels();
                LITE_FEATURES.iter().map(|&i| c[i]).collect()
            }
        };
        Ok(Encoder {
            trunk,
            depth,
            channels: all[..depth].to_vec(),
        })
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Channels of the skip features, shallowest (stride 2) first.
    pub fn out_channels(&self) -> &[i64] {
        &self.channels
    }

    /// The `depth` skip features of `xs`, strides 2, 4, …, 2^depth.
    ///
    /// ResNets stop after the last stage they need. The Lite0 trunk has no partial forward: it
    /// runs to its last stage and the unneeded maps are dropped (outputs and gradients are
    /// unaffected; its unused batch norms also update their running statistics in training).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        match &self.trunk {
            Trunk::ResNet(net) => net.stages_upto(xs, train, self.depth),
            Trunk::EfficientNet(net) => net.features(xs, self.depth, train),
            Trunk::Lite(net) => {
                let maps = net.stages(xs, train);
                LITE_FEATURES[..self.depth]
                    .iter()
                    .map(|&i| maps[i].shallow_clone())
                    .collect()
            }
        }
    }
}

/// Name (under `encoder.`) of the first conv's weight, the one tied to the input channels.
pub fn first_conv_weight(name: &str) -> &'static str {
    if name.starts_with("resnet") {
        "conv1.weight"
    } else {
        "conv_stem.weight"
    }
}

/// An RGB-trained first-conv weight `[out, 3, k, k]` adapted to `in_channels` inputs as smp does
/// for pretrained encoders: one channel gets the sum over RGB (a grey image then sees the filter
/// response of the same grey RGB image), two or more than three repeat R, G, B cyclically scaled
/// by 3 / in_channels so the summed response keeps its magnitude.
pub fn adapt_first_conv(weight: &Tensor, in_channels: i64) -> Result<Tensor> {
    let size = weight.size();
    if size.len() != 4 || size[1] != 3 {
        bail!("expected an RGB first-conv weight [out, 3, k, k], got {size:?}");
    }
    if in_channels < 1 {
        bail!("in_channels must be at least 1 (got {in_channels})");
    }
    Ok(match in_channels {
        1 => weight.sum_dim_intlist([1i64].as_slice(), true, weight.kind()),
        3 => weight.shallow_clone(),
        n => {
            let picks: Vec<i64> = (0..n).map(|i| i % 3).collect();
            let index = Tensor::from_slice(&picks).to_device(weight.device());
            weight.index_select(1, &index) * (3.0 / n as f64)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn features_have_the_advertised_channels_and_strides() {
        for (name, _) in ENCODERS {
            let depth = if name.ends_with("b7") || *name == "resnet101" {
                3
            } else {
                5
            };
            let vs = nn::VarStore::new(Device::Cpu);
            let enc = Encoder::new(&vs.root(), name, 2, depth).unwrap();
            let xs = Tensor::randn([1, 2, 64, 64], (Kind::Float, Device::Cpu));
            let feats = tch::no_grad(|| enc.forward_t(&xs, false));
            assert_eq!(feats.len(), depth, "{name}");
            for (k, (f, &c)) in feats.iter().zip(enc.out_channels()).enumerate() {
                let hw = 64 >> (k + 1);
                assert_eq!(f.size(), [1, c, hw, hw], "{name} feature {k}");
            }
        }
    }

    #[test]
    fn resnet101_has_torchvision_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _enc = Encoder::new(&vs.root(), "resnet101", 3, 3).unwrap();
        let n: usize = vs.trainable_variables().iter().map(Tensor::numel).sum();
        // torchvision's 44,549,160 less the 2048 × 1000 + 1000 classifier.
        assert_eq!(n, 44_549_160 - 2_049_000);
        assert_eq!(
            vs.variables()["layer3.22.conv3.weight"].size(),
            [1024, 256, 1, 1]
        );
    }

    #[test]
    fn bad_names_and_depths_say_how_to_fix() {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = Encoder::new(&vs.root(), "resnet35", 1, 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("resnet34") && err.contains("timm-efficientnet-b0"),
            "{err}"
        );
        let err = Encoder::new(&vs.root(), "timm-tf_efficientnet_lite0", 1, 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("use tf_efficientnet_lite0"), "{err}");
        let err = Encoder::new(&vs.root(), "resnet18", 1, 6)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3–5"), "{err}");
    }

    #[test]
    fn first_conv_adaptation_follows_smp() {
        let w = Tensor::randn([8, 3, 3, 3], (Kind::Float, Device::Cpu));
        let one = adapt_first_conv(&w, 1).unwrap();
        assert!(one.allclose(
            &w.sum_dim_intlist([1i64].as_slice(), true, Kind::Float),
            1e-6,
            1e-6,
            false
        ));
        let five = adapt_first_conv(&w, 5).unwrap();
        assert_eq!(five.size(), [8, 5, 3, 3]);
        assert!(five
            .select(1, 3)
            .allclose(&(w.select(1, 0) * 0.6), 1e-6, 1e-6, false));
        assert!(five
            .select(1, 4)
            .allclose(&(w.select(1, 1) * 0.6), 1e-6, 1e-6, false));
        assert!(adapt_first_conv(&w, 3).unwrap().equal(&w));
        assert!(adapt_first_conv(&w, 0).is_err());
        assert!(adapt_first_conv(&one, 2).is_err());
        assert_eq!(first_conv_weight("resnet34"), "conv1.weight");
        assert_eq!(
            first_conv_weight("timm-efficientnet-b2"),
            "conv_stem.weight"
        );
    }
}
