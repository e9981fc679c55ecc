//! ConvNeXt-T/S/B (Liu et al. 2022) with timm's `convnext_*` parameter names: `stem.0` (4×4
//! patchify conv) and `stem.1` (layer norm), `stages.{i}.downsample.{0,1}` (layer norm, 2×2
//! conv) for i > 0, `stages.{i}.blocks.{j}.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}` and the head's
//! `head.norm`, which normalises the pooled vector before `head.fc`.
//!
//! A block is a 7×7 depthwise conv, a layer norm over channels, an MLP (×4, GELU) and a learned
//! per-channel scale (`gamma`, layer scale, starting at 1e-6) on the residual branch. Layer norms
//! use eps 1e-6 as timm's do. No stochastic depth (timm's default rate is 0).
use super::backbone::{global_average, Backbone};
use super::layers::{layer_norm, layer_norm_2d, Mlp};
use tch::nn::{self, Init, Module};
use tch::Tensor;

const EPS: f64 = 1e-6;
const LAYER_SCALE_INIT: f64 = 1e-6;

#[derive(Debug)]
struct Block {
    conv_dw: nn::Conv2D,
    norm: nn::LayerNorm,
    mlp: Mlp,
    gamma: Tensor,
}

impl Block {
    fn new(p: &nn::Path, dim: i64) -> Self {
        let dw = nn::ConvConfig {
            padding: 3,
            groups: dim,
            ..Default::default()
        };
        Block {
            conv_dw: nn::conv2d(p / "conv_dw", dim, dim, 7, dw),
            norm: layer_norm(&(p / "norm"), dim, EPS),
            mlp: Mlp::new(&(p / "mlp"), dim, 4 * dim),
            gamma: p.var("gamma", &[dim], Init::Const(LAYER_SCALE_INIT)),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let ys = xs
            .apply(&self.conv_dw)
            .permute([0, 2, 3, 1])
            .apply(&self.norm)
            .apply(&self.mlp)
            .permute([0, 3, 1, 2]);
        ys * self.gamma.view([1, -1, 1, 1]) + xs
    }
}

#[derive(Debug)]
struct Stage {
    /// Layer norm and 2×2 stride-2 conv; none in the first stage.
    downsample: Option<(nn::LayerNorm, nn::Conv2D)>,
    blocks: Vec<Block>,
}

#[derive(Debug)]
pub struct ConvNeXt {
    stem_conv: nn::Conv2D,
    stem_norm: nn::LayerNorm,
    stages: Vec<Stage>,
    head_norm: nn::LayerNorm,
    channels: i64,
}

impl ConvNeXt {
    fn new(p: &nn::Path, in_channels: i64, depths: [usize; 4], dims: [i64; 4]) -> Self {
        let patchify = nn::ConvConfig {
            stride: 4,
            ..Default::default()
        };
        let stem_conv = nn::conv2d(p / "stem" / "0", in_channels, dims[0], 4, patchify);
        let stem_norm = layer_norm(&(p / "stem" / "1"), dims[0], EPS);
        let mut c_in = dims[0];
        let stages = depths
            .iter()
            .zip(dims)
            .enumerate()
            .map(|(i, (&depth, dim))| {
                let sp = p / "stages" / i;
                let downsample = (i > 0).then(|| {
                    let ds = &sp / "downsample";
                    let cfg = nn::ConvConfig {
                        stride: 2,
                        ..Default::default()
                    };
                    (
                        layer_norm(&(&ds / "0"), c_in, EPS),
                        nn::conv2d(&ds / "1", c_in, dim, 2, cfg),
                    )
                });
                c_in = dim;
                let blocks = (0..depth)
                    .map(|j| Block::new(&(&sp / "blocks" / j), dim))
                    .collect();
                Stage { downsample, blocks }
            })
            .collect();
        ConvNeXt {
            stem_conv,
            stem_norm,
            stages,
            head_norm: layer_norm(&(p / "head" / "norm"), dims[3], EPS),
            channels: dims[3],
        }
    }
}

impl Backbone for ConvNeXt {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.feature_maps(xs, train)
            .pop()
            .expect("ConvNeXt has stages")
    }

    fn feature_maps(&self, xs: &Tensor, _train: bool) -> Vec<Tensor> {
        let mut ys = layer_norm_2d(&self.stem_norm, &xs.apply(&self.stem_conv));
        let mut out = vec![ys.shallow_clone()];
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                ys = layer_norm_2d(norm, &ys).apply(conv);
            }
            for block in &stage.blocks {
                ys = block.forward(&ys);
            }
            out.push(ys.shallow_clone());
        }
        out
    }

    fn layer_names(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        names.extend((0..self.stages.len()).map(|i| format!("stages.{i}")));
        names
    }

    fn out_channels(&self) -> i64 {
        self.channels
    }

    fn head_name(&self) -> &'static str {
        "head.fc"
    }

    fn min_input_side(&self) -> i64 {
        32
    }

    /// timm's `NormMlpClassifierHead`: average, then `head.norm`.
    fn pool(&self, maps: &Tensor) -> Option<Tensor> {
        Some(self.head_norm.forward(&global_average(maps)))
    }

    fn pools_by_average(&self) -> bool {
        false
    }
}

/// timm `convnext_tiny`: depths 3-3-9-3, widths 96…768.
pub fn convnext_tiny(p: &nn::Path, in_channels: i64) -> ConvNeXt {
    ConvNeXt::new(p, in_channels, [3, 3, 9, 3], [96, 192, 384, 768])
}

/// timm `convnext_small`: depths 3-3-27-3, widths 96…768.
pub fn convnext_small(p: &nn::Path, in_channels: i64) -> ConvNeXt {
    ConvNeXt::new(p, in_channels, [3, 3, 27, 3], [96, 192, 384, 768])
}

/// timm `convnext_base`: depths 3-3-27-3, widths 128…1024.
pub fn convnext_base(p: &nn::Path, in_channels: i64) -> ConvNeXt {
    ConvNeXt::new(p, in_channels, [3, 3, 27, 3], [128, 256, 512, 1024])
}
