//! EfficientNet-B0…B7 classification trunks with timm's `efficientnet_b*` parameter names
//! (`conv_stem`, `bn1`, `blocks.{stage}.{block}.*`, `conv_head`, `bn2`; head `classifier`).
//!
//! The blocks are the segmentation encoder's (`segmentation::models::efficientnet`, checked
//! against smp, which builds them through timm): squeeze-excitation, swish, PyTorch padding, BN
//! eps 1e-5 and stochastic depth rising to 0.2 while training. The classifier runs the whole
//! trunk and the 1×1 `conv_head` the encoder leaves out.
use super::backbone::Backbone;
use crate::segmentation::models::efficientnet::{EfficientNetEncoder, VARIANTS};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct EfficientNet {
    trunk: EfficientNetEncoder,
}

/// timm `efficientnet_b{variant}` trunk (variant 0–7).
pub fn efficientnet_b(p: &nn::Path, in_channels: i64, variant: usize) -> EfficientNet {
    EfficientNet {
        trunk: EfficientNetEncoder::new(p, in_channels, VARIANTS[variant]),
    }
}

impl Backbone for EfficientNet {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk
            .classifier_maps(xs, train)
            .pop()
            .expect("the trunk returns its head's maps")
    }

    fn out_channels(&self) -> i64 {
        self.trunk.head_channels()
    }

    fn layer_names(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        names.extend((0..7).map(|i| format!("blocks.{i}")));
        names.push("conv_head".into());
        names
    }

    fn feature_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.trunk.classifier_maps(xs, train)
    }

    fn head_name(&self) -> &'static str {
        "classifier"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// timm's `efficientnet_b0` / `efficientnet_b3` with a 1000-class head (printed from timm 1.0.29).
    #[test]
    fn parameter_counts_match_timm() {
        for (b, expect) in [(0, 5_288_548i64), (3, 12_233_232)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = efficientnet_b(&vs.root(), 3, b);
            let _head = nn::linear(
                vs.root() / net.head_name(),
                net.out_channels(),
                1000,
                Default::default(),
            );
            let n: i64 = vs
                .trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum();
            assert_eq!(n, expect, "b{b}");
        }
    }

    #[test]
    fn maps_end_with_the_head() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = efficientnet_b(&vs.root(), 3, 0);
        let xs = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let maps = tch::no_grad(|| net.feature_maps(&xs, false));
        assert_eq!(maps.len(), net.layer_names().len());
        assert_eq!(maps.last().unwrap().size(), [1, 1280, 2, 2]);
    }
}
