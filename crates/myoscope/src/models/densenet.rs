//! DenseNet-BC (Huang et al.) in torchvision's layout and parameter names, so a torchvision
//! `densenet121` state dict loads by name. BN → ReLU → conv ordering, bottleneck 1×1 of
//! `bn_size·growth` channels, transitions halve channels and average-pool 2×2.
//!
//! The final average pool is left to the caller: the aggregated classifier needs the
//! un-pooled maps (5×5 per 160² patch), and a fixed 7×7 pool would be wrong for them.
use super::backbone::Backbone;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Shape of a DenseNet: growth rate, layers per dense block, stem width and bottleneck factor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DenseNetConfig {
    pub growth_rate: i64,
    pub block_config: Vec<i64>,
    pub num_init_features: i64,
    pub bn_size: i64,
    /// A 7×7/2 stem conv followed by a 3×3/2 max-pool (ImageNet style); otherwise a single
    /// 3×3 conv of stride `small_stem_stride` without pooling, so tiny patches keep some extent.
    pub imagenet_stem: bool,
    pub small_stem_stride: i64,
}

impl DenseNetConfig {
    /// DenseNet-121: growth 32, blocks 6-12-24-16 (58 dense layers, 3 transitions).
    pub fn densenet121() -> Self {
        Self {
            growth_rate: 32,
            block_config: vec![6, 12, 24, 16],
            num_init_features: 64,
            bn_size: 4,
            imagenet_stem: true,
            small_stem_stride: 1,
        }
    }

    /// A small DenseNet for the CPU demo: 3 blocks of 4 layers, growth 12, a stride-2 stem
    /// (a 32² patch becomes a 4×4 map, as 160² becomes 5×5 in DenseNet-121).
    pub fn tiny() -> Self {
        Self {
            growth_rate: 12,
            block_config: vec![4, 4, 4],
            num_init_features: 24,
            bn_size: 4,
            imagenet_stem: false,
            small_stem_stride: 2,
        }
    }
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanIn,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

#[derive(Debug)]
struct DenseLayer {
    norm1: nn::BatchNorm,
    conv1: nn::Conv2D,
    norm2: nn::BatchNorm,
    conv2: nn::Conv2D,
}

impl DenseLayer {
    fn new(p: &nn::Path, c_in: i64, growth: i64, bn_size: i64) -> Self {
        let inner = bn_size * growth;
        Self {
            norm1: bn(p / "norm1", c_in),
            conv1: conv(p / "conv1", c_in, inner, 1, 1, 0),
            norm2: bn(p / "norm2", inner),
            conv2: conv(p / "conv2", inner, growth, 3, 1, 1),
        }
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.norm1.forward_t(xs, train).relu().apply(&self.conv1);
        self.norm2.forward_t(&ys, train).relu().apply(&self.conv2)
    }
}

#[derive(Debug)]
struct Transition {
    norm: nn::BatchNorm,
    conv: nn::Conv2D,
}

#[derive(Debug)]
enum Stage {
    Block(Vec<DenseLayer>),
    Transition(Box<Transition>),
}

/// The DenseNet feature extractor (`features.*` in torchvision), ending with `norm5` + ReLU.
#[derive(Debug)]
pub struct DenseNet {
    conv0: nn::Conv2D,
    norm0: nn::BatchNorm,
    imagenet_stem: bool,
    stages: Vec<Stage>,
    norm5: nn::BatchNorm,
    out_channels: i64,
}

impl DenseNet {
    /// Builds the trunk with parameters under `root / "features"` (torchvision naming).
    pub fn new(root: &nn::Path, cfg: &DenseNetConfig, in_channels: i64) -> Self {
        let p = root / "features";
        let (k, s, pad) = if cfg.imagenet_stem {
            (7, 2, 3)
        } else {
            (3, cfg.small_stem_stride, 1)
        };
        let conv0 = conv(&p / "conv0", in_channels, cfg.num_init_features, k, s, pad);
        let norm0 = bn(&p / "norm0", cfg.num_init_features);
        let mut c = cfg.num_init_features;
        let mut stages = Vec::new();
        for (i, &n_layers) in cfg.block_config.iter().enumerate() {
            let bp = &p / format!("denseblock{}", i + 1);
            let layers = (0..n_layers)
                .map(|j| {
                    let layer = DenseLayer::new(
                        &(&bp / format!("denselayer{}", j + 1)),
                        c + j * cfg.growth_rate,
                        cfg.growth_rate,
                        cfg.bn_size,
                    );
                    layer
                })
                .collect();
            stages.push(Stage::Block(layers));
            c += n_layers * cfg.growth_rate;
            if i + 1 < cfg.block_config.len() {
                let tp = &p / format!("transition{}", i + 1);
                stages.push(Stage::Transition(Box::new(Transition {
                    norm: bn(&tp / "norm", c),
                    conv: conv(&tp / "conv", c, c / 2, 1, 1, 0),
                })));
                c /= 2;
            }
        }
        let norm5 = bn(&p / "norm5", c);
        Self {
            conv0,
            norm0,
            imagenet_stem: cfg.imagenet_stem,
            stages,
            norm5,
            out_channels: c,
        }
    }
}

impl DenseNet {
    /// Every stage's output in forward order: stem, then dense blocks and transitions, then
    /// the final norm + ReLU (the trunk's output).
    fn forward_all(&self, xs: &Tensor, train: bool, keep: bool) -> Vec<Tensor> {
        let mut kept = Vec::new();
        let mut ys = self.norm0.forward_t(&xs.apply(&self.conv0), train).relu();
        if self.imagenet_stem {
            ys = ys.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        if keep {
            kept.push(ys.shallow_clone());
        }
        for stage in &self.stages {
            ys = match stage {
                Stage::Block(layers) => {
                    // Concatenating once per layer is what torchvision does too; the memory-
                    // efficient checkpointed variant only matters for very large batches.
                    let mut feats = vec![ys];
                    for layer in layers {
                        let input = Tensor::cat(&feats, 1);
                        feats.push(layer.forward(&input, train));
                    }
                    Tensor::cat(&feats, 1)
                }
                Stage::Transition(t) => t
                    .norm
                    .forward_t(&ys, train)
                    .relu()
                    .apply(&t.conv)
                    .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>),
            };
            if keep {
                kept.push(ys.shallow_clone());
            }
        }
        kept.push(self.norm5.forward_t(&ys, train).relu());
        kept
    }
}

impl Backbone for DenseNet {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut all = self.forward_all(xs, train, false);
        all.pop().unwrap_or_else(|| xs.shallow_clone())
    }

    /// torchvision's module names: `stem` (conv0/norm0), `denseblockN`, `transitionN`, and
    /// `norm5` (after its ReLU), the trunk's output.
    fn layer_names(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        let (mut block, mut transition) = (0, 0);
        for stage in &self.stages {
            names.push(match stage {
                Stage::Block(_) => {
                    block += 1;
                    format!("denseblock{block}")
                }
                Stage::Transition(_) => {
                    transition += 1;
                    format!("transition{transition}")
                }
            });
        }
        names.push("norm5".into());
        names
    }

    fn feature_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.forward_all(xs, train, true)
    }

    fn out_channels(&self) -> i64 {
        self.out_channels
    }

    fn head_name(&self) -> &'static str {
        "classifier"
    }
}
