//! Kabeya et al.'s aggregated classifier: the input is cut into a g×g grid of patches, one
//! shared trunk runs on all patches as a single batch, and the patch feature maps are laid
//! back out as a mosaic. Global average pooling over the mosaic + a linear layer gives the
//! image's logits; each patch's map + its own linear layer gives patch logits, used only in
//! the training loss (and by the patch-weighted Grad-CAM). A 1×1 grid is a plain classifier.
use super::backbone::Backbone;
use tch::nn;
use tch::Tensor;

/// Everything a forward pass produces; the mosaic is kept for heat-maps.
#[derive(Debug)]
pub struct AggregatedOutput {
    /// [B, K] final logits.
    pub logits: Tensor,
    /// [B, g·g, K] per-patch logits in row-major patch order; `None` for a 1×1 grid.
    pub patch_logits: Option<Tensor>,
    /// [B, C, g·h, g·w] patch feature maps stitched in their spatial positions.
    pub mosaic: Tensor,
}

#[derive(Debug)]
pub struct AggregatedClassifier {
    trunk: Box<dyn Backbone>,
    head: nn::Linear,
    patch_head: Option<nn::Linear>,
    grid: i64,
    num_classes: i64,
    head_name: String,
}

impl AggregatedClassifier {
    pub fn new(root: &nn::Path, trunk: Box<dyn Backbone>, grid: i64, num_classes: i64) -> Self {
        let c = trunk.out_channels();
        let mut head_path = root.clone();
        for part in trunk.head_name().split('.') {
            head_path = &head_path / part;
        }
        let head = nn::linear(head_path, c, num_classes, Default::default());
        let patch_head = (grid > 1).then(|| {
            nn::linear(
                root / "patch_classifier",
                c,
                num_classes,
                Default::default(),
            )
        });
        Self {
            head_name: trunk.head_name().to_string(),
            trunk,
            head,
            patch_head,
            grid,
            num_classes,
        }
    }

    /// Variable-name prefix of the final output layer (`classifier`, `fc`, ...), the
    /// torchvision/timm name of the trunk family.
    pub fn head_name(&self) -> &str {
        &self.head_name
    }

    pub fn grid(&self) -> i64 {
        self.grid
    }

    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// The final layer's weight [K, C]: with the mean pooling before it, the whole head is
    /// linear in the mosaic, which is what the closed-form Grad-CAM relies on.
    pub fn head_weight(&self) -> &Tensor {
        &self.head.ws
    }

    /// The patch head's weight [K, C]; `None` for a 1×1 grid.
    pub fn patch_head_weight(&self) -> Option<&Tensor> {
        self.patch_head.as_ref().map(|h| &h.ws)
    }

    /// [B, C, H, W] → [B·g·g, C, H/g, W/g], patches in row-major order.
    pub fn split_patches(&self, xs: &Tensor) -> Tensor {
        let (b, c, h, w) = xs.size4().expect("image batch must be 4-D");
        let g = self.grid;
        xs.view([b, c, g, h / g, g, w / g])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b * g * g, c, h / g, w / g])
    }

    /// [B·g·g, C, h, w] → [B, C, g·h, g·w], the inverse layout of `split_patches`.
    pub fn stitch_mosaic(&self, maps: &Tensor) -> Tensor {
        let (n, c, h, w) = maps.size4().expect("feature maps must be 4-D");
        let g = self.grid;
        let b = n / (g * g);
        maps.view([b, g, g, c, h, w])
            .permute([0, 3, 1, 4, 2, 5])
            .reshape([b, c, g * h, g * w])
    }

    /// Patch feature maps [B·g·g, C, h, w] → output. Split from `forward_t` so Grad-CAM can
    /// hold on to the maps and differentiate with respect to them. Only for trunks that pool
    /// their maps ([`AggregatedClassifier::pools_maps`]); the others go through
    /// [`AggregatedClassifier::head_forward_pooled`].
    pub fn head_forward(&self, maps: &Tensor) -> AggregatedOutput {
        let pooled = self
            .trunk
            .pool(maps)
            .expect("head_forward on a trunk that cannot pool its maps; check pools_maps()");
        self.head_forward_pooled(maps, &pooled)
    }

    /// Whether the classifier's input is a function of the trunk's last maps alone (false for
    /// ViT, whose class token is not on the patch grid).
    pub fn pools_maps(&self) -> bool {
        self.trunk.pools_maps()
    }

    /// Whether the heads read a plain spatial mean of the maps (see
    /// [`crate::models::Backbone::pools_by_average`]).
    pub fn pools_by_average(&self) -> bool {
        self.trunk.pools_by_average()
    }

    /// The output from the patch maps and their pooled vectors [B·g·g, C]: the image pools its
    /// mosaic the way the trunk pools a map (the mean of the patch vectors where the trunk
    /// pools something else), each patch head reads its own vector.
    pub fn head_forward_pooled(&self, maps: &Tensor, pooled: &Tensor) -> AggregatedOutput {
        let mosaic = self.stitch_mosaic(maps);
        let g2 = self.grid * self.grid;
        let image_vector = if self.grid == 1 {
            pooled.shallow_clone()
        } else {
            self.trunk.pool(&mosaic).unwrap_or_else(|| {
                let c = pooled.size()[1];
                pooled.view([-1, g2, c]).mean_dim(&[1i64][..], false, None)
            })
        };
        let logits = image_vector.apply(&self.head);
        let patch_logits = self.patch_head.as_ref().map(|ph| {
            let n = maps.size()[0];
            pooled.apply(ph).view([n / g2, g2, self.num_classes])
        });
        AggregatedOutput {
            logits,
            patch_logits,
            mosaic,
        }
    }

    /// The trunk on all patches of the batch: [B, C, H, W] → [B·g·g, C', h, w].
    pub fn patch_maps(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk.features(&self.split_patches(xs), train)
    }

    /// The trunk's named layers (for Grad-CAM at a chosen layer); the last is its output.
    pub fn layer_names(&self) -> Vec<String> {
        self.trunk.layer_names()
    }

    /// The trunk's named maps on all patches [B·g·g, C_l, h_l, w_l], one graph.
    pub fn patch_feature_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        self.trunk.feature_maps(&self.split_patches(xs), train)
    }

    /// [`AggregatedClassifier::patch_feature_maps`] and the patch vectors the heads read.
    pub fn patch_feature_maps_pooled(&self, xs: &Tensor, train: bool) -> (Vec<Tensor>, Tensor) {
        self.trunk
            .feature_maps_pooled(&self.split_patches(xs), train)
    }

    /// The Grad-CAM layer used when none is named (the trunk's choice).
    pub fn default_cam_layer(&self) -> String {
        self.trunk.default_cam_layer()
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> AggregatedOutput {
        let (maps, pooled) = self.trunk.forward_pooled(&self.split_patches(xs), train);
        self.head_forward_pooled(&maps, &pooled)
    }
}
