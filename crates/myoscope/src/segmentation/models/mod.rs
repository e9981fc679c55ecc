//! Segmentation networks: encoders, scSE attention, UNet and UNet++ decoders.
//!
//! Layouts and parameter names mirror segmentation_models_pytorch 0.6.0 (`smp.Unet`,
//! `smp.UnetPlusPlus`), so a state dict trained there loads here by name (skip its
//! `num_batches_tracked` counters, which tch's batch norm does not keep) and gives the same
//! logits; `tests/segmentation_parity.rs` checks that against `scripts/smp_oracle.py`.
//!
//! ```no_run
//! use myoscope::segmentation::models::SegmentationModelSpec;
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let model = SegmentationModelSpec::dedl().build(&vs.root())?;
//! model.check_input(480, 480)?;
//! # anyhow::Ok(())
//! ```
// Building blocks stay private: their constructors trust arguments the spec has validated.
mod decoder_block;
// Also the classification trunk of `models::efficientnet`.
pub(crate) mod efficientnet;
pub mod encoder;
pub mod model;
mod scse;
pub mod spec;
mod unet;
mod unetplusplus;

pub use encoder::{adapt_first_conv, first_conv_weight, Encoder, ENCODERS};
pub use model::SegmentationModel;
pub use spec::{Arch, Attention, SegmentationModelSpec};
