//! Swin-T and Swin-B (Liu et al. 2021) with timm's `swin_*_patch4_window*` parameter names:
//! `patch_embed.{proj,norm}`, `layers.{i}.downsample.{norm,reduction}` (i > 0),
//! `layers.{i}.blocks.{j}.{norm1,attn.qkv,attn.proj,attn.relative_position_bias_table,norm2,
//! mlp.fc1,mlp.fc2}`, `norm`; head `head.fc`.
//!
//! Each block attends within non-overlapping windows (7×7 or 12×12 tokens) with a learned
//! bias per relative offset; every second block first rolls the map by half a window so
//! windows straddle the previous ones, and masks token pairs that the roll brought together
//! from opposite edges. As in timm: a map side that is not a multiple of the window is padded
//! (after the roll) with zeros at the bottom/right, and a block whose map fits in one window
//! does not shift. timm shrinks the window to a map smaller than it (which changes the bias
//! table's shape); here such a map is padded to one window instead, so any input size of at
//! least 32² works with the same weights. The classifier pools the final normalised map.
//! No stochastic depth.
use super::backbone::Backbone;
use super::layers::{layer_norm, multi_head_attention, Mlp};
use tch::nn::{self, Init, Module};
use tch::{Device, Kind, Tensor};

const EPS: f64 = 1e-5;
/// timm's additive mask value for token pairs from different regions.
const MASKED: f64 = -100.0;

/// Pair index into the relative-position bias table for a w×w window: for tokens a, b at
/// (ya, xa), (yb, xb): (ya − yb + w − 1)·(2w − 1) + (xa − xb + w − 1), as timm computes it.
fn relative_position_index(window: i64) -> Vec<i64> {
    let n = window * window;
    let mut index = Vec::with_capacity((n * n) as usize);
    for a in 0..n {
        for b in 0..n {
            let dy = a / window - b / window + window - 1;
            let dx = a % window - b % window + window - 1;
            index.push(dy * (2 * window - 1) + dx);
        }
    }
    index
}

/// Region of a row (or column) of the padded, rolled map for the shifted-window mask: the part
/// that stayed, the part of the last window the roll moved, and the wrapped-around part.
fn region(position: i64, padded: i64, window: i64, shift: i64) -> i64 {
    if shift == 0 {
        2
    } else if position < padded - window {
        0
    } else if position < padded - shift {
        1
    } else {
        2
    }
}

/// [B, Hp, Wp, C] → [B·windows, w·w, C], windows in row-major order.
fn partition(xs: &Tensor, window: i64) -> Tensor {
    let (b, h, w, c) = xs.size4().expect("NHWC map");
    xs.view([b, h / window, window, w / window, window, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([-1, window * window, c])
}

/// The inverse of [`partition`].
fn merge(windows: &Tensor, window: i64, h: i64, w: i64) -> Tensor {
    let c = windows.size()[2];
    windows
        .view([-1, h / window, w / window, window, window, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([-1, h, w, c])
}

/// The shifted-window mask [windows, w·w, w·w] (0 or −100) for a padded Hp×Wp map.
fn shift_mask(hp: i64, wp: i64, window: i64, shift: (i64, i64), device: Device) -> Tensor {
    let ids: Vec<f32> = (0..hp)
        .flat_map(|y| {
            (0..wp).map(move |x| {
                (3 * region(y, hp, window, shift.0) + region(x, wp, window, shift.1)) as f32
            })
        })
        .collect();
    let ids = Tensor::from_slice(&ids)
        .view([1, hp, wp, 1])
        .to_device(device);
    let windows = partition(&ids, window).squeeze_dim(-1);
    let diff = windows.unsqueeze(1) - windows.unsqueeze(2);
    diff.ne(0.0).to_kind(Kind::Float) * MASKED
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    bias_table: Tensor,
    bias_index: Tensor,
    norm2: nn::LayerNorm,
    mlp: Mlp,
    heads: i64,
    window: i64,
    /// Whether this is a shifted-window block (every second one).
    shifted: bool,
}

impl Block {
    fn new(p: &nn::Path, dim: i64, heads: i64, window: i64, shifted: bool) -> Self {
        let a = p / "attn";
        let table = (2 * window - 1) * (2 * window - 1);
        let index = Tensor::from_slice(&relative_position_index(window)).to_device(p.device());
        Block {
            norm1: layer_norm(&(p / "norm1"), dim, EPS),
            qkv: nn::linear(&a / "qkv", dim, 3 * dim, Default::default()),
            proj: nn::linear(&a / "proj", dim, dim, Default::default()),
            bias_table: a.var(
                "relative_position_bias_table",
                &[table, heads],
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            ),
            bias_index: index,
            norm2: layer_norm(&(p / "norm2"), dim, EPS),
            mlp: Mlp::new(&(p / "mlp"), dim, 4 * dim),
            heads,
            window,
            shifted,
        }
    }

    /// Window attention on a normalised [B, H, W, C] map.
    fn attend(&self, xs: &Tensor) -> Tensor {
        let (_, h, w, c) = xs.size4().expect("NHWC map");
        let ws = self.window;
        let half = |side: i64| if self.shifted && side > ws { ws / 2 } else { 0 };
        let shift = (half(h), half(w));
        let rolled = if shift == (0, 0) {
            xs.shallow_clone()
        } else {
            xs.roll([-shift.0, -shift.1], [1, 2])
        };
        let (pad_h, pad_w) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
        let padded = if pad_h + pad_w > 0 {
            rolled.constant_pad_nd([0, 0, 0, pad_w, 0, pad_h])
        } else {
            rolled
        };
        let (hp, wp) = (h + pad_h, w + pad_w);
        let windows = partition(&padded, ws);
        let n = ws * ws;
        let bias = self
            .bias_table
            .index_select(0, &self.bias_index)
            .view([n, n, self.heads])
            .permute([2, 0, 1])
            .unsqueeze(0);
        let bias = if shift == (0, 0) {
            bias
        } else {
            let mask = shift_mask(hp, wp, ws, shift, xs.device());
            let count = mask.size()[0];
            let b_ = windows.size()[0];
            (bias.unsqueeze(1) + mask.view([1, count, 1, n, n]))
                .expand([b_ / count, count, self.heads, n, n], false)
                .reshape([b_, self.heads, n, n])
        };
        let qkv = windows.apply(&self.qkv);
        let attended = multi_head_attention(&qkv, self.heads, Some(&bias.to_kind(qkv.kind())))
            .apply(&self.proj);
        let merged = merge(&attended.view([-1, n, c]), ws, hp, wp)
            .narrow(1, 0, h)
            .narrow(2, 0, w);
        if shift == (0, 0) {
            merged
        } else {
            merged.roll([shift.0, shift.1], [1, 2])
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs + self.attend(&xs.apply(&self.norm1));
        let mlp = self.mlp.forward(&xs.apply(&self.norm2));
        xs + mlp
    }
}

/// timm's `PatchMerging`: each 2×2 group of tokens concatenated (4C), normalised, projected to 2C.
#[derive(Debug)]
struct PatchMerging {
    norm: nn::LayerNorm,
    reduction: nn::Linear,
}

impl PatchMerging {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, h, w, c) = xs.size4().expect("NHWC map");
        let xs = if h % 2 + w % 2 > 0 {
            xs.constant_pad_nd([0, 0, 0, w % 2, 0, h % 2])
        } else {
            xs.shallow_clone()
        };
        let (h, w) = ((h + h % 2) / 2, (w + w % 2) / 2);
        xs.reshape([b, h, 2, w, 2, c])
            .permute([0, 1, 3, 4, 2, 5])
            .flatten(3, 5)
            .apply(&self.norm)
            .apply(&self.reduction)
    }
}

#[derive(Debug)]
struct Stage {
    downsample: Option<PatchMerging>,
    blocks: Vec<Block>,
}

#[derive(Debug)]
pub struct SwinTransformer {
    proj: nn::Conv2D,
    embed_norm: nn::LayerNorm,
    stages: Vec<Stage>,
    norm: nn::LayerNorm,
    channels: i64,
}

impl SwinTransformer {
    fn new(
        p: &nn::Path,
        in_channels: i64,
        embed: i64,
        depths: [usize; 4],
        heads: [i64; 4],
        window: i64,
    ) -> Self {
        let cfg = nn::ConvConfig {
            stride: 4,
            ..Default::default()
        };
        let proj = nn::conv2d(p / "patch_embed" / "proj", in_channels, embed, 4, cfg);
        let embed_norm = layer_norm(&(p / "patch_embed" / "norm"), embed, EPS);
        let mut dim = embed;
        let stages = (0..4)
            .map(|i| {
                let sp = p / "layers" / i;
                let downsample = (i > 0).then(|| {
                    let ds = &sp / "downsample";
                    let merging = PatchMerging {
                        norm: layer_norm(&(&ds / "norm"), 4 * dim, EPS),
                        reduction: nn::linear(
                            &ds / "reduction",
                            4 * dim,
                            2 * dim,
                            nn::LinearConfig {
                                bias: false,
                                ..Default::default()
                            },
                        ),
                    };
                    dim *= 2;
                    merging
                });
                let blocks = (0..depths[i])
                    .map(|j| Block::new(&(&sp / "blocks" / j), dim, heads[i], window, j % 2 == 1))
                    .collect();
                Stage { downsample, blocks }
            })
            .collect();
        SwinTransformer {
            proj,
            embed_norm,
            stages,
            norm: layer_norm(&(p / "norm"), dim, EPS),
            channels: dim,
        }
    }
}

fn to_map(nhwc: &Tensor) -> Tensor {
    nhwc.permute([0, 3, 1, 2])
}

impl Backbone for SwinTransformer {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.feature_maps(xs, train)
            .pop()
            .expect("Swin has a final norm")
    }

    fn feature_maps(&self, xs: &Tensor, _train: bool) -> Vec<Tensor> {
        // Each stage reads its input back from the previous stage's map, so that a score is
        // differentiable at the maps themselves (Grad-CAM at any layer).
        let mut map = to_map(
            &xs.apply(&self.proj)
                .permute([0, 2, 3, 1])
                .apply(&self.embed_norm),
        );
        let mut out = vec![map.shallow_clone()];
        for stage in &self.stages {
            let mut ys = map.permute([0, 2, 3, 1]);
            if let Some(merging) = &stage.downsample {
                ys = merging.forward(&ys);
            }
            for block in &stage.blocks {
                ys = block.forward(&ys);
            }
            map = to_map(&ys);
            out.push(map.shallow_clone());
        }
        out.push(to_map(&map.permute([0, 2, 3, 1]).apply(&self.norm)));
        out
    }

    fn layer_names(&self) -> Vec<String> {
        let mut names = vec!["patch_embed".to_string()];
        names.extend((0..self.stages.len()).map(|i| format!("layers.{i}")));
        names.push("norm".into());
        names
    }

    fn out_channels(&self) -> i64 {
        self.channels
    }

    fn head_name(&self) -> &'static str {
        "head.fc"
    }
}

/// timm `swin_tiny_patch4_window7_224` trunk: width 96, depths 2-2-6-2, window 7.
pub fn swin_tiny_patch4_window7_224(p: &nn::Path, in_channels: i64) -> SwinTransformer {
    SwinTransformer::new(p, in_channels, 96, [2, 2, 6, 2], [3, 6, 12, 24], 7)
}

/// timm `swin_base_patch4_window7_224` trunk: width 128, depths 2-2-18-2, window 7.
pub fn swin_base_patch4_window7_224(p: &nn::Path, in_channels: i64) -> SwinTransformer {
    SwinTransformer::new(p, in_channels, 128, [2, 2, 18, 2], [4, 8, 16, 32], 7)
}

/// timm `swin_base_patch4_window12_384` trunk: width 128, depths 2-2-18-2, window 12.
pub fn swin_base_patch4_window12_384(p: &nn::Path, in_channels: i64) -> SwinTransformer {
    SwinTransformer::new(p, in_channels, 128, [2, 2, 18, 2], [4, 8, 16, 32], 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_index_matches_timm_corners() {
        let index = relative_position_index(7);
        assert_eq!(index.len(), 49 * 49);
        // Same token: offset (0, 0) → centre of the 13×13 table.
        assert_eq!(index[0], 6 * 13 + 6);
        // Token 0 vs the window's last token (6, 6): offset (−6, −6) → entry 0.
        assert_eq!(index[48], 0);
        // Last vs first: (6, 6) → the table's last entry.
        assert_eq!(index[48 * 49], 13 * 13 - 1);
    }

    #[test]
    fn mask_separates_wrapped_regions() {
        // A 14×14 map, window 7, shift 3: the top-left window is one region (no mask), the
        // bottom-right mixes four.
        let mask = shift_mask(14, 14, 7, (3, 3), Device::Cpu);
        assert_eq!(mask.size(), [4, 49, 49]);
        assert_eq!(mask.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0);
        let last = mask.get(3);
        // Token (0,0) of the last window is in the stayed region; token (6,6) wrapped both ways.
        assert_eq!(last.double_value(&[0, 48]), MASKED);
        assert_eq!(last.double_value(&[0, 1]), 0.0);
    }
}
