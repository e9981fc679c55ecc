//! The contract every trunk fulfils, so classifiers and (later) segmentation decoders can wrap
//! any family without knowing its layout.
use tch::Tensor;

/// Global average pooling [N, C, h, w] → [N, C], what most families' classifiers read.
pub fn global_average(maps: &Tensor) -> Tensor {
    maps.mean_dim(&[2i64, 3][..], false, None)
}

/// A trunk: image batch [N, C_in, H, W] → feature maps [N, C, h, w] before pooling. Transformer
/// trunks return their tokens laid out on the patch grid, so heat-maps work on them too.
pub trait Backbone: std::fmt::Debug + Send {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor;
    /// Channels C of the feature maps.
    fn out_channels(&self) -> i64;
    /// Names of the maps [`Backbone::feature_maps`] returns, in forward order; the last is
    /// the trunk's output. Grad-CAM takes one of them as its layer.
    fn layer_names(&self) -> Vec<String> {
        vec!["features".into()]
    }

    /// The named intermediate maps of one forward pass, ending with [`Backbone::features`]'s
    /// output, all in one autograd graph so a score can be differentiated at any of them.
    fn feature_maps(&self, xs: &Tensor, train: bool) -> Vec<Tensor> {
        vec![self.features(xs, train)]
    }

    /// Name of the reference classification head under the same root (`fc`, `classifier.1`,
    /// `classifier`, `head.fc`), so a wrapper creates its head with the name the reference
    /// weights use.
    fn head_name(&self) -> &'static str;

    /// The vector the reference classifier reads, from the final maps: [N, C, h, w] → [N, C].
    /// Global average pooling unless the family does more (ConvNeXt normalises the average).
    /// `None` where the classifier reads something the maps do not hold — ViT's class token —
    /// and the trunk overrides [`Backbone::forward_pooled`] instead.
    fn pool(&self, maps: &Tensor) -> Option<Tensor> {
        Some(global_average(maps))
    }

    /// Whether [`Backbone::pool`] gives the classifier's input (false for ViT).
    fn pools_maps(&self) -> bool {
        true
    }

    /// Whether [`Backbone::pool`] is the plain spatial mean, so that a head's gradient is the
    /// same at every map position and Grad-CAM has a closed form (false for ConvNeXt, whose
    /// head normalises the mean, and for ViT).
    fn pools_by_average(&self) -> bool {
        self.pools_maps()
    }

    /// The final maps and the pooled vector of one forward pass.
    fn forward_pooled(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let maps = self.features(xs, train);
        let pooled = self
            .pool(&maps)
            .expect("a trunk that cannot pool its maps overrides forward_pooled");
        (maps, pooled)
    }

    /// [`Backbone::feature_maps`] and the pooled vector, in one graph.
    fn feature_maps_pooled(&self, xs: &Tensor, train: bool) -> (Vec<Tensor>, Tensor) {
        let maps = self.feature_maps(xs, train);
        let pooled = self
            .pool(maps.last().expect("a trunk returns at least one map"))
            .expect("a trunk that cannot pool its maps overrides feature_maps_pooled");
        (maps, pooled)
    }

    /// The smallest input side (per patch of the aggregated classifier) the trunk can take:
    /// one ViT patch, the 32 pixels ConvNeXt's four downsamplings need.
    fn min_input_side(&self) -> i64 {
        16
    }

    /// The layer Grad-CAM uses unless told otherwise: the last, except where the score does not
    /// depend on the last maps (ViT: the class token reads the patch tokens entering its last
    /// block).
    fn default_cam_layer(&self) -> String {
        self.layer_names()
            .pop()
            .unwrap_or_else(|| "features".into())
    }
}
