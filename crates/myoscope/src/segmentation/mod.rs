//! DEDL nucleus segmentation (Singh & Cirrone): UNet / UNet++ with scSE attention, weighted
//! cross-entropy and the training-only APP autoencoder, tiled inference with stitching, IoU/Dice.
pub mod app;
pub mod augment;
pub mod config;
pub mod dataset;
pub mod loss;
pub mod metrics;
pub mod models;
pub mod outputs;
pub mod predict;
pub mod run;
pub mod tiling;
pub mod train;
