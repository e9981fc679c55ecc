//! Kabeya et al.'s protocol: a held-out test set, k-fold cross-validation on the rest, one
//! model per fold, optionally in two steps (group, then subtype), gathered into an ensemble.
pub mod config;
pub mod plan;
pub mod run;

pub use config::CvConfig;
pub use plan::Plan;
pub use run::{run, CvOptions, CvOutcome};
