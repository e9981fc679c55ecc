//! From files on disk to tensors: manifests, decoding, Kabeya cropping, augmentation,
//! parallel batching and grouped splits.
pub mod augment;
pub mod crop;
pub mod decode;
pub mod folds;
pub mod loader;
pub mod manifest;
pub mod resize;
pub mod split;

pub use manifest::{Dataset, ManifestColumns, Sample};
