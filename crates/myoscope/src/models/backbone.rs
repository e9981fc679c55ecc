//! The contract every convolutional trunk fulfils, so classifiers and (later) segmentation
//! decoders can wrap any family without knowing its layout.
use tch::Tensor;

/// A convolutional trunk: image batch [N, C_in, H, W] → feature maps [N, C, h, w] before
/// global pooling.
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
    /// `classifier`), so a wrapper creates its head with the name the reference weights use.
    fn head_name(&self) -> &'static str;
}
