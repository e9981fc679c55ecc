//! Turning predictions into figures and pictures.
pub mod metrics;
pub mod svg;
