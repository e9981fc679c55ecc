//! Segmentation networks: encoders, scSE attention, UNet and UNet++ decoders.
