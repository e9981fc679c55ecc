//! Small pieces the transformer and ConvNeXt families share, named as timm names them.
use tch::nn::{self, Module};
use tch::Tensor;

/// `LayerNorm` over the last dimension, starting as PyTorch's (weight 1, bias 0).
pub fn layer_norm(p: &nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig {
        eps,
        ..Default::default()
    };
    nn::layer_norm(p, vec![dim], cfg)
}

/// timm's `LayerNorm2d`: a layer norm over the channels of an [N, C, H, W] map.
pub fn layer_norm_2d(norm: &nn::LayerNorm, xs: &Tensor) -> Tensor {
    xs.permute([0, 2, 3, 1]).apply(norm).permute([0, 3, 1, 2])
}

/// timm's `Mlp`: `fc1` → GELU (exact, erf) → `fc2`, on the last dimension.
#[derive(Debug)]
pub struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    pub fn new(p: &nn::Path, dim: i64, hidden: i64) -> Self {
        Mlp {
            fc1: nn::linear(p / "fc1", dim, hidden, Default::default()),
            fc2: nn::linear(p / "fc2", hidden, dim, Default::default()),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.fc1).gelu("none").apply(&self.fc2)
    }
}

/// Multi-head attention of [B, N, C] tokens given q, k, v from one `qkv` projection
/// ([B, N, 3·C], heads interleaved as timm lays them out) and an additive mask or bias
/// broadcastable to [B, heads, N, N]; returns [B, N, C] before the output projection.
pub fn multi_head_attention(qkv: &Tensor, heads: i64, bias: Option<&Tensor>) -> Tensor {
    let (b, n, c3) = qkv.size3().expect("qkv is [B, N, 3C]");
    let qkv = qkv
        .reshape([b, n, 3, heads, c3 / 3 / heads])
        .permute([2, 0, 3, 1, 4]);
    let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
    Tensor::scaled_dot_product_attention(&q, &k, &v, bias, 0.0, false, None::<f64>, false)
        .transpose(1, 2)
        .reshape([b, n, c3 / 3])
}
