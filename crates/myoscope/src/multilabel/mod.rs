//! DEDL's multi-label cell-type classification (Singh & Cirrone §3.2, §4.3): an image may show
//! several cell types at once, so each class is its own yes/no decision.
pub mod loss;
pub mod markers;
pub mod metrics;
