//! The shape MobileNetV2 and EfficientNet share: a conv stem, stages of inverted-residual
//! blocks, a 1×1 widening head. The two families differ only in parameter names, padding and
//! BN epsilon, which their constructors settle; running them is the same code.
use super::conv_bn::ConvBn;
use tch::Tensor;

/// A chain of conv+BN units with an identity skip where stride is 1 and channels match: the
/// inverted-residual and depthwise-separable blocks (the last unit is linear).
#[derive(Debug)]
pub struct ResidualChain {
    pub convs: Vec<ConvBn>,
    pub residual: bool,
}

impl ResidualChain {
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.convs[0].forward_t(xs, train);
        for unit in &self.convs[1..] {
            ys = unit.forward_t(&ys, train);
        }
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}

#[derive(Debug)]
pub struct MobileTrunk {
    pub stem: ConvBn,
    pub stages: Vec<Vec<ResidualChain>>,
    pub head: ConvBn,
}

impl MobileTrunk {
    /// Feature maps after the stem and after each stage, like timm's `features_only`; the 1×1
    /// widening head serves classification and is left to [`MobileTrunk::features`].
    pub fn stages(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let mut outs = Vec::with_capacity(1 + self.stages.len());
        let mut ys = self.stem.forward_t(xs, train);
        outs.push(ys.shallow_clone());
        for stage in &self.stages {
            for block in stage {
                ys = block.forward_t(&ys, train);
            }
            outs.push(ys.shallow_clone());
        }
        outs
    }

    /// `stem`, `stage1`…`stageN`, `head` (the widening 1×1: the trunk's output).
    pub fn layer_names(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        names.extend((1..=self.stages.len()).map(|i| format!("stage{i}")));
        names.push("head".into());
        names
    }

    /// The maps named by [`MobileTrunk::layer_names`], from one forward pass.
    pub fn feature_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        let mut maps = self.stages(xs, train);
        let last = maps.last().map(|t| self.head.forward_t(t, train));
        maps.extend(last);
        maps
    }

    pub fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem.forward_t(xs, train);
        for block in self.stages.iter().flatten() {
            ys = block.forward_t(&ys, train);
        }
        self.head.forward_t(&ys, train)
    }
}
