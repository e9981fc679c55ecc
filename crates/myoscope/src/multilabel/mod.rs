//! DEDL's multi-label cell-type classification (Singh & Cirrone §3.2, §4.3): an image may show
//! several cell types at once, so each class is its own yes/no decision.
pub mod augment;
pub mod chart;
pub mod config;
pub mod cv;
pub mod dataset;
pub mod folds;
pub mod images;
pub mod loss;
pub mod markers;
pub mod metrics;
pub mod swa;
pub mod train;
