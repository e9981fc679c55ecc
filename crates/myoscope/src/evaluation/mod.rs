//! Turning predictions into figures and pictures.
pub mod cv_report;
pub mod metrics;
pub mod png;
pub mod reader_plot;
pub mod report;
pub mod roc;
pub mod svg;
pub mod threshold;
