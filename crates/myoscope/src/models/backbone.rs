//! The contract every convolutional trunk fulfils, so classifiers and (later) segmentation
//! decoders can wrap any family without knowing its layout.
use tch::Tensor;

/// A convolutional trunk: image batch [N, C_in, H, W] → feature maps [N, C, h, w] before
/// global pooling.
pub trait Backbone: std::fmt::Debug + Send {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor;
    /// Channels C of the feature maps.
    fn out_channels(&self) -> i64;
    /// Name of the reference classification head under the same root (`fc`, `classifier.1`,
    /// `classifier`), so a wrapper creates its head with the name the reference weights use.
    fn head_name(&self) -> &'static str;
}
