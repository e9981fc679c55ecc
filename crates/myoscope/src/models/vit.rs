//! ViT-B/16 and ViT-B/32 (Dosovitskiy et al. 2021) with timm's `vit_base_patch{16,32}_224`
//! parameter names: `patch_embed.proj`, `cls_token`, `pos_embed`,
//! `blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`; head `head`.
//!
//! The classifier reads the class token after the final norm, as timm's does. As a
//! [`Backbone`] the trunk returns the normalised patch tokens laid out on the patch grid, so
//! Grad-CAM can draw them; its default Grad-CAM layer is the tokens entering the last block,
//! the deepest ones the class token still reads through attention.
//!
//! The learned position embedding is for 224² (a 14×14 or 7×7 grid). Another input size
//! resamples it bicubically with antialiasing, the class token's entry kept as it is — timm's
//! `dynamic_img_size`. The input side must be a multiple of the patch size.
use super::backbone::Backbone;
use super::layers::{layer_norm, multi_head_attention, Mlp};
use tch::nn::{self, Init, Module};
use tch::Tensor;

const DIM: i64 = 768;
const DEPTH: usize = 12;
const HEADS: i64 = 12;
const EPS: f64 = 1e-6;
const NATIVE_SIZE: i64 = 224;

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(p: &nn::Path) -> Self {
        Block {
            norm1: layer_norm(&(p / "norm1"), DIM, EPS),
            qkv: nn::linear(p / "attn" / "qkv", DIM, 3 * DIM, Default::default()),
            proj: nn::linear(p / "attn" / "proj", DIM, DIM, Default::default()),
            norm2: layer_norm(&(p / "norm2"), DIM, EPS),
            mlp: Mlp::new(&(p / "mlp"), DIM, 4 * DIM),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let qkv = xs.apply(&self.norm1).apply(&self.qkv);
        let xs = xs + multi_head_attention(&qkv, HEADS, None).apply(&self.proj);
        let mlp = self.mlp.forward(&xs.apply(&self.norm2));
        xs + mlp
    }
}

#[derive(Debug)]
pub struct VisionTransformer {
    patch: i64,
    proj: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
}

impl VisionTransformer {
    fn new(p: &nn::Path, in_channels: i64, patch: i64) -> Self {
        let grid = NATIVE_SIZE / patch;
        let cfg = nn::ConvConfig {
            stride: patch,
            ..Default::default()
        };
        let small = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        VisionTransformer {
            patch,
            proj: nn::conv2d(p / "patch_embed" / "proj", in_channels, DIM, patch, cfg),
            cls_token: p.var("cls_token", &[1, 1, DIM], small),
            pos_embed: p.var("pos_embed", &[1, 1 + grid * grid, DIM], small),
            blocks: (0..DEPTH)
                .map(|i| Block::new(&(p / "blocks" / i)))
                .collect(),
            norm: layer_norm(&(p / "norm"), DIM, EPS),
        }
    }

    /// The position embedding for an h×w patch grid: the stored one at 224², else its grid
    /// part resampled (bicubic, antialiased) as timm's `resample_abs_pos_embed` does.
    fn position_embedding(&self, h: i64, w: i64) -> Tensor {
        let native = NATIVE_SIZE / self.patch;
        if h == native && w == native {
            return self.pos_embed.shallow_clone();
        }
        let prefix = self.pos_embed.narrow(1, 0, 1);
        let grid = self
            .pos_embed
            .narrow(1, 1, native * native)
            .reshape([1, native, native, DIM])
            .permute([0, 3, 1, 2])
            .internal_upsample_bicubic2d_aa([h, w], false, None::<f64>, None::<f64>)
            .permute([0, 2, 3, 1])
            .reshape([1, h * w, DIM]);
        Tensor::cat(&[prefix, grid], 1)
    }

    /// The maps [N, C, h, w] of the patch tokens after each stage of the forward pass — the
    /// embedded input, every block, the final norm — and the class token after the final norm
    /// [N, C]. Each block reads the tokens back from the previous map, so that a score is
    /// differentiable at the maps themselves (Grad-CAM).
    fn stages(&self, xs: &Tensor) -> (Vec<Tensor>, Tensor) {
        let patches = xs.apply(&self.proj);
        let (n, _, h, w) = patches.size4().expect("patch embedding is 4-D");
        let tokens = patches.flatten(2, 3).transpose(1, 2);
        let cls = self.cls_token.expand([n, 1, DIM], false);
        let ys = Tensor::cat(&[cls, tokens], 1) + self.position_embedding(h, w);
        let (mut cls, mut map) = Self::split(&ys, (h, w));
        let mut maps = vec![map.shallow_clone()];
        for block in &self.blocks {
            let tokens = map.permute([0, 2, 3, 1]).reshape([n, h * w, DIM]);
            let ys = block.forward(&Tensor::cat(&[cls, tokens], 1));
            (cls, map) = Self::split(&ys, (h, w));
            maps.push(map.shallow_clone());
        }
        let tokens = map.permute([0, 2, 3, 1]).reshape([n, h * w, DIM]);
        let normed = Tensor::cat(&[cls, tokens], 1).apply(&self.norm);
        let (pooled, last) = Self::split(&normed, (h, w));
        maps.push(last);
        (maps, pooled.squeeze_dim(1))
    }

    /// Tokens [N, 1 + h·w, C] → the class token [N, 1, C] and the patch map [N, C, h, w].
    fn split(tokens: &Tensor, (h, w): (i64, i64)) -> (Tensor, Tensor) {
        let n = tokens.size()[0];
        let map = tokens
            .narrow(1, 1, h * w)
            .reshape([n, h, w, DIM])
            .permute([0, 3, 1, 2]);
        (tokens.narrow(1, 0, 1), map)
    }
}

impl Backbone for VisionTransformer {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_pooled(xs, train).0
    }

    fn feature_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.feature_maps_pooled(xs, train).0
    }

    fn layer_names(&self) -> Vec<String> {
        let mut names = vec!["patch_embed".to_string()];
        names.extend((0..self.blocks.len()).map(|i| format!("blocks.{i}")));
        names.push("norm".into());
        names
    }

    fn out_channels(&self) -> i64 {
        DIM
    }

    fn head_name(&self) -> &'static str {
        "head"
    }

    fn pool(&self, _maps: &Tensor) -> Option<Tensor> {
        None
    }

    fn pools_maps(&self) -> bool {
        false
    }

    fn forward_pooled(&self, xs: &Tensor, _train: bool) -> (Tensor, Tensor) {
        let (mut maps, pooled) = self.stages(xs);
        (maps.pop().expect("the final norm's map"), pooled)
    }

    fn feature_maps_pooled(&self, xs: &Tensor, _train: bool) -> (Vec<Tensor>, Tensor) {
        self.stages(xs)
    }

    fn min_input_side(&self) -> i64 {
        self.patch
    }

    fn default_cam_layer(&self) -> String {
        format!("blocks.{}", self.blocks.len() - 2)
    }
}

/// timm `vit_base_patch16_224` trunk: 16² patches, 12 blocks of width 768, 12 heads.
pub fn vit_base_patch16_224(p: &nn::Path, in_channels: i64) -> VisionTransformer {
    VisionTransformer::new(p, in_channels, 16)
}

/// timm `vit_base_patch32_224` trunk: 32² patches, 12 blocks of width 768, 12 heads.
pub fn vit_base_patch32_224(p: &nn::Path, in_channels: i64) -> VisionTransformer {
    VisionTransformer::new(p, in_channels, 32)
}
